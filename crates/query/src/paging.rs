//! Page sizes and the opaque `next_page_token`.
//!
//! Paging is by key (the sort key of the last row returned), not by offset, so rows written
//! between two page requests neither repeat nor shift the next page. The token carries that
//! key plus a fingerprint of the query it belongs to, so a token used with different filters
//! is refused instead of silently returning the wrong rows. It is hex so it is safe anywhere
//! (URLs, shells); it is opaque to clients, not secret (it holds a resource id, not PHI).

use crate::store::Cursor;

pub const DEFAULT_SIZE: usize = 50;
pub const MAX_SIZE: usize = 1000;
const VERSION: &str = "q1";
const SEP: char = '\u{1f}';

/// Why a page token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page token is not one this service issued (not hex)")]
    NotHex,
    #[error("page token is not one this service issued (bad layout)")]
    Malformed,
    #[error("page token belongs to a different query; repeat the query with the same filters or drop the token")]
    OtherQuery,
}

/// The effective page size: 0 means the default; larger than the maximum is capped.
pub fn size(requested: u32) -> usize {
    match requested as usize {
        0 => DEFAULT_SIZE,
        n => n.min(MAX_SIZE),
    }
}

/// FNV-1a over the query's parts (separated, so ("ab","c") ≠ ("a","bc")).
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The token for the page after `cursor` of the query with `fingerprint`.
pub fn encode(fingerprint: u64, cursor: &Cursor) -> String {
    let raw = format!("{VERSION}{SEP}{fingerprint:016x}{SEP}{}{SEP}{}", cursor.time, cursor.id);
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The cursor in `token` (None for an empty token: the first page).
pub fn decode(token: &str, fingerprint: u64) -> Result<Option<Cursor>, PageError> {
    if token.is_empty() {
        return Ok(None);
    }
    if !token.len().is_multiple_of(2) {
        return Err(PageError::NotHex);
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or(PageError::NotHex)?;
    let raw = String::from_utf8(bytes).map_err(|_| PageError::Malformed)?;
    let mut parts = raw.splitn(4, SEP);
    let (Some(v), Some(fp), Some(time), Some(id)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(PageError::Malformed);
    };
    if v != VERSION {
        return Err(PageError::Malformed);
    }
    let fp = u64::from_str_radix(fp, 16).map_err(|_| PageError::Malformed)?;
    if fp != fingerprint {
        return Err(PageError::OtherQuery);
    }
    let time = time.parse::<i64>().map_err(|_| PageError::Malformed)?;
    Ok(Some(Cursor { time, id: id.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(0), 50);
        assert_eq!(size(1), 1);
        assert_eq!(size(1000), 1000);
        assert_eq!(size(5000), 1000);
    }

    #[test]
    fn round_trip_and_empty() {
        let fp = fingerprint(&["Observation", "p1", "A"]);
        let c = Cursor { time: -1_700_000_000_123_456, id: "obs|with\u{1f}odd-chars".into() };
        let t = encode(fp, &c);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(decode(&t, fp).unwrap(), Some(c));
        assert_eq!(decode("", fp).unwrap(), None);
        let min = Cursor { time: i64::MIN, id: "x".into() };
        assert_eq!(decode(&encode(fp, &min), fp).unwrap(), Some(min));
    }

    #[test]
    fn refuses_foreign_tokens() {
        let fp = fingerprint(&["a"]);
        let t = encode(fp, &Cursor { time: 1, id: "x".into() });
        assert_eq!(decode(&t, fingerprint(&["b"])), Err(PageError::OtherQuery));
        assert_eq!(decode("zz", fp), Err(PageError::NotHex));
        assert_eq!(decode("abc", fp), Err(PageError::NotHex));
        assert_eq!(decode("6869", fp), Err(PageError::Malformed));
        assert_eq!(decode("ff", fp), Err(PageError::Malformed));
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}
