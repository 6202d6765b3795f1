//! TLS on ingest's listeners (`[ingest.tls]`): loading the certificate chain, key and client
//! CAs with errors that name the file at fault, and the server side of each handshake —
//! bounded in time, counted by a closed set of failure reasons, logged without content.
//!
//! The crypto provider is aws-lc-rs, the one rustls is already built with for the registry
//! client, named explicitly so no process-wide default has to be installed.

use crate::config::{IngestConfig, TlsConfig};
use crate::peer::Peer;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use telemetry::Metrics;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Why `[ingest.tls]` cannot be used. Each names the setting or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("[ingest.tls] {0}")]
    Incomplete(&'static str),
    #[error("cannot read the TLS {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS {what} file {path} is not valid PEM: {detail}")]
    BadPem { what: &'static str, path: PathBuf, detail: String },
    #[error("the TLS {what} file {path} holds no {expected} PEM block")]
    Empty { what: &'static str, path: PathBuf, expected: &'static str },
    #[error("the TLS client CA file {path} cannot be used: {detail}")]
    ClientCa { path: PathBuf, detail: String },
    #[error("the TLS certificate chain {cert} and private key {key} cannot be used: {detail}")]
    Server { cert: PathBuf, key: PathBuf, detail: String },
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

/// Why a handshake failed (a metric label; a closed set, so nothing from the peer becomes a
/// label value).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum HandshakeFailure {
    /// The first bytes were not a TLS record: a plaintext client (MLLP or HTTP) on a TLS port.
    not_tls,
    /// Mutual TLS is on and the client sent no certificate.
    no_client_cert,
    /// The client's certificate did not verify (unknown issuer, expired, wrong usage, …).
    bad_client_cert,
    /// The client sent an alert: typically it does not trust our certificate.
    client_alert,
    /// No handshake within `handshake_timeout_ms`.
    timeout,
    /// The connection closed or broke mid-handshake.
    closed,
    /// Any other TLS protocol error (no common version or cipher suite, malformed message, …).
    protocol,
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

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.into(), source })
}

fn bad_pem(what: &'static str, path: &Path, e: pem::Error) -> TlsError {
    TlsError::BadPem { what, path: path.into(), detail: e.to_string() }
}

/// Every `CERTIFICATE` block of a PEM file, at least one.
fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, path)?;
    let certs =
        CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>().map_err(|e| bad_pem(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty { what, path: path.into(), expected: "CERTIFICATE" });
    }
    Ok(certs)
}

/// The first private key block of a PEM file.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "private key";
    let bytes = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::Empty { what, path: path.into(), expected: "PRIVATE KEY" },
        e => bad_pem(what, path, e),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The rustls server configuration `[ingest.tls]` describes (without ALPN).
pub fn server_config(cfg: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&cfg.cert, &cfg.key) else {
        return Err(TlsError::Incomplete(match (&cfg.cert, &cfg.key) {
            (None, Some(_)) => "key is set but cert is not; set both to serve TLS",
            (Some(_), None) => "cert is set but key is not; set both to serve TLS",
            _ => "client_ca is set but cert and key are not; mutual TLS needs the server's own certificate too",
        }));
    };
    let chain = certificates("certificate chain", cert_path)?;
    let key = private_key(key_path)?;
    let server_err = |detail: String| TlsError::Server { cert: cert_path.clone(), key: key_path.clone(), detail };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| server_err(e.to_string()))?;
    let builder = match &cfg.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates("client CA", ca_path)? {
                roots.add(ca).map_err(|e| TlsError::ClientCa { path: ca_path.clone(), detail: e.to_string() })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::ClientCa { path: ca_path.clone(), detail: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // rustls checks here that the key belongs to the chain's leaf.
    builder.with_single_cert(chain, key).map_err(|e| server_err(e.to_string()))
}

fn classify(e: &std::io::Error) -> HandshakeFailure {
    use std::io::ErrorKind;
    if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return match tls {
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => HandshakeFailure::not_tls,
            rustls::Error::NoCertificatesPresented => HandshakeFailure::no_client_cert,
            rustls::Error::InvalidCertificate(_) => HandshakeFailure::bad_client_cert,
            rustls::Error::AlertReceived(_) => HandshakeFailure::client_alert,
            _ => HandshakeFailure::protocol,
        };
    }
    match e.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => HandshakeFailure::closed,
        _ => HandshakeFailure::protocol,
    }
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
        if !cfg.tls.configured() {
            return Ok(None);
        }
        let base = server_config(&cfg.tls)?;
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
    use std::io::Write;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Self { dir: tempfile::tempdir().unwrap() }
        }
        fn write(&self, name: &str, content: &[u8]) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::File::create(&p).unwrap().write_all(content).unwrap();
            p
        }
    }

    /// A self-signed certificate for `localhost` and its key, PEM.
    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn tls(cert: Option<PathBuf>, key: Option<PathBuf>, client_ca: Option<PathBuf>) -> TlsConfig {
        TlsConfig { cert, key, client_ca, ..Default::default() }
    }

    fn err(cfg: &TlsConfig) -> String {
        server_config(cfg).expect_err("should be refused").to_string()
    }

    #[test]
    fn a_valid_pair_loads_with_and_without_client_ca() {
        let f = Files::new();
        let (cert, key) = self_signed();
        let (c, k) = (f.write("c.pem", cert.as_bytes()), f.write("k.pem", key.as_bytes()));
        let ca = f.write("ca.pem", self_signed().0.as_bytes());
        assert!(server_config(&tls(Some(c.clone()), Some(k.clone()), None)).is_ok());
        assert!(server_config(&tls(Some(c), Some(k), Some(ca))).is_ok());
    }

    #[test]
    fn a_missing_file_is_named() {
        let f = Files::new();
        let (_, key) = self_signed();
        let k = f.write("k.pem", key.as_bytes());
        let missing = f.dir.path().join("nope-chain.pem");
        let e = err(&tls(Some(missing.clone()), Some(k), None));
        assert!(e.contains("certificate chain") && e.contains(&*missing.to_string_lossy()), "{e}");
    }

    #[test]
    fn bad_or_empty_pem_is_named() {
        let f = Files::new();
        let (cert, key) = self_signed();
        let (c, k) = (f.write("c.pem", cert.as_bytes()), f.write("k.pem", key.as_bytes()));
        let not_pem = f.write("not.pem", b"this is not PEM at all\n");
        let e = err(&tls(Some(not_pem.clone()), Some(k.clone()), None));
        assert!(e.contains("holds no CERTIFICATE") && e.contains("not.pem"), "{e}");
        let e = err(&tls(Some(c.clone()), Some(not_pem), None));
        assert!(e.contains("private key") && e.contains("holds no PRIVATE KEY") && e.contains("not.pem"), "{e}");
        // A certificate block whose base64 is broken.
        let broken =
            f.write("broken.pem", b"-----BEGIN CERTIFICATE-----\n%%%not base64%%%\n-----END CERTIFICATE-----\n");
        let e = err(&tls(Some(broken), Some(k.clone()), None));
        assert!(e.contains("not valid PEM") && e.contains("broken.pem"), "{e}");
        // The key file given as the client CA.
        let e = err(&tls(Some(c), Some(k.clone()), Some(k)));
        assert!(e.contains("client CA") && e.contains("k.pem"), "{e}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let f = Files::new();
        let (cert, _) = self_signed();
        let (_, other_key) = self_signed();
        let (c, k) = (f.write("c.pem", cert.as_bytes()), f.write("other-k.pem", other_key.as_bytes()));
        let e = err(&tls(Some(c), Some(k), None));
        assert!(e.contains("c.pem") && e.contains("other-k.pem"), "{e}");
    }

    #[test]
    fn half_a_configuration_is_refused() {
        let f = Files::new();
        let c = f.write("c.pem", self_signed().0.as_bytes());
        assert!(err(&tls(Some(c.clone()), None, None)).contains("key is not"));
        assert!(err(&tls(None, Some(c.clone()), None)).contains("cert is not"));
        assert!(err(&tls(None, None, Some(c))).contains("client_ca is set"));
    }

    #[test]
    fn tls_off_by_default_and_cert_names_need_client_ca() {
        let m = Metrics::new();
        assert!(TlsServer::load(&IngestConfig::default(), &m).unwrap().is_none());
        let cfg = IngestConfig {
            allow: vec![crate::allow::AllowRule { cert_names: vec!["lab.test".into()], ..Default::default() }],
            ..Default::default()
        };
        let e = TlsServer::load(&cfg, &m).err().expect("refused").to_string();
        assert!(e.contains("rule 0") && e.contains("client_ca"), "{e}");
    }
}
