//! Building and writing messages: an owned model you can fill by path and encode with
//! correct escaping, and re-encoding of a parsed message.
//!
//! Round trips hold both ways: `parse(encode(model))` gives back the model, and
//! `parse(message.encode())` gives back the same segments and fields.

use crate::Delimiters;
use crate::charset::{self, Charset};
use crate::escape;
use crate::message::Message;
use crate::path::{Path, PathError};

/// The innermost value: text (escaped on encoding), an explicit null `""`, or ER7 text that
/// must be written as is (it holds formatting or other escapes that plain text cannot carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    Text(String),
    Null,
    Raw(String),
}

impl Leaf {
    fn empty() -> Leaf {
        Leaf::Text(String::new())
    }
}

/// Subcomponents of one component.
pub type OwnedComponent = Vec<Leaf>;
/// Components of one repetition.
pub type OwnedRepetition = Vec<OwnedComponent>;

/// One field: its repetitions. An empty field is one repetition holding one empty text,
/// which is exactly what parsing an empty field gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedField {
    pub repetitions: Vec<OwnedRepetition>,
}

impl Default for OwnedField {
    fn default() -> Self {
        OwnedField::text("")
    }
}

impl OwnedField {
    /// A field holding one plain text value.
    pub fn text(t: impl Into<String>) -> Self {
        OwnedField { repetitions: vec![vec![vec![Leaf::Text(t.into())]]] }
    }
}

/// One segment. `fields[n - 1]` is field `n`; for MSH, fields 1 and 2 are written from the
/// delimiters whatever they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSegment {
    pub name: String,
    pub fields: Vec<OwnedField>,
}

/// A message being built (or a parsed message detached into owned values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedMessage {
    pub delimiters: Delimiters,
    /// Character set of the encoded bytes; keep it in line with MSH-18.
    pub charset: Charset,
    pub segments: Vec<OwnedSegment>,
}

impl OwnedSegment {
    pub fn new(name: impl Into<String>) -> Self {
        OwnedSegment { name: name.into(), fields: Vec::new() }
    }

    fn msh(d: &Delimiters) -> Self {
        OwnedSegment {
            name: "MSH".into(),
            fields: vec![OwnedField::text((d.field as char).to_string()), OwnedField::text(d.encoding_characters())],
        }
    }

    /// Sets field `n` (1-based) to one text value.
    pub fn set_field(&mut self, n: usize, text: impl Into<String>) -> &mut Self {
        if n >= 1 {
            if self.fields.len() < n {
                self.fields.resize_with(n, OwnedField::default);
            }
            self.fields[n - 1] = OwnedField::text(text);
        }
        self
    }
}

fn grow<T>(v: &mut Vec<T>, n: usize, mk: impl Fn() -> T) {
    while v.len() < n {
        v.push(mk());
    }
}

impl OwnedMessage {
    /// An empty message with just `MSH|^~\&` (or the given delimiters).
    pub fn new(delimiters: Delimiters) -> Self {
        OwnedMessage { delimiters, charset: Charset::Unspecified, segments: vec![OwnedSegment::msh(&delimiters)] }
    }

    /// Appends a segment and returns it for filling.
    pub fn push_segment(&mut self, name: impl Into<String>) -> &mut OwnedSegment {
        self.segments.push(OwnedSegment::new(name));
        self.segments.last_mut().expect("just pushed")
    }

    /// Sets the value at `path` to `text`, creating segments, fields, repetitions and
    /// components as needed. A path without a component replaces the whole field (or
    /// repetition) with one value.
    pub fn set(&mut self, path: &str, text: &str) -> Result<&mut Self, PathError> {
        self.set_leaf(path, Leaf::Text(text.to_string()))
    }

    /// Sets the value at `path` to the explicit null `""`.
    pub fn set_null(&mut self, path: &str) -> Result<&mut Self, PathError> {
        self.set_leaf(path, Leaf::Null)
    }

    pub fn set_leaf(&mut self, path: &str, leaf: Leaf) -> Result<&mut Self, PathError> {
        let p: Path = path.parse()?;
        if p.segment() == "MSH" && p.field <= 2 {
            return Err(PathError { path: path.into(), reason: "MSH-1 and MSH-2 come from the delimiters" });
        }
        let mut seen = 0;
        let mut idx = None;
        for (i, s) in self.segments.iter().enumerate() {
            if s.name == p.segment() {
                seen += 1;
                if seen == p.occurrence {
                    idx = Some(i);
                    break;
                }
            }
        }
        let idx = match idx {
            Some(i) => i,
            None => {
                for _ in seen..p.occurrence {
                    self.segments.push(OwnedSegment::new(p.segment()));
                }
                self.segments.len() - 1
            }
        };
        let seg = &mut self.segments[idx];
        if seg.fields.len() < p.field {
            seg.fields.resize_with(p.field, OwnedField::default);
        }
        let field = &mut seg.fields[p.field - 1];
        match (p.repetition, p.component) {
            (None, None) => {
                field.repetitions = vec![vec![vec![leaf]]];
            }
            (r, c) => {
                let r = r.unwrap_or(1);
                grow(&mut field.repetitions, r, || vec![vec![Leaf::empty()]]);
                let rep = &mut field.repetitions[r - 1];
                match c {
                    None => *rep = vec![vec![leaf]],
                    Some(c) => {
                        grow(rep, c, || vec![Leaf::empty()]);
                        let comp = &mut rep[c - 1];
                        match p.subcomponent {
                            None => *comp = vec![leaf],
                            Some(s) => {
                                grow(comp, s, Leaf::empty);
                                comp[s - 1] = leaf;
                            }
                        }
                    }
                }
            }
        }
        Ok(self)
    }

    /// The message as UTF-8 text with CR segment terminators.
    pub fn encode_text(&self) -> String {
        let d = &self.delimiters;
        let mut out = String::new();
        for seg in &self.segments {
            out.push_str(&seg.name);
            let is_header = matches!(seg.name.as_str(), "MSH" | "FHS" | "BHS");
            let skip = if is_header {
                out.push(d.field as char);
                out.push_str(&d.encoding_characters());
                2
            } else {
                0
            };
            for field in seg.fields.iter().skip(skip) {
                out.push(d.field as char);
                for (ri, rep) in field.repetitions.iter().enumerate() {
                    if ri > 0 {
                        out.push(d.repetition as char);
                    }
                    for (ci, comp) in rep.iter().enumerate() {
                        if ci > 0 {
                            out.push(d.component as char);
                        }
                        for (si, leaf) in comp.iter().enumerate() {
                            if si > 0 {
                                out.push(d.subcomponent as char);
                            }
                            match leaf {
                                Leaf::Text(t) => out.push_str(&escape::escape(t, d)),
                                Leaf::Null => out.push_str("\"\""),
                                Leaf::Raw(r) => out.push_str(r),
                            }
                        }
                    }
                }
            }
            out.push('\r');
        }
        out
    }

    /// The message as bytes in [`OwnedMessage::charset`]; characters the set cannot hold are
    /// written as `\Xhh\` escapes of their UTF-8 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let text = self.encode_text();
        charset::encode(&text, self.charset, Some(self.delimiters.escape)).into_owned()
    }

    /// Detaches a parsed message into owned values (text unescaped; values with formatting or
    /// other non-text escapes kept raw so nothing is lost).
    pub fn from_message(msg: &Message<'_>) -> Self {
        let d = msg.delimiters();
        let leaf = |v: crate::Value<'_>| {
            if v.is_null() {
                Leaf::Null
            } else if escape::is_plain(v.as_str(), &d) {
                Leaf::Text(v.unescaped().into_owned())
            } else {
                Leaf::Raw(v.as_str().to_string())
            }
        };
        let segments = msg
            .segments()
            .map(|seg| {
                let is_header = matches!(seg.name(), "MSH" | "FHS" | "BHS");
                let fields = seg
                    .fields()
                    .enumerate()
                    .map(|(i, f)| {
                        if is_header && i < 2 {
                            return OwnedField::text(if i == 0 {
                                (d.field as char).to_string()
                            } else {
                                d.encoding_characters()
                            });
                        }
                        OwnedField {
                            repetitions: f
                                .repetitions()
                                .map(|r| r.components().map(|c| c.subcomponents().map(leaf).collect()).collect())
                                .collect(),
                        }
                    })
                    .collect();
                OwnedSegment { name: seg.name().to_string(), fields }
            })
            .collect();
        OwnedMessage { delimiters: d, charset: msg.charset(), segments }
    }
}

impl Message<'_> {
    /// Re-encodes the parsed message: the same segments and fields, CR terminators, in the
    /// message's declared character set. Parsing the result gives the same message.
    pub fn encode(&self) -> Vec<u8> {
        let mut text = String::with_capacity(self.text().len() + 1);
        for seg in self.segments() {
            text.push_str(seg.raw());
            text.push('\r');
        }
        match charset::encode(&text, self.charset(), None) {
            std::borrow::Cow::Borrowed(_) => text.into_bytes(),
            std::borrow::Cow::Owned(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> OwnedMessage {
        let mut m = OwnedMessage::new(Delimiters::default());
        m.set("MSH-9.1", "ADT").unwrap();
        m.set("MSH-9.2", "A01").unwrap();
        m.set("MSH-10", "C1").unwrap();
        m.set("MSH-11", "P").unwrap();
        m.set("MSH-12", "2.5.1").unwrap();
        m
    }

    #[test]
    fn builds_and_escapes() {
        let mut m = base();
        m.set("PID-3[2].1", "X|Y").unwrap();
        m.set("PID-5.1", "O'NEIL^SMITH").unwrap();
        m.set_null("PID-8").unwrap();
        let text = m.encode_text();
        assert_eq!(text, "MSH|^~\\&|||||||ADT^A01|C1|P|2.5.1\rPID|||~X\\F\\Y||O'NEIL\\S\\SMITH|||\"\"\r");
        let parsed = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.get("PID-3[2].1").unwrap().unescaped(), "X|Y");
        assert!(parsed.get("PID-8").unwrap().is_null());
        assert_eq!(OwnedMessage::from_message(&parsed), m);
    }

    #[test]
    fn parsed_message_reencodes() {
        let raw = b"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\nPID|1||9^^^H^MR\r\nOBX|1|FT|X||a\\.br\\b\r";
        let m = Message::parse(raw).unwrap();
        let out = m.encode();
        let again = Message::parse(&out).unwrap();
        assert_eq!(again.text(), m.text().replace("\r\n", "\r").replace('\n', "\r"));
        let owned = OwnedMessage::from_message(&m);
        assert_eq!(owned.segments[2].fields[4].repetitions[0][0][0], Leaf::Raw("a\\.br\\b".into()));
        assert_eq!(OwnedMessage::from_message(&Message::parse(&owned.encode()).unwrap()), owned);
    }

    #[test]
    fn latin1_output() {
        let mut m = base();
        m.charset = Charset::Latin1;
        m.set("MSH-18", "8859/1").unwrap();
        m.set("PID-5.1", "Jos\u{e9}").unwrap();
        let bytes = m.encode();
        assert!(bytes.windows(4).any(|w| w == b"Jos\xE9"));
        let p = Message::parse(&bytes).unwrap();
        assert_eq!(p.get("PID-5.1").unwrap().as_str(), "José");
        assert_eq!(p.encode(), bytes);
    }
}
