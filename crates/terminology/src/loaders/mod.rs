//! Loaders for the official release formats.
//!
//! Each loader streams its file(s), returns plain content ([`crate::content`]) and a
//! [`LoadReport`] (rows read, loaded, filtered, malformed rows with file and line). A
//! [`LoadPolicy`] decides whether a malformed row is skipped and reported or refuses the load.
//! [`load`] picks the loader by [`Format`]; [`LoadedContent::add_to`] puts the result in a store.

pub mod fhir_json;
pub mod hl7v2_tables;
pub mod icd10cm;
pub mod local_map_csv;
pub mod loinc;
pub mod rxnorm;
pub mod snomed;
pub mod ucum_essence;

use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::content::{CodeSystemContent, ConceptMapContent, LoadOptions, LoadReport, ValueSetContent};
use crate::error::{Result, RowError, TerminologyError};
use crate::store::StoreBuilder;
use crate::ucum::UcumEssence;

pub use crate::content::LoadPolicy;

/// A release format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// LOINC table `Loinc.csv`.
    Loinc,
    /// SNOMED CT RF2 snapshot (a directory, or the concept file with its siblings beside it).
    SnomedRf2,
    /// ICD-10-CM CMS order file (`icd10cm_order_YYYY.txt`).
    Icd10cmOrder,
    /// RxNorm `RXNCONSO.RRF`.
    RxnormRrf,
    /// `ucum-essence.xml`.
    UcumEssence,
    /// FHIR CodeSystem / ValueSet / ConceptMap JSON (or a Bundle of them).
    FhirJson,
    /// HL7 v2 tables CSV (`table,code,display[,status]`).
    Hl7v2Tables,
    /// A sender's local code map as CSV (`source_system,source_code,target_system,target_code,...`).
    LocalMapCsv,
}

impl Format {
    pub const NAMES: [(&'static str, Format); 8] = [
        ("loinc", Format::Loinc),
        ("snomed", Format::SnomedRf2),
        ("icd10cm", Format::Icd10cmOrder),
        ("rxnorm", Format::RxnormRrf),
        ("ucum", Format::UcumEssence),
        ("fhir", Format::FhirJson),
        ("hl7v2-tables", Format::Hl7v2Tables),
        ("local-map", Format::LocalMapCsv),
    ];

    /// Parses a format name as the CLI takes it (`loinc`, `snomed`, `icd10cm`, ...).
    pub fn parse(name: &str) -> Option<Format> {
        Self::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, f)| *f)
    }

    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, f)| *f == self).map(|(n, _)| *n).unwrap_or("?")
    }

    /// Guesses the format from the file or directory name of an official release file.
    pub fn detect(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if path.is_dir() || name.starts_with("sct2_") {
            Some(Format::SnomedRf2)
        } else if name == "loinc.csv" {
            Some(Format::Loinc)
        } else if name.starts_with("icd10cm_order") {
            Some(Format::Icd10cmOrder)
        } else if name == "rxnconso.rrf" {
            Some(Format::RxnormRrf)
        } else if name.starts_with("ucum-essence") && name.ends_with(".xml") {
            Some(Format::UcumEssence)
        } else if name.ends_with(".json") {
            Some(Format::FhirJson)
        } else if name.contains("hl7v2") && name.ends_with(".csv") {
            Some(Format::Hl7v2Tables)
        } else if name.contains("map") && name.ends_with(".csv") {
            Some(Format::LocalMapCsv)
        } else {
            None
        }
    }
}

/// Everything one load produced.
#[derive(Debug, Clone, Default)]
pub struct LoadedContent {
    pub code_systems: Vec<CodeSystemContent>,
    pub concept_maps: Vec<ConceptMapContent>,
    pub value_sets: Vec<ValueSetContent>,
    /// The parsed essence and its XML text (kept verbatim in the store).
    pub ucum: Option<(UcumEssence, String)>,
}

impl LoadedContent {
    /// Adds the content to a store; returns notes (duplicate codes, dangling parents).
    pub fn add_to(&self, builder: &mut StoreBuilder) -> Vec<String> {
        let mut notes = Vec::new();
        for cs in &self.code_systems {
            for n in builder.add_code_system(cs) {
                notes.push(format!("{} {}: {n}", cs.system, cs.version));
            }
        }
        for cm in &self.concept_maps {
            builder.add_concept_map(cm);
        }
        for vs in &self.value_sets {
            builder.add_value_set(vs);
        }
        if let Some((e, xml)) = &self.ucum {
            builder.add_ucum_essence(&e.version, xml);
        }
        notes
    }
}

/// Loads one release file (or SNOMED directory) in the given format.
pub fn load(format: Format, path: &Path, opts: &LoadOptions) -> Result<(LoadedContent, LoadReport)> {
    let mut out = LoadedContent::default();
    let report = match format {
        Format::Loinc => {
            let (cs, r) = loinc::load(path, opts)?;
            out.code_systems.push(cs);
            r
        }
        Format::SnomedRf2 => {
            let files = snomed::Rf2Files::find(path)?;
            let (cs, r) = snomed::load(&files, opts)?;
            out.code_systems.push(cs);
            r
        }
        Format::Icd10cmOrder => {
            let (cs, r) = icd10cm::load(path, opts)?;
            out.code_systems.push(cs);
            r
        }
        Format::RxnormRrf => {
            let (cs, r) = rxnorm::load(path, opts)?;
            out.code_systems.push(cs);
            r
        }
        Format::UcumEssence => {
            let xml = std::fs::read_to_string(path).map_err(|e| TerminologyError::io(path, e))?;
            let (essence, r) = ucum_essence::parse_str(&xml, path, opts.clone())?;
            out.ucum = Some((essence, xml));
            r
        }
        Format::FhirJson => {
            let (c, r) = fhir_json::load(path, opts)?;
            out = c;
            r
        }
        Format::Hl7v2Tables => {
            let (v, r) = hl7v2_tables::load(path, opts)?;
            out.code_systems = v;
            r
        }
        Format::LocalMapCsv => {
            let (m, r) = local_map_csv::load(path, opts)?;
            out.concept_maps.push(m);
            r
        }
    };
    Ok((out, report))
}

/// Reads a text file line by line (LF or CRLF), giving 1-based line numbers; a line that is
/// not UTF-8 is passed as an error so the loader can reject that row alone.
pub(crate) struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    line: u64,
    path: PathBuf,
}

impl<R: BufRead> Lines<R> {
    pub(crate) fn new(reader: R, path: &Path) -> Self {
        Lines { reader, buf: Vec::new(), line: 0, path: path.to_path_buf() }
    }

    /// Next line: `Ok(Some((line_no, Ok(text) | Err(row_error))))`, or `Ok(None)` at the end.
    #[allow(clippy::type_complexity)]
    pub(crate) fn next_line(&mut self) -> Result<Option<(u64, std::result::Result<&str, RowError>)>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf).map_err(|e| TerminologyError::io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        let line = self.line;
        match std::str::from_utf8(&self.buf) {
            Ok(s) => Ok(Some((line, Ok(s)))),
            Err(e) => Ok(Some((
                line,
                Err(RowError { file: self.path.clone(), line, reason: format!("not valid UTF-8 ({e})") }),
            ))),
        }
    }
}

pub(crate) fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>> {
    let f = std::fs::File::open(path).map_err(|e| TerminologyError::io(path, e))?;
    Ok(std::io::BufReader::with_capacity(1 << 16, f))
}

pub(crate) fn row_err(path: &Path, line: u64, reason: impl Into<String>) -> RowError {
    RowError { file: path.to_path_buf(), line, reason: reason.into() }
}

/// The file name, for `CodeSystemContent::source`.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// A version from the file name (`..._20250301.txt`, `icd10cm_order_2025.txt`), if any.
pub(crate) fn version_from_name(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    let last = stem.rsplit(['_', '-']).next()?;
    (last.len() >= 4 && last.bytes().all(|b| b.is_ascii_digit())).then(|| last.to_string())
}

/// One file to load into a store (what `arteria terminology load` takes).
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// The format; `None` detects it from the file name ([`Format::detect`]).
    pub format: Option<Format>,
    pub path: PathBuf,
    pub options: LoadOptions,
}

/// Loads files into the store file at `store`, keeping what it already holds (content with
/// the same identity is replaced). The store is written once, atomically, after every file
/// loaded; a refused load leaves the store untouched. Returns one report per file.
pub fn load_into_store(store: &Path, requests: &[LoadRequest]) -> Result<Vec<LoadReport>> {
    let mut builder =
        if store.exists() { StoreBuilder::from_store(&crate::store::Store::open(store)?) } else { StoreBuilder::new() };
    let mut reports = Vec::with_capacity(requests.len());
    for r in requests {
        let format = match r.format.or_else(|| Format::detect(&r.path)) {
            Some(f) => f,
            None => {
                return Err(TerminologyError::bad_file(
                    &r.path,
                    "cannot tell the format from the file name; name it (loinc, snomed, icd10cm, rxnorm, ucum, fhir, hl7v2-tables, local-map)",
                ));
            }
        };
        let (content, mut report) = load(format, &r.path, &r.options)?;
        report.notes.extend(content.add_to(&mut builder));
        reports.push(report);
    }
    builder.write(store)?;
    Ok(reports)
}
