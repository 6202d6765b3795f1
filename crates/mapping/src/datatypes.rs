//! HL7 v2 datatypes to FHIR datatypes, following the IG's datatype maps (CX[Identifier],
//! XPN[HumanName], XAD[Address], XTN[ContactPoint], CWE[CodeableConcept], EI[Identifier],
//! HD, NM/SN[Quantity/Range/Ratio], TS/DTM[dateTime]).
//!
//! Escapes are decoded here (values reach FHIR as plain text); system URIs come from the IG's
//! table, then the sender profile, then a `urn:` derived from the sender, in that order.

use crate::context::Env;
use crate::coverage::{NoteKind, Place, TimeRecord};
use crate::time::{self, FhirTime, ZoneSource};
use crate::vocab;
use canonical::model::*;
use hl7v2::escape::Formatting;
use hl7v2::{Component, Repetition, Value};
use std::borrow::Cow;

/// Unescaped text of a value, `None` when empty or the `""` null.
pub fn txt(v: Option<Value<'_>>) -> Option<String> {
    // Padding spaces are an artefact of fixed-width senders, not data.
    // One allocation at most: an unescaped (owned) text is reused when nothing is trimmed.
    let t = v?.text()?;
    let trimmed = trim(&t);
    if trimmed.is_empty() {
        return None;
    }
    Some(match t {
        Cow::Owned(o) if o.len() == trimmed.len() => o,
        _ => trimmed.to_string(),
    })
}

/// `str::trim`, skipping its Unicode scan when both ends are visible ASCII (almost always).
pub fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(z)) if (0x21..0x7f).contains(a) && (0x21..0x7f).contains(z) => s,
        _ => s.trim(),
    }
}

/// Like [`txt`], borrowing from the message when there is nothing to unescape: for values
/// that are only looked at (codes, system names), not stored.
pub fn txt_ref<'m>(v: Option<Value<'m>>) -> Option<Cow<'m, str>> {
    let t = v?.text()?;
    let trimmed = match &t {
        Cow::Borrowed(b) => Cow::Borrowed(trim(b)),
        Cow::Owned(o) if trim(o).len() == o.len() => t,
        Cow::Owned(o) => Cow::Owned(trim(o).to_string()),
    };
    (!trimmed.is_empty()).then_some(trimmed)
}

/// Component `n` of a repetition as text.
pub fn comp(r: &Repetition<'_>, n: usize) -> Option<String> {
    txt(r.component(n).map(|c| c.value()))
}

/// Subcomponent `s` of component `n`.
pub fn sub(r: &Repetition<'_>, n: usize, s: usize) -> Option<String> {
    txt(r.component(n).and_then(|c| c.subcomponent(s)))
}

/// A repetition split into its components once, for the datatypes that read many of them
/// (reading component n scans from the start, so n reads would be quadratic): components
/// 1..N, as many as the datatype reads (splitting and holding more costs per value).
struct Comps<'m, const N: usize>([Option<Component<'m>>; N]);

impl<'m, const N: usize> Comps<'m, N> {
    fn new(r: &Repetition<'m>) -> Comps<'m, N> {
        let mut c = [None; N];
        for (i, comp) in r.components().take(N - 1).enumerate() {
            c[i + 1] = Some(comp);
        }
        Comps(c)
    }

    /// Component `n` (1..N) as text, like [`comp`].
    fn comp(&self, n: usize) -> Option<String> {
        txt(self.0[n].map(|c| c.value()))
    }

    /// Subcomponent `s` of component `n`, like [`sub`].
    fn sub(&self, n: usize, s: usize) -> Option<String> {
        txt(self.0[n].and_then(|c| c.subcomponent(s)))
    }
}

/// Formatted text (TX/FT): escapes decoded and `\.br\` rendered as a line break.
pub fn formatted(v: Value<'_>) -> String {
    v.unescaped_with(Formatting::Render).into_owned()
}

/// Makes a name safe inside a `urn:` (letters, digits and `-._` kept, others percent-encoded).
pub fn urn_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

/// System URI for an assigning authority / namespace (HD): profile, then universal id
/// (ISO OID, UUID, URI), then a `urn:` naming the authority.
pub fn hd_system(env: &Env<'_>, ns: Option<&str>, universal: Option<&str>, utype: Option<&str>) -> Option<Text> {
    if let Some(s) = ns.and_then(|n| env.profile.and_then(|p| p.identifier_system(n))) {
        return Some(s.to_string().into());
    }
    if let Some(u) = universal {
        match utype.unwrap_or("") {
            "ISO" if valid_oid(u) => return Some(format!("urn:oid:{u}").into()),
            "UUID" => return Some(format!("urn:uuid:{}", u.to_ascii_lowercase()).into()),
            "URI" if u.contains(':') => return Some(u.to_string().into()),
            _ => {}
        }
    }
    ns.or(universal).map(|n| {
        let mut s = String::with_capacity(25 + n.len());
        s.push_str("urn:arteria:v2:authority:");
        s.push_str(&urn_part(n));
        s.into()
    })
}

/// An OID as FHIR accepts it: first arc 0–2, at least three arcs, no leading zeros.
fn valid_oid(u: &str) -> bool {
    let arcs: Vec<&str> = u.split('.').collect();
    arcs.len() >= 3
        && matches!(arcs[0], "0" | "1" | "2")
        && arcs
            .iter()
            .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) && (a.len() == 1 || !a.starts_with('0')))
}

/// Coding system URI for a v2 coding system name: the IG's table, the sender profile's
/// local hint, else a `urn:` scoped to the sender (local codes differ between senders).
pub fn code_system(env: &Env<'_>, name: &str) -> Text {
    if let Some(s) = vocab::coding_system(name) {
        return s;
    }
    if let Some(s) = env.profile.and_then(|p| p.code_system(name)) {
        return s.to_string().into();
    }
    local_system(env, name)
}

/// CWE/CE/CNE/CF → CodeableConcept (primary and alternate codings, original text).
pub fn cwe(env: &Env<'_>, r: &Repetition<'_>) -> Option<CodeableConcept> {
    // Split once: reading component n from the start for each of 13 positions is quadratic.
    let mut parts: [Option<Value<'_>>; 14] = [None; 14];
    for (i, c) in r.components().take(13).enumerate() {
        parts[i + 1] = Some(c.value());
    }
    let comp = |_: &Repetition<'_>, n: usize| txt(parts[n]);
    // Room for the codes sent (usually one; a first push would reserve four).
    let codes = [1, 4, 10].iter().filter(|&&n| parts[n].is_some_and(|v| !v.is_empty())).count();
    let mut cc = CodeableConcept { coding: Vec::with_capacity(codes), text: None };
    for (code_n, text_n, sys_n, ver_n) in [(1, 2, 3, 7), (4, 5, 6, 8), (10, 11, 12, 13)] {
        let code = comp(r, code_n);
        let display = comp(r, text_n);
        if code.is_none() && display.is_none() {
            continue;
        }
        let Some(code) = code else {
            // Text without a code: the IG puts it in CodeableConcept.text.
            if cc.text.is_none() {
                cc.text = display;
            }
            continue;
        };
        let system = txt_ref(parts[sys_n]).map(|s| code_system(env, &s));
        cc.coding.push(Coding {
            system,
            version: comp(r, ver_n),
            code: Some(code.into()),
            display: display.map(Text::from),
        });
    }
    if let Some(t) = comp(r, 9) {
        cc.text = Some(t);
    }
    (cc != CodeableConcept::default()).then_some(cc)
}

/// A code from an HL7 table (IS/ID) as a CodeableConcept in the `v2-nnnn` system when the
/// table holds it (`true`), else in the sender's local system (`false`, for the caller to
/// report).
pub fn table_code(env: &Env<'_>, code: &str, table: &str) -> (CodeableConcept, bool) {
    if vocab::in_table(table, code) {
        (CodeableConcept::code(vocab::v2_table(table), code.to_string(), None), true)
    } else {
        (CodeableConcept::code(local_system(env, &format!("HL7{table}")), code.to_string(), None), false)
    }
}

/// CWE where the v2 table is implied: a code without a system goes in `v2-<table>` when the
/// table holds it, else in the sender's local system — a local code is never passed off as
/// an HL7 table code (and that is reported by the caller's coverage as an unknown code).
pub fn cwe_table(env: &Env<'_>, r: &Repetition<'_>, table: &str) -> Option<CodeableConcept> {
    let mut cc = cwe(env, r)?;
    let table_system = vocab::v2_table(table);
    for c in &mut cc.coding {
        let code = c.code.clone().unwrap_or_default();
        match c.system.as_deref() {
            None if vocab::in_table(table, &code) => c.system = Some(table_system.clone().into()),
            None => c.system = Some(local_system(env, &format!("HL7{table}"))),
            Some(sys) if sys.starts_with("http://terminology.hl7.org/CodeSystem/v2-") => {
                let t = &sys["http://terminology.hl7.org/CodeSystem/v2-".len()..];
                if !vocab::in_table(t, &code) {
                    c.system = Some(local_system(env, &format!("HL7{t}")));
                }
            }
            Some(_) => {}
        }
    }
    Some(cc)
}

/// The sender-scoped system for codes the sender labels with a name we cannot trust as-is.
pub fn local_system(env: &Env<'_>, name: &str) -> Text {
    format!("urn:arteria:v2:codesystem:{}:{}", urn_part(&env.sender_key), urn_part(name)).into()
}

/// A language CWE (PID-15 and friends) → CodeableConcept with BCP 47 codes only; anything
/// else is kept as text.
pub fn language(env: &Env<'_>, r: &Repetition<'_>) -> Option<CodeableConcept> {
    let cc = cwe(env, r)?;
    let mut out = CodeableConcept { text: cc.text.clone(), ..Default::default() };
    let mut texts = Vec::new();
    for c in cc.coding {
        match c.code.as_deref().and_then(vocab::bcp47) {
            Some(tag) => out.coding.push(Coding {
                system: Some("urn:ietf:bcp:47".into()),
                code: Some(tag.into()),
                display: c.display,
                version: None,
            }),
            None => texts.extend(c.display.or(c.code)),
        }
    }
    if out.text.is_none() && !texts.is_empty() {
        out.text = Some(texts.join(" / "));
    }
    (out != CodeableConcept::default()).then_some(out)
}

/// CX → Identifier (CX-1 value, CX-4 authority → system, CX-5 → type via table 0203).
pub fn cx(env: &Env<'_>, r: &Repetition<'_>) -> Option<Identifier> {
    let c = Comps::<9>::new(r);
    let value = c.comp(1)?;
    let system = hd_system(env, c.sub(4, 1).as_deref(), c.sub(4, 2).as_deref(), c.sub(4, 3).as_deref());
    let r#type = c.comp(5).map(|t| {
        if vocab::identifier_type_known(&t) {
            CodeableConcept::code("http://terminology.hl7.org/CodeSystem/v2-0203", t, None)
        } else {
            CodeableConcept::text(t)
        }
    });
    let period = period_of(env, c.comp(7).as_deref(), c.comp(8).as_deref(), None);
    Some(Identifier { r#type, system, value: Some(value), period, ..Default::default() })
}

/// EI → Identifier (entity id, namespace/universal id → system).
pub fn ei(env: &Env<'_>, r: &Repetition<'_>) -> Option<Identifier> {
    let c = Comps::<5>::new(r);
    let value = c.comp(1)?;
    let system = hd_system(env, c.comp(2).as_deref(), c.comp(3).as_deref(), c.comp(4).as_deref());
    Some(Identifier { system, value: Some(value), ..Default::default() })
}

/// EI → Identifier with a type code from table 0203 (PLAC, FILL, ACSN …).
pub fn ei_typed(env: &Env<'_>, r: &Repetition<'_>, type_code: &str) -> Option<Identifier> {
    let mut id = ei(env, r)?;
    id.r#type =
        Some(CodeableConcept::code("http://terminology.hl7.org/CodeSystem/v2-0203", type_code.to_string(), None));
    Some(id)
}

/// XPN → HumanName.
pub fn xpn(r: &Repetition<'_>) -> Option<HumanName> {
    let c = Comps::<15>::new(r);
    let mut n = HumanName { family: c.sub(1, 1), ..Default::default() };
    n.given.extend(c.comp(2));
    if let Some(middle) = c.comp(3) {
        n.given.extend(middle.split(' ').filter(|s| !s.is_empty()).map(String::from));
    }
    n.suffix.extend(c.comp(4));
    n.prefix.extend(c.comp(5));
    n.suffix.extend(c.comp(6));
    n.r#use = c.comp(7).and_then(|c| vocab::name_use(&c)).map(Text::from);
    n.suffix.extend(c.comp(14));
    (n != HumanName::default()).then_some(n)
}

/// XCN (components 2..7, 14) → HumanName.
pub fn xcn_name(r: &Repetition<'_>) -> Option<HumanName> {
    let c = Comps::<22>::new(r);
    let mut n = HumanName { family: c.sub(2, 1), ..Default::default() };
    n.given.extend(c.comp(3));
    if let Some(middle) = c.comp(4) {
        n.given.extend(middle.split(' ').filter(|s| !s.is_empty()).map(String::from));
    }
    n.suffix.extend(c.comp(5));
    n.prefix.extend(c.comp(6));
    n.suffix.extend(c.comp(7));
    n.suffix.extend(c.comp(21));
    (n != HumanName::default()).then_some(n)
}

/// XAD → Address.
pub fn xad(r: &Repetition<'_>) -> Option<Address> {
    let c = Comps::<20>::new(r);
    let mut a = Address::default();
    a.line.extend(c.sub(1, 1));
    a.line.extend(c.comp(2));
    a.line.extend(c.comp(19));
    a.city = c.comp(3);
    a.state = c.comp(4);
    a.postal_code = c.comp(5);
    a.country = c.comp(6);
    if let Some(t) = c.comp(7) {
        let (u, ty) = vocab::address_use(&t);
        a.r#use = u.map(Text::from);
        a.r#type = ty.map(Text::from);
    }
    a.district = c.comp(9);
    (a != Address::default()).then_some(a)
}

/// XTN → ContactPoint.
pub fn xtn(r: &Repetition<'_>) -> Option<ContactPoint> {
    let c = Comps::<13>::new(r);
    let use_code = c.comp(2);
    let equip = c.comp(3);
    let email = c.comp(4);
    let mut system = equip.as_deref().and_then(vocab::telecom_system);
    let value = if let Some(e) = email.filter(|_| equip.as_deref().is_none_or(|q| q == "Internet" || q == "X.400")) {
        system = Some("email");
        Some(e)
    } else if let Some(local) = c.comp(7) {
        let mut v = String::new();
        if let Some(cc) = c.comp(5) {
            v.push('+');
            v.push_str(&cc);
            v.push(' ');
        }
        if let Some(area) = c.comp(6) {
            v.push('(');
            v.push_str(&area);
            v.push_str(") ");
        }
        v.push_str(&local);
        if let Some(ext) = c.comp(8) {
            v.push_str(" ext. ");
            v.push_str(&ext);
        }
        Some(v)
    } else {
        c.comp(12).or_else(|| c.comp(1))
    }?;
    let r#use = use_code.as_deref().and_then(vocab::telecom_use);
    if system.is_none() {
        system = Some(if use_code.as_deref() == Some("NET") || value.contains('@') { "email" } else { "phone" });
    }
    Some(ContactPoint {
        system: system.map(Into::into),
        value: Some(value),
        r#use: r#use.map(Into::into),
        ..Default::default()
    })
}

/// A v2 time value → FHIR dateTime text; records the original, notes zone fallback and
/// invalid values (which are then left out, reported).
pub fn ts(env: &Env<'_>, v: Option<Value<'_>>, place: Place) -> Option<FhirTime> {
    ts_with(env, v, place, |t, _| t.clone())
}

/// Like [`ts`], the FHIR text only, shared with the other values of the same time in the
/// message (OBX-14 repeats in every result).
pub fn ts_shared(env: &Env<'_>, v: Option<Value<'_>>, place: Place) -> Option<Shared> {
    ts_with(env, v, place, |_, converted| Shared::from(converted.clone()))
}

/// The conversion behind [`ts`] and [`ts_shared`]; `out` takes what the caller keeps of it.
fn ts_with<R>(
    env: &Env<'_>,
    v: Option<Value<'_>>,
    place: Place,
    out: impl FnOnce(&FhirTime, &std::sync::Arc<str>) -> R,
) -> Option<R> {
    let v = v?;
    // TS has the time in component 1 (component 2 is the old precision indicator).
    let first = v.as_str().split(env.delims.component as char).next().unwrap_or("");
    if first.is_empty() || first == "\"\"" {
        return None;
    }
    let hit = env.last_time.borrow().as_ref().is_some_and(|(raw, ..)| &**raw == first);
    if !hit {
        match time::convert(first, env.zone) {
            Ok(t) => {
                let converted = std::sync::Arc::<str>::from(t.value.as_str());
                *env.last_time.borrow_mut() = Some((std::sync::Arc::<str>::from(first), t, converted));
            }
            Err(e) => {
                env.tracker.note(NoteKind::InvalidValue, place, e.to_string());
                return None;
            }
        }
    }
    let cached = env.last_time.borrow();
    match cached.as_ref() {
        Some((original, t, converted)) => {
            if t.zone == ZoneSource::Fallback {
                env.tracker.note(
                    NoteKind::ZoneAssumed,
                    place.clone(),
                    "time without offset and no sender time zone: fallback zone applied",
                );
            }
            env.tracker.time(TimeRecord {
                place,
                original: original.clone(),
                converted: converted.clone(),
                zone: t.zone,
            });
            Some(out(t, converted))
        }
        None => unreachable!("converted above"),
    }
}

/// A FHIR `instant` from a v2 time, when precise enough (else `None`, noted).
pub fn instant(env: &Env<'_>, v: Option<Value<'_>>, place: Place) -> Option<String> {
    let t = ts(env, v, place.clone())?;
    if t.is_instant() {
        Some(t.value)
    } else {
        env.tracker.note(NoteKind::Info, place, "value has no time of day; an instant cannot be formed");
        None
    }
}

fn period_of(env: &Env<'_>, start: Option<&str>, end: Option<&str>, place: Option<Place>) -> Option<Period> {
    let conv = |s: Option<&str>| {
        let s = s?;
        match time::convert(s, env.zone) {
            Ok(t) => Some(t.value),
            Err(e) => {
                if let Some(p) = &place {
                    env.tracker.note(NoteKind::InvalidValue, p.clone(), e.to_string());
                }
                None
            }
        }
    };
    let p = Period { start: conv(start), end: conv(end) };
    (p != Period::default()).then_some(p)
}

/// Units as a quantity carries them: (unit text, system, code), the texts shared between the
/// quantities made with them (an OBX's value and both ends of its range).
pub type Units = (Option<Shared>, Option<Text>, Option<Shared>);

/// Units CWE (OBX-6 and friends) → (unit text, system, code). UCUM is claimed only when the
/// sender says the unit is UCUM (or the code is a plain UCUM-safe symbol from an unnamed
/// system is *not* assumed) — UCUM normalisation is the terminology stage's job.
pub fn units(env: &Env<'_>, r: &Repetition<'_>) -> Units {
    // The units of a message's results repeat (every mg/dL of a panel): converted once per
    // distinct text and shared; the conversion depends only on the text and the sender.
    let raw = r.as_str();
    if let Some((_, u)) = env.units_seen.borrow().iter().find(|(k, _)| **k == *raw) {
        return u.clone();
    }
    let mut parts: [Option<Value<'_>>; 4] = [None; 4];
    for (i, c) in r.components().take(3).enumerate() {
        parts[i + 1] = Some(c.value());
    }
    let shared = |n: usize| txt_ref(parts[n]).map(|t| Shared::from(&*t));
    let code = shared(1);
    let text = shared(2);
    let u = match (code, txt_ref(parts[3])) {
        (Some(c), Some(s)) => (text.or_else(|| Some(c.clone())), Some(code_system(env, &s)), Some(c)),
        (code, _) => (text.or(code), None, None),
    };
    let mut cache = env.units_seen.borrow_mut();
    if cache.len() < 16 {
        cache.push((raw.into(), u.clone()));
    }
    u
}

/// NM text with units → Quantity; `None` when not a number.
pub fn quantity(num: &str, unit: &Units) -> Option<Quantity> {
    let value = Decimal::parse(num)?;
    Some(Quantity {
        value: Some(value),
        unit: unit.0.clone(),
        system: unit.1.clone(),
        code: unit.2.clone(),
        comparator: None,
    })
}

/// ED component 5 (data) with encoding → Attachment.
pub fn ed(r: &Repetition<'_>) -> Option<Attachment> {
    let content_type = match (comp(r, 2), comp(r, 3)) {
        (Some(t), Some(s)) => Some(media_type(&t, &s)),
        (Some(t), None) => Some(media_type(&t, "")),
        _ => None,
    };
    let encoding = comp(r, 4).unwrap_or_default();
    let raw = r.component(5).map(|c: Component<'_>| c.value())?;
    let text = raw.unescaped();
    let data = match encoding.as_str() {
        "Base64" | "B64" | "base64" => {
            let d: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            // Declared Base64 but not Base64: the text itself is carried (encoded), not lost.
            if is_base64(&d) { d } else { base64(text.as_bytes()) }
        }
        "Hex" | "HEX" => base64(&hex_decode(&text)?),
        _ => base64(text.as_bytes()),
    };
    if data.is_empty() {
        return None;
    }
    Some(Attachment { content_type, data: Some(data), ..Default::default() })
}

fn media_type(t: &str, sub: &str) -> String {
    let main = match t {
        "AP" | "application" => "application",
        "IM" | "image" => "image",
        "AU" | "audio" => "audio",
        "TEXT" | "text" => "text",
        "video" => "video",
        "multipart" => "multipart",
        _ => "application",
    };
    let sub = match sub.to_ascii_lowercase().as_str() {
        "" => "octet-stream".to_string(),
        "pdf" | "x-pdf" => "pdf".into(),
        "jpg" | "jpeg" => "jpeg".into(),
        "rtf" => "rtf".into(),
        "html" => "html".into(),
        "plain" | "txt" => "plain".into(),
        "xml" => "xml".into(),
        "png" => "png".into(),
        "tiff" | "tif" => "tiff".into(),
        "octet-stream" => "octet-stream".into(),
        other if other.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'+') => {
            other.to_string()
        }
        _ => "octet-stream".into(),
    };
    format!("{main}/{sub}")
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let b: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2).map(|p| Some(((p[0] as char).to_digit(16)? * 16 + (p[1] as char).to_digit(16)?) as u8)).collect()
}

fn is_base64(s: &str) -> bool {
    !s.is_empty()
        && s.len().is_multiple_of(4)
        && s.trim_end_matches('=').bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        && s.len() - s.trim_end_matches('=').len() <= 2
}

/// Standard base64 with padding (RFC 4648), for FHIR `base64Binary`.
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for ch in bytes.chunks(3) {
        let n =
            (u32::from(ch[0]) << 16) | (u32::from(*ch.get(1).unwrap_or(&0)) << 8) | u32::from(*ch.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if ch.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if ch.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Reference range text (OBX-7) → low/high where it parses ("3.5-5.0", ">60", "<5", "<=5"),
/// always keeping the text.
pub fn reference_range(text: &str, unit: Units) -> (Option<Quantity>, Option<Quantity>) {
    let t = trim(text);
    let d = |s: &str| Decimal::parse(trim(s));
    let (low, high) = if let Some(rest) = t.strip_prefix(">=").or_else(|| t.strip_prefix('>')) {
        // "> 60" is exclusive, but FHIR ranges are inclusive: keep only when it is ">=",
        // else the text alone carries it.
        if t.starts_with(">=") { (d(rest), None) } else { (None, None) }
    } else if let Some(rest) = t.strip_prefix("<=").or_else(|| t.strip_prefix('<')) {
        if t.starts_with("<=") { (None, d(rest)) } else { (None, None) }
    } else {
        // "a-b" where a may itself be negative: split at a '-' that follows a digit.
        let bytes = t.as_bytes();
        (1..bytes.len())
            .filter(|&i| bytes[i] == b'-' && (bytes[i - 1].is_ascii_digit() || bytes[i - 1] == b' '))
            .map(|i| (d(&t[..i]), d(&t[i + 1..])))
            .find(|(lo, hi)| lo.is_some() && hi.is_some())
            .unwrap_or((None, None))
    };
    // The units are the caller's last use: the last quantity takes them, the first a copy.
    let with = |value: Decimal, (unit, system, code): Units| Quantity {
        value: Some(value),
        unit,
        system,
        code,
        comparator: None,
    };
    match (low, high) {
        (Some(lo), Some(hi)) => (Some(with(lo, unit.clone())), Some(with(hi, unit))),
        (Some(lo), None) => (Some(with(lo, unit)), None),
        (None, hi) => (None, hi.map(|v| with(v, unit))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Env;
    use crate::coverage::Tracker;
    use crate::time::ZoneRule;
    use hl7v2::{Delimiters, Field};

    fn field(raw: &str) -> Field<'static> {
        let bytes: &'static [u8] = Box::leak(
            format!("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rZZZ|{raw}").into_bytes().into_boxed_slice(),
        );
        let msg: &'static hl7v2::Message<'static> = Box::leak(Box::new(hl7v2::Message::parse(bytes).unwrap()));
        msg.segment("ZZZ").unwrap().field(1).unwrap()
    }

    fn with_env<R>(f: impl FnOnce(&Env<'_>) -> R) -> R {
        let t = Tracker::new(2);
        let z = ZoneRule::named("Europe/Berlin", ZoneSource::Profile).unwrap();
        let env = Env::for_test(&t, &z, Delimiters::default());
        f(&env)
    }

    #[test]
    fn cx_with_type_and_authority() {
        with_env(|env| {
            let f = field("12345^^^HOSP&2.16.840.1.113883.19.5&ISO^MR~987^^^SSA^SS");
            let id = cx(env, &f.repetition(1).unwrap()).unwrap();
            assert_eq!(id.value.as_deref(), Some("12345"));
            assert_eq!(id.system.as_deref(), Some("urn:oid:2.16.840.1.113883.19.5"));
            assert_eq!(id.r#type.unwrap().coding[0].code.as_deref(), Some("MR"));
            let ss = cx(env, &f.repetition(2).unwrap()).unwrap();
            assert_eq!(ss.system.as_deref(), Some("urn:arteria:v2:authority:SSA"));
        });
    }

    #[test]
    fn xpn_xad_xtn_with_escapes() {
        let f = field("O\\T\\BRIEN^MARY^ANN B^JR^DR^^L");
        let n = xpn(&f.repetition(1).unwrap()).unwrap();
        assert_eq!(n.family.as_deref(), Some("O&BRIEN"));
        assert_eq!(n.given, ["MARY", "ANN", "B"]);
        assert_eq!((n.prefix[0].as_str(), n.suffix[0].as_str(), n.r#use), ("DR", "JR", Some("usual".into())));
        let f = field("1 MAIN ST\\F\\APT 2^^SPRINGFIELD^IL^62701^USA^H");
        let a = xad(&f.repetition(1).unwrap()).unwrap();
        assert_eq!(a.line, ["1 MAIN ST|APT 2"]);
        assert_eq!((a.city.as_deref(), a.r#use.as_deref()), (Some("SPRINGFIELD"), Some("home")));
        let f = field("^PRN^PH^^1^555^1234567~^NET^Internet^a@b.example");
        let p = xtn(&f.repetition(1).unwrap()).unwrap();
        assert_eq!(
            (p.value.as_deref(), p.r#use.as_deref(), p.system.as_deref()),
            (Some("+1 (555) 1234567"), Some("home"), Some("phone"))
        );
        let e = xtn(&f.repetition(2).unwrap()).unwrap();
        assert_eq!((e.value.as_deref(), e.system.as_deref()), (Some("a@b.example"), Some("email")));
    }

    #[test]
    fn cwe_systems() {
        with_env(|env| {
            let f = field("2345-7^Glucose^LN^GLU^Glucose lab^99LAB");
            let cc = cwe(env, &f.repetition(1).unwrap()).unwrap();
            assert_eq!(cc.coding[0].system.as_deref(), Some("http://loinc.org"));
            assert_eq!(cc.coding[1].system.as_deref(), Some("urn:arteria:v2:codesystem:TEST:99LAB"));
            let f = field("^free text only");
            assert_eq!(cwe(env, &f.repetition(1).unwrap()).unwrap().text.as_deref(), Some("free text only"));
        });
    }

    /// Units repeat within a message: the second of the same text is the first's (shared),
    /// another text is converted on its own.
    #[test]
    fn units_converted_once_per_text() {
        with_env(|env| {
            let f = field("mg/dL^milligram per deciliter^UCUM~mmol/L^^UCUM~mg/dL^milligram per deciliter^UCUM");
            let a = units(env, &f.repetition(1).unwrap());
            assert_eq!(
                (a.0.as_deref(), a.1.as_deref(), a.2.as_deref()),
                (Some("milligram per deciliter"), Some("http://unitsofmeasure.org"), Some("mg/dL"))
            );
            let b = units(env, &f.repetition(2).unwrap());
            assert_eq!((b.0.as_deref(), b.2.as_deref()), (Some("mmol/L"), Some("mmol/L")));
            assert_eq!(units(env, &f.repetition(3).unwrap()), a);
            assert_eq!(env.units_seen.borrow().len(), 2);
        });
    }

    #[test]
    fn trim_is_str_trim() {
        for s in
            ["", " ", "a", " a ", "ab", "a b", "\tx\r", "\u{3000}x\u{3000}", "é ", " é", "x\u{a0}", "~!", "\u{1f}x"]
        {
            assert_eq!(trim(s), s.trim(), "{s:?}");
        }
    }

    #[test]
    fn ranges_and_base64() {
        let u = (Some("mg/dL".into()), None, None);
        let (lo, hi) = reference_range("3.5-5.0", u.clone());
        assert_eq!(
            (lo.unwrap().value.unwrap().as_str().to_string(), hi.unwrap().value.unwrap().as_str().to_string()),
            ("3.5".into(), "5.0".into())
        );
        let (lo, hi) = reference_range("-1.5 - 2", u.clone());
        assert_eq!(lo.unwrap().value.unwrap().as_str(), "-1.5");
        assert!(hi.is_some());
        assert_eq!(reference_range(">60", u.clone()), (None, None));
        assert!(reference_range(">=60", u.clone()).0.is_some());
        assert_eq!(reference_range("negative", u.clone()), (None, None));
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"hi!"), "aGkh");
        assert_eq!(base64(b""), "");
    }
}
