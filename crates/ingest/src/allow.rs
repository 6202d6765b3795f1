//! The per-sender allow-list: which sending applications and facilities (MSH-3/MSH-4) may send,
//! optionally only from given peer addresses or, over mutual TLS, only with a client certificate
//! issued for given names. An integration team onboards a sender by adding a rule, and a
//! misconfigured or rogue sender gets a clear AR instead of polluting the feed.

use crate::peer::Peer;
use serde::Deserialize;
use std::net::IpAddr;

/// One rule. Empty or absent parts match anything; `*` too.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AllowRule {
    /// MSH-3.1 (namespace id), compared case-sensitively.
    pub application: Option<String>,
    /// MSH-4.1 (namespace id).
    pub facility: Option<String>,
    /// Peer IP addresses this sender connects from.
    pub peers: Vec<IpAddr>,
    /// Names (subjectAltName DNS names or IP addresses) the sender's client certificate must
    /// be valid for, any one of them. Needs mutual TLS (`[ingest.tls] client_ca`): without a
    /// verified client certificate such a rule never matches.
    pub cert_names: Vec<String>,
}

fn part_matches(rule: &Option<String>, value: &str) -> bool {
    match rule.as_deref() {
        None | Some("") | Some("*") => true,
        Some(r) => r == value,
    }
}

impl AllowRule {
    pub fn matches(&self, application: &str, facility: &str, peer: &Peer) -> bool {
        let ip = peer.addr.map(|a| a.ip());
        part_matches(&self.application, application)
            && part_matches(&self.facility, facility)
            && (self.peers.is_empty() || ip.is_some_and(|p| self.peers.contains(&p)))
            && (self.cert_names.is_empty() || self.cert_names.iter().any(|n| peer.certified_as(n)))
    }
}

/// True when `rules` is empty or any rule matches.
pub fn allowed(rules: &[AllowRule], application: &str, facility: &str, peer: &Peer) -> bool {
    rules.is_empty() || rules.iter().any(|r| r.matches(application, facility, peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(app: &str, fac: &str, peers: &[&str]) -> AllowRule {
        AllowRule {
            application: Some(app.into()),
            facility: Some(fac.into()),
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            cert_names: vec![],
        }
    }

    fn from(ip: &str) -> Peer {
        Peer::at(std::net::SocketAddr::new(ip.parse().unwrap(), 4000))
    }

    #[test]
    fn empty_list_allows_everyone() {
        assert!(allowed(&[], "ANY", "WHERE", &Peer::default()));
    }

    #[test]
    fn application_facility_and_peer_must_all_match() {
        let rules = [rule("LAB", "NORTH", &["127.0.0.9"])];
        let (p9, p1) = (from("127.0.0.9"), from("127.0.0.1"));
        assert!(allowed(&rules, "LAB", "NORTH", &p9));
        assert!(!allowed(&rules, "LAB", "NORTH", &p1), "wrong peer");
        assert!(!allowed(&rules, "LAB", "SOUTH", &p9), "wrong facility");
        assert!(!allowed(&rules, "RIS", "NORTH", &p9), "wrong application");
        assert!(!allowed(&rules, "LAB", "NORTH", &Peer::default()), "peer required but unknown");
    }

    #[test]
    fn wildcards_and_missing_parts_match_anything() {
        let rules = [AllowRule { application: Some("LAB".into()), facility: Some("*".into()), ..Default::default() }];
        assert!(allowed(&rules, "LAB", "ANYWHERE", &Peer::default()));
        assert!(!allowed(&rules, "ADT", "ANYWHERE", &Peer::default()));
    }

    /// A client certificate for `names`, as the handshake would hand it over.
    fn certified(names: &[&str]) -> Peer {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        Peer { client_cert: Some(std::sync::Arc::new(cert.der().clone().into_owned())), ..from("127.0.0.1") }
    }

    #[test]
    fn cert_names_match_the_client_certificate_san_only() {
        let rules = [AllowRule {
            application: Some("LAB".into()),
            cert_names: vec!["lab.north.test".into()],
            ..Default::default()
        }];
        assert!(allowed(&rules, "LAB", "NORTH", &certified(&["lab.north.test"])));
        assert!(allowed(&rules, "LAB", "NORTH", &certified(&["*.north.test"])), "wildcard certificate");
        assert!(!allowed(&rules, "LAB", "NORTH", &certified(&["ris.north.test"])), "other name");
        assert!(!allowed(&rules, "LAB", "NORTH", &from("127.0.0.1")), "no client certificate");
        assert!(!allowed(&rules, "RIS", "NORTH", &certified(&["lab.north.test"])), "name right, application wrong");
    }
}
