//! Enrichment read straight from a resource's JSON text, without building a
//! `serde_json::Value`: the enrich stage spent most of its time parsing, cloning, comparing and
//! re-serialising values. The text is indexed once ([`canonical::json_text`], members sorted as
//! a `Value` map sorts them), walked exactly as [`super::FhirJson`] walks a `Value`, and when
//! something was added it is written back compact with every member where it stood and the
//! added ones after them (`KEEP_ORDER`) — the same document as the enriched `Value`, but in the
//! model's field order when it came in that order (the Coding's `display`, the Quantity's
//! `unit`, `system`, `code` and new codings are written in the model's order too), so the
//! typed record is read in one pass and a person reads `resourceType` first. Text the index
//! does not reproduce exactly makes [`Doc::parse`] give `None`, and the caller goes the `Value`
//! way (keys sorted).

use std::borrow::Cow;

use canonical::json_text::{self, Hooks, Index, Kind, Node, Patch, as_f64};

use super::{CodeableConcept, Coding, Enrichable, FhirCoding, Quantity};

/// Member names the walk reads, found once while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Tag {
    #[default]
    Other,
    Coding,
    Value,
    Unit,
    Code,
    System,
    Display,
    Version,
    UserSelected,
    Text,
}

impl Tag {
    fn of(key: &[u8]) -> Tag {
        match key {
            b"coding" => Tag::Coding,
            b"value" => Tag::Value,
            b"unit" => Tag::Unit,
            b"code" => Tag::Code,
            b"system" => Tag::System,
            b"display" => Tag::Display,
            b"version" => Tag::Version,
            b"userSelected" => Tag::UserSelected,
            b"text" => Tag::Text,
            _ => Tag::Other,
        }
    }
}

/// An object `FhirJson` takes for a CodeableConcept: it has a `coding` array.
const CONCEPT: u8 = 1;
/// An object `FhirJson` takes for a Quantity: a finite numeric `value`, a `unit`, `code` or
/// `system`, and no `coding`.
const QUANTITY: u8 = 2;
/// Some value below is a concept, or a quantity: only those subtrees are walked.
const CONCEPT_BELOW: u8 = 4;
const QUANTITY_BELOW: u8 = 8;

/// What the walk keeps per node.
#[derive(Debug, Clone, Copy, Default)]
struct Ann {
    /// The member name, when it is one the walk looks for.
    tag: Tag,
    /// [`CONCEPT`], [`QUANTITY`] and what lies below.
    flags: u8,
}

/// Tags members and flags concepts and quantities while the text is read.
struct Tagger;

impl Hooks for Tagger {
    type Extra = Ann;
    const KEEP_ORDER: bool = true;

    #[inline]
    fn member(&mut self, nodes: &mut [Node<Ann>], _text: &str, name: &[u8], child: u32) -> bool {
        nodes[child as usize].extra.tag = Tag::of(name);
        false
    }

    #[inline]
    fn closed(&mut self, nodes: &mut [Node<Ann>], text: &str, node: u32, kids: &[u32]) {
        let flags = match nodes[node as usize].kind {
            Kind::Object => object_flags(nodes, text, kids),
            _ => below(nodes, kids),
        };
        nodes[node as usize].extra.flags = flags;
    }
}

/// What lies below `kids`.
fn below(nodes: &[Node<Ann>], kids: &[u32]) -> u8 {
    let mut flags = 0;
    for &c in kids {
        let f = nodes[c as usize].extra.flags;
        if f & (CONCEPT | CONCEPT_BELOW) != 0 {
            flags |= CONCEPT_BELOW;
        }
        if f & (QUANTITY | QUANTITY_BELOW) != 0 {
            flags |= QUANTITY_BELOW;
        }
    }
    flags
}

/// Whether the object with members `kids` is a concept or a quantity, as `FhirJson` decides
/// it, and what lies below.
fn object_flags(nodes: &[Node<Ann>], text: &str, kids: &[u32]) -> u8 {
    let (mut coding, mut coding_array, mut value, mut unit_code_system) = (false, false, None, false);
    for &c in kids {
        let n = &nodes[c as usize];
        match n.extra.tag {
            Tag::Coding => {
                coding = true;
                coding_array = n.kind == Kind::Array;
            }
            Tag::Value => value = Some(n),
            Tag::Unit | Tag::Code | Tag::System => unit_code_system = true,
            _ => {}
        }
    }
    let value = unit_code_system
        && !coding
        && value.is_some_and(|n| as_f64(n.kind, &text[n.start as usize..n.end as usize]).is_some());
    let mut flags = below(nodes, kids);
    if coding_array {
        flags |= CONCEPT;
    }
    if value {
        flags |= QUANTITY;
    }
    flags
}

/// One member added to an object (`key` is absent there) or one item appended to an array;
/// `json` is its serde_json text.
struct Edit {
    node: u32,
    key: &'static str,
    json: String,
}

struct Edits(Vec<Edit>);

impl Patch<Ann> for Edits {
    fn added<'p>(&'p self, n: u32, out: &mut Vec<(&'p str, &'p str)>) {
        out.extend(self.0.iter().filter(|e| e.node == n).map(|e| (e.key, e.json.as_str())));
    }
}

type Scratch = json_text::Scratch<Ann>;

thread_local! {
    /// The index's buffers, kept per thread between resources (an event has a few dozen).
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::default();
}

/// A resource's JSON text, indexed, with what enrichment added to it.
pub(super) struct Doc<'a> {
    index: Index<'a, Ann>,
    edits: Edits,
    /// Kept only to go back to [`SCRATCH`].
    scratch: Scratch,
}

impl Drop for Doc<'_> {
    fn drop(&mut self) {
        self.index.recycle(&mut self.scratch);
        let scratch = std::mem::take(&mut self.scratch);
        let _ = SCRATCH.try_with(|s| s.set(scratch));
    }
}

impl<'a> Doc<'a> {
    /// Indexes `text`, or `None` when it is not text the index reproduces exactly.
    pub(super) fn parse(text: &'a str) -> Option<Doc<'a>> {
        let mut scratch = SCRATCH.with(std::cell::Cell::take);
        match Index::parse(text, &mut Tagger, &mut scratch) {
            Some(index) => Some(Doc { index, edits: Edits(Vec::new()), scratch }),
            None => {
                let _ = SCRATCH.try_with(|s| s.set(scratch));
                None
            }
        }
    }

    fn node(&self, n: u32) -> &Node<Ann> {
        self.index.node(n)
    }

    fn kids(&self, n: u32) -> &[u32] {
        self.index.kids(n)
    }

    fn raw(&self, n: u32) -> &'a str {
        self.index.raw(n)
    }

    /// The member of object `n` named `tag`.
    fn get(&self, n: u32, tag: Tag) -> Option<u32> {
        self.index.find(n, |c| c.extra.tag == tag)
    }

    fn str_field(&self, n: u32, tag: Tag) -> Option<String> {
        self.get(n, tag).and_then(|c| self.index.as_str(c)).map(Cow::into_owned)
    }

    /// Whether object `n` has no member named `tag` (where enrichment may add one).
    fn absent(&self, n: u32, tag: Tag) -> bool {
        self.get(n, tag).is_none()
    }

    fn edit(&mut self, node: u32, key: &'static str, json: String) {
        self.index.changed(node);
        self.edits.0.push(Edit { node, key, json });
    }

    /// Calls `f` on each value with `flag` ([`CONCEPT`] or [`QUANTITY`]) in the order and with
    /// the paths `super::walk` gives a `Value` (members in key order), not below one.
    fn walk(&mut self, n: u32, flag: u8, path: &mut String, f: &mut dyn FnMut(&mut Doc<'a>, &str, u32)) {
        let below = flag << 2;
        let node = *self.node(n);
        if node.extra.flags & flag != 0 {
            f(self, path, n);
            return;
        }
        if node.extra.flags & below == 0 {
            return;
        }
        let len = path.len();
        for i in 0..node.len {
            let c = self.kids(n)[i as usize];
            if self.node(c).extra.flags & (flag | below) == 0 {
                continue;
            }
            match node.kind {
                Kind::Object => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(self.index.key(c));
                }
                _ => push_index(path, i),
            }
            self.walk(c, flag, path, f);
            path.truncate(len);
        }
    }

    /// Whether enrichment added anything.
    pub(super) fn changed(&self) -> bool {
        !self.edits.0.is_empty()
    }

    /// The enriched text: compact, members where they stood, added ones after them.
    pub(super) fn write(&self) -> String {
        let mut out = String::with_capacity(self.index.text().len() + 64 * self.edits.0.len());
        self.index.emit(0, &self.edits, &mut out);
        out
    }
}

/// `[i]`, as `format!` would write it, without its machinery.
pub(super) fn push_index(path: &mut String, i: u32) {
    path.push('[');
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut i = i;
    loop {
        at -= 1;
        digits[at] = b'0' + (i % 10) as u8;
        i /= 10;
        if i == 0 {
            break;
        }
    }
    path.extend(digits[at..].iter().map(|&d| d as char));
    path.push(']');
}

impl Enrichable for Doc<'_> {
    fn visit_concepts(&mut self, f: &mut dyn FnMut(&str, &mut CodeableConcept)) {
        self.walk(0, CONCEPT, &mut String::new(), &mut |doc, path, n| {
            let Some(arr) = doc.get(n, Tag::Coding) else { return };
            let items: Vec<u32> = doc.kids(arr).to_vec();
            let mut cc = CodeableConcept {
                coding: items
                    .iter()
                    .map(|&c| Coding {
                        system: doc.str_field(c, Tag::System),
                        version: doc.str_field(c, Tag::Version),
                        code: doc.str_field(c, Tag::Code),
                        display: doc.str_field(c, Tag::Display),
                        user_selected: doc.get(c, Tag::UserSelected).and_then(|u| match doc.raw(u) {
                            "true" => Some(true),
                            "false" => Some(false),
                            _ => None,
                        }),
                    })
                    .collect(),
                text: doc.str_field(n, Tag::Text),
            };
            f(path, &mut cc);
            // As `FhirJson`: displays filled where the member is absent, new codings appended.
            for (i, c) in cc.coding.iter().enumerate() {
                match items.get(i) {
                    Some(&item) => {
                        if let Some(d) = &c.display
                            && doc.node(item).kind == Kind::Object
                            && doc.absent(item, Tag::Display)
                        {
                            doc.edit(item, "display", json_text::quoted(d));
                        }
                    }
                    None => {
                        // In the model's order (system, version, code, display, userSelected).
                        let json = serde_json::to_string(&FhirCoding::from(c)).unwrap_or_else(|_| "null".into());
                        doc.edit(arr, "", json);
                    }
                }
            }
        });
    }

    fn visit_quantities(&mut self, f: &mut dyn FnMut(&str, &mut Quantity)) {
        self.walk(0, QUANTITY, &mut String::new(), &mut |doc, path, n| {
            let value = doc.get(n, Tag::Value).and_then(|v| as_f64(doc.node(v).kind, doc.raw(v)));
            let mut q = Quantity {
                value,
                unit: doc.str_field(n, Tag::Unit),
                system: doc.str_field(n, Tag::System),
                code: doc.str_field(n, Tag::Code),
            };
            f(path, &mut q);
            for (k, tag, val) in
                [("unit", Tag::Unit, &q.unit), ("system", Tag::System, &q.system), ("code", Tag::Code, &q.code)]
            {
                if let Some(val) = val
                    && doc.absent(n, tag)
                {
                    doc.edit(n, k, json_text::quoted(val));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::{EnrichOptions, Enricher, FhirJson, enrich_fhir_text};
    use crate::ops::Terminology;
    use serde_json::Value;

    /// What the `Value` way gives: the report, and the new text when the value changed.
    fn by_value(e: &Enricher<'_>, text: &str) -> (crate::enrich::EnrichmentReport, Option<String>) {
        let mut v: Value = serde_json::from_str(text).unwrap();
        let before = v.clone();
        let report = e.enrich(&mut FhirJson(&mut v));
        (report, (v != before).then(|| serde_json::to_string(&v).unwrap()))
    }

    /// The text way gives the `Value` way's report and document; when it was taken, every
    /// object keeps its members in the text's order, anything added after them.
    fn check(e: &Enricher<'_>, text: &str) {
        let got = enrich_fhir_text(e, text).unwrap();
        let (report, json) = by_value(e, text);
        assert_eq!(got.report, report, "report for {text}");
        assert_eq!(got.json.is_some(), json.is_some(), "changed or not, for {text}");
        let (Some(got), Some(want)) = (got.json, json) else { return };
        let value = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        assert_eq!(value(&got), value(&want), "document for {text}");
        if Doc::parse(text).is_some() {
            let before: std::collections::HashMap<String, Vec<String>> =
                json_text::member_order(text).unwrap().into_iter().collect();
            for (at, keys) in json_text::member_order(&got).unwrap() {
                // Objects that are new (codings added) have nothing to keep.
                if let Some(old) = before.get(&at) {
                    assert!(keys.starts_with(old), "{at}: {keys:?} does not keep {old:?}, for {text} → {got}");
                }
            }
        } else {
            assert_eq!(got, want, "the Value way's own text, for {text}");
        }
    }

    fn enricher(t: &Terminology) -> Enricher<'_> {
        Enricher::new(t, EnrichOptions { sender: Some("LAB|NORTH".into()), ..EnrichOptions::default() })
    }

    const TRICKY: &[&str] = &[
        // Struct order (unsorted), as the mapping writes resources.
        r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"valueQuantity":{"value":95,"unit":"mg/dl"},"referenceRange":[{"low":{"value":1.00,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"},"high":{"value":5.10e+1,"unit":"mmol/L"}}]}"#,
        // Whitespace everywhere, as a person writes it.
        "{ \"resourceType\" : \"Observation\",\n \"code\": {\"coding\" : [ {\"system\":\"LN\", \"code\":\"2345-7\"} ] } ,\t\"valueQuantity\":{\"value\":-0,\"unit\":\"mg/dl\"}\r\n}",
        // Escapes serde_json writes, in texts and in codes.
        r#"{"code":{"coding":[{"system":"urn:local","code":"A\"B\\C\n\u0001"}],"text":"tab\there \"quoted\" \u001f"},"note":[{"text":"é ünï €"}]}"#,
        // Escapes serde_json does not write: the Value way is taken, same result.
        r#"{"code":{"coding":[{"system":"http:\/\/loinc.org","code":"2345-7"}],"text":"\u00e9\u0041"},"valueQuantity":{"value":1E5,"unit":"mg/dl"}}"#,
        r#"{"valueQuantity":{"value":1e5,"unit":"mg/dl"}}"#,
        r#"{"valueQuantity":{"value":1,"unit":"mg/dl"},"note":"\u000a"}"#,
        // Duplicate keys (serde_json keeps the last).
        r#"{"code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"code":{"coding":[]}}"#,
        // Odd shapes: codings that are not objects, a non-string display, userSelected,
        // a quantity inside a coding, a coding array under a quantity's sibling.
        r#"{"code":{"coding":[1,"x",null,{"system":"http://loinc.org","code":"2345-7","display":5,"userSelected":true},{"system":"http://loinc.org","code":"2345-7","value":3,"unit":"mg/dl"}]}}"#,
        r#"{"a":[[{"coding":[{"system":"http://loinc.org","code":"718-7"}]}],{"value":"5","unit":"mg/dl"},{"value":5,"coding":[],"unit":"x"},{"value":5,"system":"http://example.org/units","code":"mg"}]}"#,
        r#"{"valueQuantity":{"value":7,"system":"http://unitsofmeasure.org","code":"not a unit (("}}"#,
        r#"{"valueQuantity":{"value":1e400,"unit":"mg/dl"},"other":{"value":12345678901234567890123,"code":"mg/dL"}}"#,
        r#"{"zz":{},"a":[],"m":{"coding":[]},"b":true,"c":false,"d":null}"#,
        "{}",
        " {\"x\":1} ",
    ];

    #[test]
    fn text_and_value_ways_agree_on_tricky_resources() {
        let t = Terminology::builtin();
        let e = enricher(&t);
        for text in TRICKY {
            check(&e, text);
        }
    }

    #[test]
    fn only_text_serde_json_would_write_is_taken() {
        for (text, taken) in [
            (TRICKY[0], true),
            (TRICKY[1], true),
            (TRICKY[2], true),
            (r#"{"a":"\/"}"#, false),
            (r#"{"a":"\u00e9"}"#, false),
            (r#"{"a":"\u001F"}"#, false),
            (r#"{"a":"\u0009"}"#, false),
            (r#"{"a":"\u000a"}"#, false),
            (r#"{"a":"\u0001 \u001f \b\f\n\r\t"}"#, true),
            (r#"{"a":1E5}"#, false),
            (r#"{"a":1e5}"#, false),
            (r#"{"a":1,"a":2}"#, false),
            (r#"{"b":1,"a":2,"b":3}"#, false),
            (r#"{"a\"b":1}"#, false),
            (r#"{"a":01}"#, false),
            (r#"{"a":1.}"#, false),
            (r#"{"a":[1,]}"#, false),
            (r#"{"a":1} x"#, false),
            (r#"[1]"#, false),
            ("{\"a\":\"raw\ttab\"}", false),
        ] {
            assert_eq!(Doc::parse(text).is_some(), taken, "{text}");
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(Doc::parse(&deep).is_none(), "left to serde_json's depth limit");
    }

    #[test]
    fn untouched_text_is_not_rewritten_and_added_members_go_in_model_order() {
        let t = Terminology::builtin();
        let e = enricher(&t);
        let plain = r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Doe"}]}"#;
        assert_eq!(enrich_fhir_text(&e, plain).unwrap().json, None);
        // A unit already valid UCUM gains system and code: a change the report alone did not show.
        let got = enrich_fhir_text(&e, r#"{"valueQuantity":{"value":4.10,"unit":"mmol/L"},"id":"x"}"#).unwrap();
        assert!(matches!(got.report.entries[0].actions[..], [crate::enrich::Action::UnitAlreadyUcum]));
        assert_eq!(
            got.json.as_deref(),
            Some(
                r#"{"valueQuantity":{"value":4.10,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"},"id":"x"}"#
            )
        );
        // A display after the code, a new coding with its members in the model's order.
        let got = enrich_fhir_text(
            &e,
            r#"{"resourceType":"Observation","id":"o","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}],"text":"Glu"},"status":"final"}"#,
        )
        .unwrap();
        let json = got.json.unwrap();
        assert!(
            json.starts_with(r#"{"resourceType":"Observation","id":"o","code":{"coding":[{"system":"http://loinc.org","code":"2345-7","display":""#),
            "{json}"
        );
        assert!(json.ends_with(r#""text":"Glu"},"status":"final"}"#), "{json}");
    }

    /// A small deterministic generator of FHIR-ish JSON text (no crate needed).
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
            from[(self.next() % from.len() as u64) as usize]
        }
        fn ws(&mut self) -> &'static str {
            if self.next().is_multiple_of(8) { self.pick(&[" ", "\n", "\t ", "\r\n"]) } else { "" }
        }
        fn value(&mut self, depth: u32, out: &mut String) {
            let choice = if depth > 4 { 4 + self.next() % 6 } else { self.next() % 10 };
            match choice {
                0 | 1 => {
                    out.push('{');
                    let n = self.next() % 5;
                    for i in 0..n {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(self.ws());
                        let key = self.pick(&[
                            "coding",
                            "value",
                            "unit",
                            "code",
                            "system",
                            "display",
                            "text",
                            "id",
                            "userSelected",
                            "version",
                            "a",
                            "zz",
                            "valueQuantity",
                            "low",
                        ]);
                        out.push('"');
                        out.push_str(key);
                        out.push_str("\":");
                        out.push_str(self.ws());
                        self.value(depth + 1, out);
                    }
                    out.push('}');
                }
                2 | 3 => {
                    out.push('[');
                    let n = self.next() % 4;
                    for i in 0..n {
                        if i > 0 {
                            out.push(',');
                            out.push_str(self.ws());
                        }
                        self.value(depth + 1, out);
                    }
                    out.push(']');
                }
                4 | 5 => {
                    let s = self.pick(&[
                        "\"http://loinc.org\"",
                        "\"LN\"",
                        "\"2345-7\"",
                        "\"718-7\"",
                        "\"mg/dl\"",
                        "\"mmol/L\"",
                        "\"http://unitsofmeasure.org\"",
                        "\"blargs\"",
                        "\"a\\\"b\\\\c\\n\"",
                        "\"\\u00e9\"",
                        "\"\\u000a\\u0001\\t\"",
                        "\"\\/\"",
                        "\"\"",
                    ]);
                    out.push_str(s);
                }
                6 | 7 => out
                    .push_str(self.pick(&["0", "-0", "1.00", "95", "0.840", "1e+2", "1E2", "2e5", "-3.5e-1", "1e400"])),
                _ => out.push_str(self.pick(&["true", "false", "null"])),
            }
        }
    }

    #[test]
    fn text_and_value_ways_agree_on_generated_resources() {
        let t = Terminology::builtin();
        let e = enricher(&t);
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        let mut taken = 0;
        for _ in 0..3000 {
            let mut text = String::from("{\"resourceType\":\"Observation\",\"x\":");
            g.value(0, &mut text);
            text.push_str(",\"code\":");
            g.value(1, &mut text);
            text.push('}');
            taken += usize::from(Doc::parse(&text).is_some());
            check(&e, &text);
        }
        assert!(taken > 500, "the text way was taken only {taken} times");
    }
}
