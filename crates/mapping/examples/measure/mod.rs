//! The measurement shared by the `throughput` (system allocator) and `throughput-mimalloc`
//! (mimalloc, as the services use) examples: conversion throughput per core in CPU time, so that
//! other work on a shared machine does not distort it — messages converted divided by the time
//! this thread actually ran (`/proc/thread-self/schedstat`, Linux).

use apache_avro::AvroSchema;
use std::time::{Duration, Instant};

const ORU: &[u8] = include_bytes!("../../benches/data/oru_r01_10obx.hl7");
const ADT: &[u8] = include_bytes!("../../benches/data/adt_a01.hl7");

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .expect("/proc/thread-self/schedstat (Linux) is needed")
}

fn measure(name: &str, secs: f64, mut f: impl FnMut() -> usize) {
    if std::env::args().nth(2).is_some_and(|filter| !name.contains(&filter)) {
        return;
    }
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs_f64(secs / 2.0) {
        std::hint::black_box(f());
    }
    let (cpu0, wall0) = (cpu_ns(), Instant::now());
    let mut n = 0u64;
    let mut bytes = 0usize;
    while wall0.elapsed() < Duration::from_secs_f64(secs) {
        bytes += f();
        n += 1;
    }
    let cpu = (cpu_ns() - cpu0) as f64 / 1e9;
    let wall = wall0.elapsed().as_secs_f64();
    println!(
        "{name}: {:.0} messages/s per core (CPU time), {:.0} messages/s wall, {n} messages, {:.0} output bytes each",
        n as f64 / cpu,
        n as f64 / wall,
        bytes as f64 / n as f64
    );
}

pub fn run() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let profiles = mapping::Profiles::default();
    let schema = canonical::ClinicalEvent::get_schema();
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build().unwrap();
    for (name, msg) in [("oru_r01_10obx", ORU), ("adt_a01", ADT)] {
        let mut out = Vec::with_capacity(64 * 1024);
        measure(&format!("{name} -> FHIR JSON"), secs, || {
            out.clear();
            let conv = mapping::convert_bytes(msg, &profiles, "bench").unwrap();
            conv.append_bundle_json(&mut out);
            out.len()
        });
        measure(&format!("{name} -> Avro ClinicalEvent"), secs, || {
            let conv = mapping::convert_bytes(msg, &profiles, "bench").unwrap();
            let event = conv.to_event("bench", "raw-1", 1_700_000_000_000_000);
            writer.write_ser_to_vec(&event).unwrap().len()
        });
        // As the services encode since the event writes its own Avro body (same bytes).
        let mut body = Vec::with_capacity(64 * 1024);
        measure(&format!("{name} -> Avro ClinicalEvent (write_avro)"), secs, || {
            body.clear();
            let conv = mapping::convert_bytes(msg, &profiles, "bench").unwrap();
            let event = conv.to_event("bench", "raw-1", 1_700_000_000_000_000);
            event.write_avro(&mut body);
            body.len()
        });
    }
}
