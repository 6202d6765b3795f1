//! A [`crate::Conversion`] as the `ClinicalEvent` on `clinical.normalized.v1`: envelope,
//! resources as FHIR JSON, and the coverage report as issues.

use crate::{Conversion, LOGIC_VERSION};
use canonical::{ClinicalEvent, Provenance, Resource, SenderId};

/// Event kind from the message type, e.g. `ADT^A01` → `hl7v2.adt.a01`.
pub fn event_type(message_type: &str) -> String {
    format!("hl7v2.{}", message_type.replace('^', ".").to_ascii_lowercase())
}

impl Conversion {
    /// MSH-7 as microseconds since the epoch (UTC), when it has a time of day — the natural
    /// `occurred_at` of the event.
    pub fn timestamp_micros(&self) -> Option<i64> {
        let ts: jiff::Timestamp = self.timestamp.as_deref()?.parse().ok()?;
        Some(ts.as_microsecond())
    }

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
            resources: {
                // One scratch buffer for every resource, each JSON then copied out at its exact
                // size (growing a fresh string per resource reallocated two or three times).
                let mut buf = Vec::with_capacity(4096);
                self.resources
                    .iter()
                    .map(|r| {
                        buf.clear();
                        canonical::model::JsonWrite::write_json(r, &mut buf);
                        Resource {
                            resource_type: r.resource_type().to_string(),
                            id: r.id().to_string(),
                            fhir_json: std::str::from_utf8(&buf).expect("JSON output is UTF-8").to_owned(),
                        }
                    })
                    .collect()
            },
            issues: self.coverage.to_issues(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_micros_from_msh7() {
        let msg = b"MSH|^~\\&|A|B|C|D|20240101120000+0100||ADT^A04|1|P|2.5\rPID|1||X^^^H^MR\r";
        let c = crate::convert_bytes(msg, &crate::Profiles::default(), "t").unwrap();
        // 2024-01-01T11:00:00Z
        assert_eq!(c.timestamp_micros(), Some(1_704_106_800_000_000));
        let ev = c.to_event("t", "raw", c.timestamp_micros().unwrap());
        assert_eq!(ev.event_type, "hl7v2.adt.a04");
        assert_eq!(ev.provenance.source_control_id.as_deref(), Some("1"));
        assert!(ev.resources.iter().all(|r| serde_json::from_str::<serde_json::Value>(&r.fhir_json).is_ok()));
    }
}
