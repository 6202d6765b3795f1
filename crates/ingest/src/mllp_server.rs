//! The MLLP listener. Each connection is served in order — one frame read, handled and
//! answered before the next is read — which is what MLLP senders expect and what gives
//! back-pressure for free: a slow Kafka slows the reading of the socket, nothing buffers without
//! bound. Connections are capped, idle ones are closed, and shutdown stops accepting, lets each
//! connection finish the message in hand, then closes.
//!
//! With TLS the same session loop runs over the decrypted stream: only the handshake (inside
//! the connection's slot, bounded by its own timeout) is added in front.

use crate::peer::Peer;
use crate::publish::Publisher;
use crate::session::Session;
use crate::tls::{Listener, TlsServer};
use bus::Shutdown;
use futures::{SinkExt, StreamExt};
use hl7v2::mllp::{MllpCodec, MllpItem};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::codec::Framed;

/// Serves MLLP on `listener` until `shutdown`; returns once every connection has closed (or
/// `drain` has passed).
pub async fn serve<P: Publisher>(listener: TcpListener, session: Arc<Session<P>>, shutdown: Shutdown, drain: Duration) {
    serve_with(listener, None, session, shutdown, drain).await
}

/// [`serve`], speaking only TLS when `tls` is given: a client whose handshake fails (a
/// plaintext sender, a missing or untrusted client certificate) is counted, logged and dropped.
pub async fn serve_with<P: Publisher>(
    listener: TcpListener,
    tls: Option<Arc<TlsServer>>,
    session: Arc<Session<P>>,
    shutdown: Shutdown,
    drain: Duration,
) {
    let cfg = session.config().mllp.clone();
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        // Wait for a free slot first, so excess connections queue in the kernel, not here.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.wait() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let session = session.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        let idle = Duration::from_millis(cfg.idle_timeout_ms);
        connections.spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            match tls {
                None => serve_connection(stream, Peer::at(peer), session, shutdown, idle).await,
                Some(tls) => {
                    let handshake = tokio::select! {
                        h = tls.accept(Listener::mllp, stream, peer) => h,
                        _ = shutdown.wait() => None,
                    };
                    if let Some((stream, from)) = handshake {
                        serve_connection(stream, from, session, shutdown, idle).await;
                    }
                }
            }
        });
        // Reap finished connections so the set does not grow with the connection count.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    tracing::info!(open = connections.len(), "MLLP listener closed; draining connections");
    let _ = tokio::time::timeout(drain, async { while connections.join_next().await.is_some() {} }).await;
    connections.abort_all();
}

/// Serves one connection (plain TCP or the decrypted side of TLS) until the peer closes it,
/// it idles out, or shutdown.
pub async fn serve_connection<S, P>(stream: S, from: Peer, session: Arc<Session<P>>, shutdown: Shutdown, idle: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: Publisher,
{
    // Logged as the address only, the same as before TLS; never certificate contents.
    let peer = from.addr.map(|a| a.to_string()).unwrap_or_default();
    let max = session.config().limits.max_message_bytes;
    let mut framed = Framed::new(stream, MllpCodec::new(max));
    tracing::debug!(%peer, "connection opened");
    loop {
        let next = tokio::select! {
            n = tokio::time::timeout(idle, framed.next()) => n,
            _ = shutdown.wait() => break,
        };
        let item = match next {
            Err(_) => {
                tracing::info!(%peer, idle_ms = idle.as_millis() as u64, "closing idle connection");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::warn!(%peer, error = %e, "MLLP connection error");
                break;
            }
            Ok(Some(Ok(item))) => item,
        };
        let answer = match item {
            MllpItem::Frame(bytes) => session.handle_from(&bytes, &from, canonical::raw::Channel::Mllp).await,
            MllpItem::Oversized { len, head } => session.handle_oversized(&head, len, from.addr).await,
            MllpItem::Garbage { len } => {
                tracing::warn!(%peer, bytes = len, "skipped bytes outside MLLP framing");
                continue;
            }
        };
        if let Some(ack) = answer.ack
            && let Err(e) = framed.send(ack).await
        {
            tracing::warn!(%peer, error = %e, "could not send the ACK; closing");
            break;
        }
    }
    tracing::debug!(%peer, "connection closed");
}
