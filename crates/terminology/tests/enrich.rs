//! Enrichment: standard codings added beside the originals, displays filled in, UCUM units
//! for quantities, and a report that lists what could not be mapped. Nothing is removed or
//! overwritten.

use std::path::{Path, PathBuf};

use serde_json::json;
use terminology::enrich::{ReportEntry, enrich_fhir_json};
use terminology::{
    Action, CodeableConcept, Coding, EnrichOptions, Enrichable, Enricher, Format, LoadOptions, NotMappedReason,
    Quantity, StoreBuilder, Terminology, loaders, systems,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn with_lab1_map() -> (tempfile::TempDir, Terminology) {
    let dir = tempfile::tempdir().unwrap();
    let opts = LoadOptions { sender: Some("LAB1".into()), ..Default::default() };
    let (c, _) = loaders::load(Format::FhirJson, &fixture("fhir/conceptmap-lab1.json"), &opts).unwrap();
    let mut b = StoreBuilder::new();
    c.add_to(&mut b);
    let p = dir.path().join("t.store");
    b.write(&p).unwrap();
    (dir, Terminology::open(&[p]).unwrap())
}

/// A tiny event of our own: two observations with codes and values.
struct Event {
    codes: Vec<CodeableConcept>,
    values: Vec<Quantity>,
}

impl Enrichable for Event {
    fn visit_concepts(&mut self, f: &mut dyn FnMut(&str, &mut CodeableConcept)) {
        for (i, c) in self.codes.iter_mut().enumerate() {
            f(&format!("Observation[{i}].code"), c);
        }
    }
    fn visit_quantities(&mut self, f: &mut dyn FnMut(&str, &mut Quantity)) {
        for (i, q) in self.values.iter_mut().enumerate() {
            f(&format!("Observation[{i}].valueQuantity"), q);
        }
    }
}

fn cc(codings: Vec<Coding>) -> CodeableConcept {
    CodeableConcept { coding: codings, text: None }
}

fn q(unit: &str) -> Quantity {
    Quantity { value: Some(1.0), unit: Some(unit.into()), system: None, code: None }
}

fn entry<'a>(r: &'a terminology::EnrichmentReport, path: &str) -> &'a ReportEntry {
    r.entries.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("no entry {path}: {r:#?}"))
}

#[test]
fn local_codes_gain_standard_codings_beside_the_original() {
    let (_d, t) = with_lab1_map();
    let e = Enricher::new(&t, EnrichOptions { sender: Some("LAB1".into()), ..Default::default() });
    let local = Coding { display: Some("GLUCOSE, FASTING".into()), ..Coding::new("urn:lab1:tests", "GLU") };
    let mut ev = Event {
        codes: vec![
            cc(vec![local.clone()]),
            cc(vec![Coding::new("urn:lab1:tests", "ZZZ")]),
            cc(vec![Coding::new("urn:lab1:tests", "MISC")]),
        ],
        values: vec![],
    };
    let r = e.enrich(&mut ev);
    // Original kept as it was, standard coding appended.
    assert_eq!(ev.codes[0].coding[0], local);
    assert_eq!(ev.codes[0].coding.len(), 2);
    let added = &ev.codes[0].coding[1];
    assert_eq!(added.system.as_deref(), Some(systems::LOINC));
    assert_eq!(added.code.as_deref(), Some("2345-7"));
    assert_eq!(added.display.as_deref(), Some("Glucose [Mass/volume] in Serum or Plasma"));
    assert_eq!(added.user_selected, Some(false));
    assert!(matches!(
        &entry(&r, "Observation[0].code.coding[0]").actions[..],
        [Action::StandardCodingAdded { map_url: Some(u), .. }] if u.ends_with("lab1-local-to-loinc")
    ));
    // Not mapped: listed with the reason, concept untouched.
    assert_eq!(ev.codes[1].coding.len(), 1);
    assert_eq!(entry(&r, "Observation[1].code.coding[0]").not_mapped(), Some(&NotMappedReason::NoMap));
    assert!(matches!(
        entry(&r, "Observation[2].code.coding[0]").not_mapped(),
        Some(NotMappedReason::MapUnmatched { .. })
    ));
    let unmapped: Vec<&str> = r.not_mapped().map(|(e, _)| e.code.as_deref().unwrap()).collect();
    assert_eq!(unmapped, ["ZZZ", "MISC"]);
    let s = r.summary();
    assert_eq!((s.codings, s.standard_added, s.not_mapped), (3, 1, 2));
    // Running again adds nothing twice.
    let r2 = e.enrich(&mut ev);
    assert_eq!(ev.codes[0].coding.len(), 2);
    assert!(matches!(entry(&r2, "Observation[0].code.coding[0]").actions[..], [Action::StandardCodingPresent { .. }]));
}

#[test]
fn a_resources_text_keeps_its_order_and_gains_the_standard_coding_in_the_models_order() {
    let (_d, t) = with_lab1_map();
    let e = Enricher::new(&t, EnrichOptions { sender: Some("LAB1".into()), ..Default::default() });
    let text = r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"urn:lab1:tests","code":"GLU"}],"text":"GLUCOSE"},"valueQuantity":{"value":5.5,"unit":"mg/dL"}}"#;
    let got = terminology::enrich::enrich_fhir_text(&e, text).unwrap().json.expect("a coding and a unit added");
    let version = t.code_system(systems::LOINC).unwrap().version();
    assert_eq!(
        got,
        [
            r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"urn:lab1:tests","code":"GLU"},"#,
            &format!(r#"{{"system":"http://loinc.org","version":"{version}","code":"2345-7","#),
            r#""display":"Glucose [Mass/volume] in Serum or Plasma","userSelected":false}],"text":"GLUCOSE"},"#,
            r#""valueQuantity":{"value":5.5,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"}}"#
        ]
        .concat()
    );
}

#[test]
fn standard_codes_get_displays_but_never_lose_theirs() {
    let t = Terminology::builtin();
    let e = Enricher::new(&t, EnrichOptions::default());
    let mut ev = Event {
        codes: vec![
            cc(vec![Coding::new(systems::LOINC, "718-7")]),
            cc(vec![Coding { display: Some("Hgb".into()), ..Coding::new(systems::LOINC, "718-7") }]),
            cc(vec![Coding::new("LN", "4548-4")]),
            cc(vec![Coding::new(systems::LOINC, "0000-0")]),
            cc(vec![Coding { system: None, code: None, display: Some("free text".into()), ..Default::default() }]),
            cc(vec![Coding::new("http://terminology.hl7.org/CodeSystem/v2-0078", "H")]),
            cc(vec![Coding::new("SCT", "44054006")]),
        ],
        values: vec![],
    };
    let r = e.enrich(&mut ev);
    assert_eq!(ev.codes[0].coding[0].display.as_deref(), Some("Hemoglobin [Mass/volume] in Blood"));
    assert!(matches!(
        entry(&r, "Observation[0].code.coding[0]").actions[..],
        [Action::AlreadyStandard, Action::DisplayAdded { .. }]
    ));
    assert_eq!(ev.codes[1].coding[0].display.as_deref(), Some("Hgb"), "sender display kept");
    assert!(matches!(
        entry(&r, "Observation[1].code.coding[0]").actions[..],
        [Action::AlreadyStandard, Action::DisplayDiffers { .. }]
    ));
    // Alias system: the URI coding is added beside "LN".
    assert_eq!(ev.codes[2].coding.len(), 2);
    assert_eq!(ev.codes[2].coding[0].system.as_deref(), Some("LN"));
    assert_eq!(ev.codes[2].coding[1].display.as_deref(), Some("Hemoglobin A1c/Hemoglobin.total in Blood"));
    assert_eq!(
        entry(&r, "Observation[3].code.coding[0]").not_mapped(),
        Some(&NotMappedReason::UnknownCode { system: systems::LOINC.into() })
    );
    assert_eq!(entry(&r, "Observation[4].code.coding[0]").not_mapped(), Some(&NotMappedReason::NoCode));
    assert_eq!(ev.codes[5].coding[0].display.as_deref(), Some("High"));
    // SNOMED CT is not shipped: the report says so instead of "no map".
    assert_eq!(
        entry(&r, "Observation[6].code.coding[0]").not_mapped(),
        Some(&NotMappedReason::SystemNotLoaded { system: systems::SNOMED.into() })
    );
}

#[test]
fn quantities_get_ucum_and_unknown_units_are_reported() {
    let t = Terminology::builtin();
    let e = Enricher::new(&t, EnrichOptions::default());
    let mut ev = Event {
        codes: vec![],
        values: vec![
            q("mg/dl"),
            q("K/uL"),
            q("mmol/L"),
            q("furlongs per fortnight"),
            Quantity {
                value: Some(5.0),
                unit: Some("mg/dL".into()),
                system: Some(systems::UCUM.into()),
                code: Some("mg/dX".into()),
            },
            Quantity {
                value: Some(5.0),
                unit: Some("mg/dl".into()),
                system: Some("urn:lab1:units".into()),
                code: Some("MGDL".into()),
            },
            Quantity { value: Some(5.0), unit: None, system: None, code: None },
        ],
    };
    let r = e.enrich(&mut ev);
    assert_eq!(ev.values[0].code.as_deref(), Some("mg/dL"));
    assert_eq!(ev.values[0].system.as_deref(), Some(systems::UCUM));
    assert_eq!(ev.values[0].unit.as_deref(), Some("mg/dl"), "the sender's unit string is kept");
    assert_eq!(ev.values[1].code.as_deref(), Some("10*3/uL"));
    assert!(
        matches!(&entry(&r, "Observation[1].valueQuantity").actions[..], [Action::UnitNormalised { to, .. }] if to == "10*3/uL")
    );
    assert!(matches!(entry(&r, "Observation[2].valueQuantity").actions[..], [Action::UnitAlreadyUcum]));
    assert_eq!(ev.values[3].code, None);
    assert!(matches!(
        entry(&r, "Observation[3].valueQuantity").not_mapped(),
        Some(NotMappedReason::UnknownUnit { .. })
    ));
    assert!(matches!(
        entry(&r, "Observation[4].valueQuantity").not_mapped(),
        Some(NotMappedReason::InvalidUcum { .. })
    ));
    assert_eq!(ev.values[4].code.as_deref(), Some("mg/dX"), "never overwritten");
    assert_eq!(ev.values[5].code.as_deref(), Some("MGDL"), "another unit system is left alone");
    assert_eq!(
        entry(&r, "Observation[5].valueQuantity").not_mapped(),
        Some(&NotMappedReason::OtherUnitSystem { system: "urn:lab1:units".into(), suggested: Some("mg/dL".into()) })
    );
    assert_eq!(entry(&r, "Observation[6].valueQuantity").not_mapped(), Some(&NotMappedReason::NoUnit));
    let s = r.summary();
    assert_eq!((s.quantities, s.units_normalised, s.not_mapped), (7, 2, 4));
}

#[test]
fn fhir_json_bundle_enrichment_keeps_the_original() {
    let (_d, t) = with_lab1_map();
    let e = Enricher::new(&t, EnrichOptions { sender: Some("LAB1".into()), ..Default::default() });
    let mut bundle = json!({
        "resourceType": "Bundle",
        "entry": [{ "resource": {
            "resourceType": "Observation",
            "code": { "coding": [ { "system": "urn:lab1:tests", "code": "K", "display": "POTASSIUM" } ], "text": "K+" },
            "valueQuantity": { "value": 4.1, "unit": "mmol/l" },
            "interpretation": [ { "coding": [ { "system": "http://terminology.hl7.org/CodeSystem/v2-0078", "code": "N" } ] } ]
        }}]
    });
    let original = bundle.clone();
    let r = enrich_fhir_json(&e, &mut bundle);
    let obs = &bundle["entry"][0]["resource"];
    assert_eq!(obs["code"]["coding"][0], original["entry"][0]["resource"]["code"]["coding"][0]);
    assert_eq!(obs["code"]["coding"][1]["system"], systems::LOINC);
    assert_eq!(obs["code"]["coding"][1]["code"], "2823-3");
    assert_eq!(obs["code"]["coding"][1]["display"], "Potassium [Moles/volume] in Serum or Plasma");
    assert_eq!(obs["code"]["text"], "K+");
    assert_eq!(obs["valueQuantity"]["unit"], "mmol/l");
    assert_eq!(obs["valueQuantity"]["system"], systems::UCUM);
    assert_eq!(obs["valueQuantity"]["code"], "mmol/L");
    assert_eq!(obs["interpretation"][0]["coding"][0]["display"], "Normal");
    assert_eq!(r.not_mapped().count(), 0, "{r:#?}");
    assert_eq!(r.entries.len(), 3);
}
