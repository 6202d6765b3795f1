//! A resource's standalone JSON straight from its text, without building a `serde_json::Value`:
//! parsing and re-serialising one per resource was most of fan-out's own time. The text is
//! indexed once, bundle-local references are rewritten as it goes, and it is written back as
//! `serde_json::to_string` of the rewritten `Value` would write it: compact, members in key
//! order (a `Value` map sorts them), spans that are already so copied as they are.
//!
//! Only text this module can reproduce exactly is taken: strict JSON whose strings use
//! serde_json's own escapes and whose numbers are as the `arbitrary_precision` parser keeps
//! them, no duplicate or escaped keys, an object at the root. Anything else makes
//! [`standalone`] give `None`, and the caller goes the `Value` way.

use std::borrow::Cow;
use std::collections::HashMap;

/// serde_json's recursion limit is 128; deeper text is left to it (and its error).
const MAX_DEPTH: u32 = 100;
const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    String,
    /// A number, `true`, `false` or `null`.
    Scalar,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    kind: Kind,
    /// The value's bytes.
    start: u32,
    end: u32,
    /// The member name's bytes (inside the quotes) when the node is an object member.
    key: (u32, u32),
    /// Members or items: `Index::children[first..first + len]`, members in key order.
    first: u32,
    len: u32,
    /// The string holds escapes.
    escaped: bool,
    /// The bytes are already serde_json's output for this value, so they are copied.
    verbatim: bool,
    /// Its new text in `Index::rewritten`, for a rewritten reference.
    rewritten: u32,
}

struct Parser<'a, 't> {
    text: &'a str,
    b: &'a [u8],
    types: &'t HashMap<&'t str, &'t str>,
    pos: usize,
    /// Counts of whitespace runs, objects out of key order and rewrites seen so far: a value
    /// whose parse did not change them is already in its final form.
    changes: u32,
    nodes: Vec<Node>,
    children: Vec<u32>,
    /// Children of the containers being read, members with their name's [`prefix`].
    stack: Vec<(u64, u32)>,
    rewritten: Vec<String>,
}

/// A name's first 8 bytes, big-endian, zero-padded (names hold no zero byte): compares as
/// the name does, up to 8 bytes.
fn prefix(name: &[u8]) -> u64 {
    match name.first_chunk::<8>() {
        Some(head) => u64::from_be_bytes(*head),
        None => name.iter().enumerate().fold(0, |p, (i, &c)| p | (c as u64) << (56 - 8 * i)),
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Where in `x` (8 bytes, little-endian) the first quote, backslash or control character is,
/// if any: most of a resource's bytes are string contents, read 8 at a time. The lowest
/// flagged byte is exact (the usual carries only flag bytes above a real one).
fn special_in(x: u64) -> Option<usize> {
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let m = zero(x ^ (LO * b'"' as u64)) | zero(x ^ (LO * b'\\' as u64)) | (x.wrapping_sub(LO * 0x20) & !x & HI);
    (m != 0).then(|| m.trailing_zeros() as usize / 8)
}

impl<'a, 't> Parser<'a, 't> {
    /// The whole text: one object, whitespace around it.
    fn document(&mut self) -> Option<()> {
        self.skip_ws();
        if self.peek()? != b'{' {
            return None;
        }
        self.value((0, 0), 0)?;
        self.skip_ws();
        (self.pos == self.b.len()).then_some(())
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        let start = self.pos;
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
        if self.pos != start {
            self.changes += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek() == Some(c)).then(|| self.pos += 1)
    }

    /// A string from its opening quote: the end of its contents and whether it has escapes.
    /// Only serde_json's own escapes are taken, so the bytes are what it would write.
    fn string(&mut self) -> Option<(usize, bool)> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            while let Some(chunk) = self.b.get(self.pos..self.pos + 8) {
                if let Some(at) = special_in(u64::from_le_bytes(chunk.try_into().ok()?)) {
                    self.pos += at;
                    break;
                }
                self.pos += 8;
            }
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some((self.pos - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match self.b.get(self.pos + 1)? {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 2,
                        b'u' => {
                            let hex = self.b.get(self.pos + 2..self.pos + 6)?;
                            let canonical = hex[0] == b'0'
                                && hex[1] == b'0'
                                && matches!(hex[2], b'0' | b'1')
                                && matches!(hex[3], b'0'..=b'9' | b'a'..=b'f')
                                && !matches!(&hex[2..], b"08" | b"09" | b"0a" | b"0c" | b"0d");
                            if !canonical {
                                return None;
                            }
                            self.pos += 6;
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                _ => self.pos += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number as serde_json writes back what it read: its exponent as `e+`/`e-`.
    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        match self.peek() {
            Some(b'e') => {
                self.pos += 1;
                match self.peek()? {
                    b'+' | b'-' => self.pos += 1,
                    _ => return None,
                }
                (self.digits() > 0).then_some(())
            }
            Some(b'E') => None,
            _ => Some(()),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        (self.b.get(self.pos..self.pos + word.len())? == word).then(|| self.pos += word.len())
    }

    fn value(&mut self, key: (u32, u32), depth: u32) -> Option<u32> {
        let idx = self.nodes.len() as u32;
        let start = self.pos as u32;
        self.nodes.push(Node {
            kind: Kind::Scalar,
            start,
            end: start,
            key,
            first: 0,
            len: 0,
            escaped: false,
            verbatim: true,
            rewritten: NONE,
        });
        let kind = match self.peek()? {
            b'"' => {
                let (_, escaped) = self.string()?;
                self.nodes[idx as usize].escaped = escaped;
                Kind::String
            }
            b'{' | b'[' if depth >= MAX_DEPTH => return None,
            b'{' => return self.object(idx, depth),
            b'[' => return self.array(idx, depth),
            b't' => self.literal(b"true").map(|_| Kind::Scalar)?,
            b'f' => self.literal(b"false").map(|_| Kind::Scalar)?,
            b'n' => self.literal(b"null").map(|_| Kind::Scalar)?,
            _ => self.number().map(|_| Kind::Scalar)?,
        };
        let n = &mut self.nodes[idx as usize];
        n.kind = kind;
        n.end = self.pos as u32;
        Some(idx)
    }

    /// Whitespace where compact text has none: skipped, and counted as a change.
    #[inline]
    fn gap(&mut self) {
        if let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.skip_ws();
        }
    }

    #[inline(never)]
    fn object(&mut self, idx: u32, depth: u32) -> Option<u32> {
        let changes0 = self.changes;
        self.pos += 1;
        let base = self.stack.len();
        self.gap();
        if self.eat(b'}').is_none() {
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                let ks = self.pos + 1;
                let (ke, escaped) = self.string()?;
                if escaped {
                    return None;
                }
                self.gap();
                self.eat(b':')?;
                self.gap();
                let child = self.value((ks as u32, ke as u32), depth + 1)?;
                let name = &self.b[ks..ke];
                if name == b"reference" {
                    self.rewrite(child);
                }
                self.stack.push((prefix(name), child));
                self.gap();
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        self.gap();
                    }
                    b'}' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        let (nodes, b) = (&self.nodes, self.b);
        let order = |x: &(u64, u32), y: &(u64, u32)| {
            x.0.cmp(&y.0).then_with(|| {
                let (x, y) = (&nodes[x.1 as usize], &nodes[y.1 as usize]);
                b[x.key.0 as usize..x.key.1 as usize].cmp(&b[y.key.0 as usize..y.key.1 as usize])
            })
        };
        let members = &mut self.stack[base..];
        if !members.windows(2).all(|w| order(&w[0], &w[1]).is_lt()) {
            members.sort_unstable_by(order);
            if members.windows(2).any(|w| order(&w[0], &w[1]).is_eq()) {
                // serde_json keeps the last of duplicate keys: left to it.
                return None;
            }
            self.changes += 1;
        }
        self.close(idx, base);
        let verbatim = self.changes == changes0;
        let n = &mut self.nodes[idx as usize];
        n.kind = Kind::Object;
        n.end = self.pos as u32;
        n.verbatim = verbatim;
        Some(idx)
    }

    #[inline(never)]
    fn array(&mut self, idx: u32, depth: u32) -> Option<u32> {
        let changes0 = self.changes;
        self.pos += 1;
        let base = self.stack.len();
        self.gap();
        if self.eat(b']').is_none() {
            loop {
                let child = self.value((0, 0), depth + 1)?;
                self.stack.push((0, child));
                self.gap();
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        self.gap();
                    }
                    b']' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.close(idx, base);
        let verbatim = self.changes == changes0;
        let n = &mut self.nodes[idx as usize];
        n.kind = Kind::Array;
        n.end = self.pos as u32;
        n.verbatim = verbatim;
        Some(idx)
    }

    /// A `reference` member's value: `urn:uuid:<id>` of a resource in the event becomes
    /// `<Type>/<id>`, as `rewrite_refs` does on a `Value`.
    fn rewrite(&mut self, n: u32) {
        let node = self.nodes[n as usize];
        if node.kind != Kind::String {
            return;
        }
        let raw = &self.text[node.start as usize + 1..node.end as usize - 1];
        // Escapes cannot fall inside the prefix, so the id is what follows it.
        let Some(id) = raw.strip_prefix("urn:uuid:") else { return };
        let id = if node.escaped { unescape(id) } else { Cow::Borrowed(id) };
        if let Some(t) = self.types.get(id.as_ref()) {
            let text = if node.escaped || t.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20) {
                serde_json::to_string(&format!("{t}/{id}")).expect("a string serialises")
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
            self.nodes[n as usize].rewritten = self.rewritten.len() as u32;
            self.nodes[n as usize].verbatim = false;
            self.rewritten.push(text);
            self.changes += 1;
        }
    }

    /// Moves the children on the stack from `base` to the node.
    fn close(&mut self, idx: u32, base: usize) {
        let n = &mut self.nodes[idx as usize];
        n.first = self.children.len() as u32;
        n.len = (self.stack.len() - base) as u32;
        self.children.extend(self.stack[base..].iter().map(|&(_, c)| c));
        self.stack.truncate(base);
    }
}

/// A canonical string's contents without its escapes.
fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                // The parser took only \u00XX below 0x20.
                out.push(char::from(u8::from_str_radix(&hex, 16).unwrap_or(0)));
            }
            Some(c) => out.push(c),
            None => {}
        }
    }
    Cow::Owned(out)
}

/// The indexed text of one resource.
struct Index<'a> {
    text: &'a str,
    nodes: Vec<Node>,
    children: Vec<u32>,
    rewritten: Vec<String>,
}

impl<'a> Index<'a> {
    fn node(&self, n: u32) -> &Node {
        &self.nodes[n as usize]
    }

    fn kids(&self, n: u32) -> &[u32] {
        let node = self.node(n);
        &self.children[node.first as usize..(node.first + node.len) as usize]
    }

    fn key(&self, n: u32) -> &'a str {
        let (s, e) = self.node(n).key;
        &self.text[s as usize..e as usize]
    }

    fn raw(&self, n: u32) -> &'a str {
        let node = self.node(n);
        &self.text[node.start as usize..node.end as usize]
    }

    fn get(&self, n: u32, key: &str) -> Option<u32> {
        if self.node(n).kind != Kind::Object {
            return None;
        }
        self.kids(n).iter().copied().find(|&c| self.key(c) == key)
    }

    /// A string node's value, after any rewrite.
    fn as_str(&self, n: u32) -> Option<Cow<'_, str>> {
        let node = self.node(n);
        if node.kind != Kind::String {
            return None;
        }
        let raw = match node.rewritten {
            NONE => self.raw(n),
            r => self.rewritten[r as usize].as_str(),
        };
        let inner = &raw[1..raw.len() - 1];
        Some(if node.escaped || node.rewritten != NONE { unescape(inner) } else { Cow::Borrowed(inner) })
    }

    fn emit(&self, n: u32, out: &mut String) {
        let node = self.node(n);
        if node.verbatim {
            out.push_str(self.raw(n));
            return;
        }
        match node.kind {
            Kind::Object => {
                out.push('{');
                for (i, &c) in self.kids(n).iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let (child, (ks, ke)) = (self.node(c), self.node(c).key);
                    if child.verbatim && ke + 2 == child.start {
                        // `"name":value` as it stands in the text.
                        out.push_str(&self.text[ks as usize - 1..child.end as usize]);
                        continue;
                    }
                    out.push('"');
                    out.push_str(self.key(c));
                    out.push_str("\":");
                    self.emit(c, out);
                }
                out.push('}');
            }
            Kind::Array => {
                out.push('[');
                for (i, &c) in self.kids(n).iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.emit(c, out);
                }
                out.push(']');
            }
            Kind::String if node.rewritten != NONE => out.push_str(&self.rewritten[node.rewritten as usize]),
            // Other leaves are verbatim: the parser took only serde_json's own forms.
            Kind::String | Kind::Scalar => out.push_str(self.raw(n)),
        }
    }
}

/// A resource as it stands alone: its text as `serde_json::to_string` writes the `Value` with
/// its `urn:uuid:` references to resources in `types` (id → type) rewritten, and the patient
/// it is about as `patient_of` finds it (`subject`, then `patient`; a Patient is about itself
/// and is not asked here). `None` when the text is not one this module reproduces exactly.
pub(super) fn standalone(
    text: &str,
    types: &HashMap<&str, &str>,
    scratch: &mut Scratch,
) -> Option<(String, Option<String>)> {
    if text.len() >= NONE as usize {
        return None; // positions are u32
    }
    let mut p = Parser {
        text,
        b: text.as_bytes(),
        types,
        pos: 0,
        changes: 0,
        nodes: std::mem::take(&mut scratch.nodes),
        children: std::mem::take(&mut scratch.children),
        stack: std::mem::take(&mut scratch.stack),
        rewritten: Vec::new(),
    };
    p.nodes.clear();
    p.children.clear();
    p.stack.clear();
    let parsed = p.document();
    scratch.stack = p.stack;
    let index = Index { text, nodes: p.nodes, children: p.children, rewritten: p.rewritten };
    let result = parsed.map(|_| {
        let patient = ["subject", "patient"].iter().find_map(|f| {
            let reference = index.get(index.get(0, f)?, "reference")?;
            index.as_str(reference)?.strip_prefix("Patient/").map(str::to_string)
        });
        let mut out = String::with_capacity(text.len() + 16 * index.rewritten.len());
        index.emit(0, &mut out);
        (out, patient)
    });
    scratch.nodes = index.nodes;
    scratch.children = index.children;
    result
}

/// The index's buffers, kept from one resource to the next.
#[derive(Default)]
pub(super) struct Scratch {
    nodes: Vec<Node>,
    children: Vec<u32>,
    stack: Vec<(u64, u32)>,
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

    fn check(text: &str) -> Option<(String, Option<String>)> {
        if text.len() >= NONE as usize {
            return None; // positions are u32
        }
        let types = types();
        let got = standalone(text, &types, &mut Scratch::default());
        if let Some(got) = &got {
            assert_eq!(got, &by_value(text, &types), "for {text}");
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
    fn generated_resources_come_out_as_the_value_way_writes_them() {
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
                    if let Some(fast) = fast {
                        taken += 1;
                        assert_eq!(fast, by_value(&text, &types), "for {text}");
                    }
                }
                Err(_) => assert!(fast.is_none(), "{text} is not JSON"),
            }
        }
        assert!(taken > 1000, "the text way was taken only {taken} times");
    }
}
