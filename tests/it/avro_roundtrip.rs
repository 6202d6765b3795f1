//! An Avro record round-trips through the real Kafka and registry: the schema is registered
//! under the topic's value subject, the bytes on the topic are the Confluent wire format
//! (checked byte by byte against a hand-written Avro encoding), and decoding resolves older
//! writer schemas to the current Rust type.

use std::time::Duration;

use apache_avro::AvroSchema;
use arteria_tests::{create_topic, read_committed, registry_url, require_stack, unique};
use bus::avro::{AvroError, wire};
use bus::{BusProducer, MessageHeaders, Registry};
use canonical::{Channel, ClinicalEvent, RawMessage, SenderId};

/// The typed form's lossless check over every message (no Kafka needed), built into this binary.
#[path = "typed_fhir.rs"]
mod typed_fhir;

fn sample() -> RawMessage {
    RawMessage {
        id: "0191f0aa-0000-7000-8000-000000000001".into(),
        tenant: "t1".into(),
        received_at: 1_700_000_000_123_456,
        channel: Channel::Http,
        peer: None,
        sender: SenderId { application: "LAB".into(), facility: "H1".into() },
        receiver: Some(SenderId { application: "ART".into(), facility: "".into() }),
        message_type: Some("ORU^R01".into()),
        control_id: Some("C1".into()),
        version: None,
        charset: None,
        content_type: "application/hl7-v2".into(),
        payload: b"MSH|^~\\&|LAB|H1\r\xff".to_vec(),
    }
}

// A hand-written Avro binary encoder for the test's expectations (Avro spec 1.11, "Binary
// encoding"): independent of the library under test.
fn zigzag(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
}
fn bytes(b: &[u8], out: &mut Vec<u8>) {
    zigzag(b.len() as i64, out);
    out.extend_from_slice(b);
}
fn opt_str(s: Option<&str>, out: &mut Vec<u8>) {
    match s {
        None => zigzag(0, out),
        Some(s) => {
            zigzag(1, out);
            bytes(s.as_bytes(), out);
        }
    }
}

fn expected_body(m: &RawMessage) -> Vec<u8> {
    let mut o = Vec::new();
    bytes(m.id.as_bytes(), &mut o);
    bytes(m.tenant.as_bytes(), &mut o);
    zigzag(m.received_at, &mut o);
    zigzag(1, &mut o); // enum index of HTTP in [MLLP, HTTP, FILE]
    opt_str(m.peer.as_deref(), &mut o);
    bytes(m.sender.application.as_bytes(), &mut o);
    bytes(m.sender.facility.as_bytes(), &mut o);
    let r = m.receiver.as_ref().unwrap();
    zigzag(1, &mut o); // union branch 1: SenderId
    bytes(r.application.as_bytes(), &mut o);
    bytes(r.facility.as_bytes(), &mut o);
    opt_str(m.message_type.as_deref(), &mut o);
    opt_str(m.control_id.as_deref(), &mut o);
    opt_str(m.version.as_deref(), &mut o);
    opt_str(m.charset.as_deref(), &mut o);
    bytes(m.content_type.as_bytes(), &mut o);
    bytes(&m.payload, &mut o);
    o
}

async fn registered_latest(subject: &str) -> serde_json::Value {
    let url = format!("{}/subjects/{subject}/versions/latest", registry_url());
    let r = reqwest::get(&url).await.expect("registry answers");
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.json().await.expect("registry JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_record_round_trips_through_kafka_and_the_registry() {
    let cfg = require_stack();
    let topic = unique("avro.raw");
    create_topic(&cfg, &topic, 3).await;
    let registry = Registry::new(&cfg.registry).unwrap();
    let serde = registry.value_serde::<RawMessage>(&topic);

    let id = serde.register().await.expect("schema registered");
    let latest = registered_latest(&format!("{topic}-value")).await;
    assert_eq!(latest["id"].as_u64(), Some(u64::from(id)), "registry's latest id for the subject: {latest}");
    let registered = apache_avro::Schema::parse_str(latest["schema"].as_str().unwrap()).unwrap();
    assert_eq!(registered.canonical_form(), RawMessage::get_schema().canonical_form());

    let msg = sample();
    let value = serde.encode(&msg).await.expect("encode");
    // Byte by byte: magic 0, schema id big-endian, then the Avro body.
    let mut want = vec![0u8];
    want.extend_from_slice(&id.to_be_bytes());
    want.extend_from_slice(&expected_body(&msg));
    assert_eq!(value, want);
    assert_eq!(wire::unframe(&value).unwrap().0, id);

    let producer = BusProducer::new(&cfg, "it-avro").unwrap();
    let mut headers = MessageHeaders::new();
    headers.set_message_id(&msg.id).set_content_type("application/vnd.arteria.raw.v1+avro");
    let d = producer.send(&topic, Some(b"patient-1"), &value, &headers).await.expect("acknowledged");
    assert!(d.offset >= 0);

    let got = read_committed(&cfg, &topic, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value.as_deref(), Some(&value[..]), "bytes on the topic are the bytes produced");
    assert_eq!(got[0].key.as_deref(), Some(&b"patient-1"[..]));
    assert_eq!((got[0].partition, got[0].offset), (d.partition, d.offset));
    assert_eq!(got[0].headers.message_id(), Some(msg.id.as_str()));
    let back = serde.decode(got[0].value.as_deref().unwrap()).await.expect("decode");
    assert_eq!(back, msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_writer_schema_resolves_to_the_current_type() {
    let cfg = require_stack();
    let topic = unique("avro.evolve");
    // ClinicalEvent as it was before `issues` existed.
    let current: serde_json::Value = serde_json::to_value(ClinicalEvent::get_schema()).unwrap();
    let mut old = current.clone();
    old["fields"].as_array_mut().unwrap().retain(|f| f["name"] != "issues");
    let old_text = old.to_string();
    let old_schema = apache_avro::Schema::parse_str(&old_text).unwrap();

    let client = reqwest::Client::new();
    let r = arteria_tests::register_schema(&client, &format!("{topic}-value"), &old_text).await;
    assert!(r.status().is_success(), "register old schema: {}", r.status());
    let old_id = r.json::<serde_json::Value>().await.unwrap()["id"].as_u64().unwrap() as u32;

    // A record written by an old producer.
    use apache_avro::types::{Record, Value};
    let apache_avro::Schema::Record(rs) = &old_schema else { panic!("record") };
    let mut rec = Record::new(&old_schema).unwrap();
    let sender_schema = &rs.fields.iter().find(|f| f.name == "sender").unwrap().schema;
    let prov_schema = &rs.fields.iter().find(|f| f.name == "provenance").unwrap().schema;
    rec.put("id", "ev-1");
    rec.put("source_raw_id", "raw-1");
    rec.put("tenant", "t1");
    rec.put("event_type", "patient-admit");
    rec.put("occurred_at", Value::TimestampMicros(1_700_000_000_000_000));
    let mut s = Record::new(sender_schema).unwrap();
    s.put("application", "ADT");
    s.put("facility", "H1");
    rec.put("sender", s);
    rec.put("patient_key", Value::Union(0, Box::new(Value::Null)));
    let mut p = Record::new(prov_schema).unwrap();
    p.put("source_format", "hl7v2");
    p.put("source_message_type", Value::Union(1, Box::new(Value::String("ADT^A01".into()))));
    p.put("source_control_id", Value::Union(0, Box::new(Value::Null)));
    p.put("stage", "normalize");
    p.put("logic_version", "0.1.0");
    p.put("profile", Value::Union(0, Box::new(Value::Null)));
    rec.put("provenance", p);
    rec.put("resources", Value::Array(vec![]));
    let body = apache_avro::writer::datum::GenericDatumWriter::builder(&old_schema)
        .build()
        .unwrap()
        .write_value_to_vec(rec)
        .unwrap();
    let framed = wire::frame(old_id, &body);

    let registry = Registry::new(&cfg.registry).unwrap();
    let serde = registry.value_serde::<ClinicalEvent>(&topic);
    let ev = serde.decode(&framed).await.expect("old record decodes as the current type");
    assert_eq!(ev.id, "ev-1");
    assert_eq!(ev.provenance.source_message_type.as_deref(), Some("ADT^A01"));
    assert!(ev.issues.is_empty(), "missing field takes its default");
    // A reader skipping the typed records resolves the old writer schema (which has none) too.
    let skipping = registry.clone().skipping_on_decode(canonical::DERIVED_FIELDS).value_serde::<ClinicalEvent>(&topic);
    assert_eq!(skipping.decode(&framed).await.expect("old record decodes while skipping"), ev);

    // A hand-written reader is for bytes of exactly our schema: the old writer's go the
    // resolving way, and the reader is not called.
    let by_hand = serde
        .decode_with(&framed, |_| Err("the hand reader was called for another writer schema".into()))
        .await
        .expect("an old record takes the resolving path");
    assert_eq!(by_hand, ev);

    // The current schema is accepted as the next version of the subject (BACKWARD).
    let new_id = serde.register().await.expect("current schema registers over the old one");
    assert_ne!(new_id, old_id);
    // Written with our own schema: the hand reader gets the body (after the 5-byte header).
    let own = serde.encode(&ev).await.unwrap();
    let mut marked = ev.clone();
    marked.id = "read-by-hand".into();
    let got = serde
        .decode_with(&own, |body| {
            assert_eq!(body, &own[5..]);
            Ok(marked.clone())
        })
        .await
        .unwrap();
    assert_eq!(got.id, "read-by-hand");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_and_unknown_ids_are_precise_permanent_errors() {
    let cfg = require_stack();
    let registry = Registry::new(&cfg.registry).unwrap();
    let serde = registry.value_serde::<RawMessage>(&unique("avro.bad"));
    let e = serde.decode(b"MSH|^~\\&|").await.unwrap_err();
    assert!(matches!(e, AvroError::Wire(wire::WireError::BadMagic(b'M'))), "{e}");
    assert!(!e.is_transient());
    let e = serde.decode(&wire::frame(2_000_000_000, &[1, 2, 3])).await.unwrap_err();
    assert!(matches!(e, AvroError::RegistryRefused(_)), "{e:?}");
    assert!(!e.is_transient());
    // Truncated body with a real schema id.
    let topic = unique("avro.trunc");
    let serde = registry.value_serde::<RawMessage>(&topic);
    let mut v = serde.encode(&sample()).await.unwrap();
    v.truncate(v.len() - 3);
    let e = serde.decode(&v).await.unwrap_err();
    assert!(matches!(e, AvroError::Decode { .. }), "{e:?}");
}

/// A field of a decoded record, through `["null", T]` unions.
fn at<'v>(v: &'v apache_avro::types::Value, path: &[&str]) -> &'v apache_avro::types::Value {
    use apache_avro::types::Value;
    let mut v = v;
    for name in path {
        if let Value::Union(_, inner) = v {
            v = inner;
        }
        let Value::Record(fields) = v else { panic!("{name}: not a record: {v:?}") };
        v = &fields.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no field {name}")).1;
    }
    match v {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_resources_round_trip_through_kafka_and_the_registry() {
    use apache_avro::types::Value;
    let cfg = require_stack();
    let topic = unique("avro.typed");
    create_topic(&cfg, &topic, 1).await;
    let registry = Registry::new(&cfg.registry).unwrap();
    let serde = registry.value_serde::<ClinicalEvent>(&topic);

    // A real conversion: the chemistry example (OBX-5 0.84 mg/dL, range 0.57-1.00).
    let msg = std::fs::read(arteria_tests::workspace_root().join("examples/oru-r01-chemistry.hl7")).unwrap();
    let conv = mapping::convert_bytes(&msg, &mapping::Profiles::default(), "t1").unwrap();
    let event = conv.to_event("t1", "raw-1", 1_700_000_000_000_000);

    let value = serde.encode(&event).await.expect("encode with typed resources");
    let producer = BusProducer::new(&cfg, "it-avro-typed").unwrap();
    let mut headers = MessageHeaders::new();
    headers.set_message_id(&event.id).set_content_type(canonical::event::CONTENT_TYPE);
    producer.send(&topic, Some(b"p"), &value, &headers).await.expect("acknowledged");
    let got = read_committed(&cfg, &topic, 1, Duration::from_secs(30)).await;
    let bytes = got[0].value.as_deref().unwrap();
    assert_eq!(bytes, &value[..]);

    // The services' decode: the same event, JSON intact — also when the typed records are cut
    // out of the bytes before decoding, as enrich, fan-out and query do.
    assert_eq!(serde.decode(bytes).await.expect("decode"), event);
    let skipping = registry.clone().skipping_on_decode(canonical::DERIVED_FIELDS).value_serde::<ClinicalEvent>(&topic);
    assert_eq!(skipping.decode(bytes).await.expect("decode skipping typed"), event);
    assert!(event.resources.len() > 3, "a real event with several resources");
    // Skipping must not hide trailing garbage or a cut record.
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(skipping.decode(&longer).await.unwrap_err().to_string().contains("trailing"));
    assert!(skipping.decode(&bytes[..bytes.len() - 40]).await.is_err());

    // An analytics reader: the writer schema from the registry by id, then fields by path.
    let (id, body) = wire::unframe(bytes).unwrap();
    let url = format!("{}/schemas/ids/{id}", registry_url());
    let schema_json: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let writer = apache_avro::Schema::parse_str(schema_json["schema"].as_str().unwrap()).unwrap();
    let decoded = apache_avro::reader::datum::GenericDatumReader::builder(&writer)
        .build()
        .unwrap()
        .read_value(&mut &body[..])
        .unwrap();
    let Value::Array(resources) = at(&decoded, &["resources"]) else { panic!("resources") };
    let creatinine = resources
        .iter()
        .filter(|r| at(r, &["resource_type"]) == &Value::String("Observation".into()))
        .find(|r| {
            let Value::Array(codings) = at(r, &["typed", "code", "coding"]) else { return false };
            codings.iter().any(|c| at(c, &["code"]) == &Value::String("2160-0".into()))
        })
        .expect("the creatinine Observation is typed");
    assert_eq!(at(creatinine, &["typed", "valueQuantity", "value"]), &Value::String("0.84".into()));
    assert_eq!(at(creatinine, &["typed", "valueQuantity", "unit"]), &Value::String("mg/dL".into()));
    let Value::Array(ranges) = at(creatinine, &["typed", "referenceRange"]) else { panic!("referenceRange") };
    assert_eq!(at(&ranges[0], &["high", "value"]), &Value::String("1.00".into()), "decimal digits kept");
    // And the typed record gives back the resource's JSON exactly.
    let Value::String(fhir_json) = at(creatinine, &["fhir_json"]) else { panic!("fhir_json") };
    let typed = match creatinine {
        Value::Record(f) => &f.iter().find(|(n, _)| n == "typed").unwrap().1,
        _ => unreachable!(),
    };
    assert_eq!(canonical::typed::to_fhir_json(typed).unwrap().as_deref(), Some(fhir_json.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_the_earlier_schema_reads_typed_events() {
    // A consumer still on the ClinicalEvent schema without `typed` (every committed version
    // before it) reads what the current producers write: Avro resolution drops the field.
    // The registry, set to BACKWARD, accepts the typed schema over the earlier one.
    let cfg = require_stack();
    let topic = unique("avro.typed-old-reader");
    let mut old: serde_json::Value = serde_json::to_value(ClinicalEvent::get_schema()).unwrap();
    for f in old["fields"].as_array_mut().unwrap() {
        if f["name"] == "resources" {
            f["type"]["items"]["fields"].as_array_mut().unwrap().retain(|rf| rf["name"] != "typed");
        }
    }
    let client = reqwest::Client::new();
    let subject = format!("{topic}-value");
    let r = arteria_tests::register_schema(&client, &subject, &old.to_string()).await;
    assert!(r.status().is_success(), "register the earlier schema: {}", r.status());
    let old_id = r.json::<serde_json::Value>().await.unwrap()["id"].as_u64().unwrap() as u32;
    arteria_tests::set_compatibility(&client, &subject, "BACKWARD").await;

    let registry = Registry::new(&cfg.registry).unwrap();
    let serde = registry.value_serde::<ClinicalEvent>(&topic);
    let new_id = serde.register().await.expect("the typed schema is a compatible next version");
    assert_ne!(new_id, old_id);
    let msg = std::fs::read(arteria_tests::workspace_root().join("examples/adt-a01-admit.hl7")).unwrap();
    let conv = mapping::convert_bytes(&msg, &mapping::Profiles::default(), "t1").unwrap();
    let event = conv.to_event("t1", "raw-1", 1);
    let bytes = serde.encode(&event).await.unwrap();
    let (id, body) = wire::unframe(&bytes).unwrap();
    assert_eq!(id, new_id);
    let old = apache_avro::Schema::parse(&old).unwrap();
    let v = apache_avro::reader::datum::GenericDatumReader::builder(&ClinicalEvent::get_schema())
        .reader_schema(&old)
        .build()
        .unwrap()
        .read_value(&mut &body[..])
        .unwrap();
    let back: ClinicalEvent = apache_avro::from_value(&v).unwrap();
    assert_eq!(back, event);
}
