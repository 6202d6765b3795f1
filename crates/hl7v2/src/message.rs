//! Parsing a message: one pass over the bytes that finds segment and field boundaries and
//! records them as offsets into the (borrowed) text.
//!
//! The index is two `Vec`s per message (segments and fields), sized up front, so the cost
//! does not grow with a per-field allocation. Repetitions, components and subcomponents are
//! split lazily by [`crate::value`], and escapes are decoded only on request. UTF-8 and ASCII
//! input is borrowed as is; ISO 8859 input with bytes above 0x7F is transcoded once into an
//! owned UTF-8 buffer that is then indexed (offsets in errors then refer to that buffer).

use crate::charset::{self, Charset, CharsetError};
use crate::error::{ErrorKind, Location, ParseError};
use crate::path::Path;
use crate::value::{Field, Value};
use crate::{Delimiters, Limits};
use std::borrow::Cow;
use std::fmt;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How to parse.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    pub limits: Limits,
    /// Replace bytes invalid for the declared character set with U+FFFD (and report it as a
    /// [`Warning`]) instead of failing.
    pub lenient_charset: bool,
    /// MSH fields (among 9, 10, 11, 12) a sender profile allows to be empty. Empty by default:
    /// a message without its required MSH fields is an error, not a guess.
    pub allow_missing_msh: Vec<usize>,
}

/// Something the parser accepted but that a careful operator should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// MSH-2 was `^~\\&`: the escape character doubled, as when a message is copied from a
    /// source-code string literal. Read as `^~\&`.
    DoubledEscapeInMsh2,
    /// Lenient decoding replaced invalid bytes by U+FFFD.
    ReplacedInvalidBytes { charset: &'static str, first_offset: usize, count: usize },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::DoubledEscapeInMsh2 => {
                write!(f, "MSH-2 has a doubled escape character (^~\\\\&); read as ^~\\&")
            }
            Warning::ReplacedInvalidBytes { charset, first_offset, count } => write!(
                f,
                "{count} byte sequence(s) invalid for {charset} replaced by U+FFFD, first at byte {first_offset}"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

#[derive(Debug, Clone, Copy)]
struct SegIdx {
    start: u32,
    end: u32,
    first_field: u32,
    /// Number of spans, the segment name included.
    span_count: u32,
}

/// A parsed HL7 v2 message: the text plus an index of where every segment and field is.
#[derive(Clone)]
pub struct Message<'a> {
    text: Cow<'a, str>,
    delims: Delimiters,
    segs: Vec<SegIdx>,
    spans: Vec<Span>,
    charset: Charset,
    warnings: Vec<Warning>,
    /// Bytes before the MSH in the input (byte-order mark, blank lines).
    base: usize,
}

impl fmt::Debug for Message<'_> {
    // Deliberately no content: messages carry PHI and must not end up in logs by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("type", &self.message_type())
            .field("trigger", &self.trigger())
            .field("segments", &self.segs.len())
            .field("bytes", &self.text.len())
            .finish()
    }
}

fn err(kind: ErrorKind, location: Location) -> ParseError {
    ParseError::new(kind, location)
}

fn is_terminator(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

/// Where `offset` falls, computed from raw bytes (used for errors found before indexing).
fn locate(bytes: &[u8], offset: usize, fs: u8, base: usize) -> Location {
    let upto = &bytes[..offset.min(bytes.len())];
    let seg_start = upto.iter().rposition(|&b| is_terminator(b)).map_or(0, |p| p + 1);
    let seg_index = upto[..seg_start].split(|&b| is_terminator(b)).filter(|l| !l.is_empty()).count() + 1;
    let name_end = (seg_start + 3).min(bytes.len());
    let name = String::from_utf8_lossy(&bytes[seg_start..name_end]).into_owned();
    let mut field = upto[seg_start..].iter().filter(|&&b| b == fs).count();
    if name == "MSH" && field >= 1 {
        field += 1;
    }
    Location {
        segment: Some(name),
        segment_index: Some(seg_index),
        field: (field > 0).then_some(field),
        offset: base + offset,
        ..Default::default()
    }
}

impl<'a> Message<'a> {
    /// Parses one message with default options.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, ParseError> {
        Self::parse_with(bytes, &ParseOptions::default())
    }

    /// Parses one message.
    pub fn parse_with(bytes: &'a [u8], opts: &ParseOptions) -> Result<Message<'a>, ParseError> {
        let limits = &opts.limits;
        if bytes.len() > limits.max_message_bytes {
            return Err(err(
                ErrorKind::MessageTooLarge { len: bytes.len(), max: limits.max_message_bytes },
                Location::at(0),
            ));
        }
        let mut base = 0;
        if bytes.starts_with(BOM) {
            base = BOM.len();
        }
        while base < bytes.len() && matches!(bytes[base], b'\r' | b'\n' | b' ' | b'\t') {
            base += 1;
        }
        let b = &bytes[base..];
        if b.is_empty() {
            return Err(err(ErrorKind::Empty, Location::at(base)));
        }
        if !b.starts_with(b"MSH") {
            let head = &b[..b.len().min(3)];
            if matches!(head, b"FHS" | b"BHS") {
                let found = String::from_utf8_lossy(head).into_owned();
                return Err(err(ErrorKind::BatchHeader { found }, Location::at(base)));
            }
            // Only the segment id (or the first byte): the rest of the line is content, PHI,
            // and this text goes into logs, NAKs and dead letters.
            let found = if head.len() == 3 && head.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
                format!("segment {}", String::from_utf8_lossy(head))
            } else {
                format!("byte 0x{:02X}", b[0])
            };
            return Err(err(
                ErrorKind::MissingMsh { found },
                Location { segment_index: Some(1), offset: base, ..Default::default() },
            ));
        }
        let msh_loc = |field: usize, off: usize| Location::in_field("MSH", 1, field, base + off);
        let Some(&fs) = b.get(3) else {
            return Err(err(
                ErrorKind::BadEncodingCharacters { problem: "MSH segment ends before MSH-1".into() },
                msh_loc(1, 3),
            ));
        };
        let enc_len = b[4..].iter().position(|&c| c == fs || is_terminator(c)).unwrap_or(b.len() - 4);
        let (delims, doubled) = Delimiters::from_msh(fs, &b[4..4 + enc_len]).map_err(|p| {
            let field = if matches!(p, crate::delimiters::DelimiterProblem::BadFieldSeparator(_)) { 1 } else { 2 };
            err(
                ErrorKind::BadEncodingCharacters { problem: p.to_string() },
                msh_loc(field, if field == 1 { 3 } else { 4 }),
            )
        })?;
        let mut warnings = Vec::new();
        if doubled {
            warnings.push(Warning::DoubledEscapeInMsh2);
        }

        // MSH-18 decides how to read the bytes; MSH itself is ASCII in every supported set.
        let msh_end = b.iter().position(|&c| is_terminator(c)).unwrap_or(b.len());
        let (charset_raw, charset_off) = {
            let mut off = 4;
            let mut found: (&[u8], usize) = (&[], 0);
            for (k, f) in b[4..msh_end].split(|&c| c == fs).enumerate() {
                if k == 16 {
                    found = (f, off);
                    break;
                }
                off += f.len() + 1;
            }
            found
        };
        let first_rep = charset_raw.split(|&c| c == delims.repetition).next().unwrap_or(&[]);
        let charset_name = String::from_utf8_lossy(first_rep);
        // Unescaped, like MSH-12: `/` may be a delimiter of this sender.
        let charset_name = crate::escape::unescape(&charset_name, &delims);
        let charset = Charset::from_msh18(&charset_name).map_err(|e| {
            let kind = match e {
                CharsetError::Unknown(value) => ErrorKind::UnknownCharset { value },
                CharsetError::Unsupported(value) => ErrorKind::UnsupportedCharset { value },
            };
            err(kind, msh_loc(18, charset_off))
        })?;
        let (text, replaced) = charset::decode(b, charset, opts.lenient_charset).map_err(|e| {
            err(ErrorKind::InvalidBytes { charset: charset.label(), byte: e.byte }, locate(b, e.offset, fs, base))
        })?;
        if let Some(r) = replaced {
            warnings.push(Warning::ReplacedInvalidBytes {
                charset: charset.label(),
                first_offset: base + r.first_offset,
                count: r.count,
            });
        }

        let mut msg = Message { text, delims, segs: Vec::new(), spans: Vec::new(), charset, warnings, base };
        msg.index(limits)?;
        msg.check_msh(opts)?;
        Ok(msg)
    }

    fn index(&mut self, limits: &Limits) -> Result<(), ParseError> {
        let t = self.text.as_bytes();
        let n = t.len();
        if n > u32::MAX as usize {
            return Err(err(ErrorKind::MessageTooLarge { len: n, max: u32::MAX as usize }, Location::at(0)));
        }
        let fs = self.delims.field;
        let base = self.base;
        let segs = &mut self.segs;
        let spans = &mut self.spans;
        segs.reserve((n / 32 + 4).min(512));
        // Sized for short fields so typical messages never regrow (8 bytes per span).
        spans.reserve((n / 4 + 16).min(4096));
        // One SIMD scan finds every field separator and segment terminator; the loop below
        // only turns those positions into spans.
        let mut in_seg = false;
        let mut seg_start = 0usize;
        let mut first_field = 0usize;
        let mut fstart = 0usize;
        for p in crate::scan::Delims::new(t, fs, b'\r', b'\n').chain(std::iter::once(n)) {
            let is_fs = p < n && t[p] == fs;
            if !in_seg {
                if p == fstart && !is_fs {
                    // Blank line (or the end): no segment here.
                    fstart = p + 1;
                    continue;
                }
                if segs.len() >= limits.max_segments {
                    return Err(err(
                        ErrorKind::TooManySegments { max: limits.max_segments },
                        Location { segment_index: Some(segs.len() + 1), offset: base + fstart, ..Default::default() },
                    ));
                }
                in_seg = true;
                seg_start = fstart;
                first_field = spans.len();
            }
            if p - fstart > limits.max_field_bytes {
                let name = String::from_utf8_lossy(&t[seg_start..(seg_start + 3).min(n)]).into_owned();
                let field = spans.len() - first_field + usize::from(name == "MSH");
                return Err(err(
                    ErrorKind::FieldTooLong { len: p - fstart, max: limits.max_field_bytes },
                    Location::in_field(&name, segs.len() + 1, field, base + fstart),
                ));
            }
            spans.push(Span { start: fstart as u32, end: p as u32 });
            if spans.len() - first_field == 1 {
                let name = &t[fstart..p];
                let ok = name.len() == 3 && name.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
                let loc =
                    || Location { segment_index: Some(segs.len() + 1), offset: base + seg_start, ..Default::default() };
                if !ok {
                    let found = String::from_utf8_lossy(&name[..name.len().min(12)]).into_owned();
                    return Err(err(ErrorKind::InvalidSegmentId { found }, loc()));
                }
                if !segs.is_empty() {
                    if name == b"MSH" {
                        return Err(err(ErrorKind::UnexpectedMsh, loc()));
                    }
                    if matches!(name, b"FHS" | b"BHS" | b"BTS" | b"FTS") {
                        let found = String::from_utf8_lossy(name).into_owned();
                        return Err(err(ErrorKind::BatchHeader { found }, loc()));
                    }
                }
                if is_fs && matches!(name, b"MSH" | b"FHS" | b"BHS") {
                    // MSH-1 is the field separator itself.
                    spans.push(Span { start: p as u32, end: p as u32 + 1 });
                    fstart = p + 1;
                    continue;
                }
            }
            fstart = p + 1;
            if !is_fs {
                segs.push(SegIdx {
                    start: seg_start as u32,
                    end: p as u32,
                    first_field: first_field as u32,
                    span_count: (spans.len() - first_field) as u32,
                });
                in_seg = false;
            }
        }
        Ok(())
    }

    fn check_msh(&self, opts: &ParseOptions) -> Result<(), ParseError> {
        let msh = self.msh();
        let required: [(usize, &'static str); 4] =
            [(9, "message type"), (10, "message control id"), (11, "processing id"), (12, "version id")];
        for (n, name) in required {
            if opts.allow_missing_msh.contains(&n) {
                continue;
            }
            let present = msh.field(n).and_then(|f| f.component(1)).is_some_and(|c| !c.is_empty() && !c.is_null());
            if !present {
                let offset = msh.field_offset(n).unwrap_or(msh.raw().len());
                return Err(err(
                    ErrorKind::RequiredFieldMissing { field: n, name },
                    Location::in_field("MSH", 1, n, self.base + offset),
                ));
            }
        }
        if let Some(v) = msh.field(12).and_then(|f| f.component(1)) {
            // Unescaped: a sender whose delimiters include '.' must write the version escaped.
            let v = v.unescaped();
            if !v.is_empty() && !is_v2_version(&v) {
                let offset = msh.field_offset(12).unwrap_or(0);
                return Err(err(
                    ErrorKind::UnsupportedVersion { value: v.chars().take(20).collect() },
                    Location::in_field("MSH", 1, 12, self.base + offset),
                ));
            }
        }
        Ok(())
    }

    /// Detaches the message from the input buffer.
    pub fn into_owned(self) -> Message<'static> {
        Message {
            text: Cow::Owned(self.text.into_owned()),
            delims: self.delims,
            segs: self.segs,
            spans: self.spans,
            charset: self.charset,
            warnings: self.warnings,
            base: self.base,
        }
    }

    /// The message text (UTF-8), from MSH on.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the text is borrowed from the input (no copy was made).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.text, Cow::Borrowed(_))
    }

    pub fn delimiters(&self) -> Delimiters {
        self.delims
    }

    /// The character set declared in MSH-18 (and used to decode the input).
    pub fn charset(&self) -> Charset {
        self.charset
    }

    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    pub fn segment_count(&self) -> usize {
        self.segs.len()
    }

    fn seg(&self, i: usize) -> Segment<'_> {
        let s = self.segs[i];
        let first = s.first_field as usize;
        Segment {
            text: &self.text,
            start: s.start as usize,
            end: s.end as usize,
            spans: &self.spans[first..first + s.span_count as usize],
            delims: self.delims,
            index: i + 1,
        }
    }

    /// All segments in order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment<'_>> + '_ {
        (0..self.segs.len()).map(move |i| self.seg(i))
    }

    /// The segment at 1-based position `n`.
    pub fn segment_at(&self, n: usize) -> Option<Segment<'_>> {
        (n >= 1 && n <= self.segs.len()).then(|| self.seg(n - 1))
    }

    /// The first segment named `name`.
    pub fn segment(&self, name: &str) -> Option<Segment<'_>> {
        self.segments().find(|s| s.name() == name)
    }

    /// Every segment named `name`, in order.
    pub fn segments_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Segment<'s>> + 's {
        self.segments().filter(move |s| s.name() == name)
    }

    /// The MSH segment (always the first).
    pub fn msh(&self) -> Segment<'_> {
        self.seg(0)
    }

    /// Value at a path such as `PID-3[2].1`, `OBX(3)-5` or `MSH-9.2`; `None` when the path
    /// is malformed or names nothing present. See [`Path`].
    pub fn get(&self, path: &str) -> Option<Value<'_>> {
        path.parse::<Path>().ok().and_then(|p| self.get_path(&p))
    }

    /// Value at a parsed path.
    pub fn get_path(&self, path: &Path) -> Option<Value<'_>> {
        let name = path.segment();
        let seg = self.segments().filter(|s| s.name() == name).nth(path.occurrence.max(1) - 1)?;
        path.resolve_in(&seg)
    }

    fn msh_component(&self, field: usize, comp: usize) -> Option<&str> {
        let c = self.msh().field(field)?.component(comp)?;
        (!c.is_empty()).then_some(c.as_str())
    }

    /// MSH-9.1, e.g. `ADT`.
    pub fn message_type(&self) -> Option<&str> {
        self.msh_component(9, 1)
    }

    /// MSH-9.2, e.g. `A01`.
    pub fn trigger(&self) -> Option<&str> {
        self.msh_component(9, 2)
    }

    /// MSH-9.3, the message structure if the sender gave it, e.g. `ADT_A01`.
    pub fn structure_id(&self) -> Option<&str> {
        self.msh_component(9, 3)
    }

    /// MSH-10.
    pub fn control_id(&self) -> Option<&str> {
        self.msh().field(10).map(|f| f.as_str()).filter(|s| !s.is_empty())
    }

    /// MSH-11.1, e.g. `P`.
    pub fn processing_id(&self) -> Option<&str> {
        self.msh_component(11, 1)
    }

    /// MSH-12.1, e.g. `2.5.1`.
    pub fn version(&self) -> Option<&str> {
        self.msh_component(12, 1)
    }

    /// MSH-3.1 and MSH-4.1: sending application and facility (namespace ids).
    pub fn sender(&self) -> Party<'_> {
        Party { application: self.msh_component(3, 1), facility: self.msh_component(4, 1) }
    }

    /// MSH-5.1 and MSH-6.1: receiving application and facility.
    pub fn receiver(&self) -> Party<'_> {
        Party { application: self.msh_component(5, 1), facility: self.msh_component(6, 1) }
    }

    /// MSH-15, accept acknowledgment type (enhanced mode), e.g. `AL`.
    pub fn accept_ack_type(&self) -> Option<&str> {
        self.msh_component(15, 1)
    }

    /// MSH-16, application acknowledgment type (enhanced mode), e.g. `NE`.
    pub fn application_ack_type(&self) -> Option<&str> {
        self.msh_component(16, 1)
    }
}

fn is_v2_version(v: &str) -> bool {
    let mut parts = v.split('.');
    if parts.next() != Some("2") {
        return false;
    }
    let mut rest = 0;
    for p in parts {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        rest += 1;
    }
    (1..=3).contains(&rest)
}

/// An application and facility pair from MSH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Party<'m> {
    pub application: Option<&'m str>,
    pub facility: Option<&'m str>,
}

/// One segment: its name and fields.
#[derive(Clone, Copy)]
pub struct Segment<'m> {
    text: &'m str,
    start: usize,
    end: usize,
    /// spans[0] is the name; spans[n] is field n.
    spans: &'m [Span],
    delims: Delimiters,
    index: usize,
}

impl fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Segment({} #{}, {} fields)", self.name(), self.index, self.field_count())
    }
}

impl<'m> Segment<'m> {
    /// The segment id, e.g. `PID`.
    pub fn name(&self) -> &'m str {
        let s = self.spans[0];
        &self.text[s.start as usize..s.end as usize]
    }

    /// 1-based position in the message.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The whole segment text without its terminator.
    pub fn raw(&self) -> &'m str {
        &self.text[self.start..self.end]
    }

    /// Byte range of the segment in the message text.
    pub fn byte_range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }

    /// Number of fields present (for MSH, counting MSH-1).
    pub fn field_count(&self) -> usize {
        self.spans.len() - 1
    }

    fn opaque(&self, n: usize) -> bool {
        n <= 2 && matches!(self.name(), "MSH" | "FHS" | "BHS")
    }

    /// Field `n` (1-based; MSH-1 is the field separator, MSH-2 the encoding characters).
    pub fn field(&self, n: usize) -> Option<Field<'m>> {
        if n == 0 {
            return None;
        }
        let s = self.spans.get(n)?;
        let raw = &self.text[s.start as usize..s.end as usize];
        Some(Field::new(Value::new(raw, self.delims), self.opaque(n)))
    }

    /// Byte offset of field `n` within the message text.
    pub fn field_offset(&self, n: usize) -> Option<usize> {
        (n >= 1).then(|| self.spans.get(n).map(|s| s.start as usize)).flatten()
    }

    /// Every field, numbered from 1.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = Field<'m>> + '_ {
        (1..self.spans.len()).map(move |n| {
            let s = self.spans[n];
            Field::new(Value::new(&self.text[s.start as usize..s.end as usize], self.delims), self.opaque(n))
        })
    }

    /// Value at a path relative to this segment, e.g. `3[2].1` or `5`.
    pub fn get(&self, rel: &str) -> Option<Value<'m>> {
        let p: Path = format!("{}-{}", self.name(), rel).parse().ok()?;
        p.resolve_in(self)
    }

    pub fn delimiters(&self) -> Delimiters {
        self.delims
    }
}
