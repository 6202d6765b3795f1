//! Store costs: one upsert (index extraction + one durable transaction) and one filtered,
//! paged ListObservations read, each against a peer measured in the same run — plain SQLite
//! with the same pragmas: the upsert peer writes one row into one table (no index extraction),
//! the query peer filters the same JSON with SQLite's json_extract instead of our indexes.
//!
//! The `cpu` groups measure the thread's CPU time instead of wall time (fsync waits left out,
//! the kernel's work for the writes kept in), per record of a 500-record batch of the mix the
//! pipeline stores: per HL7 message one Patient (an update: 20,000 patients, stored before
//! timing), one Encounter and 18 Observations (new). Records are made outside the timing.
//!
//! `cargo bench -p query --bench store`

use std::hint::black_box;

use canonical::current::FhirResource;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use query::store::{CodeFilter, ListFilter, PageReq, Store, Write};
use rusqlite::{Connection, params};

const PATIENTS: usize = 100;
const PER_PATIENT: usize = 100;

fn observation(i: usize, at: i64) -> FhirResource {
    let patient = format!("p{}", i % PATIENTS);
    let code = ["2345-7", "718-7", "2823-3", "2951-2"][i % 4];
    let json = serde_json::json!({
        "resourceType": "Observation", "id": format!("o{i}"), "status": "final",
        "subject": {"reference": format!("Patient/{patient}")},
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Some analyte"}]},
        "effectiveDateTime": format!("2024-{:02}-{:02}T08:00:00+01:00", i % 12 + 1, i % 28 + 1),
        "valueQuantity": {"value": i as f64 / 10.0, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}
    });
    FhirResource {
        id: format!("o{i}"),
        resource_type: "Observation".into(),
        tenant: "bench".into(),
        patient_id: Some(patient),
        source_event_id: format!("ev{i}"),
        event_type: "bench".into(),
        occurred_at: at,
        fhir_json: json.to_string(),
    }
}

/// The calling thread's CPU time (user + system), from /proc/thread-self/schedstat.
struct ThreadCpu(WallTime);

fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux /proc/thread-self/schedstat");
    Duration::from_nanos(s.split_whitespace().next().and_then(|n| n.parse().ok()).expect("schedstat runtime"))
}

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.0.formatter()
    }
}

const MIX_PATIENTS: usize = 20_000;

/// A UUID-shaped id, scattered like the pipeline's (hash-derived) ids: index inserts land at
/// random places in the B-trees, as they do in the service.
fn uuid_like(kind: u64, n: usize) -> String {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    };
    let (a, b) = (mix(kind << 48 ^ n as u64), mix(!(kind << 48 ^ n as u64)));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn patient(n: usize, at: i64) -> FhirResource {
    let id = uuid_like(1, n % MIX_PATIENTS);
    let json = serde_json::json!({
        "resourceType": "Patient", "id": id,
        "meta": {"source": "urn:arteria:bench", "tag": [{"system": "urn:arteria:tenant", "code": "bench"}]},
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": format!("MRN{}", n % MIX_PATIENTS),
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
        "name": [{"family": format!("Family{}", n % 997), "given": ["Given", "Middle"]}],
        "gender": "female", "birthDate": "1980-02-03",
        "address": [{"line": ["1 Main St"], "city": "Town", "postalCode": "12345", "country": "US"}],
        "telecom": [{"system": "phone", "value": "555-0100", "use": "home"}]
    });
    FhirResource {
        id: id.clone(),
        resource_type: "Patient".into(),
        tenant: "bench".into(),
        patient_id: Some(id),
        source_event_id: format!("ev{n}"),
        event_type: "bench".into(),
        occurred_at: at,
        fhir_json: json.to_string(),
    }
}

fn encounter(n: usize, at: i64) -> FhirResource {
    let patient = uuid_like(1, n % MIX_PATIENTS);
    let json = serde_json::json!({
        "resourceType": "Encounter", "id": uuid_like(2, n), "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": "2024-03-01T08:00:00+01:00"},
        "location": [{"location": {"display": "Ward 3"}}]
    });
    FhirResource {
        id: uuid_like(2, n),
        resource_type: "Encounter".into(),
        tenant: "bench".into(),
        patient_id: Some(patient),
        source_event_id: format!("ev{n}"),
        event_type: "bench".into(),
        occurred_at: at,
        fhir_json: json.to_string(),
    }
}

/// Messages `first..first+25` (500 records): per message a Patient, an Encounter, 18 Observations.
fn mix_batch(first: usize, at: i64) -> Vec<FhirResource> {
    (first..first + 25)
        .flat_map(|m| {
            let obs = (0..18).map(move |k| {
                let mut o = observation(m * 18 + k, at);
                let (id, patient) = (uuid_like(3, m * 18 + k), uuid_like(1, m % MIX_PATIENTS));
                o.fhir_json = o.fhir_json.replace(&format!("\"{}\"", o.id), &format!("\"{id}\"")).replace(
                    &format!("Patient/{}\"", o.patient_id.as_deref().unwrap_or_default()),
                    &format!("Patient/{patient}\""),
                );
                o.id = id;
                o.patient_id = Some(patient);
                o
            });
            [patient(m, at), encounter(m, at)].into_iter().chain(obs)
        })
        .collect()
}

fn peer_open(dir: &std::path::Path) -> Connection {
    let c = Connection::open(dir.join("peer.sqlite")).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "FULL").unwrap();
    c.execute_batch(
        "CREATE TABLE r (resource_type TEXT NOT NULL, id TEXT NOT NULL, patient_id TEXT, occurred_at INTEGER NOT NULL, json TEXT NOT NULL,
         PRIMARY KEY (resource_type, id));
         CREATE INDEX r_patient ON r (resource_type, patient_id);",
    )
    .unwrap();
    c
}

fn peer_upsert(c: &Connection, r: &FhirResource) {
    let tx = c.unchecked_transaction().unwrap();
    tx.execute(
        "INSERT INTO r (resource_type, id, patient_id, occurred_at, json) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (resource_type, id) DO UPDATE SET patient_id = excluded.patient_id, occurred_at = excluded.occurred_at, json = excluded.json
         WHERE excluded.occurred_at > r.occurred_at",
        params![r.resource_type, r.id, r.patient_id, r.occurred_at, r.fhir_json],
    )
    .unwrap();
    tx.commit().unwrap();
}

fn upsert(c: &mut Criterion) {
    let mut g = c.benchmark_group("upsert");
    g.sample_size(30);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 16).unwrap();
    let mut n = 0usize;
    g.bench_function("query::Store::upsert", |b| {
        b.iter(|| {
            n += 1;
            black_box(store.upsert(&observation(n, n as i64)).unwrap())
        })
    });
    let peer = peer_open(dir.path());
    let mut m = 0usize;
    g.bench_function("peer: plain SQLite row, no indexes", |b| {
        b.iter(|| {
            m += 1;
            peer_upsert(&peer, &observation(m, m as i64));
        })
    });
    g.finish();

    // A rebuild: 500 records per transaction (the materialiser's default max_batch).
    const BATCH: usize = 500;
    let mut g = c.benchmark_group("upsert batch of 500 (per record)");
    g.sample_size(20);
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut n = 1_000_000usize;
    g.bench_function("query::Store::apply", |b| {
        b.iter(|| {
            let recs: Vec<FhirResource> = (0..BATCH).map(|i| observation(n + i, 1)).collect();
            n += BATCH;
            black_box(store.apply(recs.iter().map(Write::Upsert)).unwrap())
        })
    });
    let mut m = 1_000_000usize;
    g.bench_function("peer: plain SQLite rows, no indexes", |b| {
        b.iter(|| {
            let recs: Vec<FhirResource> = (0..BATCH).map(|i| observation(m + i, 1)).collect();
            m += BATCH;
            let tx = peer.unchecked_transaction().unwrap();
            for r in &recs {
                tx.execute(
                    "INSERT INTO r (resource_type, id, patient_id, occurred_at, json) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (resource_type, id) DO UPDATE SET patient_id = excluded.patient_id, occurred_at = excluded.occurred_at, json = excluded.json
                     WHERE excluded.occurred_at > r.occurred_at",
                    params![r.resource_type, r.id, r.patient_id, r.occurred_at, r.fhir_json],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        })
    });
    g.finish();
}

fn list(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 16).unwrap();
    let peer = peer_open(dir.path());
    for i in 0..PATIENTS * PER_PATIENT {
        let r = observation(i, 1);
        store.upsert(&r).unwrap();
        peer_upsert(&peer, &r);
    }
    let from = query::time::parse_start("2024-03").unwrap();
    let to = query::time::parse_end_exclusive("2024-08").unwrap();
    let filter = ListFilter {
        codes: vec![CodeFilter::parse("http://loinc.org|2345-7").unwrap()],
        from: Some(from),
        to_exclusive: Some(to),
    };
    let expected =
        store.list_for_patient("Observation", "p4", &filter, &PageReq { size: 50, after: None }).unwrap().rows.len();
    let mut g = c.benchmark_group("list_observations (10k stored, 1 patient, code + range, page 50)");
    g.bench_function("query::Store::list_for_patient", |b| {
        b.iter(|| {
            black_box(store.list_for_patient("Observation", "p4", &filter, &PageReq { size: 50, after: None }).unwrap())
        })
    });
    // The peer: same answer from the JSON itself (json_extract, julianday for the offset-aware range).
    let sql = "SELECT id, json FROM r WHERE resource_type = 'Observation' AND patient_id = ?1
               AND EXISTS (SELECT 1 FROM json_each(r.json, '$.code.coding') c
                           WHERE json_extract(c.value, '$.system') = 'http://loinc.org' AND json_extract(c.value, '$.code') = '2345-7')
               AND julianday(json_extract(json, '$.effectiveDateTime')) >= julianday('2024-03-01')
               AND julianday(json_extract(json, '$.effectiveDateTime')) < julianday('2024-08-01')
               ORDER BY julianday(json_extract(json, '$.effectiveDateTime')) DESC, id DESC LIMIT 51";
    let peer_rows = peer.prepare(sql).unwrap().query_map(["p4"], |r| r.get::<_, String>(0)).unwrap().count();
    assert_eq!(peer_rows, expected, "the peer answers the same query ({peer_rows} vs {expected})");
    g.bench_function("peer: json_extract over the patient's rows", |b| {
        b.iter(|| {
            let mut st = peer.prepare_cached(sql).unwrap();
            black_box(st.query_map(["p4"], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap().count())
        })
    });
    g.finish();
}

fn peer_apply(c: &Connection, recs: &[FhirResource]) {
    let tx = c.unchecked_transaction().unwrap();
    {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO r (resource_type, id, patient_id, occurred_at, json) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (resource_type, id) DO UPDATE SET patient_id = excluded.patient_id, occurred_at = excluded.occurred_at, json = excluded.json
                 WHERE excluded.occurred_at > r.occurred_at",
            )
            .unwrap();
        for r in recs {
            st.execute(params![r.resource_type, r.id, r.patient_id, r.occurred_at, r.fhir_json]).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn cpu(c: &mut Criterion<ThreadCpu>) {
    const BATCH: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 16).unwrap();
    let peer = peer_open(dir.path());
    // Every patient stored once, so the timed Patients are updates.
    for first in (0..MIX_PATIENTS).step_by(25) {
        let recs: Vec<FhirResource> = (first..first + 25).map(|m| patient(m, 1)).collect();
        store.apply(recs.iter().map(Write::Upsert)).unwrap();
        peer_apply(&peer, &recs);
    }
    let mut g = c.benchmark_group("cpu: batch of 500, pipeline mix (per record)");
    g.sample_size(20);
    g.throughput(Throughput::Elements(BATCH));
    let mut n = 0usize;
    let mut at = 10i64;
    g.bench_function("query::Store::apply", |b| {
        b.iter_batched(
            || {
                n += 25;
                at += 1;
                mix_batch(n, at)
            },
            |recs| black_box(store.apply(recs.iter().map(Write::Upsert)).unwrap()),
            BatchSize::PerIteration,
        )
    });
    let mut m = 0usize;
    let mut at = 10i64;
    g.bench_function("peer: plain SQLite rows, no indexes", |b| {
        b.iter_batched(
            || {
                m += 25;
                at += 1;
                mix_batch(m, at)
            },
            |recs| peer_apply(&peer, &recs),
            BatchSize::PerIteration,
        )
    });
    g.finish();
    // SQLite's own heap (page caches, statements, schema) at its highest in this process.
    // SAFETY: a plain read of SQLite's global memory statistics.
    let high = unsafe { rusqlite::ffi::sqlite3_memory_highwater(0) };
    println!("SQLite heap high-water over the whole bench: {:.1} MiB", high as f64 / (1 << 20) as f64);
}

criterion_group!(benches, upsert, list);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpu(WallTime));
    targets = cpu
}
criterion_main!(benches, cpu_benches);
