//! Splits an input file into messages: a single message, several messages back to back, an
//! HL7 batch (FHS/BHS … BTS/FTS) or an MLLP capture (0x0B … 0x1C 0x0D frames).
//!
//! `hl7v2::batch` is the parser's own splitter, still being written; this small one only cuts
//! at segment starts and keeps each message's bytes exactly as they were (offsets reported).

/// One message found in an input: its 1-based position and byte offset in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece<'a> {
    pub index: usize,
    pub offset: usize,
    pub bytes: &'a [u8],
}

fn is_seg_start(b: &[u8], i: usize) -> bool {
    i == 0 || matches!(b[i - 1], b'\r' | b'\n' | 0x0B)
}

/// Splits `input` into messages. Batch header/trailer segments and MLLP framing bytes are
/// dropped; anything else before the first MSH is returned as its own piece so that the
/// caller reports it instead of losing it.
pub fn split(input: &[u8]) -> Vec<Piece<'_>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= input.len() {
        if is_seg_start(input, i) {
            let name = &input[i..i + 3];
            if name == b"MSH" || name == b"FHS" || name == b"BHS" || name == b"BTS" || name == b"FTS" {
                starts.push((i, name == b"MSH"));
            }
        }
        i += 1;
    }
    let mut out = Vec::new();
    let first = starts.first().map_or(input.len(), |s| s.0);
    let junk = &input[..first];
    if junk.iter().any(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0x0B | 0x1C | 0xEF | 0xBB | 0xBF)) {
        out.push(Piece { index: 1, offset: 0, bytes: junk });
    }
    for (k, &(start, is_msh)) in starts.iter().enumerate() {
        if !is_msh {
            continue;
        }
        let end = starts.get(k + 1).map_or(input.len(), |s| s.0);
        let mut bytes = &input[start..end];
        // Drop MLLP end-of-block and trailing framing.
        while let [rest @ .., last] = bytes {
            if matches!(last, 0x1C | 0x0B | b'\r' | b'\n' | b' ' | b'\t' | 0) {
                bytes = rest;
            } else {
                break;
            }
        }
        out.push(Piece { index: out.len() + 1, offset: start, bytes });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_batches_and_mllp() {
        let b = b"FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\rBTS|2\rFTS|1\r";
        let p = split(b);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].bytes, b"MSH|^~\\&|A\rPID|1");
        assert_eq!(p[1].bytes, b"MSH|^~\\&|B");
        let m = b"\x0bMSH|^~\\&|A\rPID|1\r\x1c\r\x0bMSH|^~\\&|B\r\x1c\r";
        let p = split(m);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].bytes, b"MSH|^~\\&|B");
        assert_eq!(split(b"garbage\rMSH|^~\\&|A\r").len(), 2);
        assert!(split(b"").is_empty());
        // "MSH" inside a field is not a segment start.
        assert_eq!(split(b"MSH|^~\\&|A\rNTE|1||see MSH above\r").len(), 1);
    }
}
