//! An index over a FHIR resource's JSON text, written back as `serde_json::to_string` of the
//! parsed `Value` would write it — or, when the crate asks ([`Hooks::KEEP_ORDER`]), with each
//! object's members in the text's order — without building that `Value`. Enrich (terminology) and
//! fan-out both spend most of their own time parsing and re-serialising resources; each
//! changes only a little (codings and units added, references rewritten), so both read the
//! text once through this index and copy unchanged spans as they are. What each one looks
//! for and changes stays in its crate, through [`Hooks`] while parsing and [`Patch`] while
//! writing.
//!
//! Only text that can be reproduced exactly is taken: strict JSON whose strings use
//! serde_json's own escapes and whose numbers are as the `arbitrary_precision` parser keeps
//! them, no duplicate or escaped keys, an object at the root, under 4 GiB (positions are
//! `u32`). Anything else makes [`Index::parse`] give `None`, and the caller goes the `Value`
//! way.

use std::borrow::Cow;

/// serde_json's recursion limit is 128; deeper text is left to it (and its error).
const MAX_DEPTH: u32 = 100;
/// No node: the root's parent.
pub const NONE: u32 = u32::MAX;

/// What a node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    /// A number, `true`, `false` or `null`.
    Scalar,
}

/// One value in the text. `X` is what the crate using the index keeps per node.
#[derive(Debug, Clone, Copy)]
pub struct Node<X> {
    pub kind: Kind,
    /// The value's bytes.
    pub start: u32,
    pub end: u32,
    /// The member name's bytes (inside the quotes) when the node is an object member.
    pub key: (u32, u32),
    /// The container holding it, [`NONE`] for the root.
    pub parent: u32,
    /// Members or items: `children[first..first + len]`, members in key order.
    pub first: u32,
    pub len: u32,
    /// The string holds escapes.
    pub escaped: bool,
    /// The bytes are already serde_json's output for this value, so they are copied.
    pub verbatim: bool,
    pub extra: X,
}

/// What a crate does while the text is read: it sees each member once its value is read and
/// each container once its children are known (members in key order).
pub trait Hooks {
    /// Kept per node, starting as `Default`.
    type Extra: Copy + Default;

    /// Write objects back with their members in the text's order, added members after them in
    /// the order [`Patch::added`] gives, instead of in key order as a `Value` would: the JSON
    /// the pipeline writes has the model's field order (FHIR's element order), which the typed
    /// records' one-pass reader ([`crate::typed_stream`]) and people reading it both want.
    /// Members out of key order are then not a change, so such objects are copied verbatim.
    const KEEP_ORDER: bool = false;

    /// The member `name` of an object was read, its value is node `child`. `true` when the
    /// hook changed that value (its text will differ): it and its containers are then not
    /// copied verbatim.
    #[inline]
    fn member(&mut self, _nodes: &mut [Node<Self::Extra>], _text: &str, _name: &[u8], _child: u32) -> bool {
        false
    }

    /// Container `node` is complete; `kids` are its children.
    #[inline]
    fn closed(&mut self, _nodes: &mut [Node<Self::Extra>], _text: &str, _node: u32, _kids: &[u32]) {}
}

/// What a crate changes when the index is written back.
pub trait Patch<X> {
    /// The new text of a leaf that is not verbatim, when it was rewritten.
    #[inline]
    fn leaf(&self, _node: &Node<X>) -> Option<&str> {
        None
    }

    /// What is added to container `n`: members `(key, json)` of an object (written in key
    /// order, equal keys as given; after the others, as given, with [`Hooks::KEEP_ORDER`]) or
    /// items appended to an array (`key` unused).
    #[inline]
    fn added<'p>(&'p self, _n: u32, _out: &mut Vec<(&'p str, &'p str)>) {}
}

/// Nothing changed: the text as serde_json would write it.
impl<X> Patch<X> for () {}

/// The index's buffers, kept from one resource to the next.
pub struct Scratch<X> {
    nodes: Vec<Node<X>>,
    children: Vec<u32>,
    stack: Vec<(u64, u32)>,
}

impl<X> Default for Scratch<X> {
    fn default() -> Self {
        Scratch { nodes: Vec::new(), children: Vec::new(), stack: Vec::new() }
    }
}

/// A resource's JSON text, indexed.
pub struct Index<'a, X> {
    text: &'a str,
    nodes: Vec<Node<X>>,
    children: Vec<u32>,
    /// [`Hooks::KEEP_ORDER`] of the hooks it was parsed with.
    keep_order: bool,
}

impl<'a, X: Copy + Default> Index<'a, X> {
    /// Indexes `text` with `hooks`, in `scratch`'s buffers; `None` (buffers back in
    /// `scratch`) when it is not text this module reproduces exactly.
    pub fn parse<H: Hooks<Extra = X>>(text: &'a str, hooks: &mut H, scratch: &mut Scratch<X>) -> Option<Self> {
        if text.len() >= NONE as usize {
            return None; // positions are u32
        }
        let mut p = Parser {
            text,
            b: text.as_bytes(),
            pos: 0,
            changes: 0,
            nodes: std::mem::take(&mut scratch.nodes),
            children: std::mem::take(&mut scratch.children),
            stack: std::mem::take(&mut scratch.stack),
            hooks,
        };
        p.nodes.clear();
        p.children.clear();
        p.stack.clear();
        let parsed = p.document();
        scratch.stack = p.stack;
        let index = Index { text, nodes: p.nodes, children: p.children, keep_order: H::KEEP_ORDER };
        match parsed {
            Some(()) => Some(index),
            None => {
                let mut index = index;
                index.recycle(scratch);
                None
            }
        }
    }
}

impl<'a, X> Index<'a, X> {
    /// Gives the buffers back to `scratch` (the index is empty after).
    pub fn recycle(&mut self, scratch: &mut Scratch<X>) {
        scratch.nodes = std::mem::take(&mut self.nodes);
        scratch.children = std::mem::take(&mut self.children);
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    #[inline]
    pub fn node(&self, n: u32) -> &Node<X> {
        &self.nodes[n as usize]
    }

    #[inline]
    pub fn kids(&self, n: u32) -> &[u32] {
        let node = self.node(n);
        &self.children[node.first as usize..(node.first + node.len) as usize]
    }

    /// The member name of node `n`.
    #[inline]
    pub fn key(&self, n: u32) -> &'a str {
        let (s, e) = self.node(n).key;
        &self.text[s as usize..e as usize]
    }

    /// Node `n`'s bytes as they stand in the text.
    #[inline]
    pub fn raw(&self, n: u32) -> &'a str {
        let node = self.node(n);
        &self.text[node.start as usize..node.end as usize]
    }

    /// The first member of object `n` whose node `pick` takes.
    #[inline]
    pub fn find(&self, n: u32, pick: impl Fn(&Node<X>) -> bool) -> Option<u32> {
        if self.node(n).kind != Kind::Object {
            return None;
        }
        self.kids(n).iter().copied().find(|&c| pick(self.node(c)))
    }

    /// The member of object `n` named `key`.
    pub fn get(&self, n: u32, key: &str) -> Option<u32> {
        if self.node(n).kind != Kind::Object {
            return None;
        }
        self.kids(n).iter().copied().find(|&c| self.key(c) == key)
    }

    /// A string node's value as it stands in the text, without escapes.
    pub fn as_str(&self, n: u32) -> Option<Cow<'a, str>> {
        let node = self.node(n);
        (node.kind == Kind::String).then(|| {
            let raw = &self.text[node.start as usize + 1..node.end as usize - 1];
            if node.escaped { unescape(raw) } else { Cow::Borrowed(raw) }
        })
    }

    /// Marks node `n` as changed: it and its containers are no longer copied verbatim (once a
    /// node is off the verbatim path so are its ancestors, so the walk stops there).
    pub fn changed(&mut self, n: u32) {
        let mut n = n;
        while n != NONE && self.nodes[n as usize].verbatim {
            self.nodes[n as usize].verbatim = false;
            n = self.nodes[n as usize].parent;
        }
    }

    /// Appends node `n` with `patch` applied as serde_json writes it: compact, members in key
    /// order (in the text's order with [`Hooks::KEEP_ORDER`]), verbatim spans copied.
    pub fn emit<P: Patch<X>>(&self, n: u32, patch: &P, out: &mut String) {
        let node = self.node(n);
        if node.verbatim {
            out.push_str(self.raw(n));
            return;
        }
        match node.kind {
            Kind::Object => {
                let mut added = Vec::new();
                patch.added(n, &mut added);
                // Members in key order, added ones merged in by key; or, keeping the text's
                // order, members where they stood and added ones after them as given.
                let kids: Cow<'_, [u32]> = if self.keep_order {
                    let mut kids = self.kids(n).to_vec();
                    kids.sort_unstable_by_key(|&c| self.node(c).start);
                    Cow::Owned(kids)
                } else {
                    added.sort_by_key(|&(k, _)| k);
                    Cow::Borrowed(self.kids(n))
                };
                let mut added = added.into_iter().peekable();
                out.push('{');
                let mut first = true;
                let mut sep = |out: &mut String| {
                    if !std::mem::take(&mut first) {
                        out.push(',');
                    }
                };
                for &c in kids.iter() {
                    while let Some((k, json)) = added.next_if(|&(k, _)| !self.keep_order && k < self.key(c)) {
                        sep(out);
                        push_member(out, k, json);
                    }
                    sep(out);
                    self.emit_member(c, patch, out);
                }
                for (k, json) in added {
                    sep(out);
                    push_member(out, k, json);
                }
                out.push('}');
            }
            Kind::Array => {
                let mut added = Vec::new();
                patch.added(n, &mut added);
                out.push('[');
                let mut first = true;
                for &c in self.kids(n) {
                    if !std::mem::take(&mut first) {
                        out.push(',');
                    }
                    self.emit(c, patch, out);
                }
                for (_, json) in added {
                    if !std::mem::take(&mut first) {
                        out.push(',');
                    }
                    out.push_str(json);
                }
                out.push(']');
            }
            // Other leaves are as read: the parser took only serde_json's own forms.
            Kind::String | Kind::Scalar => out.push_str(patch.leaf(node).unwrap_or_else(|| self.raw(n))),
        }
    }
}

impl<X> Index<'_, X> {
    /// Member `c`: `"name":value`, copied as it stands in the text when it can be.
    fn emit_member<P: Patch<X>>(&self, c: u32, patch: &P, out: &mut String) {
        let (child, (ks, ke)) = (self.node(c), self.node(c).key);
        if child.verbatim && ke + 2 == child.start {
            out.push_str(&self.text[ks as usize - 1..child.end as usize]);
            return;
        }
        out.push('"');
        out.push_str(self.key(c));
        out.push_str("\":");
        self.emit(c, patch, out);
    }
}

fn push_member(out: &mut String, key: &str, json: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
    out.push_str(json);
}

/// `s` as a JSON string, as `serde_json::to_string` writes it.
pub fn quoted(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    crate::model::json::write_str(&mut out, s);
    String::from_utf8(out).expect("escaping keeps UTF-8")
}

/// Every object's member names in the order they stand in `text`, by JSON pointer (`""` the
/// root, `/code/coding/0` …), depth first; `None` when `text` is not JSON. Read through serde,
/// not through [`Index`], so that the crates writing with [`Hooks::KEEP_ORDER`] can check what
/// they wrote against what they read.
pub fn member_order(text: &str) -> Option<Vec<(String, Vec<String>)>> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    // How serde_json's `arbitrary_precision` hands a number to `deserialize_any`.
    const NUMBER: &str = "$serde_json::private::Number";

    struct Walk<'o> {
        at: String,
        out: &'o mut Vec<(String, Vec<String>)>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let slot = self.out.len();
            self.out.push((self.at.clone(), Vec::new()));
            while let Some(key) = map.next_key::<String>()? {
                if key == NUMBER {
                    self.out.truncate(slot);
                    return map.next_value::<IgnoredAny>().map(drop);
                }
                let at = format!("{}/{}", self.at, key.replace('~', "~0").replace('/', "~1"));
                self.out[slot].1.push(key);
                map.next_value_seed(Walk { at, out: &mut *self.out })?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0usize;
            while seq.next_element_seed(Walk { at: format!("{}/{i}", self.at), out: &mut *self.out })?.is_some() {
                i += 1;
            }
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    let mut out = Vec::new();
    let mut d = serde_json::Deserializer::from_str(text);
    Walk { at: String::new(), out: &mut out }.deserialize(&mut d).ok()?;
    d.end().ok()?;
    Some(out)
}

/// `Value::as_f64` of a scalar's bytes (serde_json keeps a number's text as read).
#[inline]
pub fn as_f64(kind: Kind, raw: &str) -> Option<f64> {
    if kind != Kind::Scalar || matches!(raw, "true" | "false" | "null") {
        return None;
    }
    raw.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A string's contents, as the parser took them, without their escapes.
pub fn unescape(raw: &str) -> Cow<'_, str> {
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

struct Parser<'a, 'h, H: Hooks> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    /// Counts of whitespace runs, objects out of key order and hook changes seen so far: a
    /// value whose parse did not change it is already in serde_json's form.
    changes: u32,
    nodes: Vec<Node<H::Extra>>,
    children: Vec<u32>,
    /// Children of the containers being read, members with their name's [`prefix`].
    stack: Vec<(u64, u32)>,
    hooks: &'h mut H,
}

/// A name's first 8 bytes, big-endian, zero-padded (names hold no zero byte): compares as
/// the name does, up to 8 bytes.
#[inline]
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
#[inline]
fn special_in(x: u64) -> Option<usize> {
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let m = zero(x ^ (LO * b'"' as u64)) | zero(x ^ (LO * b'\\' as u64)) | (x.wrapping_sub(LO * 0x20) & !x & HI);
    (m != 0).then(|| m.trailing_zeros() as usize / 8)
}

impl<H: Hooks> Parser<'_, '_, H> {
    /// The whole text: one object, whitespace around it.
    fn document(&mut self) -> Option<()> {
        self.skip_ws();
        if self.peek()? != b'{' {
            return None;
        }
        self.value(NONE, (0, 0), 0)?;
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

    fn value(&mut self, parent: u32, key: (u32, u32), depth: u32) -> Option<u32> {
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
            escaped: false,
            verbatim: true,
            extra: H::Extra::default(),
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
                let child = self.value(idx, (ks as u32, ke as u32), depth + 1)?;
                let name = &self.b[ks..ke];
                if self.hooks.member(&mut self.nodes, self.text, name, child) {
                    self.nodes[child as usize].verbatim = false;
                    self.changes += 1;
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
            if !H::KEEP_ORDER {
                self.changes += 1;
            }
        }
        self.close(idx, Kind::Object, base, changes0)
    }

    #[inline(never)]
    fn array(&mut self, idx: u32, depth: u32) -> Option<u32> {
        let changes0 = self.changes;
        self.pos += 1;
        let base = self.stack.len();
        self.gap();
        if self.eat(b']').is_none() {
            loop {
                let child = self.value(idx, (0, 0), depth + 1)?;
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
        self.close(idx, Kind::Array, base, changes0)
    }

    /// Moves the children on the stack from `base` to the container, which is verbatim when
    /// nothing changed since `changes0`, and tells the hooks.
    fn close(&mut self, idx: u32, kind: Kind, base: usize, changes0: u32) -> Option<u32> {
        let verbatim = self.changes == changes0;
        let first = self.children.len();
        let n = &mut self.nodes[idx as usize];
        n.kind = kind;
        n.end = self.pos as u32;
        n.verbatim = verbatim;
        n.first = first as u32;
        n.len = (self.stack.len() - base) as u32;
        self.children.extend(self.stack[base..].iter().map(|&(_, c)| c));
        self.stack.truncate(base);
        self.hooks.closed(&mut self.nodes, self.text, idx, &self.children[first..]);
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(text: &str) -> Option<String> {
        let mut scratch = Scratch::default();
        let index = Index::<()>::parse(text, &mut NoHooks, &mut scratch)?;
        let mut out = String::new();
        index.emit(0, &(), &mut out);
        Some(out)
    }

    struct NoHooks;
    impl Hooks for NoHooks {
        type Extra = ();
    }

    #[test]
    fn only_text_serde_json_would_write_is_taken_and_written_as_it_would() {
        for (text, taken) in [
            (r#"{"b":1,"a":[true,false,null,{"z":"x","y":-0.50e+3}]}"#, true),
            ("{ \"a\" :\n[ 1 , 2 ]\t}", true),
            (r#"{"a":"\u0001 \u001f \b\f\n\r\t\"\\é"}"#, true),
            (r#"{"a":"\/"}"#, false),
            (r#"{"a":"\u00e9"}"#, false),
            (r#"{"a":"\u001F"}"#, false),
            (r#"{"a":"\u000a"}"#, false),
            (r#"{"a":1E5}"#, false),
            (r#"{"a":1e5}"#, false),
            (r#"{"a":1,"a":2}"#, false),
            (r#"{"a\"b":1}"#, false),
            (r#"{"a":01}"#, false),
            (r#"{"a":1.}"#, false),
            (r#"{"a":[1,]}"#, false),
            (r#"{"a":1} x"#, false),
            ("[1]", false),
            ("{\"a\":\"raw\ttab\"}", false),
        ] {
            let got = parse(text);
            assert_eq!(got.is_some(), taken, "{text}");
            if let Some(got) = got {
                let v: Value = serde_json::from_str(text).unwrap();
                assert_eq!(got, serde_json::to_string(&v).unwrap(), "{text}");
            }
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&deep).is_none(), "left to serde_json's depth limit");
    }

    struct InOrder;
    impl Hooks for InOrder {
        type Extra = ();
        const KEEP_ORDER: bool = true;
    }

    /// Adds members to the objects whose `id` member is `"add"`, in the order given.
    struct Adds(Vec<u32>);
    impl Patch<()> for Adds {
        fn added<'p>(&'p self, n: u32, out: &mut Vec<(&'p str, &'p str)>) {
            if self.0.contains(&n) {
                out.extend([("zz", "1"), ("aa", "\"x\"")]);
            }
        }
    }

    fn in_order(text: &str) -> Option<String> {
        let mut scratch = Scratch::default();
        let mut index = Index::<()>::parse(text, &mut InOrder, &mut scratch)?;
        let targets: Vec<u32> = (0..index.nodes.len() as u32)
            .filter(|&n| index.get(n, "id").and_then(|i| index.as_str(i)).as_deref() == Some("add"))
            .collect();
        targets.iter().for_each(|&n| index.changed(n));
        let mut out = String::new();
        index.emit(0, &Adds(targets), &mut out);
        Some(out)
    }

    #[test]
    fn keep_order_writes_members_in_the_texts_order_and_added_ones_after_them() {
        // Unchanged compact text, in any member order, comes back byte for byte.
        for text in [r#"{"resourceType":"Patient","id":"p","b":[{"z":1,"y":2}],"a":{}}"#, r#"{"b":1,"a":2}"#] {
            assert_eq!(in_order(text).as_deref(), Some(text));
        }
        // Whitespace goes, the order stays.
        assert_eq!(
            in_order("{ \"b\" : [ 1 ,2 ],\n \"a\":{\"d\":1, \"c\":2} }").unwrap(),
            r#"{"b":[1,2],"a":{"d":1,"c":2}}"#
        );
        // Added members go after the text's own, in the order the patch gives, at any depth;
        // the rest of the document stays as it was.
        let text = r#"{"resourceType":"Observation","id":"add","code":{"id":"add","text":"t"},"status":"final","x":[{"id":"add"},{"id":"no","b":1,"a":2}]}"#;
        let got = in_order(text).unwrap();
        assert_eq!(
            got,
            r#"{"resourceType":"Observation","id":"add","code":{"id":"add","text":"t","zz":1,"aa":"x"},"status":"final","x":[{"id":"add","zz":1,"aa":"x"},{"id":"no","b":1,"a":2}],"zz":1,"aa":"x"}"#
        );
        // The same document as a `Value` has it, whatever the order.
        let mut want: Value = serde_json::from_str(text).unwrap();
        for path in ["", "/code", "/x/0"] {
            let v = want.pointer_mut(path).unwrap();
            v["zz"] = 1.into();
            v["aa"] = "x".into();
        }
        assert_eq!(serde_json::from_str::<Value>(&got).unwrap(), want);
        let order = member_order(&got).unwrap();
        assert_eq!(
            order[0],
            ("".into(), ["resourceType", "id", "code", "status", "x", "zz", "aa"].map(String::from).to_vec())
        );
        assert_eq!(order[1], ("/code".into(), ["id", "text", "zz", "aa"].map(String::from).to_vec()));
        assert_eq!(order[3], ("/x/1".into(), ["id", "b", "a"].map(String::from).to_vec()));
        assert_eq!(member_order(r#"{"a/b~":{"n":1.50}}"#).unwrap()[1].0, "/a~1b~0");
        // What is not taken without the order is not taken with it either.
        for text in [r#"{"a":1,"a":2}"#, r#"{"b":1,"a":2,"b":3}"#, r#"{"a":"\/"}"#, "[1]"] {
            assert!(in_order(text).is_none(), "{text}");
        }
    }

    #[test]
    fn quoted_and_unescape_are_inverse_as_serde_json_escapes() {
        for s in ["plain", "a\"b\\c\n\t\u{1}\u{1f}é€", ""] {
            let q = quoted(s);
            assert_eq!(q, serde_json::to_string(s).unwrap());
            assert_eq!(unescape(&q[1..q.len() - 1]), s);
        }
    }
}
