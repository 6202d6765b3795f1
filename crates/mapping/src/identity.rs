//! Deterministic resource ids, so that a replayed or re-sent message produces the same ids
//! and downstream stores update rather than duplicate.
//!
//! An id is SHA-256 over (tenant, resource type, natural key parts), each part length-prefixed
//! so that no two different keys can produce the same input, shaped as an RFC 9562 version 8
//! UUID (usable both as a FHIR id and in a `urn:uuid:` fullUrl). The tenant salts every id:
//! the same MRN at two tenants is two patients. Event resources are keyed by (sender, control
//! id, segment position), never by a sender's "unique" number alone — two OBRs with the same
//! OBR-2 in one message are two resources.

use sha2::{Digest, Sha256};

/// A deterministic id for a resource of type `rtype` with the natural key `parts`.
pub fn id(tenant: &str, rtype: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in [tenant, rtype].iter().chain(parts) {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0F) | 0x80; // version 8 (custom)
    b[8] = (b[8] & 0x3F) | 0x80; // RFC 9562 variant
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[usize::from(byte >> 4)] as char);
        s.push(HEX[usize::from(byte & 0xF)] as char);
    }
    s
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
}
