//! `[fanout.webhooks.<name>]`: where a webhook sends, how long it waits, how often it retries.
//! Checked once at start-up ([`validate`]) and resolved into a [`ResolvedWebhook`] that holds
//! the secret header values read from the environment, so a bad setting stops the service with
//! a precise message instead of failing deliveries one by one. Secrets never live in the TOML
//! and never reach a log: their header values are marked sensitive (`Debug` prints
//! `Sensitive`), and no error message repeats a header value or the URL.

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The HTTP method of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `POST <url>`.
    #[default]
    Post,
    /// `PUT <url>/<Type>/<id>`: a FHIR update of that resource.
    Put,
}

/// Exponential backoff between attempts, with jitter so many deliveries failing together do
/// not retry in lock step.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// Delay before the first retry. Default 500 ms.
    pub initial_ms: u64,
    /// Longest delay, also the cap on a receiver's `Retry-After`. Default 60 000 ms.
    pub max_ms: u64,
    /// Growth factor per retry (≥ 1). Default 2.
    pub multiplier: f64,
    /// Each delay is spread uniformly over ±`jitter` of itself (0 ≤ jitter ≤ 1). Default 0.2.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial_ms: 500, max_ms: 60_000, multiplier: 2.0, jitter: 0.2 }
    }
}

/// One webhook.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Absolute `http(s)` URL, without credentials (those go in `secret_headers`). Required.
    pub url: String,
    /// Default `POST`.
    pub method: Method,
    /// Static headers sent with every request, e.g. `{ "X-Feed" = "lab" }`.
    pub headers: BTreeMap<String, String>,
    /// Headers whose value is read from an environment variable at start-up:
    /// `{ "Authorization" = "LAB_PORTAL_AUTH" }` sends `Authorization: <$LAB_PORTAL_AUTH>`.
    pub secret_headers: BTreeMap<String, String>,
    /// Time limit of one request, connection to response headers. Default 10 000 ms.
    pub timeout_ms: u64,
    /// Attempts per delivery before it goes to the DLQ (≥ 1). Default 8.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Deliveries in flight at once (1 to 64), each from its own share of the delivery topic's
    /// partitions, so one resource's versions still go in order. Default 1: one at a time, as a
    /// Mirth or Rhapsody queue with one thread; a receiver that answers in 50 ms then takes
    /// ~20 a second, and `concurrency = 6` (the topic's partitions) six times that.
    pub concurrency: u32,
    /// Delivery topic. Default `fanout.webhook.<name>.v1`.
    pub topic: Option<String>,
    /// Consumer group of the webhook's worker. Default `<fanout.group_id>.webhook.<name>`.
    pub group_id: Option<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            method: Method::Post,
            headers: BTreeMap::new(),
            secret_headers: BTreeMap::new(),
            timeout_ms: 10_000,
            max_attempts: 8,
            backoff: Backoff::default(),
            concurrency: 1,
            topic: None,
            group_id: None,
        }
    }
}

/// Most deliveries in flight per webhook (`concurrency`).
pub const MAX_CONCURRENCY: u32 = 64;

/// Headers Arteria sets on every request itself; configuring them would break the contract
/// receivers rely on (content type, deduplication, tracing).
pub const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "idempotency-key",
    "x-arteria-event-id",
    "x-arteria-resource-id",
    "traceparent",
    "tracestate",
    "content-length",
    "host",
];

/// A webhook setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookConfigError {
    #[error(
        "webhook name {0:?}: use 1 to 64 of a-z, 0-9, '-' and '_' (the name is part of topic names and metric labels)"
    )]
    Name(String),
    #[error("route {route:?} names webhook {webhook:?}, but no [fanout.webhooks.{webhook}] table defines it")]
    UnknownWebhook { route: String, webhook: String },
    #[error("webhook {webhook}: url {problem}")]
    Url { webhook: String, problem: &'static str },
    #[error("webhook {webhook}: header {header:?}: {problem}")]
    Header { webhook: String, header: String, problem: &'static str },
    #[error("webhook {webhook}: {field} {rule}")]
    Setting { webhook: String, field: &'static str, rule: &'static str },
    #[error("webhook {webhook}: header {header} reads environment variable {var}, which is not set or not UTF-8")]
    MissingSecret { webhook: String, header: String, var: String },
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A webhook ready to use: URL parsed, headers built (secrets included, marked sensitive).
#[derive(Debug, Clone)]
pub struct ResolvedWebhook {
    pub name: String,
    pub url: Url,
    pub method: Method,
    pub headers: HeaderMap,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub concurrency: u32,
    /// Delivery topic the worker reads.
    pub topic: String,
    /// The worker's consumer group.
    pub group_id: String,
}

impl WebhookConfig {
    /// Checks every setting that does not need the environment.
    pub fn validate(&self, name: &str) -> Result<(), WebhookConfigError> {
        let err = |field, rule| WebhookConfigError::Setting { webhook: name.to_string(), field, rule };
        if !valid_name(name) {
            return Err(WebhookConfigError::Name(name.to_string()));
        }
        self.parse_url(name)?;
        if self.timeout_ms == 0 {
            return Err(err("timeout_ms", "must be at least 1"));
        }
        if self.max_attempts == 0 {
            return Err(err("max_attempts", "must be at least 1"));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(err("concurrency", "must be between 1 and 64"));
        }
        let b = &self.backoff;
        if b.initial_ms == 0 || b.max_ms < b.initial_ms {
            return Err(err("backoff", "needs 1 <= initial_ms <= max_ms"));
        }
        if !(b.multiplier.is_finite() && b.multiplier >= 1.0) {
            return Err(err("backoff.multiplier", "must be a number >= 1"));
        }
        if !(0.0..=1.0).contains(&b.jitter) {
            return Err(err("backoff.jitter", "must be between 0 and 1"));
        }
        for (h, v) in &self.headers {
            header_name(name, h)?;
            HeaderValue::from_str(v).map_err(|_| WebhookConfigError::Header {
                webhook: name.to_string(),
                header: h.clone(),
                problem: "the value has characters a header cannot carry",
            })?;
        }
        for h in self.secret_headers.keys() {
            header_name(name, h)?;
            if self.headers.keys().any(|s| s.eq_ignore_ascii_case(h)) {
                return Err(WebhookConfigError::Header {
                    webhook: name.to_string(),
                    header: h.clone(),
                    problem: "is in both headers and secret_headers",
                });
            }
        }
        Ok(())
    }

    fn parse_url(&self, name: &str) -> Result<Url, WebhookConfigError> {
        let bad = |problem| WebhookConfigError::Url { webhook: name.to_string(), problem };
        if self.url.is_empty() {
            return Err(bad("is required"));
        }
        let url = Url::parse(&self.url).map_err(|_| bad("is not an absolute URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not hold credentials: put them in secret_headers"));
        }
        Ok(url)
    }

    /// Validates and reads the secret headers from the environment through `env`
    /// (`std::env::var` in the service; a map in tests).
    pub fn resolve(
        &self,
        name: &str,
        fanout_group: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ResolvedWebhook, WebhookConfigError> {
        self.validate(name)?;
        let mut headers = HeaderMap::new();
        for (h, v) in &self.headers {
            // Both checked by validate.
            headers.insert(header_name(name, h)?, HeaderValue::from_str(v).expect("validated"));
        }
        for (h, var) in &self.secret_headers {
            let missing =
                || WebhookConfigError::MissingSecret { webhook: name.to_string(), header: h.clone(), var: var.clone() };
            let value = env(var).ok_or_else(missing)?;
            let mut value = HeaderValue::from_str(value.trim()).map_err(|_| WebhookConfigError::Header {
                webhook: name.to_string(),
                header: h.clone(),
                problem: "the environment variable's value has characters a header cannot carry",
            })?;
            value.set_sensitive(true);
            headers.insert(header_name(name, h)?, value);
        }
        Ok(ResolvedWebhook {
            name: name.to_string(),
            url: self.parse_url(name)?,
            method: self.method,
            headers,
            timeout: Duration::from_millis(self.timeout_ms),
            max_attempts: self.max_attempts,
            backoff: self.backoff.clone(),
            concurrency: self.concurrency,
            topic: self.topic.clone().unwrap_or_else(|| default_topic(name)),
            group_id: self.group_id.clone().unwrap_or_else(|| format!("{fanout_group}.webhook.{name}")),
        })
    }
}

/// `fanout.webhook.<name>.v1`.
pub fn default_topic(name: &str) -> String {
    format!("fanout.webhook.{name}.v1")
}

fn header_name(webhook: &str, h: &str) -> Result<HeaderName, WebhookConfigError> {
    let bad = |problem| WebhookConfigError::Header { webhook: webhook.to_string(), header: h.to_string(), problem };
    let n = HeaderName::from_bytes(h.as_bytes()).map_err(|_| bad("is not a valid header name"))?;
    if RESERVED_HEADERS.contains(&n.as_str()) {
        return Err(bad("is set by Arteria on every request and cannot be configured"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<String, WebhookConfig>, String> {
        #[derive(Deserialize)]
        struct W {
            webhooks: BTreeMap<String, WebhookConfig>,
        }
        toml::from_str::<W>(text).map(|w| w.webhooks).map_err(|e| e.to_string())
    }

    fn one(text: &str) -> WebhookConfig {
        parse(text).unwrap().into_values().next().unwrap()
    }

    #[test]
    fn parses_with_defaults_and_resolves_secrets_from_the_environment() {
        let w = one(
            "[webhooks.lab-portal]\nurl = \"https://portal.example.org/fhir/inbox\"\nheaders = { X-Feed = \"lab\" }\nsecret_headers = { Authorization = \"LAB_AUTH\" }\n",
        );
        assert_eq!((w.method, w.timeout_ms, w.max_attempts, w.concurrency), (Method::Post, 10_000, 8, 1));
        assert_eq!(w.backoff, Backoff::default());
        let r = w
            .resolve("lab-portal", "arteria-fanout", |v| (v == "LAB_AUTH").then(|| "Bearer s3cret".to_string()))
            .unwrap();
        assert_eq!(r.topic, "fanout.webhook.lab-portal.v1");
        assert_eq!(r.group_id, "arteria-fanout.webhook.lab-portal");
        assert_eq!(r.headers["x-feed"], "lab");
        assert_eq!(r.headers["authorization"], "Bearer s3cret");
        assert!(r.headers["authorization"].is_sensitive());
        assert!(!format!("{r:?}").contains("s3cret"), "a secret never shows in Debug output");
    }

    #[test]
    fn a_missing_secret_names_the_variable_not_a_value() {
        let w = one("[webhooks.h]\nurl = \"http://127.0.0.1:9/x\"\nsecret_headers = { Authorization = \"NOPE\" }\n");
        let e = w.resolve("h", "g", |_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "webhook h: header Authorization reads environment variable NOPE, which is not set or not UTF-8"
        );
    }

    #[test]
    fn bad_settings_are_refused_precisely() {
        let e = |text: &str, name: &str| one(text).validate(name).unwrap_err().to_string();
        assert_eq!(e("[webhooks.a]\nmethod = \"PUT\"\n", "a"), "webhook a: url is required");
        assert_eq!(e("[webhooks.a]\nurl = \"ftp://x/y\"\n", "a"), "webhook a: url must be http or https");
        assert_eq!(e("[webhooks.a]\nurl = \"/relative\"\n", "a"), "webhook a: url is not an absolute URL");
        assert!(e("[webhooks.a]\nurl = \"https://u:p@x/\"\n", "a").contains("must not hold credentials"));
        let ok = "url = \"http://x/\"\n";
        assert_eq!(
            e(&format!("[webhooks.a]\n{ok}max_attempts = 0\n"), "a"),
            "webhook a: max_attempts must be at least 1"
        );
        for n in [0, 65] {
            assert_eq!(
                e(&format!("[webhooks.a]\n{ok}concurrency = {n}\n"), "a"),
                "webhook a: concurrency must be between 1 and 64"
            );
        }
        assert_eq!(one(&format!("[webhooks.a]\n{ok}concurrency = 64\n")).validate("a"), Ok(()));
        assert!(
            e(&format!("[webhooks.a]\n{ok}backoff = {{ initial_ms = 10, max_ms = 5 }}\n"), "a")
                .contains("initial_ms <= max_ms")
        );
        assert!(e(&format!("[webhooks.a]\n{ok}backoff.multiplier = 0.5\n"), "a").contains("multiplier must be"));
        assert!(e(&format!("[webhooks.a]\n{ok}backoff.jitter = 1.5\n"), "a").contains("jitter must be"));
        assert!(
            e(&format!("[webhooks.a]\n{ok}headers = {{ Idempotency-Key = \"x\" }}\n"), "a").contains("set by Arteria")
        );
        assert!(e(&format!("[webhooks.a]\n{ok}headers = {{ \"bad header\" = \"x\" }}\n"), "a").contains("not a valid"));
        assert!(e(&format!("[webhooks.A]\n{ok}"), "A").contains("webhook name \"A\""));
        assert!(
            e(&format!("[webhooks.a]\n{ok}headers = {{ Authorization = \"x\" }}\nsecret_headers = {{ authorization = \"V\" }}\n"), "a")
                .contains("both headers and secret_headers")
        );
        // Unknown keys and wrong types are the TOML reader's errors, naming the key.
        assert!(parse("[webhooks.a]\nurl = \"http://x/\"\nretries = 3\n").unwrap_err().contains("retries"));
        assert!(parse("[webhooks.a]\nurl = \"http://x/\"\nmethod = \"GET\"\n").unwrap_err().contains("GET"));
    }
}
