//! The shipped content loads cleanly and enriches the common labs and units out of the box.
//! HL7 v2 table displays are cross-checked against the HL7 V2-to-FHIR mapping sheets in the
//! shared folder (read at test time only; `ARTERIA_SHARED`, default `../shared`).

use std::path::{Path, PathBuf};

use terminology::builtin;
use terminology::loaders::loinc::check_loinc_code;
use terminology::{Terminology, Ucum, UnitTable, systems};

#[test]
fn shipped_files_load_without_a_single_skipped_row() {
    let reports = builtin::load_reports();
    assert_eq!(reports.len(), 2);
    for r in reports {
        assert_eq!(r.skipped_count, 0, "{r}");
        assert!(r.loaded > 50, "{r}");
    }
    let t = Terminology::builtin();
    let loinc = t.code_system(systems::LOINC).unwrap();
    assert!(loinc.len() >= 100, "{}", loinc.len());
    for c in loinc.concepts() {
        check_loinc_code(c.code()).unwrap();
        assert!(!c.display().is_empty());
        // Example units, when given, must be valid UCUM.
        if let Some(u) = c.property("EXAMPLE_UCUM_UNITS") {
            Ucum::builtin().validate(u).unwrap();
        }
    }
}

#[test]
fn common_labs_and_units_out_of_the_box() {
    let t = Terminology::builtin();
    for (code, name) in [
        ("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
        ("718-7", "Hemoglobin [Mass/volume] in Blood"),
        ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
        ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),
        ("8480-6", "Systolic blood pressure"),
    ] {
        assert_eq!(t.lookup(systems::LOINC, code).map(|c| c.display()), Some(name));
    }
    let units = UnitTable::builtin();
    for (raw, ucum) in [("mg/dl", "mg/dL"), ("K/uL", "10*3/uL"), ("mEq/L", "meq/L"), ("IU/L", "[IU]/L")] {
        assert_eq!(units.to_ucum(raw, t.ucum()).as_deref(), Some(ucum));
    }
    assert_eq!(t.lookup("HL70078", "H").map(|c| c.display()), Some("High"), "CWE-3 table name");
    assert_eq!(t.lookup("HL7007", "H").map(|c| c.display()), None);
    assert_eq!(t.lookup(&systems::hl7v2_table(1), "F").unwrap().display(), "Female");
}

fn shared_dir() -> Option<PathBuf> {
    let p = std::env::var_os("ARTERIA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    p.join("v2-to-fhir-mappings/codesystems").is_dir().then_some(p)
}

#[test]
fn hl7v2_table_displays_match_the_v2_to_fhir_sheets() {
    let Some(shared) = shared_dir() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "ARTERIA_SHARED/v2-to-fhir-mappings missing in CI");
        eprintln!("SKIPPED: shared v2-to-fhir-mappings not found (set ARTERIA_SHARED)");
        return;
    };
    let dir = shared.join("v2-to-fhir-mappings/codesystems");
    let t = Terminology::builtin();
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_path(&path).unwrap();
        for rec in rdr.records().skip(2).flatten() {
            let (Some(code), Some(text), Some(table)) = (rec.get(0), rec.get(1), rec.get(2)) else { continue };
            let Some(num) = table.strip_prefix("HL7").and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Some(c) = t.lookup(&systems::hl7v2_table(num), code.trim()) else { continue };
            compared += 1;
            let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase().replace('’', "'");
            let (ours, theirs) = (norm(c.display()), norm(text));
            // The sheets sometimes carry the full HL7 description; ours may be its first clause.
            if !(theirs == ours || theirs.starts_with(&ours)) {
                mismatches.push(format!("{table} {code}: ours {:?}, sheet {:?}", c.display(), text));
            }
        }
    }
    assert!(compared > 60, "only {compared} codes compared");
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
