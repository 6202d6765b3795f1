//! Avro schema and serialisation of the two records that carry a resource, [`Resource`] (inside
//! `ClinicalEvent`) and [`FhirResource`], written by hand because each has a wire field the Rust
//! struct does not: `typed`, the resource as a typed FHIR record, derived from `fhir_json` while
//! encoding so the two forms always agree (see [`crate::typed`]).
//!
//! Serialisation writes `typed` only for binary (non-human-readable) serializers, i.e. Avro;
//! JSON output of these types stays as it was. Deserialisation reads past `typed` (the services
//! read `fhir_json`); it goes through private mirrors with a skipping `typed` field because
//! apache_avro's serde reader cannot skip an unknown record-valued field on its own.

use std::collections::HashSet;
use std::sync::OnceLock;

use apache_avro::schema::{Name, NamespaceRef, ResolvedSchema};
use apache_avro::{AvroSchemaComponent, Schema};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::typed::TypedField;
use crate::{FhirResource, NAMESPACE, Resource};

/// Doc of the `typed` fields.
const TYPED_DOC: &str = "The resource as a typed FHIR R4 record (namespace org.arteria.fhir.r4, one field per FHIR \
JSON key, named as the key; decimals as their exact digits in a string), equal to fhir_json. Null when the resource \
type or one of its elements is outside the typed model: fhir_json always holds the complete resource.";

fn typed_field() -> Value {
    json!({"name": "typed", "doc": TYPED_DOC, "type": crate::model::avro::shapes().resource_union_json(), "default": null})
}

/// Schema JSON of `Resource` (the element of `ClinicalEvent.resources`).
fn resource_json() -> Value {
    json!({
        "type": "record",
        "name": "Resource",
        "namespace": NAMESPACE,
        "doc": "One FHIR R4 resource produced from the source message.",
        "fields": [
            {"name": "resource_type", "doc": "FHIR resource type, e.g. Patient, Encounter, Observation.", "type": "string"},
            {"name": "id", "doc": "Deterministic resource id (see the identity rules in the design).", "type": "string"},
            {"name": "fhir_json", "doc": "The resource as FHIR R4 JSON.", "type": "string"},
            typed_field(),
        ]
    })
}

/// Schema JSON of `FhirResource`.
fn fhir_resource_json() -> Value {
    json!({
        "type": "record",
        "name": "FhirResource",
        "namespace": NAMESPACE,
        "doc": "The current version of one FHIR resource.",
        "fields": [
            {"name": "id", "doc": "Resource id; also the Kafka key.", "type": "string"},
            {"name": "resource_type", "doc": "FHIR resource type, e.g. Patient, Observation.", "type": "string"},
            {"name": "tenant", "type": "string"},
            {"name": "patient_id", "doc": "Id of the Patient this resource is about (the Patient's own id for a Patient), when any.",
             "type": ["null", "string"], "default": null},
            {"name": "source_event_id", "doc": "`ClinicalEvent.id` that produced this version.", "type": "string"},
            {"name": "event_type", "doc": "`ClinicalEvent.event_type` that produced this version, e.g. hl7v2.adt.a08.", "type": "string"},
            {"name": "occurred_at", "doc": "When the source event happened, microseconds since the epoch (UTC).",
             "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "fhir_json", "doc": "The resource as FHIR R4 JSON.", "type": "string"},
            typed_field(),
        ]
    })
}

fn parsed(cell: &'static OnceLock<Schema>, json: fn() -> Value) -> &'static Schema {
    cell.get_or_init(|| Schema::parse(&json()).expect("the hand-written wire schema parses"))
}

/// The schema in a derive context: a reference when the record is already defined there, else
/// the definition (its named types recorded as defined).
fn in_ctxt(schema: &Schema, named: &mut HashSet<Name>) -> Schema {
    let own = schema.name().expect("a record has a name").clone();
    if named.contains(&own) {
        return Schema::Ref { name: own };
    }
    let resolved = ResolvedSchema::try_from(schema).expect("the wire schema resolves");
    named.extend(resolved.get_names().keys().cloned());
    schema.clone()
}

impl AvroSchemaComponent for Resource {
    fn get_schema_in_ctxt(named: &mut HashSet<Name>, _: NamespaceRef) -> Schema {
        static S: OnceLock<Schema> = OnceLock::new();
        in_ctxt(parsed(&S, resource_json), named)
    }
}

impl AvroSchemaComponent for FhirResource {
    fn get_schema_in_ctxt(named: &mut HashSet<Name>, _: NamespaceRef) -> Schema {
        static S: OnceLock<Schema> = OnceLock::new();
        in_ctxt(parsed(&S, fhir_resource_json), named)
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let avro = !s.is_human_readable();
        let mut st = s.serialize_struct("Resource", 3 + usize::from(avro))?;
        st.serialize_field("resource_type", &self.resource_type)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("fhir_json", &self.fhir_json)?;
        if avro {
            st.serialize_field(
                "typed",
                &TypedField { resource_type: &self.resource_type, fhir_json: &self.fhir_json },
            )?;
        }
        st.end()
    }
}

impl Serialize for FhirResource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let avro = !s.is_human_readable();
        let mut st = s.serialize_struct("FhirResource", 8 + usize::from(avro))?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("resource_type", &self.resource_type)?;
        st.serialize_field("tenant", &self.tenant)?;
        st.serialize_field("patient_id", &self.patient_id)?;
        st.serialize_field("source_event_id", &self.source_event_id)?;
        st.serialize_field("event_type", &self.event_type)?;
        st.serialize_field("occurred_at", &self.occurred_at)?;
        st.serialize_field("fhir_json", &self.fhir_json)?;
        if avro {
            st.serialize_field(
                "typed",
                &TypedField { resource_type: &self.resource_type, fhir_json: &self.fhir_json },
            )?;
        }
        st.end()
    }
}

/// Reads any value and drops it: `deserialize_any` all the way down, keys as identifiers (the
/// only way apache_avro's record reader hands out field names).
#[derive(Default)]
struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skipped, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipKey;

impl<'de> Deserialize<'de> for SkipKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SkipKey, D::Error> {
        d.deserialize_identifier(IgnoredAny).map(|_| SkipKey)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skipped;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_none<E: de::Error>(self) -> Result<Skipped, E> {
        Ok(Skipped)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Skipped, D::Error> {
        Skipped::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Skipped, D::Error> {
        Skipped::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skipped, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(Skipped)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skipped, A::Error> {
        while map.next_key::<SkipKey>()?.is_some() {
            map.next_value::<Skipped>()?;
        }
        Ok(Skipped)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Skipped, A::Error> {
        use de::VariantAccess;
        let (SkipKey, v) = data.variant::<SkipKey>()?;
        v.newtype_variant::<Skipped>()
    }
}

#[derive(Deserialize)]
#[serde(rename = "Resource")]
struct ResourceWire {
    resource_type: String,
    id: String,
    fhir_json: String,
    #[serde(default)]
    #[allow(dead_code)]
    typed: Skipped,
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Resource, D::Error> {
        let ResourceWire { resource_type, id, fhir_json, typed: _ } = ResourceWire::deserialize(d)?;
        Ok(Resource { resource_type, id, fhir_json })
    }
}

#[derive(Deserialize)]
#[serde(rename = "FhirResource")]
struct FhirResourceWire {
    id: String,
    resource_type: String,
    tenant: String,
    patient_id: Option<String>,
    source_event_id: String,
    event_type: String,
    occurred_at: i64,
    fhir_json: String,
    #[serde(default)]
    #[allow(dead_code)]
    typed: Skipped,
}

impl<'de> Deserialize<'de> for FhirResource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FhirResource, D::Error> {
        let FhirResourceWire {
            id,
            resource_type,
            tenant,
            patient_id,
            source_event_id,
            event_type,
            occurred_at,
            fhir_json,
            typed: _,
        } = FhirResourceWire::deserialize(d)?;
        Ok(FhirResource { id, resource_type, tenant, patient_id, source_event_id, event_type, occurred_at, fhir_json })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CodeableConcept, Decimal, Observation, ObservationValue, Quantity};
    use crate::{ClinicalEvent, Provenance, SenderId};
    use apache_avro::AvroSchema;
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value as AvroValue;
    use apache_avro::writer::datum::GenericDatumWriter;

    fn field<'v>(v: &'v AvroValue, name: &str) -> &'v AvroValue {
        let AvroValue::Record(fs) = v else { panic!("not a record: {v:?}") };
        fs.iter().find(|(n, _)| n == name).map(|(_, v)| v).unwrap_or_else(|| panic!("no field {name}"))
    }

    fn some(v: &AvroValue) -> &AvroValue {
        match v {
            AvroValue::Union(i, inner) if *i > 0 => inner,
            other => panic!("expected a non-null union, got {other:?}"),
        }
    }

    fn observation_json() -> String {
        let obs = Observation {
            id: "o1".into(),
            status: "final".into(),
            code: CodeableConcept::code("http://loinc.org", "2345-7", Some("Glucose \"fasting\"")),
            value: Some(ObservationValue::Quantity(Quantity {
                value: Decimal::parse("5.50"),
                unit: Some("mmol/L".into()),
                ..Default::default()
            })),
            ..Default::default()
        };
        serde_json::to_string(&crate::model::Resource::from(obs)).unwrap()
    }

    fn event(resources: Vec<Resource>) -> ClinicalEvent {
        ClinicalEvent {
            id: "e".into(),
            source_raw_id: "r".into(),
            tenant: "t".into(),
            event_type: "hl7v2.oru.r01".into(),
            occurred_at: 1,
            sender: SenderId { application: "A".into(), facility: "F".into() },
            patient_key: None,
            provenance: Provenance {
                source_format: "hl7v2".into(),
                source_message_type: None,
                source_control_id: None,
                stage: "normalize".into(),
                logic_version: "x".into(),
                profile: None,
            },
            resources,
            issues: vec![],
        }
    }

    #[test]
    fn typed_record_is_written_beside_the_json_and_gives_it_back() {
        let json = observation_json();
        let untyped = r#"{"resourceType":"Observation","id":"o2","status":"final","focus":[{"reference":"x"}]}"#;
        let ev = event(vec![
            Resource { resource_type: "Observation".into(), id: "o1".into(), fhir_json: json.clone() },
            Resource { resource_type: "Observation".into(), id: "o2".into(), fhir_json: untyped.into() },
            Resource {
                resource_type: "Medication".into(),
                id: "m".into(),
                fhir_json: r#"{"resourceType":"Medication"}"#.into(),
            },
        ]);
        let schema = ClinicalEvent::get_schema();
        let bytes = GenericDatumWriter::builder(&schema).build().unwrap().write_ser_to_vec(&ev).unwrap();

        let value = GenericDatumReader::builder(&schema).build().unwrap().read_value(&mut &bytes[..]).unwrap();
        let AvroValue::Array(rs) = field(&value, "resources") else { panic!("resources is an array") };
        let typed = field(&rs[0], "typed");
        let q = some(field(some(typed), "valueQuantity"));
        assert_eq!(some(field(q, "value")), &AvroValue::String("5.50".into()), "digits kept");
        assert_eq!(some(field(q, "unit")), &AvroValue::String("mmol/L".into()));
        let coding = field(some(field(some(typed), "code")), "coding");
        let AvroValue::Array(coding) = coding else { panic!("coding is an array") };
        assert_eq!(some(field(&coding[0], "code")), &AvroValue::String("2345-7".into()));
        assert_eq!(crate::typed::to_fhir_json(typed).unwrap().as_deref(), Some(json.as_str()), "byte for byte");
        // An element outside the model, an unmodelled type: null, the JSON is still complete.
        assert_eq!(field(&rs[1], "typed"), &AvroValue::Union(0, Box::new(AvroValue::Null)));
        assert_eq!(field(&rs[2], "typed"), &AvroValue::Union(0, Box::new(AvroValue::Null)));

        // The services' decode (serde, same schema) ignores `typed` and keeps the JSON.
        let back: ClinicalEvent =
            GenericDatumReader::builder(&schema).build().unwrap().read_deser(&mut &bytes[..]).unwrap();
        assert_eq!(back, ev);
        // JSON output of the type is unchanged: no `typed`.
        let j = serde_json::to_value(&ev.resources[0]).unwrap();
        assert_eq!(j.as_object().unwrap().len(), 3, "{j}");
    }

    #[test]
    fn fhir_resource_carries_the_typed_record_too() {
        let json = observation_json();
        let r = FhirResource {
            id: "o1".into(),
            resource_type: "Observation".into(),
            tenant: "t".into(),
            patient_id: Some("p".into()),
            source_event_id: "e".into(),
            event_type: "x".into(),
            occurred_at: 7,
            fhir_json: json.clone(),
        };
        let schema = FhirResource::get_schema();
        let bytes = GenericDatumWriter::builder(&schema).build().unwrap().write_ser_to_vec(&r).unwrap();
        let value = GenericDatumReader::builder(&schema).build().unwrap().read_value(&mut &bytes[..]).unwrap();
        assert_eq!(crate::typed::to_fhir_json(field(&value, "typed")).unwrap().as_deref(), Some(json.as_str()));
        let back: FhirResource =
            GenericDatumReader::builder(&schema).build().unwrap().read_deser(&mut &bytes[..]).unwrap();
        assert_eq!(back, r);
        // Through the generic path too (what a reader with another schema version takes).
        let back: FhirResource = apache_avro::from_value(&value).unwrap();
        assert_eq!(back, r);
    }
}
