//! What the store indexes, read out of a resource's FHIR R4 JSON.
//!
//! The searches the API offers need a few fields as columns (identifiers, names, birth date,
//! codes, the clinically relevant time, the patient reference). Extracting them is a pure
//! function of the JSON so it can be tested without a database, and it never fails: a field
//! that is missing or malformed simply is not indexed (the resource itself is still stored).

use serde_json::Value;

use crate::time;

/// The index entries of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Patient id from `subject` / `patient` when it is a `Patient/<id>` reference.
    pub patient_ref: Option<String>,
    /// Patient.identifier (system, value); system empty when absent.
    pub identifiers: Vec<(String, String)>,
    /// Patient.name family and given parts, lower-cased, deduplicated.
    pub names: Vec<String>,
    /// Patient.birthDate as written (YYYY, YYYY-MM or YYYY-MM-DD).
    pub birth_date: Option<String>,
    /// `code.coding` (system, code); system empty when absent.
    pub codes: Vec<(String, String)>,
    /// The time lists sort and filter on, microseconds since the epoch (UTC): Observation and
    /// DiagnosticReport effective[x] (else issued), Encounter period.start.
    pub effective: Option<i64>,
}

/// Extracts the index entries of a resource of `resource_type` from its JSON.
pub fn extract(resource_type: &str, json: &Value) -> Extracted {
    let mut x = Extracted { patient_ref: patient_reference(json), ..Default::default() };
    match resource_type {
        "Patient" => {
            x.patient_ref = None;
            for ident in array(json, "identifier") {
                if let Some(value) = ident.get("value").and_then(Value::as_str).filter(|v| !v.is_empty()) {
                    let system = ident.get("system").and_then(Value::as_str).unwrap_or_default();
                    push_unique(&mut x.identifiers, (system.to_string(), value.to_string()));
                }
            }
            for name in array(json, "name") {
                let family = name.get("family").and_then(Value::as_str).into_iter();
                let given = array(name, "given").filter_map(Value::as_str);
                for part in family.chain(given) {
                    let part = part.trim().to_lowercase();
                    if !part.is_empty() {
                        push_unique(&mut x.names, part);
                    }
                }
            }
            x.birth_date =
                json.get("birthDate").and_then(Value::as_str).filter(|d| is_date_prefix(d)).map(str::to_string);
        }
        "Observation" | "DiagnosticReport" => {
            if let Some(code) = json.get("code") {
                for coding in array(code, "coding") {
                    if let Some(c) = coding.get("code").and_then(Value::as_str).filter(|c| !c.is_empty()) {
                        let system = coding.get("system").and_then(Value::as_str).unwrap_or_default();
                        push_unique(&mut x.codes, (system.to_string(), c.to_string()));
                    }
                }
            }
            x.effective = str_at(json, &["effectiveDateTime"])
                .or_else(|| str_at(json, &["effectivePeriod", "start"]))
                .or_else(|| str_at(json, &["effectiveInstant"]))
                .or_else(|| str_at(json, &["issued"]))
                .and_then(|s| time::parse_start(s).ok());
        }
        "Encounter" => {
            x.effective = str_at(json, &["period", "start"]).and_then(|s| time::parse_start(s).ok());
        }
        _ => {}
    }
    x
}

/// `subject.reference` or `patient.reference` when it names a Patient: `Patient/<id>`, also
/// as the tail of an absolute URL, without a `/_history/...` suffix.
fn patient_reference(json: &Value) -> Option<String> {
    ["subject", "patient"].iter().find_map(|field| {
        let r = json.get(field)?.get("reference")?.as_str()?;
        let r = r.split("/_history/").next().unwrap_or(r);
        let (prefix, id) = r.rsplit_once('/')?;
        (prefix == "Patient" || prefix.ends_with("/Patient")).then(|| id.to_string()).filter(|id| !id.is_empty())
    })
}

/// Whether `s` is YYYY, YYYY-MM or YYYY-MM-DD (digits only).
pub fn is_date_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    match b.len() {
        4 => digits(0..4),
        7 => digits(0..4) && b[4] == b'-' && digits(5..7),
        10 => digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10),
        _ => false,
    }
}

fn array<'a>(v: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    v.get(field).and_then(Value::as_array).into_iter().flatten()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, p| v.get(p))?.as_str()
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, item: T) {
    if !v.contains(&item) {
        v.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patient_identifiers_names_birth_date() {
        let p = json!({
            "resourceType": "Patient", "id": "p1",
            "identifier": [
                {"system": "urn:oid:1.2.3", "value": "MRN-1"},
                {"value": "NOSYS"},
                {"system": "urn:oid:1.2.3", "value": "MRN-1"},
                {"system": "urn:x"}
            ],
            "name": [{"family": "Ölander", "given": ["Anna", "Maria "]}, {"family": "ANNA"}],
            "birthDate": "1980-02-29"
        });
        let x = extract("Patient", &p);
        assert_eq!(x.identifiers, vec![("urn:oid:1.2.3".into(), "MRN-1".into()), (String::new(), "NOSYS".into())]);
        assert_eq!(x.names, vec!["ölander".to_string(), "anna".into(), "maria".into()]);
        assert_eq!(x.birth_date.as_deref(), Some("1980-02-29"));
        assert_eq!(x.patient_ref, None);
        assert_eq!(x.effective, None);
    }

    #[test]
    fn malformed_birth_date_is_not_indexed() {
        let x = extract("Patient", &json!({"birthDate": "29.02.1980"}));
        assert_eq!(x.birth_date, None);
        let x = extract("Patient", &json!({"birthDate": 1980}));
        assert_eq!(x.birth_date, None);
    }

    #[test]
    fn observation_codes_subject_and_effective_fallbacks() {
        let o = json!({
            "resourceType": "Observation",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}, {"code": "GLU"}]},
            "effectiveDateTime": "2024-03-01T10:00:00+01:00"
        });
        let x = extract("Observation", &o);
        assert_eq!(x.patient_ref.as_deref(), Some("p1"));
        assert_eq!(x.codes, vec![("http://loinc.org".into(), "2345-7".into()), (String::new(), "GLU".into())]);
        assert_eq!(x.effective, Some(time::parse_start("2024-03-01T09:00:00Z").unwrap()));

        let period = extract(
            "Observation",
            &json!({"effectivePeriod": {"start": "2024-03-02"}, "issued": "2025-01-01T00:00:00Z"}),
        );
        assert_eq!(period.effective, Some(time::parse_start("2024-03-02").unwrap()));
        let issued = extract("Observation", &json!({"issued": "2025-01-01T00:00:00Z"}));
        assert_eq!(issued.effective, Some(time::parse_start("2025-01-01").unwrap()));
        let none = extract("Observation", &json!({"effectiveDateTime": "not a date"}));
        assert_eq!(none.effective, None);
    }

    #[test]
    fn encounter_period_and_report_patient() {
        let e = extract(
            "Encounter",
            &json!({"subject": {"reference": "https://h.example/fhir/Patient/p9/_history/3"}, "period": {"start": "2024-05"}}),
        );
        assert_eq!(e.patient_ref.as_deref(), Some("p9"));
        assert_eq!(e.effective, Some(time::parse_start("2024-05-01").unwrap()));
        let r = extract("AllergyIntolerance", &json!({"patient": {"reference": "Patient/p2"}}));
        assert_eq!(r.patient_ref.as_deref(), Some("p2"));
        let g = extract("Observation", &json!({"subject": {"reference": "Group/g1"}}));
        assert_eq!(g.patient_ref, None);
    }

    #[test]
    fn date_prefixes() {
        for ok in ["2024", "2024-01", "2024-01-31"] {
            assert!(is_date_prefix(ok), "{ok}");
        }
        for bad in ["", "24", "2024-1", "2024/01", "2024-01-3x", "2024-01-31T00"] {
            assert!(!is_date_prefix(bad), "{bad}");
        }
    }
}
