//! Enrichment read straight from a resource's JSON text, without building a
//! `serde_json::Value`: the enrich stage spent most of its time parsing, cloning, comparing and
//! re-serialising values. The text is indexed once (spans, members sorted as a `Value` map
//! sorts them), walked exactly as [`super::FhirJson`] walks a `Value`, and when something was
//! added it is written back as `serde_json::to_string` of the enriched `Value` would write it:
//! compact, keys in byte order, unchanged spans copied as they are.
//!
//! Only text this module can reproduce exactly is taken: strict JSON whose strings use
//! serde_json's own escapes and whose numbers are as the `arbitrary_precision` parser keeps
//! them, no duplicate or escaped keys, an object at the root. Anything else makes
//! [`Doc::parse`] give `None`, and the caller goes the `Value` way.

use std::borrow::Cow;

use super::{CodeableConcept, Coding, Enrichable, FhirCoding, Quantity};

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
    parent: u32,
    /// Members or items: `Doc::children[first..first + len]`, members in key order.
    first: u32,
    len: u32,
    /// The member name, when it is one the walk looks for.
    tag: Tag,
    /// [`CONCEPT`], [`QUANTITY`] and what lies below.
    flags: u8,
    /// The string holds escapes.
    escaped: bool,
    /// The bytes are already serde_json's output for this value, so they are copied.
    verbatim: bool,
}

/// Member names the walk reads, found once while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
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

/// One member added to an object (`key` is absent there) or one item appended to an array;
/// `json` is its serde_json text.
struct Edit {
    node: u32,
    key: &'static str,
    json: String,
}

/// A resource's JSON text, indexed, with what enrichment added to it.
pub(super) struct Doc<'a> {
    text: &'a str,
    nodes: Vec<Node>,
    children: Vec<u32>,
    edits: Vec<Edit>,
    /// The parser's, only kept to go back to [`SCRATCH`].
    stack: Vec<(u64, u32)>,
}

impl Drop for Doc<'_> {
    fn drop(&mut self) {
        let scratch = Scratch {
            nodes: std::mem::take(&mut self.nodes),
            children: std::mem::take(&mut self.children),
            stack: std::mem::take(&mut self.stack),
        };
        let _ = SCRATCH.try_with(|s| s.set(scratch));
    }
}

struct Parser<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    /// Counts of whitespace runs and of objects out of key order seen so far: a value whose
    /// parse did not change them is already in serde_json's form.
    ws: u32,
    unsorted: u32,
    nodes: Vec<Node>,
    children: Vec<u32>,
    stack: Vec<(u64, u32)>,
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

impl<'a> Parser<'a> {
    /// The whole text: one object, whitespace around it.
    fn document(&mut self) -> Option<()> {
        self.skip_ws();
        if self.peek()? != b'{' {
            return None;
        }
        self.value(NONE, (0, 0), Tag::Other, 0)?;
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
            self.ws += 1;
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

    fn value(&mut self, parent: u32, key: (u32, u32), tag: Tag, depth: u32) -> Option<u32> {
        let idx = self.nodes.len() as u32;
        let start = self.pos as u32;
        self.nodes.push(Node {
            kind: Kind::Scalar,
            start,
            end: start,
            key,
            parent,
            first: 0,
            len: 0,
            tag,
            flags: 0,
            escaped: false,
            verbatim: true,
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

    /// Whitespace where compact text has none: skipped, and counted.
    #[inline]
    fn gap(&mut self) {
        if let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.skip_ws();
        }
    }

    /// Sets a container's kind, end and whether it is verbatim once its children are read.
    fn finish(&mut self, idx: u32, kind: Kind, ws0: u32, unsorted0: u32) -> Option<u32> {
        let verbatim = self.ws == ws0 && self.unsorted == unsorted0;
        let n = &mut self.nodes[idx as usize];
        n.kind = kind;
        n.end = self.pos as u32;
        n.verbatim = verbatim;
        Some(idx)
    }

    #[inline(never)]
    fn object(&mut self, idx: u32, depth: u32) -> Option<u32> {
        let (ws0, unsorted0) = (self.ws, self.unsorted);
        self.pos += 1;
        let base = self.stack.len();
        self.gap();
        if self.eat(b'}').is_none() {
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                let ks = self.pos as u32 + 1;
                let (ke, escaped) = self.string()?;
                if escaped {
                    return None;
                }
                self.gap();
                self.eat(b':')?;
                self.gap();
                let name = &self.b[ks as usize..ke];
                let child = self.value(idx, (ks, ke as u32), Tag::of(name), depth + 1)?;
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
            self.unsorted += 1;
        }
        self.nodes[idx as usize].flags = self.object_flags(base);
        self.close(idx, base);
        self.finish(idx, Kind::Object, ws0, unsorted0)
    }

    #[inline(never)]
    fn array(&mut self, idx: u32, depth: u32) -> Option<u32> {
        let (ws0, unsorted0) = (self.ws, self.unsorted);
        self.pos += 1;
        let base = self.stack.len();
        self.gap();
        if self.eat(b']').is_none() {
            loop {
                let child = self.value(idx, (0, 0), Tag::Other, depth + 1)?;
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
        self.nodes[idx as usize].flags = self.below(base);
        self.close(idx, base);
        self.finish(idx, Kind::Array, ws0, unsorted0)
    }

    /// Moves the children on the stack from `base` to the node.
    fn close(&mut self, idx: u32, base: usize) {
        let n = &mut self.nodes[idx as usize];
        n.first = self.children.len() as u32;
        n.len = (self.stack.len() - base) as u32;
        self.children.extend(self.stack[base..].iter().map(|&(_, c)| c));
        self.stack.truncate(base);
    }

    /// What lies below the children on the stack from `base`.
    fn below(&self, base: usize) -> u8 {
        let mut flags = 0;
        for &(_, c) in &self.stack[base..] {
            let f = self.nodes[c as usize].flags;
            if f & (CONCEPT | CONCEPT_BELOW) != 0 {
                flags |= CONCEPT_BELOW;
            }
            if f & (QUANTITY | QUANTITY_BELOW) != 0 {
                flags |= QUANTITY_BELOW;
            }
        }
        flags
    }

    /// Whether the object with members on the stack from `base` is a concept or a quantity,
    /// as `FhirJson` decides it, and what lies below.
    fn object_flags(&self, base: usize) -> u8 {
        let (mut coding, mut coding_array, mut value, mut unit_code_system) = (false, false, None, false);
        for &(_, c) in &self.stack[base..] {
            let n = &self.nodes[c as usize];
            match n.tag {
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
            && value.is_some_and(|n| as_f64(n.kind, &self.text[n.start as usize..n.end as usize]).is_some());
        let mut flags = self.below(base);
        if coding_array {
            flags |= CONCEPT;
        }
        if value {
            flags |= QUANTITY;
        }
        flags
    }
}

/// `Value::as_f64` of a value's bytes (serde_json keeps a number's text as read).
fn as_f64(kind: Kind, raw: &str) -> Option<f64> {
    if kind != Kind::Scalar || matches!(raw, "true" | "false" | "null") {
        return None;
    }
    raw.parse::<f64>().ok().filter(|f| f.is_finite())
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

/// The index's buffers, kept per thread between resources (an event has a few dozen).
#[derive(Default)]
struct Scratch {
    nodes: Vec<Node>,
    children: Vec<u32>,
    stack: Vec<(u64, u32)>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::default();
}

impl<'a> Doc<'a> {
    /// Indexes `text`, or `None` when it is not text this module reproduces exactly.
    pub(super) fn parse(text: &'a str) -> Option<Doc<'a>> {
        if text.len() >= NONE as usize {
            return None; // positions are u32
        }
        let mut scratch = SCRATCH.with(std::cell::Cell::take);
        scratch.nodes.clear();
        scratch.children.clear();
        scratch.stack.clear();
        let mut p = Parser {
            text,
            b: text.as_bytes(),
            pos: 0,
            ws: 0,
            unsorted: 0,
            nodes: scratch.nodes,
            children: scratch.children,
            stack: scratch.stack,
        };
        let parsed = p.document();
        let doc = Doc { text, nodes: p.nodes, children: p.children, edits: Vec::new(), stack: p.stack };
        parsed.map(|_| doc)
    }

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

    /// The member of object `n` named `tag`.
    fn get(&self, n: u32, tag: Tag) -> Option<u32> {
        if self.node(n).kind != Kind::Object {
            return None;
        }
        self.kids(n).iter().copied().find(|&c| self.node(c).tag == tag)
    }

    fn as_str(&self, n: u32) -> Option<Cow<'a, str>> {
        let node = self.node(n);
        (node.kind == Kind::String).then(|| {
            let raw = &self.text[node.start as usize + 1..node.end as usize - 1];
            if node.escaped { unescape(raw) } else { Cow::Borrowed(raw) }
        })
    }

    fn str_field(&self, n: u32, tag: Tag) -> Option<String> {
        self.get(n, tag).and_then(|c| self.as_str(c)).map(Cow::into_owned)
    }

    /// Whether object `n` has no member named `tag` (where enrichment may add one).
    fn absent(&self, n: u32, tag: Tag) -> bool {
        self.get(n, tag).is_none()
    }

    fn edit(&mut self, node: u32, key: &'static str, json: String) {
        // Once a node is off the verbatim path so are its ancestors (whitespace, order and
        // edits all show upwards).
        let mut n = node;
        while n != NONE && self.nodes[n as usize].verbatim {
            self.nodes[n as usize].verbatim = false;
            n = self.nodes[n as usize].parent;
        }
        self.edits.push(Edit { node, key, json });
    }

    /// Calls `f` on each value with `flag` ([`CONCEPT`] or [`QUANTITY`]) in the order and with
    /// the paths `super::walk` gives a `Value` (members in key order), not below one.
    fn walk(&mut self, n: u32, flag: u8, path: &mut String, f: &mut dyn FnMut(&mut Doc<'a>, &str, u32)) {
        let below = flag << 2;
        let node = *self.node(n);
        if node.flags & flag != 0 {
            f(self, path, n);
            return;
        }
        if node.flags & below == 0 {
            return;
        }
        let len = path.len();
        for i in 0..node.len {
            let c = self.children[(node.first + i) as usize];
            if self.node(c).flags & (flag | below) == 0 {
                continue;
            }
            match node.kind {
                Kind::Object => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(self.key(c));
                }
                _ => push_index(path, i),
            }
            self.walk(c, flag, path, f);
            path.truncate(len);
        }
    }

    /// Whether enrichment added anything.
    pub(super) fn changed(&self) -> bool {
        !self.edits.is_empty()
    }

    /// The text serde_json would write for the enriched value.
    pub(super) fn write(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 64 * self.edits.len());
        self.emit(0, &mut out);
        out
    }

    fn emit(&self, n: u32, out: &mut String) {
        let node = self.node(n);
        if node.verbatim {
            out.push_str(self.raw(n));
            return;
        }
        match node.kind {
            Kind::Object => {
                let mut added: Vec<&Edit> = self.edits.iter().filter(|e| e.node == n).collect();
                added.sort_by_key(|e| e.key);
                let mut added = added.into_iter().peekable();
                out.push('{');
                let mut first = true;
                let mut sep = |out: &mut String| {
                    if !std::mem::take(&mut first) {
                        out.push(',');
                    }
                };
                for &c in self.kids(n) {
                    while let Some(e) = added.next_if(|e| e.key < self.key(c)) {
                        sep(out);
                        push_member(out, e.key, &e.json);
                    }
                    sep(out);
                    out.push('"');
                    out.push_str(self.key(c));
                    out.push_str("\":");
                    self.emit(c, out);
                }
                for e in added {
                    sep(out);
                    push_member(out, e.key, &e.json);
                }
                out.push('}');
            }
            Kind::Array => {
                out.push('[');
                let appended = self.edits.iter().filter(|e| e.node == n).map(|e| e.json.as_str());
                let mut first = true;
                for c in self.kids(n).iter() {
                    if !std::mem::take(&mut first) {
                        out.push(',');
                    }
                    self.emit(*c, out);
                }
                for json in appended {
                    if !std::mem::take(&mut first) {
                        out.push(',');
                    }
                    out.push_str(json);
                }
                out.push(']');
            }
            // Leaves are verbatim: the parser took only serde_json's own forms.
            Kind::String | Kind::Scalar => out.push_str(self.raw(n)),
        }
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

fn push_member(out: &mut String, key: &str, json: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
    out.push_str(json);
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
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
                            doc.edit(item, "display", json_string(d));
                        }
                    }
                    None => {
                        let v = serde_json::to_value(FhirCoding::from(c)).unwrap_or(serde_json::Value::Null);
                        doc.edit(arr, "", v.to_string());
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
                    doc.edit(n, k, json_string(val));
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

    fn check(e: &Enricher<'_>, text: &str) {
        let got = enrich_fhir_text(e, text).unwrap();
        let (report, json) = by_value(e, text);
        assert_eq!(got.report, report, "report for {text}");
        assert_eq!(got.json, json, "text for {text}");
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
    fn untouched_text_is_not_rewritten_and_added_members_go_in_key_order() {
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
                r#"{"id":"x","valueQuantity":{"code":"mmol/L","system":"http://unitsofmeasure.org","unit":"mmol/L","value":4.10}}"#
            )
        );
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
