//! Operations over stores built from the test fixtures: store file round trip, lookup,
//! validate-code, subsumes on a small SNOMED hierarchy, translate with a sender's local map,
//! value set expansion, versions and layering.

use std::path::{Path, PathBuf};

use terminology::loaders::{self, snomed};
use terminology::{
    ConceptStatus, Equivalence, Format, LoadOptions, Store, StoreBuilder, Subsumption, Terminology, TerminologyError,
    Validation, systems,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Loads fixtures the way `arteria terminology load` does and writes a store file.
fn build_store(dir: &Path) -> PathBuf {
    let mut b = StoreBuilder::new();
    let lab1 = LoadOptions { sender: Some("LAB1".into()), ..Default::default() };
    let inputs: Vec<(Format, PathBuf, LoadOptions)> = vec![
        (Format::SnomedRf2, fixture("snomed"), LoadOptions::default()),
        (Format::Icd10cmOrder, fixture("icd10cm_order_2025.txt"), LoadOptions::default()),
        (
            Format::RxnormRrf,
            fixture("RXNCONSO.RRF"),
            LoadOptions { version: Some("20250106".into()), ..Default::default() },
        ),
        (Format::FhirJson, fixture("fhir/codesystem-specimen.json"), LoadOptions::default()),
        (Format::FhirJson, fixture("fhir/valueset-blood.json"), LoadOptions::default()),
        (Format::FhirJson, fixture("fhir/conceptmap-lab1.json"), lab1),
        (Format::FhirJson, fixture("fhir/bundle.json"), LoadOptions::default()),
    ];
    for (f, p, o) in inputs {
        let (content, _report) = loaders::load(f, &p, &o).unwrap();
        content.add_to(&mut b);
    }
    let out = dir.join("terminology.store");
    b.write(&out).unwrap();
    out
}

fn term() -> (tempfile::TempDir, Terminology) {
    let dir = tempfile::tempdir().unwrap();
    let path = build_store(dir.path());
    let t = Terminology::open(&[path]).unwrap();
    (dir, t)
}

#[test]
fn lookup_across_layers_and_aliases() {
    let (_d, t) = term();
    // Shipped layer.
    let glu = t.lookup(systems::LOINC, "2345-7").unwrap();
    assert_eq!(glu.display(), "Glucose [Mass/volume] in Serum or Plasma");
    assert_eq!(glu.status(), ConceptStatus::Active);
    // HL7 v2 coding-system names resolve to the URI.
    assert_eq!(t.lookup("LN", "718-7").unwrap().display(), "Hemoglobin [Mass/volume] in Blood");
    // Loaded layer.
    let dm2 = t.lookup("SCT", "44054006").unwrap();
    assert_eq!(dm2.display(), "Type 2 diabetes mellitus");
    assert_eq!(dm2.property("fsn"), Some("Diabetes mellitus type 2 (disorder)"));
    assert_eq!(
        t.lookup(systems::ICD10CM, "E11.9").unwrap().display(),
        "Type 2 diabetes mellitus without complications"
    );
    assert_eq!(t.lookup(systems::ICD10CM, "E119").unwrap().code(), "E11.9", "dotless ICD-10-CM accepted");
    assert_eq!(t.lookup(systems::RXNORM, "313782").unwrap().property("tty"), Some("SCD"));
    assert!(t.lookup(systems::LOINC, "9999-9").is_none());
    assert!(t.lookup("urn:nope", "1").is_none());
    let listed = t.systems();
    assert!(listed.iter().any(|s| s.system == systems::SNOMED && s.version == "20250101" && s.concepts == 11));
    assert!(listed.iter().any(|s| s.system == systems::LOINC && s.origin == "builtin"));
}

#[test]
fn validate_code_outcomes() {
    let (_d, t) = term();
    assert_eq!(
        t.validate_code(systems::LOINC, "2345-7", None),
        Validation::Valid { display: "Glucose [Mass/volume] in Serum or Plasma" }
    );
    assert!(matches!(
        t.validate_code(systems::LOINC, "2345-7", Some("Blood sugar")),
        Validation::DisplayMismatch { .. }
    ));
    assert!(t.validate_code(systems::LOINC, "2345-7", Some("glucose [mass/volume] in serum or plasma")).is_valid());
    assert_eq!(t.validate_code(systems::LOINC, "2345-8", None), Validation::UnknownCode);
    assert_eq!(t.validate_code("urn:unknown", "x", None), Validation::UnknownSystem);
    assert!(t.validate_code(systems::UCUM, "mg/dL", None).is_valid());
    assert!(t.validate_code("UCUM", "10*3/uL", None).is_valid());
    assert_eq!(t.validate_code(systems::UCUM, "mg/dl/", None), Validation::UnknownCode);
    assert!(matches!(
        t.validate_code(systems::SNOMED, "199999009", None),
        Validation::NotActive { status: ConceptStatus::Inactive, .. }
    ));
}

#[test]
fn subsumption_on_a_small_snomed_hierarchy() {
    let (_d, t) = term();
    let s = |a: &str, b: &str| t.subsumes(systems::SNOMED, a, b).unwrap();
    // Diabetes mellitus subsumes type 2 diabetes; and the reverse.
    assert_eq!(s("73211009", "44054006"), Subsumption::Subsumes);
    assert_eq!(s("44054006", "73211009"), Subsumption::SubsumedBy);
    // Transitive: clinical finding subsumes myocardial infarction (three levels down).
    assert_eq!(s("404684003", "22298006"), Subsumption::Subsumes);
    assert_eq!(s("138875005", "44054006"), Subsumption::Subsumes);
    // Siblings and the inactive is-a (MI -> hypertension) do not subsume.
    assert_eq!(s("44054006", "46635009"), Subsumption::NotSubsumed);
    assert_eq!(s("38341003", "22298006"), Subsumption::NotSubsumed);
    // The finding-site relationship is not is-a.
    assert_eq!(s("39057004", "38341003"), Subsumption::NotSubsumed);
    assert_eq!(s("44054006", "44054006"), Subsumption::Equivalent);
    assert!(matches!(t.subsumes(systems::SNOMED, "1", "44054006"), Err(TerminologyError::UnknownCode { .. })));
    // ICD-10-CM code structure.
    assert_eq!(t.subsumes(systems::ICD10CM, "E11", "E1165").unwrap(), Subsumption::Subsumes);
}

#[test]
fn translate_with_a_sender_local_map() {
    let (_d, t) = term();
    // The sender's map applies to that sender only.
    let tr = t.translate_first("urn:lab1:tests", "GLU", None, Some("LAB1")).unwrap();
    assert_eq!((tr.system, tr.code), (systems::LOINC, "2345-7"));
    assert_eq!(tr.display, "Glucose [Mass/volume] in Serum or Plasma", "display from the LOINC store");
    assert_eq!(tr.equivalence, Equivalence::Equivalent);
    assert_eq!(tr.sender, Some("LAB1"));
    assert_eq!(tr.map_url, "http://example.org/fhir/ConceptMap/lab1-local-to-loinc");
    assert!(t.translate_first("urn:lab1:tests", "GLU", None, Some("LAB2")).is_none());
    assert!(t.translate_first("urn:lab1:tests", "GLU", None, None).is_none());
    // The map's own display wins when it has one.
    assert_eq!(
        t.translate_first("urn:lab1:tests", "HGB", None, Some("LAB1")).unwrap().display,
        "Hemoglobin [Mass/volume] in Blood"
    );
    // A group without source matches any system the sender uses.
    assert_eq!(t.translate_first("urn:lab1:other", "WBC", None, Some("LAB1")).unwrap().code, "6690-2");
    // "unmatched" is reported by translate but is not a match.
    let all = t.translate("urn:lab1:tests", "MISC", None, Some("LAB1"));
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].equivalence, Equivalence::Unmatched);
    assert!(t.translate_first("urn:lab1:tests", "MISC", None, Some("LAB1")).is_none());
    // Target restriction.
    assert!(t.translate_first("urn:lab1:tests", "GLU", Some(systems::SNOMED), Some("LAB1")).is_none());
    assert!(t.translate_first("urn:lab1:tests", "GLU", Some("LN"), Some("LAB1")).is_some());
    // Public map from the bundle.
    let g = t.translate_first("http://terminology.hl7.org/CodeSystem/v2-0001", "F", None, None).unwrap();
    assert_eq!((g.code, g.display, g.equivalence), ("female", "Female", Equivalence::Equal));
}

#[test]
fn expand_small_value_set() {
    let (_d, t) = term();
    let items = t.expand("http://example.org/fhir/ValueSet/blood-specimens", 100).unwrap();
    let got: Vec<(&str, &str, &str)> =
        items.iter().map(|i| (i.system.as_str(), i.code.as_str(), i.display.as_str())).collect();
    assert_eq!(
        got,
        [
            ("http://example.org/fhir/CodeSystem/lab-specimen", "BLD", "Blood"),
            ("http://example.org/fhir/CodeSystem/lab-specimen", "BLDCAP", "Capillary blood"),
            ("http://example.org/fhir/CodeSystem/lab-specimen", "BLDV", "Venous blood"),
            ("http://example.org/fhir/CodeSystem/lab-specimen", "SER", "Serum"),
            (systems::LOINC, "2345-7", "Glucose SerPl"),
            (systems::LOINC, "718-7", "Hemoglobin [Mass/volume] in Blood"),
        ]
    );
    assert!(matches!(
        t.expand("http://example.org/fhir/ValueSet/blood-specimens", 3),
        Err(TerminologyError::ExpansionTooLarge { .. })
    ));
    assert!(matches!(t.expand("urn:missing", 10), Err(TerminologyError::UnknownValueSet(_))));
}

#[test]
fn versions_and_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_store(dir.path());
    let store = Store::open(&path).unwrap();
    // Reload SNOMED as a newer version on top of the existing store file.
    let mut b = StoreBuilder::from_store(&store);
    let files = snomed::Rf2Files::find(&fixture("snomed")).unwrap();
    let (mut cs, _) =
        snomed::load(&files, &LoadOptions { version: Some("20250701".into()), ..Default::default() }).unwrap();
    cs.concepts.retain(|c| c.code != "46635009");
    b.add_code_system(&cs);
    let before = b.len();
    b.add_code_system(&cs); // same system+version: replaced, not added
    assert_eq!(b.len(), before);
    b.write(&path).unwrap();
    let t = Terminology::open(&[path]).unwrap();
    assert!(t.lookup(systems::SNOMED, "46635009").is_none(), "newest version answers");
    assert!(t.code_system_version(systems::SNOMED, "20250101").unwrap().get("46635009").is_some());
    assert_eq!(t.code_system(systems::SNOMED).unwrap().version(), "20250701");
}

#[test]
fn store_file_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk.store");
    std::fs::write(&p, b"definitely not a store").unwrap();
    let err = Store::open(&p).unwrap_err();
    assert!(err.to_string().contains("junk.store"), "{err}");
    assert!(err.to_string().contains("bad magic"), "{err}");
    assert!(matches!(Terminology::open(&[dir.path().join("missing.store")]), Err(TerminologyError::Io { .. })));
}

#[test]
fn ucum_essence_in_a_store_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let (content, _) =
        loaders::load(Format::UcumEssence, &fixture("ucum-essence-mini.xml"), &LoadOptions::default()).unwrap();
    let mut b = StoreBuilder::new();
    content.add_to(&mut b);
    let p = dir.path().join("u.store");
    b.write(&p).unwrap();
    let t = Terminology::open(&[p]).unwrap();
    assert_eq!(t.ucum().version(), "test-1");
    assert!(!t.ucum().is_valid("[IU]"));
    assert_eq!(Terminology::builtin().ucum().version(), "1.9");
}

#[test]
fn load_into_store_adds_to_an_existing_store() {
    use terminology::{LoadRequest, load_into_store};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("site.store");
    let req = |p: &str, f: Option<Format>| LoadRequest { format: f, path: fixture(p), options: LoadOptions::default() };
    let reports = load_into_store(&store, &[req("snomed", None), req("icd10cm_order_2025.txt", None)]).unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[1].loaded, 7);
    let reports = load_into_store(&store, &[req("RXNCONSO.RRF", Some(Format::RxnormRrf))]).unwrap();
    assert_eq!(reports[0].format, "rxnorm");
    let t = Terminology::open(std::slice::from_ref(&store)).unwrap();
    assert!(t.lookup(systems::SNOMED, "44054006").is_some(), "earlier load kept");
    assert!(t.lookup(systems::RXNORM, "161").is_some());
    // An undetectable name and a refused load leave the store as it was.
    let before = std::fs::read(&store).unwrap();
    let odd = dir.path().join("data.bin");
    std::fs::write(&odd, "x").unwrap();
    let err = load_into_store(&store, &[LoadRequest { format: None, path: odd, options: LoadOptions::default() }])
        .unwrap_err();
    assert!(err.to_string().contains("cannot tell the format"), "{err}");
    let refuse = LoadOptions { policy: terminology::LoadPolicy::Refuse, ..Default::default() };
    assert!(
        load_into_store(&store, &[LoadRequest { format: None, path: fixture("Loinc.csv"), options: refuse }]).is_err()
    );
    assert_eq!(std::fs::read(&store).unwrap(), before);
}

#[test]
fn terminology_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Terminology>();
    let (_d, t) = term();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..100 {
                    assert_eq!(t.subsumes(systems::SNOMED, "64572001", "44054006").unwrap(), Subsumption::Subsumes);
                }
            });
        }
    });
}

#[test]
fn sender_map_from_csv_added_in_memory() {
    let opts = LoadOptions { sender: Some("LAB2".into()), ..Default::default() };
    let path = fixture("lab2-local-map.csv");
    assert_eq!(Format::detect(&path), Some(Format::LocalMapCsv));
    let (content, report) = loaders::load(Format::LocalMapCsv, &path, &opts).unwrap();
    assert_eq!(report.loaded, 3);
    assert_eq!(report.skipped.iter().map(|e| e.line).collect::<Vec<_>>(), [5, 6], "{report}");
    let mut t = Terminology::builtin();
    t.add_content(&content, "sender profile LAB2").unwrap();
    let na = t.translate_first("urn:lab2:tests", "NA", None, Some("LAB2")).unwrap();
    assert_eq!((na.system, na.code), (systems::LOINC, "2951-2"));
    assert_eq!(na.display, "Sodium [Moles/volume] in Serum or Plasma");
    // Empty source system: any system from that sender.
    let trop = t.translate_first("urn:lab2:other", "TROP", None, Some("LAB2")).unwrap();
    assert_eq!((trop.code, trop.equivalence), ("10839-9", Equivalence::Wider));
    assert!(t.translate_first("urn:lab2:tests", "NA", None, Some("LAB1")).is_none());
}
