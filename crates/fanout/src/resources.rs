//! From one event to standalone resources. Inside an event, resources refer to each other with
//! bundle-local `urn:uuid:<id>` references; once a resource stands alone on a topic those must
//! become `<Type>/<id>`, as a FHIR server does when it processes a transaction bundle. The
//! patient a resource is about is read from the result, for keys and indexes.

use canonical::{ClinicalEvent, FhirResource};
use serde_json::Value;
use std::collections::HashMap;

mod json;

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("resource {index} ({resource_type}) is not valid JSON: {detail}")]
    Json { index: usize, resource_type: String, detail: String },
}

fn rewrite_refs(v: &mut Value, types: &HashMap<&str, &str>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("reference")
                && let Some(id) = r.strip_prefix("urn:uuid:")
                && let Some(t) = types.get(id)
            {
                *r = format!("{t}/{id}");
            }
            for child in map.values_mut() {
                rewrite_refs(child, types);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| rewrite_refs(c, types)),
        _ => {}
    }
}

/// The patient a resource is about: itself for a Patient, else `subject` or `patient`.
pub fn patient_of(resource_type: &str, id: &str, json: &Value) -> Option<String> {
    if resource_type == "Patient" {
        return Some(id.to_string());
    }
    ["subject", "patient"]
        .iter()
        .find_map(|f| json.get(f)?.get("reference")?.as_str()?.strip_prefix("Patient/").map(str::to_string))
}

/// The event's resources of the wanted types as `FhirResource` records, references resolved.
pub fn current_state(event: &ClinicalEvent, wanted: &[String]) -> Result<Vec<FhirResource>, ResourceError> {
    let types: HashMap<&str, &str> =
        event.resources.iter().map(|r| (r.id.as_str(), r.resource_type.as_str())).collect();
    let mut out = Vec::new();
    let mut scratch = json::Scratch::default();
    for (index, r) in event.resources.iter().enumerate() {
        if !wanted.contains(&r.resource_type) {
            continue;
        }
        let (fhir_json, patient_id) = match json::standalone(&r.fhir_json, &types, &mut scratch) {
            Some((text, patient)) => (text, if r.resource_type == "Patient" { Some(r.id.clone()) } else { patient }),
            None => {
                let mut json: Value = serde_json::from_str(&r.fhir_json).map_err(|e| ResourceError::Json {
                    index,
                    resource_type: r.resource_type.clone(),
                    detail: e.to_string(),
                })?;
                rewrite_refs(&mut json, &types);
                let patient = patient_of(&r.resource_type, &r.id, &json);
                (serde_json::to_string(&json).expect("a JSON value serialises"), patient)
            }
        };
        out.push(FhirResource {
            id: r.id.clone(),
            resource_type: r.resource_type.clone(),
            tenant: event.tenant.clone(),
            patient_id,
            source_event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            occurred_at: event.occurred_at,
            fhir_json,
        });
    }
    Ok(out)
}

/// The event's resources as a FHIR `collection` Bundle (for JSON subscribers), references
/// resolved to `<Type>/<id>` and each entry's fullUrl likewise.
pub fn collection_bundle(event: &ClinicalEvent) -> Result<Value, ResourceError> {
    Ok(serde_json::from_slice(&collection_bundle_json(event)?).expect("written as JSON"))
}

/// [`collection_bundle`] as JSON, written directly in FHIR's element order (as the resources
/// are): each resource's text from [`current_state`] is compact JSON, so it goes in as it is.
pub fn collection_bundle_json(event: &ClinicalEvent) -> Result<Vec<u8>, ResourceError> {
    let all: Vec<String> = event.resources.iter().map(|r| r.resource_type.clone()).collect();
    let resources = current_state(event, &all)?;
    let str_json = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let mut out = String::with_capacity(64 + resources.iter().map(|r| r.fhir_json.len() + 48).sum::<usize>());
    out.push_str("{\"resourceType\":\"Bundle\",\"id\":");
    out.push_str(&str_json(&event.id));
    out.push_str(",\"type\":\"collection\",\"entry\":[");
    for (i, r) in resources.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"fullUrl\":");
        out.push_str(&str_json(&format!("{}/{}", r.resource_type, r.id)));
        out.push_str(",\"resource\":");
        out.push_str(&r.fhir_json);
        out.push('}');
    }
    out.push_str("]}");
    Ok(out.into_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use canonical::{Provenance, Resource, SenderId};

    pub fn event() -> ClinicalEvent {
        let r =
            |t: &str, id: &str, j: Value| Resource { resource_type: t.into(), id: id.into(), fhir_json: j.to_string() };
        ClinicalEvent {
            id: "ev-1".into(),
            source_raw_id: "raw-1".into(),
            tenant: "t".into(),
            event_type: "hl7v2.oru.r01".into(),
            occurred_at: 1_700_000_000_000_000,
            sender: SenderId { application: "LAB".into(), facility: "NORTH".into() },
            patient_key: Some("p1".into()),
            provenance: Provenance {
                source_format: "hl7v2".into(),
                source_message_type: Some("ORU^R01".into()),
                source_control_id: Some("C1".into()),
                stage: "enrich".into(),
                logic_version: "x".into(),
                profile: None,
            },
            resources: vec![
                r(
                    "MessageHeader",
                    "mh1",
                    serde_json::json!({"resourceType": "MessageHeader", "id": "mh1", "focus": [{"reference": "urn:uuid:o1"}]}),
                ),
                r("Patient", "p1", serde_json::json!({"resourceType": "Patient", "id": "p1"})),
                r(
                    "Observation",
                    "o1",
                    serde_json::json!({"resourceType": "Observation", "id": "o1", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
                    "subject": {"reference": "urn:uuid:p1"}, "performer": [{"reference": "urn:uuid:elsewhere"}]}),
                ),
            ],
            issues: vec![],
        }
    }

    #[test]
    fn decimals_keep_their_digits_when_references_are_rewritten() {
        let mut ev = event();
        ev.resources[2].fhir_json = r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:p1"},"valueQuantity":{"value":5.50}}"#.into();
        let out = current_state(&ev, &["Observation".to_string()]).unwrap();
        assert!(out[0].fhir_json.contains(r#""value":5.50"#), "{}", out[0].fhir_json);
        assert!(out[0].fhir_json.contains(r#""reference":"Patient/p1""#), "{}", out[0].fhir_json);
    }

    #[test]
    fn current_state_resolves_references_and_finds_the_patient() {
        let wanted = vec!["Patient".to_string(), "Observation".to_string()];
        let out = current_state(&event(), &wanted).unwrap();
        assert_eq!(out.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["p1", "o1"], "MessageHeader skipped");
        let obs: Value = serde_json::from_str(&out[1].fhir_json).unwrap();
        assert_eq!(obs["subject"]["reference"], "Patient/p1");
        assert_eq!(obs["performer"][0]["reference"], "urn:uuid:elsewhere", "unknown targets left as they are");
        assert_eq!(out[1].patient_id.as_deref(), Some("p1"));
        assert_eq!(out[0].patient_id.as_deref(), Some("p1"), "a Patient is about itself");
        assert_eq!(out[1].source_event_id, "ev-1");
        assert_eq!(out[1].occurred_at, 1_700_000_000_000_000);
    }

    #[test]
    fn the_bundle_is_the_bundle_value_in_fhirs_element_order() {
        let mut ev = event();
        // Whitespace and an escaped string, so the resources do not go in as they came.
        ev.resources[1].fhir_json =
            "{ \"resourceType\": \"Patient\", \"id\": \"p1\", \"name\": [{\"text\": \"A \\\"B\\\" C\"}] }".into();
        let all: Vec<String> = ev.resources.iter().map(|r| r.resource_type.clone()).collect();
        let entries: Vec<Value> = current_state(&ev, &all)
            .unwrap()
            .into_iter()
            .map(|r| {
                let resource: Value = serde_json::from_str(&r.fhir_json).unwrap();
                serde_json::json!({ "fullUrl": format!("{}/{}", r.resource_type, r.id), "resource": resource })
            })
            .collect();
        let expected =
            serde_json::json!({ "resourceType": "Bundle", "id": ev.id, "type": "collection", "entry": entries });
        let text = String::from_utf8(collection_bundle_json(&ev).unwrap()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
        assert_eq!(collection_bundle(&ev).unwrap(), expected);
        // Element order, the resources' own order kept (the Patient's whitespace gone).
        assert!(
            text.starts_with(r#"{"resourceType":"Bundle","id":"ev-1","type":"collection","entry":[{"fullUrl":"MessageHeader/mh1","resource":{"#),
            "{text}"
        );
        assert!(text.contains(r#"{"fullUrl":"Patient/p1","resource":{"resourceType":"Patient","id":"p1","name":[{"text":"A \"B\" C"}]}}"#), "{text}");
    }

    #[test]
    fn collection_bundle_holds_every_resource() {
        let b = collection_bundle(&event()).unwrap();
        assert_eq!(b["type"], "collection");
        assert_eq!(b["entry"].as_array().unwrap().len(), 3);
        assert_eq!(b["entry"][2]["fullUrl"], "Observation/o1");
        assert_eq!(b["entry"][0]["resource"]["focus"][0]["reference"], "Observation/o1");
    }
}
