//! The decision for one inbound message, before any I/O: parse it (within limits), check the
//! sender and processing id, and either build the `RawMessage` to store or the precise
//! rejection to send back (and dead-letter).
//!
//! Kept pure so every rule has a unit test; [`crate::session`] does the I/O.

use crate::allow;
use crate::config::IngestConfig;
use crate::peer::Peer;
use canonical::raw::{Channel, RawMessage, SenderId};
use hl7v2::ack::{Ack, ErrDetail};
use hl7v2::header::Header;
use hl7v2::{ErrorCode, Location, Message, ParseOptions};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

/// Media type of an HL7 v2 ER7 payload.
pub const HL7V2_CONTENT_TYPE: &str = "application/hl7-v2";

/// What to do with one message.
#[derive(Debug)]
// Both variants are large (a record, or the header copy an ACK needs) and a decision is made
// once per message and moved once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Decision {
    /// Store it; acknowledge once stored.
    Accept(Accepted),
    /// Refuse it: dead-letter the original bytes, answer AR/CR with these errors.
    Reject(Rejected),
}

#[derive(Debug)]
pub struct Accepted {
    pub key: Vec<u8>,
    pub record: RawMessage,
    pub ack: Ack,
}

#[derive(Debug)]
pub struct Rejected {
    pub key: Vec<u8>,
    pub ack: Ack,
    pub errors: Vec<ErrDetail>,
    /// Stable class for the dead letter and metrics: `parse`, `oversized`, `sender-not-allowed`,
    /// `processing-id`.
    pub class: &'static str,
    /// Precise description without message content (positions, rules, limits).
    pub detail: String,
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn digest_key(prefix: &str, parts: &[&str]) -> Vec<u8> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let hex: String = h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}:{hex}").into_bytes()
}

/// The Kafka key: the patient (first PID-3 identifier with its assigning authority, salted by
/// tenant) when there is one, so one patient's messages share a partition and keep their
/// order; else the sender. Hashed: keys show up in tools and must not carry identifiers.
pub fn partition_key(tenant: &str, msg: Option<&Message<'_>>, header: &Header) -> Vec<u8> {
    if let Some(msg) = msg {
        let id = msg.get("PID-3[1].1").map(|v| v.unescaped().into_owned()).unwrap_or_default();
        if !id.is_empty() {
            let authority = msg.get("PID-3[1].4").map(|v| v.unescaped().into_owned()).unwrap_or_default();
            return digest_key("patient", &[tenant, &authority, &id]);
        }
    }
    digest_key("sender", &[tenant, &header.sending_application, &header.sending_facility])
}

fn first_component<'h>(field: &'h str, header: &Header) -> &'h str {
    field.split(header.delimiters.component as char).next().unwrap_or("")
}

fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Decides what to do with `bytes`, received at `received_at` (µs) from `peer`.
pub fn decide(
    cfg: &IngestConfig,
    bytes: &[u8],
    peer: Option<SocketAddr>,
    channel: Channel,
    received_at: i64,
) -> Decision {
    decide_from(cfg, bytes, &Peer { addr: peer, client_cert: None }, channel, received_at)
}

/// [`decide`] for a peer that may also have shown a verified client certificate (mutual TLS).
pub fn decide_from(cfg: &IngestConfig, bytes: &[u8], from: &Peer, channel: Channel, received_at: i64) -> Decision {
    let peer = from.addr;
    let opts = ParseOptions {
        limits: cfg.limits.to_hl7(),
        allow_missing_msh: cfg.allow_missing_msh.clone(),
        ..ParseOptions::default()
    };
    let msg = match Message::parse_with(bytes, &opts) {
        Ok(m) => m,
        Err(e) => {
            let header = Header::sniff(bytes);
            let key = partition_key(&cfg.tenant, None, header.as_ref().unwrap_or(&Header::default()));
            return Decision::Reject(Rejected {
                key,
                ack: Ack::for_bytes(bytes),
                errors: vec![ErrDetail::from(&e)],
                class: "parse",
                detail: e.to_string(),
            });
        }
    };
    let header = Header::from_message(&msg);
    let key = partition_key(&cfg.tenant, Some(&msg), &header);
    let reject = |class, detail: String, err: ErrDetail| {
        Decision::Reject(Rejected {
            key: key.clone(),
            ack: Ack::for_header(header.clone()),
            errors: vec![err],
            class,
            detail,
        })
    };

    let app = first_component(&header.sending_application, &header);
    let fac = first_component(&header.sending_facility, &header);
    if !allow::allowed(&cfg.allow, app, fac, from) {
        let detail = "sending application/facility (MSH-3/MSH-4), peer address or client certificate is not on this endpoint's allow-list";
        return reject(
            "sender-not-allowed",
            detail.to_string(),
            ErrDetail::new(ErrorCode::ApplicationInternalError, detail)
                .with_location(Location::in_field("MSH", 1, 3, 0)),
        );
    }

    let pid = first_component(&header.processing_id, &header);
    if !cfg.processing_ids.is_empty() && !cfg.processing_ids.iter().any(|p| p == pid) {
        let detail =
            format!("processing id (MSH-11) {pid:?} is not accepted here; accepted: {}", cfg.processing_ids.join(", "));
        return reject(
            "processing-id",
            detail.clone(),
            ErrDetail::new(ErrorCode::UnsupportedProcessingId, detail)
                .with_location(Location::in_field("MSH", 1, 11, 0)),
        );
    }

    let record = RawMessage {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: cfg.tenant.clone(),
        received_at,
        channel,
        peer: peer.map(|p| p.to_string()),
        sender: SenderId { application: header.sending_application.clone(), facility: header.sending_facility.clone() },
        receiver: (!header.receiving_application.is_empty() || !header.receiving_facility.is_empty()).then(|| {
            SenderId { application: header.receiving_application.clone(), facility: header.receiving_facility.clone() }
        }),
        message_type: some(&header.message_type),
        control_id: some(&header.control_id),
        version: some(&header.version),
        charset: some(&header.charset),
        content_type: HL7V2_CONTENT_TYPE.to_string(),
        payload: bytes.to_vec(),
    };
    Decision::Accept(Accepted { key, record, ack: Ack::for_header(header) })
}

/// The rejection of an MLLP frame that was over the size limit and discarded while streaming
/// in; only its first bytes (`head`) were kept, enough to answer in the sender's terms.
pub fn oversized(cfg: &IngestConfig, head: &[u8], len: usize) -> Rejected {
    let header = Header::sniff(head).unwrap_or_default();
    let detail = format!(
        "message of {len} bytes exceeds the limit of {} bytes; it was discarded, only its first {} bytes are kept",
        cfg.limits.max_message_bytes,
        head.len()
    );
    Rejected {
        key: partition_key(&cfg.tenant, None, &header),
        ack: Ack::for_bytes(head),
        errors: vec![ErrDetail::new(ErrorCode::ValueTooLong, detail.clone()).with_location(Location::at(0))],
        class: "oversized",
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allow::AllowRule;

    const ADT: &[u8] = b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301101500+0100||ADT^A01^ADT_A01|CTL-1|P|2.5.1\rEVN|A01|20240301101500\rPID|1||P-100^^^NORTH^MR||TESTER^ALEX||19800101|U\r";

    fn decide_default(bytes: &[u8]) -> Decision {
        decide(&IngestConfig::default(), bytes, Some("127.0.0.1:4000".parse().unwrap()), Channel::Mllp, 1)
    }

    #[test]
    fn a_good_message_is_accepted_byte_for_byte_with_its_header() {
        let Decision::Accept(a) = decide_default(ADT) else { panic!("expected accept") };
        assert_eq!(a.record.payload, ADT);
        assert_eq!(a.record.control_id.as_deref(), Some("CTL-1"));
        assert_eq!(a.record.message_type.as_deref(), Some("ADT^A01^ADT_A01"));
        assert_eq!(a.record.version.as_deref(), Some("2.5.1"));
        assert_eq!(a.record.sender.application, "REG");
        assert_eq!(a.record.sender.facility, "NORTH");
        assert_eq!(a.record.peer.as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(a.record.charset, None);
        assert_eq!(a.record.content_type, HL7V2_CONTENT_TYPE);
        assert!(a.key.starts_with(b"patient:"));
        let ack = String::from_utf8(a.ack.accept().unwrap()).unwrap();
        assert!(ack.contains("MSA|AA|CTL-1"), "{ack}");
    }

    #[test]
    fn the_key_follows_the_patient_not_the_message() {
        let other = b"MSH|^~\\&|LAB|SOUTH|ARTERIA|HUB|20240301||ORU^R01^ORU_R01|CTL-2|P|2.5.1\rPID|1||P-100^^^NORTH^MR||TESTER^ALEX\r";
        let (Decision::Accept(a), Decision::Accept(b)) = (decide_default(ADT), decide_default(other)) else {
            panic!("expected accepts")
        };
        assert_eq!(a.key, b.key, "same patient identifier and authority → same key");
        let third =
            b"MSH|^~\\&|LAB|SOUTH|ARTERIA|HUB|20240301||ORU^R01^ORU_R01|CTL-3|P|2.5.1\rPID|1||P-101^^^NORTH^MR\r";
        let Decision::Accept(c) = decide_default(third) else { panic!() };
        assert_ne!(a.key, c.key);
        assert!(!String::from_utf8_lossy(&a.key).contains("P-100"), "keys never carry identifiers");
    }

    #[test]
    fn without_a_patient_the_key_is_the_sender() {
        let mfn = b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301||MFN^M02|CTL-4|P|2.5.1\rMFI|PRA\r";
        let Decision::Accept(a) = decide_default(mfn) else { panic!() };
        assert!(a.key.starts_with(b"sender:"));
    }

    #[test]
    fn malformed_input_is_rejected_with_the_parse_location() {
        let bad = b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301||ADT^A01|CTL-5|P|\rPID|1\r";
        let Decision::Reject(r) = decide_default(bad) else { panic!("expected reject") };
        assert_eq!(r.class, "parse");
        assert!(r.detail.contains("MSH-12") || r.detail.contains("12"), "{}", r.detail);
        let nak = String::from_utf8(r.ack.reject(&r.errors).unwrap()).unwrap();
        assert!(nak.contains("MSA|AR|CTL-5"), "{nak}");
        assert!(nak.contains("\rERR|"), "ERR segment expected: {nak}");
        assert!(nak.contains("101"), "required field missing code: {nak}");
    }

    #[test]
    fn bytes_without_msh_are_rejected_not_guessed() {
        let Decision::Reject(r) = decide_default(b"hello there") else { panic!() };
        assert_eq!(r.class, "parse");
        let nak = String::from_utf8(r.ack.reject(&r.errors).unwrap()).unwrap();
        assert!(nak.starts_with("MSH|^~\\&|"), "{nak}");
        assert!(nak.contains("\rMSA|AR"), "{nak}");
    }

    #[test]
    fn senders_off_the_allow_list_are_rejected() {
        let cfg = IngestConfig {
            allow: vec![AllowRule { application: Some("LAB".into()), ..Default::default() }],
            ..IngestConfig::default()
        };
        let Decision::Reject(r) = decide(&cfg, ADT, None, Channel::Mllp, 1) else { panic!() };
        assert_eq!(r.class, "sender-not-allowed");
        let nak = String::from_utf8(r.ack.reject(&r.errors).unwrap()).unwrap();
        assert!(nak.contains("MSA|AR|CTL-1"), "{nak}");
        assert!(nak.contains("MSH^1^3"), "ERR-2 names MSH-3: {nak}");
    }

    #[test]
    fn processing_id_is_checked_when_configured() {
        let cfg = IngestConfig { processing_ids: vec!["T".into()], ..IngestConfig::default() };
        let Decision::Reject(r) = decide(&cfg, ADT, None, Channel::Mllp, 1) else { panic!() };
        assert_eq!(r.class, "processing-id");
        let nak = String::from_utf8(r.ack.reject(&r.errors).unwrap()).unwrap();
        assert!(nak.contains("202"), "{nak}");
    }

    #[test]
    fn limits_apply() {
        let cfg = IngestConfig {
            limits: crate::config::LimitsConfig { max_segments: 2, ..Default::default() },
            ..IngestConfig::default()
        };
        let Decision::Reject(r) = decide(&cfg, ADT, None, Channel::Mllp, 1) else { panic!() };
        assert_eq!(r.class, "parse");
        assert!(r.detail.contains("segments"), "{}", r.detail);
    }

    #[test]
    fn an_empty_processing_id_is_refused_unless_the_endpoint_allows_it() {
        let no_msh11 = b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301||ADT^A01|CTL-11||2.5.1\rPID|1||P-1^^^NORTH^MR\r";
        assert!(matches!(decide_default(no_msh11), Decision::Reject(_)));
        let cfg = IngestConfig { allow_missing_msh: vec![11], ..IngestConfig::default() };
        assert!(matches!(decide(&cfg, no_msh11, None, Channel::Mllp, 1), Decision::Accept(_)));
    }

    #[test]
    fn oversized_frames_are_answered_from_their_head() {
        let r = oversized(&IngestConfig::default(), &ADT[..80], 99_000_000);
        assert_eq!(r.class, "oversized");
        let nak = String::from_utf8(r.ack.reject(&r.errors).unwrap()).unwrap();
        assert!(nak.contains("MSA|AR|CTL-1"), "{nak}");
        assert!(r.detail.contains("99000000"));
    }
}
