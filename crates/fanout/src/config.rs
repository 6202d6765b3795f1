//! `[fanout]` settings, with their defaults. Routes are `[[fanout.routes]]` tables (see
//! [`crate::routes::Route`]).

use crate::routes::Route;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanoutConfig {
    /// Default `clinical.enriched.v1`.
    pub input_topic: String,
    /// Default `fanout.dlq.v1`.
    pub dlq_topic: String,
    /// Default `arteria-fanout`.
    pub group_id: String,
    /// Unique and stable per replica. Default `fanout-0`.
    pub transactional_id: String,
    /// Resource types published to `fhir.<type>.v1`. Default: the types the pipeline maps.
    pub resource_types: Vec<String>,
    /// Prepended to every current-state topic name (e.g. `staging.` → `staging.fhir.patient.v1`),
    /// for environments sharing a cluster. Default empty.
    pub topic_prefix: String,
    /// Route rules, evaluated for every event; each matching route gets the event once.
    pub routes: Vec<Route>,
}

/// The resource types with a current-state topic by default. MessageHeader (one message's
/// envelope) and Provenance (per-message history) are not current state.
pub const DEFAULT_TYPES: &[&str] = &[
    "Patient",
    "RelatedPerson",
    "Encounter",
    "Observation",
    "DiagnosticReport",
    "ServiceRequest",
    "Specimen",
    "MedicationRequest",
    "MedicationAdministration",
    "Immunization",
    "AllergyIntolerance",
    "Condition",
    "Procedure",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Coverage",
    "DocumentReference",
    "Appointment",
    "Device",
    "Account",
];

impl FanoutConfig {
    /// The current-state topic of a resource type.
    pub fn topic_for(&self, resource_type: &str) -> String {
        format!("{}{}", self.topic_prefix, canonical::current::topic_for(resource_type))
    }
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            input_topic: "clinical.enriched.v1".into(),
            dlq_topic: "fanout.dlq.v1".into(),
            group_id: "arteria-fanout".into(),
            transactional_id: "fanout-0".into(),
            resource_types: DEFAULT_TYPES.iter().map(|s| s.to_string()).collect(),
            topic_prefix: String::new(),
            routes: Vec::new(),
        }
    }
}
