//! The HTTP front end: `POST /hl7v2` with one HL7 v2 message as the body returns its ACK as the
//! body. Same session, same guarantees as MLLP. Status follows the ACK so plain HTTP clients
//! can react without parsing HL7: 200 for AA/CA, 400 for AR/CR (do not resend), 503 with
//! `Retry-After` for AE/CE (resend later).

use crate::publish::Publisher;
use crate::session::Session;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::net::SocketAddr;
use std::sync::Arc;
use telemetry::Outcome;

async fn take<P: Publisher>(
    State(session): State<Arc<Session<P>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let answer = session.handle(&body, Some(peer), canonical::raw::Channel::Http).await;
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
    listener: tokio::net::TcpListener,
    session: Arc<Session<P>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(session).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
