//! Acknowledgments: MSA + ERR answers in original mode (AA/AE/AR) and enhanced mode
//! (CA/CE/CR commit ACKs, then the application ACK as MSH-15/MSH-16 ask).
//!
//! The answer speaks the sender's dialect: its delimiters, version and character set, with
//! sending and receiving application/facility swapped and MSH-10 echoed in MSA-2. For
//! v2.5+ each problem is an ERR with ERR-2 (location), ERR-3 (Table 0357 code), ERR-4
//! (severity) and ERR-8 (text); older versions get ERR-1 and MSA-3.
//!
//! ```
//! use hl7v2::{Ack, Message};
//! let msg = Message::parse(b"MSH|^~\\&|LAB|H|EHR|H|20240101||ORU^R01|42|P|2.5.1\r").unwrap();
//! let ack = Ack::for_message(&msg).control_id("A42").accept().unwrap();
//! let text = String::from_utf8(ack).unwrap();
//! assert!(text.contains("\rMSA|AA|42\r"));
//! ```

use crate::charset::{self, Charset};
use crate::encode::{Leaf, OwnedMessage};
use crate::error::{ErrorCode, Location, ParseError};
use crate::escape;
use crate::header::Header;
use crate::message::Message;

/// MSA-1 acknowledgment codes (HL7 Table 0008).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Original mode: application accept.
    AA,
    /// Original mode: application error.
    AE,
    /// Original mode: application reject.
    AR,
    /// Enhanced mode: commit accept.
    CA,
    /// Enhanced mode: commit error.
    CE,
    /// Enhanced mode: commit reject.
    CR,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    fn is_success(self) -> bool {
        matches!(self, AckCode::AA | AckCode::CA)
    }
}

/// When the sender wants an acknowledgment (HL7 Table 0155, MSH-15/MSH-16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCondition {
    /// `AL` (also assumed when the field is empty in enhanced mode).
    Always,
    /// `NE`.
    Never,
    /// `ER`: only on error or reject.
    OnError,
    /// `SU`: only on success.
    OnSuccess,
}

impl AckCondition {
    fn parse(s: &str) -> AckCondition {
        match s.trim() {
            "NE" => AckCondition::Never,
            "ER" => AckCondition::OnError,
            "SU" => AckCondition::OnSuccess,
            _ => AckCondition::Always,
        }
    }

    fn wants(self, success: bool) -> bool {
        match self {
            AckCondition::Always => true,
            AckCondition::Never => false,
            AckCondition::OnError => !success,
            AckCondition::OnSuccess => success,
        }
    }
}

/// Original mode (MSH-15 and MSH-16 both empty) or enhanced mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Original,
    Enhanced { accept: AckCondition, application: AckCondition },
}

/// ERR-4 severity (HL7 Table 0516).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Error,
    Warning,
    Information,
    Fatal,
}

impl Severity {
    fn code(self) -> &'static str {
        match self {
            Severity::Error => "E",
            Severity::Warning => "W",
            Severity::Information => "I",
            Severity::Fatal => "F",
        }
    }
}

/// One problem to report in an ERR segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrDetail {
    pub code: ErrorCode,
    pub severity: Severity,
    pub location: Option<Location>,
    /// Human-readable text (ERR-8, or MSA-3 before v2.5). Never put PHI here.
    pub text: String,
}

impl ErrDetail {
    pub fn new(code: ErrorCode, text: impl Into<String>) -> Self {
        ErrDetail { code, severity: Severity::Error, location: None, text: text.into() }
    }

    pub fn with_location(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
}

impl From<&ParseError> for ErrDetail {
    fn from(e: &ParseError) -> Self {
        ErrDetail {
            code: e.code(),
            severity: Severity::Error,
            location: Some((*e.location).clone()),
            // The kind's text names positions and delimiters, never field contents.
            text: e.kind.to_string(),
        }
    }
}

/// Builds acknowledgments for one received message.
#[derive(Debug, Clone)]
pub struct Ack {
    header: Header,
    control_id: Option<String>,
    timestamp: Option<String>,
}

fn version_at_least(v: &str, major: u32, minor: u32) -> bool {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

fn version_tuple(v: &str) -> (u32, u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// `YYYYMMDDHHMMSS+0000` for now, without a calendar dependency.
fn now_ts() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}+0000", rem / 3600, (rem % 3600) / 60, rem % 60)
}

impl Ack {
    /// Acknowledgments for a parsed message.
    pub fn for_message(msg: &Message<'_>) -> Ack {
        Ack::for_header(Header::from_message(msg))
    }

    /// Acknowledgments from a header (e.g. [`Header::sniff`] of a message that did not parse).
    pub fn for_header(header: Header) -> Ack {
        Ack { header, control_id: None, timestamp: None }
    }

    /// Acknowledgments for raw bytes: reads what it can of MSH; without any MSH, answers with
    /// `^~\&`, version 2.5.1 and an empty MSA-2.
    pub fn for_bytes(bytes: &[u8]) -> Ack {
        Ack::for_header(Header::sniff(bytes).unwrap_or_else(|| Header {
            version: "2.5.1".into(),
            processing_id: "P".into(),
            ..Header::default()
        }))
    }

    /// MSH-10 of the ACK. Default: `ACK` + the original control id (set a unique one).
    pub fn control_id(mut self, id: impl Into<String>) -> Self {
        self.control_id = Some(id.into());
        self
    }

    /// MSH-7 of the ACK. Default: now, UTC.
    pub fn timestamp(mut self, ts: impl Into<String>) -> Self {
        self.timestamp = Some(ts.into());
        self
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Original or enhanced mode, from MSH-15/MSH-16 (enhanced needs v2.2+).
    pub fn mode(&self) -> AckMode {
        let (a, p) = (self.header.accept_ack_type.trim(), self.header.application_ack_type.trim());
        if (a.is_empty() && p.is_empty()) || !version_at_least(self.header.version_id(), 2, 2) {
            AckMode::Original
        } else {
            AckMode::Enhanced { accept: AckCondition::parse(a), application: AckCondition::parse(p) }
        }
    }

    fn first(&self, original: AckCode, commit: AckCode, errs: &[ErrDetail]) -> Option<Vec<u8>> {
        match self.mode() {
            AckMode::Original => Some(self.build(original, errs)),
            AckMode::Enhanced { accept, .. } => accept.wants(commit.is_success()).then(|| self.build(commit, errs)),
        }
    }

    /// The answer on receipt when all is well: AA (original) or CA (enhanced, if MSH-15 asks
    /// for it; `None` when the sender asked not to be answered).
    pub fn accept(&self) -> Option<Vec<u8>> {
        self.first(AckCode::AA, AckCode::CA, &[])
    }

    /// The answer when the message was fine but we could not take it now (e.g. the queue is
    /// down): AE / CE. The sender should retry.
    pub fn error(&self, errs: &[ErrDetail]) -> Option<Vec<u8>> {
        self.first(AckCode::AE, AckCode::CE, errs)
    }

    /// The answer for a message we will never take (malformed, unsupported): AR / CR.
    pub fn reject(&self, errs: &[ErrDetail]) -> Option<Vec<u8>> {
        self.first(AckCode::AR, AckCode::CR, errs)
    }

    /// The application ACK (AA/AE/AR) of enhanced mode, if MSH-16 asks for it. In original
    /// mode it is the one and only ACK, always sent.
    pub fn application(&self, code: AckCode, errs: &[ErrDetail]) -> Option<Vec<u8>> {
        match self.mode() {
            AckMode::Original => Some(self.build(code, errs)),
            AckMode::Enhanced { application, .. } => {
                application.wants(code.is_success()).then(|| self.build(code, errs))
            }
        }
    }

    /// An ACK with this code, whatever the sender asked for, encoded in its character set.
    pub fn build(&self, code: AckCode, errs: &[ErrDetail]) -> Vec<u8> {
        let m = self.build_message(code, errs);
        m.encode()
    }

    /// The ACK as an owned message, before encoding.
    pub fn build_message(&self, code: AckCode, errs: &[ErrDetail]) -> OwnedMessage {
        let h = &self.header;
        let d = h.delimiters;
        let mut m = OwnedMessage::new(d);
        m.charset = h.parsed_charset().unwrap_or(Charset::Unspecified);
        let raw = |m: &mut OwnedMessage, path: &str, v: &str| {
            if !v.is_empty() {
                let _ = m.set_leaf(path, Leaf::Raw(v.to_string()));
            }
        };
        raw(&mut m, "MSH-3", &h.receiving_application);
        raw(&mut m, "MSH-4", &h.receiving_facility);
        raw(&mut m, "MSH-5", &h.sending_application);
        raw(&mut m, "MSH-6", &h.sending_facility);
        let ts = self.timestamp.clone().unwrap_or_else(now_ts);
        let _ = m.set("MSH-7", &ts);
        // A message without MSH-12 is answered as 2.5.1 (below); the ERR layout must then be
        // 2.5.1's too, so the ACK is consistent with the version it declares.
        let version = if h.version_id().is_empty() { "2.5.1" } else { h.version_id() };
        let vt = version_tuple(version);
        let _ = m.set("MSH-9.1", "ACK");
        let trigger = h.trigger();
        if !trigger.is_empty() && vt >= (2, 3, 0) {
            let _ = m.set_leaf("MSH-9.2", Leaf::Raw(trigger.to_string()));
            if vt >= (2, 3, 1) {
                let _ = m.set("MSH-9.3", "ACK");
            }
        }
        let id = self.control_id.clone().unwrap_or_else(|| {
            let e = escape::unescape(&h.control_id, &d);
            format!("ACK{e}")
        });
        let _ = m.set("MSH-10", &id);
        let pid = if h.processing_id.is_empty() { "P" } else { &h.processing_id };
        raw(&mut m, "MSH-11", pid);
        raw(&mut m, "MSH-12", if h.version.is_empty() { "2.5.1" } else { &h.version });
        if m.charset != Charset::Unspecified {
            let _ = m.set("MSH-18", m.charset.hl7_name());
        }
        let new_err = version_at_least(version, 2, 5);
        let _ = m.set("MSA-1", code.as_str());
        raw(&mut m, "MSA-2", &h.control_id);
        if !new_err && let Some(e) = errs.first() {
            let _ = m.set("MSA-3", &truncate(&e.text, 80));
        }
        for (i, e) in errs.iter().enumerate() {
            let occ = i + 1;
            let p = |f: &str| format!("ERR({occ})-{f}");
            // Make sure the segment exists even when a detail has nothing to say.
            let _ = m.set(&p("1"), "");
            if new_err {
                if let Some(l) = &e.location {
                    set_location(&mut m, &p("2"), l, false);
                }
                let _ = m.set(&p("3.1"), &e.code.code().to_string());
                let _ = m.set(&p("3.2"), e.code.text());
                let _ = m.set(&p("3.3"), "HL70357");
                let _ = m.set(&p("4"), e.severity.code());
                if !e.text.is_empty() {
                    let _ = m.set(&p("8"), &e.text);
                }
            } else {
                if let Some(l) = &e.location {
                    set_location(&mut m, &p("1"), l, true);
                }
                let _ = m.set(&format!("{}.4.1", p("1")), &e.code.code().to_string());
                let _ = m.set(&format!("{}.4.2", p("1")), e.code.text());
                let _ = m.set(&format!("{}.4.3", p("1")), "HL70357");
            }
        }
        m
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// ERL (v2.5+: seg^seq^field^rep^comp^sub) or the older ELD first three components.
fn set_location(m: &mut OwnedMessage, base: &str, l: &Location, old: bool) {
    let mut set = |c: usize, v: Option<String>| {
        if let Some(v) = v {
            let _ = m.set(&format!("{base}.{c}"), &v);
        }
    };
    set(1, l.segment.clone());
    set(2, l.segment_index.map(|v| v.to_string()));
    set(3, l.field.map(|v| v.to_string()));
    if !old {
        set(4, l.repetition.or(l.component.map(|_| 1)).map(|v| v.to_string()));
        set(5, l.component.map(|v| v.to_string()));
        set(6, l.subcomponent.map(|v| v.to_string()));
    }
}

/// Encodes `text` in `cs` (exposed for callers building their own answers).
pub fn encode_in(text: &str, cs: Charset, escape_char: u8) -> Vec<u8> {
    charset::encode(text, cs, Some(escape_char)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Message};

    fn text(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    const MSG: &[u8] = b"MSH|^~\\&|LAB|NORTH|EHR|SOUTH|20240101||ORU^R01^ORU_R01|C42|P|2.5.1\rPID|1||7^^^N^MR\r";

    #[test]
    fn original_accept() {
        let m = Message::parse(MSG).unwrap();
        let a = Ack::for_message(&m).control_id("A1").timestamp("20240102030405");
        assert_eq!(a.mode(), AckMode::Original);
        assert_eq!(
            text(a.accept().unwrap()),
            "MSH|^~\\&|EHR|SOUTH|LAB|NORTH|20240102030405||ACK^R01^ACK|A1|P|2.5.1\rMSA|AA|C42\r"
        );
    }

    #[test]
    fn reject_with_err_v25() {
        let bad = b"MSH|^~\\&|LAB|NORTH|EHR|SOUTH|20240101||ORU^R01|C43|P|2.5.1\rPID|1\rP!D|x\r";
        let e = Message::parse(bad).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InvalidSegmentId { .. }));
        let a = Ack::for_bytes(bad).control_id("A2").timestamp("20240102");
        let t = text(a.reject(&[ErrDetail::from(&e)]).unwrap());
        let acked = Message::parse(t.as_bytes()).unwrap();
        assert_eq!(acked.get("MSA-1").unwrap().as_str(), "AR");
        assert_eq!(acked.get("MSA-2").unwrap().as_str(), "C43");
        assert_eq!(acked.get("ERR-2.2").unwrap().as_str(), "3");
        assert_eq!(acked.get("ERR-3.1").unwrap().as_str(), "100");
        assert_eq!(acked.get("ERR-3.3").unwrap().as_str(), "HL70357");
        assert_eq!(acked.get("ERR-4").unwrap().as_str(), "E");
        assert!(acked.get("ERR-8").unwrap().unescaped().contains("P!D"));
    }

    #[test]
    fn old_version_uses_err1_and_msa3() {
        let bad = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|Z9|P|2.3\r";
        let a = Ack::for_bytes(bad).control_id("K").timestamp("2024");
        let d = ErrDetail::new(ErrorCode::RequiredFieldMissing, "PID missing")
            .with_location(Location::in_field("PID", 2, 3, 0));
        let t = text(a.error(&[d]).unwrap());
        assert!(t.contains("||ACK^A01|K|P|2.3\r"), "{t}");
        assert!(t.contains("\rMSA|AE|Z9|PID missing\r"), "{t}");
        assert!(t.contains("\rERR|PID^2^3^101&Required field missing&HL70357\r"), "{t}");
    }

    #[test]
    fn enhanced_mode() {
        let raw = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|E1|P|2.5|||ER|AL\r";
        let m = Message::parse(raw).unwrap();
        let a = Ack::for_message(&m).timestamp("2024");
        assert_eq!(a.mode(), AckMode::Enhanced { accept: AckCondition::OnError, application: AckCondition::Always });
        assert!(a.accept().is_none(), "ER: no commit ACK on success");
        let ce = text(a.error(&[]).unwrap());
        assert!(ce.contains("MSA|CE|E1"));
        let aa = text(a.application(AckCode::AA, &[]).unwrap());
        assert!(aa.contains("MSA|AA|E1"));
        let ne = Message::parse(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|E2|P|2.5|||AL|NE\r").unwrap();
        let a = Ack::for_message(&ne);
        assert!(text(a.accept().unwrap()).contains("MSA|CA|E2"));
        assert!(a.application(AckCode::AA, &[]).is_none());
    }

    #[test]
    fn senders_dialect_is_kept() {
        let raw = b"MSH!@*$%!APP!FAC!ME!US!2024!!ADT@A01!X$F$1!P!2.7!!!!!!8859/1\rPID!1!!!!Jos\xE9\r";
        let m = Message::parse(raw).unwrap();
        let b = Ack::for_message(&m).control_id("R\u{e9}f").timestamp("2024").accept().unwrap();
        assert!(
            b.starts_with(b"MSH!@*$%!ME!US!APP!FAC!2024!!ACK@A01@ACK!R\xE9f!P!2.7!!!!!!8859/1\r"),
            "{}",
            String::from_utf8_lossy(&b)
        );
        assert!(b.ends_with(b"MSA!AA!X$F$1\r"));
        let five = Message::parse(b"MSH|^~\\&#|A|B|C|D|2024||ADT^A01|1|P|2.8\r").unwrap();
        let b = Ack::for_message(&five).accept().unwrap();
        assert!(b.starts_with(b"MSH|^~\\&#|C|D|A|B|"));
    }

    #[test]
    fn no_msh_at_all() {
        let a = Ack::for_bytes(b"garbage").timestamp("2024").control_id("N1");
        let e = Message::parse(b"garbage").unwrap_err();
        let t = text(a.reject(&[ErrDetail::from(&e)]).unwrap());
        let p = Message::parse(t.as_bytes()).unwrap();
        assert_eq!(p.get("MSA-1").unwrap().as_str(), "AR");
        assert_eq!(p.version(), Some("2.5.1"));
    }

    #[test]
    fn timestamp_format() {
        let ts = now_ts();
        assert_eq!(ts.len(), 19);
        assert!(ts.starts_with("20"));
    }

    #[test]
    fn a_message_without_version_gets_a_consistent_2_5_1_nak() {
        let raw = b"MSH|^~\\&|APP|FAC|RAPP|RFAC|2024||ADT^A01|C1|P|\rPID|1\r";
        let err = crate::Message::parse(raw).unwrap_err();
        let nak = String::from_utf8(Ack::for_bytes(raw).reject(&[ErrDetail::from(&err)]).unwrap()).unwrap();
        assert!(nak.contains("|P|2.5.1"), "{nak}");
        // v2.5+ layout: ERR-2 location, ERR-3 code, ERR-4 severity; not ERR-1 (ELD).
        assert!(nak.contains("\rERR||MSH^1^12|101^"), "{nak}");
    }
}
