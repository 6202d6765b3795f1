//! `RawMessage`: what ingest accepted, byte for byte, on `hl7v2.raw.v1`.
//!
//! Ingest does not transform, so this record carries the untouched payload plus only what
//! ingest learnt cheaply while framing (MSH header fields, peer, charset) — enough for
//! normalize to route, deduplicate by (sender, control id) and decode without re-reading MSH.

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

/// How the message reached ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
#[serde(rename_all = "UPPERCASE")]
pub enum Channel {
    Mllp,
    Http,
    File,
}

/// An application at a facility (HL7 v2 MSH-3/MSH-4, MSH-5/MSH-6). Either part may be empty
/// when the sender leaves it empty; it is never guessed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
pub struct SenderId {
    pub application: String,
    pub facility: String,
}

/// One accepted inbound message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
pub struct RawMessage {
    /// Ingest's id for this message (UUID v7 string); the `message-id` header carries the same.
    pub id: String,
    /// Tenant the receiving endpoint belongs to; salts deterministic identities.
    pub tenant: String,
    /// When ingest accepted the message, microseconds since the epoch (UTC).
    #[avro(with = crate::time::timestamp_micros)]
    pub received_at: i64,
    pub channel: Channel,
    /// Remote address of the connection (host:port), when there was one.
    pub peer: Option<String>,
    /// Sending application and facility (MSH-3, MSH-4).
    pub sender: SenderId,
    /// Receiving application and facility (MSH-5, MSH-6), when present.
    pub receiver: Option<SenderId>,
    /// Message type as sent, e.g. ADT^A01^ADT_A01 (MSH-9), when it could be read.
    pub message_type: Option<String>,
    /// Message control id (MSH-10), the sender's key for duplicate detection.
    pub control_id: Option<String>,
    /// HL7 version id (MSH-12), when present.
    pub version: Option<String>,
    /// Character set declared by the sender (MSH-18 or the HTTP charset), when declared.
    pub charset: Option<String>,
    /// Media type of the payload, e.g. application/hl7-v2, application/fhir+json.
    pub content_type: String,
    /// The message exactly as received.
    #[avro(with)]
    #[serde(with = "apache_avro::serde::bytes")]
    pub payload: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_file;

    #[test]
    fn schema_matches_committed_file() {
        schema_file::assert_same(&RawMessage::get_schema(), "RawMessage.avsc");
    }
}
