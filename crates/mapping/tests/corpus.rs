//! Every HL7 v2 message of the shared corpus converts, and every Bundle passes HAPI FHIR's
//! R4 instance validator with zero errors (one JVM run over all of them).
//!
//! The corpus is read from `$ARTERIA_SHARED/corpus` (default `<workspace>/../shared`); when it
//! is missing the tests fail under `CI=true` and skip loudly otherwise. The validator needs
//! Java; without it the validation test skips loudly unless `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The corpus folders that hold HL7 v2 (the C-CDA folders are XML documents, not v2).
const V2_FOLDERS: &[&str] = &[
    "microsoft-fhir-converter-hl7v2",
    "hl7-v2-to-fhir",
    "linuxforhealth-hl7v2-fhir-converter",
    "google-healthcare-data-harmonization",
];

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("ARTERIA_SHARED").map(PathBuf::from).unwrap_or_else(|| workspace().join("../shared"));
    if dir.join("corpus").is_dir() {
        return Some(dir);
    }
    if in_ci() {
        panic!("the shared corpus is missing at {} (set ARTERIA_SHARED)", dir.display());
    }
    eprintln!("\n*** SKIPPED: shared corpus not found at {} (set ARTERIA_SHARED) ***\n", dir.display());
    None
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|e| e == "hl7" || e == "txt") {
            out.push(p);
        }
    }
}

/// Converts the whole corpus: (NDJSON of bundles, message count, failures).
fn convert_corpus(shared: &Path) -> (String, usize, Vec<String>) {
    let mut paths = Vec::new();
    for f in V2_FOLDERS {
        files(&shared.join("corpus").join(f), &mut paths);
    }
    assert!(paths.len() >= 190, "expected the ~201 v2 corpus files, found {}", paths.len());
    let profiles = mapping::Profiles::default();
    let mut ndjson = String::new();
    let mut count = 0;
    let mut failures = Vec::new();
    for p in &paths {
        let bytes = std::fs::read(p).unwrap();
        let split = match hl7v2::batch::split(&bytes) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{}: {e}", p.display()));
                continue;
            }
        };
        for (i, chunk) in split.messages().enumerate() {
            match mapping::convert_bytes(chunk.bytes, &profiles, "corpus") {
                Ok(c) => {
                    count += 1;
                    ndjson.push_str(&c.to_bundle_json(false));
                    ndjson.push('\n');
                }
                Err(e) => failures.push(format!("{} message {}: {e}", p.display(), i + 1)),
            }
        }
    }
    (ndjson, count, failures)
}

#[test]
fn every_corpus_message_converts() {
    let Some(shared) = shared() else { return };
    let (ndjson, count, failures) = convert_corpus(&shared);
    assert!(failures.is_empty(), "conversion failures:\n{}", failures.join("\n"));
    assert!(count >= 200, "only {count} messages converted");
    for line in ndjson.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        assert_eq!(v["resourceType"], "Bundle");
        assert_eq!(v["entry"][0]["resource"]["resourceType"], "MessageHeader");
    }
}

/// The JSON writer generated beside the serde derive (`canonical::model::json`, the hot path)
/// writes the same bytes as serde_json, for every corpus message, resource and event.
#[test]
fn fast_json_writer_equals_serde_json_on_the_corpus() {
    use canonical::model::JsonWrite;
    let Some(shared) = shared() else { return };
    let mut paths = Vec::new();
    for f in V2_FOLDERS {
        files(&shared.join("corpus").join(f), &mut paths);
    }
    let profiles = mapping::Profiles::load_dir(&workspace().join("crates/mapping/profiles")).unwrap();
    let mut resources = 0;
    for p in &paths {
        let bytes = std::fs::read(p).unwrap();
        let Ok(split) = hl7v2::batch::split(&bytes) else { continue };
        for chunk in split.messages() {
            for profiles in [&mapping::Profiles::default(), &profiles] {
                let Ok(c) = mapping::convert_bytes(chunk.bytes, profiles, "corpus") else { continue };
                let bundle = c.bundle();
                let serde = serde_json::to_string(&bundle).unwrap();
                assert_eq!(c.to_bundle_json(false), serde, "{}", p.display());
                assert_eq!(bundle.to_json(), serde, "{}", p.display());
                for r in &c.resources {
                    assert_eq!(r.to_json(), serde_json::to_string(r).unwrap(), "{}", p.display());
                    resources += 1;
                }
            }
        }
    }
    assert!(resources > 1000, "only {resources} resources compared");
}

#[test]
fn every_corpus_bundle_passes_the_fhir_validator() {
    let Some(shared) = shared() else { return };
    if Command::new("java").arg("-version").output().is_err() {
        if in_ci() {
            panic!("java is required for the FHIR validator in CI");
        }
        eprintln!("\n*** SKIPPED: java not found; the FHIR R4 validator cannot run ***\n");
        return;
    }
    let (ndjson, count, failures) = convert_corpus(&shared);
    assert!(failures.is_empty(), "conversion failures:\n{}", failures.join("\n"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("corpus-bundles.ndjson");
    std::fs::write(&file, &ndjson).unwrap();
    if let Some(keep) = std::env::var_os("ARTERIA_KEEP_BUNDLES") {
        std::fs::copy(&file, keep).unwrap();
    }
    let out = Command::new("bash")
        .arg(workspace().join("tools/fhir-validator/validate.sh"))
        .arg(&file)
        .output()
        .expect("run the validator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> =
        stdout.lines().chain(stderr.lines()).filter(|l| l.contains(": error:") || l.contains(": fatal:")).collect();
    eprintln!("validated {count} bundles; {} error line(s)", errors.len());
    assert!(
        out.status.success() && errors.is_empty(),
        "FHIR validation failed (exit {:?}):\n{}\n{}",
        out.status.code(),
        errors.iter().take(200).copied().collect::<Vec<_>>().join("\n"),
        stderr.lines().rev().take(20).collect::<Vec<_>>().join("\n"),
    );
}
