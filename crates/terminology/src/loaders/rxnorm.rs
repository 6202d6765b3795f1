//! RxNorm loader for `RXNCONSO.RRF` (pipe-delimited, 18 fields and a trailing `|`).
//!
//! Only atoms with `SAB=RXNORM` describe RxNorm concepts; others (other sources in the full
//! release) are counted as filtered, not errors. Each RXCUI gets the display of its
//! preferred term type (SCD, SBD, GPCK, BPCK, then ingredient and dose-form types); the term
//! type is kept as the `tty` property.

use std::path::Path;

use rustc_hash::FxHashMap;

use crate::content::{CodeSystemContent, ConceptContent, LoadOptions, LoadReport, systems};
use crate::error::Result;
use crate::loaders::{Lines, file_name, open, row_err, version_from_name};

const TTY_PREFERENCE: [&str; 14] =
    ["SCD", "SBD", "GPCK", "BPCK", "IN", "PIN", "MIN", "BN", "SCDC", "SBDC", "SCDF", "SBDF", "SCDG", "DF"];

fn rank(tty: &str, suppress: &str) -> usize {
    let base = TTY_PREFERENCE.iter().position(|t| *t == tty).unwrap_or(TTY_PREFERENCE.len());
    // Suppressed atoms only win when nothing else describes the concept.
    if suppress == "N" || suppress.is_empty() { base } else { base + 100 }
}

/// Loads `RXNCONSO.RRF`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<(CodeSystemContent, LoadReport)> {
    let mut lines = Lines::new(open(path)?, path);
    let version = opts.version.clone().or_else(|| version_from_name(path)).unwrap_or_else(|| "unknown".into());
    let mut report = LoadReport::new("rxnorm", path.to_path_buf());
    report.target = systems::RXNORM.into();
    report.version = version.clone();
    let mut concepts: Vec<ConceptContent> = Vec::new();
    let mut best: FxHashMap<String, (usize, usize)> = FxHashMap::default(); // rxcui -> (concept idx, rank)
    while let Some((line_no, text)) = lines.next_line()? {
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                report.rows_read += 1;
                report.reject(opts.policy, e)?;
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        report.rows_read += 1;
        let f: Vec<&str> = text.split('|').collect();
        // 18 fields, each followed by '|': 19 pieces with an empty last one.
        if f.len() != 19 || !f[18].is_empty() {
            report.reject(
                opts.policy,
                row_err(path, line_no, format!("expected 18 '|'-terminated fields, found {}", f.len() - 1)),
            )?;
            continue;
        }
        let (rxcui, lat, sab, tty, str_, suppress) = (f[0], f[1], f[11], f[12], f[14], f[16]);
        if rxcui.is_empty() || !rxcui.bytes().all(|b| b.is_ascii_digit()) {
            report.reject(opts.policy, row_err(path, line_no, format!("RXCUI {rxcui:?} is not numeric")))?;
            continue;
        }
        if str_.is_empty() {
            report.reject(opts.policy, row_err(path, line_no, format!("{rxcui}: empty STR")))?;
            continue;
        }
        if sab != "RXNORM" || lat != "ENG" {
            report.filtered += 1;
            continue;
        }
        let r = rank(tty, suppress);
        match best.get_mut(rxcui) {
            Some((i, old)) => {
                if r < *old {
                    *old = r;
                    concepts[*i].display = str_.to_string();
                    concepts[*i].properties = vec![("tty".into(), tty.to_string())];
                }
            }
            None => {
                let mut c = ConceptContent::new(rxcui, str_);
                c.properties.push(("tty".into(), tty.to_string()));
                best.insert(rxcui.to_string(), (concepts.len(), r));
                concepts.push(c);
            }
        }
    }
    report.loaded = concepts.len() as u64;
    Ok((
        CodeSystemContent {
            system: systems::RXNORM.into(),
            version,
            name: "RxNorm".into(),
            source: file_name(path),
            concepts,
        },
        report,
    ))
}
