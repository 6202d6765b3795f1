//! `AuditEvent`: who read or changed which PHI, on `audit.v1`.
//!
//! Every PHI read through the query API and every change by a stage emits one. It names the
//! resource by type and id only (never its content) so the audit trail is not itself a PHI copy.

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
pub struct Actor {
    /// Subject of the token (user or service account) or the service name.
    pub id: String,
    /// user or service.
    pub kind: String,
    /// OAuth2 client id, when the request came with a token.
    pub client_id: Option<String>,
    /// Network address the request came from, when there was one.
    pub address: Option<String>,
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
#[serde(rename_all = "UPPERCASE")]
pub enum AuditAction {
    Read,
    Search,
    Create,
    Update,
    Delete,
    Export,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
#[serde(rename_all = "UPPERCASE")]
pub enum AuditOutcome {
    Success,
    Denied,
    Error,
}

/// One audited access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "org.arteria.v1")]
pub struct AuditEvent {
    pub id: String,
    pub tenant: String,
    /// When it happened, microseconds since the epoch (UTC).
    #[avro(with = crate::time::timestamp_micros)]
    pub at: i64,
    pub actor: Actor,
    pub action: AuditAction,
    /// FHIR resource type touched, e.g. Patient.
    pub resource_type: String,
    /// Resource id, when a single resource was touched.
    pub resource_id: Option<String>,
    /// Patient key the data belongs to, when known.
    pub patient_key: Option<String>,
    /// Purpose of use (e.g. TREAT, HPAYMT), when the caller declared one.
    pub purpose: Option<String>,
    pub outcome: AuditOutcome,
    /// Service that served the access.
    pub service: String,
    /// W3C trace id of the request, to join with traces.
    pub trace_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_file;

    #[test]
    fn schema_matches_committed_file() {
        schema_file::assert_same(&AuditEvent::get_schema(), "AuditEvent.avsc");
    }
}
