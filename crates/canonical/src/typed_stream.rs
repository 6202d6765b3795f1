//! The typed Avro record written in one pass over a resource's FHIR JSON, for the JSON the
//! pipeline itself writes: keys in the model's order, no escapes in keys or strings.
//!
//! Avro wants a record's fields in schema order, so the general path ([`crate::typed`]) reads
//! the JSON into a tree first and then writes it. JSON written from the model already has its
//! keys in field order, so here each value is written as it is read, absent fields filled in
//! between. Anything this pass is not sure of — a key out of order, an escape, `null`, an empty
//! array, an unknown element, a number where it wants another — makes it give up, and the caller
//! goes the general way, which also decides what is an error. So this pass never decides
//! anything differently; it is only faster when it can be (tests hold the two byte-equal).

use std::sync::OnceLock;

use crate::model::avro::{FieldShape, Kind, RecordShape, Shapes, shapes};
use crate::typed::{write_long, write_str};

/// Deeper than any resource of the model; beyond it the general path decides.
const MAX_DEPTH: usize = 64;

/// Appends the `typed` union value for `json` (branch, then record) and returns true, or
/// returns false having appended nothing the caller should keep (it truncates).
pub(crate) fn write(out: &mut Vec<u8>, resource_type: &str, json: &str) -> bool {
    let s = shapes();
    let Some((branch, _)) = s.resource(resource_type) else { return false };
    write_long(out, branch as i64 + 1);
    let mut r = Reader {
        s: json,
        b: json.as_bytes(),
        pos: 0,
        shapes: s,
        disorder: false,
        reorder: false,
        spans: Vec::new(),
        laid: Vec::new(),
    };
    r.record(out, s.resources[branch].1, Some(resource_type), 0).is_some() && {
        r.ws();
        r.pos == r.b.len()
    }
}

struct Reader<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    shapes: &'static Shapes,
    /// Set when an object's keys are out of model order (see [`Reader::record`]).
    disorder: bool,
    /// Read objects the reordering way from the start (the document was found out of order).
    reorder: bool,
    /// (field, start, end) of the fields read so far by the reordering reads in progress,
    /// relative to their record's start; a stack, each record above its parent's.
    spans: Vec<(usize, usize, usize)>,
    /// A record's fields as read, while [`Reader::record_reordered`] lays them out again.
    laid: Vec<u8>,
}

/// `None`: give up (the general path decides).
type Step = Option<()>;

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while self.b.get(self.pos).is_some_and(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> Step {
        (self.peek()? == c).then(|| self.pos += 1)
    }

    /// A string without escapes (an escape gives up: the general path unescapes).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let len = self.b[start..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if self.b[start + len] != b'"' {
            return None;
        }
        self.pos = start + len + 1;
        // Both ends are at ASCII quotes, so this slice of the &str is on char boundaries.
        self.s.get(start..start + len)
    }

    /// A JSON number's text, as the general path's decimal reads it (raw digits).
    fn number(&mut self) -> Option<&'a str> {
        self.ws();
        let start = self.pos;
        while self.b.get(self.pos).is_some_and(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
            self.pos += 1;
        }
        let t = self.s.get(start..self.pos)?;
        // Only the plain shapes the model writes; anything else goes the general way.
        let plain = t.strip_prefix('-').unwrap_or(t);
        let ok = !plain.is_empty()
            && plain.bytes().all(|c| c.is_ascii_digit() || c == b'.')
            && plain.bytes().filter(|&c| c == b'.').count() <= 1
            && !plain.starts_with('.')
            && !plain.ends_with('.')
            && !(plain.len() > 1 && plain.starts_with('0') && !plain.starts_with("0."));
        ok.then_some(t)
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        self.ws();
        self.b[self.pos..].starts_with(word).then(|| self.pos += word.len())
    }

    /// One object as the record `shape`; `top` is the resource type expected at the top.
    /// Keys in model order are written as they come; an object whose keys are in another order
    /// (serde_json's `Value` writes them sorted) is read again with its fields put in order.
    fn record(&mut self, out: &mut Vec<u8>, id: usize, top: Option<&str>, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return None;
        }
        let (pos, len) = (self.pos, out.len());
        if self.reorder {
            return self.record_reordered(out, id, top, depth);
        }
        let shape = &self.shapes.records[id];
        match self.record_in_order(out, shape, top, depth) {
            None if self.disorder => {
                // A document out of order once is so throughout (sorted keys): read every
                // further object the reordering way straight away.
                self.disorder = false;
                self.reorder = true;
                self.pos = pos;
                out.truncate(len);
                self.record_reordered(out, id, top, depth)
            }
            done => done,
        }
    }

    /// Each field's bytes are written as they come and their spans kept; at the closing brace
    /// the record is laid out again in field order, absent fields as zeros.
    fn record_reordered(&mut self, out: &mut Vec<u8>, id: usize, top: Option<&str>, depth: usize) -> Step {
        let shape = &self.shapes.records[id];
        let by_name = &by_name()[id];
        let start = out.len();
        let base = self.spans.len();
        // Keys in another order (sorted, mostly) are found by name: forward from the previous
        // key in name order (a length check skips most), else by bisection. Keys rising by
        // name cannot repeat.
        let (mut next, mut rising) = (0, true);
        self.members(out, top, |r, out, key| {
            let at = match by_name[next..].iter().position(|&i| shape.fields[i].name == key) {
                Some(p) => next + p,
                None => by_name.binary_search_by(|&i| shape.fields[i].name.as_str().cmp(key)).ok()?,
            };
            rising &= at >= next;
            next = at + 1;
            let i = by_name[at];
            if !rising && r.spans[base..].iter().any(|s| s.0 == i) {
                return None; // twice
            }
            let from = out.len();
            r.field_value(out, &shape.fields[i], depth)?;
            r.spans.push((i, from - start, out.len() - start));
            Some(())
        })?;
        let (spans, laid) = (&mut self.spans, &mut self.laid);
        spans[base..].sort_unstable_by_key(|s| s.0);
        // The fields as read, then laid out again in field order (no allocation per record).
        laid.clear();
        laid.extend_from_slice(&out[start..]);
        out.truncate(start);
        let mut present = spans[base..].iter().peekable();
        for i in 0..shape.fields.len() {
            match present.next_if(|s| s.0 == i) {
                Some(&(_, from, to)) => out.extend_from_slice(&laid[from..to]),
                None => out.push(0),
            }
        }
        spans.truncate(base);
        Some(())
    }

    fn record_in_order(
        &mut self,
        out: &mut Vec<u8>,
        shape: &'static RecordShape,
        top: Option<&str>,
        depth: usize,
    ) -> Step {
        let mut next = 0; // the first field not written yet
        self.members(out, top, |r, out, key| {
            let i = shape.field_from(key, next)?;
            if i < next {
                // Out of model order (or twice: the reordering read finds that).
                r.disorder = true;
                return None;
            }
            absent(out, i - next);
            r.field_value(out, &shape.fields[i], depth)?;
            next = i + 1;
            Some(())
        })?;
        absent(out, shape.fields.len() - next);
        Some(())
    }

    /// One object: `{`, then per key either the top `resourceType` (checked here) or `field`,
    /// which reads the member's value; then `}`.
    fn members(
        &mut self,
        out: &mut Vec<u8>,
        top: Option<&str>,
        mut field: impl FnMut(&mut Self, &mut Vec<u8>, &'a str) -> Step,
    ) -> Step {
        self.eat(b'{')?;
        let mut seen_type = false;
        if self.peek()? != b'}' {
            loop {
                let key = self.string()?;
                self.eat(b':')?;
                if top.is_some() && key == "resourceType" {
                    if seen_type || Some(self.string()?) != top {
                        return None;
                    }
                    seen_type = true;
                } else {
                    field(self, out, key)?;
                }
                match self.peek()? {
                    b',' => self.pos += 1,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        self.pos += 1; // the closing brace
        (top.is_none() || seen_type).then_some(())
    }

    /// A present field's value: the array, or the union's branch 1 and the value.
    fn field_value(&mut self, out: &mut Vec<u8>, f: &FieldShape, depth: usize) -> Step {
        if f.list {
            self.list(out, f.kind, depth)
        } else {
            write_long(out, 1);
            self.value(out, f.kind, depth)
        }
    }

    /// A non-empty array, as one Avro block: the count goes before the items, so it is put in
    /// front of them once they are written.
    fn list(&mut self, out: &mut Vec<u8>, kind: Kind, depth: usize) -> Step {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            return None; // the general path refuses empty arrays
        }
        let at = out.len();
        let mut n = 0i64;
        loop {
            self.value(out, kind, depth)?;
            n += 1;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => break,
                _ => return None,
            }
        }
        self.pos += 1;
        let mut count = Vec::with_capacity(4);
        write_long(&mut count, n);
        out.splice(at..at, count);
        write_long(out, 0);
        Some(())
    }

    fn value(&mut self, out: &mut Vec<u8>, kind: Kind, depth: usize) -> Step {
        match kind {
            Kind::String => write_str(out, self.string()?),
            Kind::Decimal => write_str(out, self.number()?),
            Kind::Boolean => match self.peek()? {
                b't' => self.literal(b"true").map(|()| out.push(1))?,
                b'f' => self.literal(b"false").map(|()| out.push(0))?,
                _ => return None,
            },
            Kind::Long => {
                let t = self.number()?;
                write_long(out, t.parse::<i64>().ok()?);
            }
            Kind::Record(id) => self.record(out, id, None, depth + 1)?,
        }
        Some(())
    }
}

/// Per record id, its field positions sorted by name, to find a key by binary search.
fn by_name() -> &'static [Vec<usize>] {
    static BY_NAME: OnceLock<Vec<Vec<usize>>> = OnceLock::new();
    BY_NAME.get_or_init(|| {
        shapes()
            .records
            .iter()
            .map(|r| {
                let mut v: Vec<usize> = (0..r.fields.len()).collect();
                v.sort_by(|&a, &b| r.fields[a].name.cmp(&r.fields[b].name));
                v
            })
            .collect()
    })
}

/// `n` fields not in the JSON: each null (union branch 0) or an empty array, a zero byte either way.
fn absent(out: &mut Vec<u8>, n: usize) {
    out.resize(out.len() + n, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CodeableConcept, Decimal, Observation, ObservationValue, Quantity, Reference};
    use crate::typed::TypedResource;

    /// The general path's bytes (tree, then write) for comparison.
    fn general(resource_type: &str, json: &str) -> Vec<u8> {
        let mut out = Vec::new();
        match TypedResource::from_json(resource_type, json) {
            Ok(t) => t.write_avro(&mut out),
            Err(_) => write_long(&mut out, 0),
        }
        out
    }

    fn streamed(resource_type: &str, json: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        write(&mut out, resource_type, json).then_some(out)
    }

    /// JSON as the model writes it: keys in field order.
    fn model_json() -> String {
        let obs = Observation {
            id: "o1".into(),
            status: "final".into(),
            code: CodeableConcept::code("http://loinc.org", "2345-7", Some("Glucose ü")),
            subject: Some(Reference { reference: Some("urn:uuid:p1".into()), ..Default::default() }),
            value: Some(ObservationValue::Quantity(Quantity {
                value: Decimal::parse("-5.50"),
                unit: Some("mmol/L".into()),
                ..Default::default()
            })),
            ..Default::default()
        };
        serde_json::to_string(&crate::model::Resource::from(obs)).unwrap()
    }

    #[test]
    fn model_json_goes_in_one_pass_with_the_general_paths_bytes() {
        let json = model_json();
        let got = streamed("Observation", &json).expect("model-ordered JSON takes the one-pass way");
        assert_eq!(got, general("Observation", &json));
    }

    #[test]
    fn keys_in_another_order_are_put_in_field_order() {
        let json = model_json();
        // What serde_json::Value writes: keys sorted, at every level.
        let sorted = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&json).unwrap()).unwrap();
        assert_ne!(sorted, json);
        let got = streamed("Observation", &sorted).expect("sorted keys are reordered, not given up");
        assert_eq!(got, general("Observation", &sorted));
        assert_eq!(got, general("Observation", &json), "same resource, same record");
        // A key twice is still left to the general path, in either order, next to itself or
        // after other keys, rising by name or not.
        for twice in [
            sorted.replacen("\"id\":\"o1\"", "\"id\":\"o1\",\"id\":\"o1\"", 1),
            sorted.replacen("\"status\":\"final\"", "\"status\":\"final\",\"id\":\"o1\"", 1),
            sorted.replacen("\"id\":\"o1\"", "\"status\":\"final\",\"id\":\"o1\"", 1),
            json.replacen("\"status\":\"final\"", "\"status\":\"final\",\"id\":\"o1\"", 1),
        ] {
            assert!(streamed("Observation", &twice).is_none(), "{twice}");
            assert!(general("Observation", &twice) == [0], "the general path refuses it too: {twice}");
        }
        // Keys against name order at every level (neither the model's order nor sorted).
        fn reversed(v: &serde_json::Value) -> String {
            match v {
                serde_json::Value::Object(m) => {
                    let members: Vec<String> = m.iter().rev().map(|(k, v)| format!("{k:?}:{}", reversed(v))).collect();
                    format!("{{{}}}", members.join(","))
                }
                serde_json::Value::Array(a) => format!("[{}]", a.iter().map(reversed).collect::<Vec<_>>().join(",")),
                other => other.to_string(),
            }
        }
        let backwards = reversed(&serde_json::from_str(&json).unwrap());
        assert!(backwards.starts_with("{\"valueQuantity\":{\"value\":-5.50,"), "{backwards}");
        assert_eq!(streamed("Observation", &backwards).expect("reordered"), general("Observation", &json));
    }

    #[test]
    fn anything_unsure_gives_up_and_the_general_path_decides() {
        let json = model_json();
        let cases = [
            json.replace("Glucose ü", "Glucose \\\"x\\\""),
            json.replace("\"status\":\"final\"", "\"status\":null"),
            json.replace("\"id\":\"o1\"", "\"id\":\"o1\",\"id\":\"o2\""),
            json.replace("\"status\":\"final\"", "\"status\":\"final\",\"notAnElement\":1"),
            json.replace("-5.50", "5e1"),
            json.replace("-5.50", "\"5.50\""),
            json.replace("\"resourceType\":\"Observation\",", ""),
            json.replace("\"resourceType\":\"Observation\"", "\"resourceType\":\"Patient\""),
            format!("{json} x"),
            json[..json.len() - 1].to_string(),
        ];
        for (i, c) in cases.iter().enumerate() {
            assert!(streamed("Observation", c).is_none(), "case {i} should give up: {c}");
        }
        // And the field writer's answer, whichever way it went, is the general path's.
        for c in cases.iter().chain([&json]) {
            let mut out = Vec::new();
            crate::typed::write_typed_field(&mut out, "Observation", c);
            assert_eq!(out, general("Observation", c), "{c}");
        }
        assert!(streamed("NoSuchType", &json).is_none());
    }
}
