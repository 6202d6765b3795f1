//! Typed parse errors that say where the problem is and which HL7 Table 0357 code answers it,
//! so that a NAK's ERR segment, a dead-letter record and a CLI message can all be built from
//! the same value.

use std::fmt;

/// HL7 Table 0357, "Message error condition codes".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: message accepted.
    Accepted,
    /// 100: segment sequence error (segment missing, out of place or malformed).
    SegmentSequence,
    /// 101: required field missing.
    RequiredFieldMissing,
    /// 102: data type error.
    DataType,
    /// 103: table value not found.
    TableValueNotFound,
    /// 104: value too long (v2.6+).
    ValueTooLong,
    /// 200: unsupported message type.
    UnsupportedMessageType,
    /// 201: unsupported event code.
    UnsupportedEventCode,
    /// 202: unsupported processing id.
    UnsupportedProcessingId,
    /// 203: unsupported version id.
    UnsupportedVersionId,
    /// 204: unknown key identifier.
    UnknownKey,
    /// 205: duplicate key identifier.
    DuplicateKey,
    /// 206: application record locked.
    RecordLocked,
    /// 207: application internal error.
    ApplicationInternalError,
}

impl ErrorCode {
    /// The numeric code as written in ERR-3 / ERR-1.4.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::Accepted => 0,
            ErrorCode::SegmentSequence => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataType => 102,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::ValueTooLong => 104,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::UnsupportedEventCode => 201,
            ErrorCode::UnsupportedProcessingId => 202,
            ErrorCode::UnsupportedVersionId => 203,
            ErrorCode::UnknownKey => 204,
            ErrorCode::DuplicateKey => 205,
            ErrorCode::RecordLocked => 206,
            ErrorCode::ApplicationInternalError => 207,
        }
    }

    /// The Table 0357 description, used as ERR-3.2.
    pub fn text(self) -> &'static str {
        match self {
            ErrorCode::Accepted => "Message accepted",
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::ValueTooLong => "Value too long",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKey => "Unknown key identifier",
            ErrorCode::DuplicateKey => "Duplicate key identifier",
            ErrorCode::RecordLocked => "Application record locked",
            ErrorCode::ApplicationInternalError => "Application internal error",
        }
    }
}

/// Where in a message a problem sits. Every part is optional because some errors happen
/// before segments can be told apart; `offset` is always known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// Segment id, e.g. `PID`.
    pub segment: Option<String>,
    /// 1-based position of the segment in the message.
    pub segment_index: Option<usize>,
    /// 1-based field number (MSH-1 is the field separator).
    pub field: Option<usize>,
    pub repetition: Option<usize>,
    pub component: Option<usize>,
    pub subcomponent: Option<usize>,
    /// Byte offset in the input (after a byte-order mark; for 8859 input, in the UTF-8 text).
    pub offset: usize,
}

impl Location {
    pub fn at(offset: usize) -> Self {
        Location { offset, ..Default::default() }
    }

    pub fn in_field(segment: &str, segment_index: usize, field: usize, offset: usize) -> Self {
        Location {
            segment: Some(segment.to_string()),
            segment_index: Some(segment_index),
            field: Some(field),
            offset,
            ..Default::default()
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.segment, self.segment_index) {
            (Some(s), Some(i)) => write!(f, "segment {i} ({s})")?,
            (Some(s), None) => write!(f, "segment {s}")?,
            (None, Some(i)) => write!(f, "segment {i}")?,
            (None, None) => {}
        }
        if let Some(field) = self.field {
            let seg = self.segment.as_deref().unwrap_or("?");
            write!(f, ", field {seg}-{field}")?;
            if let Some(r) = self.repetition {
                write!(f, "[{r}]")?;
            }
            if let Some(c) = self.component {
                write!(f, ".{c}")?;
            }
            if let Some(s) = self.subcomponent {
                write!(f, ".{s}")?;
            }
        }
        if self.segment.is_some() || self.segment_index.is_some() {
            write!(f, ", ")?;
        }
        write!(f, "byte {}", self.offset)
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No bytes (or only whitespace / a byte-order mark).
    Empty,
    /// The message does not start with an MSH segment; `found` names the segment id it starts
    /// with (`segment PID`) or its first byte (`byte 0x7B`), never more of it.
    MissingMsh { found: String },
    /// A batch or file header where a single message was expected.
    BatchHeader { found: String },
    /// MSH-1/MSH-2 cannot be read as delimiters.
    BadEncodingCharacters { problem: String },
    /// A required MSH field is empty or absent.
    RequiredFieldMissing { field: usize, name: &'static str },
    /// MSH-12 is not an HL7 v2 version.
    UnsupportedVersion { value: String },
    /// MSH-18 names no character set we know.
    UnknownCharset { value: String },
    /// MSH-18 names a character set this parser does not decode.
    UnsupportedCharset { value: String },
    /// Bytes that are not valid in the declared character set.
    InvalidBytes { charset: &'static str, byte: u8 },
    /// A segment id is not three upper-case letters or digits.
    InvalidSegmentId { found: String },
    /// A second MSH inside what was given as one message.
    UnexpectedMsh,
    /// Message larger than [`crate::Limits::max_message_bytes`].
    MessageTooLarge { len: usize, max: usize },
    /// More segments than [`crate::Limits::max_segments`].
    TooManySegments { max: usize },
    /// A field longer than [`crate::Limits::max_field_bytes`].
    FieldTooLong { len: usize, max: usize },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Empty => write!(f, "empty message: no MSH segment"),
            ErrorKind::MissingMsh { found } => {
                write!(f, "message must start with an MSH segment, found {found}")
            }
            ErrorKind::BatchHeader { found } => {
                write!(f, "{found} is a batch/file header; split the input into messages first")
            }
            ErrorKind::BadEncodingCharacters { problem } => {
                write!(f, "bad delimiters in MSH-1/MSH-2: {problem}")
            }
            ErrorKind::RequiredFieldMissing { field, name } => {
                write!(f, "required field MSH-{field} ({name}) is missing or empty")
            }
            ErrorKind::UnsupportedVersion { value } => {
                write!(f, "MSH-12 version {value:?} is not an HL7 v2 version (2.x)")
            }
            ErrorKind::UnknownCharset { value } => {
                write!(f, "MSH-18 character set {value:?} is not in HL7 Table 0211")
            }
            ErrorKind::UnsupportedCharset { value } => {
                write!(f, "MSH-18 character set {value:?} is not supported (ASCII, 8859/1, 8859/15, UTF-8 are)")
            }
            ErrorKind::InvalidBytes { charset, byte } => {
                write!(f, "byte 0x{byte:02X} is not valid {charset}")
            }
            ErrorKind::InvalidSegmentId { found } => {
                write!(f, "segment id {found:?} is not 3 upper-case letters or digits (truncated or garbled segment)")
            }
            ErrorKind::UnexpectedMsh => {
                write!(f, "a second MSH segment: the input holds several messages; split it as a batch")
            }
            ErrorKind::MessageTooLarge { len, max } => {
                write!(f, "message is {len} bytes, over the limit of {max}")
            }
            ErrorKind::TooManySegments { max } => {
                write!(f, "message has more than {max} segments")
            }
            ErrorKind::FieldTooLong { len, max } => {
                write!(f, "field is {len} bytes, over the limit of {max}")
            }
        }
    }
}

/// A message that could not be parsed: what, where, and the HL7 code to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (at {location})")]
pub struct ParseError {
    pub kind: ErrorKind,
    /// Boxed to keep `Result<Message, ParseError>` small on the happy path.
    pub location: Box<Location>,
}

impl ParseError {
    pub fn new(kind: ErrorKind, location: Location) -> Self {
        ParseError { kind, location: Box::new(location) }
    }

    /// The HL7 Table 0357 code for an ERR segment answering this error.
    pub fn code(&self) -> ErrorCode {
        match &self.kind {
            ErrorKind::Empty
            | ErrorKind::MissingMsh { .. }
            | ErrorKind::BatchHeader { .. }
            | ErrorKind::InvalidSegmentId { .. }
            | ErrorKind::UnexpectedMsh
            | ErrorKind::TooManySegments { .. } => ErrorCode::SegmentSequence,
            ErrorKind::RequiredFieldMissing { .. } => ErrorCode::RequiredFieldMissing,
            ErrorKind::BadEncodingCharacters { .. } | ErrorKind::InvalidBytes { .. } => ErrorCode::DataType,
            ErrorKind::UnknownCharset { .. } => ErrorCode::TableValueNotFound,
            ErrorKind::UnsupportedCharset { .. } => ErrorCode::ApplicationInternalError,
            ErrorKind::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersionId,
            ErrorKind::MessageTooLarge { .. } | ErrorKind::FieldTooLong { .. } => ErrorCode::ValueTooLong,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_place() {
        let e = ParseError::new(
            ErrorKind::RequiredFieldMissing { field: 9, name: "message type" },
            Location::in_field("MSH", 1, 9, 40),
        );
        assert_eq!(
            e.to_string(),
            "required field MSH-9 (message type) is missing or empty (at segment 1 (MSH), field MSH-9, byte 40)"
        );
        assert_eq!(e.code().code(), 101);
    }
}
