//! Allocations per message on the generated corpus, counted by a global allocator:
//! `cargo bench -p hl7v2 --bench allocations`.

#[path = "corpus_gen.rs"]
mod corpus_gen;

use hl7v2::Message;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn measure(label: &str, msgs: &[String], f: impl Fn(&Message<'_>) -> usize) {
    let fields: usize = msgs
        .iter()
        .map(|m| Message::parse(m.as_bytes()).unwrap().segments().map(|s| s.field_count()).sum::<usize>())
        .sum();
    let (a0, b0) = (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    let mut sink = 0;
    for m in msgs {
        let p = Message::parse(m.as_bytes()).unwrap();
        sink += f(&p);
    }
    let (a, b) = (ALLOCS.load(Ordering::Relaxed) - a0, BYTES.load(Ordering::Relaxed) - b0);
    let n = msgs.len() as f64;
    println!(
        "{label}: {:.2} allocations/message ({:.0} bytes), {:.4} allocations/field, {} messages, {:.0} fields/message",
        a as f64 / n,
        b as f64 / n,
        a as f64 / fields as f64,
        msgs.len(),
        fields as f64 / n
    );
    std::hint::black_box(sink);
}

fn main() {
    let msgs = corpus_gen::corpus(50_000, 42);
    measure("parse (tokenise + index)", &msgs, |m| m.segment_count());
    measure("parse + read every component raw", &msgs, |m| {
        let mut n = 0;
        for s in m.segments() {
            for f in s.fields() {
                for r in f.repetitions() {
                    for c in r.components() {
                        n += c.as_str().len();
                    }
                }
            }
        }
        n
    });
    measure("parse + unescape every subcomponent", &msgs, |m| {
        let mut n = 0;
        for s in m.segments() {
            for f in s.fields() {
                for r in f.repetitions() {
                    for c in r.components() {
                        for sc in c.subcomponents() {
                            n += sc.unescaped().len();
                        }
                    }
                }
            }
        }
        n
    });
    let big = corpus_gen::big_base64(5 << 20, 7);
    measure("5 MB base64 OBX-5 message", &[big], |m| m.get("OBX-5.5").map_or(0, |v| v.as_str().len()));
}
