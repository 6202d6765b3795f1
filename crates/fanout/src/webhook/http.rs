//! One HTTP attempt of one delivery: the request a receiver gets (one FHIR JSON resource,
//! `Content-Type: application/fhir+json`, the ids and idempotency key as headers, a
//! `traceparent` continuing the resource's trace) and what its answer means. Redirects are not
//! followed: a POST silently turned into a GET elsewhere is worse than a clear dead letter.

use crate::webhook::config::{Method, ResolvedWebhook};
use crate::webhook::retry::{Failure, delivered_status, parse_retry_after};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use std::time::{Duration, SystemTime};

/// `X-Arteria-Event-Id`: the event that produced this version of the resource.
pub const EVENT_ID_HEADER: &str = "x-arteria-event-id";
/// `X-Arteria-Resource-Id`: `<Type>/<id>`.
pub const RESOURCE_ID_HEADER: &str = "x-arteria-resource-id";
/// `Idempotency-Key`: `<Type>/<id>@<event id>`, the same on every attempt and after a restart.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The FHIR resource, JSON.
    pub body: &'a [u8],
    pub event_id: &'a str,
    /// `<Type>/<id>`.
    pub resource_id: &'a str,
    pub idempotency_key: &'a str,
    pub traceparent: String,
    pub tracestate: Option<&'a str>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Delivered { status: u16 },
    /// Did not deliver; `retry_after` is the receiver's `Retry-After`, when it gave one.
    Failed { failure: Failure, retry_after: Option<Duration> },
}

#[derive(Debug, thiserror::Error)]
#[error("webhook {webhook}: cannot build the HTTP client: {detail}")]
pub struct ClientError {
    webhook: String,
    detail: String,
}

/// Sends the requests of one webhook. Cheap to clone (pooled connections are shared).
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    hook: ResolvedWebhook,
}

impl Sender {
    pub fn new(hook: ResolvedWebhook) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .timeout(hook.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("arteria-fanout/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError { webhook: hook.name.clone(), detail: e.to_string() })?;
        Ok(Self { client, hook })
    }

    pub fn webhook(&self) -> &ResolvedWebhook {
        &self.hook
    }

    /// The URL a delivery goes to: the configured one for POST, `<url>/<Type>/<id>` for PUT.
    pub fn url_for(&self, resource_id: &str) -> reqwest::Url {
        match self.hook.method {
            Method::Post => self.hook.url.clone(),
            Method::Put => {
                let mut u = self.hook.url.clone();
                if let Ok(mut segments) = u.path_segments_mut() {
                    segments.pop_if_empty().extend(resource_id.split('/'));
                }
                u
            }
        }
    }

    /// The headers of a request: configured ones, then Arteria's (which configuration cannot
    /// override; see `RESERVED_HEADERS`).
    pub fn headers_for(&self, req: &Request<'_>) -> HeaderMap {
        let mut h = self.hook.headers.clone();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(crate::processor::FHIR_JSON_CONTENT_TYPE));
        let mut put = |name: &'static str, v: &str| {
            // Ids are ASCII by construction; a value that is not is left out rather than sent mangled.
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(name, v);
            }
        };
        put(EVENT_ID_HEADER, req.event_id);
        put(RESOURCE_ID_HEADER, req.resource_id);
        put(IDEMPOTENCY_KEY_HEADER, req.idempotency_key);
        put("traceparent", &req.traceparent);
        if let Some(ts) = req.tracestate {
            put("tracestate", ts);
        }
        h
    }

    /// Makes one attempt. The response body is never read (it may echo PHI and nothing here
    /// needs it).
    pub async fn attempt(&self, req: &Request<'_>) -> Attempt {
        let method = match self.hook.method {
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        let sent = self
            .client
            .request(method, self.url_for(req.resource_id))
            .headers(self.headers_for(req))
            .body(req.body.to_vec())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if delivered_status(status) {
                    return Attempt::Delivered { status };
                }
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                Attempt::Failed { failure: Failure::Status(status), retry_after }
            }
            Err(e) if e.is_timeout() => Attempt::Failed { failure: Failure::Timeout, retry_after: None },
            Err(e) if e.is_connect() => Attempt::Failed { failure: Failure::Connect, retry_after: None },
            Err(_) => Attempt::Failed { failure: Failure::Transport, retry_after: None },
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a real HTTP server on 127.0.0.1 (axum), no Kafka.
    use super::*;
    use crate::webhook::config::WebhookConfig;
    use axum::extract::State;
    use axum::http::{HeaderMap as AxHeaders, StatusCode};
    use axum::response::IntoResponse;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(String, String, AxHeaders, Vec<u8>)>>>;

    /// Serves `answer` for every request and records what it got.
    async fn server(answer: fn() -> axum::response::Response) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .fallback(
                move |State(s): State<Seen>,
                      m: axum::http::Method,
                      uri: axum::http::Uri,
                      h: AxHeaders,
                      body: axum::body::Bytes| async move {
                    s.lock().unwrap().push((m.to_string(), uri.path().to_string(), h, body.to_vec()));
                    answer()
                },
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/hook/"), seen)
    }

    fn sender(url: &str, method: Method, timeout_ms: u64) -> Sender {
        let cfg = WebhookConfig {
            url: url.into(),
            method,
            timeout_ms,
            headers: BTreeMap::from([("X-Feed".into(), "lab".into())]),
            secret_headers: BTreeMap::from([("Authorization".into(), "TOKEN".into())]),
            ..Default::default()
        };
        Sender::new(cfg.resolve("t", "g", |_| Some("Bearer abc".into())).unwrap()).unwrap()
    }

    fn req(body: &[u8]) -> Request<'_> {
        Request {
            body,
            event_id: "ev-1",
            resource_id: "Observation/o1",
            idempotency_key: "Observation/o1@ev-1",
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            tracestate: Some("v=1"),
        }
    }

    #[tokio::test]
    async fn sends_the_resource_with_its_headers() {
        let (url, seen) = server(|| (StatusCode::CREATED, "").into_response()).await;
        let out = sender(&url, Method::Post, 5_000).attempt(&req(br#"{"resourceType":"Observation"}"#)).await;
        assert_eq!(out, Attempt::Delivered { status: 201 });
        let seen = seen.lock().unwrap();
        let (m, path, h, body) = &seen[0];
        assert_eq!((m.as_str(), path.as_str()), ("POST", "/hook/"));
        assert_eq!(body, br#"{"resourceType":"Observation"}"#);
        assert_eq!(h["content-type"], "application/fhir+json");
        assert_eq!(h["x-arteria-event-id"], "ev-1");
        assert_eq!(h["x-arteria-resource-id"], "Observation/o1");
        assert_eq!(h["idempotency-key"], "Observation/o1@ev-1");
        assert_eq!(h["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert_eq!(h["tracestate"], "v=1");
        assert_eq!(h["authorization"], "Bearer abc");
        assert_eq!(h["x-feed"], "lab");
    }

    #[tokio::test]
    async fn put_addresses_the_resource() {
        let (url, seen) = server(|| (StatusCode::OK, "").into_response()).await;
        let out = sender(&url, Method::Put, 5_000).attempt(&req(b"{}")).await;
        assert_eq!(out, Attempt::Delivered { status: 200 });
        let seen = seen.lock().unwrap();
        assert_eq!((seen[0].0.as_str(), seen[0].1.as_str()), ("PUT", "/hook/Observation/o1"));
    }

    #[tokio::test]
    async fn status_and_retry_after_come_back() {
        let (url, _) = server(|| (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")], "busy").into_response()).await;
        let out = sender(&url, Method::Post, 5_000).attempt(&req(b"{}")).await;
        assert_eq!(out, Attempt::Failed { failure: Failure::Status(429), retry_after: Some(Duration::from_secs(7)) });
        let (url, _) = server(|| (StatusCode::UNPROCESSABLE_ENTITY, "no").into_response()).await;
        let out = sender(&url, Method::Post, 5_000).attempt(&req(b"{}")).await;
        assert_eq!(out, Attempt::Failed { failure: Failure::Status(422), retry_after: None });
        assert!(!Failure::Status(422).is_retriable());
        let (url, _) =
            server(|| (StatusCode::PERMANENT_REDIRECT, [("location", "http://127.0.0.1:9/")], "").into_response())
                .await;
        let out = sender(&url, Method::Post, 5_000).attempt(&req(b"{}")).await;
        assert_eq!(out, Attempt::Failed { failure: Failure::Status(308), retry_after: None }, "not followed");
    }

    #[tokio::test]
    async fn refused_connections_and_silent_receivers_are_retriable_failures() {
        // A port just released by a listener: nothing accepts there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = sender(&format!("http://127.0.0.1:{port}/"), Method::Post, 5_000).attempt(&req(b"{}")).await;
        assert_eq!(out, Attempt::Failed { failure: Failure::Connect, retry_after: None });

        // Accepts the connection, never answers: the attempt ends by its timeout.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (_sock, _) = silent.accept().await.unwrap();
            std::future::pending::<()>().await
        });
        let out = sender(&format!("http://{addr}/"), Method::Post, 200).attempt(&req(b"{}")).await;
        assert_eq!(out, Attempt::Failed { failure: Failure::Timeout, retry_after: None });
        hold.abort();
    }
}
