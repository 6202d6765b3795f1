//! The Avro binary bodies of [`ClinicalEvent`] and [`FhirResource`], written by hand.
//!
//! These two records are most of what the pipeline encodes (one event per message per stage,
//! one `FhirResource` per resource), and their `typed` fields are large. Writing them through
//! apache_avro's schema-aware serde serializer costs a schema lookup, a union search and a
//! dispatch per field; here each field is written in schema order straight into the buffer.
//! The bytes are the same as that serializer's for the committed schemas: the tests below
//! compare the two over real conversions, so a field added to the schema without being added
//! here fails them (as does the committed-schema test, first).

use crate::event::{Issue, IssueSeverity, Provenance, Resource};
use crate::raw::SenderId;
use crate::typed::{write_long, write_str, write_typed_field};
use crate::{ClinicalEvent, FhirResource};

/// `["null", "string"]`: branch 0 for none, branch 1 then the string.
fn write_opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => write_long(out, 0),
        Some(s) => {
            write_long(out, 1);
            write_str(out, s);
        }
    }
}

/// An array of records in one block (count, items, closing zero), or a lone zero when empty.
fn write_array<T>(out: &mut Vec<u8>, items: &[T], item: impl Fn(&mut Vec<u8>, &T)) {
    if !items.is_empty() {
        write_long(out, items.len() as i64);
        items.iter().for_each(|i| item(out, i));
    }
    write_long(out, 0);
}

fn write_sender(out: &mut Vec<u8>, s: &SenderId) {
    write_str(out, &s.application);
    write_str(out, &s.facility);
}

fn write_provenance(out: &mut Vec<u8>, p: &Provenance) {
    write_str(out, &p.source_format);
    write_opt_str(out, p.source_message_type.as_deref());
    write_opt_str(out, p.source_control_id.as_deref());
    write_str(out, &p.stage);
    write_str(out, &p.logic_version);
    write_opt_str(out, p.profile.as_deref());
}

fn write_resource(out: &mut Vec<u8>, r: &Resource) {
    write_str(out, &r.resource_type);
    write_str(out, &r.id);
    write_str(out, &r.fhir_json);
    write_typed_field(out, &r.resource_type, &r.fhir_json);
}

fn write_issue(out: &mut Vec<u8>, i: &Issue) {
    // The enum's symbols in schema order: INFO, WARNING, ERROR.
    write_long(
        out,
        match i.severity {
            IssueSeverity::Info => 0,
            IssueSeverity::Warning => 1,
            IssueSeverity::Error => 2,
        },
    );
    write_str(out, &i.code);
    write_str(out, &i.location);
    write_str(out, &i.stage);
    write_str(out, &i.detail);
}

impl ClinicalEvent {
    /// Appends the event's Avro binary body (schema `ClinicalEvent.avsc`), typed records included.
    pub fn write_avro(&self, out: &mut Vec<u8>) {
        write_str(out, &self.id);
        write_str(out, &self.source_raw_id);
        write_str(out, &self.tenant);
        write_str(out, &self.event_type);
        write_long(out, self.occurred_at);
        write_sender(out, &self.sender);
        write_opt_str(out, self.patient_key.as_deref());
        write_provenance(out, &self.provenance);
        write_array(out, &self.resources, write_resource);
        write_array(out, &self.issues, write_issue);
    }
}

impl FhirResource {
    /// Appends the resource's Avro binary body (schema `FhirResource.avsc`), typed record included.
    pub fn write_avro(&self, out: &mut Vec<u8>) {
        write_str(out, &self.id);
        write_str(out, &self.resource_type);
        write_str(out, &self.tenant);
        write_opt_str(out, self.patient_id.as_deref());
        write_str(out, &self.source_event_id);
        write_str(out, &self.event_type);
        write_long(out, self.occurred_at);
        write_str(out, &self.fhir_json);
        write_typed_field(out, &self.resource_type, &self.fhir_json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::IssueSeverity;
    use apache_avro::AvroSchema;
    use apache_avro::writer::datum::GenericDatumWriter;

    fn serde_bytes<T: AvroSchema + serde::Serialize>(v: &T) -> Vec<u8> {
        let schema = T::get_schema();
        GenericDatumWriter::builder(&schema).build().unwrap().write_ser_to_vec(v).unwrap()
    }

    fn observation(id: &str, json: &str) -> Resource {
        Resource { resource_type: "Observation".into(), id: id.into(), fhir_json: json.into() }
    }

    fn event(resources: Vec<Resource>, issues: Vec<Issue>) -> ClinicalEvent {
        ClinicalEvent {
            id: "ev-1".into(),
            source_raw_id: "raw-1".into(),
            tenant: "t1".into(),
            event_type: "hl7v2.oru.r01".into(),
            occurred_at: -1_700_000_000_123_456,
            sender: SenderId { application: "LAB".into(), facility: "ÉAST".into() },
            patient_key: Some("pk".into()),
            provenance: Provenance {
                source_format: "hl7v2".into(),
                source_message_type: Some("ORU^R01".into()),
                source_control_id: None,
                stage: "normalize".into(),
                logic_version: "1".into(),
                profile: None,
            },
            resources,
            issues,
        }
    }

    #[test]
    fn event_bytes_equal_the_serde_writers() {
        let fits = r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"valueQuantity":{"value":0.84,"unit":"mg/dL"},"referenceRange":[{"low":{"value":0.57},"high":{"value":1.00}}]}"#;
        // An element the typed model does not know: typed is null, fhir_json still whole.
        let unfit = r#"{"resourceType":"Observation","id":"o2","status":"final","notAnElement":true}"#;
        let issue = |s| Issue {
            severity: s,
            code: "c".into(),
            location: "OBX-5".into(),
            stage: "normalize".into(),
            detail: "d".repeat(200),
        };
        for ev in [
            event(vec![], vec![]),
            event(vec![observation("o1", fits)], vec![]),
            event(
                vec![observation("o1", fits), observation("o2", unfit), observation("o1", fits)],
                vec![issue(IssueSeverity::Info), issue(IssueSeverity::Warning), issue(IssueSeverity::Error)],
            ),
            ClinicalEvent { patient_key: None, ..event(vec![observation("o2", unfit)], vec![]) },
        ] {
            let mut out = Vec::new();
            ev.write_avro(&mut out);
            assert_eq!(out, serde_bytes(&ev), "{} resources, {} issues", ev.resources.len(), ev.issues.len());
        }
    }

    #[test]
    fn fhir_resource_bytes_equal_the_serde_writers() {
        let json = r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Ünal","given":["A\"B"]}],"birthDate":"1970-01-01","active":true}"#;
        for patient_id in [None, Some("p1".to_string())] {
            let r = FhirResource {
                id: "p1".into(),
                resource_type: "Patient".into(),
                tenant: "t1".into(),
                patient_id: patient_id.clone(),
                source_event_id: "ev-1".into(),
                event_type: "hl7v2.adt.a01".into(),
                occurred_at: 1_700_000_000_000_000,
                fhir_json: json.into(),
            };
            let mut out = Vec::new();
            r.write_avro(&mut out);
            assert_eq!(out, serde_bytes(&r));
            let unknown = FhirResource { resource_type: "NoSuchType".into(), ..r };
            let mut out = Vec::new();
            unknown.write_avro(&mut out);
            assert_eq!(out, serde_bytes(&unknown), "unknown type: typed null");
        }
    }
}
