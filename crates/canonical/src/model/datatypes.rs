//! FHIR R4 general-purpose datatypes (the subset Arteria fills).
//!
//! `Decimal` keeps the source's digits ("1.50" stays "1.50": significant figures carry
//! meaning in lab results), which a float would lose.

use serde::{Serialize, Serializer};
use std::borrow::Cow;

/// Text that is usually one of the mapping's constants (code systems, codes and displays from
/// the IG's tables, statuses, `use` values, extension URLs) and only sometimes the sender's:
/// a constant is borrowed rather than allocated for every element (a message has hundreds).
/// Serialised, and typed in Avro, exactly as a `String`.
pub type Text = Cow<'static, str>;

impl crate::model::avro::AvroModel for Text {
    fn avro_elem(b: &mut crate::model::avro::ShapeBuilder) -> crate::model::avro::Elem {
        <String as crate::model::avro::AvroModel>::avro_elem(b)
    }
}

/// Text that one conversion repeats in many elements — a resource's `urn:uuid:` reference (in
/// every Observation's `subject`, the report's `result`, the header's `focus` …), an OBX's units
/// (in its value and both ends of its range): cloned by count, not copied. Serialised, and typed
/// in Avro, exactly as a `String`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Shared(std::sync::Arc<str>);

impl Shared {
    /// The concatenation of `parts`, built in place (one allocation; a `String` first and then
    /// the shared copy would be two).
    pub fn concat(parts: &[&str]) -> Shared {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut buf = [0u8; 96];
        if len > buf.len() {
            return Shared(std::sync::Arc::from(parts.concat()));
        }
        let mut n = 0;
        for p in parts {
            buf[n..n + p.len()].copy_from_slice(p.as_bytes());
            n += p.len();
        }
        Shared(std::sync::Arc::from(std::str::from_utf8(&buf[..n]).expect("joined from strs")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Shared {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Shared {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Shared {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Shared {
    fn from(s: &str) -> Shared {
        Shared(std::sync::Arc::from(s))
    }
}

impl From<String> for Shared {
    fn from(s: String) -> Shared {
        Shared(std::sync::Arc::from(s))
    }
}

impl From<&String> for Shared {
    fn from(s: &String) -> Shared {
        Shared(std::sync::Arc::from(s.as_str()))
    }
}

impl From<std::sync::Arc<str>> for Shared {
    fn from(s: std::sync::Arc<str>) -> Shared {
        Shared(s)
    }
}

impl From<Shared> for String {
    fn from(s: Shared) -> String {
        s.0.to_string()
    }
}

impl PartialEq<str> for Shared {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Shared {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl Serialize for Shared {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl crate::model::json::JsonWrite for Shared {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        crate::model::json::write_str(out, &self.0)
    }
}

impl crate::model::Skip for Shared {
    fn skip(&self) -> bool {
        self.0.is_empty()
    }
}

impl crate::model::avro::AvroModel for Shared {
    fn avro_elem(b: &mut crate::model::avro::ShapeBuilder) -> crate::model::avro::Elem {
        <String as crate::model::avro::AvroModel>::avro_elem(b)
    }
}

/// A FHIR `decimal`, kept as its canonical text so precision is never lost.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Decimal(Digits);

/// The text of a [`Decimal`]: inline when short, as lab values are (`95`, `1.10`), so that a
/// number costs no allocation; bytes past the length are zero, so equal texts compare equal.
#[derive(Clone, PartialEq, Eq)]
enum Digits {
    Inline(u8, [u8; INLINE]),
    Heap(Box<str>),
}

const INLINE: usize = 22;

impl Default for Digits {
    fn default() -> Digits {
        Digits::Inline(0, [0; INLINE])
    }
}

impl std::fmt::Debug for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Decimal").field(&self.as_str()).finish()
    }
}

impl Decimal {
    /// Reads a number as HL7 v2 writes it (`+5`, `007.50`, `.5`, `-0.2`, `1E3`) and returns the
    /// FHIR form with the same significant digits, or `None` when it is not a number.
    pub fn parse(s: &str) -> Option<Decimal> {
        // `trim` only when an end may be white space (its Unicode scan is most of a short parse).
        let visible = |b: Option<&u8>| b.is_some_and(|b| (0x21..0x7f).contains(b));
        let s = if visible(s.as_bytes().first()) && visible(s.as_bytes().last()) { s } else { s.trim() };
        if Decimal::is_canonical(s) {
            return Some(Decimal::of(s));
        }
        let (neg, body) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (mant, exp) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let (int, frac) = match mant.find('.') {
            Some(i) => (&mant[..i], Some(&mant[i + 1..])),
            None => (mant, None),
        };
        if int.is_empty() && frac.is_none_or(str::is_empty) {
            return None;
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.unwrap_or("").bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let mut out = String::with_capacity(s.len() + 2);
        if neg {
            out.push('-');
        }
        out.push_str(if int.is_empty() { "0" } else { int });
        if let Some(f) = frac.filter(|f| !f.is_empty()) {
            out.push('.');
            out.push_str(f);
        }
        if let Some(e) = exp {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            out.push('E');
            out.push_str(e);
        }
        if out == "-0" {
            out = "0".into();
        }
        Some(Decimal::of(&out))
    }

    /// A decimal of these digits (already checked).
    fn of(s: &str) -> Decimal {
        let b = s.as_bytes();
        Decimal(if b.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..b.len()].copy_from_slice(b);
            Digits::Inline(b.len() as u8, buf)
        } else {
            Digits::Heap(s.into())
        })
    }

    fn bytes(&self) -> &[u8] {
        match &self.0 {
            Digits::Inline(n, buf) => &buf[..usize::from(*n)],
            Digits::Heap(s) => s.as_bytes(),
        }
    }

    /// Already in FHIR form, as most lab values are (`95`, `1.10`, `-0.5`): digits with at most
    /// one inner point, no `+`, no exponent, no leading zero before another digit, not `-0`.
    /// One pass, no rewriting.
    fn is_canonical(s: &str) -> bool {
        let b = s.as_bytes();
        let digits = match b.first() {
            Some(b'-') => &b[1..],
            _ => b,
        };
        let (Some(&first), Some(&last)) = (digits.first(), digits.last()) else { return false };
        if !first.is_ascii_digit() || !last.is_ascii_digit() {
            return false;
        }
        if first == b'0' && digits.get(1).is_some_and(u8::is_ascii_digit) {
            return false;
        }
        let mut points = 0;
        for &c in digits {
            if c == b'.' {
                points += 1;
            } else if !c.is_ascii_digit() {
                return false;
            }
        }
        // "-0", "-0.0" …: the general path decides what a negative zero becomes.
        points <= 1 && !(b[0] == b'-' && digits.iter().all(|&c| c == b'0' || c == b'.'))
    }

    pub fn from_i64(n: i64) -> Decimal {
        Decimal::of(itoa::Buffer::new().format(n))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.bytes()).expect("a decimal's digits are ASCII")
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Written as a JSON number with exactly these digits (borrowed: no copy per value).
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(self.as_str()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl crate::model::json::JsonWrite for Decimal {
    // A JSON number with exactly these digits (`parse` and `from_i64` only make valid ones).
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.bytes())
    }
}

impl crate::model::avro::AvroModel for Decimal {
    fn avro_elem(_: &mut crate::model::avro::ShapeBuilder) -> crate::model::avro::Elem {
        crate::model::avro::Elem::One { kind: crate::model::avro::Kind::Decimal, list: false }
    }
}

impl crate::model::Skip for Decimal {
    fn skip(&self) -> bool {
        self.bytes().is_empty()
    }
}

fhir_struct!(Coding {
    system: Option<Text>,
    version: Option<String>,
    code: Option<Text>,
    display: Option<Text>,
});

fhir_struct!(CodeableConcept {
    coding: Vec<Coding>,
    text: Option<String>,
});

impl CodeableConcept {
    /// One coding; the system and display are usually constants (borrowed, not copied).
    pub fn code(system: impl Into<Text>, code: impl Into<Text>, display: Option<&'static str>) -> CodeableConcept {
        CodeableConcept {
            coding: vec![Coding {
                system: Some(system.into()),
                code: Some(code.into()),
                display: display.map(Text::Borrowed),
                ..Default::default()
            }],
            text: None,
        }
    }

    pub fn text(text: impl Into<String>) -> CodeableConcept {
        CodeableConcept { coding: vec![], text: Some(text.into()) }
    }
}

fhir_struct!(Period {
    start: Option<String>,
    end: Option<String>,
});

fhir_struct!(Identifier {
    r#use: Option<Text>,
    r#type: Option<CodeableConcept>,
    system: Option<Text>,
    value: Option<String>,
    period: Option<Period>,
    assigner: Option<Box<Reference>>,
});

fhir_struct!(Reference {
    /// Shared: the same reference is in many resources of a message.
    reference: Option<Shared>,
    r#type: Option<Text>,
    /// Boxed: rarely set, and a reference is in every resource, often several times.
    identifier: Option<Box<Identifier>>,
    display: Option<String>,
});

impl Reference {
    pub fn to(url: impl Into<Shared>) -> Reference {
        Reference { reference: Some(url.into()), ..Default::default() }
    }
}

fhir_struct!(HumanName {
    r#use: Option<Text>,
    text: Option<String>,
    family: Option<String>,
    given: Vec<String>,
    prefix: Vec<String>,
    suffix: Vec<String>,
    period: Option<Period>,
});

fhir_struct!(Address {
    r#use: Option<Text>,
    r#type: Option<Text>,
    text: Option<String>,
    line: Vec<String>,
    city: Option<String>,
    district: Option<String>,
    state: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
    period: Option<Period>,
});

fhir_struct!(ContactPoint {
    system: Option<Text>,
    value: Option<String>,
    r#use: Option<Text>,
    rank: Option<u32>,
    period: Option<Period>,
});

fhir_struct!(Quantity {
    value: Option<Decimal>,
    comparator: Option<Text>,
    /// Shared: an OBX's units are in its value and both ends of its reference range.
    unit: Option<Shared>,
    system: Option<Text>,
    code: Option<Shared>,
});

fhir_struct!(Range {
    low: Option<Quantity>,
    high: Option<Quantity>,
});

fhir_struct!(Ratio {
    numerator: Option<Quantity>,
    denominator: Option<Quantity>,
});

fhir_struct!(Annotation {
    /// `author[x]`: set at most one of `author_reference` and `author_string`.
    author_reference: Option<Reference>,
    author_string: Option<String>,
    time: Option<String>,
    text: String,
});

fhir_struct!(Attachment {
    content_type: Option<String>,
    language: Option<String>,
    data: Option<String>,
    url: Option<String>,
    size: Option<u64>,
    title: Option<String>,
    creation: Option<String>,
});

fhir_struct!(Meta {
    version_id: Option<String>,
    last_updated: Option<String>,
    source: Option<String>,
    profile: Vec<String>,
    tag: Vec<Coding>,
});

fhir_choice!(
    /// The value of an [`Extension`] (a non-recursive subset of FHIR's `value[x]`).
    ExtensionValue {
        String(String) = "valueString",
        Code(String) = "valueCode",
        Boolean(bool) = "valueBoolean",
        DateTime(String) = "valueDateTime",
        CodeableConcept(CodeableConcept) = "valueCodeableConcept",
        Coding(Coding) = "valueCoding",
        Identifier(Identifier) = "valueIdentifier",
        Reference(Reference) = "valueReference",
        Attachment(Attachment) = "valueAttachment",
    }
);

/// A FHIR extension with a single value (nested extensions are not needed by the mappings).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extension {
    pub url: Text,
    #[serde(flatten)]
    pub value: ExtensionValue,
}

impl crate::model::avro::AvroModel for Extension {
    fn avro_elem(b: &mut crate::model::avro::ShapeBuilder) -> crate::model::avro::Elem {
        use crate::model::avro::{AvroModel, push_field};
        let id = b.record("Extension", |b| {
            let mut fields = Vec::new();
            let url = <Text as AvroModel>::avro_elem(b);
            push_field(&mut fields, "url".into(), url);
            let value = <ExtensionValue as AvroModel>::avro_elem(b);
            push_field(&mut fields, String::new(), value);
            fields
        });
        crate::model::avro::Elem::record(id)
    }
}

impl crate::model::json::JsonMembers for Extension {
    fn write_members(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#""url":"#);
        crate::model::json::write_str(out, &self.url);
        out.push(b',');
        crate::model::json::JsonFlat::write_flat(&self.value, out);
    }
}

impl crate::model::json::JsonWrite for Extension {
    fn write_json(&self, out: &mut Vec<u8>) {
        crate::model::json::object(self, out)
    }
}

impl Extension {
    pub fn string(url: impl Into<Text>, v: impl Into<String>) -> Extension {
        Extension { url: url.into(), value: ExtensionValue::String(v.into()) }
    }
}

fhir_struct!(
    /// Extensions on a primitive element (the `_element` JSON property).
    PrimitiveExtensions { extension: Vec<Extension> }
);

fhir_choice!(
    /// FHIR `Dosage.doseAndRate.dose[x]` and similar quantity-or-range choices.
    DoseValue {
        Quantity(Quantity) = "doseQuantity",
        Range(Range) = "doseRange",
    }
);

fhir_struct!(DoseAndRate {
    #[serde(flatten)]
    dose: Option<DoseValue>,
});

fhir_struct!(Timing {
    code: Option<CodeableConcept>,
});

fhir_struct!(Dosage {
    sequence: Option<u32>,
    text: Option<String>,
    timing: Option<Timing>,
    site: Option<CodeableConcept>,
    route: Option<CodeableConcept>,
    method: Option<CodeableConcept>,
    dose_and_rate: Vec<DoseAndRate>,
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::json::JsonWrite;

    #[test]
    fn decimal_keeps_digits() {
        let d = |s| Decimal::parse(s).map(|d| d.as_str().to_string());
        assert_eq!(d("1.50").as_deref(), Some("1.50"));
        assert_eq!(d("+007.5").as_deref(), Some("7.5"));
        assert_eq!(d(".5").as_deref(), Some("0.5"));
        assert_eq!(d("5.").as_deref(), Some("5"));
        assert_eq!(d("-0").as_deref(), Some("0"));
        assert_eq!(d("1e3").as_deref(), Some("1E3"));
        assert_eq!(d("1.2.3"), None);
        assert_eq!(d("abc"), None);
        assert_eq!(d(""), None);
        assert_eq!(d("-"), None);
        assert_eq!(d("1e"), None);
    }

    /// The one-pass check for values already in FHIR form gives what the full rewrite gives.
    #[test]
    fn canonical_fast_path_matches_the_rewrite() {
        let cases = [
            "95", "1.10", "0", "0.5", "-0.5", "-0", "-0.0", "-00", "00", "007", "0.", ".5", "5.", "1.2.3", "-", "",
            "10", "100.001", "-12.50", "1e3", "+1", "0.0", "-1", "9", "1-", "1.0.", "01.5", "-01.5", "-.5",
        ];
        for c in cases {
            let full = (|| {
                // The general path alone, for comparison.
                let s = c.trim();
                let (neg, body) = match s.as_bytes().first()? {
                    b'-' => (true, &s[1..]),
                    b'+' => (false, &s[1..]),
                    _ => (false, s),
                };
                let (int, frac) = match body.find('.') {
                    Some(i) => (&body[..i], Some(&body[i + 1..])),
                    None => (body, None),
                };
                if (int.is_empty() && frac.is_none_or(str::is_empty)) || body.contains(['e', 'E']) {
                    return None;
                }
                if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.unwrap_or("").bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let int = int.trim_start_matches('0');
                let mut out = String::from(if neg { "-" } else { "" });
                out.push_str(if int.is_empty() { "0" } else { int });
                if let Some(f) = frac.filter(|f| !f.is_empty()) {
                    out.push('.');
                    out.push_str(f);
                }
                Some(if out == "-0" { "0".to_string() } else { out })
            })();
            if Decimal::is_canonical(c) {
                assert_eq!(Some(c.to_string()), full, "{c}");
            }
            if !c.contains(['e', 'E']) {
                assert_eq!(Decimal::parse(c).map(|d| d.as_str().to_string()), full, "{c}");
            }
        }
    }

    /// Long numbers go to the heap with every digit; equal digits are equal decimals however
    /// they were written; shared text writes as a string.
    #[test]
    fn long_decimals_and_shared_text() {
        let long = "1234567890.12345678901234567890";
        let d = Decimal::parse(long).unwrap();
        assert_eq!(d.as_str(), long);
        assert_eq!(d.to_json(), long);
        assert_eq!(Decimal::parse("+0095").unwrap(), Decimal::parse("95").unwrap());
        assert_eq!(Decimal::from_i64(-42).as_str(), "-42");
        assert_eq!(format!("{:?}", Decimal::parse("1.50").unwrap()), r#"Decimal("1.50")"#);
        let q =
            Quantity { unit: Some("mg\"/dL".into()), code: Some(Shared::concat(&["m", "g"])), ..Default::default() };
        assert_eq!(q.to_json(), serde_json::to_string(&q).unwrap());
        assert_eq!(q.to_json(), r#"{"unit":"mg\"/dL","code":"mg"}"#);
        let many = "x".repeat(200);
        assert_eq!(&*Shared::concat(&["urn:uuid:", &many]), format!("urn:uuid:{many}"));
    }

    #[test]
    fn empty_elements_are_left_out() {
        let q = Quantity { value: Decimal::parse("1.50"), unit: Some("mg".into()), ..Default::default() };
        assert_eq!(serde_json::to_string(&q).unwrap(), r#"{"value":1.50,"unit":"mg"}"#);
        let id =
            Identifier { r#type: Some(CodeableConcept::default()), value: Some("a\"b".into()), ..Default::default() };
        assert_eq!(serde_json::to_string(&id).unwrap(), r#"{"value":"a\"b"}"#);
    }
}
