//! The client side of TLS for `arteria send` (MLLP) and `arteria query` (gRPC): which CAs to
//! trust for the server's certificate, an optional client certificate for servers that require
//! one (mutual TLS), and the name the server's certificate must be valid for.

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The TLS options of `arteria send` and `arteria query`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Connect over TLS.
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the CA certificates to trust for the server's certificate (default: the
    /// system's trusted CAs).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain, leaf first, for servers that require one (mutual TLS).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "cert"])]
    pub key: Option<PathBuf>,
    /// Name the server's certificate must be valid for (default: the host part of its address).
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub server_name: Option<String>,
}

/// A configured TLS client for one receiver.
pub struct TlsClient {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl TlsClient {
    /// The TLS handshake over an open connection.
    pub async fn connect(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.name.clone(), stream).await
    }
}

fn certificates(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the {what} file {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!("the {what} file {} holds no CERTIFICATE PEM block", path.display());
    }
    Ok(certs)
}

/// The host part of `HOST:PORT` (`[v6]:PORT` too).
fn host_of(to: &str) -> &str {
    let host = to.rsplit_once(':').map(|(h, _)| h).unwrap_or(to);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl TlsArgs {
    /// The client these options describe for a receiver at `to`, or `None` without `--tls`.
    pub fn client(&self, to: &str) -> Result<Option<TlsClient>> {
        let Some((config, name)) = self.config(to)? else { return Ok(None) };
        Ok(Some(TlsClient { connector: TlsConnector::from(Arc::new(config)), name }))
    }

    /// The client configuration and the name to check for a server at `to`, or `None` without
    /// `--tls`.
    pub fn config(&self, to: &str) -> Result<Option<(ClientConfig, ServerName<'static>)>> {
        if !self.tls {
            return Ok(None);
        }
        let mut roots = RootCertStore::empty();
        match &self.ca {
            Some(path) => {
                for ca in certificates("CA", path)? {
                    roots
                        .add(ca)
                        .with_context(|| format!("a certificate in {} cannot be a trust anchor", path.display()))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    bail!("no trusted CA certificates found on this system; pass --ca FILE");
                }
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates("client certificate", cert)?;
                let bytes = std::fs::read(key)
                    .with_context(|| format!("cannot read the private key file {}", key.display()))?;
                let key_der = PrivateKeyDer::from_pem_slice(&bytes).with_context(|| {
                    format!("the private key file {} holds no usable PEM private key", key.display())
                })?;
                builder.with_client_auth_cert(chain, key_der).with_context(|| {
                    format!(
                        "the client certificate {} and key {} cannot be used together",
                        cert.display(),
                        key.display()
                    )
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        let name = self.server_name.clone().unwrap_or_else(|| host_of(to).to_string());
        let name = ServerName::try_from(name.clone())
            .with_context(|| format!("{name:?} is not a DNS name or IP address to check the certificate against"))?;
        Ok(Some((config, name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_defaults_to_the_host_of_to() {
        assert_eq!(host_of("127.0.0.1:2575"), "127.0.0.1");
        assert_eq!(host_of("mllp.example.org:2575"), "mllp.example.org");
        assert_eq!(host_of("[::1]:2575"), "::1");
    }

    #[test]
    fn files_at_fault_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let args = |ca: Option<PathBuf>| TlsArgs { tls: true, ca, ..Default::default() };
        let e = format!("{:#}", args(Some(dir.path().join("missing-ca.pem"))).client("h:1").err().unwrap());
        assert!(e.contains("missing-ca.pem"), "{e}");
        let e = format!("{:#}", args(Some(junk.clone())).client("h:1").err().unwrap());
        assert!(e.contains("junk.pem") && e.contains("no CERTIFICATE"), "{e}");
        assert!(TlsArgs::default().client("h:1").unwrap().is_none(), "no --tls, no TLS");
    }
}
