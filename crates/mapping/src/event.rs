//! A [`crate::Conversion`] as the `ClinicalEvent` on `clinical.normalized.v1`: envelope,
//! resources as FHIR JSON, and the coverage report as issues.

use crate::{Conversion, LOGIC_VERSION};
use canonical::{ClinicalEvent, Provenance, Resource, SenderId};

/// Event kind from the message type, e.g. `ADT^A01` → `hl7v2.adt.a01`.
pub fn event_type(message_type: &str) -> String {
    format!("hl7v2.{}", message_type.replace('^', ".").to_ascii_lowercase())
}

impl Conversion {
    /// Builds the canonical event. `occurred_at` is in microseconds since the epoch (UTC);
    /// the caller passes the receive time when the message carries none it trusts.
    pub fn to_event(&self, tenant: &str, source_raw_id: &str, occurred_at: i64) -> ClinicalEvent {
        ClinicalEvent {
            id: self.id.clone(),
            source_raw_id: source_raw_id.to_string(),
            tenant: tenant.to_string(),
            event_type: event_type(&self.message_type),
            occurred_at,
            sender: SenderId { application: self.sender_application.clone(), facility: self.sender_facility.clone() },
            patient_key: self.patient_id.clone(),
            provenance: Provenance {
                source_format: "hl7v2".into(),
                source_message_type: Some(self.message_type.clone()).filter(|m| !m.is_empty()),
                source_control_id: Some(self.control_id.clone()).filter(|c| !c.is_empty()),
                stage: "normalize".into(),
                logic_version: LOGIC_VERSION.into(),
                profile: self.profile.clone(),
            },
            resources: self
                .resources
                .iter()
                .map(|r| Resource {
                    resource_type: r.resource_type().to_string(),
                    id: r.id().to_string(),
                    fhir_json: serde_json::to_string(r).expect("the model serialises to JSON"),
                })
                .collect(),
            issues: self.coverage.to_issues(),
        }
    }
}
