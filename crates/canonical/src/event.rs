//! `ClinicalEvent`: one canonical event per source message, on `clinical.normalized.v1` and
//! `clinical.enriched.v1`.
//!
//! The envelope is stable; each resource travels as FHIR R4 JSON (`fhir_json`, what the services
//! read) and as a typed Avro record (`typed`, for analytics), added as an optional field so
//! readers of the earlier schema are unaffected (BACKWARD compatible).
//! `issues` is the report of what could not be mapped or coded: the design forbids partial
//! mappings without such a report.

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

use crate::raw::SenderId;

/// Media type of a `ClinicalEvent` value (the `content-type` header).
pub const CONTENT_TYPE: &str = "application/vnd.arteria.clinical-event.v1+avro";

/// One FHIR R4 resource produced from the source message.
///
/// On the wire it also carries `typed`, the same resource as a typed `org.arteria.fhir.r4`
/// record, derived from `fhir_json` while encoding (see [`crate::typed`]); its schema and
/// serialisation are written by hand in `wire_schema` because of that extra field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// FHIR resource type, e.g. Patient, Encounter, Observation.
    pub resource_type: String,
    /// Deterministic resource id (see the identity rules in the design).
    pub id: String,
    /// The resource as FHIR R4 JSON.
    pub fhir_json: String,
}

/// Where the event came from and what produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
pub struct Provenance {
    /// Source format, e.g. hl7v2, fhir, ccda.
    pub source_format: String,
    /// Source message type as sent, e.g. ADT^A01, when the format has one.
    pub source_message_type: Option<String>,
    /// Sender's control id of the source message (MSH-10), when it has one.
    pub source_control_id: Option<String>,
    /// Stage that produced this version of the event, e.g. normalize, enrich.
    pub stage: String,
    /// Version of the mapping or enrichment logic, for replays and audits.
    pub logic_version: String,
    /// Sender profile applied, when one was.
    pub profile: Option<String>,
}

/// How much an issue matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
#[serde(rename_all = "UPPERCASE")]
pub enum IssueSeverity {
    Info,
    Warning,
    Error,
}

/// Something in the source that was not mapped, not coded or looked wrong. Never contains
/// the data itself, only where it is and what the problem was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
pub struct Issue {
    pub severity: IssueSeverity,
    /// Stable machine-readable code, e.g. unmapped-segment, unknown-code.
    pub code: String,
    /// Location in the source, e.g. OBX[3].5 or a FHIRPath.
    pub location: String,
    /// Stage that raised it.
    pub stage: String,
    /// Human-readable explanation without PHI.
    pub detail: String,
}

/// The canonical event envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
pub struct ClinicalEvent {
    /// Deterministic event id (from sender, control id), so a replay produces the same id.
    pub id: String,
    /// `RawMessage.id` this event was made from.
    pub source_raw_id: String,
    pub tenant: String,
    /// Event kind, e.g. patient-admit, observation-result.
    pub event_type: String,
    /// When the event happened at the source, microseconds since the epoch (UTC).
    #[avro(with = crate::time::timestamp_micros)]
    pub occurred_at: i64,
    pub sender: SenderId,
    /// Patient key (hashed identity) used as the Kafka key, when the message names a patient.
    pub patient_key: Option<String>,
    pub provenance: Provenance,
    pub resources: Vec<Resource>,
    /// What could not be mapped or coded; empty when everything was.
    #[avro(default = "[]")]
    #[serde(default)]
    pub issues: Vec<Issue>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_file;

    #[test]
    fn schema_matches_committed_file() {
        schema_file::assert_same(&ClinicalEvent::get_schema(), "ClinicalEvent.avsc");
    }
}
