//! Loader for HL7 v2 tables in a simple CSV layout: `table,code,display[,status]`.
//!
//! Each table becomes the code system `http://terminology.hl7.org/CodeSystem/v2-NNNN`, the
//! URI HL7 itself gives the v2 tables. (HL7 also publishes the tables as FHIR CodeSystem
//! JSON, which [`crate::loaders::fhir_json`] loads.) The shipped `data/hl7v2-tables.csv`
//! holds the small tables every feed uses.

use std::path::Path;

use rustc_hash::FxHashMap;

use crate::content::{CodeSystemContent, ConceptContent, ConceptStatus, LoadOptions, LoadReport, systems};
use crate::error::{Result, TerminologyError};
use crate::loaders::{file_name, row_err};

/// Loads a tables CSV file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<(Vec<CodeSystemContent>, LoadReport)> {
    let text = std::fs::read_to_string(path).map_err(|e| TerminologyError::io(path, e))?;
    parse_str(&text, path, opts)
}

/// Parses tables CSV text; `path` names it in messages.
pub fn parse_str(text: &str, path: &Path, opts: &LoadOptions) -> Result<(Vec<CodeSystemContent>, LoadReport)> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| TerminologyError::bad_file(path, e.to_string()))?.clone();
    let names: Vec<&str> = headers.iter().map(|h| h.trim()).collect();
    if names.len() < 3 || names[0] != "table" || names[1] != "code" || names[2] != "display" {
        return Err(TerminologyError::bad_file(path, "header must start with table,code,display"));
    }
    let version = opts.version.clone().unwrap_or_else(|| "2.9".into());
    let mut report = LoadReport::new("hl7v2-tables", path.to_path_buf());
    report.target = format!("{}*", systems::HL7V2_PREFIX);
    report.version = version.clone();
    let mut tables: Vec<CodeSystemContent> = Vec::new();
    let mut by_table: FxHashMap<u32, usize> = FxHashMap::default();
    for rec in rdr.records() {
        report.rows_read += 1;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                report.reject(opts.policy, row_err(path, line, format!("unreadable CSV row: {e}")))?;
                continue;
            }
        };
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.len() < 3 || rec.len() > 4 {
            report.reject(opts.policy, row_err(path, line, format!("expected 3 or 4 fields, found {}", rec.len())))?;
            continue;
        }
        let table = match rec[0].trim().parse::<u32>() {
            Ok(t) if t <= 9999 => t,
            _ => {
                report.reject(opts.policy, row_err(path, line, format!("table {:?} is not a number", &rec[0])))?;
                continue;
            }
        };
        let code = rec[1].trim();
        if code.is_empty() {
            report.reject(opts.policy, row_err(path, line, "empty code"))?;
            continue;
        }
        let status = match rec.get(3).map(str::trim).unwrap_or("") {
            "" | "active" => ConceptStatus::Active,
            "deprecated" => ConceptStatus::Deprecated,
            "inactive" | "retired" => ConceptStatus::Inactive,
            other => {
                report.reject(opts.policy, row_err(path, line, format!("unknown status {other:?}")))?;
                continue;
            }
        };
        let i = *by_table.entry(table).or_insert_with(|| {
            tables.push(CodeSystemContent {
                system: systems::hl7v2_table(table),
                version: version.clone(),
                name: format!("HL7 v2 table {table:04}"),
                source: file_name(path),
                concepts: Vec::new(),
            });
            tables.len() - 1
        });
        if tables[i].concepts.iter().any(|c| c.code == code) {
            report.reject(opts.policy, row_err(path, line, format!("table {table:04} code {code:?} appears twice")))?;
            continue;
        }
        let mut c = ConceptContent::new(code, rec[2].trim());
        c.status = status;
        tables[i].concepts.push(c);
        report.loaded += 1;
    }
    report.notes.push(format!("{} tables", tables.len()));
    Ok((tables, report))
}
