//! ICD-10-CM loader for the CMS order file (`icd10cm_order_YYYY.txt`).
//!
//! Fixed-width layout (CMS): order number (cols 1-5), code (7-13, no dot), header flag
//! (15: 1 = valid for HIPAA-covered transactions, 0 = header), short description (17-76),
//! long description (78-). Codes are stored with the dot FHIR uses (`E11.9`); lookups accept
//! the dotless form too. Parents come from the code structure (longest loaded prefix), so
//! `subsumes` works within a category.

use std::path::Path;

use rustc_hash::FxHashMap;

use crate::content::{CodeSystemContent, ConceptContent, LoadOptions, LoadReport, systems};
use crate::error::Result;
use crate::loaders::{Lines, file_name, open, row_err, version_from_name};

/// `A000` -> `A00.0`; codes of three characters stay as they are.
pub fn dotted(code: &str) -> String {
    if code.len() > 3 && !code.contains('.') { format!("{}.{}", &code[..3], &code[3..]) } else { code.to_string() }
}

fn parse_line(line: &str) -> std::result::Result<(&str, bool, &str, &str), String> {
    if !line.is_ascii() {
        return Err("non-ASCII characters in a fixed-width row".into());
    }
    if line.len() < 17 {
        return Err(format!("row too short for the order-file layout ({} characters)", line.len()));
    }
    let order = &line[0..5];
    if !order.trim_start().bytes().all(|b| b.is_ascii_digit()) || order.trim().is_empty() {
        return Err(format!("order number {order:?} is not numeric"));
    }
    let code = line[6..13].trim_end();
    let valid_code = code.len() >= 3
        && code.as_bytes()[0].is_ascii_uppercase()
        && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !valid_code || line.as_bytes()[5] != b' ' {
        return Err(format!("code field {:?} is not an ICD-10-CM code", &line[6..13]));
    }
    let billable = match line.as_bytes()[14] {
        b'1' => true,
        b'0' => false,
        other => return Err(format!("header flag must be 0 or 1, found {:?}", other as char)),
    };
    let short = line.get(16..76).unwrap_or(&line[16..]).trim();
    let long = line.get(77..).unwrap_or("").trim();
    if short.is_empty() && long.is_empty() {
        return Err(format!("{code}: no description"));
    }
    Ok((code, billable, short, long))
}

/// Loads an order file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<(CodeSystemContent, LoadReport)> {
    let mut lines = Lines::new(open(path)?, path);
    let version = opts.version.clone().or_else(|| version_from_name(path)).unwrap_or_else(|| "unknown".into());
    let mut report = LoadReport::new("icd10cm", path.to_path_buf());
    report.target = systems::ICD10CM.into();
    report.version = version.clone();
    let mut concepts: Vec<ConceptContent> = Vec::new();
    let mut index: FxHashMap<String, usize> = FxHashMap::default();
    while let Some((line_no, text)) = lines.next_line()? {
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                report.rows_read += 1;
                report.reject(opts.policy, e)?;
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        report.rows_read += 1;
        let (code, billable, short, long) = match parse_line(text) {
            Ok(v) => v,
            Err(msg) => {
                report.reject(opts.policy, row_err(path, line_no, msg))?;
                continue;
            }
        };
        let code = dotted(code);
        if index.contains_key(&code) {
            report.reject(opts.policy, row_err(path, line_no, format!("{code}: duplicate code")))?;
            continue;
        }
        let mut c = ConceptContent::new(code.clone(), if long.is_empty() { short } else { long });
        c.properties.push(("billable".into(), billable.to_string()));
        if !short.is_empty() {
            c.properties.push(("short".into(), short.to_string()));
        }
        index.insert(code, concepts.len());
        concepts.push(c);
    }
    // Parent = the longest shorter code that is loaded (E11.65 -> E11.6 -> E11).
    for i in 0..concepts.len() {
        let code = concepts[i].code.clone();
        let mut k = code.len();
        while k > 3 {
            k -= 1;
            let cand = code[..k].trim_end_matches('.');
            if let Some(&p) = index.get(cand) {
                let parent = concepts[p].code.clone();
                concepts[i].parents.push(parent);
                break;
            }
        }
    }
    report.loaded = concepts.len() as u64;
    Ok((
        CodeSystemContent {
            system: systems::ICD10CM.into(),
            version,
            name: "ICD-10-CM".into(),
            source: file_name(path),
            concepts,
        },
        report,
    ))
}
