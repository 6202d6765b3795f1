//! Counts heap allocations (and bytes asked for) per conversion of the benchmark messages, by
//! stage: parse + map, and writing the Bundle JSON. Allocation is a large share of a
//! conversion's cost, so this is the number to watch when changing the model or the mapping.
//! `cargo run --release -p mapping --example alloc_count`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

struct Counting;
static COUNT: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        COUNT.fetch_add(1, Relaxed);
        BYTES.fetch_add(l.size() as u64, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        COUNT.fetch_add(1, Relaxed);
        BYTES.fetch_add(new as u64, Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn since(c: u64, b: u64) -> (u64, u64) {
    (COUNT.load(Relaxed) - c, BYTES.load(Relaxed) - b)
}

fn main() {
    let profiles = mapping::Profiles::default();
    for (name, msg) in [
        ("oru_r01_10obx", &include_bytes!("../benches/data/oru_r01_10obx.hl7")[..]),
        ("adt_a01", &include_bytes!("../benches/data/adt_a01.hl7")[..]),
    ] {
        let mut out = Vec::with_capacity(64 * 1024);
        // Once to warm up lazily built tables, then counted.
        drop(mapping::convert_bytes(msg, &profiles, "bench").unwrap());
        let (c, b) = (COUNT.load(Relaxed), BYTES.load(Relaxed));
        let conv = mapping::convert_bytes(msg, &profiles, "bench").unwrap();
        let (mc, mb) = since(c, b);
        let (c, b) = (COUNT.load(Relaxed), BYTES.load(Relaxed));
        conv.append_bundle_json(&mut out);
        let (jc, jb) = since(c, b);
        let sizes: Vec<String> = [
            ("Resource", std::mem::size_of::<canonical::model::Resource>()),
            ("Observation", std::mem::size_of::<canonical::model::Observation>()),
            ("Reference", std::mem::size_of::<canonical::model::Reference>()),
            ("Patient", std::mem::size_of::<canonical::model::Patient>()),
            ("Encounter", std::mem::size_of::<canonical::model::Encounter>()),
            ("ServiceRequest", std::mem::size_of::<canonical::model::ServiceRequest>()),
            ("DiagnosticReport", std::mem::size_of::<canonical::model::DiagnosticReport>()),
            ("MessageHeader", std::mem::size_of::<canonical::model::MessageHeader>()),
            ("Provenance", std::mem::size_of::<canonical::model::Provenance>()),
            ("CodeableConcept", std::mem::size_of::<canonical::model::CodeableConcept>()),
            ("ObservationReferenceRange", std::mem::size_of::<canonical::model::ObservationReferenceRange>()),
            ("Coding", std::mem::size_of::<canonical::model::Coding>()),
            ("Identifier", std::mem::size_of::<canonical::model::Identifier>()),
            ("HumanName", std::mem::size_of::<canonical::model::HumanName>()),
            ("Address", std::mem::size_of::<canonical::model::Address>()),
            ("ContactPoint", std::mem::size_of::<canonical::model::ContactPoint>()),
            ("Extension", std::mem::size_of::<canonical::model::Extension>()),
        ]
        .iter()
        .map(|(n, s)| format!("{n} {s} B"))
        .collect();
        println!(
            "{name}: convert {mc} allocations ({mb} B), Bundle JSON {jc} allocations ({jb} B), {} resources; {}",
            conv.resources.len(),
            sizes.join(", ")
        );
    }
}
