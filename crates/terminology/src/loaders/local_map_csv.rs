//! Loader for a sender's local code map as CSV, the form integration teams keep them in:
//! `source_system,source_code,target_system,target_code[,target_display[,equivalence]]`.
//!
//! It becomes a ConceptMap (one group per source/target system pair) that applies to the
//! sender given in [`LoadOptions::sender`]; an empty `source_system` matches codes of any
//! system from that sender. HL7 v2 names such as `LN` are accepted as target systems.

use std::path::Path;

use rustc_hash::FxHashMap;

use crate::content::{
    ConceptMapContent, Equivalence, LoadOptions, LoadReport, MapElement, MapGroup, MapTarget, systems,
};
use crate::error::{Result, TerminologyError};
use crate::loaders::{file_name, row_err};

/// Loads a local-map CSV file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<(ConceptMapContent, LoadReport)> {
    let text = std::fs::read(path).map_err(|e| TerminologyError::io(path, e))?;
    let mut rdr =
        csv::ReaderBuilder::new().has_headers(true).flexible(true).trim(csv::Trim::All).from_reader(&text[..]);
    let headers = rdr.headers().map_err(|e| TerminologyError::bad_file(path, e.to_string()))?.clone();
    let want = ["source_system", "source_code", "target_system", "target_code"];
    if headers.len() < 4 || headers.iter().take(4).ne(want) {
        return Err(TerminologyError::bad_file(path, format!("header must start with {}", want.join(","))));
    }
    let name = file_name(path);
    let sender = opts.sender.clone();
    let url = format!("urn:arteria:local-map:{}:{}", sender.as_deref().unwrap_or("public"), name);
    let mut report = LoadReport::new("local-map", path.to_path_buf());
    report.target = url.clone();
    report.version = opts.version.clone().unwrap_or_default();
    let mut groups: Vec<MapGroup> = Vec::new();
    let mut group_of: FxHashMap<(String, String), usize> = FxHashMap::default();
    let mut element_of: FxHashMap<(usize, String), usize> = FxHashMap::default();
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
        if rec.len() < 4 || rec.len() > 6 {
            report.reject(opts.policy, row_err(path, line, format!("expected 4 to 6 fields, found {}", rec.len())))?;
            continue;
        }
        let (src_sys, src_code, tgt_sys, tgt_code) = (&rec[0], &rec[1], &rec[2], &rec[3]);
        if src_code.is_empty() || tgt_code.is_empty() || tgt_sys.is_empty() {
            report
                .reject(opts.policy, row_err(path, line, "source_code, target_system and target_code are required"))?;
            continue;
        }
        let equivalence = match rec.get(5).filter(|s| !s.is_empty()) {
            None => Equivalence::Equivalent,
            Some(s) => match Equivalence::parse(s) {
                Some(e) => e,
                None => {
                    report.reject(opts.policy, row_err(path, line, format!("unknown equivalence {s:?}")))?;
                    continue;
                }
            },
        };
        let tgt_sys = systems::canonical_uri(tgt_sys).unwrap_or(tgt_sys).to_string();
        let gi = *group_of.entry((src_sys.to_string(), tgt_sys.clone())).or_insert_with(|| {
            groups.push(MapGroup {
                source_system: src_sys.to_string(),
                target_system: tgt_sys.clone(),
                elements: Vec::new(),
            });
            groups.len() - 1
        });
        let ei = *element_of.entry((gi, src_code.to_string())).or_insert_with(|| {
            groups[gi].elements.push(MapElement { code: src_code.to_string(), targets: Vec::new() });
            report.loaded += 1;
            groups[gi].elements.len() - 1
        });
        groups[gi].elements[ei].targets.push(MapTarget {
            code: tgt_code.to_string(),
            display: rec.get(4).unwrap_or("").to_string(),
            equivalence,
        });
    }
    Ok((
        ConceptMapContent { url, version: report.version.clone(), name: name.clone(), sender, source: name, groups },
        report,
    ))
}
