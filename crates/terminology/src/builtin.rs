//! The content Arteria ships and enriches with out of the box: a LOINC starter set of the
//! common lab tests and vital signs, the common HL7 v2 tables, and UCUM (the essence is
//! used by [`crate::ucum::Ucum::builtin`]). Sources and licences: `data/README.md`.
//!
//! The shipped files are compiled in (`include_str!`) and turned into a store once per
//! process through the same loaders and store writer the `load` command uses, so the
//! default install exercises the production path.

use std::borrow::Cow;
use std::path::Path;
use std::sync::OnceLock;

use crate::content::{LoadOptions, LoadPolicy, LoadReport};
use crate::loaders::{hl7v2_tables, loinc};
use crate::store::{Store, StoreBuilder};

/// LOINC starter set in `Loinc.csv` layout.
pub const LOINC_STARTER: &str = include_str!("../data/loinc-starter.csv");
/// Version recorded for the starter set (names as of the LOINC release it was checked against).
pub const LOINC_STARTER_VERSION: &str = "2.80-starter";
/// HL7 v2 tables, `table,code,display[,status]`.
pub const HL7V2_TABLES: &str = include_str!("../data/hl7v2-tables.csv");
/// The LOINC notice that must accompany the starter set.
pub const LOINC_NOTICE: &str = "This material contains content from LOINC (http://loinc.org). LOINC is copyright © \
Regenstrief Institute, Inc. and the Logical Observation Identifiers Names and Codes (LOINC) Committee and is \
available at no cost under the license at http://loinc.org/license.";

struct Built {
    bytes: Vec<u8>,
    reports: Vec<LoadReport>,
}

fn build() -> Built {
    // Shipped files are tested to load without a single skipped row (see tests); Refuse
    // here would only hide the whole default install behind one typo, so skip and report.
    let opts =
        LoadOptions { policy: LoadPolicy::SkipAndReport, version: Some(LOINC_STARTER_VERSION.into()), sender: None };
    let mut b = StoreBuilder::new();
    let mut reports = Vec::new();
    if let Ok((cs, r)) = loinc::load_reader(LOINC_STARTER.as_bytes(), Path::new("data/loinc-starter.csv"), &opts) {
        b.add_code_system(&cs);
        reports.push(r);
    }
    let opts = LoadOptions { version: None, ..opts };
    if let Ok((tables, r)) = hl7v2_tables::parse_str(HL7V2_TABLES, Path::new("data/hl7v2-tables.csv"), &opts) {
        for t in &tables {
            b.add_code_system(t);
        }
        reports.push(r);
    }
    Built { bytes: b.to_bytes(), reports }
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(build)
}

/// The shipped store's bytes (built on first use).
pub fn store_bytes() -> &'static [u8] {
    &built().bytes
}

/// Opens the shipped store (cheap after the first call: no copy, no parsing).
pub fn store() -> Store {
    Store::from_bytes(Cow::Borrowed(store_bytes()), "builtin").unwrap_or_else(|_| {
        Store::from_bytes(Cow::Owned(StoreBuilder::new().to_bytes()), "builtin (empty)").expect("empty store")
    })
}

/// What building the shipped store loaded (for `arteria terminology info` and tests).
pub fn load_reports() -> &'static [LoadReport] {
    &built().reports
}
