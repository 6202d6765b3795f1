//! Avro `timestamp-micros` for plain `i64` fields.
//!
//! The contract types keep instants as microseconds since the Unix epoch (UTC) rather than a
//! date-time type, so the crate stays free of a time library and the Avro value is exactly the
//! Rust value. Use with `#[avro(with = crate::time::timestamp_micros)]`.

use apache_avro::Schema;
use apache_avro::schema::{Name, NamespaceRef};
use std::collections::HashSet;

/// Schema function for a required `timestamp-micros` field.
pub fn timestamp_micros(_: &mut HashSet<Name>, _: NamespaceRef) -> Schema {
    Schema::TimestampMicros
}

/// Schema function for an optional `timestamp-micros` field (`["null", timestamp-micros]`).
pub fn timestamp_micros_opt(_: &mut HashSet<Name>, _: NamespaceRef) -> Schema {
    Schema::Union(
        apache_avro::schema::UnionSchema::new(vec![Schema::Null, Schema::TimestampMicros])
            .expect("null and long form a valid union"),
    )
}

/// Microseconds since the Unix epoch for `now`; a clock before 1970 reads as 0.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
