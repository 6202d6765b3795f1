//! Splitting files into messages: FHS/BHS/BTS/FTS batches, plain multi-message files and
//! MLLP-framed dumps, with the counts in BTS-1 and FTS-1 checked.
//!
//! Splitting only finds where each message starts and ends (slices of the input); each
//! message is then parsed on its own, with its own delimiters and character set.

use crate::error::ErrorCode;
use crate::mllp::{EB, SB};

/// One message (or header/trailer segment) inside the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub bytes: &'a [u8],
    /// Byte offset of the chunk in the input.
    pub offset: usize,
}

/// A batch: optional BHS/BTS and the messages between them. Messages outside any BHS form
/// an implicit batch with no header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch<'a> {
    pub header: Option<Chunk<'a>>,
    pub trailer: Option<Chunk<'a>>,
    pub messages: Vec<Chunk<'a>>,
}

/// The whole input: optional FHS/FTS around one or more batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split<'a> {
    pub file_header: Option<Chunk<'a>>,
    pub file_trailer: Option<Chunk<'a>>,
    pub batches: Vec<Batch<'a>>,
    /// Whether the input was MLLP-framed.
    pub mllp: bool,
}

impl<'a> Split<'a> {
    /// Every message, in order.
    pub fn messages(&self) -> impl Iterator<Item = &Chunk<'a>> + '_ {
        self.batches.iter().flat_map(|b| b.messages.iter())
    }

    pub fn message_count(&self) -> usize {
        self.batches.iter().map(|b| b.messages.len()).sum()
    }
}

/// Why input could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("no HL7 content")]
    Empty,
    #[error("{segment}-1 says {declared} {what}, but there are {actual} (at byte {offset})")]
    CountMismatch { segment: &'static str, what: &'static str, declared: usize, actual: usize, offset: usize },
    #[error("{segment}-1 count {value:?} is not a number (at byte {offset})")]
    BadCount { segment: &'static str, value: String, offset: usize },
    #[error("segment {segment:?} outside any message: a message must start with MSH (at byte {offset})")]
    OutsideMessage { segment: String, offset: usize },
    #[error("{segment} is out of place: {reason} (at byte {offset})")]
    Misplaced { segment: &'static str, reason: &'static str, offset: usize },
    #[error("MLLP frame starting at byte {offset} has no end (0x1C)")]
    UnterminatedFrame { offset: usize },
    #[error("{len} bytes outside MLLP frames at byte {offset}")]
    Garbage { offset: usize, len: usize },
}

impl BatchError {
    /// HL7 Table 0357 code.
    pub fn code(&self) -> ErrorCode {
        match self {
            BatchError::CountMismatch { .. } | BatchError::BadCount { .. } => ErrorCode::DataType,
            _ => ErrorCode::SegmentSequence,
        }
    }
}

fn blank(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b'\r' | b'\n' | b' ' | b'\t'))
}

/// Splits `input` into batches and messages.
pub fn split(input: &[u8]) -> Result<Split<'_>, BatchError> {
    let start = input.strip_prefix(b"\xEF\xBB\xBF").map_or(0, |_| 3);
    let first = input[start..].iter().position(|c| !matches!(c, b'\r' | b'\n' | b' ' | b'\t'));
    let Some(first) = first.map(|p| p + start) else {
        return Err(BatchError::Empty);
    };
    if input[first] == SB {
        return split_mllp(input, first);
    }
    let mut out = Split::default();
    split_plain(input, start, &mut out)?;
    if out.message_count() == 0 {
        return Err(BatchError::Empty);
    }
    Ok(out)
}

fn split_mllp(input: &[u8], mut pos: usize) -> Result<Split<'_>, BatchError> {
    let mut out = Split { mllp: true, ..Split::default() };
    while pos < input.len() {
        let Some(sb) = memchr::memchr(SB, &input[pos..]).map(|p| p + pos) else {
            if !blank(&input[pos..]) {
                return Err(BatchError::Garbage { offset: pos, len: input.len() - pos });
            }
            break;
        };
        if !blank(&input[pos..sb]) {
            return Err(BatchError::Garbage { offset: pos, len: sb - pos });
        }
        let body = sb + 1;
        let Some(eb) = memchr::memchr2(EB, SB, &input[body..]).map(|p| p + body) else {
            return Err(BatchError::UnterminatedFrame { offset: sb });
        };
        if input[eb] == SB {
            return Err(BatchError::UnterminatedFrame { offset: sb });
        }
        let mut inner = Split::default();
        split_plain(&input[..eb], body, &mut inner)?;
        if inner.file_header.is_some() || inner.file_trailer.is_some() {
            out.file_header = out.file_header.or(inner.file_header);
            out.file_trailer = out.file_trailer.or(inner.file_trailer);
        }
        out.batches.extend(inner.batches);
        pos = eb + 1;
        if input.get(pos) == Some(&b'\r') {
            pos += 1;
        }
    }
    if out.message_count() == 0 {
        return Err(BatchError::Empty);
    }
    Ok(out)
}

/// A count in BTS-1 / FTS-1, if present.
fn declared_count(line: &[u8], segment: &'static str, offset: usize) -> Result<Option<usize>, BatchError> {
    let fs = line.get(3).copied().unwrap_or(b'|');
    let field = line.split(|&c| c == fs).nth(1).unwrap_or(&[]);
    let text = String::from_utf8_lossy(field);
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<usize>().map(Some).map_err(|_| BatchError::BadCount {
        segment,
        value: t.chars().take(20).collect(),
        offset,
    })
}

/// Splits the segments of `input[from..]` (the slice end bounds the scan).
fn split_plain<'a>(input: &'a [u8], from: usize, out: &mut Split<'a>) -> Result<(), BatchError> {
    let mut batch: Option<Batch<'a>> = None;
    let mut msg_start: Option<usize> = None;
    let mut last_end = from;
    let mut ended = false;
    let mut pos = from;
    let n = input.len();

    // Closing a message ends it after its last segment (terminator included).
    fn close_msg<'a>(input: &'a [u8], start: &mut Option<usize>, end: usize, batch: &mut Option<Batch<'a>>) {
        if let Some(s) = start.take() {
            batch.get_or_insert_with(Batch::default).messages.push(Chunk { bytes: &input[s..end], offset: s });
        }
    }

    while pos < n {
        if matches!(input[pos], b'\r' | b'\n') {
            pos += 1;
            continue;
        }
        let line_start = pos;
        let line_end = memchr::memchr2(b'\r', b'\n', &input[pos..]).map_or(n, |p| p + pos);
        let mut next = line_end;
        if next < n && input[next] == b'\r' {
            next += 1;
        }
        if next < n && input[next] == b'\n' {
            next += 1;
        }
        let line = &input[line_start..line_end];
        let name = &line[..line.len().min(3)];
        if ended && !blank(line) {
            return Err(BatchError::Misplaced {
                segment: "FTS",
                reason: "content after the file trailer",
                offset: line_start,
            });
        }
        match name {
            b"FHS" => {
                if out.file_header.is_some() || !out.batches.is_empty() || batch.is_some() || msg_start.is_some() {
                    return Err(BatchError::Misplaced {
                        segment: "FHS",
                        reason: "a file header must come first",
                        offset: line_start,
                    });
                }
                out.file_header = Some(Chunk { bytes: line, offset: line_start });
            }
            b"BHS" => {
                close_msg(input, &mut msg_start, last_end, &mut batch);
                if let Some(b) = batch.take() {
                    out.batches.push(b);
                }
                batch = Some(Batch { header: Some(Chunk { bytes: line, offset: line_start }), ..Batch::default() });
            }
            b"MSH" => {
                close_msg(input, &mut msg_start, last_end, &mut batch);
                msg_start = Some(line_start);
            }
            b"BTS" => {
                close_msg(input, &mut msg_start, last_end, &mut batch);
                let mut b = batch.take().unwrap_or_default();
                if let Some(declared) = declared_count(line, "BTS", line_start)?
                    && declared != b.messages.len()
                {
                    return Err(BatchError::CountMismatch {
                        segment: "BTS",
                        what: "messages",
                        declared,
                        actual: b.messages.len(),
                        offset: line_start,
                    });
                }
                b.trailer = Some(Chunk { bytes: line, offset: line_start });
                out.batches.push(b);
            }
            b"FTS" => {
                close_msg(input, &mut msg_start, last_end, &mut batch);
                if let Some(b) = batch.take() {
                    out.batches.push(b);
                }
                if let Some(declared) = declared_count(line, "FTS", line_start)? {
                    // Messages outside any BHS count as one implicit batch.
                    let actual = out.batches.len();
                    if declared != actual {
                        return Err(BatchError::CountMismatch {
                            segment: "FTS",
                            what: "batches",
                            declared,
                            actual,
                            offset: line_start,
                        });
                    }
                }
                out.file_trailer = Some(Chunk { bytes: line, offset: line_start });
                ended = true;
            }
            _ => {
                if msg_start.is_none() {
                    let shown = String::from_utf8_lossy(&line[..line.len().min(8)]).into_owned();
                    return Err(BatchError::OutsideMessage { segment: shown, offset: line_start });
                }
            }
        }
        last_end = next;
        pos = next;
    }
    close_msg(input, &mut msg_start, last_end, &mut batch);
    if let Some(b) = batch.take() {
        out.batches.push(b);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: &str = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1\r";
    const M2: &str = "MSH|^~\\&|A|B|C|D|2024||ADT^A08|2|P|2.5\rPID|2\r";

    #[test]
    fn single_and_multi() {
        let s = split(M1.as_bytes()).unwrap();
        assert_eq!(s.message_count(), 1);
        let two = format!("{M1}\n{M2}");
        let s = split(two.as_bytes()).unwrap();
        let msgs: Vec<_> = s.messages().collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].bytes, format!("{M1}\n").as_bytes());
        assert_eq!(msgs[1].offset, M1.len() + 1);
    }

    #[test]
    fn lf_separated_multi() {
        let two = format!("{M1}{M2}").replace('\r', "\n");
        let s = split(two.as_bytes()).unwrap();
        assert_eq!(s.message_count(), 2);
    }

    #[test]
    fn batch_with_counts() {
        let b = format!("BHS|^~\\&|A|B\r{M1}{M2}BTS|2\r");
        let s = split(b.as_bytes()).unwrap();
        assert_eq!(s.batches.len(), 1);
        assert!(s.batches[0].header.is_some() && s.batches[0].trailer.is_some());
        assert_eq!(s.message_count(), 2);
        let bad = format!("BHS|^~\\&|A|B\r{M1}{M2}BTS|3\r");
        assert!(matches!(
            split(bad.as_bytes()),
            Err(BatchError::CountMismatch { segment: "BTS", declared: 3, actual: 2, .. })
        ));
        let nan = format!("BHS|^~\\&\r{M1}BTS|two\r");
        assert!(matches!(split(nan.as_bytes()), Err(BatchError::BadCount { .. })));
    }

    #[test]
    fn file_with_batches() {
        let f = format!("FHS|^~\\&|A\rBHS|^~\\&\r{M1}BTS|1\rBHS|^~\\&\r{M2}{M1}BTS|2\rFTS|2\r");
        let s = split(f.as_bytes()).unwrap();
        assert!(s.file_header.is_some() && s.file_trailer.is_some());
        assert_eq!(s.batches.len(), 2);
        assert_eq!(s.message_count(), 3);
        let bad = f.replace("FTS|2", "FTS|5");
        assert!(matches!(
            split(bad.as_bytes()),
            Err(BatchError::CountMismatch { segment: "FTS", declared: 5, actual: 2, .. })
        ));
        let after = format!("{f}{M1}");
        assert!(matches!(split(after.as_bytes()), Err(BatchError::Misplaced { segment: "FTS", .. })));
        let late = format!("{M1}FHS|^~\\&\r");
        assert!(matches!(split(late.as_bytes()), Err(BatchError::Misplaced { segment: "FHS", .. })));
    }

    #[test]
    fn file_header_without_batch_header() {
        let f = format!("FHS|^~\\&\r{M1}{M2}FTS|1\r");
        let s = split(f.as_bytes()).unwrap();
        assert_eq!(s.message_count(), 2);
    }

    #[test]
    fn mllp_dump() {
        let mut d = crate::mllp::frame(M1.as_bytes());
        d.extend(b"\r\n");
        d.extend(crate::mllp::frame(M2.as_bytes()));
        let s = split(&d).unwrap();
        assert!(s.mllp);
        let msgs: Vec<_> = s.messages().collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].bytes, M2.as_bytes());
        assert_eq!(&d[msgs[1].offset..msgs[1].offset + 3], b"MSH");
        let mut bad = d.clone();
        bad.extend(b"junk");
        assert!(matches!(split(&bad), Err(BatchError::Garbage { len: 4, .. })));
        assert!(matches!(split(b"\x0bMSH|x"), Err(BatchError::UnterminatedFrame { offset: 0 })));
    }

    #[test]
    fn batch_envelope_and_segment_names_inside_fields() {
        // Batch header/trailer segments are not messages; every message keeps its own bytes.
        let b = b"FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\rBTS|2\rFTS|1\r";
        let s = split(b).unwrap();
        let msgs: Vec<_> = s.messages().collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].bytes, b"MSH|^~\\&|A\rPID|1\r");
        assert_eq!(msgs[1].bytes, b"MSH|^~\\&|B\r");
        // "MSH" inside a field is not a segment start.
        assert_eq!(split(b"MSH|^~\\&|A\rNTE|1||see MSH above\r").unwrap().message_count(), 1);
        // A byte-order mark before the first MSH is not content.
        let s = split(b"\xEF\xBB\xBFMSH|^~\\&|A\rPID|1\r").unwrap();
        assert_eq!(s.messages().next().unwrap().bytes, b"MSH|^~\\&|A\rPID|1\r");
    }

    #[test]
    fn errors() {
        assert_eq!(split(b"  \r\n"), Err(BatchError::Empty));
        assert!(matches!(split(b"PID|1\rMSH|x\r"), Err(BatchError::OutsideMessage { .. })));
    }
}
