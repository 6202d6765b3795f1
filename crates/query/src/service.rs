//! The gRPC `arteria.query.v1.Query` service over the [`Store`].
//!
//! Requests are validated here into precise INVALID_ARGUMENT / NOT_FOUND answers; the store
//! calls run on the blocking pool. Every read of PHI goes through the [`Auditor`] before the
//! answer leaves: an `AuditEvent` per resource on `audit.v1` (fail closed) and an `audit` log
//! line with the ids (ids are not PHI; names, identifiers and JSON never reach a log).

use std::pin::Pin;
use std::sync::Arc;

use bus::Shutdown;
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use canonical::AuditAction;

use crate::audit::{Auditor, Caller};
use crate::auth::Authenticator;
use crate::index::is_date_prefix;
use crate::paging;
use crate::proto::{
    self, GetPatientRequest, GetResourceRequest, ListByPatientRequest, ListObservationsRequest, Resource, ResourceList,
    SearchPatientsRequest, WatchPatientRequest, query_server::Query,
};
use crate::store::{CodeFilter, ListFilter, PageOf, PageReq, PatientSearch, Store, StoreError, StoredResource};
use crate::time;

/// Field names of the `patient` oneof, for error messages.
const PATIENT: (&str, &str) = ("patient_id", "patient_identifier");

/// The query service.
#[derive(Clone)]
pub struct QueryService {
    store: Arc<Store>,
    shutdown: Shutdown,
    auditor: Auditor,
    auth: Authenticator,
}

impl QueryService {
    /// Serves `store`; open watch streams end when `shutdown` triggers, so a graceful server
    /// stop does not wait for clients that never hang up.
    /// Reads are audited to the log only until [`QueryService::with_auditor`] sets a sink.
    pub fn new(store: Arc<Store>, shutdown: Shutdown) -> Self {
        Self { store, shutdown, auditor: Auditor::log_only(), auth: Authenticator::none() }
    }

    /// Who may call: bearer tokens verified by `auth` (every caller is anonymous without it).
    pub fn with_authenticator(mut self, auth: Authenticator) -> Self {
        self.auth = auth;
        self
    }

    /// The caller of `request`, authenticated (UNAUTHENTICATED when a token is required and
    /// missing or invalid).
    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let principal = self.auth.authenticate(request.metadata()).await?;
        Ok(Caller { principal, ..Caller::of(request) })
    }

    /// Where every PHI read is recorded before it is answered.
    pub fn with_auditor(mut self, auditor: Auditor) -> Self {
        self.auditor = auditor;
        self
    }

    /// Audits a list answer, then builds it.
    async fn audited_list(
        &self,
        caller: &Caller,
        rpc: &str,
        action: AuditAction,
        resource_type: &str,
        page: PageOf,
        fp: u64,
    ) -> Result<ResourceList, Status> {
        let rows: Vec<&StoredResource> = page.rows.iter().collect();
        self.auditor.record(caller, rpc, action, resource_type, &rows).await?;
        Ok(to_list(page, fp))
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "store read failed");
                Err(Status::internal("the query store failed; see the service log"))
            }
            Err(e) => {
                tracing::error!(error = %e, "store task failed");
                Err(Status::internal("the query store task failed; see the service log"))
            }
        }
    }

    /// A patient id from an id or an identifier (which must name exactly one patient).
    async fn resolve_patient(
        &self,
        id: Option<String>,
        identifier: Option<proto::Identifier>,
        (id_field, ident_field): (&str, &str),
    ) -> Result<String, Status> {
        match (id, identifier) {
            (Some(id), _) if id.is_empty() => Err(Status::invalid_argument(format!("{id_field} is empty"))),
            (Some(id), _) => Ok(id),
            (None, Some(ident)) => {
                if ident.value.is_empty() {
                    return Err(Status::invalid_argument(format!("{ident_field}.value is empty")));
                }
                let system = ident.system.clone();
                let ids = self.blocking(move |s| s.patients_by_identifier(&ident.system, &ident.value)).await?;
                let in_system = if system.is_empty() { "any system".to_string() } else { format!("system {system:?}") };
                match ids.len() {
                    0 => Err(Status::not_found(format!("no Patient has the given identifier value in {in_system}"))),
                    1 => Ok(ids.into_iter().next().unwrap_or_default()),
                    n if system.is_empty() => Err(Status::invalid_argument(format!(
                        "the identifier value matches {n} patients across systems; give {ident_field}.system to choose one"
                    ))),
                    n => Err(Status::failed_precondition(format!(
                        "{n} patients share the given identifier in {in_system}"
                    ))),
                }
            }
            (None, None) => Err(Status::invalid_argument(format!("give {id_field} or {ident_field}"))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        caller: &Caller,
        rpc: &'static str,
        resource_type: &'static str,
        patient: String,
        filter: ListFilter,
        fp_parts: Vec<String>,
        page: Option<proto::Page>,
    ) -> Result<ResourceList, Status> {
        let page = page.unwrap_or_default();
        let mut parts: Vec<&str> = vec![rpc, &patient];
        parts.extend(fp_parts.iter().map(String::as_str));
        let fp = paging::fingerprint(&parts);
        let after =
            paging::decode(&page.token, fp).map_err(|e| Status::invalid_argument(format!("page.token: {e}")))?;
        let req = PageReq { size: paging::size(page.size), after };
        let got = self.blocking(move |s| s.list_for_patient(resource_type, &patient, &filter, &req)).await?;
        self.audited_list(caller, rpc, AuditAction::Search, resource_type, got, fp).await
    }
}

fn to_resource(r: StoredResource) -> Resource {
    Resource { resource_type: r.resource_type, id: r.id, json: r.json, last_updated: r.last_updated }
}

fn to_list(page: PageOf, fp: u64) -> ResourceList {
    ResourceList {
        next_page_token: page.next.map(|c| paging::encode(fp, &c)).unwrap_or_default(),
        resources: page.rows.into_iter().map(to_resource).collect(),
    }
}

/// A FHIR resource type name: a capital letter, then letters and digits.
fn check_type(t: &str) -> Result<(), Status> {
    let mut chars = t.chars();
    match chars.next() {
        None => Err(Status::invalid_argument("resource_type is empty")),
        Some(c) if c.is_ascii_uppercase() && chars.all(|c| c.is_ascii_alphanumeric()) => Ok(()),
        Some(_) => Err(Status::invalid_argument(format!(
            "resource_type {t:?} is not a FHIR resource type name (e.g. Patient, Observation)"
        ))),
    }
}

/// Parses the codes and time range of ListObservations.
pub fn observation_filter(codes: &[String], from: &str, to: &str) -> Result<ListFilter, Status> {
    let codes = codes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            CodeFilter::parse(c).ok_or_else(|| {
                Status::invalid_argument(format!("codes[{i}] = {c:?} is not \"system|code\" or \"code\""))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let from_t = (!from.is_empty())
        .then(|| time::parse_start(from).map_err(|e| Status::invalid_argument(format!("from: {e}"))))
        .transpose()?;
    let to_t = (!to.is_empty())
        .then(|| time::parse_end_exclusive(to).map_err(|e| Status::invalid_argument(format!("to: {e}"))))
        .transpose()?;
    if let (Some(f), Some(t)) = (from_t, to_t)
        && f >= t
    {
        return Err(Status::invalid_argument(format!("from {from:?} is after to {to:?}")));
    }
    Ok(ListFilter { codes, from: from_t, to_exclusive: to_t })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<Resource, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Query for QueryService {
    async fn get_patient(&self, request: Request<GetPatientRequest>) -> Result<Response<Resource>, Status> {
        use proto::get_patient_request::By;
        let caller = self.caller(&request).await?;
        let (id, ident) = match request.into_inner().by {
            Some(By::Id(id)) => (Some(id), None),
            Some(By::Identifier(i)) => (None, Some(i)),
            None => (None, None),
        };
        let id = self.resolve_patient(id, ident, ("id", "identifier")).await?;
        let key = id.clone();
        match self.blocking(move |s| s.get("Patient", &key)).await? {
            Some(r) => {
                self.auditor.record(&caller, "GetPatient", AuditAction::Read, "Patient", &[&r]).await?;
                Ok(Response::new(to_resource(r)))
            }
            None => Err(Status::not_found(format!("Patient/{id} not found"))),
        }
    }

    async fn search_patients(&self, request: Request<SearchPatientsRequest>) -> Result<Response<ResourceList>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let name = r.name.trim().to_string();
        if !r.birth_date.is_empty() && !is_date_prefix(&r.birth_date) {
            return Err(Status::invalid_argument(format!(
                "birth_date {:?} is not YYYY, YYYY-MM or YYYY-MM-DD",
                r.birth_date
            )));
        }
        let identifier = match r.identifier {
            Some(i) if i.value.is_empty() => {
                return Err(Status::invalid_argument("identifier.value is empty"));
            }
            Some(i) => Some((i.system, i.value)),
            None => None,
        };
        let search = PatientSearch {
            name: (!name.is_empty()).then_some(name),
            birth_date: (!r.birth_date.is_empty()).then_some(r.birth_date),
            identifier,
        };
        if search == PatientSearch::default() {
            return Err(Status::invalid_argument("give at least one of name, birth_date, identifier"));
        }
        let page = r.page.unwrap_or_default();
        let (sys, val) = search.identifier.clone().unwrap_or_default();
        let fp = paging::fingerprint(&[
            "SearchPatients",
            search.name.as_deref().unwrap_or_default(),
            search.birth_date.as_deref().unwrap_or_default(),
            &sys,
            &val,
        ]);
        let after =
            paging::decode(&page.token, fp).map_err(|e| Status::invalid_argument(format!("page.token: {e}")))?;
        let req = PageReq { size: paging::size(page.size), after };
        let got = self.blocking(move |s| s.search_patients(&search, &req)).await?;
        Ok(Response::new(self.audited_list(&caller, "SearchPatients", AuditAction::Search, "Patient", got, fp).await?))
    }

    async fn list_observations(
        &self,
        request: Request<ListObservationsRequest>,
    ) -> Result<Response<ResourceList>, Status> {
        use proto::list_observations_request::Patient;
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let filter = observation_filter(&r.codes, &r.from, &r.to)?;
        let (id, ident) = match r.patient {
            Some(Patient::PatientId(id)) => (Some(id), None),
            Some(Patient::PatientIdentifier(i)) => (None, Some(i)),
            None => (None, None),
        };
        let patient = self.resolve_patient(id, ident, PATIENT).await?;
        let mut fp = r.codes.clone();
        fp.push(r.from);
        fp.push(r.to);
        Ok(Response::new(self.list(&caller, "ListObservations", "Observation", patient, filter, fp, r.page).await?))
    }

    async fn list_encounters(&self, request: Request<ListByPatientRequest>) -> Result<Response<ResourceList>, Status> {
        let caller = self.caller(&request).await?;
        let (patient, page) = self.by_patient(request.into_inner()).await?;
        Ok(Response::new(
            self.list(&caller, "ListEncounters", "Encounter", patient, ListFilter::default(), vec![], page).await?,
        ))
    }

    async fn list_diagnostic_reports(
        &self,
        request: Request<ListByPatientRequest>,
    ) -> Result<Response<ResourceList>, Status> {
        let caller = self.caller(&request).await?;
        let (patient, page) = self.by_patient(request.into_inner()).await?;
        Ok(Response::new(
            self.list(
                &caller,
                "ListDiagnosticReports",
                "DiagnosticReport",
                patient,
                ListFilter::default(),
                vec![],
                page,
            )
            .await?,
        ))
    }

    async fn get_resource(&self, request: Request<GetResourceRequest>) -> Result<Response<Resource>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        check_type(&r.resource_type)?;
        if r.id.is_empty() {
            return Err(Status::invalid_argument("id is empty"));
        }
        let (t, id) = (r.resource_type.clone(), r.id.clone());
        match self.blocking(move |s| s.get(&t, &id)).await? {
            Some(found) => {
                self.auditor.record(&caller, "GetResource", AuditAction::Read, &found.resource_type, &[&found]).await?;
                Ok(Response::new(to_resource(found)))
            }
            None => Err(Status::not_found(format!("{}/{} not found", r.resource_type, r.id))),
        }
    }

    type WatchPatientStream = WatchStream;

    async fn watch_patient(
        &self,
        request: Request<WatchPatientRequest>,
    ) -> Result<Response<Self::WatchPatientStream>, Status> {
        use proto::watch_patient_request::Patient;
        let caller = self.caller(&request).await?;
        // Subscribe before resolving so nothing committed after this call is missed.
        let rx = self.store.subscribe();
        let (id, ident) = match request.into_inner().patient {
            Some(Patient::PatientId(id)) => (Some(id), None),
            Some(Patient::PatientIdentifier(i)) => (None, Some(i)),
            None => (None, None),
        };
        let patient = self.resolve_patient(id, ident, PATIENT).await?;
        let (tx, out) = mpsc::channel(64);
        let watch = Watch { patient, caller, auditor: self.auditor.clone() };
        tokio::spawn(forward_changes(rx, watch, tx, self.shutdown.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}

impl QueryService {
    async fn by_patient(&self, r: ListByPatientRequest) -> Result<(String, Option<proto::Page>), Status> {
        use proto::list_by_patient_request::Patient;
        let (id, ident) = match r.patient {
            Some(Patient::PatientId(id)) => (Some(id), None),
            Some(Patient::PatientIdentifier(i)) => (None, Some(i)),
            None => (None, None),
        };
        Ok((self.resolve_patient(id, ident, PATIENT).await?, r.page))
    }
}

/// One WatchPatient stream: whose changes, for whom, audited where.
pub struct Watch {
    pub patient: String,
    pub caller: Caller,
    pub auditor: Auditor,
}

/// Sends the changes about the watched patient until the watcher hangs up, falls behind, the
/// store closes, a change cannot be audited or the service shuts down.
pub async fn forward_changes(
    mut rx: broadcast::Receiver<Arc<crate::store::Change>>,
    watch: Watch,
    tx: mpsc::Sender<Result<Resource, Status>>,
    shutdown: Shutdown,
) {
    let Watch { patient, caller, auditor } = watch;
    loop {
        let change = tokio::select! {
            c = rx.recv() => c,
            _ = tx.closed() => return,
            _ = shutdown.wait() => {
                let _ = tx.send(Err(Status::unavailable("the query service is shutting down; watch again"))).await;
                return;
            }
        };
        match change {
            Ok(c) if c.resource.patient_id.as_deref() == Some(patient.as_str()) => {
                let audited = auditor
                    .record(&caller, "WatchPatient", AuditAction::Read, &c.resource.resource_type, &[&c.resource])
                    .await;
                if let Err(refused) = audited {
                    let _ = tx.send(Err(refused)).await;
                    return;
                }
                if tx.send(Ok(to_resource(c.resource.clone()))).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let _ = tx
                    .send(Err(Status::resource_exhausted(format!(
                        "this watch fell {n} changes behind and was ended; read the current state and watch again"
                    ))))
                    .await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => {
                let _ = tx.send(Err(Status::unavailable("the query store closed; watch again"))).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::query_server::Query;
    use canonical::current::FhirResource;
    use serde_json::json;
    use tonic::Code;

    fn rec(rt: &str, id: &str, patient: Option<&str>, at: i64, j: serde_json::Value) -> FhirResource {
        FhirResource {
            id: id.into(),
            resource_type: rt.into(),
            tenant: "t".into(),
            patient_id: patient.map(str::to_string),
            source_event_id: "e".into(),
            event_type: "x".into(),
            occurred_at: at,
            fhir_json: j.to_string(),
        }
    }

    fn svc() -> (tempfile::TempDir, QueryService, Shutdown) {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(d.path(), 8).unwrap());
        let s = Shutdown::new();
        let p = |id: &str, mrn: &str, sys: &str| {
            rec(
                "Patient",
                id,
                Some(id),
                1,
                json!({"resourceType": "Patient", "id": id, "identifier": [{"system": sys, "value": mrn}], "name": [{"family": "Doe"}]}),
            )
        };
        store.upsert(&p("p1", "M1", "urn:a")).unwrap();
        store.upsert(&p("p2", "SHARED", "urn:a")).unwrap();
        store.upsert(&p("p3", "SHARED", "urn:b")).unwrap();
        for i in 0..5 {
            store
                .upsert(&rec("Observation", &format!("o{i}"), Some("p1"), 1, json!({"code": {"coding": [{"system": "http://loinc.org", "code": if i % 2 == 0 { "A" } else { "B" }}]}, "effectiveDateTime": format!("2024-0{}-01", i + 1)})))
                .unwrap();
        }
        (d, QueryService::new(store, s.clone()), s)
    }

    fn ident(system: &str, value: &str) -> proto::Identifier {
        proto::Identifier { system: system.into(), value: value.into() }
    }

    #[tokio::test]
    async fn get_patient_by_id_and_identifier_with_precise_errors() {
        use proto::get_patient_request::By;
        let (_d, s, _) = svc();
        let got = s
            .get_patient(Request::new(GetPatientRequest { by: Some(By::Identifier(ident("", "M1"))) }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.id, "p1");
        assert!(got.json.contains("\"M1\""));
        let got = s
            .get_patient(Request::new(GetPatientRequest { by: Some(By::Id("p2".into())) }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.id, "p2");
        let e = s.get_patient(Request::new(GetPatientRequest { by: Some(By::Id("nope".into())) })).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::NotFound, "Patient/nope not found"));
        let e = s
            .get_patient(Request::new(GetPatientRequest { by: Some(By::Identifier(ident("urn:b", "M1"))) }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.message().contains("system \"urn:b\""), "{}", e.message());
        assert!(!e.message().contains("M1"), "identifier values are not echoed");
        let e = s
            .get_patient(Request::new(GetPatientRequest { by: Some(By::Identifier(ident("", "SHARED"))) }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("matches 2 patients"), "{}", e.message());
        let got = s
            .get_patient(Request::new(GetPatientRequest { by: Some(By::Identifier(ident("urn:b", "SHARED"))) }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.id, "p3");
        let e = s.get_patient(Request::new(GetPatientRequest { by: None })).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "give id or identifier"));
        let e = s.get_patient(Request::new(GetPatientRequest { by: Some(By::Id(String::new())) })).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "id is empty"));
    }

    #[tokio::test]
    async fn search_patients_validates_and_pages() {
        let (_d, s, _) = svc();
        let e = s.search_patients(Request::new(SearchPatientsRequest::default())).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let e = s
            .search_patients(Request::new(SearchPatientsRequest { birth_date: "1980-1".into(), ..Default::default() }))
            .await
            .unwrap_err();
        assert!(e.message().contains("birth_date"), "{}", e.message());
        let first = s
            .search_patients(Request::new(SearchPatientsRequest {
                name: "do".into(),
                page: Some(proto::Page { size: 2, token: String::new() }),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.resources.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["p1", "p2"]);
        assert!(!first.next_page_token.is_empty());
        let second = s
            .search_patients(Request::new(SearchPatientsRequest {
                name: "do".into(),
                page: Some(proto::Page { size: 2, token: first.next_page_token.clone() }),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second.resources.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["p3"]);
        assert!(second.next_page_token.is_empty());
        // The token does not fit another query.
        let e = s
            .search_patients(Request::new(SearchPatientsRequest {
                name: "d".into(),
                page: Some(proto::Page { size: 2, token: first.next_page_token }),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("page.token: page token belongs to a different query"), "{}", e.message());
    }

    #[tokio::test]
    async fn list_observations_filters_and_errors() {
        use proto::list_observations_request::Patient;
        let (_d, s, _) = svc();
        let req = |codes: Vec<&str>, from: &str, to: &str| ListObservationsRequest {
            patient: Some(Patient::PatientIdentifier(ident("urn:a", "M1"))),
            codes: codes.into_iter().map(str::to_string).collect(),
            from: from.into(),
            to: to.into(),
            page: None,
        };
        let ids = |l: ResourceList| l.resources.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.list_observations(Request::new(req(vec!["A"], "", ""))).await.unwrap().into_inner()),
            ["o4", "o2", "o0"]
        );
        assert_eq!(
            ids(s
                .list_observations(Request::new(req(vec!["http://loinc.org|B"], "2024-04", "")))
                .await
                .unwrap()
                .into_inner()),
            ["o3"]
        );
        assert_eq!(
            ids(s.list_observations(Request::new(req(vec![], "2024-02", "2024-03"))).await.unwrap().into_inner()),
            ["o2", "o1"]
        );
        let e = s.list_observations(Request::new(req(vec!["A", "s|"], "", ""))).await.unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::InvalidArgument, "codes[1] = \"s|\" is not \"system|code\" or \"code\"")
        );
        let e = s.list_observations(Request::new(req(vec![], "2024-13", ""))).await.unwrap_err();
        assert!(e.message().starts_with("from: \"2024-13\" is not a FHIR date"), "{}", e.message());
        let e = s.list_observations(Request::new(req(vec![], "2024-05", "2024-04"))).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let mut no_patient = req(vec![], "", "");
        no_patient.patient = None;
        let e = s.list_observations(Request::new(no_patient)).await.unwrap_err();
        assert_eq!(e.message(), "give patient_id or patient_identifier");
    }

    #[tokio::test]
    async fn get_resource_checks_type_and_id() {
        let (_d, s, _) = svc();
        let got = s
            .get_resource(Request::new(GetResourceRequest { resource_type: "Observation".into(), id: "o1".into() }))
            .await
            .unwrap();
        assert_eq!(got.into_inner().id, "o1");
        for (t, id, code) in [
            ("observation", "o1", Code::InvalidArgument),
            ("", "o1", Code::InvalidArgument),
            ("Observation", "", Code::InvalidArgument),
            ("Encounter", "o1", Code::NotFound),
        ] {
            let e = s
                .get_resource(Request::new(GetResourceRequest { resource_type: t.into(), id: id.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), code, "{t}/{id}: {}", e.message());
        }
    }

    #[tokio::test]
    async fn watch_sends_only_the_patients_changes_and_ends_on_shutdown() {
        use futures::StreamExt;
        use proto::watch_patient_request::Patient;
        let (_d, s, shutdown) = svc();
        let mut stream = s
            .watch_patient(Request::new(WatchPatientRequest {
                patient: Some(Patient::PatientIdentifier(ident("", "M1"))),
            }))
            .await
            .unwrap()
            .into_inner();
        s.store.upsert(&rec("Observation", "other", Some("p2"), 1, json!({}))).unwrap();
        s.store.upsert(&rec("Observation", "mine", None, 1, json!({"subject": {"reference": "Patient/p1"}}))).unwrap();
        let got = stream.next().await.unwrap().unwrap();
        assert_eq!((got.resource_type.as_str(), got.id.as_str()), ("Observation", "mine"));
        shutdown.trigger();
        let end = stream.next().await.unwrap().unwrap_err();
        assert_eq!(end.code(), Code::Unavailable);
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_told() {
        use futures::StreamExt;
        let (_d, s, _) = svc();
        let rx = s.store.subscribe();
        // Capacity 8: 20 unread changes overflow it before the forwarder runs.
        for i in 0..20 {
            s.store.upsert(&rec("Observation", &format!("x{i}"), Some("p1"), 1, json!({}))).unwrap();
        }
        let (tx, out) = mpsc::channel(64);
        let watch = Watch { patient: "p1".into(), caller: Caller::default(), auditor: Auditor::log_only() };
        tokio::spawn(forward_changes(rx, watch, tx, Shutdown::new()));
        let mut out = ReceiverStream::new(out);
        let e = out.next().await.unwrap().unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert!(out.next().await.is_none());
    }
}
