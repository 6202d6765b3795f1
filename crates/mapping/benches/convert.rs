//! Conversion throughput on one core: HL7 v2 bytes → FHIR R4 Bundle JSON, and → Avro-encoded
//! `ClinicalEvent`, for an ORU^R01 with 10 OBX and an ADT^A01 (synthetic messages in
//! `benches/data`). Run: `cargo bench -p mapping --bench convert`.
//!
//! Also the event's Avro body alone (`ClinicalEvent::write_avro`: mostly each resource's typed
//! record, read from its JSON) with the JSON as the model writes it and with every object's keys
//! sorted, as a `serde_json::Value` writes them (what enrich and fan-out emit): the one-pass
//! reader and the reordering one of `canonical::typed_stream`.

use apache_avro::AvroSchema;
use canonical::ClinicalEvent;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const ORU: &[u8] = include_bytes!("data/oru_r01_10obx.hl7");
const ADT: &[u8] = include_bytes!("data/adt_a01.hl7");

fn bench(c: &mut Criterion) {
    let profiles = mapping::Profiles::default();
    let schema = ClinicalEvent::get_schema();
    for (name, msg) in [("oru_r01_10obx", ORU), ("adt_a01", ADT)] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        g.bench_function("to_fhir_json", |b| {
            let mut out = Vec::with_capacity(64 * 1024);
            b.iter(|| {
                out.clear();
                let conv = mapping::convert_bytes(black_box(msg), &profiles, "bench").unwrap();
                conv.append_bundle_json(&mut out);
                black_box(out.len())
            })
        });
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build().unwrap();
        g.bench_function("to_avro_event", |b| {
            b.iter(|| {
                let conv = mapping::convert_bytes(black_box(msg), &profiles, "bench").unwrap();
                let event = conv.to_event("bench", "raw-1", 1_700_000_000_000_000);
                let bytes = writer.write_ser_to_vec(&event).unwrap();
                black_box(bytes.len())
            })
        });
        let event = mapping::convert_bytes(msg, &profiles, "bench").unwrap().to_event("bench", "raw-1", 1);
        let mut sorted = event.clone();
        for r in &mut sorted.resources {
            let v: serde_json::Value = serde_json::from_str(&r.fhir_json).unwrap();
            r.fhir_json = serde_json::to_string(&v).unwrap();
        }
        assert_ne!(sorted.resources[0].fhir_json, event.resources[0].fhir_json);
        for (label, e) in [("event_body/model_order", &event), ("event_body/sorted_keys", &sorted)] {
            g.bench_function(label, |b| {
                let mut out = Vec::with_capacity(64 * 1024);
                b.iter(|| {
                    out.clear();
                    black_box(e).write_avro(&mut out);
                    black_box(out.len())
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
