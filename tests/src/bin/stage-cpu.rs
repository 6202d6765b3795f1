//! stage-cpu: the CPU each pipeline stage spends on one message, Kafka left out, so the cost of
//! our own code (mapping, Avro, enrichment, reference rewriting) can be profiled and compared
//! between commits without a broker or the machine's other load in the figures.
//!
//! Each stage runs the same library calls its service makes per record — normalize: convert and
//! encode the `ClinicalEvent`; enrich: decode, enrich, encode; fanout: decode, current-state
//! resources, encode each `FhirResource`; query: decode each `FhirResource` — with the Avro
//! writers and reader the services use, on the mapping benchmark's ORU^R01 (10 OBX) and
//! ADT^A01. Time is the thread's own CPU time (`/proc/thread-self/schedstat`).
//!
//! `cargo run --release -p arteria-tests --bin stage-cpu -- [SECONDS] [FILTER]`

use std::time::{Duration, Instant};

use apache_avro::AvroSchema;
use apache_avro::reader::datum::GenericDatumReader;
use bus::projection::Projection;
use canonical::{ClinicalEvent, FhirResource};

// The services' allocator, so the figures are theirs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ORU: &[u8] = include_bytes!("../../../crates/mapping/benches/data/oru_r01_10obx.hl7");
const ADT: &[u8] = include_bytes!("../../../crates/mapping/benches/data/adt_a01.hl7");

/// Projection then decode with the projected schema, as `bus::AvroSerde::decode` does.
struct ProjectedReader<'p> {
    projection: &'p Projection,
    reader: GenericDatumReader<'p>,
}

impl<'p> ProjectedReader<'p> {
    fn new(projection: &'p Projection) -> Self {
        Self { projection, reader: GenericDatumReader::builder(projection.schema()).build().unwrap() }
    }

    fn read<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> T {
        let mut out = Vec::with_capacity(bytes.len());
        self.projection.project(bytes, &mut out).unwrap();
        self.reader.read_deser(&mut &out[..]).unwrap()
    }
}

/// The services' encode (`AvroSerde::encode_with` and the records' hand-written writers).
fn avro<T>(v: &T, write: fn(&T, &mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write(v, &mut out);
    out
}

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .expect("/proc/thread-self/schedstat (Linux) is needed")
}

/// Runs `f` for `secs` (after as long again of warm-up) and prints µs of CPU per call.
fn measure(name: &str, secs: f64, mut f: impl FnMut()) {
    if std::env::args().nth(2).is_some_and(|filter| !name.contains(&filter)) {
        return;
    }
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs_f64(secs) {
        f();
    }
    let (cpu0, wall0) = (cpu_ns(), Instant::now());
    let mut n = 0u64;
    while wall0.elapsed() < Duration::from_secs_f64(secs) {
        f();
        n += 1;
    }
    let cpu = (cpu_ns() - cpu0) as f64 / 1e3;
    println!("{name:<32} {:>9.1} µs CPU per message ({n} messages)", cpu / n as f64);
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let profiles = mapping::Profiles::default();
    let term = terminology::Terminology::builtin();
    let types: Vec<String> = fanout::config::DEFAULT_TYPES.iter().map(|s| s.to_string()).collect();

    let event_schema = ClinicalEvent::get_schema();
    // The services decode with the derived typed records cut out first (bus::projection), as
    // `bus::AvroSerde` does for a registry made `skipping_on_decode(canonical::DERIVED_FIELDS)`.
    let skip: Vec<String> = canonical::DERIVED_FIELDS.iter().map(|f| f.to_string()).collect();
    let event_projection = Projection::new(&event_schema, &skip).unwrap();
    let event_reader = ProjectedReader::new(&event_projection);
    let resource_schema = FhirResource::get_schema();
    let resource_projection = Projection::new(&resource_schema, &skip).unwrap();
    let resource_reader = ProjectedReader::new(&resource_projection);

    for (name, msg) in [("oru_r01_10obx", ORU), ("adt_a01", ADT)] {
        // The records each stage reads, made once by the stage before it.
        let normalized = {
            let conv = mapping::convert_bytes(msg, &profiles, "bench").unwrap();
            avro(&conv.to_event("bench", "raw-1", 1_700_000_000_000_000), ClinicalEvent::write_avro)
        };
        let enriched = {
            let mut ev: ClinicalEvent = event_reader.read(&normalized);
            enrich::enrich_event(&term, &mut ev).unwrap();
            avro(&ev, ClinicalEvent::write_avro)
        };
        let current: Vec<Vec<u8>> = {
            let ev: ClinicalEvent = event_reader.read(&enriched);
            let rs = fanout::resources::current_state(&ev, &types).unwrap();
            rs.iter().map(|r| avro(r, FhirResource::write_avro)).collect()
        };
        println!(
            "{name}: event {} B normalized, {} B enriched; {} resources, {} B",
            normalized.len(),
            enriched.len(),
            current.len(),
            current.iter().map(Vec::len).sum::<usize>()
        );

        measure(&format!("{name} normalize"), secs, || {
            let conv = mapping::convert_bytes(msg, &profiles, "bench").unwrap();
            let ev = conv.to_event("bench", "raw-1", 1_700_000_000_000_000);
            std::hint::black_box(avro(&ev, ClinicalEvent::write_avro));
        });
        measure(&format!("{name} enrich"), secs, || {
            let mut ev: ClinicalEvent = event_reader.read(&normalized);
            enrich::enrich_event(&term, &mut ev).unwrap();
            std::hint::black_box(avro(&ev, ClinicalEvent::write_avro));
        });
        measure(&format!("{name} fanout"), secs, || {
            let ev: ClinicalEvent = event_reader.read(&enriched);
            for r in fanout::resources::current_state(&ev, &types).unwrap() {
                std::hint::black_box(avro(&r, FhirResource::write_avro));
            }
        });
        measure(&format!("{name} query (decode)"), secs, || {
            for bytes in &current {
                let r: FhirResource = resource_reader.read(bytes);
                std::hint::black_box(r);
            }
        });
        measure(&format!("{name}   event decode"), secs, || {
            let ev: ClinicalEvent = event_reader.read(&enriched);
            std::hint::black_box(ev);
        });
        measure(&format!("{name}   event encode"), secs, || {
            let ev: ClinicalEvent = event_reader.read(&enriched);
            std::hint::black_box(avro(&ev, ClinicalEvent::write_avro));
        });
    }
}
