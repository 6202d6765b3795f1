//! The typed Avro form of every resource is lossless: for every HL7 v2 message of the shared
//! corpus and of `examples/`, each resource of the event — as normalize writes it, as enrich
//! rewrites it, and as fan-out publishes it on `fhir.<type>.v1` — is encoded with its schema,
//! decoded, and turned back from the typed record into FHIR JSON, which must equal `fhir_json`
//! (byte for byte for the mapping's own JSON). No resource the mapping produces may go untyped.
//!
//! Part of the `avro_roundtrip` test binary; needs no Kafka. The corpus is read from `$ARTERIA_SHARED/corpus` (default `../shared`); when it
//! is missing this fails under `CI=true` and otherwise checks `examples/` only, saying so loudly.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as AvroValue;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{AvroSchema, Schema};
use canonical::typed::{TypedResource, to_fhir_json};
use canonical::{ClinicalEvent, FhirResource};

fn events() -> Vec<ClinicalEvent> {
    let profiles = mapping::Profiles::default();
    let mut out = Vec::new();
    for p in arteria_tests::hl7v2_sample_files("typed_fhir") {
        let bytes = std::fs::read(&p).unwrap();
        let split = hl7v2::batch::split(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        for (i, chunk) in split.messages().enumerate() {
            let c = mapping::convert_bytes(chunk.bytes, &profiles, "t1")
                .unwrap_or_else(|e| panic!("{} message {}: {e}", p.display(), i + 1));
            out.push(c.to_event("t1", "raw", c.timestamp_micros().unwrap_or(0)));
        }
    }
    out
}

fn field<'v>(v: &'v AvroValue, name: &str) -> &'v AvroValue {
    let AvroValue::Record(fs) = v else { panic!("not a record") };
    &fs.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no field {name}")).1
}

/// Encodes with the hand-written writer the services use (`write_avro`, through
/// `AvroSerde::encode_with`), checks it writes what apache_avro's schema-aware serializer
/// writes, and decodes generically.
fn round_trip<T: serde::Serialize>(schema: &Schema, v: &T, write_avro: fn(&T, &mut Vec<u8>)) -> AvroValue {
    let bytes = GenericDatumWriter::builder(schema).build().unwrap().write_ser_to_vec(v).unwrap();
    let mut ours = Vec::new();
    write_avro(v, &mut ours);
    assert!(ours == bytes, "the hand-written Avro body differs from the serde writer's");
    let mut cursor = &ours[..];
    let value = GenericDatumReader::builder(schema).build().unwrap().read_value(&mut cursor).unwrap();
    assert!(cursor.is_empty(), "the whole record is read");
    value
}

/// The FHIR JSON given back by a decoded `typed` field, which must not be null.
fn typed_json(typed: &AvroValue, what: &str) -> String {
    to_fhir_json(typed).unwrap_or_else(|e| panic!("{what}: {e}")).unwrap_or_else(|| panic!("{what}: typed is null"))
}

/// Same resource: same JSON value, and the same typed reading (which also compares decimals by
/// their digits, which `serde_json::Value` would compare as floats).
fn assert_same_resource(resource_type: &str, original: &str, back: &str, what: &str) {
    let a: serde_json::Value = serde_json::from_str(original).unwrap();
    let b: serde_json::Value = serde_json::from_str(back).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
    assert_eq!(a, b, "{what}");
    assert_eq!(
        TypedResource::from_json(resource_type, original).unwrap(),
        TypedResource::from_json(resource_type, back).unwrap(),
        "{what}"
    );
}

#[test]
fn every_resource_of_every_message_survives_the_typed_form() {
    let event_schema = ClinicalEvent::get_schema();
    let resource_schema = FhirResource::get_schema();
    let term = terminology::Terminology::builtin();
    let all_types: Vec<String> =
        canonical::model::avro::shapes().resources.iter().map(|(t, _)| t.to_string()).collect();
    let (mut events_checked, mut resources_checked, mut enriched_changed, mut published) = (0, 0, 0, 0);
    let mut types_seen = std::collections::BTreeSet::new();
    for mut ev in events() {
        events_checked += 1;
        // As normalize writes it: the mapping's JSON, given back byte for byte.
        let value = round_trip(&event_schema, &ev, ClinicalEvent::write_avro);
        let AvroValue::Array(rs) = field(&value, "resources") else { panic!("resources is an array") };
        assert_eq!(rs.len(), ev.resources.len());
        for (r, v) in ev.resources.iter().zip(rs) {
            let what = format!("event {} {}/{} (normalized)", ev.id, r.resource_type, r.id);
            assert_eq!(typed_json(field(v, "typed"), &what), r.fhir_json, "{what}");
            resources_checked += 1;
            types_seen.insert(r.resource_type.clone());
        }

        // As enrich rewrites it (codings, displays, UCUM added, after the members already there).
        let before: Vec<String> = ev.resources.iter().map(|r| r.fhir_json.clone()).collect();
        enrich::enrich_event(&term, &mut ev).unwrap();
        enriched_changed += ev.resources.iter().zip(&before).filter(|(r, b)| r.fhir_json != **b).count();
        let value = round_trip(&event_schema, &ev, ClinicalEvent::write_avro);
        let AvroValue::Array(rs) = field(&value, "resources") else { panic!("resources is an array") };
        for (r, v) in ev.resources.iter().zip(rs) {
            let what = format!("event {} {}/{} (enriched)", ev.id, r.resource_type, r.id);
            assert_same_resource(&r.resource_type, &r.fhir_json, &typed_json(field(v, "typed"), &what), &what);
        }

        // As fan-out publishes it: standalone, references rewritten.
        for fr in fanout::resources::current_state(&ev, &all_types).unwrap() {
            let what = format!("{}/{} (fhir.<type>.v1)", fr.resource_type, fr.id);
            let value = round_trip(&resource_schema, &fr, FhirResource::write_avro);
            assert_same_resource(&fr.resource_type, &fr.fhir_json, &typed_json(field(&value, "typed"), &what), &what);
            published += 1;
        }
    }
    eprintln!(
        "typed form checked: {events_checked} events, {resources_checked} resources ({} types), {enriched_changed} \
         changed by enrich, {published} published records",
        types_seen.len()
    );
    assert!(events_checked >= 5 && resources_checked > events_checked, "the check saw real data");
    assert!(enriched_changed > 0, "enrichment changed some resources, so the enriched path was exercised");
}
