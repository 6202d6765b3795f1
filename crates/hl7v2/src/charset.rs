//! Character sets named in MSH-18 (HL7 Table 0211) and their decoding to UTF-8.
//!
//! The rest of the crate works on `&str`. UTF-8 and ASCII input is validated and borrowed
//! as is (zero copy); ISO 8859-1 / 8859-15 input that holds bytes above 0x7F is transcoded
//! once into an owned UTF-8 buffer, which is then indexed. Bytes that are invalid for the
//! declared set are an error naming their offset, unless the caller opts into lenient mode,
//! where they become U+FFFD and are reported.

use std::borrow::Cow;

/// A supported character set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    /// MSH-18 empty. The standard says ASCII; UTF-8 is accepted too because it is a superset
    /// and many senders send it undeclared.
    Unspecified,
    /// `ASCII` (ISO IR6).
    Ascii,
    /// `8859/1` (ISO IR100, Latin-1).
    Latin1,
    /// `8859/15` (Latin-9: Latin-1 with the euro sign and eight other changes).
    Latin9,
    /// `UNICODE UTF-8` (also the deprecated `UNICODE`, which senders use for UTF-8 in ER7).
    Utf8,
}

/// MSH-18 could not be mapped to a supported set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CharsetError {
    /// The value is in Table 0211 but not decoded here.
    Unsupported(String),
    /// The value is not in Table 0211.
    Unknown(String),
}

impl Charset {
    /// Maps an MSH-18 value (first repetition) to a character set.
    pub fn from_msh18(value: &str) -> Result<Charset, CharsetError> {
        let v = value.trim();
        // Case-insensitive match without allocating (this runs for every message).
        let is = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(v));
        if v.is_empty() {
            Ok(Charset::Unspecified)
        } else if is(&["ASCII", "ISO IR6", "ISO-IR6", "US-ASCII"]) {
            Ok(Charset::Ascii)
        } else if is(&["8859/1", "ISO IR100", "ISO-IR100", "ISO-8859-1", "ISO8859-1", "LATIN1"]) {
            Ok(Charset::Latin1)
        } else if is(&["8859/15", "ISO-8859-15", "ISO8859-15"]) {
            Ok(Charset::Latin9)
        } else if is(&["UNICODE UTF-8", "UTF-8", "UTF8", "UNICODE", "ISO IR192"]) {
            Ok(Charset::Utf8)
        } else if is(&[
            "8859/2",
            "8859/3",
            "8859/4",
            "8859/5",
            "8859/6",
            "8859/7",
            "8859/8",
            "8859/9",
            "ISO IR14",
            "ISO IR87",
            "ISO IR159",
            "GB 18030-2000",
            "KS X 1001",
            "CNS 11643-1992",
            "BIG-5",
            "UNICODE UTF-16",
            "UNICODE UTF-32",
        ]) {
            Err(CharsetError::Unsupported(v.to_string()))
        } else {
            Err(CharsetError::Unknown(v.to_string()))
        }
    }

    /// The Table 0211 name to write in MSH-18 (empty for [`Charset::Unspecified`]).
    pub fn hl7_name(self) -> &'static str {
        match self {
            Charset::Unspecified => "",
            Charset::Ascii => "ASCII",
            Charset::Latin1 => "8859/1",
            Charset::Latin9 => "8859/15",
            Charset::Utf8 => "UNICODE UTF-8",
        }
    }

    /// A human name for error messages.
    pub fn label(self) -> &'static str {
        match self {
            Charset::Unspecified => "UTF-8 (MSH-18 empty)",
            Charset::Ascii => "ASCII",
            Charset::Latin1 => "ISO 8859-1",
            Charset::Latin9 => "ISO 8859-15",
            Charset::Utf8 => "UTF-8",
        }
    }
}

/// A byte that is not valid in the declared character set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidByte {
    pub offset: usize,
    pub byte: u8,
}

/// What lenient decoding replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    /// Offset of the first invalid byte.
    pub first_offset: usize,
    /// Number of invalid sequences replaced by U+FFFD.
    pub count: usize,
}

/// Decodes `bytes` declared as `charset` into UTF-8 text.
///
/// Borrowed for UTF-8, ASCII and pure-ASCII 8859 input; owned only when transcoding or
/// (lenient) replacing was needed.
pub fn decode(bytes: &[u8], charset: Charset, lenient: bool) -> Result<(Cow<'_, str>, Option<Replaced>), InvalidByte> {
    match charset {
        Charset::Unspecified | Charset::Utf8 => match std::str::from_utf8(bytes) {
            Ok(s) => Ok((Cow::Borrowed(s), None)),
            Err(e) => {
                let offset = e.valid_up_to();
                if !lenient {
                    return Err(InvalidByte { offset, byte: bytes[offset] });
                }
                let count = count_invalid_utf8(bytes);
                Ok((String::from_utf8_lossy(bytes), Some(Replaced { first_offset: offset, count })))
            }
        },
        Charset::Ascii => {
            if bytes.is_ascii() {
                // SAFETY-free: ASCII is valid UTF-8, checked by from_utf8 at no real cost.
                return Ok((Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default()), None));
            }
            let offset = bytes.iter().position(|b| !b.is_ascii()).unwrap_or(0);
            if !lenient {
                return Err(InvalidByte { offset, byte: bytes[offset] });
            }
            let count = bytes.iter().filter(|b| !b.is_ascii()).count();
            let s: String = bytes.iter().map(|&b| if b.is_ascii() { b as char } else { '\u{FFFD}' }).collect();
            Ok((Cow::Owned(s), Some(Replaced { first_offset: offset, count })))
        }
        Charset::Latin1 | Charset::Latin9 => {
            if bytes.is_ascii() {
                return Ok((Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default()), None));
            }
            let mut s = String::with_capacity(bytes.len() + bytes.len() / 8);
            for &b in bytes {
                s.push(latin_char(b, charset == Charset::Latin9));
            }
            Ok((Cow::Owned(s), None))
        }
    }
}

fn count_invalid_utf8(bytes: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = bytes;
    while let Err(e) = std::str::from_utf8(rest) {
        n += 1;
        let skip = e.valid_up_to() + e.error_len().unwrap_or(rest.len() - e.valid_up_to());
        rest = &rest[skip.min(rest.len())..];
    }
    n
}

fn latin_char(b: u8, latin9: bool) -> char {
    if latin9 {
        match b {
            0xA4 => return '\u{20AC}',
            0xA6 => return '\u{0160}',
            0xA8 => return '\u{0161}',
            0xB4 => return '\u{017D}',
            0xB8 => return '\u{017E}',
            0xBC => return '\u{0152}',
            0xBD => return '\u{0153}',
            0xBE => return '\u{0178}',
            _ => {}
        }
    }
    b as char
}

fn latin_byte(c: char, latin9: bool) -> Option<u8> {
    if latin9 {
        let b = match c {
            '\u{20AC}' => Some(0xA4),
            '\u{0160}' => Some(0xA6),
            '\u{0161}' => Some(0xA8),
            '\u{017D}' => Some(0xB4),
            '\u{017E}' => Some(0xB8),
            '\u{0152}' => Some(0xBC),
            '\u{0153}' => Some(0xBD),
            '\u{0178}' => Some(0xBE),
            _ => None,
        };
        if b.is_some() {
            return b;
        }
        if matches!(c as u32, 0xA4 | 0xA6 | 0xA8 | 0xB4 | 0xB8 | 0xBC | 0xBD | 0xBE) {
            return None;
        }
    }
    let v = c as u32;
    (v <= 0xFF).then_some(v as u8)
}

/// Encodes UTF-8 text into `charset` bytes. Characters the set cannot hold become an HL7
/// hex escape of their UTF-8 bytes (`\Xhh..\`) when `escape` is given, else `?`.
pub fn encode(text: &str, charset: Charset, escape: Option<u8>) -> Cow<'_, [u8]> {
    match charset {
        Charset::Unspecified | Charset::Utf8 => Cow::Borrowed(text.as_bytes()),
        _ if text.is_ascii() => Cow::Borrowed(text.as_bytes()),
        Charset::Ascii | Charset::Latin1 | Charset::Latin9 => {
            let mut out = Vec::with_capacity(text.len());
            for c in text.chars() {
                let b = match charset {
                    Charset::Ascii => c.is_ascii().then_some(c as u8),
                    cs => latin_byte(c, cs == Charset::Latin9),
                };
                match (b, escape) {
                    (Some(b), _) => out.push(b),
                    (None, Some(e)) => {
                        out.push(e);
                        out.push(b'X');
                        let mut buf = [0u8; 4];
                        for byte in c.encode_utf8(&mut buf).bytes() {
                            out.extend_from_slice(format!("{byte:02X}").as_bytes());
                        }
                        out.push(e);
                    }
                    (None, None) => out.push(b'?'),
                }
            }
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Charset::from_msh18("8859/1"), Ok(Charset::Latin1));
        assert_eq!(Charset::from_msh18("8859/15"), Ok(Charset::Latin9));
        assert_eq!(Charset::from_msh18("UNICODE UTF-8"), Ok(Charset::Utf8));
        assert_eq!(Charset::from_msh18("UNICODE"), Ok(Charset::Utf8));
        assert_eq!(Charset::from_msh18("ASCII"), Ok(Charset::Ascii));
        assert_eq!(Charset::from_msh18(""), Ok(Charset::Unspecified));
        assert!(matches!(Charset::from_msh18("ISO IR87"), Err(CharsetError::Unsupported(_))));
        assert!(matches!(Charset::from_msh18("KLINGON"), Err(CharsetError::Unknown(_))));
    }

    #[test]
    fn utf8_borrowed_and_invalid() {
        let (s, r) = decode("Zoë".as_bytes(), Charset::Utf8, false).unwrap();
        assert!(matches!(s, Cow::Borrowed("Zoë")));
        assert!(r.is_none());
        assert_eq!(decode(b"ab\xFFc", Charset::Utf8, false), Err(InvalidByte { offset: 2, byte: 0xFF }));
        let (s, r) = decode(b"ab\xFFc\xFE", Charset::Utf8, true).unwrap();
        assert_eq!(s, "ab\u{FFFD}c\u{FFFD}");
        assert_eq!(r, Some(Replaced { first_offset: 2, count: 2 }));
    }

    #[test]
    fn ascii_rejects_high_bytes() {
        assert_eq!(decode(b"abc\xE9", Charset::Ascii, false), Err(InvalidByte { offset: 3, byte: 0xE9 }));
        let (s, r) = decode(b"abc\xE9", Charset::Ascii, true).unwrap();
        assert_eq!(s, "abc\u{FFFD}");
        assert_eq!(r.unwrap().count, 1);
    }

    #[test]
    fn latin1_and_latin9() {
        let (s, _) = decode(b"Jos\xE9 \xA4", Charset::Latin1, false).unwrap();
        assert_eq!(s, "José ¤");
        let (s, _) = decode(b"Jos\xE9 \xA4 \xBD", Charset::Latin9, false).unwrap();
        assert_eq!(s, "José € œ");
        let (s, _) = decode(b"plain", Charset::Latin1, false).unwrap();
        assert!(matches!(s, Cow::Borrowed(_)));
        assert_eq!(&*encode("José €", Charset::Latin9, None), b"Jos\xE9 \xA4");
        assert_eq!(&*encode("José €", Charset::Latin1, Some(b'\\')), b"Jos\xE9 \\XE282AC\\");
        assert_eq!(&*encode("é", Charset::Ascii, None), b"?");
    }
}
