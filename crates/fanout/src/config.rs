//! `[fanout]` settings, with their defaults. Routes are `[[fanout.routes]]` tables (see
//! [`crate::routes::Route`]), webhooks `[fanout.webhooks.<name>]` tables (see
//! [`crate::webhook::WebhookConfig`]).

use crate::routes::{Route, Target};
use crate::webhook::{ResolvedWebhook, WebhookConfig, WebhookConfigError};
use serde::Deserialize;
use std::collections::BTreeMap;

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
    /// Webhooks by name, the targets of `webhook = "<name>"` routes.
    pub webhooks: BTreeMap<String, WebhookConfig>,
    /// Messages that only create patients and visits (`[fanout.create_only]`).
    pub create_only: CreateOnly,
}

/// Messages that name the patient and the visit but are not their source: their resources of
/// `resource_types` go on the current-state topics only when no version of them has been
/// published (a conditional create), never over one (see [`crate::ledger`]). A lab result's
/// PID carries the MRN, name, birth date and sex, and its PV1 the visit number and class, not
/// the address, next of kin, attending doctor or admission time the admission gave; publishing
/// them would take those away from every reader of the current state.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CreateOnly {
    /// Event types (`hl7v2.oru.r01`; a trailing `*` matches a prefix). Default `hl7v2.oru.*`.
    pub event_types: Vec<String>,
    /// Sending applications (MSH-3.1), whatever they send.
    pub senders: Vec<String>,
    /// The types such messages only create. Default Patient and Encounter.
    pub resource_types: Vec<String>,
}

impl Default for CreateOnly {
    fn default() -> Self {
        Self {
            event_types: vec!["hl7v2.oru.*".into()],
            senders: Vec::new(),
            resource_types: vec!["Patient".into(), "Encounter".into()],
        }
    }
}

impl CreateOnly {
    /// Whether any message only creates anything (if not, fan-out keeps no ledger).
    pub fn any(&self) -> bool {
        (!self.event_types.is_empty() || !self.senders.is_empty()) && !self.resource_types.is_empty()
    }

    /// Whether `event` only creates resources of [`CreateOnly::resource_types`].
    pub fn matches(&self, event: &canonical::ClinicalEvent) -> bool {
        self.event_types.iter().any(|p| crate::routes::event_type_matches(p, &event.event_type))
            || self.senders.contains(&event.sender.application)
    }

    /// Whether `resource_type` of `event` is only created, never replaced.
    pub fn applies(&self, event: &canonical::ClinicalEvent, resource_type: &str) -> bool {
        self.resource_types.iter().any(|t| t == resource_type) && self.matches(event)
    }
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

    /// The delivery topic of a webhook: its `topic`, or `fanout.webhook.<name>.v1`.
    pub fn webhook_topic(&self, name: &str) -> String {
        self.webhooks
            .get(name)
            .and_then(|w| w.topic.clone())
            .unwrap_or_else(|| crate::webhook::config::default_topic(name))
    }

    /// The subscriber topics of topic routes.
    pub fn route_topics(&self) -> Vec<String> {
        self.routes.iter().filter_map(|r| r.topic().map(str::to_string)).collect()
    }

    /// The delivery topics of every configured webhook.
    pub fn webhook_topics(&self) -> Vec<String> {
        self.webhooks.keys().map(|n| self.webhook_topic(n)).collect()
    }

    /// Checks what serde cannot: every webhook a route names exists and every webhook's
    /// settings can work.
    pub fn validate(&self) -> Result<(), WebhookConfigError> {
        for r in &self.routes {
            if let Target::Webhook(w) = r.target()
                && !self.webhooks.contains_key(w)
            {
                return Err(WebhookConfigError::UnknownWebhook { route: r.name.clone(), webhook: w.to_string() });
            }
        }
        self.webhooks.iter().try_for_each(|(name, w)| w.validate(name))
    }

    /// [`FanoutConfig::validate`], then every webhook resolved with its secret headers read
    /// through `env` (`std::env::var` in the service).
    pub fn resolve_webhooks(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<ResolvedWebhook>, WebhookConfigError> {
        self.validate()?;
        self.webhooks.iter().map(|(name, w)| w.resolve(name, &self.group_id, &env)).collect()
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
            webhooks: BTreeMap::new(),
            create_only: CreateOnly::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> FanoutConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn routes_must_name_a_configured_webhook() {
        let c = parse("[[routes]]\nname = \"r\"\nwebhook = \"lab\"\n");
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "route \"r\" names webhook \"lab\", but no [fanout.webhooks.lab] table defines it"
        );
        let c = parse(
            "[[routes]]\nname = \"r\"\nwebhook = \"lab\"\n[[routes]]\nname = \"t\"\nto = \"route.t.v1\"\n[webhooks.lab]\nurl = \"http://127.0.0.1:1/\"\ntopic = \"hooks.lab\"\n",
        );
        c.validate().unwrap();
        assert_eq!(c.route_topics(), vec!["route.t.v1"]);
        assert_eq!(c.webhook_topics(), vec!["hooks.lab"]);
        let r = c.resolve_webhooks(|_| None).unwrap();
        assert_eq!((r[0].name.as_str(), r[0].group_id.as_str()), ("lab", "arteria-fanout.webhook.lab"));
    }

    #[test]
    fn lab_results_only_create_patients_and_visits_by_default_and_the_rule_is_configurable() {
        let mut ev = crate::resources::tests::event();
        let default = parse("");
        assert!(default.create_only.any());
        assert!(default.create_only.applies(&ev, "Patient"), "an ORU^R01 only creates its Patient by default");
        assert!(default.create_only.applies(&ev, "Encounter"), "… and its Encounter");
        assert!(!default.create_only.applies(&ev, "Observation"), "its results are its own");
        ev.event_type = "hl7v2.adt.a08".into();
        assert!(!default.create_only.applies(&ev, "Patient"), "an ADT^A08 replaces the patient");
        let by_sender = parse("[create_only]\nevent_types = []\nsenders = [\"LAB\"]\nresource_types = [\"Patient\"]\n");
        assert!(by_sender.create_only.applies(&ev, "Patient"), "anything the LAB application sends");
        assert!(!by_sender.create_only.applies(&ev, "Encounter"), "only the listed types");
        ev.sender.application = "ADMISSIONS".into();
        assert!(!by_sender.create_only.applies(&ev, "Patient"));
        let none = parse("[create_only]\nevent_types = []\n");
        assert!(!none.create_only.any(), "every message replaces what it names: no ledger");
        assert!(!parse("[create_only]\nresource_types = []\n").create_only.any());
    }

    #[test]
    fn a_bad_webhook_stops_validation() {
        let c = parse("[webhooks.lab]\nurl = \"http://127.0.0.1:1/\"\ntimeout_ms = 0\n");
        assert_eq!(c.validate().unwrap_err().to_string(), "webhook lab: timeout_ms must be at least 1");
    }
}
