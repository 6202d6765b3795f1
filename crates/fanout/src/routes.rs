//! Declarative routes: which events go to which subscriber topic, in which format. An
//! integration team adds a feed for a downstream system by adding a rule, not code:
//!
//! ```toml
//! [[fanout.routes]]
//! name = "glucose-to-diabetes-registry"
//! to = "route.diabetes.v1"
//! format = "fhir-json"                        # or "avro" (the ClinicalEvent, the default)
//! when.resource_types = ["Observation"]
//! when.codes = ["http://loinc.org|2345-7", "4548-4"]
//! when.facilities = ["NORTH"]
//! ```
//!
//! Every list in `when` that is not empty must match (any of its values); an empty `when`
//! matches every event.
//!
//! A route may send to a webhook instead of a topic (see [`crate::webhook`]): `webhook = "<name>"`
//! in place of `to`. Each resource of the event that the route selects (its
//! `when.resource_types`, or every current-state resource) is then delivered to that webhook
//! as one FHIR JSON request; `format` does not apply.

use canonical::ClinicalEvent;
use serde::Deserialize;
use serde_json::Value;

/// What a subscriber topic receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RouteFormat {
    /// The `ClinicalEvent` as Avro (subject `<topic>-value`).
    #[default]
    Avro,
    /// A FHIR R4 `collection` Bundle of the event's resources, as JSON.
    FhirJson,
}

/// Conditions on an event.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RouteMatch {
    /// The event holds a resource of one of these types.
    pub resource_types: Vec<String>,
    /// The event type is one of these; a trailing `*` matches a prefix (`hl7v2.adt.*`).
    pub event_types: Vec<String>,
    /// Sending application (MSH-3.1).
    pub senders: Vec<String>,
    /// Sending facility (MSH-4.1).
    pub facilities: Vec<String>,
    /// A resource's code (`code`, `vaccineCode`, `medicationCodeableConcept`) has one of
    /// these codings: `system|code`, or `code` in any system.
    pub codes: Vec<String>,
}

/// One rule.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(try_from = "RouteToml")]
pub struct Route {
    /// Names the route in logs and metrics.
    pub name: String,
    /// The subscriber topic, or `webhook:<name>` for a webhook (what `webhook = "<name>"`
    /// becomes; Kafka topic names cannot hold `:`, so the two never clash). See [`Route::target`].
    pub to: String,
    pub format: RouteFormat,
    pub when: RouteMatch,
}

/// Marks a webhook target in [`Route::to`].
pub const WEBHOOK_PREFIX: &str = "webhook:";

/// Where a route sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Topic(&'a str),
    Webhook(&'a str),
}

impl Route {
    pub fn target(&self) -> Target<'_> {
        match self.to.strip_prefix(WEBHOOK_PREFIX) {
            Some(w) => Target::Webhook(w),
            None => Target::Topic(&self.to),
        }
    }

    /// The subscriber topic, for a topic route.
    pub fn topic(&self) -> Option<&str> {
        match self.target() {
            Target::Topic(t) => Some(t),
            Target::Webhook(_) => None,
        }
    }
}

/// A route as written in TOML: exactly one of `to` and `webhook`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteToml {
    name: String,
    to: Option<String>,
    webhook: Option<String>,
    #[serde(default)]
    format: RouteFormat,
    #[serde(default)]
    when: RouteMatch,
}

impl TryFrom<RouteToml> for Route {
    type Error = String;

    fn try_from(r: RouteToml) -> Result<Self, String> {
        let to = match (r.to, r.webhook) {
            (Some(t), None) => t,
            (None, Some(w)) => format!("{WEBHOOK_PREFIX}{w}"),
            (Some(_), Some(_)) => {
                return Err(format!("route {:?}: give `to` (a topic) or `webhook` (a webhook name), not both", r.name));
            }
            (None, None) => {
                return Err(format!("route {:?}: needs `to` (a topic) or `webhook` (a webhook name)", r.name));
            }
        };
        Ok(Route { name: r.name, to, format: r.format, when: r.when })
    }
}

fn any_or_empty(list: &[String], f: impl Fn(&str) -> bool) -> bool {
    list.is_empty() || list.iter().any(|x| f(x))
}

pub(crate) fn event_type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// Every `system|code` of the resource's main code fields.
fn codings(json: &Value) -> impl Iterator<Item = (Option<&str>, &str)> {
    ["code", "vaccineCode", "medicationCodeableConcept"]
        .into_iter()
        .filter_map(|f| json.get(f)?.get("coding")?.as_array())
        .flatten()
        .filter_map(|c| Some((c.get("system").and_then(Value::as_str), c.get("code")?.as_str()?)))
}

fn code_matches(wanted: &str, system: Option<&str>, code: &str) -> bool {
    match wanted.split_once('|') {
        Some((s, c)) => system == Some(s) && c == code,
        None => wanted == code,
    }
}

impl RouteMatch {
    /// Whether `event` matches. `parsed` holds the event's resources as JSON (parsed once for
    /// every route).
    pub fn matches(&self, event: &ClinicalEvent, parsed: &[Value]) -> bool {
        any_or_empty(&self.event_types, |p| event_type_matches(p, &event.event_type))
            && any_or_empty(&self.senders, |s| s == event.sender.application)
            && any_or_empty(&self.facilities, |f| f == event.sender.facility)
            && any_or_empty(&self.resource_types, |t| event.resources.iter().any(|r| r.resource_type == t))
            && any_or_empty(&self.codes, |w| parsed.iter().flat_map(codings).any(|(s, c)| code_matches(w, s, c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::event;

    fn parsed(e: &ClinicalEvent) -> Vec<Value> {
        e.resources.iter().map(|r| serde_json::from_str(&r.fhir_json).unwrap()).collect()
    }

    fn rule(toml_text: &str) -> Route {
        #[derive(Deserialize)]
        struct W {
            routes: Vec<Route>,
        }
        toml::from_str::<W>(toml_text).unwrap().routes.remove(0)
    }

    #[test]
    fn rules_parse_from_toml_with_defaults() {
        let r = rule("[[routes]]\nname = \"all\"\nto = \"route.all.v1\"\n");
        assert_eq!(r.format, RouteFormat::Avro);
        assert_eq!(r.when, RouteMatch::default());
        let e = event();
        assert!(r.when.matches(&e, &parsed(&e)), "an empty `when` matches everything");
    }

    #[test]
    fn a_route_targets_a_topic_or_a_webhook() {
        let r = rule("[[routes]]\nname = \"h\"\nwebhook = \"lab-portal\"\nwhen.resource_types = [\"Observation\"]\n");
        assert_eq!(r.target(), Target::Webhook("lab-portal"));
        assert_eq!(r.topic(), None);
        let t = rule("[[routes]]\nname = \"t\"\nto = \"route.x.v1\"\n");
        assert_eq!((t.target(), t.topic()), (Target::Topic("route.x.v1"), Some("route.x.v1")));
        let err = |text: &str| {
            #[derive(Debug, Deserialize)]
            #[allow(dead_code)]
            struct W {
                routes: Vec<Route>,
            }
            toml::from_str::<W>(text).unwrap_err().to_string()
        };
        assert!(
            err("[[routes]]\nname = \"b\"\nto = \"t\"\nwebhook = \"w\"\n")
                .contains("route \"b\": give `to` (a topic) or `webhook`")
        );
        assert!(err("[[routes]]\nname = \"n\"\n").contains("route \"n\": needs `to` (a topic) or `webhook`"));
        assert!(err("[[routes]]\nname = \"u\"\nto = \"t\"\nhook = \"w\"\n").contains("unknown field `hook`"));
    }

    #[test]
    fn every_non_empty_condition_must_match() {
        let e = event();
        let p = parsed(&e);
        let r = rule(
            "[[routes]]\nname = \"g\"\nto = \"t\"\nformat = \"fhir-json\"\nwhen.resource_types = [\"Observation\"]\nwhen.codes = [\"http://loinc.org|2345-7\"]\nwhen.facilities = [\"NORTH\"]\nwhen.event_types = [\"hl7v2.oru.*\"]\n",
        );
        assert_eq!(r.format, RouteFormat::FhirJson);
        assert!(r.when.matches(&e, &p));
        let wrong = |f: &dyn Fn(&mut RouteMatch)| {
            let mut m = r.when.clone();
            f(&mut m);
            m.matches(&e, &p)
        };
        assert!(!wrong(&|m| m.facilities = vec!["SOUTH".into()]));
        assert!(!wrong(&|m| m.codes = vec!["http://snomed.info/sct|2345-7".into()]), "system must match when given");
        assert!(wrong(&|m| m.codes = vec!["2345-7".into()]), "bare code matches any system");
        assert!(!wrong(&|m| m.event_types = vec!["hl7v2.adt.*".into()]));
        assert!(!wrong(&|m| m.resource_types = vec!["Immunization".into()]));
        assert!(!wrong(&|m| m.senders = vec!["RIS".into()]));
        assert!(wrong(&|m| m.senders = vec!["RIS".into(), "LAB".into()]), "any value of a list");
    }
}
