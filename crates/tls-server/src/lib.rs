//! The server side of TLS that every Arteria listener shares (ingest's MLLP and HTTP, query's
//! gRPC): the `cert` / `key` / `client_ca` PEM files of a `[… .tls]` section, loaded into a
//! rustls [`ServerConfig`], with errors that name the file at fault. Setting `client_ca` makes
//! it mutual: clients must present a certificate chaining to one of those CAs.
//!
//! Every listener counts its failed handshakes by the same closed set of reasons
//! ([`HandshakeFailure`], [`classify`]), so `arteria_tls_handshake_failures_total` means the
//! same on ingest and query.
//!
//! The crypto provider is aws-lc-rs, the one rustls is already built with for the registry
//! client, named explicitly so no process-wide default has to be installed.

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use rustls;

/// The certificate files of one TLS listener. Nothing set (the default) means TLS off.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM file with the server's certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM file with the CA certificates client certificates must chain to; set = mutual TLS.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files cannot be used. Each names the setting or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
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

/// The crypto provider every Arteria TLS endpoint uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsFiles {
    /// True when any file is set, i.e. TLS is meant to be on.
    pub fn configured(&self) -> bool {
        self.cert.is_some() || self.key.is_some() || self.client_ca.is_some()
    }

    /// The rustls server configuration (no ALPN set), or `None` when nothing is configured.
    pub fn server_config(&self) -> Result<Option<ServerConfig>, TlsError> {
        if !self.configured() {
            return Ok(None);
        }
        let (Some(cert_path), Some(key_path)) = (&self.cert, &self.key) else {
            return Err(TlsError::Incomplete(match (&self.cert, &self.key) {
                (None, Some(_)) => "TLS key is set but cert is not; set both to serve TLS",
                (Some(_), None) => "TLS cert is set but key is not; set both to serve TLS",
                _ => "TLS client_ca is set but cert and key are not; mutual TLS needs the server's own certificate too",
            }));
        };
        let chain = certificates("certificate chain", cert_path)?;
        let key = private_key(key_path)?;
        let server_err = |detail: String| TlsError::Server { cert: cert_path.clone(), key: key_path.clone(), detail };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| server_err(e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca_path) => {
                let ca_err = |detail: String| TlsError::ClientCa { path: ca_path.clone(), detail };
                let mut roots = RootCertStore::empty();
                for ca in certificates("client CA", ca_path)? {
                    roots.add(ca).map_err(|e| ca_err(e.to_string()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| ca_err(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        // rustls checks here that the key belongs to the chain's leaf.
        builder.with_single_cert(chain, key).map(Some).map_err(|e| server_err(e.to_string()))
    }
}

/// Why a handshake failed (a metric label; a closed set, so nothing from the peer becomes a
/// label value).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelValue)]
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

/// The reason a server-side handshake failed with `e` (what rustls and the socket said,
/// reduced to [`HandshakeFailure`]; a timeout is the caller's to tell).
pub fn classify(e: &std::io::Error) -> HandshakeFailure {
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Self { dir: tempfile::tempdir().unwrap() }
        }
        fn write(&self, name: &str, content: &[u8]) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::write(&p, content).unwrap();
            p
        }
    }

    /// A self-signed certificate for `localhost` and its key, PEM.
    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn files(cert: Option<PathBuf>, key: Option<PathBuf>, client_ca: Option<PathBuf>) -> TlsFiles {
        TlsFiles { cert, key, client_ca }
    }

    fn err(f: &TlsFiles) -> String {
        f.server_config().expect_err("should be refused").to_string()
    }

    #[test]
    fn nothing_set_means_off_and_a_valid_pair_loads_with_and_without_client_ca() {
        assert!(TlsFiles::default().server_config().unwrap().is_none());
        let f = Files::new();
        let (cert, key) = self_signed();
        let (c, k) = (f.write("c.pem", cert.as_bytes()), f.write("k.pem", key.as_bytes()));
        let ca = f.write("ca.pem", self_signed().0.as_bytes());
        assert!(files(Some(c.clone()), Some(k.clone()), None).server_config().unwrap().is_some());
        assert!(files(Some(c), Some(k), Some(ca)).server_config().unwrap().is_some());
    }

    #[test]
    fn a_missing_file_is_named() {
        let f = Files::new();
        let k = f.write("k.pem", self_signed().1.as_bytes());
        let missing = f.dir.path().join("nope-chain.pem");
        let e = err(&files(Some(missing.clone()), Some(k), None));
        assert!(e.contains("certificate chain") && e.contains(&*missing.to_string_lossy()), "{e}");
    }

    #[test]
    fn bad_or_empty_pem_is_named() {
        let f = Files::new();
        let (cert, key) = self_signed();
        let (c, k) = (f.write("c.pem", cert.as_bytes()), f.write("k.pem", key.as_bytes()));
        let not_pem = f.write("not.pem", b"this is not PEM at all\n");
        let e = err(&files(Some(not_pem.clone()), Some(k.clone()), None));
        assert!(e.contains("holds no CERTIFICATE") && e.contains("not.pem"), "{e}");
        let e = err(&files(Some(c.clone()), Some(not_pem), None));
        assert!(e.contains("private key") && e.contains("holds no PRIVATE KEY") && e.contains("not.pem"), "{e}");
        // A certificate block whose base64 is broken.
        let broken =
            f.write("broken.pem", b"-----BEGIN CERTIFICATE-----\n%%%not base64%%%\n-----END CERTIFICATE-----\n");
        let e = err(&files(Some(broken), Some(k.clone()), None));
        assert!(e.contains("not valid PEM") && e.contains("broken.pem"), "{e}");
        // The key file given as the client CA.
        let e = err(&files(Some(c), Some(k.clone()), Some(k)));
        assert!(e.contains("client CA") && e.contains("k.pem"), "{e}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let f = Files::new();
        let (c, k) = (f.write("c.pem", self_signed().0.as_bytes()), f.write("other-k.pem", self_signed().1.as_bytes()));
        let e = err(&files(Some(c), Some(k), None));
        assert!(e.contains("c.pem") && e.contains("other-k.pem"), "{e}");
    }

    #[test]
    fn half_a_configuration_is_refused() {
        let f = Files::new();
        let c = f.write("c.pem", self_signed().0.as_bytes());
        assert!(err(&files(Some(c.clone()), None, None)).contains("key is not"));
        assert!(err(&files(None, Some(c.clone()), None)).contains("cert is not"));
        assert!(err(&files(None, None, Some(c))).contains("client_ca is set"));
    }
}
