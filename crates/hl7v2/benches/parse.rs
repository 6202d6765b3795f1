//! Criterion benchmarks: tokenise-and-index and full access over 50,000 generated ADT/ORU
//! messages (1–4 KB), and parse time against size for large base64 OBX-5 messages (1, 2.5
//! and 5 MB) to show it is linear. `cargo bench -p hl7v2 --bench parse`.

#[path = "corpus_gen.rs"]
mod corpus_gen;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hl7v2::Message;
use std::hint::black_box;
use std::time::Duration;

fn walk(m: &Message<'_>) -> usize {
    let mut n = 0;
    for seg in m.segments() {
        for f in seg.fields() {
            for r in f.repetitions() {
                for c in r.components() {
                    for s in c.subcomponents() {
                        n += s.unescaped().len();
                    }
                }
            }
        }
    }
    n
}

fn corpus(c: &mut Criterion) {
    let msgs = corpus_gen::corpus(50_000, 42);
    let bytes: usize = msgs.iter().map(String::len).sum();
    let mut g = c.benchmark_group("corpus_50k");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("tokenise_and_index", |b| {
        b.iter(|| {
            let mut n = 0;
            for m in &msgs {
                n += Message::parse(black_box(m.as_bytes())).unwrap().segment_count();
            }
            n
        })
    });
    g.bench_function("parse_and_unescape_every_subcomponent", |b| {
        b.iter(|| {
            let mut n = 0;
            for m in &msgs {
                n += walk(&Message::parse(black_box(m.as_bytes())).unwrap());
            }
            n
        })
    });
    g.finish();
}

fn large(c: &mut Criterion) {
    let mut g = c.benchmark_group("base64_obx5");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for size in [1usize << 20, 5 << 19, 5 << 20] {
        let m = corpus_gen::big_base64(size, 7);
        g.throughput(Throughput::Bytes(m.len() as u64));
        g.bench_with_input(BenchmarkId::new("parse", m.len()), &m, |b, m| {
            b.iter(|| Message::parse(black_box(m.as_bytes())).unwrap().segment_count())
        });
        g.bench_with_input(BenchmarkId::new("parse_and_get_obx5", m.len()), &m, |b, m| {
            b.iter(|| Message::parse(black_box(m.as_bytes())).unwrap().get("OBX-5.5").unwrap().as_str().len())
        });
    }
    g.finish();
}

criterion_group!(benches, corpus, large);
criterion_main!(benches);
