//! Arteria's contract types: the Rust side of the Avro records in `schemas/*.avsc`.
//!
//! The `.avsc` files are the source of truth; every type here has a test that its derived
//! schema is exactly the committed file, so a drift is caught before it reaches a topic.
//! `model` is the FHIR R4-aligned model the mapping fills; it also describes the typed Avro
//! records (`org.arteria.fhir.r4`) that carry each resource beside its FHIR JSON ([`typed`]).

pub mod audit;
mod avro_body;
pub mod current;
pub mod event;
pub mod json_text;
pub mod model;
pub mod raw;
pub mod time;
pub mod typed;
mod typed_stream;
mod wire_schema;

pub use audit::{Actor, AuditAction, AuditEvent, AuditOutcome};
pub use current::FhirResource;
pub use event::{ClinicalEvent, Issue, IssueSeverity, Provenance, Resource};
pub use raw::{Channel, RawMessage, SenderId};

/// Avro namespace shared by every contract record. The `v1` is the contract generation:
/// a change that cannot be made backward compatible goes to a new namespace and new topics.
pub const NAMESPACE: &str = "org.arteria.v1";

/// Wire fields derived from `fhir_json` while encoding (the typed FHIR records, see
/// [`typed`]): a service that reads only `fhir_json` skips them when decoding
/// (`bus::Registry::skipping_on_decode`), which is most of the decode cost otherwise.
pub const DERIVED_FIELDS: &[&str] = &["typed"];

#[cfg(test)]
pub(crate) mod schema_file {
    //! Test helper: loads a committed `.avsc` and compares it with a derived schema.
    use apache_avro::Schema;
    use std::path::PathBuf;

    /// Parses `schemas/<file>` from the workspace root.
    pub fn load(file: &str) -> Schema {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas").join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Schema::parse_str(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
    }

    /// Asserts that two schemas are the same: same canonical form (what the wire depends on)
    /// and the same full JSON (defaults, docs and logical types, which resolution depends on).
    pub fn assert_same(derived: &Schema, file: &str) {
        let committed = load(file);
        assert_eq!(
            derived.canonical_form(),
            committed.canonical_form(),
            "canonical form of the Rust type differs from schemas/{file}"
        );
        let d = serde_json::to_value(derived).expect("derived schema serialises");
        let c = serde_json::to_value(&committed).expect("committed schema serialises");
        assert_eq!(
            d,
            c,
            "the Rust type's schema differs from schemas/{file}; derived:\n{}",
            serde_json::to_string_pretty(&d).unwrap()
        );
    }
}
