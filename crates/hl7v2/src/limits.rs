//! Configurable ceilings on what one message may cost, so a hostile or broken sender cannot
//! exhaust memory: checked during the single indexing pass, each with its own clear error.

/// Limits applied while parsing. The defaults accept large embedded documents (a base64 PDF
/// in OBX-5) while bounding the index a single message can make us build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in bytes (default 64 MiB).
    pub max_message_bytes: usize,
    /// Most segments in one message (default 100 000).
    pub max_segments: usize,
    /// Longest single field, in bytes (default 32 MiB).
    pub max_field_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message_bytes: 64 << 20, max_segments: 100_000, max_field_bytes: 32 << 20 }
    }
}
