//! Deterministic resource ids, so that a replayed or re-sent message produces the same ids
//! and downstream stores update rather than duplicate.
//!
//! An id is SHA-256 over (tenant, resource type, natural key parts), each part length-prefixed
//! so that no two different keys can produce the same input, shaped as an RFC 9562 version 8
//! UUID (usable both as a FHIR id and in a `urn:uuid:` fullUrl). The tenant salts every id:
//! the same MRN at two tenants is two patients. Event resources are keyed by (sender, control
//! id, segment position), never by a sender's "unique" number alone — two OBRs with the same
//! OBR-2 in one message are two resources.
//!
//! An event resource's id starts with a time lead ([`time_lead`]): four bytes hashed from the
//! second its message was sent (MSH-7). The ids of one second share their first eight hex
//! digits, so a store keyed by id inserts them side by side instead of each on its own random
//! B-tree leaf (that random leaf was most of the query store's disk writes). The lead is hashed
//! rather than the time itself so an id read in a log or an audit trail does not show when the
//! patient was seen; it is keyed by the tenant only, which hides the time from a reader, not
//! from someone who knows the tenant and enumerates seconds. Master data (Patient by
//! identifier, Practitioner, …) outlives any one message and keeps the plain hash.

use sha2::{Digest, Sha256};

/// A deterministic id for a resource of type `rtype` with the natural key `parts`.
pub fn id(tenant: &str, rtype: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    feed(&mut h, &[tenant, rtype]);
    feed(&mut h, parts);
    finish(h, None)
}

/// The lead of the event ids of a message sent at `sent` (MSH-7's text): a hash of the tenant
/// and the timestamp's leading digits up to the second (`YYYYMMDDHHMMSS`; fractions and the
/// offset left out, so the lead changes once a second at most). `None` when `sent` does not
/// start with a digit: such ids keep the plain hash.
pub fn time_lead(tenant: &str, sent: &str) -> Option<[u8; 4]> {
    let digits = sent.bytes().take(14).take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let mut h = Sha256::new();
    feed(&mut h, &["arteria-id-time-lead", tenant, &sent[..digits]]);
    let d = h.finalize();
    Some([d[0], d[1], d[2], d[3]])
}

/// The hash state after a key's first parts, for the ids that share them: every event resource
/// of a message starts with (tenant, type, sender, control id), so the blocks those fill are
/// hashed once per message instead of once per resource. `Prefix::new(t, r, a).id(b)` is
/// `id(t, r, a ++ b)`.
#[derive(Clone)]
pub struct Prefix(Sha256, Option<[u8; 4]>);

impl Prefix {
    pub fn new(tenant: &str, rtype: &str, parts: &[&str]) -> Prefix {
        let mut h = Sha256::new();
        feed(&mut h, &[tenant, rtype]);
        feed(&mut h, parts);
        Prefix(h, None)
    }

    /// The same prefix, its ids starting with `lead` (see [`time_lead`]).
    pub fn led_by(self, lead: Option<[u8; 4]>) -> Prefix {
        Prefix(self.0, lead)
    }

    /// The id of the key made of the prefix's parts and then `parts`.
    pub fn id(&self, parts: &[&str]) -> String {
        let mut h = self.0.clone();
        feed(&mut h, parts);
        finish(h, self.1)
    }
}

/// Feeds the length-prefixed `parts`, gathered on the stack and hashed in one update (this runs
/// for every resource and reference; many small updates cost more than the hashing itself).
fn feed(h: &mut Sha256, parts: &[&str]) {
    // Sized for the usual key (longer ones are hashed in pieces): zeroing it is per id too.
    let mut buf = [0u8; 128];
    let mut n = 0;
    for p in parts {
        let len = (p.len() as u64).to_be_bytes();
        if n + len.len() + p.len() > buf.len() {
            h.update(&buf[..n]);
            n = 0;
            if len.len() + p.len() > buf.len() {
                h.update(len);
                h.update(p.as_bytes());
                continue;
            }
        }
        buf[n..n + len.len()].copy_from_slice(&len);
        n += len.len();
        buf[n..n + p.len()].copy_from_slice(p.as_bytes());
        n += p.len();
    }
    h.update(&buf[..n]);
}

/// The digest shaped as an RFC 9562 version 8 UUID in lower-case hex, its first four bytes
/// replaced by `lead` when there is one (96 bits of the key's hash remain).
fn finish(h: Sha256, lead: Option<[u8; 4]>) -> String {
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    if let Some(lead) = lead {
        b[..4].copy_from_slice(&lead);
    }
    b[6] = (b[6] & 0x0F) | 0x80; // version 8 (custom)
    b[8] = (b[8] & 0x3F) | 0x80; // RFC 9562 variant
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // 8-4-4-4-12: where each byte's two digits go.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut s = *b"00000000-0000-0000-0000-000000000000";
    for (byte, at) in b.iter().zip(AT) {
        s[at] = HEX[usize::from(byte >> 4)];
        s[at + 1] = HEX[usize::from(byte & 0xF)];
    }
    String::from_utf8(s.to_vec()).expect("hex digits and dashes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_salted_and_unambiguous() {
        let a = id("t1", "Patient", &["HOSP", "123"]);
        assert_eq!(a, id("t1", "Patient", &["HOSP", "123"]));
        assert_ne!(a, id("t2", "Patient", &["HOSP", "123"]));
        assert_ne!(a, id("t1", "Practitioner", &["HOSP", "123"]));
        assert_ne!(id("t", "P", &["ab", "c"]), id("t", "P", &["a", "bc"]));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert!(a.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()));
    }

    /// The id of a key longer than the stack buffer is the SHA-256 of the same byte stream.
    #[test]
    fn long_keys_hash_the_same_stream() {
        let long = "x".repeat(700);
        let mid = "y".repeat(300);
        let mut h = Sha256::new();
        for p in ["t", "P", &mid, &long, &mid, "z"] {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        let d = h.finalize();
        let hex: String = d[..4].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&id("t", "P", &[&mid, &long, &mid, "z"])[..8], hex);
        assert_ne!(id("t", "P", &[&mid, &long]), id("t", "P", &[&long, &mid]));
    }

    /// Ids led by one second's lead share their first eight digits and differ after; another
    /// second, another tenant or no time give other leads; the rest of the id is the key's.
    #[test]
    fn ids_of_one_second_share_their_lead() {
        let lead = time_lead("t", "20261126071503.25+0100");
        assert_eq!(lead, time_lead("t", "20261126071503"), "fractions and offset are not in the lead");
        assert_eq!(lead, time_lead("t", "20261126071503-0500"));
        assert_ne!(lead, time_lead("t", "20261126071504"));
        assert_ne!(lead, time_lead("u", "20261126071503"));
        assert_eq!(time_lead("t", ""), None);
        assert_eq!(time_lead("t", "yesterday"), None);
        assert!(time_lead("t", "202611").is_some(), "a coarse time still leads");

        let p = Prefix::new("t", "Observation", &["LAB|H1", "MSG1"]).led_by(lead);
        let q = Prefix::new("t", "Observation", &["LAB|H1", "MSG2"]).led_by(lead);
        let (a, b) = (p.id(&["3", ""]), q.id(&["3", ""]));
        assert_eq!(a[..8], b[..8]);
        assert_ne!(a[9..], b[9..]);
        let hex: String = lead.unwrap().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(a[..8], hex);
        let plain = id("t", "Observation", &["LAB|H1", "MSG1", "3", ""]);
        assert_ne!(a[..8], plain[..8]);
        assert_eq!(a[8..], plain[8..], "after the lead, the id is the key's hash");
        assert_eq!(&a[14..15], "8");
        // The time is not readable from the lead.
        assert!(!a.starts_with("2026") && !a.contains("071503"));
    }

    /// A prefix finished with the other parts is the id of all the parts, whatever the
    /// lengths (prefixes shorter and longer than a block, parts longer than the stack buffer).
    #[test]
    fn prefix_then_parts_is_the_whole_key() {
        let long = "x".repeat(300);
        for a in ["", "ab", "a-sender-key|with-some-length", long.as_str()] {
            for b in ["", "1", "12", long.as_str()] {
                let p = Prefix::new("tenant", "Observation", &[a, "control"]);
                assert_eq!(p.id(&[b, "extra"]), id("tenant", "Observation", &[a, "control", b, "extra"]));
                assert_eq!(p.id(&[b, "extra"]), p.clone().id(&[b, "extra"]), "the prefix is not used up");
            }
        }
    }
}
