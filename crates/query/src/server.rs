//! The gRPC server: the Query service plus standard gRPC health and reflection (so `grpcurl`
//! and load balancers work without our proto files). With `[query.tls]` it speaks only TLS
//! (HTTP/2 negotiated by ALPN), mutual when `client_ca` is set; failed handshakes are counted
//! as on ingest's listeners, `arteria_tls_handshake_failures_total{listener="grpc", reason}`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tls_server::rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tls_server::{HandshakeFailure, classify};

use crate::proto::query_server::QueryServer;
use crate::service::QueryService;

/// The listener label of the handshake metric (ingest has `mllp` and `http`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Listener {
    grpc,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    listener: Listener,
    reason: HandshakeFailure,
}

/// The gRPC listener's failed TLS handshakes, by reason.
#[derive(Debug, Clone, Default)]
pub struct Handshakes(Family<FailureLabels, Counter>);

impl Handshakes {
    /// Counts into `arteria_tls_handshake_failures_total` of `metrics`.
    pub fn registered(metrics: &telemetry::Metrics) -> Self {
        let h = Self::default();
        metrics.register(
            "tls_handshake_failures",
            "TLS handshakes that failed on the gRPC listener, by reason",
            h.0.clone(),
        );
        h
    }

    /// Failures counted so far for `reason`.
    pub fn failures(&self, reason: HandshakeFailure) -> u64 {
        self.0.get_or_create(&FailureLabels { listener: Listener::grpc, reason }).get()
    }

    fn count(&self, reason: HandshakeFailure) {
        self.0.get_or_create(&FailureLabels { listener: Listener::grpc, reason }).inc();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `service` on `listener` until `shutdown` resolves, then lets in-flight calls finish.
pub async fn serve(
    listener: TcpListener,
    service: QueryService,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with(listener, None, service, shutdown).await
}

/// [`serve`], TLS-only when `tls` is given (see `tls_server::TlsFiles::server_config`), its
/// failed handshakes counted in the [`Handshakes`] beside it.
pub async fn serve_with(
    listener: TcpListener,
    tls: Option<(ServerConfig, Handshakes)>,
    service: QueryService,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<QueryServer<QueryService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(QueryServer::new(service));
    let stop = async move {
        shutdown.await;
        reporter.set_not_serving::<QueryServer<QueryService>>().await;
    };
    match tls {
        None => router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop).await?,
        Some((tls, counted)) => router.serve_with_incoming_shutdown(tls_incoming(listener, tls, counted), stop).await?,
    }
    Ok(())
}

/// Accepted connections whose TLS handshake succeeded. Each handshake runs in its own task,
/// bounded in time, so a slow or plaintext client holds up no one; failures are counted,
/// logged (peer address and reason, never content) and the connection dropped.
fn tls_incoming(
    listener: TcpListener,
    mut tls: ServerConfig,
    counted: Handshakes,
) -> ReceiverStream<std::io::Result<TlsIo>> {
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                break;
            }
            let (acceptor, tx, counted) = (acceptor.clone(), tx.clone(), counted.clone());
            tokio::spawn(async move {
                let reason = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send(Ok(TlsIo(s))).await;
                        return;
                    }
                    Ok(Err(e)) => classify(&e),
                    Err(_) => HandshakeFailure::timeout,
                };
                counted.count(reason);
                // The reason only: rustls's own message could in principle quote certificate names.
                tracing::info!(%peer, reason = ?reason, "gRPC TLS handshake failed; connection dropped");
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A server-side TLS connection tonic can serve (it needs `Connected` for the peer address).
struct TlsIo(tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for TlsIo {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::Shutdown;
    use std::sync::Arc;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    #[tokio::test]
    async fn health_reflection_and_graceful_stop() {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::Store::open(d.path(), 4).unwrap());
        let shutdown = Shutdown::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let stop = shutdown.clone();
        let task =
            tokio::spawn(serve(listener, QueryService::new(store, shutdown.clone()), async move { stop.wait().await }));
        let channel = tonic::transport::Endpoint::from_shared(addr).unwrap().connect().await.unwrap();

        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest { service: "arteria.query.v1.Query".into() })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32);

        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            answers.message().await.unwrap().unwrap().message_response
        else {
            panic!("reflection did not list services");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&"arteria.query.v1.Query".to_string()), "{names:?}");
        assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
        drop(answers);

        shutdown.trigger();
        task.await.unwrap().unwrap();
    }

    use tls_server::rustls;
    use tls_server::rustls::pki_types::pem::PemObject;
    use tls_server::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    /// A throwaway CA; `issue` gives (certificate PEM, key PEM) for a server or a client.
    struct Ca(rcgen::CertificateParams, rcgen::KeyPair, String);

    impl Ca {
        fn new() -> Self {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
            let key = rcgen::KeyPair::generate().unwrap();
            let pem = params.self_signed(&key).unwrap().pem();
            Self(params, key, pem)
        }
        fn issue(&self, name: &str, client: bool) -> (String, String) {
            let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
            params.extended_key_usages = vec![if client {
                rcgen::ExtendedKeyUsagePurpose::ClientAuth
            } else {
                rcgen::ExtendedKeyUsagePurpose::ServerAuth
            }];
            let key = rcgen::KeyPair::generate().unwrap();
            (params.signed_by(&key, &rcgen::Issuer::from_params(&self.0, &self.1)).unwrap().pem(), key.serialize_pem())
        }
    }

    /// A client configuration trusting `ca`, with an optional client certificate.
    fn client_config(ca: &Ca, cert: Option<(String, String)>) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca.2.as_bytes()).unwrap()).unwrap();
        let b = rustls::ClientConfig::builder_with_provider(tls_server::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        match cert {
            None => b.with_no_client_auth(),
            Some((c, k)) => b
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(c.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
                )
                .unwrap(),
        }
    }

    /// A gRPC channel over TLS (ALPN h2) trusting `ca`, with an optional client certificate.
    async fn tls_channel(
        addr: std::net::SocketAddr,
        ca: &Ca,
        cert: Option<(String, String)>,
    ) -> Result<tonic::transport::Channel, crate::client::ClientError> {
        let tls = crate::client::ClientTls {
            config: client_config(ca, cert),
            server_name: ServerName::try_from("127.0.0.1").unwrap(),
        };
        crate::client::channel(&addr.to_string(), Some(tls)).await
    }

    async fn serving(channel: tonic::transport::Channel) -> Result<i32, tonic::Status> {
        let req = HealthCheckRequest { service: "arteria.query.v1.Query".into() };
        HealthClient::new(channel).check(req).await.map(|r| r.into_inner().status)
    }

    #[tokio::test]
    async fn with_tls_files_only_mutually_authenticated_tls_clients_are_answered() {
        let (server_ca, client_ca, stranger) = (Ca::new(), Ca::new(), Ca::new());
        let d = tempfile::tempdir().unwrap();
        let write = |name: &str, content: &str| {
            let p = d.path().join(name);
            std::fs::write(&p, content).unwrap();
            Some(p)
        };
        let (cert, key) = server_ca.issue("127.0.0.1", false);
        let files = tls_server::TlsFiles {
            cert: write("server.pem", &cert),
            key: write("server-key.pem", &key),
            client_ca: write("clients.pem", &client_ca.2),
        };
        let tls = files.server_config().unwrap().expect("TLS is configured");

        let store = Arc::new(crate::Store::open(d.path(), 4).unwrap());
        let shutdown = Shutdown::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = shutdown.clone();
        let service = QueryService::new(store, shutdown.clone());
        let counted = Handshakes::default();
        let task =
            tokio::spawn(serve_with(listener, Some((tls, counted.clone())), service, async move { stop.wait().await }));

        let trusted = tls_channel(addr, &server_ca, Some(client_ca.issue("app.test", true))).await.unwrap();
        assert_eq!(serving(trusted).await.unwrap(), ServingStatus::Serving as i32);

        // No client certificate, or one from a CA the server does not trust: no answer.
        let anonymous = match tls_channel(addr, &server_ca, None).await {
            Ok(c) => serving(c).await.is_err(),
            Err(_) => true,
        };
        assert!(anonymous, "a client without a certificate was answered");
        let foreign = match tls_channel(addr, &server_ca, Some(stranger.issue("app.test", true))).await {
            Ok(c) => serving(c).await.is_err(),
            Err(_) => true,
        };
        assert!(foreign, "a client with an untrusted certificate was answered");

        // Plaintext gRPC on the TLS port: no answer, and the server keeps serving.
        let plain = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await {
            Ok(c) => serving(c).await.is_err(),
            Err(_) => true,
        };
        assert!(plain, "a plaintext client was answered");
        let again = tls_channel(addr, &server_ca, Some(client_ca.issue("app.test", true))).await.unwrap();
        assert_eq!(serving(again).await.unwrap(), ServingStatus::Serving as i32);
        // Each refusal was counted by its reason (the counts are bumped by the handshake tasks,
        // which may finish a moment after the client gave up).
        for reason in [HandshakeFailure::no_client_cert, HandshakeFailure::bad_client_cert, HandshakeFailure::not_tls] {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while counted.failures(reason) == 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(counted.failures(reason) >= 1, "{reason:?} not counted");
        }

        // The client the CLI uses (`arteria query --tls ...`): an answer from the service itself
        // (NOT_FOUND for an unknown patient) proves the call went through TLS and mTLS.
        let cli_tls = |ca: &Ca| crate::client::ClientTls {
            config: client_config(ca, Some(client_ca.issue("app.test", true))),
            server_name: ServerName::try_from("127.0.0.1").unwrap(),
        };
        let who = crate::client::PatientRef::Id("nobody".into());
        let mut c = crate::client::connect_over(&addr.to_string(), None, Some(cli_tls(&server_ca))).await.unwrap();
        let e = crate::client::patient(&mut c, &who).await.unwrap_err();
        assert!(matches!(&e, crate::client::ClientError::Status(s) if s.code() == tonic::Code::NotFound), "{e}");
        // Trusting another CA than the server's: no answer from the service.
        let refused = match crate::client::connect_over(&addr.to_string(), None, Some(cli_tls(&stranger))).await {
            Ok(mut c) => match crate::client::patient(&mut c, &who).await {
                Err(crate::client::ClientError::Status(s)) => s.code() != tonic::Code::NotFound,
                other => other.is_err(),
            },
            Err(_) => true,
        };
        assert!(refused, "a client that does not trust the server's CA got an answer");

        shutdown.trigger();
        task.await.unwrap().unwrap();
    }
}
