//! The canonical clinical model: lean Rust types aligned with FHIR R4, serialising to valid
//! FHIR R4 JSON.
//!
//! Every source format (HL7 v2, C-CDA, FHIR) is mapped into these types, so analysts and
//! services see one model whatever the sender. Only the elements Arteria fills are modelled;
//! each is exactly the FHIR R4 element of the same name, so the JSON needs no post-processing.
//! Dates and times are kept as FHIR strings (`date`, `dateTime`, `instant`) with the precision
//! and offset of the source — never reinterpreted in the server's zone.
//!
//! JSON comes from the serde derive or from [`json`], the writer generated beside it for the hot
//! path (never string concatenation); tests check that both give the same bytes.

#[macro_use]
mod macros;
pub mod avro;
pub mod datatypes;
pub mod json;
pub mod resources;

pub use datatypes::*;
pub use json::JsonWrite;
pub use resources::*;

/// Whether an element is empty and so left out of the JSON (FHIR forbids empty elements).
pub trait Skip {
    fn skip(&self) -> bool;
}

impl<T: Skip> Skip for Option<T> {
    fn skip(&self) -> bool {
        self.as_ref().is_none_or(Skip::skip)
    }
}

impl<T: Skip> Skip for Box<T> {
    fn skip(&self) -> bool {
        (**self).skip()
    }
}

/// Values that are never "empty": `false` and `0` are meaningful.
macro_rules! never_skip {
    ($($t:ty),*) => { $(impl Skip for $t { fn skip(&self) -> bool { false } })* };
}
never_skip!(bool, u32, u64, i32, i64);

impl<T> Skip for Vec<T> {
    fn skip(&self) -> bool {
        self.is_empty()
    }
}

impl Skip for String {
    fn skip(&self) -> bool {
        self.is_empty()
    }
}

impl Skip for std::borrow::Cow<'static, str> {
    fn skip(&self) -> bool {
        self.is_empty()
    }
}

impl Skip for &'static str {
    fn skip(&self) -> bool {
        self.is_empty()
    }
}
