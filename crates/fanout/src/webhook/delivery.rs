//! The delivery record: what the transactional fan-out step writes for a webhook instead of
//! calling it. HTTP cannot take part in a Kafka transaction and a slow receiver must not stall
//! the pipeline, so a matched resource becomes a record on the webhook's delivery topic, in
//! the same transaction as the current-state records; the webhook's worker sends it later.
//!
//! Record: key `<Type>/<id>` (one resource's versions share a partition, so they are sent in
//! order), value the resource's FHIR JSON exactly as it will be sent, headers `message-id` =
//! the idempotency key `<Type>/<id>@<event id>`, `content-type`, `arteria-event-id`,
//! `arteria-resource-id`, and the trace context.

use crate::config::FanoutConfig;
use crate::processor::FHIR_JSON_CONTENT_TYPE;
use crate::routes::{Route, Target};
use bus::txloop::Output;
use bus::{InputRecord, MessageHeaders};
use canonical::FhirResource;

/// Kafka header: the event that produced this version.
pub const EVENT_ID: &str = "arteria-event-id";
/// Kafka header: `<Type>/<id>`.
pub const RESOURCE_ID: &str = "arteria-resource-id";

/// The delivery records for one event: for each webhook named by a matching route, one record
/// per current-state resource those routes select (the types in their `when.resource_types`,
/// or every current-state resource when a route names none), each resource once per webhook.
pub fn outputs(cfg: &FanoutConfig, matched: &[&Route], current: &[FhirResource], event_id: &str) -> Vec<Output> {
    let mut out = Vec::new();
    let mut hooks: Vec<&str> = matched
        .iter()
        .filter_map(|r| match r.target() {
            Target::Webhook(w) => Some(w),
            Target::Topic(_) => None,
        })
        .collect();
    hooks.sort_unstable();
    hooks.dedup();
    for hook in hooks {
        let routes: Vec<&&Route> = matched.iter().filter(|r| r.target() == Target::Webhook(hook)).collect();
        let wanted = |t: &str| {
            routes.iter().any(|r| r.when.resource_types.is_empty() || r.when.resource_types.iter().any(|w| w == t))
        };
        let topic = cfg.webhook_topic(hook);
        for r in current.iter().filter(|r| wanted(&r.resource_type)) {
            let resource_id = format!("{}/{}", r.resource_type, r.id);
            let mut headers = MessageHeaders::new();
            headers
                .set_message_id(&format!("{resource_id}@{event_id}"))
                .set_content_type(FHIR_JSON_CONTENT_TYPE)
                .set(EVENT_ID, event_id)
                .set(RESOURCE_ID, resource_id.as_str());
            out.push(Output {
                topic: topic.clone(),
                key: Some(resource_id.into_bytes()),
                value: r.fhir_json.clone().into_bytes(),
                headers,
            });
        }
    }
    out
}

/// A delivery record read back by the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<'a> {
    pub body: &'a [u8],
    pub event_id: &'a str,
    pub resource_id: &'a str,
    pub idempotency_key: &'a str,
}

/// Why a record on a delivery topic cannot be sent (it was not written by fan-out, or was
/// altered): dead-lettered at once, as no retry can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("delivery record {0}")]
pub struct InvalidDelivery(&'static str);

impl<'a> Delivery<'a> {
    pub fn from_record(rec: &'a InputRecord) -> Result<Self, InvalidDelivery> {
        let body = rec.value.as_deref().ok_or(InvalidDelivery("has no value"))?;
        let h = &rec.headers;
        Ok(Self {
            body,
            event_id: h.get_str(EVENT_ID).ok_or(InvalidDelivery("lacks the arteria-event-id header"))?,
            resource_id: h.get_str(RESOURCE_ID).ok_or(InvalidDelivery("lacks the arteria-resource-id header"))?,
            idempotency_key: h.message_id().ok_or(InvalidDelivery("lacks the message-id header"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{current_state, tests::event};
    use crate::routes::RouteMatch;

    fn route(name: &str, webhook: &str, types: &[&str]) -> Route {
        Route {
            name: name.into(),
            to: format!("{}{webhook}", crate::routes::WEBHOOK_PREFIX),
            format: Default::default(),
            when: RouteMatch { resource_types: types.iter().map(|s| s.to_string()).collect(), ..Default::default() },
        }
    }

    #[test]
    fn one_record_per_selected_resource_and_webhook() {
        let cfg = FanoutConfig::default();
        let current = current_state(&event(), &cfg.resource_types).unwrap();
        assert_eq!(current.len(), 2, "Patient and Observation (MessageHeader is not current state)");
        let (a, b, c, topic) = (
            route("a", "lab", &["Observation"]),
            route("b", "lab", &["Observation"]),
            route("c", "all", &[]),
            route("d", "x", &[]),
        );
        let topic = Route { to: "route.x.v1".into(), ..topic };
        let out = outputs(&cfg, &[&a, &b, &c, &topic], &current, "ev-1");
        let got: Vec<(&str, &[u8])> = out.iter().map(|o| (o.topic.as_str(), o.key.as_deref().unwrap())).collect();
        assert_eq!(
            got,
            vec![
                ("fanout.webhook.all.v1", &b"Patient/p1"[..]),
                ("fanout.webhook.all.v1", b"Observation/o1"),
                ("fanout.webhook.lab.v1", b"Observation/o1"),
            ],
            "two routes to one webhook send a resource once; topic routes are not webhooks"
        );
        let o = &out[2];
        assert_eq!(o.value, current[1].fhir_json.as_bytes(), "the resolved current state, as sent");
        assert_eq!(o.headers.message_id(), Some("Observation/o1@ev-1"));
        assert_eq!(o.headers.content_type(), Some("application/fhir+json"));

        let rec = InputRecord {
            topic: o.topic.clone(),
            partition: 0,
            offset: 0,
            key: o.key.clone(),
            value: Some(o.value.clone()),
            headers: o.headers.clone(),
            timestamp_ms: None,
        };
        let d = Delivery::from_record(&rec).unwrap();
        assert_eq!((d.event_id, d.resource_id, d.idempotency_key), ("ev-1", "Observation/o1", "Observation/o1@ev-1"));
        let bare = InputRecord { headers: MessageHeaders::new(), ..rec.clone() };
        assert_eq!(
            Delivery::from_record(&bare).unwrap_err().to_string(),
            "delivery record lacks the arteria-event-id header"
        );
        let empty = InputRecord { value: None, ..rec };
        assert_eq!(Delivery::from_record(&empty).unwrap_err(), InvalidDelivery("has no value"));
    }
}
