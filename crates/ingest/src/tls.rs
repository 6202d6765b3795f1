//! TLS on ingest's listeners (`[ingest.tls]`): the certificate files are loaded by the shared
//! `tls-server` crate (errors name the file at fault); this module adds what is ingest's own —
//! the server side of each handshake, bounded in time, counted by a closed set of failure
//! reasons, logged without content — and checks the allow-list can be satisfied.

use crate::config::IngestConfig;
use crate::peer::Peer;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use telemetry::Metrics;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub use tls_server::HandshakeFailure;
use tls_server::classify;

/// Why `[ingest.tls]` cannot be used. Each names the setting or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("[ingest.tls] {0}")]
    Files(#[from] tls_server::TlsError),
    #[error(
        "[[ingest.allow]] rule {index} lists cert_names, but [ingest.tls] client_ca is not set: no client \
         certificate would ever be verified, so the rule could never match"
    )]
    CertNamesWithoutClientCa { index: usize },
}

/// Which listener a handshake belongs to (a metric label).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Listener {
    mllp,
    http,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    listener: Listener,
    reason: HandshakeFailure,
}

/// The server side of TLS for ingest's listeners.
pub struct TlsServer {
    mllp: TlsAcceptor,
    http: TlsAcceptor,
    mutual: bool,
    timeout: Duration,
    failures: Family<FailureLabels, Counter>,
}

impl TlsServer {
    /// Loads `[ingest.tls]`; `None` when no certificate is configured (TLS off). Also refuses
    /// allow-list rules that need client certificates when mutual TLS is off. Registers
    /// `arteria_tls_handshake_failures_total{listener, reason}` in `metrics`.
    pub fn load(cfg: &IngestConfig, metrics: &Metrics) -> Result<Option<Arc<Self>>, TlsError> {
        if cfg.tls.client_ca.is_none()
            && let Some(index) = cfg.allow.iter().position(|r| !r.cert_names.is_empty())
        {
            return Err(TlsError::CertNamesWithoutClientCa { index });
        }
        let Some(base) = cfg.tls.files().server_config()? else { return Ok(None) };
        let mut http = base.clone();
        // axum serves HTTP/1.1 only; say so, so clients do not try h2.
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        let failures = Family::<FailureLabels, Counter>::default();
        metrics.register(
            "tls_handshake_failures",
            "TLS handshakes that failed on ingest's listeners, by listener and reason",
            failures.clone(),
        );
        Ok(Some(Arc::new(Self {
            mllp: TlsAcceptor::from(Arc::new(base)),
            http: TlsAcceptor::from(Arc::new(http)),
            mutual: cfg.tls.client_ca.is_some(),
            timeout: Duration::from_millis(cfg.tls.handshake_timeout_ms),
            failures,
        })))
    }

    /// True when clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.mutual
    }

    /// Runs the server side of the handshake on `stream` from `addr`. On failure the reason is
    /// counted and logged (address and reason only) and `None` is returned: the caller drops
    /// the connection.
    pub async fn accept<S>(&self, listener: Listener, stream: S, addr: SocketAddr) -> Option<(TlsStream<S>, Peer)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = match listener {
            Listener::mllp => &self.mllp,
            Listener::http => &self.http,
        };
        let reason = match tokio::time::timeout(self.timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                let client_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| Arc::new(c.clone().into_owned()));
                return Some((tls, Peer { addr: Some(addr), client_cert }));
            }
            Ok(Err(e)) => classify(&e),
            Err(_) => HandshakeFailure::timeout,
        };
        self.failures.get_or_create(&FailureLabels { listener, reason }).inc();
        // The reason only: rustls's own message could in principle quote certificate names.
        tracing::info!(listener = ?listener, peer = %addr, reason = ?reason, "TLS handshake failed; connection dropped");
        None
    }

    /// Handshake failures counted so far, for tests and the load harness.
    pub fn failures(&self, listener: Listener, reason: HandshakeFailure) -> u64 {
        self.failures.get_or_create(&FailureLabels { listener, reason }).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsConfig;

    fn with_tls(tls: TlsConfig) -> IngestConfig {
        IngestConfig { tls, ..Default::default() }
    }

    fn load_err(cfg: &IngestConfig) -> String {
        TlsServer::load(cfg, &Metrics::new()).err().expect("refused").to_string()
    }

    #[test]
    fn tls_is_off_by_default() {
        assert!(TlsServer::load(&IngestConfig::default(), &Metrics::new()).unwrap().is_none());
    }

    #[test]
    fn a_missing_or_bad_file_stops_loading_and_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not PEM\n").unwrap();
        let missing = dir.path().join("missing-key.pem");
        let e = load_err(&with_tls(TlsConfig { cert: Some(junk.clone()), key: Some(missing), ..Default::default() }));
        assert!(e.starts_with("[ingest.tls]") && e.contains("junk.pem") && e.contains("CERTIFICATE"), "{e}");

        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        let c = dir.path().join("c.pem");
        std::fs::write(&c, cert.pem()).unwrap();
        let missing = dir.path().join("missing-key.pem");
        let e = load_err(&with_tls(TlsConfig { cert: Some(c.clone()), key: Some(missing), ..Default::default() }));
        assert!(e.contains("private key") && e.contains("missing-key.pem"), "{e}");
        let e = load_err(&with_tls(TlsConfig { cert: Some(c), ..Default::default() }));
        assert!(e.contains("key is not"), "{e}");
    }

    #[test]
    fn cert_names_need_client_ca() {
        let cfg = IngestConfig {
            allow: vec![crate::allow::AllowRule { cert_names: vec!["lab.test".into()], ..Default::default() }],
            ..Default::default()
        };
        let e = load_err(&cfg);
        assert!(e.contains("rule 0") && e.contains("client_ca"), "{e}");
    }
}
