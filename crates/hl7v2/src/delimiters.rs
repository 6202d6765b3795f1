//! The separator characters a message declares for itself in MSH-1 and MSH-2.
//!
//! Every sender may choose its own; the parser, the escape codec, the encoder and the ACK
//! builder all read them from here so that answers go back in the sender's own dialect.

/// The field, component, repetition, escape and subcomponent separators, plus the truncation
/// character that HL7 v2.7+ allows as a fifth encoding character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
// 8-byte aligned so every value view copies it in one move (7 odd bytes made copies stall).
#[repr(align(8))]
pub struct Delimiters {
    pub field: u8,
    pub component: u8,
    pub repetition: u8,
    pub escape: u8,
    pub subcomponent: u8,
    pub truncation: Option<u8>,
}

impl Default for Delimiters {
    /// `|^~\&`, the delimiters nearly every sender uses.
    fn default() -> Self {
        Delimiters {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: b'\\',
            subcomponent: b'&',
            truncation: None,
        }
    }
}

/// Why MSH-1/MSH-2 could not be read as delimiters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelimiterProblem {
    /// MSH-1 is a letter, digit, space or control character.
    BadFieldSeparator(u8),
    /// MSH-2 has fewer than 4 or more than 5 characters.
    WrongCount(usize),
    /// An encoding character is a letter, digit, space or control character.
    BadCharacter(u8),
    /// Two delimiters are the same character.
    Duplicate(u8),
}

impl std::fmt::Display for DelimiterProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DelimiterProblem::BadFieldSeparator(b) => {
                write!(f, "field separator {} is not a punctuation character", show(*b))
            }
            DelimiterProblem::WrongCount(n) => {
                write!(f, "MSH-2 has {n} encoding characters; expected 4 (^~\\&) or 5 (^~\\&#)")
            }
            DelimiterProblem::BadCharacter(b) => {
                write!(f, "encoding character {} is not a punctuation character", show(*b))
            }
            DelimiterProblem::Duplicate(b) => {
                write!(f, "character {} is used for two different delimiters", show(*b))
            }
        }
    }
}

fn show(b: u8) -> String {
    if b.is_ascii_graphic() { format!("'{}'", b as char) } else { format!("0x{b:02X}") }
}

fn usable(b: u8) -> bool {
    b.is_ascii_punctuation()
}

impl Delimiters {
    /// Reads the delimiters from MSH-1 (`field`) and the raw MSH-2 bytes.
    ///
    /// Returns the delimiters and whether the escape character was doubled (`^~\\&`), a
    /// common artefact of a message copied from a source-code string literal, which is
    /// accepted as `^~\&` and reported as a warning by the parser.
    pub fn from_msh(field: u8, encoding: &[u8]) -> Result<(Delimiters, bool), DelimiterProblem> {
        if !usable(field) {
            return Err(DelimiterProblem::BadFieldSeparator(field));
        }
        let mut enc = encoding;
        let mut doubled = false;
        let fixed;
        if enc.len() == 5 && enc[2] == enc[3] && enc[2] == b'\\' {
            fixed = [enc[0], enc[1], enc[2], enc[4]];
            enc = &fixed;
            doubled = true;
        }
        if !(4..=5).contains(&enc.len()) {
            return Err(DelimiterProblem::WrongCount(enc.len()));
        }
        for (i, &b) in enc.iter().enumerate() {
            if !usable(b) {
                return Err(DelimiterProblem::BadCharacter(b));
            }
            if b == field || enc[..i].contains(&b) {
                return Err(DelimiterProblem::Duplicate(b));
            }
        }
        Ok((
            Delimiters {
                field,
                component: enc[0],
                repetition: enc[1],
                escape: enc[2],
                subcomponent: enc[3],
                truncation: enc.get(4).copied(),
            },
            doubled,
        ))
    }

    /// MSH-2 as it should be written: the 4 (or 5) encoding characters.
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(5);
        for b in [self.component, self.repetition, self.escape, self.subcomponent] {
            s.push(b as char);
        }
        if let Some(t) = self.truncation {
            s.push(t as char);
        }
        s
    }

    /// Whether `b` is one of the delimiters (so must be escaped inside text).
    pub fn is_special(&self, b: u8) -> bool {
        b == self.field
            || b == self.component
            || b == self.repetition
            || b == self.escape
            || b == self.subcomponent
            || Some(b) == self.truncation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_four() {
        let (d, q) = Delimiters::from_msh(b'|', b"^~\\&").unwrap();
        assert_eq!(d, Delimiters::default());
        assert!(!q);
        assert_eq!(d.encoding_characters(), "^~\\&");
    }

    #[test]
    fn five_with_truncation() {
        let (d, _) = Delimiters::from_msh(b'|', b"^~\\&#").unwrap();
        assert_eq!(d.truncation, Some(b'#'));
        assert_eq!(d.encoding_characters(), "^~\\&#");
    }

    #[test]
    fn odd_delimiters() {
        let (d, _) = Delimiters::from_msh(b'!', b"@*$%").unwrap();
        assert_eq!((d.field, d.component, d.repetition, d.escape, d.subcomponent), (b'!', b'@', b'*', b'$', b'%'));
    }

    #[test]
    fn doubled_escape_quirk() {
        let (d, q) = Delimiters::from_msh(b'|', b"^~\\\\&").unwrap();
        assert!(q);
        assert_eq!(d, Delimiters::default());
    }

    #[test]
    fn rejects_bad() {
        assert_eq!(Delimiters::from_msh(b'A', b"^~\\&"), Err(DelimiterProblem::BadFieldSeparator(b'A')));
        assert_eq!(Delimiters::from_msh(b'|', b"^~"), Err(DelimiterProblem::WrongCount(2)));
        assert_eq!(Delimiters::from_msh(b'|', b"^~\\^"), Err(DelimiterProblem::Duplicate(b'^')));
        assert_eq!(Delimiters::from_msh(b'|', b"^~|&"), Err(DelimiterProblem::Duplicate(b'|')));
        assert_eq!(Delimiters::from_msh(b'|', b"^~\\A"), Err(DelimiterProblem::BadCharacter(b'A')));
    }
}
