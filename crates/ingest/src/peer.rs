//! Who a message came from, as far as the connection can vouch for it: the socket address and,
//! over mutual TLS, the client certificate the handshake verified. The allow-list matches on
//! both; the raw record and dead letters keep the address only.

use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;

/// The sending side of one connection.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// Remote socket address (none for messages that did not come over a socket).
    pub addr: Option<SocketAddr>,
    /// The end-entity certificate the client presented, verified against `[ingest.tls]
    /// client_ca` during the handshake. None without mutual TLS.
    pub client_cert: Option<Arc<CertificateDer<'static>>>,
}

impl Peer {
    /// A peer known by its address only (plain TCP, or TLS without client certificates).
    pub fn at(addr: SocketAddr) -> Self {
        Self { addr: Some(addr), client_cert: None }
    }

    /// True when the verified client certificate is valid for `name`, checked the way a client
    /// checks a server certificate: a DNS name (wildcards in the certificate honoured) or IP
    /// address among its subjectAltNames. The subject CN is not consulted, as in current
    /// WebPKI practice. False without a client certificate.
    pub fn certified_as(&self, name: &str) -> bool {
        let Some(der) = &self.client_cert else { return false };
        let Ok(cert) = webpki::EndEntityCert::try_from(der.as_ref()) else { return false };
        let Ok(name) = ServerName::try_from(name) else { return false };
        cert.verify_is_valid_for_subject_name(&name).is_ok()
    }
}
