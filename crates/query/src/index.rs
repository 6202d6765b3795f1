//! What the store indexes, read out of a resource's FHIR R4 JSON.
//!
//! The searches the API offers need a few fields as columns (identifiers, names, birth date,
//! codes, the clinically relevant time, the patient reference). Extracting them is a pure
//! function of the JSON so it can be tested without a database, and it never fails: a field
//! that is missing or malformed simply is not indexed (the resource itself is still stored).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

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

/// Parses `json` (which must be one JSON object) and extracts the index entries of a resource
/// of `resource_type`, as [`extract`] does on the parsed value.
///
/// Why not parse into a `Value` first: the store does this for every record it receives, and a
/// resource is mostly fields no index reads (narrative, values, extensions, meta). Only the
/// top-level fields [`extract`] reads for this type are built as values; every other field is
/// checked for JSON syntax and skipped without allocating. The whole text is still parsed, so
/// malformed JSON anywhere is refused as before. One leniency: a skipped string's `\u` escapes
/// are checked for hex digits only, so a lone surrogate there is no longer refused (the JSON
/// grammar allows it; our producers never write one).
pub fn extract_json(resource_type: &str, json: &str) -> Result<Extracted, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    let fields = Fields { wanted: wanted_fields(resource_type) }.deserialize(&mut de)?;
    de.end()?;
    Ok(extract(resource_type, &Value::Object(fields)))
}

/// The top-level fields [`extract`] reads for `resource_type`.
fn wanted_fields(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "Patient" => &["identifier", "name", "birthDate"],
        "Observation" | "DiagnosticReport" => {
            &["subject", "patient", "code", "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"]
        }
        "Encounter" => &["subject", "patient", "period"],
        _ => &["subject", "patient"],
    }
}

/// Reads a JSON object keeping only the `wanted` fields (a repeated field: the last one wins,
/// as in a parsed `Value`).
struct Fields {
    wanted: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for Fields {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(Key(key)) = map.next_key()? {
            if self.wanted.contains(&key.as_ref()) {
                out.insert(key.into_owned(), map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

/// An object key, borrowed from the input unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
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
    fn targeted_parse_extracts_what_a_full_parse_does() {
        let docs = [
            (
                "Patient",
                r#"{"resourceType":"Patient","text":{"div":"<div>x</div>"},"identifier":[{"system":"urn:a","value":"M1"},{"value":"M2"}],
              "name":[{"family":"Smith","given":["Ann","Bo"]}],"birthDate":"1980-02-03","subject":{"reference":"Patient/x"}}"#,
            ),
            (
                "Observation",
                r#"{"valueQuantity":{"value":1.50e3},"code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},
              "subject":{"reference":"Patient/p1"},"effectivePeriod":{"start":"2024-03-02"},"extension":[[1,{"a":null}],true]}"#,
            ),
            (
                "DiagnosticReport",
                r#"{"patient":{"reference":"Patient/p2"},"issued":"2025-01-01T00:00:00Z","code":{"coding":[{"code":"X"}]}}"#,
            ),
            ("Encounter", r#"{"subject":{"reference":"Patient/p3"},"period":{"start":"2024-05"}}"#),
            ("Condition", r#"{"subject":{"reference":"Patient/p4"},"code":{"coding":[{"code":"I10"}]}}"#),
            // A repeated field: the last one counts, as in a full parse.
            ("Observation", r#"{"code":{"coding":[{"code":"OLD"}]},"code":{"coding":[{"code":"NEW"}]}}"#),
            // Escaped keys are still recognised.
            ("Patient", r#"{"birth\u0044ate":"1990","n\u0061me":[{"family":"Esc"}]}"#),
            // Wrong types are not indexed, and not an error.
            ("Patient", r#"{"birthDate":1980,"identifier":{"value":"x"},"name":"Ann"}"#),
            ("Observation", r#"{}"#),
        ];
        for (rt, doc) in docs {
            let full = extract(rt, &serde_json::from_str::<Value>(doc).unwrap());
            assert_eq!(extract_json(rt, doc).unwrap(), full, "{rt} {doc}");
        }
        let x = extract_json("Observation", docs[5].1).unwrap();
        assert_eq!(x.codes, vec![(String::new(), "NEW".to_string())]);
        let p = extract_json("Patient", docs[6].1).unwrap();
        assert_eq!((p.birth_date.as_deref(), p.names.as_slice()), (Some("1990"), &["esc".to_string()][..]));
    }

    #[test]
    fn targeted_parse_refuses_malformed_json_even_in_skipped_fields() {
        for not_an_object in ["[1,2]", "\"a string\"", "null", "3"] {
            let e = extract_json("Observation", not_an_object).unwrap_err();
            assert!(e.to_string().contains("expected a JSON object"), "{e}");
        }
        for bad in [
            "",
            "{",
            r#"{"text":{"div":"x"}"#,
            r#"{"text":{"div":"x"}} trailing"#,
            r#"{"text":"bad \x escape"}"#,
            r#"{"valueQuantity":{"value":01}}"#,
            r#"{"extension":[1,,2]}"#,
            "{\"text\":\"raw\u{1}control\"}",
            r#"{"a":1,}"#,
        ] {
            assert!(extract_json("Observation", bad).is_err(), "accepted {bad:?}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "the full parse accepts {bad:?}");
        }
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
