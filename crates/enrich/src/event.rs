//! Enriching one `ClinicalEvent`: each resource's FHIR JSON goes through the terminology
//! enricher; what could not be mapped becomes an issue on the event (the terminology report),
//! and the provenance records the enrich stage. Deterministic: the same event and terminology
//! give the same output, as the transactional loop's replays require.

use canonical::{ClinicalEvent, Issue, IssueSeverity};
use terminology::{Action, EnrichOptions, Enricher, NotMappedReason, Terminology};

/// The version of the enrichment logic, recorded in the provenance.
pub const LOGIC_VERSION: &str = concat!("arteria-enrich/", env!("CARGO_PKG_VERSION"));

/// Counts for metrics and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub codings_added: u64,
    pub displays_added: u64,
    pub units_normalised: u64,
    pub not_mapped: u64,
}

/// Why an event could not be enriched at all.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error("resource {index} ({resource_type}) is not valid JSON: {detail}")]
    Json { index: usize, resource_type: String, detail: String },
}

/// The sender key of the event's local code maps (see [`terminology::enrich::sender_key`]).
pub fn sender_key(event: &ClinicalEvent) -> String {
    terminology::enrich::sender_key(&event.sender.application, &event.sender.facility)
}

fn reason_text(r: &NotMappedReason) -> (&'static str, String) {
    match r {
        NotMappedReason::NoCode => ("no-code", "coding has no code".into()),
        NotMappedReason::UnknownCode { system } => ("unknown-code", format!("code not found in {system}")),
        NotMappedReason::SystemNotLoaded { system } => {
            ("system-not-loaded", format!("{system} is not loaded; load its release to check and map it"))
        }
        NotMappedReason::NoMap => ("not-mapped", "no concept map translates this code to a standard system".into()),
        NotMappedReason::MapUnmatched { map_url } => ("map-unmatched", format!("{map_url} says the code has no match")),
        NotMappedReason::NoUnit => ("no-unit", "quantity has no unit".into()),
        NotMappedReason::UnknownUnit { .. } => {
            ("unknown-unit", "unit is neither a known sender unit nor valid UCUM".into())
        }
        NotMappedReason::InvalidUcum { error, .. } => ("invalid-ucum", format!("UCUM code is invalid: {error}")),
        NotMappedReason::OtherUnitSystem { system, .. } => {
            ("other-unit-system", format!("unit coded in {system}, left as is"))
        }
    }
}

/// Enriches `event` in place.
pub fn enrich_event(term: &Terminology, event: &mut ClinicalEvent) -> Result<Summary, EnrichError> {
    let enricher = Enricher::new(term, EnrichOptions { sender: Some(sender_key(event)), ..EnrichOptions::default() });
    let mut summary = Summary::default();
    let mut issues = Vec::new();
    for (index, res) in event.resources.iter_mut().enumerate() {
        let enriched = terminology::enrich::enrich_fhir_text(&enricher, &res.fhir_json).map_err(|e| {
            EnrichError::Json { index, resource_type: res.resource_type.clone(), detail: e.to_string() }
        })?;
        let report = enriched.report;
        for entry in &report.entries {
            for a in &entry.actions {
                match a {
                    Action::StandardCodingAdded { .. } => summary.codings_added += 1,
                    Action::DisplayAdded { .. } => summary.displays_added += 1,
                    Action::UnitNormalised { .. } => summary.units_normalised += 1,
                    Action::NotMapped(reason) => {
                        summary.not_mapped += 1;
                        let (code, detail) = reason_text(reason);
                        issues.push(Issue {
                            severity: IssueSeverity::Warning,
                            code: code.into(),
                            location: format!("{}/{}: {}", res.resource_type, res.id, entry.path),
                            stage: "enrich".into(),
                            detail,
                        });
                    }
                    _ => {}
                }
            }
        }
        // Only what enrichment added to is rewritten, so untouched resources stay byte for byte.
        if let Some(json) = enriched.json {
            res.fhir_json = json;
        }
    }
    event.issues.extend(issues);
    event.provenance.stage = "enrich".into();
    event.provenance.logic_version = LOGIC_VERSION.into();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use canonical::{Provenance, Resource, SenderId};

    fn event(resources: Vec<(&str, &str, serde_json::Value)>) -> ClinicalEvent {
        ClinicalEvent {
            id: "ev-1".into(),
            source_raw_id: "raw-1".into(),
            tenant: "t".into(),
            event_type: "hl7v2.oru.r01".into(),
            occurred_at: 0,
            sender: SenderId { application: "LAB".into(), facility: "NORTH".into() },
            patient_key: Some("p".into()),
            provenance: Provenance {
                source_format: "hl7v2".into(),
                source_message_type: Some("ORU^R01".into()),
                source_control_id: Some("C1".into()),
                stage: "normalize".into(),
                logic_version: "x".into(),
                profile: None,
            },
            resources: resources
                .into_iter()
                .map(|(t, id, j)| Resource { resource_type: t.into(), id: id.into(), fhir_json: j.to_string() })
                .collect(),
            issues: vec![],
        }
    }

    #[test]
    fn adds_displays_and_ucum_without_touching_originals_and_reports_the_rest() {
        let obs = serde_json::json!({
            "resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "valueQuantity": {"value": 95, "unit": "mg/dl"}
        });
        let local = serde_json::json!({
            "resourceType": "Observation", "id": "o2", "status": "final",
            "code": {"coding": [{"system": "urn:local:lab", "code": "ZZ-UNKNOWN", "display": "Local thing"}]},
            "valueQuantity": {"value": 1, "unit": "blargs"}
        });
        let mut ev = event(vec![("Observation", "o1", obs), ("Observation", "o2", local.clone())]);
        let s = enrich_event(&Terminology::builtin(), &mut ev).unwrap();

        let o1: serde_json::Value = serde_json::from_str(&ev.resources[0].fhir_json).unwrap();
        assert_eq!(o1["code"]["coding"][0]["code"], "2345-7", "original coding kept");
        assert!(o1["code"]["coding"][0]["display"].as_str().is_some_and(|d| d.contains("Glucose")), "{o1}");
        assert_eq!(o1["valueQuantity"]["unit"], "mg/dl", "the sender's unit text is kept");
        assert_eq!(o1["valueQuantity"]["system"], "http://unitsofmeasure.org");
        assert_eq!(o1["valueQuantity"]["code"], "mg/dL");

        let o2: serde_json::Value = serde_json::from_str(&ev.resources[1].fhir_json).unwrap();
        assert_eq!(o2, local, "nothing known: the resource is unchanged");
        assert!(s.displays_added >= 1 && s.units_normalised >= 1 && s.not_mapped >= 2, "{s:?}");
        let codes: Vec<&str> = ev.issues.iter().map(|i| i.code.as_str()).collect();
        assert!(codes.contains(&"not-mapped") && codes.contains(&"unknown-unit"), "{codes:?}");
        assert!(ev.issues.iter().all(|i| i.location.starts_with("Observation/o2")), "{:?}", ev.issues);
        assert_eq!(ev.provenance.stage, "enrich");
    }

    #[test]
    fn decimals_keep_their_digits_through_enrichment() {
        // Significant figures carry meaning: "1.00" must not come out as 1.0, nor 0.840 as 0.84.
        let json = r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"valueQuantity":{"value":0.840,"unit":"mg/dl"},"referenceRange":[{"high":{"value":1.00,"unit":"mg/dl"}}]}"#;
        let mut ev = event(vec![]);
        ev.resources.push(Resource { resource_type: "Observation".into(), id: "o1".into(), fhir_json: json.into() });
        enrich_event(&Terminology::builtin(), &mut ev).unwrap();
        let out = &ev.resources[0].fhir_json;
        assert!(out.contains(r#""value":0.840"#) && out.contains(r#""value":1.00"#), "{out}");
        assert!(out.contains(r#""code":"mg/dL""#), "enriched as well: {out}");
    }

    #[test]
    fn a_unit_already_in_ucum_gets_its_system_and_code_as_the_cli_gives_it() {
        // `mmol/L` is valid UCUM: the enricher reports UnitAlreadyUcum yet fills system and
        // code; the stage once dropped that change (the CLI's `convert --enrich` kept it).
        let obs = serde_json::json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "urn:local:lab", "code": "K"}]},
            "valueQuantity": {"value": 4.1, "unit": "mmol/L"},
            "referenceRange": [{"low": {"value": 3.5, "unit": "mmol/L"}, "high": {"value": 5.1, "unit": "mmol/L"}}]});
        let mut ev = event(vec![("Observation", "o1", obs.clone())]);
        let t = Terminology::builtin();
        enrich_event(&t, &mut ev).unwrap();
        let got: serde_json::Value = serde_json::from_str(&ev.resources[0].fhir_json).unwrap();
        for q in [&got["valueQuantity"], &got["referenceRange"][0]["low"], &got["referenceRange"][0]["high"]] {
            assert_eq!(q["system"], "http://unitsofmeasure.org", "{got}");
            assert_eq!(q["code"], "mmol/L", "{got}");
            assert_eq!(q["unit"], "mmol/L");
        }
        // The same as enriching the resource the way `arteria convert --enrich` does.
        let mut cli = obs;
        let enricher =
            Enricher::new(&t, EnrichOptions { sender: Some("LAB|NORTH".into()), ..EnrichOptions::default() });
        terminology::enrich::enrich_fhir_json(&enricher, &mut cli);
        assert_eq!(got, cli);
    }

    #[test]
    fn is_deterministic_for_replays() {
        let obs = serde_json::json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}, "valueQuantity": {"value": 5, "unit": "mmol/l"}});
        let mut a = event(vec![("Observation", "o1", obs.clone())]);
        let mut b = event(vec![("Observation", "o1", obs)]);
        let t = Terminology::builtin();
        enrich_event(&t, &mut a).unwrap();
        enrich_event(&t, &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn broken_json_is_an_error_naming_the_resource() {
        let mut ev = event(vec![]);
        ev.resources.push(Resource { resource_type: "Patient".into(), id: "p1".into(), fhir_json: "{not json".into() });
        let e = enrich_event(&Terminology::builtin(), &mut ev).unwrap_err();
        assert!(e.to_string().contains("resource 0 (Patient)"), "{e}");
    }
}
