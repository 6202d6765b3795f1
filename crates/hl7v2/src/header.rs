//! A best-effort reading of the MSH segment alone, for when the rest of a message is broken.
//!
//! A NAK must still echo MSH-10 and answer in the sender's delimiters, version and character
//! set even if parsing failed further on; ingest also uses it to key and label raw records.

use crate::Delimiters;
use crate::charset::{self, Charset};
use crate::message::Message;

/// The MSH fields an acknowledgment and a raw-message record need, as owned raw (escaped) text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub delimiters: Delimiters,
    /// MSH-3 .. MSH-6, whole fields.
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    /// MSH-9, whole field (e.g. `ADT^A01^ADT_A01`).
    pub message_type: String,
    /// MSH-10.
    pub control_id: String,
    /// MSH-11, whole field.
    pub processing_id: String,
    /// MSH-12, whole field.
    pub version: String,
    /// MSH-15 and MSH-16.
    pub accept_ack_type: String,
    pub application_ack_type: String,
    /// MSH-18 first repetition as written.
    pub charset: String,
}

fn component<'h>(field: &'h str, d: &Delimiters, n: usize) -> &'h str {
    field.split(d.component as char).nth(n - 1).unwrap_or("")
}

impl Header {
    /// Reads MSH from the start of `bytes` (after a byte-order mark or blank lines). Returns
    /// `None` when there is no MSH there. Tolerates bad MSH-2 (falls back to `^~\&`), bytes
    /// invalid for the charset (decoded lossily) and anything after the MSH segment.
    pub fn sniff(bytes: &[u8]) -> Option<Header> {
        let mut b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        while let [b'\r' | b'\n' | b' ' | b'\t' | 0x0B, rest @ ..] = b {
            b = rest;
        }
        if !b.starts_with(b"MSH") {
            return None;
        }
        let end = b.iter().position(|&c| c == b'\r' || c == b'\n').unwrap_or(b.len());
        let line = &b[..end];
        if line.len() < 4 {
            return None;
        }
        let fs = line[3];
        let mut parts = line[4..].split(|&c| c == fs);
        let enc = parts.next().unwrap_or(&[]);
        let delimiters = match Delimiters::from_msh(fs, enc) {
            Ok((d, _)) => d,
            Err(_) if fs.is_ascii_punctuation() => Delimiters { field: fs, ..Delimiters::default() },
            Err(_) => Delimiters::default(),
        };
        let raw: Vec<&[u8]> = parts.collect();
        // raw[k] is MSH-(k + 3).
        let get = |n: usize| raw.get(n - 3).copied().unwrap_or(&[]);
        let cs_raw = String::from_utf8_lossy(get(18)).into_owned();
        let cs_first = cs_raw.split(delimiters.repetition as char).next().unwrap_or("");
        let cs_first = crate::escape::unescape(cs_first, &delimiters).into_owned();
        let cs = Charset::from_msh18(&cs_first).unwrap_or(Charset::Unspecified);
        let text = |n: usize| -> String {
            match charset::decode(get(n), cs, true) {
                Ok((t, _)) => t.into_owned(),
                Err(_) => String::from_utf8_lossy(get(n)).into_owned(),
            }
        };
        Some(Header {
            delimiters,
            sending_application: text(3),
            sending_facility: text(4),
            receiving_application: text(5),
            receiving_facility: text(6),
            message_type: text(9),
            control_id: text(10),
            processing_id: text(11),
            version: text(12),
            accept_ack_type: text(15),
            application_ack_type: text(16),
            charset: cs_first,
        })
    }

    /// The header of a parsed message.
    pub fn from_message(msg: &Message<'_>) -> Header {
        let msh = msg.msh();
        let f = |n: usize| msh.field(n).map(|f| f.as_str().to_string()).unwrap_or_default();
        let cs = f(18);
        let d = msg.delimiters();
        Header {
            delimiters: d,
            sending_application: f(3),
            sending_facility: f(4),
            receiving_application: f(5),
            receiving_facility: f(6),
            message_type: f(9),
            control_id: f(10),
            processing_id: f(11),
            version: f(12),
            accept_ack_type: f(15),
            application_ack_type: f(16),
            charset: cs.split(d.repetition as char).next().unwrap_or("").to_string(),
        }
    }

    /// MSH-9.1.
    pub fn message_code(&self) -> &str {
        component(&self.message_type, &self.delimiters, 1)
    }

    /// MSH-9.2.
    pub fn trigger(&self) -> &str {
        component(&self.message_type, &self.delimiters, 2)
    }

    /// MSH-12.1.
    pub fn version_id(&self) -> &str {
        component(&self.version, &self.delimiters, 1)
    }

    /// The character set MSH-18 names, if we support it.
    pub fn parsed_charset(&self) -> Option<Charset> {
        Charset::from_msh18(&self.charset).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_broken_message() {
        let raw = b"\xEF\xBB\xBFMSH|^~\\&|APP|FAC|RAPP|RFAC|2024||ADT^A01|CTRL9|P|2.4|||AL|NE||8859/1\rPI\xFF|garbage";
        let h = Header::sniff(raw).unwrap();
        assert_eq!(h.control_id, "CTRL9");
        assert_eq!(h.trigger(), "A01");
        assert_eq!(h.version_id(), "2.4");
        assert_eq!(h.accept_ack_type, "AL");
        assert_eq!(h.parsed_charset(), Some(Charset::Latin1));
        assert!(Header::sniff(b"PID|1").is_none());
        // Found by the fuzzer: an MSH line with nothing after the id.
        assert!(Header::sniff(b"MSH\rPID|1").is_none());
        assert!(Header::sniff(b"MSH").is_none());
        let bad = Header::sniff(b"MSH|^^|A|B|C|D|||ORU^R01|X").unwrap();
        assert_eq!(bad.delimiters, Delimiters::default());
        assert_eq!(bad.control_id, "X");
    }
}
