//! SNOMED CT loader for an RF2 snapshot: concepts, descriptions, is-a relationships and,
//! optionally, a language reference set for preferred terms.
//!
//! SNOMED CT content is licensed per country: Arteria ships none and loads the user's own
//! release. Display is the preferred synonym from the language refset when given (US
//! English by default), else the fully specified name without its semantic tag; the FSN is
//! kept as the `fsn` property. Only active is-a relationships (type 116680003) make parents.

use std::path::{Path, PathBuf};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::content::{CodeSystemContent, ConceptContent, ConceptStatus, LoadOptions, LoadReport, systems};
use crate::error::{Result, TerminologyError};
use crate::loaders::{Lines, file_name, open, row_err, version_from_name};

const IS_A: &str = "116680003";
const FSN: &str = "900000000000003001";
const SYNONYM: &str = "900000000000013009";
const PREFERRED: &str = "900000000000548007";
/// US English language reference set.
pub const US_ENGLISH: &str = "900000000000509007";

/// The files of one RF2 snapshot.
#[derive(Debug, Clone)]
pub struct Rf2Files {
    pub concepts: PathBuf,
    pub descriptions: PathBuf,
    pub relationships: PathBuf,
    /// Language refset (`der2_cRefset_Language...Snapshot`), optional.
    pub language: Option<PathBuf>,
}

impl Rf2Files {
    /// Finds the snapshot files in a directory (searched recursively), or beside a given
    /// concept file.
    pub fn find(path: &Path) -> Result<Rf2Files> {
        let dir =
            if path.is_dir() { path.to_path_buf() } else { path.parent().unwrap_or(Path::new(".")).to_path_buf() };
        let mut all = Vec::new();
        collect(&dir, &mut all, 4).map_err(|e| TerminologyError::io(&dir, e))?;
        let pick = |prefix: &str| -> Option<PathBuf> {
            let mut v: Vec<&PathBuf> = all
                .iter()
                .filter(|p| {
                    let n = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                    n.starts_with(prefix) && n.contains("Snapshot") && n.ends_with(".txt")
                })
                .collect();
            v.sort();
            v.first().map(|p| (*p).clone())
        };
        let need = |prefix: &str| {
            pick(prefix).ok_or_else(|| {
                TerminologyError::bad_file(
                    &dir,
                    format!("no {prefix}*Snapshot*.txt file found (RF2 snapshot expected)"),
                )
            })
        };
        Ok(Rf2Files {
            concepts: need("sct2_Concept_")?,
            descriptions: need("sct2_Description_")?,
            relationships: need("sct2_Relationship_")?,
            language: pick("der2_cRefset_Language"),
        })
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>, depth: u32) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            if depth > 0 {
                collect(&p, out, depth - 1)?;
            }
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads one RF2 file: checks the header, then calls `row` with the fields of each row.
fn read_rf2(
    path: &Path,
    expected: &[&str],
    opts: &LoadOptions,
    report: &mut LoadReport,
    mut row: impl FnMut(&[&str], u64) -> std::result::Result<(), String>,
) -> Result<()> {
    let mut lines = Lines::new(open(path)?, path);
    match lines.next_line()? {
        Some((_, Ok(h))) => {
            let cols: Vec<&str> = h.trim_start_matches('\u{feff}').split('\t').collect();
            if cols != expected {
                return Err(TerminologyError::bad_file(
                    path,
                    format!("RF2 header should be {:?}, found {:?}", expected.join(" "), cols.join(" ")),
                ));
            }
        }
        _ => return Err(TerminologyError::bad_file(path, "empty file (RF2 header row expected)")),
    }
    report.files.push(path.to_path_buf());
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
        let f: Vec<&str> = text.split('\t').collect();
        if f.len() != expected.len() {
            report.reject(
                opts.policy,
                row_err(path, line_no, format!("expected {} tab-separated fields, found {}", expected.len(), f.len())),
            )?;
            continue;
        }
        if !f[0].bytes().all(|b| b.is_ascii_digit()) || f[0].is_empty() || !matches!(f[2], "0" | "1") {
            report.reject(opts.policy, row_err(path, line_no, "id must be numeric and active 0 or 1"))?;
            continue;
        }
        if let Err(msg) = row(&f, line_no) {
            report.reject(opts.policy, row_err(path, line_no, msg))?;
        }
    }
    Ok(())
}

fn strip_semantic_tag(fsn: &str) -> &str {
    match fsn.rfind(" (") {
        Some(i) if fsn.ends_with(')') => &fsn[..i],
        _ => fsn,
    }
}

/// Loads an RF2 snapshot.
pub fn load(files: &Rf2Files, opts: &LoadOptions) -> Result<(CodeSystemContent, LoadReport)> {
    let version =
        opts.version.clone().or_else(|| version_from_name(&files.concepts)).unwrap_or_else(|| "unknown".into());
    let mut report = LoadReport::new("snomed-rf2", files.concepts.clone());
    report.files.clear();
    report.target = systems::SNOMED.into();
    report.version = version.clone();

    let mut concepts: Vec<ConceptContent> = Vec::new();
    let mut index: FxHashMap<String, usize> = FxHashMap::default();
    read_rf2(
        &files.concepts,
        &["id", "effectiveTime", "active", "moduleId", "definitionStatusId"],
        opts,
        &mut report,
        |f, _| {
            if index.contains_key(f[0]) {
                return Err(format!("concept {} appears twice in a snapshot", f[0]));
            }
            let mut c = ConceptContent::new(f[0], "");
            c.status = if f[2] == "1" { ConceptStatus::Active } else { ConceptStatus::Inactive };
            index.insert(f[0].to_string(), concepts.len());
            concepts.push(c);
            Ok(())
        },
    )?;

    let mut preferred: FxHashSet<String> = FxHashSet::default();
    if let Some(lang) = &files.language {
        read_rf2(
            lang,
            &["id", "effectiveTime", "active", "moduleId", "refsetId", "referencedComponentId", "acceptabilityId"],
            opts,
            &mut report,
            |f, _| {
                if f[2] == "1" && f[4] == US_ENGLISH && f[6] == PREFERRED {
                    preferred.insert(f[5].to_string());
                }
                Ok(())
            },
        )?;
    }

    let mut fsn: Vec<Option<String>> = vec![None; concepts.len()];
    let mut unknown_concept = 0u64;
    read_rf2(
        &files.descriptions,
        &[
            "id",
            "effectiveTime",
            "active",
            "moduleId",
            "conceptId",
            "languageCode",
            "typeId",
            "term",
            "caseSignificanceId",
        ],
        opts,
        &mut report,
        |f, _| {
            if f[2] != "1" {
                return Ok(());
            }
            let Some(&ci) = index.get(f[4]) else {
                unknown_concept += 1;
                return Ok(());
            };
            if f[7].is_empty() {
                return Err(format!("description {} has an empty term", f[0]));
            }
            match f[6] {
                FSN => fsn[ci] = Some(f[7].to_string()),
                SYNONYM if preferred.contains(f[0]) => concepts[ci].display = f[7].to_string(),
                _ => {}
            }
            Ok(())
        },
    )?;

    let mut is_a = 0u64;
    let mut dangling = 0u64;
    read_rf2(
        &files.relationships,
        &[
            "id",
            "effectiveTime",
            "active",
            "moduleId",
            "sourceId",
            "destinationId",
            "relationshipGroup",
            "typeId",
            "characteristicTypeId",
            "modifierId",
        ],
        opts,
        &mut report,
        |f, _| {
            if f[2] != "1" || f[7] != IS_A {
                return Ok(());
            }
            match (index.get(f[4]), index.contains_key(f[5])) {
                (Some(&ci), true) => {
                    if !concepts[ci].parents.iter().any(|p| p == f[5]) {
                        concepts[ci].parents.push(f[5].to_string());
                        is_a += 1;
                    }
                }
                _ => dangling += 1,
            }
            Ok(())
        },
    )?;

    let mut no_term = 0u64;
    for (c, f) in concepts.iter_mut().zip(fsn) {
        if let Some(f) = f {
            if c.display.is_empty() {
                c.display = strip_semantic_tag(&f).to_string();
            }
            c.properties.push(("fsn".into(), f));
        }
        if c.display.is_empty() {
            no_term += 1;
        }
    }
    if files.language.is_none() {
        report.notes.push("no language refset: displays are FSNs without the semantic tag".into());
    }
    if unknown_concept > 0 {
        report.notes.push(format!("{unknown_concept} active descriptions name a concept not in the concept file"));
    }
    if dangling > 0 {
        report.notes.push(format!("{dangling} active is-a relationships name a concept not in the concept file"));
    }
    if no_term > 0 {
        report.notes.push(format!("{no_term} concepts have no active term"));
    }
    report.notes.push(format!("{is_a} is-a links"));
    report.loaded = concepts.len() as u64;
    Ok((
        CodeSystemContent {
            system: systems::SNOMED.into(),
            version,
            name: "SNOMED CT".into(),
            source: file_name(&files.concepts),
            concepts,
        },
        report,
    ))
}
