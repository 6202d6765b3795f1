//! Terminology for Arteria: code systems, concept maps, value sets and UCUM units, with
//! loaders for the official release formats, a compact embedded store, FHIR-style operations
//! (lookup, validate-code, subsumes, translate, expand) and the enrichment the
//! terminology-enrich stage applies to every event.
//!
//! Entry points:
//! - [`Terminology::builtin`] / [`Terminology::open`]: the shipped content (LOINC starter set,
//!   HL7 v2 tables, UCUM) plus any store files written by `load`.
//! - [`loaders::load`] + [`StoreBuilder`]: load release files and write a store file.
//! - [`Enricher`]: adds standard codings, displays and UCUM units beside the originals.

pub mod builtin;
pub mod content;
pub mod enrich;
pub mod error;
pub mod loaders;
pub mod ops;
pub mod store;
pub mod ucum;
pub mod units;

pub use content::{
    CodeSystemContent, ConceptContent, ConceptMapContent, ConceptStatus, Equivalence, LoadOptions, LoadPolicy,
    LoadReport, ValueSetContent, systems,
};
pub use enrich::{
    Action, CodeableConcept, Coding, EnrichOptions, Enrichable, Enricher, EnrichmentReport, NotMappedReason, Quantity,
    ReportEntry,
};
pub use error::{Result, RowError, TerminologyError};
pub use loaders::{Format, LoadRequest, LoadedContent, load, load_into_store};
pub use ops::{ExpansionItem, Subsumption, Terminology, Translation, Validation};
pub use store::{CodeSystemRef, ConceptMapRef, ConceptRef, Store, StoreBuilder};
pub use ucum::{Canonical, Ucum, UcumError};
pub use units::{UnitResolution, UnitTable};
