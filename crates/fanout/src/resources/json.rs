//! A resource's standalone JSON straight from its text, without building a `serde_json::Value`:
//! parsing and re-serialising one per resource was most of fan-out's own time. The text is
//! indexed once ([`canonical::json_text`]), bundle-local references are rewritten as it goes,
//! and it is written back compact with its members in the order they came (`KEEP_ORDER`): the
//! model's field order, FHIR's element order, as normalize and enrich write it — what the
//! `fhir.*` topics' readers see first is `resourceType`, and the typed record is read in one
//! pass. Text the index does not reproduce exactly makes [`standalone`] give `None`, and the
//! caller goes the `Value` way (the same document, keys sorted).

use std::borrow::Cow;
use std::collections::HashMap;

use canonical::json_text::{self, Hooks, Index, Kind, NONE, Node, Patch};

/// A node's new text in [`Rewrites::texts`] for a rewritten reference, else [`NONE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rewritten(u32);

impl Default for Rewritten {
    fn default() -> Self {
        Rewritten(NONE)
    }
}

/// The index's buffers, kept from one resource to the next.
pub(super) type Scratch = json_text::Scratch<Rewritten>;

/// Rewrites `reference` members while the text is read.
struct Rewrites<'t> {
    types: &'t HashMap<&'t str, &'t str>,
    texts: Vec<String>,
}

impl Hooks for Rewrites<'_> {
    type Extra = Rewritten;
    const KEEP_ORDER: bool = true;

    /// A `reference` member's value: `urn:uuid:<id>` of a resource in the event becomes
    /// `<Type>/<id>`, as `rewrite_refs` does on a `Value`.
    #[inline]
    fn member(&mut self, nodes: &mut [Node<Rewritten>], text: &str, name: &[u8], child: u32) -> bool {
        if name != b"reference" {
            return false;
        }
        let node = &mut nodes[child as usize];
        if node.kind != Kind::String {
            return false;
        }
        let raw = &text[node.start as usize + 1..node.end as usize - 1];
        // Escapes cannot fall inside the prefix, so the id is what follows it.
        let Some(id) = raw.strip_prefix("urn:uuid:") else { return false };
        let id = if node.escaped { json_text::unescape(id) } else { Cow::Borrowed(id) };
        let Some(t) = self.types.get(id.as_ref()) else { return false };
        let text = if node.escaped || t.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20) {
            json_text::quoted(&format!("{t}/{id}"))
        } else {
            // Nothing to escape in the type, and the id's bytes are already escaped text.
            let mut text = String::with_capacity(t.len() + id.len() + 3);
            text.push('"');
            text.push_str(t);
            text.push('/');
            text.push_str(&id);
            text.push('"');
            text
        };
        node.extra = Rewritten(self.texts.len() as u32);
        self.texts.push(text);
        true
    }
}

impl Patch<Rewritten> for Rewrites<'_> {
    #[inline]
    fn leaf(&self, node: &Node<Rewritten>) -> Option<&str> {
        (node.extra.0 != NONE).then(|| self.texts[node.extra.0 as usize].as_str())
    }
}

/// A string node's value, after any rewrite.
fn as_str<'i>(index: &'i Index<'_, Rewritten>, rewrites: &'i Rewrites<'_>, n: u32) -> Option<Cow<'i, str>> {
    match rewrites.leaf(index.node(n)) {
        Some(text) => Some(json_text::unescape(&text[1..text.len() - 1])),
        None => index.as_str(n),
    }
}

/// A resource as it stands alone: its text, compact, members in their order, with its
/// `urn:uuid:` references to resources in `types` (id → type) rewritten, and the patient
/// it is about as `patient_of` finds it (`subject`, then `patient`; a Patient is about itself
/// and is not asked here). `None` when the text is not one the index reproduces exactly.
pub(super) fn standalone(
    text: &str,
    types: &HashMap<&str, &str>,
    scratch: &mut Scratch,
) -> Option<(String, Option<String>)> {
    let mut rewrites = Rewrites { types, texts: Vec::new() };
    let mut index = Index::parse(text, &mut rewrites, scratch)?;
    let patient = ["subject", "patient"].iter().find_map(|f| {
        let reference = index.get(index.get(0, f)?, "reference")?;
        as_str(&index, &rewrites, reference)?.strip_prefix("Patient/").map(str::to_string)
    });
    let mut out = String::with_capacity(text.len() + 16 * rewrites.texts.len());
    index.emit(0, &rewrites, &mut out);
    index.recycle(scratch);
    Some((out, patient))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// What the `Value` way gives (`rewrite_refs`, `patient_of`, `to_string`).
    fn by_value(text: &str, types: &HashMap<&str, &str>) -> (String, Option<String>) {
        let mut v: Value = serde_json::from_str(text).unwrap();
        super::super::rewrite_refs(&mut v, types);
        let patient = super::super::patient_of("Observation", "x", &v);
        (serde_json::to_string(&v).unwrap(), patient)
    }

    fn types() -> HashMap<&'static str, &'static str> {
        [("p1", "Patient"), ("o1", "Observation"), ("e\"1", "Encounter"), ("we\\ird\n", "Device"), ("x", "Odd\"Type")]
            .into_iter()
            .collect()
    }

    /// The text way gives the `Value` way's document and patient, with every object's members
    /// in the order they came.
    fn check(text: &str) -> Option<(String, Option<String>)> {
        if text.len() >= NONE as usize {
            return None; // positions are u32
        }
        let types = types();
        let got = standalone(text, &types, &mut Scratch::default());
        if let Some((json, patient)) = &got {
            let (want, want_patient) = by_value(text, &types);
            assert_eq!(patient, &want_patient, "patient for {text}");
            let value = |t: &str| serde_json::from_str::<Value>(t).unwrap();
            assert_eq!(value(json), value(&want), "for {text}");
            assert_eq!(json_text::member_order(json), json_text::member_order(text), "order: {text} → {json}");
        }
        got
    }

    #[test]
    fn references_are_rewritten_exactly_where_the_value_way_rewrites_them() {
        let cases = [
            // Struct order, nested references, an unknown target, a non-string reference.
            r#"{"resourceType":"Observation","subject":{"reference":"urn:uuid:p1"},"hasMember":[{"reference":"urn:uuid:o1","display":"x"}],"performer":[{"reference":"urn:uuid:elsewhere"}],"focus":{"reference":5}}"#,
            // A note that quotes a reference, escaped quotes included, is left alone.
            r#"{"note":[{"text":"see \"reference\":\"urn:uuid:p1\" and urn:uuid:o1"}],"subject":{"reference":"urn:uuid:p1"}}"#,
            r#"{"text":"{\"reference\":\"urn:uuid:p1\"}","reference":"urn:uuid:o1"}"#,
            // Ids that need escaping, and a type that does.
            r#"{"a":{"reference":"urn:uuid:e\"1"},"b":{"reference":"urn:uuid:we\\ird\n"},"c":{"reference":"urn:uuid:x"}}"#,
            // Deep nesting, references inside references' siblings, whitespace.
            "{ \"contained\" : [ { \"item\" : [ { \"answer\" : [ { \"valueReference\" : { \"reference\" : \"urn:uuid:o1\" } } ] } ] } ] ,\n \"patient\":{\"reference\":\"urn:uuid:p1\"} }",
            // The patient from `subject` first, then `patient`; not from an array.
            r#"{"subject":{"reference":"Group/g1"},"patient":{"reference":"urn:uuid:p1"}}"#,
            r#"{"subject":[{"reference":"urn:uuid:p1"}]}"#,
            r#"{"subject":{"reference":"Patient/already"}}"#,
            r#"{"subject":{"reference":"urn:uuid:p1x"}}"#,
            // Numbers as arbitrary_precision keeps them.
            r#"{"valueQuantity":{"value":5.50},"n":[-0,0.0,1e+5,2.5e-3,12345678901234567890123]}"#,
            "{}",
        ];
        for text in cases {
            assert!(check(text).is_some(), "taken: {text}");
        }
        let (out, patient) = check(cases[0]).unwrap();
        // Compact text comes back as it was but for the references: `resourceType` first.
        assert_eq!(out, cases[0].replace("urn:uuid:p1", "Patient/p1").replace("urn:uuid:o1", "Observation/o1"));
        assert!(out.contains(r#""subject":{"reference":"Patient/p1"}"#), "{out}");
        assert!(out.contains(r#""reference":"urn:uuid:elsewhere""#), "{out}");
        assert_eq!(patient.as_deref(), Some("p1"));
        let (out, _) = check(cases[1]).unwrap();
        assert!(out.contains(r#""text":"see \"reference\":\"urn:uuid:p1\" and urn:uuid:o1""#), "{out}");
        let (out, _) = check(cases[3]).unwrap();
        assert!(
            out.contains(r#""reference":"Encounter/e\"1""#) && out.contains(r#""reference":"Odd\"Type/x""#),
            "{out}"
        );
        assert_eq!(check(cases[5]).unwrap().1.as_deref(), Some("p1"));
        assert_eq!(check(cases[6]).unwrap().1, None);
        assert_eq!(check(cases[7]).unwrap().1.as_deref(), Some("already"));
    }

    #[test]
    fn text_serde_json_would_not_write_is_left_to_it() {
        for text in [
            r#"{"reference":"urn:uuid:p\u0031"}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":1E5}"#,
            r#"{"a":1e5}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a\"":1}"#,
            r#"{"a":01}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1}}"#,
            "[]",
            "{\"a\":\"\u{1}\"}",
        ] {
            assert!(standalone(text, &types(), &mut Scratch::default()).is_none(), "{text}");
        }
    }

    #[test]
    fn generated_resources_come_out_as_the_value_way_has_them_in_their_order() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        fn value(next: &mut dyn FnMut() -> u64, depth: u32, out: &mut String) {
            let pick = |next: &mut dyn FnMut() -> u64, n: usize| (next() % n as u64) as usize;
            let ws = |next: &mut dyn FnMut() -> u64| if next().is_multiple_of(6) { " " } else { "" };
            match if depth > 4 { 4 + pick(next, 4) } else { pick(next, 8) } {
                0..=2 => {
                    out.push('{');
                    for i in 0..pick(next, 5) {
                        if i > 0 {
                            out.push(',');
                        }
                        let keys = ["reference", "subject", "patient", "display", "id", "a", "zz", "referenceRange"];
                        out.push_str(ws(next));
                        out.push_str(&format!("\"{}\":", keys[pick(next, keys.len())]));
                        value(next, depth + 1, out);
                    }
                    out.push('}');
                }
                3 => {
                    out.push('[');
                    for i in 0..pick(next, 4) {
                        if i > 0 {
                            out.push(',');
                        }
                        value(next, depth + 1, out);
                    }
                    out.push(']');
                }
                4 | 5 => {
                    let strings = [
                        r#""urn:uuid:p1""#,
                        r#""urn:uuid:o1""#,
                        r#""urn:uuid:e\"1""#,
                        r#""urn:uuid:x""#,
                        r#""urn:uuid:nope""#,
                        r#""Patient/p9""#,
                        r#""note \"reference\":\"urn:uuid:p1\"""#,
                        r#""\u0001\t\\""#,
                        r#""\u00e9""#,
                    ];
                    out.push_str(strings[pick(next, strings.len())]);
                }
                6 => out.push_str(["0", "-0", "1.50", "1e+2", "1E2"][pick(next, 5)]),
                _ => out.push_str(["true", "false", "null"][pick(next, 3)]),
            }
        }
        let mut taken = 0;
        for _ in 0..3000 {
            let mut text = String::new();
            // An object at the root, as resources are.
            while !text.starts_with('{') {
                text.clear();
                value(&mut next, 0, &mut text);
            }
            let types = types();
            let fast = standalone(&text, &types, &mut Scratch::default());
            match serde_json::from_str::<Value>(&text) {
                Ok(_) => {
                    if fast.is_some() {
                        taken += 1;
                        check(&text);
                    }
                }
                Err(_) => assert!(fast.is_none(), "{text} is not JSON"),
            }
        }
        assert!(taken > 1000, "the text way was taken only {taken} times");
    }
}
