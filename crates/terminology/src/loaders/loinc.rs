//! LOINC table loader (`Loinc.csv` from the LOINC release, or a file in its column layout).
//!
//! Columns are found by header name, so releases that add or reorder columns still load.
//! Required: `LOINC_NUM` and `LONG_COMMON_NAME` (the display FHIR uses for LOINC). Every
//! code's mod-10 check digit is verified: a wrong digit is a typo that would otherwise map
//! results to the wrong test.

use std::path::Path;

use crate::content::{CodeSystemContent, ConceptContent, ConceptStatus, LoadOptions, LoadReport, systems};
use crate::error::{Result, TerminologyError};
use crate::loaders::{file_name, open, row_err};

/// Columns kept as concept properties (LOINC's own names), when present and non-empty.
const PROPERTY_COLUMNS: [&str; 12] = [
    "COMPONENT",
    "PROPERTY",
    "TIME_ASPCT",
    "SYSTEM",
    "SCALE_TYP",
    "METHOD_TYP",
    "CLASS",
    "CLASSTYPE",
    "SHORTNAME",
    "ORDER_OBS",
    "EXAMPLE_UCUM_UNITS",
    "DisplayName",
];

/// Checks the LOINC code shape `digits-checkdigit` and its mod-10 check digit.
pub fn check_loinc_code(code: &str) -> std::result::Result<(), String> {
    let Some((num, check)) = code.split_once('-') else {
        return Err(format!("LOINC code {code:?} has no check digit ('-d')"));
    };
    if num.is_empty() || num.len() > 7 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("LOINC code {code:?}: part before '-' must be 1-7 digits"));
    }
    if check.len() != 1 || !check.as_bytes()[0].is_ascii_digit() {
        return Err(format!("LOINC code {code:?}: check digit must be one digit"));
    }
    let expected = loinc_check_digit(num);
    if check.as_bytes()[0] - b'0' != expected {
        return Err(format!("LOINC code {code:?}: check digit should be {expected}"));
    }
    Ok(())
}

/// LOINC's mod-10 algorithm: from the right, double every other digit starting with the
/// rightmost, sum the digits of all products and plain digits; the check digit brings the
/// sum to a multiple of ten.
pub fn loinc_check_digit(num: &str) -> u8 {
    let mut sum = 0u32;
    for (i, b) in num.bytes().rev().enumerate() {
        let d = (b - b'0') as u32;
        sum += if i % 2 == 0 {
            let x = d * 2;
            x / 10 + x % 10
        } else {
            d
        };
    }
    ((10 - sum % 10) % 10) as u8
}

fn status(s: &str) -> Option<ConceptStatus> {
    Some(match s.trim().to_ascii_uppercase().as_str() {
        "" | "ACTIVE" => ConceptStatus::Active,
        "TRIAL" => ConceptStatus::Trial,
        "DISCOURAGED" => ConceptStatus::Discouraged,
        "DEPRECATED" => ConceptStatus::Deprecated,
        _ => return None,
    })
}

/// Loads a `Loinc.csv` file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<(CodeSystemContent, LoadReport)> {
    load_reader(open(path)?, path, opts)
}

/// Loads Loinc.csv content from any reader; `path` names it in messages.
pub fn load_reader(
    reader: impl std::io::Read,
    path: &Path,
    opts: &LoadOptions,
) -> Result<(CodeSystemContent, LoadReport)> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(reader);
    let headers = rdr
        .headers()
        .map_err(|e| TerminologyError::bad_file(path, format!("cannot read the header row: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.trim().trim_start_matches('\u{feff}') == name);
    let (Some(c_num), Some(c_long)) = (col("LOINC_NUM"), col("LONG_COMMON_NAME")) else {
        return Err(TerminologyError::bad_file(
            path,
            "header must name the LOINC_NUM and LONG_COMMON_NAME columns (is this Loinc.csv?)",
        ));
    };
    let c_status = col("STATUS");
    let c_short = col("SHORTNAME");
    let prop_cols: Vec<(&'static str, usize)> =
        PROPERTY_COLUMNS.iter().filter_map(|n| col(n).map(|i| (*n, i))).collect();
    let version = opts.version.clone().unwrap_or_else(|| "unknown".into());
    let mut report = LoadReport::new("loinc", path.to_path_buf());
    report.target = systems::LOINC.into();
    report.version = version.clone();
    let mut seen = rustc_hash::FxHashSet::default();
    let mut concepts = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line_hint = rdr.position().line();
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(line_hint);
                if let csv::ErrorKind::Io(_) = e.kind() {
                    return Err(TerminologyError::bad_file(path, e.to_string()));
                }
                report.rows_read += 1;
                report.reject(opts.policy, row_err(path, line, format!("unreadable CSV row: {e}")))?;
                continue;
            }
        }
        report.rows_read += 1;
        let line = record.position().map(|p| p.line()).unwrap_or(line_hint);
        if record.len() != headers.len() {
            report.reject(
                opts.policy,
                row_err(path, line, format!("expected {} fields, found {}", headers.len(), record.len())),
            )?;
            continue;
        }
        let code = record[c_num].trim();
        if let Err(msg) = check_loinc_code(code) {
            report.reject(opts.policy, row_err(path, line, msg))?;
            continue;
        }
        let mut display = record[c_long].trim();
        if display.is_empty() {
            display = c_short.map(|i| record[i].trim()).unwrap_or("");
        }
        if display.is_empty() {
            report.reject(opts.policy, row_err(path, line, format!("{code}: LONG_COMMON_NAME is empty")))?;
            continue;
        }
        let st = match c_status.map(|i| &record[i]) {
            None => ConceptStatus::Active,
            Some(s) => match status(s) {
                Some(st) => st,
                None => {
                    report.reject(opts.policy, row_err(path, line, format!("{code}: unknown STATUS {s:?}")))?;
                    continue;
                }
            },
        };
        if !seen.insert(code.to_string()) {
            report.reject(opts.policy, row_err(path, line, format!("{code}: duplicate LOINC_NUM")))?;
            continue;
        }
        let mut c = ConceptContent::new(code, display);
        c.status = st;
        for (name, i) in &prop_cols {
            let v = record[*i].trim();
            if !v.is_empty() {
                c.properties.push(((*name).to_string(), v.to_string()));
            }
        }
        concepts.push(c);
    }
    report.loaded = concepts.len() as u64;
    let cs = CodeSystemContent {
        system: systems::LOINC.into(),
        version,
        name: "LOINC".into(),
        source: file_name(path),
        concepts,
    };
    Ok((cs, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits() {
        for ok in ["2345-7", "718-7", "4548-4", "8480-6", "94500-6", "10839-9"] {
            assert_eq!(check_loinc_code(ok), Ok(()), "{ok}");
        }
        for bad in ["2345-8", "2345", "23a5-7", "-7", "2345-77", ""] {
            assert!(check_loinc_code(bad).is_err(), "{bad}");
        }
    }
}
