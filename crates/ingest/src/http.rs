//! The HTTP front end: `POST /hl7v2` with one HL7 v2 message as the body returns its ACK as the
//! body. Same session, same guarantees as MLLP. Status follows the ACK so plain HTTP clients
//! can react without parsing HL7: 200 for AA/CA, 400 for AR/CR (do not resend), 503 with
//! `Retry-After` for AE/CE (resend later). With TLS ([`serve_with`]) the endpoint is HTTPS
//! only, and over mutual TLS the allow-list sees the client certificate as it does on MLLP.

use crate::peer::Peer;
use crate::publish::Publisher;
use crate::session::Session;
use crate::tls::{Listener, TlsServer};
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::IncomingStream;
use std::sync::Arc;
use telemetry::Outcome;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer::at(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

async fn take<P: Publisher>(
    State(session): State<Arc<Session<P>>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Bytes,
) -> Response {
    let answer = session.handle_from(&body, &peer, canonical::raw::Channel::Http).await;
    let status = match answer.outcome {
        Outcome::acknowledged => StatusCode::OK,
        Outcome::rejected => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut resp = (status, answer.ack.unwrap_or_default()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/hl7-v2"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    resp
}

/// The router (`POST /hl7v2`), bodies capped at the message size limit.
pub fn router<P: Publisher>(session: Arc<Session<P>>) -> Router {
    let max = session.config().limits.max_message_bytes;
    Router::new().route("/hl7v2", post(take::<P>)).layer(DefaultBodyLimit::max(max)).with_state(session)
}

/// Serves the HTTP endpoint on `listener` until `shutdown` resolves.
pub async fn serve<P: Publisher>(
    listener: TcpListener,
    session: Arc<Session<P>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, None, session, shutdown).await
}

/// [`serve`], HTTPS only when `tls` is given.
pub async fn serve_with<P: Publisher>(
    listener: TcpListener,
    tls: Option<Arc<TlsServer>>,
    session: Arc<Session<P>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(session).into_make_service_with_connect_info::<Peer>();
    match tls {
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
        Some(tls) => axum::serve(TlsListener::new(listener, tls), app).with_graceful_shutdown(shutdown).await,
    }
}

/// A listener that hands axum only connections whose TLS handshake succeeded. Handshakes run
/// in their own tasks (each bounded by the handshake timeout) so a slow or silent client does
/// not hold up the others.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: std::io::Result<std::net::SocketAddr>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: Arc<TlsServer>) -> Self {
        let local = listener.local_addr();
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(async move {
            loop {
                let (stream, addr) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    break;
                }
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Some(ok) = tls.accept(Listener::http, stream, addr).await {
                        let _ = tx.send(ok).await;
                    }
                });
            }
        });
        Self { ready, local, acceptor }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The accept task ended (it only does when dropped): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.local {
            Ok(a) => Ok(Peer::at(*a)),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}
