//! Terminology benchmarks: lookups and translations per second on one core, load time and
//! heap for a LOINC-sized (100,000 rows) Loinc.csv and an ICD-10-CM-sized (75,000 rows)
//! order file (synthetic, generated under target/), store open time, and enrichment
//! throughput. Peer in the same run: a plain `FxHashMap<String, usize>` lookup (the
//! in-process baseline); the Python dict baseline is a separate command in docs/benchmarks.md.
//!
//! Run: `cargo bench -p terminology --bench terminology`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rustc_hash::FxHashMap;
use terminology::content::{ConceptMapContent, MapElement, MapGroup, MapTarget};
use terminology::loaders::{icd10cm, loinc::loinc_check_digit};
use terminology::{
    CodeableConcept, Coding, EnrichOptions, Enricher, EnrichmentReport, Equivalence, LoadOptions, Quantity, Store,
    StoreBuilder, Terminology, loaders, systems,
};

/// Counts live heap bytes and their peak, for the memory figures of a load.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn bench_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/terminology-bench");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn loinc_codes(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let num = (10_000 + i * 7).to_string();
            format!("{num}-{}", loinc_check_digit(&num))
        })
        .collect()
}

/// A Loinc.csv-shaped file: the real header, quoted fields, ~12 filled columns per row.
fn write_loinc(path: &Path, codes: &[String]) {
    use std::io::Write;
    let header = "\"LOINC_NUM\",\"COMPONENT\",\"PROPERTY\",\"TIME_ASPCT\",\"SYSTEM\",\"SCALE_TYP\",\"METHOD_TYP\",\"CLASS\",\"VersionLastChanged\",\"CHNG_TYPE\",\"DefinitionDescription\",\"STATUS\",\"CONSUMER_NAME\",\"CLASSTYPE\",\"FORMULA\",\"EXMPL_ANSWERS\",\"SURVEY_QUEST_TEXT\",\"SURVEY_QUEST_SRC\",\"UNITSREQUIRED\",\"RELATEDNAMES2\",\"SHORTNAME\",\"ORDER_OBS\",\"HL7_FIELD_SUBFIELD_ID\",\"EXTERNAL_COPYRIGHT_NOTICE\",\"EXAMPLE_UNITS\",\"LONG_COMMON_NAME\",\"EXAMPLE_UCUM_UNITS\",\"STATUS_REASON\",\"STATUS_TEXT\",\"CHANGE_REASON_PUBLIC\",\"COMMON_TEST_RANK\",\"COMMON_ORDER_RANK\",\"HL7_ATTACHMENT_STRUCTURE\",\"EXTERNAL_COPYRIGHT_LINK\",\"PanelType\",\"AskAtOrderEntry\",\"AssociatedObservations\",\"VersionFirstReleased\",\"ValidHL7AttachmentRequest\",\"DisplayName\"";
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(w, "{header}").unwrap();
    for (i, c) in codes.iter().enumerate() {
        let comp = format!("Analyte {i}");
        writeln!(
            w,
            "\"{c}\",\"{comp}\",\"MCnc\",\"Pt\",\"Ser/Plas\",\"Qn\",\"\",\"CHEM\",\"2.80\",\"MIN\",\"Synthetic definition, with a comma\",\"ACTIVE\",\"{comp} consumer\",\"1\",\"\",\"\",\"\",\"\",\"Y\",\"Related; names; {i}\",\"{comp} SerPl-mCnc\",\"Observation\",\"\",\"\",\"mg/dL\",\"{comp} [Mass/volume] in Serum or Plasma\",\"mg/dL\",\"\",\"\",\"\",\"0\",\"0\",\"\",\"\",\"\",\"\",\"\",\"2.40\",\"\",\"{comp} (S/P) [Mass/Vol]\""
        )
        .unwrap();
    }
}

/// An order-file-shaped file: 75,000 rows of fixed width.
fn write_icd(path: &Path, n: usize) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let letter = (b'A' + (i / 3000 % 26) as u8) as char;
        let cat = format!("{letter}{:02}", i / 100 % 30);
        let code = if i % 100 == 0 { cat.clone() } else { format!("{cat}{:04}", i % 100 + i / 3000 * 100) };
        let flag = if i % 100 == 0 { 0 } else { 1 };
        let short = format!("Synthetic condition {i}");
        let long = format!("Synthetic condition number {i}, unspecified, of the {letter} chapter");
        writeln!(w, "{:05} {:<7} {} {:<60} {}", i + 1, code, flag, short, long).unwrap();
    }
}

fn measure<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let t = Instant::now();
    let out = f();
    let dt = t.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let retained = LIVE.load(Ordering::Relaxed).saturating_sub(base);
    eprintln!(
        "[terminology-bench] {label}: {:.1} ms, peak heap {:.1} MiB, retained {:.1} MiB",
        dt.as_secs_f64() * 1e3,
        peak as f64 / 1048576.0,
        retained as f64 / 1048576.0
    );
    out
}

struct Fixture {
    term: Terminology,
    codes: Vec<String>,
    local: Vec<String>,
}

fn fixture() -> Fixture {
    let dir = bench_dir();
    let codes = loinc_codes(100_000);
    let loinc_path = dir.join("Loinc.csv");
    let icd_path = dir.join("icd10cm_order_2025.txt");
    write_loinc(&loinc_path, &codes);
    write_icd(&icd_path, 75_000);
    let opts = LoadOptions { version: Some("bench".into()), ..Default::default() };
    let store_path = dir.join("bench.store");
    let (loinc_cs, _) =
        measure("load Loinc.csv 100,000 rows (parse only)", || loaders::loinc::load(&loinc_path, &opts).unwrap());
    let (icd_cs, r) =
        measure("load ICD-10-CM order file 75,000 rows (parse only)", || icd10cm::load(&icd_path, &opts).unwrap());
    assert_eq!(r.skipped_count, 0, "{r}");
    let local: Vec<String> = (0..10_000).map(|i| format!("L{i:05}")).collect();
    let map = ConceptMapContent {
        url: "urn:bench:map".into(),
        version: "1".into(),
        name: "bench".into(),
        sender: Some("BENCH".into()),
        source: "generated".into(),
        groups: vec![MapGroup {
            source_system: "urn:bench:local".into(),
            target_system: systems::LOINC.into(),
            elements: local
                .iter()
                .zip(&codes)
                .map(|(l, c)| MapElement {
                    code: l.clone(),
                    targets: vec![MapTarget {
                        code: c.clone(),
                        display: String::new(),
                        equivalence: Equivalence::Equivalent,
                    }],
                })
                .collect(),
        }],
    };
    measure("build + write store (LOINC 100k + ICD 75k + 10k map)", || {
        let mut b = StoreBuilder::new();
        b.add_code_system(&loinc_cs);
        b.add_code_system(&icd_cs);
        b.add_concept_map(&map);
        b.write(&store_path).unwrap();
    });
    drop((loinc_cs, icd_cs, map));
    measure("Loinc.csv end to end: parse + build + write", || {
        let (cs, _) = loaders::loinc::load(&loinc_path, &opts).unwrap();
        let mut b = StoreBuilder::new();
        b.add_code_system(&cs);
        b.write(&dir.join("loinc-only.store")).unwrap();
    });
    measure("ICD-10-CM end to end: parse + build + write", || {
        let (cs, _) = icd10cm::load(&icd_path, &opts).unwrap();
        let mut b = StoreBuilder::new();
        b.add_code_system(&cs);
        b.write(&dir.join("icd-only.store")).unwrap();
    });
    let size = std::fs::metadata(&store_path).unwrap().len();
    eprintln!("[terminology-bench] store file: {:.1} MiB", size as f64 / 1048576.0);
    let store = measure("Store::open (read file + index)", || Store::open(&store_path).unwrap());
    let term = measure("Terminology::open (builtin + store file)", || {
        let mut t = Terminology::builtin();
        t.add_store(store);
        t
    });
    Fixture { term, codes, local }
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let t = &f.term;
    const BATCH: usize = 1000;
    // Spread probes over the whole code system so caches do not flatter the numbers.
    let probe: Vec<&str> = (0..BATCH).map(|i| f.codes[(i * 7919) % f.codes.len()].as_str()).collect();
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("Terminology::lookup LOINC 100k (hit)", |b| {
        b.iter(|| {
            for code in &probe {
                black_box(t.lookup(systems::LOINC, black_box(code)).map(|c| c.display().len()));
            }
        })
    });
    let cs = t.code_system(systems::LOINC).unwrap();
    g.bench_function("CodeSystemRef::get LOINC 100k (hit)", |b| {
        b.iter(|| {
            for code in &probe {
                black_box(cs.get(black_box(code)).map(|c| c.display().len()));
            }
        })
    });
    let miss: Vec<String> = (0..BATCH).map(|i| format!("{}-0", 900_000 + i)).collect();
    g.bench_function("Terminology::lookup LOINC 100k (miss)", |b| {
        b.iter(|| {
            for code in &miss {
                black_box(t.lookup(systems::LOINC, black_box(code)).is_some());
            }
        })
    });
    let icd_probe: Vec<String> = (0..BATCH)
        .map(|i| t.code_system(systems::ICD10CM).unwrap().concept((i * 71) as u32).unwrap().code().to_string())
        .collect();
    g.bench_function("Terminology::lookup ICD-10-CM 75k (hit)", |b| {
        b.iter(|| {
            for code in &icd_probe {
                black_box(t.lookup(systems::ICD10CM, black_box(code)).map(|c| c.display().len()));
            }
        })
    });
    // Peer: an in-memory FxHashMap<String, usize> with the same keys (no store, no strings).
    let peer: FxHashMap<String, usize> = f.codes.iter().cloned().enumerate().map(|(i, c)| (c, i)).collect();
    g.bench_function("peer FxHashMap<String,usize>::get 100k (hit)", |b| {
        b.iter(|| {
            for code in &probe {
                black_box(peer.get(*black_box(code)));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Elements(BATCH as u64));
    let lprobe: Vec<&str> = (0..BATCH).map(|i| f.local[(i * 7919) % f.local.len()].as_str()).collect();
    g.bench_function("translate_first sender map 10k", |b| {
        b.iter(|| {
            for code in &lprobe {
                black_box(
                    t.translate_first("urn:bench:local", black_box(code), None, Some("BENCH")).map(|x| x.code.len()),
                );
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("enrich");
    let e = Enricher::new(t, EnrichOptions { sender: Some("BENCH".into()), ..Default::default() });
    // One observation-like unit of work: a local code (mapped), a LOINC code (display added)
    // and a quantity with a sender unit string: 3 codings/quantities.
    let work: Vec<(CodeableConcept, CodeableConcept, Quantity)> = (0..BATCH)
        .map(|i| {
            (
                CodeableConcept { coding: vec![Coding::new("urn:bench:local", lprobe[i])], text: None },
                CodeableConcept { coding: vec![Coding::new(systems::LOINC, probe[i])], text: None },
                Quantity {
                    value: Some(1.0),
                    unit: Some(["mg/dl", "K/uL", "mmol/L", "g/dl"][i % 4].into()),
                    system: None,
                    code: None,
                },
            )
        })
        .collect();
    g.throughput(Throughput::Elements(3 * BATCH as u64));
    g.bench_function("enrich codings+quantities", |b| {
        b.iter_batched(
            || work.clone(),
            |mut w| {
                let mut r = EnrichmentReport::default();
                for (a, l, q) in &mut w {
                    e.enrich_concept("a", a, &mut r);
                    e.enrich_concept("b", l, &mut r);
                    e.enrich_quantity("q", q, &mut r);
                }
                black_box(r.entries.len())
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! { name = group; config = config(); targets = benches }
criterion_main!(group);
