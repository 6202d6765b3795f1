//! HL7 v2 escape sequences: turning `\F\`, `\S\`, `\Xhh\` … into text and back.
//!
//! Values stay raw (borrowed) in the parsed message; this module runs only when a caller asks
//! for text. Delimiter escapes and hex data are decoded; formatting escapes (`\.br\`, `\H\`,
//! `\N\`, `\.sp\` …) are kept as formatting unless the caller asks to render them; character
//! set switches (`\Cxxyy\`, `\Mxxyyzz\`) that select ASCII or ISO 8859-1 are dropped because
//! the text is already Unicode, and any others are kept verbatim, as are locally defined
//! `\Z…\` escapes and malformed sequences (never an error, never a panic).

use crate::Delimiters;
use std::borrow::Cow;

/// What to do with formatting escapes such as `\.br\` and `\H\`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Formatting {
    /// Keep them verbatim, so a formatted-text consumer can still interpret them.
    #[default]
    Keep,
    /// Plain text: `\.br\` and `\.sp\` become line breaks, the rest disappears.
    Render,
}

/// Decodes escape sequences, keeping formatting escapes. Borrows when there is nothing to do.
pub fn unescape<'a>(raw: &'a str, d: &Delimiters) -> Cow<'a, str> {
    unescape_with(raw, d, Formatting::Keep)
}

/// Decodes escape sequences with the given treatment of formatting escapes.
pub fn unescape_with<'a>(raw: &'a str, d: &Delimiters, fmt: Formatting) -> Cow<'a, str> {
    let e = d.escape;
    let bytes = raw.as_bytes();
    let first = if bytes.len() < 32 { bytes.iter().position(|&c| c == e) } else { memchr::memchr(e, bytes) };
    let Some(first) = first else {
        return Cow::Borrowed(raw);
    };
    if memchr::memchr(e, &bytes[first + 1..]).is_none() {
        // A lone escape character (as in MSH-2) starts no sequence: nothing to decode.
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut i = first;
    while i < bytes.len() {
        if bytes[i] != e {
            let next = memchr::memchr(e, &bytes[i..]).map_or(bytes.len(), |p| i + p);
            out.push_str(&raw[i..next]);
            i = next;
            continue;
        }
        let Some(len) = memchr::memchr(e, &bytes[i + 1..]) else {
            // Unterminated: keep the rest as it is.
            out.push_str(&raw[i..]);
            break;
        };
        let end = i + 1 + len;
        let seq = &raw[i + 1..end];
        let whole = &raw[i..=end];
        decode_one(seq, whole, d, fmt, &mut out);
        i = end + 1;
    }
    Cow::Owned(out)
}

fn decode_one(seq: &str, whole: &str, d: &Delimiters, fmt: Formatting, out: &mut String) {
    let keep_or = |out: &mut String, rendered: &str| match fmt {
        Formatting::Keep => out.push_str(whole),
        Formatting::Render => out.push_str(rendered),
    };
    match seq {
        "F" => out.push(d.field as char),
        "S" => out.push(d.component as char),
        "T" => out.push(d.subcomponent as char),
        "R" => out.push(d.repetition as char),
        "E" => out.push(d.escape as char),
        "P" => out.push(d.truncation.unwrap_or(b'#') as char),
        "H" | "N" => keep_or(out, ""),
        "" => out.push_str(whole),
        _ => {
            // Split by bytes only where they are ASCII, so odd UTF-8 can never cut a char.
            let (head, rest) = match (seq.get(..1), seq.get(1..)) {
                (Some(h), Some(r)) => (h, r),
                _ => {
                    out.push_str(whole);
                    return;
                }
            };
            match head {
                "." => {
                    let (cmd, arg) = match (rest.get(..2), rest.get(2..)) {
                        (Some(c), Some(a)) => (c, a),
                        _ => (rest, ""),
                    };
                    match cmd {
                        "br" => keep_or(out, "\n"),
                        "sp" => {
                            let n = arg.trim().parse::<usize>().unwrap_or(1).clamp(1, 100);
                            keep_or(out, &"\n".repeat(n))
                        }
                        "fi" | "nf" | "in" | "ti" | "sk" | "ce" => keep_or(out, ""),
                        _ => out.push_str(whole),
                    }
                }
                "X" => match hex_bytes(rest) {
                    Some(bytes) => match String::from_utf8(bytes) {
                        Ok(s) => out.push_str(&s),
                        // Not UTF-8: the bytes are in a single-byte set; read them as Latin-1.
                        Err(e) => out.extend(e.into_bytes().iter().map(|&b| b as char)),
                    },
                    None => out.push_str(whole),
                },
                "C" | "M" if charset_switch_is_noop(head, rest) => {}
                _ => out.push_str(whole),
            }
        }
    }
}

/// ISO 2022 switches to ASCII (`ESC ( B`) or ISO 8859-1 (`ESC - A`) change nothing once the
/// text is Unicode.
fn charset_switch_is_noop(head: &str, rest: &str) -> bool {
    head == "C" && matches!(rest.to_ascii_uppercase().as_str(), "2842" | "2D41")
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks_exact(2) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out.push((hi * 16 + lo) as u8);
    }
    Some(out)
}

/// Escapes text so it can stand as one value between delimiters: delimiter characters become
/// `\F\ \S\ \R\ \E\ \T\ \P\`, CR and LF become `\X0D\` / `\X0A\`, and a value that is exactly
/// `""` (which would read as an explicit null) becomes `\X2222\`.
pub fn escape<'a>(text: &'a str, d: &Delimiters) -> Cow<'a, str> {
    if text == "\"\"" {
        let e = d.escape as char;
        return Cow::Owned(format!("{e}X2222{e}"));
    }
    let needs = text.bytes().any(|b| d.is_special(b) || b == b'\r' || b == b'\n');
    if !needs {
        return Cow::Borrowed(text);
    }
    let e = d.escape as char;
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        let code = if !c.is_ascii() {
            None
        } else {
            let b = c as u8;
            if b == d.field {
                Some("F")
            } else if b == d.component {
                Some("S")
            } else if b == d.repetition {
                Some("R")
            } else if b == d.escape {
                Some("E")
            } else if b == d.subcomponent {
                Some("T")
            } else if Some(b) == d.truncation {
                Some("P")
            } else if b == b'\r' {
                Some("X0D")
            } else if b == b'\n' {
                Some("X0A")
            } else {
                None
            }
        };
        match code {
            Some(code) => {
                out.push(e);
                out.push_str(code);
                out.push(e);
            }
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether every escape in `raw` is a delimiter or hex escape, so that unescaping and
/// escaping again preserves meaning. Formatting, charset-switch, local and malformed escapes
/// make this false: such values must be carried raw to keep them intact.
pub fn is_plain(raw: &str, d: &Delimiters) -> bool {
    let b = raw.as_bytes();
    let mut i = 0;
    while let Some(p) = memchr::memchr(d.escape, &b[i..]) {
        let start = i + p + 1;
        let Some(len) = memchr::memchr(d.escape, &b[start..]) else {
            return false;
        };
        let seq = &b[start..start + len];
        let ok = match seq {
            b"F" | b"S" | b"T" | b"R" | b"E" | b"P" => true,
            [b'X', hex @ ..] => !hex.is_empty() && hex.len() % 2 == 0 && hex.iter().all(u8::is_ascii_hexdigit),
            _ => false,
        };
        if !ok {
            return false;
        }
        i = start + len + 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Delimiters {
        Delimiters::default()
    }

    fn d5() -> Delimiters {
        Delimiters { truncation: Some(b'#'), ..Delimiters::default() }
    }

    #[test]
    fn nothing_to_do_borrows() {
        assert!(matches!(unescape("plain text", &d()), Cow::Borrowed(_)));
        assert!(matches!(escape("plain text", &d()), Cow::Borrowed(_)));
    }

    #[test]
    fn each_delimiter_escape() {
        assert_eq!(unescape(r"a\F\b", &d()), "a|b");
        assert_eq!(unescape(r"a\S\b", &d()), "a^b");
        assert_eq!(unescape(r"a\T\b", &d()), "a&b");
        assert_eq!(unescape(r"a\R\b", &d()), "a~b");
        assert_eq!(unescape(r"a\E\b", &d()), "a\\b");
        assert_eq!(unescape(r"a\P\b", &d5()), "a#b");
    }

    #[test]
    fn escapes_follow_the_message_delimiters() {
        let odd = Delimiters::from_msh(b'!', b"@*$%").unwrap().0;
        assert_eq!(unescape("x$F$y$S$z", &odd), "x!y@z");
        assert_eq!(escape("x!y@z$", &odd), "x$F$y$S$z$E$");
    }

    #[test]
    fn hex() {
        assert_eq!(unescape(r"\X41\\X4243\", &d()), "ABC");
        assert_eq!(unescape(r"caf\XC3A9\", &d()), "café");
        assert_eq!(unescape(r"caf\XE9\", &d()), "café");
        assert_eq!(unescape(r"\X0D0A\", &d()), "\r\n");
        // Malformed hex stays verbatim.
        assert_eq!(unescape(r"\XZZ\", &d()), r"\XZZ\");
        assert_eq!(unescape(r"\X123\", &d()), r"\X123\");
    }

    #[test]
    fn formatting_kept_or_rendered() {
        let raw = r"line one\.br\line two \H\bold\N\ \.sp2\end\.in+4\";
        assert_eq!(unescape(raw, &d()), raw);
        assert_eq!(unescape_with(raw, &d(), Formatting::Render), "line one\nline two bold \n\nend");
        assert_eq!(unescape_with(r"\.fi\\.nf\\.ti-2\\.sk3\\.ce\x", &d(), Formatting::Render), "x");
    }

    #[test]
    fn charset_switches() {
        assert_eq!(unescape(r"a\C2842\b\C2D41\c", &d()), "abc");
        assert_eq!(unescape(r"a\M2442\b", &d()), r"a\M2442\b");
    }

    #[test]
    fn local_and_malformed_are_kept() {
        assert_eq!(unescape(r"\Zfoo\", &d()), r"\Zfoo\");
        assert_eq!(unescape(r"\Q\", &d()), r"\Q\");
        assert_eq!(unescape(r"trailing\", &d()), r"trailing\");
        assert_eq!(unescape(r"a\\b", &d()), r"a\\b");
        assert_eq!(unescape(r"\.zz\", &d()), r"\.zz\");
    }

    #[test]
    fn escape_all_specials() {
        assert_eq!(escape("a|b^c~d\\e&f#g", &d5()), r"a\F\b\S\c\R\d\E\e\T\f\P\g");
        assert_eq!(escape("a#b", &d()), "a#b");
        assert_eq!(escape("l1\rl2\n", &d()), r"l1\X0D\l2\X0A\");
        assert_eq!(escape("\"\"", &d()), r"\X2222\");
        assert_eq!(unescape(&escape("\"\"", &d()), &d()), "\"\"");
    }

    #[test]
    fn roundtrip_unicode() {
        let t = "Zoë | Ñandú ^ 日本 ~ & \\ \r\n";
        assert_eq!(unescape(&escape(t, &d5()), &d5()), t);
    }
}
