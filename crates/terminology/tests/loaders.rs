//! Loader tests on small files in each official format, written for these tests
//! (`tests/fixtures`), including malformed rows under both load policies.

use std::path::{Path, PathBuf};

use terminology::loaders::{self, fhir_json, icd10cm, loinc, rxnorm, snomed, ucum_essence};
use terminology::{ConceptStatus, Equivalence, Format, LoadOptions, LoadPolicy, TerminologyError, systems};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn refuse() -> LoadOptions {
    LoadOptions { policy: LoadPolicy::Refuse, ..Default::default() }
}

fn find<'a>(cs: &'a terminology::CodeSystemContent, code: &str) -> &'a terminology::ConceptContent {
    cs.concepts.iter().find(|c| c.code == code).unwrap_or_else(|| panic!("{code} not loaded"))
}

#[test]
fn loinc_csv_quoted_fields_and_malformed_rows() {
    let opts = LoadOptions { version: Some("2.80".into()), ..Default::default() };
    let (cs, report) = loinc::load(&fixture("Loinc.csv"), &opts).unwrap();
    assert_eq!(cs.system, systems::LOINC);
    assert_eq!(cs.version, "2.80");
    let codes: Vec<&str> = cs.concepts.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(codes, ["2345-7", "718-7", "2028-9", "8867-4", "1234-4"]);
    let co2 = find(&cs, "2028-9");
    assert_eq!(co2.display, "Carbon dioxide, total [Moles/volume] in Serum or Plasma");
    assert!(co2.properties.contains(&("COMPONENT".into(), "Carbon dioxide, total".into())));
    assert!(co2.properties.contains(&("EXAMPLE_UCUM_UNITS".into(), "mmol/L".into())));
    let old = find(&cs, "1234-4");
    assert_eq!(old.status, ConceptStatus::Deprecated);
    assert_eq!(old.display, "An old test\nwith a line break in its name");
    assert_eq!(report.rows_read, 7);
    assert_eq!(report.loaded, 5);
    assert_eq!(report.skipped_count, 2);
    let lines: Vec<u64> = report.skipped.iter().map(|e| e.line).collect();
    assert_eq!(lines, [5, 6], "{report}");
    assert!(report.skipped[0].reason.contains("check digit should be 7"), "{}", report.skipped[0]);
    assert!(report.skipped[1].reason.contains("expected 12 fields, found 3"), "{}", report.skipped[1]);
    assert!(report.skipped[0].to_string().contains("Loinc.csv:5:"), "{}", report.skipped[0]);
}

#[test]
fn loinc_refuse_policy_names_file_and_line() {
    let err = loinc::load(&fixture("Loinc.csv"), &refuse()).unwrap_err();
    match &err {
        TerminologyError::MalformedRow(row) => {
            assert_eq!(row.line, 5);
            assert!(row.file.ends_with("Loinc.csv"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("Loinc.csv:5"), "{err}");
}

#[test]
fn loinc_wrong_header_is_refused_as_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("Loinc.csv");
    std::fs::write(&p, "\"CODE\",\"NAME\"\n\"2345-7\",\"Glucose\"\n").unwrap();
    let err = loinc::load(&p, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("LOINC_NUM"), "{err}");
    let missing = loinc::load(&dir.path().join("nope.csv"), &LoadOptions::default()).unwrap_err();
    assert!(matches!(missing, TerminologyError::Io { .. }), "{missing:?}");
}

#[test]
fn icd10cm_order_file_fixed_width() {
    let (cs, report) = icd10cm::load(&fixture("icd10cm_order_2025.txt"), &LoadOptions::default()).unwrap();
    assert_eq!(cs.system, systems::ICD10CM);
    assert_eq!(cs.version, "2025", "version taken from the file name");
    assert_eq!(report.loaded, 7);
    assert_eq!(report.skipped_count, 2, "{report}");
    assert_eq!(report.skipped.iter().map(|e| e.line).collect::<Vec<_>>(), [7, 8]);
    assert!(report.skipped[0].reason.contains("header flag"), "{}", report.skipped[0]);
    assert!(report.skipped[1].reason.contains("too short"), "{}", report.skipped[1]);
    let e1165 = find(&cs, "E11.65");
    assert_eq!(e1165.display, "Type 2 diabetes mellitus with hyperglycemia");
    assert_eq!(e1165.parents, ["E11.6"]);
    assert!(e1165.properties.contains(&("billable".into(), "true".into())));
    assert_eq!(find(&cs, "E11.6").parents, ["E11"]);
    assert!(find(&cs, "E11").parents.is_empty());
    assert_eq!(find(&cs, "A00.0").display, "Cholera due to Vibrio cholerae 01, biovar cholerae");
    assert_eq!(find(&cs, "I10").display, "Essential (primary) hypertension");
    let err = icd10cm::load(&fixture("icd10cm_order_2025.txt"), &refuse()).unwrap_err();
    assert!(err.to_string().contains("icd10cm_order_2025.txt:7"), "{err}");
}

#[test]
fn rxnorm_rrf_filters_other_sources_and_prefers_scd() {
    let (cs, report) = rxnorm::load(&fixture("RXNCONSO.RRF"), &LoadOptions::default()).unwrap();
    assert_eq!(cs.system, systems::RXNORM);
    assert_eq!(report.rows_read, 6);
    assert_eq!(report.filtered, 1, "the MTHSPL atom");
    assert_eq!(report.skipped_count, 1);
    assert_eq!(report.skipped[0].line, 5);
    assert_eq!(cs.concepts.len(), 3);
    let scd = find(&cs, "313782");
    assert_eq!(scd.display, "acetaminophen 325 MG Oral Tablet");
    assert_eq!(scd.properties, [("tty".to_string(), "SCD".to_string())]);
    assert_eq!(find(&cs, "161").display, "acetaminophen");
    assert!(rxnorm::load(&fixture("RXNCONSO.RRF"), &refuse()).is_err());
}

#[test]
fn snomed_rf2_snapshot_with_language_refset() {
    let files = snomed::Rf2Files::find(&fixture("snomed")).unwrap();
    assert!(files.language.is_some());
    let (cs, report) = snomed::load(&files, &LoadOptions::default()).unwrap();
    assert_eq!(cs.system, systems::SNOMED);
    assert_eq!(cs.version, "20250101");
    assert_eq!(report.loaded, 11);
    assert_eq!(report.skipped_count, 2, "{report}");
    let t2 = find(&cs, "44054006");
    assert_eq!(t2.display, "Type 2 diabetes mellitus", "preferred synonym, not the acceptable one");
    assert!(t2.properties.contains(&("fsn".into(), "Diabetes mellitus type 2 (disorder)".into())));
    assert_eq!(t2.parents, ["73211009"]);
    // No preferred synonym: FSN without its semantic tag.
    assert_eq!(find(&cs, "22298006").display, "Myocardial infarction");
    // Inactive and non-is-a relationships make no parents.
    assert_eq!(find(&cs, "22298006").parents, ["49601007"]);
    assert_eq!(find(&cs, "38341003").parents, ["49601007"]);
    assert_eq!(find(&cs, "199999009").status, ConceptStatus::Inactive);
    let skipped: Vec<String> = report.skipped.iter().map(|e| e.to_string()).collect();
    assert!(skipped[0].contains("sct2_Concept_Snapshot_INT_20250101.txt:13"), "{skipped:?}");
    assert!(skipped[1].contains("sct2_Description_Snapshot-en_INT_20250101.txt:18"), "{skipped:?}");
    let err = snomed::load(&files, &refuse()).unwrap_err();
    assert!(err.to_string().contains("sct2_Concept_Snapshot_INT_20250101.txt:13"), "{err}");
}

#[test]
fn snomed_directory_without_snapshot_files_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = snomed::Rf2Files::find(dir.path()).unwrap_err();
    assert!(err.to_string().contains("sct2_Concept_"), "{err}");
}

#[test]
fn ucum_essence_like_file() {
    let xml = std::fs::read_to_string(fixture("ucum-essence-mini.xml")).unwrap();
    let (essence, report) = ucum_essence::parse_str(&xml, "ucum-essence-mini.xml", LoadOptions::default()).unwrap();
    assert_eq!(essence.version, "test-1");
    assert_eq!(essence.prefixes.len(), 4);
    assert_eq!(essence.base_units.len(), 4);
    assert_eq!(essence.units.len(), 4);
    assert_eq!(report.skipped_count, 2, "{report}");
    assert_eq!(report.skipped[0].line, 8, "{report}");
    assert!(report.skipped[0].reason.contains("prefix x"), "{report}");
    assert!(report.skipped[1].reason.contains("without a Code"), "{report}");
    let (ucum, unresolved) = terminology::Ucum::from_essence(&essence);
    assert!(unresolved.is_empty(), "{unresolved:?}");
    assert!((ucum.convert(250.0, "mL", "L").unwrap() - 0.25).abs() < 1e-12);
    assert!((ucum.convert(5.0, "mmol/L", "umol/L").unwrap() - 5000.0).abs() < 1e-9);
    assert!((ucum.convert(20.0, "Cel", "K").unwrap() - 293.15).abs() < 1e-9);
    assert!(!ucum.is_valid("[IU]"), "not defined in the mini essence");
    assert!(ucum_essence::parse_str(&xml, "x.xml", refuse()).is_err());
    let err = ucum_essence::parse_str("<root><unit", "broken.xml", LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("broken.xml"), "{err}");
}

#[test]
fn fhir_codesystem_nested_concepts_are_is_a() {
    let (c, report) = fhir_json::load(&fixture("fhir/codesystem-specimen.json"), &LoadOptions::default()).unwrap();
    let cs = &c.code_systems[0];
    assert_eq!(cs.system, "http://example.org/fhir/CodeSystem/lab-specimen");
    assert_eq!(cs.version, "3");
    assert_eq!(cs.concepts.len(), 6);
    assert_eq!(find(cs, "BLDCAP").parents, ["BLDV"]);
    assert_eq!(find(cs, "BLDCAP").status, ConceptStatus::Inactive);
    assert_eq!(find(cs, "SER").parents, ["BLD"]);
    assert_eq!(report.skipped_count, 1);
    assert!(report.skipped[0].reason.contains("concept[2]"), "{report}");
    assert!(report.skipped[0].to_string().contains("codesystem-specimen.json: concept[2]"), "{}", report.skipped[0]);
}

#[test]
fn fhir_conceptmap_for_a_sender() {
    let opts = LoadOptions { sender: Some("LAB1".into()), ..Default::default() };
    let (c, report) = fhir_json::load(&fixture("fhir/conceptmap-lab1.json"), &opts).unwrap();
    let cm = &c.concept_maps[0];
    assert_eq!(cm.sender.as_deref(), Some("LAB1"));
    assert_eq!(cm.groups.len(), 2);
    assert_eq!(cm.groups[1].source_system, "", "group without source");
    let misc = cm.groups[0].elements.iter().find(|e| e.code == "MISC").unwrap();
    assert_eq!(misc.targets[0].equivalence, Equivalence::Unmatched);
    assert_eq!(report.skipped_count, 2, "{report}");
    assert!(fhir_json::load(&fixture("fhir/conceptmap-lab1.json"), &refuse()).is_err());
}

#[test]
fn fhir_bundle_and_bad_json() {
    let (c, report) = fhir_json::load(&fixture("fhir/bundle.json"), &LoadOptions::default()).unwrap();
    assert_eq!(c.code_systems.len(), 1);
    assert_eq!(c.concept_maps.len(), 1);
    assert_eq!(report.filtered, 1, "the Patient");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.json");
    std::fs::write(&p, "{\n  \"resourceType\": \"CodeSystem\",\n  \"url\": oops\n}").unwrap();
    let err = fhir_json::load(&p, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("line 3"), "{err}");
}

#[test]
fn hl7v2_tables_csv() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hl7v2-tables.csv");
    std::fs::write(&p, "table,code,display,status\n1,F,Female,\n1,M,Male,\nx,Q,Bad table,\n78,H,High,\n1,F,Again,\n85,S,Partial results,deprecated\n").unwrap();
    let (tables, report) = loaders::hl7v2_tables::load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(tables.len(), 3);
    assert_eq!(tables[0].system, "http://terminology.hl7.org/CodeSystem/v2-0001");
    assert_eq!(tables[0].concepts.len(), 2);
    assert_eq!(tables[2].concepts[0].status, ConceptStatus::Deprecated);
    assert_eq!(report.skipped.iter().map(|e| e.line).collect::<Vec<_>>(), [4, 6]);
}

#[test]
fn format_detection_and_dispatch() {
    assert_eq!(Format::detect(&fixture("Loinc.csv")), Some(Format::Loinc));
    assert_eq!(Format::detect(&fixture("snomed")), Some(Format::SnomedRf2));
    assert_eq!(Format::detect(&fixture("icd10cm_order_2025.txt")), Some(Format::Icd10cmOrder));
    assert_eq!(Format::detect(&fixture("RXNCONSO.RRF")), Some(Format::RxnormRrf));
    assert_eq!(Format::detect(&fixture("fhir/bundle.json")), Some(Format::FhirJson));
    assert_eq!(Format::parse("SNOMED"), Some(Format::SnomedRf2));
    let (content, report) = terminology::load(Format::SnomedRf2, &fixture("snomed"), &LoadOptions::default()).unwrap();
    assert_eq!(content.code_systems.len(), 1);
    assert_eq!(report.format, "snomed-rf2");
    assert_eq!(report.files.len(), 4);
}
