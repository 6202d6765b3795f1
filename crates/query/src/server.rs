//! The gRPC server: the Query service plus standard gRPC health and reflection (so `grpcurl`
//! and load balancers work without our proto files). With `[query.tls]` it speaks only TLS
//! (HTTP/2 negotiated by ALPN), mutual when `client_ca` is set.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tls_server::rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::proto::query_server::QueryServer;
use crate::service::QueryService;

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

/// [`serve`], TLS-only when `tls` is given (see `tls_server::TlsFiles::server_config`).
pub async fn serve_with(
    listener: TcpListener,
    tls: Option<ServerConfig>,
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
        Some(tls) => router.serve_with_incoming_shutdown(tls_incoming(listener, tls), stop).await?,
    }
    Ok(())
}

/// Accepted connections whose TLS handshake succeeded. Each handshake runs in its own task,
/// bounded in time, so a slow or plaintext client holds up no one; failures are logged (peer
/// address and error, never content) and the connection dropped.
fn tls_incoming(listener: TcpListener, mut tls: ServerConfig) -> ReceiverStream<std::io::Result<TlsIo>> {
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
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send(Ok(TlsIo(s))).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "gRPC TLS handshake failed; connection dropped"),
                    Err(_) => tracing::info!(%peer, "gRPC TLS handshake timed out; connection dropped"),
                }
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
}
