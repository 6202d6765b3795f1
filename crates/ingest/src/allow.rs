//! The per-sender allow-list: which sending applications and facilities (MSH-3/MSH-4) may send,
//! optionally only from given peer addresses. An integration team onboards a sender by adding
//! a rule, and a misconfigured or rogue sender gets a clear AR instead of polluting the feed.

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
}

fn part_matches(rule: &Option<String>, value: &str) -> bool {
    match rule.as_deref() {
        None | Some("") | Some("*") => true,
        Some(r) => r == value,
    }
}

impl AllowRule {
    pub fn matches(&self, application: &str, facility: &str, peer: Option<IpAddr>) -> bool {
        part_matches(&self.application, application)
            && part_matches(&self.facility, facility)
            && (self.peers.is_empty() || peer.is_some_and(|p| self.peers.contains(&p)))
    }
}

/// True when `rules` is empty or any rule matches.
pub fn allowed(rules: &[AllowRule], application: &str, facility: &str, peer: Option<IpAddr>) -> bool {
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
        }
    }

    #[test]
    fn empty_list_allows_everyone() {
        assert!(allowed(&[], "ANY", "WHERE", None));
    }

    #[test]
    fn application_facility_and_peer_must_all_match() {
        let rules = [rule("LAB", "NORTH", &["127.0.0.9"])];
        let p9 = Some("127.0.0.9".parse().unwrap());
        let p1 = Some("127.0.0.1".parse().unwrap());
        assert!(allowed(&rules, "LAB", "NORTH", p9));
        assert!(!allowed(&rules, "LAB", "NORTH", p1), "wrong peer");
        assert!(!allowed(&rules, "LAB", "SOUTH", p9), "wrong facility");
        assert!(!allowed(&rules, "RIS", "NORTH", p9), "wrong application");
        assert!(!allowed(&rules, "LAB", "NORTH", None), "peer required but unknown");
    }

    #[test]
    fn wildcards_and_missing_parts_match_anything() {
        let rules = [AllowRule { application: Some("LAB".into()), facility: Some("*".into()), peers: vec![] }];
        assert!(allowed(&rules, "LAB", "ANYWHERE", None));
        assert!(!allowed(&rules, "ADT", "ANYWHERE", None));
    }
}
