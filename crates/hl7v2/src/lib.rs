//! The HL7 v2 engine: a zero-copy ER7 parser, encoder, escapes, character sets, message
//! structures, batch splitting, MLLP framing and ACK building.
//!
//! Parsing is one pass over the bytes that records where segments and fields start and end;
//! repetitions, components and subcomponents are split lazily when asked for, and escape
//! sequences are decoded only on request ([`Value::unescaped`]).
//!
//! ```
//! use hl7v2::Message;
//! let bytes = b"MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101120000||ORU^R01^ORU_R01|MSG1|P|2.5.1\r\
//! PID|1||111^^^HOSP^MR~222^^^SSA^SS||DOE^JANE||19800101|F\r";
//! let msg = Message::parse(bytes).unwrap();
//! assert_eq!(msg.message_type(), Some("ORU"));
//! assert_eq!(msg.get("PID-3[2].1").unwrap().as_str(), "222");
//! assert_eq!(msg.get("PID-5.2").unwrap().as_str(), "JANE");
//! ```
//!
//! Framing (`mllp`, `batch`) is kept apart from the format (`message`, `escape`, `charset`,
//! `encode`, `structure`, `ack`, `path`), so each can be used and tested on its own.

pub mod ack;
pub mod batch;
pub mod charset;
pub mod delimiters;
pub mod encode;
pub mod error;
pub mod escape;
pub mod header;
pub mod limits;
pub mod message;
pub mod mllp;
pub mod path;
mod scan;
pub mod structure;
pub mod value;

pub use ack::{Ack, AckCode, AckMode, ErrDetail};
pub use charset::Charset;
pub use delimiters::Delimiters;

pub use encode::{Leaf, OwnedMessage, OwnedSegment};
pub use error::{ErrorCode, ErrorKind, Location, ParseError};

pub use header::Header;
pub use limits::Limits;
pub use message::{Message, ParseOptions, Segment, Warning};

pub use mllp::{MllpCodec, MllpError, MllpItem};
pub use path::Path;
pub use structure::{Group, Item};
pub use value::{Component, Field, Repetition, Value};
