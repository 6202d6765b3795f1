//! What a loader produces before it is frozen into the store.
//!
//! Loaders for very different release formats all end in these few plain types, so the store
//! writer, the report and the tests deal with one shape. They own their strings; the store
//! is where lookups become allocation-free.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::RowError;

/// Canonical URIs of the code systems the enrichment treats as standard.
pub mod systems {
    pub const LOINC: &str = "http://loinc.org";
    pub const SNOMED: &str = "http://snomed.info/sct";
    pub const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
    pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
    pub const UCUM: &str = "http://unitsofmeasure.org";
    /// Prefix of the HL7 v2 table code systems, followed by the 4-digit table number.
    pub const HL7V2_PREFIX: &str = "http://terminology.hl7.org/CodeSystem/v2-";

    /// The FHIR system URI of HL7 v2 table `table` (e.g. 1 -> `.../v2-0001`).
    pub fn hl7v2_table(table: u32) -> String {
        format!("{HL7V2_PREFIX}{table:04}")
    }

    /// Maps the coding-system names senders put in CWE-3 (HL7 table 0396) and other common
    /// spellings to the canonical URI. Returns `None` for names we do not recognise.
    pub fn canonical_uri(name: &str) -> Option<&'static str> {
        // Exact URIs first: they are what the normalize stage should produce.
        for uri in [LOINC, SNOMED, ICD10CM, RXNORM, UCUM] {
            if name == uri {
                return Some(uri);
            }
        }
        let n = name.trim();
        let is = |s: &str| n.eq_ignore_ascii_case(s);
        if is("LN") || is("LOINC") {
            Some(LOINC)
        } else if is("SCT") || is("SNM") || is("SNOMED") || is("SNOMEDCT") || is("SNOMED-CT") {
            Some(SNOMED)
        } else if is("I10C") || is("ICD10CM") || is("ICD-10-CM") || is("I10") {
            Some(ICD10CM)
        } else if is("RXNORM") || is("RXN") {
            Some(RXNORM)
        } else if is("UCUM") {
            Some(UCUM)
        } else {
            None
        }
    }
}

/// Lifecycle status of a concept, as the release marks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConceptStatus {
    Active,
    Inactive,
    Deprecated,
    Discouraged,
    Trial,
}

impl ConceptStatus {
    pub(crate) fn to_u32(self) -> u32 {
        match self {
            ConceptStatus::Active => 0,
            ConceptStatus::Inactive => 1,
            ConceptStatus::Deprecated => 2,
            ConceptStatus::Discouraged => 3,
            ConceptStatus::Trial => 4,
        }
    }
    pub(crate) fn from_u32(v: u32) -> ConceptStatus {
        match v {
            0 => ConceptStatus::Active,
            1 => ConceptStatus::Inactive,
            2 => ConceptStatus::Deprecated,
            3 => ConceptStatus::Discouraged,
            _ => ConceptStatus::Trial,
        }
    }
    /// The FHIR-style lower-case name (`active`, `inactive`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ConceptStatus::Active => "active",
            ConceptStatus::Inactive => "inactive",
            ConceptStatus::Deprecated => "deprecated",
            ConceptStatus::Discouraged => "discouraged",
            ConceptStatus::Trial => "trial",
        }
    }
    /// Whether a code with this status may still be used as a valid code.
    pub fn is_usable(self) -> bool {
        matches!(self, ConceptStatus::Active | ConceptStatus::Trial | ConceptStatus::Discouraged)
    }
}

/// One concept as loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptContent {
    pub code: String,
    pub display: String,
    pub status: ConceptStatus,
    /// Named properties (e.g. LOINC `COMPONENT`, SNOMED `fsn`), in release order.
    pub properties: Vec<(String, String)>,
    /// Codes of direct is-a parents (SNOMED is-a, ICD-10-CM chapter structure).
    pub parents: Vec<String>,
}

impl ConceptContent {
    pub fn new(code: impl Into<String>, display: impl Into<String>) -> Self {
        ConceptContent {
            code: code.into(),
            display: display.into(),
            status: ConceptStatus::Active,
            properties: Vec::new(),
            parents: Vec::new(),
        }
    }
}

/// One version of one code system.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeSystemContent {
    /// Canonical URI (e.g. `http://loinc.org`).
    pub system: String,
    /// Release version (e.g. `2.80`, `20250301`).
    pub version: String,
    /// Human-readable name.
    pub name: String,
    /// Where it was loaded from (file name), for the report and `lookup` output.
    pub source: String,
    pub concepts: Vec<ConceptContent>,
}

/// FHIR R4 ConceptMap equivalence of one mapping target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Equivalence {
    RelatedTo,
    Equivalent,
    Equal,
    Wider,
    Subsumes,
    Narrower,
    Specializes,
    Inexact,
    Unmatched,
    Disjoint,
}

impl Equivalence {
    const ALL: [(Equivalence, &'static str); 10] = [
        (Equivalence::RelatedTo, "relatedto"),
        (Equivalence::Equivalent, "equivalent"),
        (Equivalence::Equal, "equal"),
        (Equivalence::Wider, "wider"),
        (Equivalence::Subsumes, "subsumes"),
        (Equivalence::Narrower, "narrower"),
        (Equivalence::Specializes, "specializes"),
        (Equivalence::Inexact, "inexact"),
        (Equivalence::Unmatched, "unmatched"),
        (Equivalence::Disjoint, "disjoint"),
    ];
    pub fn as_str(self) -> &'static str {
        Self::ALL[self.to_u32() as usize].1
    }
    /// Parses the FHIR code (R4 `equivalence`, or R5 `relationship` names mapped to R4).
    pub fn parse(s: &str) -> Option<Equivalence> {
        match s {
            "related-to" => return Some(Equivalence::RelatedTo),
            "equivalent" => return Some(Equivalence::Equivalent),
            "source-is-narrower-than-target" => return Some(Equivalence::Narrower),
            "source-is-broader-than-target" => return Some(Equivalence::Wider),
            "not-related-to" => return Some(Equivalence::Disjoint),
            _ => {}
        }
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(e, _)| *e)
    }
    pub(crate) fn to_u32(self) -> u32 {
        Self::ALL.iter().position(|(e, _)| *e == self).unwrap_or(0) as u32
    }
    pub(crate) fn from_u32(v: u32) -> Equivalence {
        Self::ALL.get(v as usize).map(|(e, _)| *e).unwrap_or(Equivalence::RelatedTo)
    }
    /// Whether a target with this equivalence can stand beside the original as "the same
    /// concept" (FHIR `$translate` result=true semantics).
    pub fn is_match(self) -> bool {
        !matches!(self, Equivalence::Unmatched | Equivalence::Disjoint)
    }
}

/// One target of a mapping element.
#[derive(Debug, Clone, PartialEq)]
pub struct MapTarget {
    pub code: String,
    pub display: String,
    pub equivalence: Equivalence,
}

/// One source code and what it maps to.
#[derive(Debug, Clone, PartialEq)]
pub struct MapElement {
    pub code: String,
    pub targets: Vec<MapTarget>,
}

/// A group of a ConceptMap: one source system to one target system.
#[derive(Debug, Clone, PartialEq)]
pub struct MapGroup {
    pub source_system: String,
    pub target_system: String,
    pub elements: Vec<MapElement>,
}

/// A ConceptMap, either public or a sender's local code map.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptMapContent {
    pub url: String,
    pub version: String,
    pub name: String,
    /// Set for a per-sender local code map: only that sender's events use it.
    pub sender: Option<String>,
    pub source: String,
    pub groups: Vec<MapGroup>,
}

/// A filter of a ValueSet include (only `is-a` / `descendent-of` / `=` are expanded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueSetFilter {
    pub property: String,
    pub op: String,
    pub value: String,
}

/// One include or exclude of a ValueSet compose.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ValueSetInclude {
    pub system: Option<String>,
    pub version: Option<String>,
    /// Enumerated concepts: (code, display given by the value set if any).
    pub concepts: Vec<(String, Option<String>)>,
    pub filters: Vec<ValueSetFilter>,
    /// Other value sets included by canonical URL.
    pub value_sets: Vec<String>,
}

/// A ValueSet definition (compose only; expansions are computed).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ValueSetContent {
    pub url: String,
    pub version: String,
    pub name: String,
    pub source: String,
    pub include: Vec<ValueSetInclude>,
    pub exclude: Vec<ValueSetInclude>,
}

/// What a loader does with a malformed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadPolicy {
    /// Skip the row, keep loading, list it in the report.
    #[default]
    SkipAndReport,
    /// Refuse the whole load at the first malformed row.
    Refuse,
}

/// Options common to every loader.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub policy: LoadPolicy,
    /// Version to record when the file does not carry one (LOINC and RxNorm files do not).
    pub version: Option<String>,
    /// Marks a loaded ConceptMap as a sender's local map.
    pub sender: Option<String>,
}

/// How many skipped rows a report keeps verbatim (the count is always exact).
pub const MAX_REPORTED_ROWS: usize = 1000;

/// What one load did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadReport {
    /// Format name (`loinc`, `snomed-rf2`, ...).
    pub format: String,
    pub files: Vec<PathBuf>,
    /// Code system URI, or ConceptMap / ValueSet URL.
    pub target: String,
    pub version: String,
    /// Data rows read (not counting headers).
    pub rows_read: u64,
    /// Concepts, map elements or value sets loaded.
    pub loaded: u64,
    /// Rows deliberately not loaded (e.g. RxNorm atoms from other sources), not errors.
    pub filtered: u64,
    /// Number of malformed rows skipped.
    pub skipped_count: u64,
    /// The first [`MAX_REPORTED_ROWS`] malformed rows.
    pub skipped: Vec<RowError>,
    /// Other remarks (missing parents, defaults applied...).
    pub notes: Vec<String>,
}

impl LoadReport {
    pub(crate) fn new(format: &str, file: PathBuf) -> Self {
        LoadReport { format: format.to_string(), files: vec![file], ..Default::default() }
    }

    /// Records a malformed row according to the policy: `Err` under `Refuse`.
    pub(crate) fn reject(&mut self, policy: LoadPolicy, err: RowError) -> Result<(), crate::error::TerminologyError> {
        match policy {
            LoadPolicy::Refuse => Err(crate::error::TerminologyError::MalformedRow(err)),
            LoadPolicy::SkipAndReport => {
                self.skipped_count += 1;
                if self.skipped.len() < MAX_REPORTED_ROWS {
                    self.skipped.push(err);
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} version {}: {} rows read, {} loaded, {} filtered, {} malformed rows skipped",
            self.format, self.target, self.version, self.rows_read, self.loaded, self.filtered, self.skipped_count
        )?;
        for e in &self.skipped {
            write!(f, "\n  skipped {e}")?;
        }
        if (self.skipped.len() as u64) < self.skipped_count {
            write!(f, "\n  ... and {} more", self.skipped_count - self.skipped.len() as u64)?;
        }
        for n in &self.notes {
            write!(f, "\n  note: {n}")?;
        }
        Ok(())
    }
}
