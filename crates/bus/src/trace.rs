//! W3C Trace Context (`traceparent`) without a tracing dependency.
//!
//! The bus only has to carry trace context across Kafka: parse the header, make a child span
//! id for what it produces, and format it again. Keeping this tiny and dependency-free lets
//! the telemetry crate bridge it to OpenTelemetry without the bus depending on an OTel version.

use std::fmt;
use std::str::FromStr;

/// A parsed `traceparent` (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

/// Why a `traceparent` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceParseError {
    #[error("traceparent must be 55 characters (00-<32 hex>-<16 hex>-<2 hex>), got {0}")]
    Length(usize),
    #[error("traceparent has a malformed field: {0}")]
    Field(&'static str),
    #[error("traceparent version ff is invalid")]
    InvalidVersion,
    #[error("traceparent {0} id is all zeros")]
    ZeroId(&'static str),
}

const SAMPLED: u8 = 0x01;

impl TraceParent {
    /// A new root trace (random ids), sampled.
    pub fn new_root() -> Self {
        let mut trace_id = random_bytes::<16>();
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        Self { trace_id, parent_id: new_span_id(), flags: SAMPLED }
    }

    /// The same trace with a fresh span id: the context for something this span produces.
    pub fn child(&self) -> Self {
        Self { trace_id: self.trace_id, parent_id: new_span_id(), flags: self.flags }
    }

    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// Lower-case hex trace id, as logs and audit events store it.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// Lower-case hex span id.
    pub fn parent_id_hex(&self) -> String {
        hex(&self.parent_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.parent_id), self.flags)
    }
}

impl FromStr for TraceParent {
    type Err = TraceParseError;

    /// Parses per W3C Trace Context level 1: versions other than 00 are accepted when the
    /// first four fields have the version-00 shape (forward compatibility), ff is refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() < 55 || (s.len() > 55 && s.as_bytes()[55] != b'-') {
            return Err(TraceParseError::Length(s.len()));
        }
        let b = s.as_bytes();
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(TraceParseError::Field("separator"));
        }
        let version = parse_hex::<1>(&s[0..2]).ok_or(TraceParseError::Field("version"))?[0];
        if version == 0xff {
            return Err(TraceParseError::InvalidVersion);
        }
        if version == 0 && s.len() != 55 {
            return Err(TraceParseError::Length(s.len()));
        }
        let trace_id = parse_hex::<16>(&s[3..35]).ok_or(TraceParseError::Field("trace-id"))?;
        let parent_id = parse_hex::<8>(&s[36..52]).ok_or(TraceParseError::Field("parent-id"))?;
        let flags = parse_hex::<1>(&s[53..55]).ok_or(TraceParseError::Field("trace-flags"))?[0];
        if trace_id == [0; 16] {
            return Err(TraceParseError::ZeroId("trace"));
        }
        if parent_id == [0; 8] {
            return Err(TraceParseError::ZeroId("parent"));
        }
        Ok(Self { trace_id, parent_id, flags })
    }
}

fn new_span_id() -> [u8; 8] {
    let mut id = random_bytes::<8>();
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// Random bytes from UUID v4 (already a dependency; good enough for trace ids, which need
/// uniqueness, not secrecy).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(16) {
        let u = uuid::Uuid::new_v4();
        chunk.copy_from_slice(&u.as_bytes()[..chunk.len()]);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Lower-case hex only: the spec forbids upper case.
fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        out[i] = (val(pair[0])? << 4) | val(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_spec_example() {
        let tp: TraceParent = EXAMPLE.parse().unwrap();
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id_hex(), "00f067aa0ba902b7");
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), EXAMPLE);
    }

    #[test]
    fn child_keeps_trace_and_changes_span() {
        let tp: TraceParent = EXAMPLE.parse().unwrap();
        let c = tp.child();
        assert_eq!(c.trace_id, tp.trace_id);
        assert_ne!(c.parent_id, tp.parent_id);
        assert_eq!(c.flags, tp.flags);
        assert_eq!(c.to_string().parse::<TraceParent>().unwrap(), c);
    }

    #[test]
    fn roots_are_distinct_and_valid() {
        let a = TraceParent::new_root();
        let b = TraceParent::new_root();
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(a.to_string().parse::<TraceParent>().unwrap(), a);
    }

    #[test]
    fn rejects_malformed_values() {
        let bad = [
            ("", TraceParseError::Length(0)),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", TraceParseError::Length(54)),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", TraceParseError::Field("trace-id")),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", TraceParseError::ZeroId("trace")),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", TraceParseError::ZeroId("parent")),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceParseError::InvalidVersion),
            ("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceParseError::Field("separator")),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", TraceParseError::Length(57)),
        ];
        for (input, want) in bad {
            assert_eq!(input.parse::<TraceParent>(), Err(want), "{input:?}");
        }
    }

    #[test]
    fn future_versions_with_extra_fields_are_accepted() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(v.parse::<TraceParent>().is_ok());
    }

    #[test]
    fn never_panics_on_arbitrary_ascii_and_utf8() {
        let inputs = ["é".repeat(30), "-".repeat(55), "0".repeat(55), format!("{}\u{1F600}", &EXAMPLE[..51])];
        for i in inputs {
            let _ = i.parse::<TraceParent>();
        }
    }
}
