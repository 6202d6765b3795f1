//! `FhirResource`: the current state of one resource, on the compacted `fhir.<type>.v1` topics
//! that fan-out writes and the query service materialises. Keyed by resource id, so compaction
//! keeps the latest version of each resource.
//!
//! The resource travels as FHIR R4 JSON beside the few fields every consumer indexes on
//! (type, tenant, patient, source event), so a consumer can route and index without parsing
//! the JSON, and as a typed Avro record (`typed`) that analytics read field by field.

/// The current version of one FHIR resource.
///
/// On the wire it also carries `typed`, the resource as a typed `org.arteria.fhir.r4` record,
/// derived from `fhir_json` while encoding (see [`crate::typed`]; schema and serialisation in `wire_schema`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirResource {
    /// Resource id; also the Kafka key.
    pub id: String,
    /// FHIR resource type, e.g. Patient, Observation.
    pub resource_type: String,
    pub tenant: String,
    /// Id of the Patient this resource is about (the Patient's own id for a Patient), when any.
    pub patient_id: Option<String>,
    /// `ClinicalEvent.id` that produced this version.
    pub source_event_id: String,
    /// `ClinicalEvent.event_type` that produced this version, e.g. hl7v2.adt.a08.
    pub event_type: String,
    /// When the source event happened, microseconds since the epoch (UTC).
    pub occurred_at: i64,
    /// The resource as FHIR R4 JSON.
    pub fhir_json: String,
}

/// The topic of a resource type's current state: `fhir.<type in lower case>.v1`.
pub fn topic_for(resource_type: &str) -> String {
    format!("fhir.{}.v1", resource_type.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_file;
    use apache_avro::AvroSchema;

    #[test]
    fn schema_matches_committed_file() {
        schema_file::assert_same(&FhirResource::get_schema(), "FhirResource.avsc");
    }

    #[test]
    fn topic_names() {
        assert_eq!(topic_for("Observation"), "fhir.observation.v1");
        assert_eq!(topic_for("DiagnosticReport"), "fhir.diagnosticreport.v1");
    }
}
