//! Parsing allocates a fixed handful of buffers per message, however many fields it has,
//! and reading values allocates nothing unless an escape must be decoded.

use hl7v2::Message;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Per thread, so the test harness's own allocations on other threads do not count.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCS.with(Cell::get);
    let out = f();
    (out, ALLOCS.with(Cell::get) - before)
}

fn message(obx: usize) -> String {
    let mut s = String::from("MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5.1\rPID|1||1^^^H^MR~2^^^S^SS||FAKE^ONE\r");
    for i in 0..obx {
        s.push_str(&format!("OBX|{i}|NM|718-7^Hemoglobin^LN||13.{i}|g/dL|13-17|N|||F\r"));
    }
    s
}

#[test]
fn allocations_do_not_grow_with_fields() {
    let small = message(2);
    let large = message(2000);
    let (m1, a_small) = count(|| Message::parse(small.as_bytes()).unwrap());
    let (m2, a_large) = count(|| Message::parse(large.as_bytes()).unwrap());
    assert_eq!(m2.segment_count(), 2002);
    assert!(a_small <= 2, "small message: {a_small} allocations (segment and field index)");
    // 100x the fields: the index Vecs may grow a few times, never per field.
    assert!(a_large <= 10, "2000-segment message: {a_large} allocations");

    let (n, reads) = count(|| {
        let mut n = 0;
        for seg in m2.segments() {
            for f in seg.fields() {
                for r in f.repetitions() {
                    for c in r.components() {
                        n += c.unescaped().len();
                    }
                }
            }
        }
        n + m1.get("PID-3[2].1").unwrap().as_str().len()
    });
    assert!(n > 0);
    assert_eq!(reads, 0, "reading values without escapes allocated");
    let (_, esc) = count(|| {
        Message::parse(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1||A\\F\\B\r")
            .unwrap()
            .get("PID-3")
            .unwrap()
            .unescaped()
            .into_owned()
    });
    assert!(esc >= 3, "decoding an escape allocates its result");
}
