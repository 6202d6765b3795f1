//! Client helpers for other Arteria programs (the `arteria query ...` CLI commands): connect,
//! then ask in domain terms; list helpers follow every page.

use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;

use crate::proto::query_client::QueryClient;
use crate::proto::{
    GetPatientRequest, Identifier, ListObservationsRequest, Page, Resource, get_patient_request,
    list_observations_request,
};

/// The generated client over a tonic channel, adding the caller's bearer token (if any).
pub type Client = QueryClient<InterceptedService<tonic::transport::Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid query service address {addr:?}: {detail}")]
    Address { addr: String, detail: String },
    #[error("cannot connect to the query service at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the bearer token is not usable in a header")]
    Token,
    #[error("query service answered {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
}

/// Which patient: by resource id or by identifier (empty system = any system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientRef {
    Id(String),
    Identifier { system: String, value: String },
}

/// Connects to `addr` (`host:port` or `http://host:port`) without a token.
pub async fn connect(addr: &str) -> Result<Client, ClientError> {
    connect_as(addr, None).await
}

/// Connects to `addr`, sending `token` as the bearer token on every call.
pub async fn connect_as(addr: &str, token: Option<&str>) -> Result<Client, ClientError> {
    connect_over(addr, token, None).await
}

/// How to reach a query service that serves TLS: the client configuration (trusted CAs, an
/// optional client certificate for mutual TLS) and the name its certificate must be valid for.
pub struct ClientTls {
    pub config: tokio_rustls::rustls::ClientConfig,
    pub server_name: tokio_rustls::rustls::pki_types::ServerName<'static>,
}

/// Connects to `addr`, over TLS when `tls` is given, sending `token` as the bearer token on
/// every call.
pub async fn connect_over(addr: &str, token: Option<&str>, tls: Option<ClientTls>) -> Result<Client, ClientError> {
    let bearer = match token {
        Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| ClientError::Token)?),
        None => None,
    };
    Ok(QueryClient::with_interceptor(channel(addr, tls).await?, Bearer(bearer)))
}

/// A gRPC channel to `addr` (`host:port` or `http://host:port`), over TLS when `tls` is given
/// (HTTP/2 negotiated by ALPN, as the server requires).
pub async fn channel(addr: &str, tls: Option<ClientTls>) -> Result<tonic::transport::Channel, ClientError> {
    let uri = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    let endpoint = tonic::transport::Endpoint::from_shared(uri.clone())
        .map_err(|e| ClientError::Address { addr: addr.into(), detail: e.to_string() })?;
    let connected = match tls {
        None => endpoint.connect().await,
        Some(ClientTls { mut config, server_name }) => {
            config.alpn_protocols = vec![b"h2".to_vec()];
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
            // The endpoint's URI stays http://: TLS is this connector's job, not tonic's.
            let target = uri.trim_start_matches("http://").trim_start_matches("https://").to_string();
            endpoint
                .connect_with_connector(tower::service_fn(move |_| {
                    let (connector, name, target) = (connector.clone(), server_name.clone(), target.clone());
                    async move {
                        let tcp = tokio::net::TcpStream::connect(target).await?;
                        let stream = connector.connect(name, tcp).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await
        }
    };
    connected.map_err(|source| ClientError::Connect { addr: uri, source })
}

/// GetPatient by id or identifier.
pub async fn patient(c: &mut Client, who: &PatientRef) -> Result<Resource, ClientError> {
    let by = match who {
        PatientRef::Id(id) => get_patient_request::By::Id(id.clone()),
        PatientRef::Identifier { system, value } => {
            get_patient_request::By::Identifier(Identifier { system: system.clone(), value: value.clone() })
        }
    };
    Ok(c.get_patient(GetPatientRequest { by: Some(by) }).await?.into_inner())
}

/// Every Observation of a patient matching `codes` ("system|code" or "code"; empty = all) in
/// the optional `from`..`to` range, newest first, following all pages.
pub async fn observations(
    c: &mut Client,
    who: &PatientRef,
    codes: &[String],
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Vec<Resource>, ClientError> {
    let patient = match who {
        PatientRef::Id(id) => list_observations_request::Patient::PatientId(id.clone()),
        PatientRef::Identifier { system, value } => list_observations_request::Patient::PatientIdentifier(Identifier {
            system: system.clone(),
            value: value.clone(),
        }),
    };
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_observations(ListObservationsRequest {
                patient: Some(patient.clone()),
                codes: codes.to_vec(),
                from: from.unwrap_or_default().to_string(),
                to: to.unwrap_or_default().to_string(),
                page: Some(Page { size: 1000, token }),
            })
            .await?
            .into_inner();
        out.extend(page.resources);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}
