//! A FHIR R4 RESTful read and search facade over the same service the gRPC API uses, for
//! tools that speak FHIR (SMART apps, analysts' notebooks, FHIR test clients) rather than gRPC.
//!
//! Every request is turned into the matching gRPC request and handed to [`QueryService`], so
//! validation, paging and the audit trail are the gRPC ones, written once. Searches answer a
//! `searchset` Bundle with a `next` link; errors answer an `OperationOutcome` with the HTTP
//! status FHIR expects. Unknown search parameters are refused (400) rather than ignored: a
//! silently ignored filter returns more PHI than the caller asked for.
//!
//! Supported: `GET /fhir/metadata`, `GET /fhir/{type}/{id}`, and searches
//! `Patient?identifier=&name=&birthdate=`, `Observation?patient=&code=&date=`,
//! `Encounter?patient=`, `DiagnosticReport?patient=` (with `patient.identifier=` instead of
//! `patient=`), each with `_count` and `_page_token`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::server::TcpConnectInfo;
use tonic::{Code, Request, Status};

use crate::audit::PURPOSE_HEADER;
use crate::proto::{
    self, GetResourceRequest, ListByPatientRequest, ListObservationsRequest, Page, SearchPatientsRequest,
    query_server::Query,
};
use crate::service::QueryService;

const FHIR_JSON: &str = "application/fhir+json";

/// The facade's routes under `/fhir`, answering from `service`.
pub fn router(service: QueryService) -> Router {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir/{resource_type}", get(search))
        .route("/fhir/{resource_type}/{id}", get(read))
        .with_state(service)
}

/// Serves the facade on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: QueryService,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(service).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// A gRPC request carrying what the audit trail reads: the caller's address, declared purpose
/// of use and trace context.
fn grpc_request<T>(peer: SocketAddr, headers: &HeaderMap, message: T) -> Request<T> {
    let mut metadata = MetadataMap::new();
    for name in ["authorization", PURPOSE_HEADER, "traceparent"] {
        if let Some(v) =
            headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<MetadataValue<_>>().ok())
        {
            metadata.insert(name, v);
        }
    }
    let mut extensions = tonic::Extensions::new();
    extensions.insert(TcpConnectInfo { local_addr: None, remote_addr: Some(peer) });
    Request::from_parts(metadata, extensions, message)
}

/// A refused request: HTTP status, FHIR issue code and diagnostics, answered as an
/// `OperationOutcome`.
struct Refusal(StatusCode, &'static str, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let Refusal(status, code, diagnostics) = self;
        let body = json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]
        });
        let mut r = (status, [(header::CONTENT_TYPE, FHIR_JSON)], body.to_string()).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        r
    }
}

fn outcome(status: StatusCode, code: &'static str, diagnostics: &str) -> Refusal {
    Refusal(status, code, diagnostics.to_string())
}

fn from_status(s: &Status) -> Refusal {
    let (http, code) = match s.code() {
        Code::InvalidArgument | Code::OutOfRange => (StatusCode::BAD_REQUEST, "invalid"),
        Code::NotFound => (StatusCode::NOT_FOUND, "not-found"),
        Code::FailedPrecondition => (StatusCode::CONFLICT, "multiple-matches"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "throttled"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "transient"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "forbidden"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "login"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "exception"),
    };
    outcome(http, code, s.message())
}

fn bad_request(msg: &str) -> Refusal {
    outcome(StatusCode::BAD_REQUEST, "invalid", msg)
}

fn fhir(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, FHIR_JSON)], body).into_response()
}

async fn metadata(headers: HeaderMap) -> Response {
    let search = |params: &[(&str, &str)]| -> Vec<Value> {
        params.iter().map(|(name, ty)| json!({"name": name, "type": ty})).collect()
    };
    let resource = |ty: &str, params: Vec<Value>| json!({"type": ty, "interaction": [{"code": "read"}, {"code": "search-type"}], "searchParam": params});
    let by_patient = || search(&[("patient", "reference"), ("patient.identifier", "token")]);
    let mut observation = by_patient();
    observation.extend(search(&[("code", "token"), ("date", "date")]));
    let body = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "kind": "instance",
        "software": {"name": "Arteria query", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Arteria FHIR read and search facade", "url": base_url(&headers)},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "resource": [
                resource("Patient", search(&[("identifier", "token"), ("name", "string"), ("birthdate", "date")])),
                resource("Observation", observation),
                resource("Encounter", by_patient()),
                resource("DiagnosticReport", by_patient()),
            ]
        }]
    });
    fhir(StatusCode::OK, body.to_string())
}

async fn read(
    State(service): State<QueryService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let req = grpc_request(peer, &headers, GetResourceRequest { resource_type, id });
    match service.get_resource(req).await {
        Ok(r) => fhir(StatusCode::OK, r.into_inner().json),
        Err(s) => from_status(&s).into_response(),
    }
}

/// The search parameters of one request, in order, decoded.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>) -> Params {
        Params(form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    /// Refuses parameters this type does not support.
    fn check(&self, supported: &[&str]) -> Result<(), Refusal> {
        match self.0.iter().find(|(k, _)| !supported.contains(&k.as_str())) {
            Some((k, _)) => Err(bad_request(&format!(
                "search parameter {k:?} is not supported here; supported: {}",
                supported.join(", ")
            ))),
            None => Ok(()),
        }
    }

    fn one(&self, name: &str) -> Result<Option<&str>, Refusal> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(bad_request(&format!("search parameter {name:?} is given more than once")));
        }
        Ok(first)
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn page(&self) -> Result<Option<Page>, Refusal> {
        let size = match self.one("_count")? {
            Some(c) => c.parse::<u32>().map_err(|_| bad_request(&format!("_count {c:?} is not a whole number")))?,
            None => 0,
        };
        let token = self.one("_page_token")?.unwrap_or_default().to_string();
        Ok(Some(Page { size, token }))
    }
}

/// `system|value` or `value` as a gRPC identifier.
fn identifier(token: &str) -> proto::Identifier {
    match token.split_once('|') {
        Some((system, value)) => proto::Identifier { system: system.into(), value: value.into() },
        None => proto::Identifier { system: String::new(), value: token.into() },
    }
}

/// The patient a per-patient search names: `patient=[Patient/]id` or `patient.identifier=`.
enum PatientParam {
    Id(String),
    Identifier(proto::Identifier),
}

fn patient_param(p: &Params) -> Result<PatientParam, Refusal> {
    match (p.one("patient")?, p.one("patient.identifier")?) {
        (Some(_), Some(_)) => Err(bad_request("give patient or patient.identifier, not both")),
        (Some(r), None) => Ok(PatientParam::Id(r.strip_prefix("Patient/").unwrap_or(r).to_string())),
        (None, Some(t)) => Ok(PatientParam::Identifier(identifier(t))),
        (None, None) => Err(bad_request("give patient=[Patient/]id or patient.identifier=[system|]value")),
    }
}

/// `date=geX`, `date=leX`, or `date=X` (the whole of X) as the from/to of ListObservations.
fn date_range(p: &Params) -> Result<(String, String), Refusal> {
    let (mut from, mut to) = (String::new(), String::new());
    for d in p.all("date") {
        let (prefix, value) = match d.get(..2) {
            Some(pre) if pre.bytes().all(|b| b.is_ascii_lowercase()) => (pre, &d[2..]),
            _ => ("eq", d),
        };
        let slot = |s: &mut String| {
            if s.is_empty() {
                *s = value.to_string();
                Ok(())
            } else {
                Err(bad_request("date gives the same bound twice"))
            }
        };
        match prefix {
            "ge" => slot(&mut from)?,
            "le" => slot(&mut to)?,
            "eq" => {
                slot(&mut from)?;
                slot(&mut to)?;
            }
            other => {
                return Err(bad_request(&format!(
                    "date prefix {other:?} is not supported; use ge, le or none (the whole date)"
                )));
            }
        }
    }
    Ok((from, to))
}

async fn search(
    State(service): State<QueryService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let p = Params::parse(query.as_deref());
    let answer = match run_search(&service, peer, &headers, &resource_type, &p).await {
        Ok(list) => list,
        Err(r) => return r.into_response(),
    };
    fhir(StatusCode::OK, bundle(&headers, &resource_type, &p, answer))
}

async fn run_search(
    service: &QueryService,
    peer: SocketAddr,
    headers: &HeaderMap,
    resource_type: &str,
    p: &Params,
) -> Result<proto::ResourceList, Refusal> {
    const PAGING: [&str; 2] = ["_count", "_page_token"];
    let with_paging = |names: &[&'static str]| -> Vec<&'static str> { names.iter().chain(&PAGING).copied().collect() };
    let answered = match resource_type {
        "Patient" => {
            p.check(&with_paging(&["identifier", "name", "birthdate"]))?;
            let req = SearchPatientsRequest {
                name: p.one("name")?.unwrap_or_default().into(),
                birth_date: p.one("birthdate")?.unwrap_or_default().into(),
                identifier: p.one("identifier")?.map(identifier),
                page: p.page()?,
            };
            service.search_patients(grpc_request(peer, headers, req)).await
        }
        "Observation" => {
            p.check(&with_paging(&["patient", "patient.identifier", "code", "date"]))?;
            use proto::list_observations_request::Patient;
            let patient = match patient_param(p)? {
                PatientParam::Id(id) => Patient::PatientId(id),
                PatientParam::Identifier(i) => Patient::PatientIdentifier(i),
            };
            // FHIR: a comma means OR, repeating the parameter means AND; codes only OR here.
            if p.all("code").count() > 1 {
                return Err(bad_request("give code once, with alternatives separated by commas"));
            }
            let codes = p.all("code").flat_map(|c| c.split(',')).map(str::to_string).collect();
            let (from, to) = date_range(p)?;
            let req = ListObservationsRequest { patient: Some(patient), codes, from, to, page: p.page()? };
            service.list_observations(grpc_request(peer, headers, req)).await
        }
        "Encounter" | "DiagnosticReport" => {
            p.check(&with_paging(&["patient", "patient.identifier"]))?;
            use proto::list_by_patient_request::Patient;
            let patient = match patient_param(p)? {
                PatientParam::Id(id) => Patient::PatientId(id),
                PatientParam::Identifier(i) => Patient::PatientIdentifier(i),
            };
            let req = grpc_request(peer, headers, ListByPatientRequest { patient: Some(patient), page: p.page()? });
            if resource_type == "Encounter" {
                service.list_encounters(req).await
            } else {
                service.list_diagnostic_reports(req).await
            }
        }
        other => {
            return Err(outcome(
                StatusCode::NOT_FOUND,
                "not-supported",
                &format!("search on {other:?} is not supported; see /fhir/metadata"),
            ));
        }
    };
    answered.map(tonic::Response::into_inner).map_err(|s| from_status(&s))
}

/// `http://<host>/fhir`, from the request's Host header (the facade may sit behind a proxy
/// that sets it).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}/fhir")
}

/// The searchset Bundle; resources are embedded as stored (already FHIR JSON), not re-parsed.
fn bundle(headers: &HeaderMap, resource_type: &str, p: &Params, list: proto::ResourceList) -> String {
    let base = base_url(headers);
    let query_without_token = || {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in p.0.iter().filter(|(k, _)| k != "_page_token") {
            s.append_pair(k, v);
        }
        s.finish()
    };
    let own = query_without_token();
    let mut links = vec![json!({"relation": "self", "url": format!("{base}/{resource_type}?{own}")})];
    if !list.next_page_token.is_empty() {
        let mut next = form_urlencoded::Serializer::new(own.clone());
        next.append_pair("_page_token", &list.next_page_token);
        links.push(json!({"relation": "next", "url": format!("{base}/{resource_type}?{}", next.finish())}));
    }
    let entries: Vec<Value> = list
        .resources
        .iter()
        .filter_map(|r| {
            // Stored JSON is FHIR JSON written by fan-out; a row that is not JSON would be a
            // store defect, and is left out rather than breaking the whole Bundle.
            let raw = RawValue::from_string(r.json.clone()).ok()?;
            Some(json!({
                "fullUrl": format!("{base}/{}/{}", r.resource_type, r.id),
                "resource": raw,
                "search": {"mode": "match"}
            }))
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::Shutdown;
    use canonical::current::FhirResource;
    use std::sync::Arc;

    fn rec(rt: &str, id: &str, patient: &str, j: Value) -> FhirResource {
        FhirResource {
            id: id.into(),
            resource_type: rt.into(),
            tenant: "t".into(),
            patient_id: Some(patient.into()),
            source_event_id: "e".into(),
            event_type: "x".into(),
            occurred_at: 1,
            fhir_json: j.to_string(),
        }
    }

    /// A facade on 127.0.0.1:0 over a store with one patient and three glucose results.
    async fn facade() -> (tempfile::TempDir, String, Shutdown) {
        facade_with(crate::auth::Authenticator::none()).await
    }

    async fn facade_with(auth: crate::auth::Authenticator) -> (tempfile::TempDir, String, Shutdown) {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::Store::open(d.path(), 8).unwrap());
        let patient = json!({"resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "urn:mrn", "value": "M-1"}], "name": [{"family": "Test", "given": ["Rest"]}],
            "birthDate": "1980-05-06"});
        store.upsert(&rec("Patient", "p1", "p1", patient)).unwrap();
        for (i, day) in ["2025-01-01", "2025-02-01", "2025-03-01"].iter().enumerate() {
            let obs = json!({"resourceType": "Observation", "id": format!("o{i}"), "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": format!("{day}T08:00:00Z"),
                "valueQuantity": {"value": 90 + i, "unit": "mg/dL"}});
            store.upsert(&rec("Observation", &format!("o{i}"), "p1", obs)).unwrap();
        }
        let shutdown = Shutdown::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/fhir", listener.local_addr().unwrap());
        let stop = shutdown.clone();
        let svc = QueryService::new(store, shutdown.clone()).with_authenticator(auth);
        tokio::spawn(serve(listener, svc, async move { stop.wait().await }));
        (d, base, shutdown)
    }

    async fn get(url: &str) -> (u16, Value) {
        let r = reqwest::get(url).await.unwrap();
        let status = r.status().as_u16();
        assert_eq!(r.headers()[header::CONTENT_TYPE.as_str()], FHIR_JSON);
        (status, r.json().await.unwrap())
    }

    #[tokio::test]
    async fn reads_and_searches_answer_fhir() {
        let (_d, base, shutdown) = facade().await;
        let (s, p) = get(&format!("{base}/Patient/p1")).await;
        assert_eq!((s, p["name"][0]["family"].as_str()), (200, Some("Test")));

        let (s, b) = get(&format!("{base}/Patient?identifier=urn:mrn%7CM-1")).await;
        assert_eq!(
            (s, b["type"].as_str(), b["entry"][0]["resource"]["id"].as_str()),
            (200, Some("searchset"), Some("p1"))
        );
        assert!(b["entry"][0]["fullUrl"].as_str().unwrap().ends_with("/fhir/Patient/p1"));

        // Paging: two per page, the next link leads to the third.
        let (_, page1) =
            get(&format!("{base}/Observation?patient=Patient/p1&code=http://loinc.org|2345-7&_count=2")).await;
        assert_eq!(page1["entry"].as_array().unwrap().len(), 2);
        let next = page1["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, page2) = get(&next).await;
        assert_eq!(page2["entry"].as_array().unwrap().len(), 1);
        assert!(page2["link"].as_array().unwrap().iter().all(|l| l["relation"] != "next"));

        // A date range by patient identifier.
        let (_, feb) =
            get(&format!("{base}/Observation?patient.identifier=urn:mrn%7CM-1&date=ge2025-01-15&date=le2025-02-28"))
                .await;
        let ids: Vec<&str> =
            feb["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["o1"]);

        let (s, cap) = get(&format!("{base}/metadata")).await;
        assert_eq!(
            (s, cap["resourceType"].as_str(), cap["fhirVersion"].as_str()),
            (200, Some("CapabilityStatement"), Some("4.0.1"))
        );
        shutdown.trigger();
    }

    #[tokio::test]
    async fn tokens_and_smart_scopes_decide_what_leaves() {
        use crate::auth::tests::{Issuer, authenticator, claims};
        let idp = Issuer::new("k1");
        let (_d, base, shutdown) = facade_with(authenticator(&[&idp])).await;
        let http = reqwest::Client::new();
        let call = |url: String, token: Option<String>| {
            let mut r = http.get(url);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            async move {
                let r = r.send().await.unwrap();
                let (s, h) = (r.status().as_u16(), r.headers().get("www-authenticate").cloned());
                (s, h, r.json::<Value>().await.unwrap())
            }
        };
        let (s, challenge, o) = call(format!("{base}/Patient/p1"), None).await;
        assert_eq!((s, o["issue"][0]["code"].as_str()), (401, Some("login")));
        assert_eq!(challenge.unwrap(), "Bearer");

        let mut own = claims("patient/*.read");
        own["patient"] = json!("p1");
        let (s, _, p) = call(format!("{base}/Patient/p1"), Some(idp.token(own.clone()))).await;
        assert_eq!((s, p["id"].as_str()), (200, Some("p1")));
        let (s, _, b) = call(format!("{base}/Observation?patient=p1"), Some(idp.token(own.clone()))).await;
        assert_eq!((s, b["entry"].as_array().map(Vec::len)), (200, Some(3)));

        let mut other = own.clone();
        other["patient"] = json!("p2");
        let (s, _, o) = call(format!("{base}/Observation?patient=p1"), Some(idp.token(other))).await;
        assert_eq!((s, o["issue"][0]["code"].as_str()), (403, Some("forbidden")));
        let (s, _, _) = call(format!("{base}/Patient/p1"), Some(idp.token(claims("user/Observation.read")))).await;
        assert_eq!(s, 403);
        shutdown.trigger();
    }

    #[tokio::test]
    async fn errors_are_operation_outcomes_with_fhir_statuses() {
        let (_d, base, shutdown) = facade().await;
        for (url, status, code, says) in [
            (format!("{base}/Patient/nobody"), 404, "not-found", "Patient/nobody not found"),
            (format!("{base}/Observation?subject=p1"), 400, "invalid", "\"subject\" is not supported"),
            (format!("{base}/Observation?code=x"), 400, "invalid", "give patient="),
            (format!("{base}/Observation?patient=p1&date=gt2025"), 400, "invalid", "prefix \"gt\""),
            (format!("{base}/Patient?_count=ten&name=x"), 400, "invalid", "_count"),
            (format!("{base}/Patient"), 400, "invalid", "at least one of"),
            (format!("{base}/Medication?patient=p1"), 404, "not-supported", "not supported"),
            (format!("{base}/Observation?patient=p1&_page_token=garbage"), 400, "invalid", "page.token"),
        ] {
            let (s, o) = get(&url).await;
            assert_eq!(s, status, "{url}: {o}");
            assert_eq!(o["resourceType"], "OperationOutcome", "{url}");
            assert_eq!(o["issue"][0]["code"], code, "{url}: {o}");
            let diag = o["issue"][0]["diagnostics"].as_str().unwrap();
            assert!(diag.contains(says), "{url}: {diag}");
        }
        shutdown.trigger();
    }
}
