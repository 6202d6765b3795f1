//! Comparison harness used by `benches/compare.sh`:
//! `bench_corpus dump FILE [COUNT]` writes the generated corpus (one message per line, CR
//! between segments), `bench_corpus run FILE [ROUNDS]` parses it on one core and prints
//! messages/s and MB/s for tokenise-and-index and for full access.

#[path = "../benches/corpus_gen.rs"]
mod corpus_gen;

use hl7v2::Message;
use std::time::Instant;

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (cmd, file) = match (args.get(1), args.get(2)) {
        (Some(c), Some(f)) => (c.as_str(), f.as_str()),
        _ => {
            eprintln!("usage: bench_corpus dump FILE [COUNT] | run FILE [ROUNDS]");
            std::process::exit(2);
        }
    };
    match cmd {
        "dump" => {
            let count: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(50_000);
            let msgs = corpus_gen::corpus(count, 42);
            let mut out = String::new();
            for m in &msgs {
                out.push_str(m);
                out.push('\n');
            }
            std::fs::write(file, out).expect("write corpus");
            let total: usize = msgs.iter().map(String::len).sum();
            eprintln!("wrote {count} messages, {total} bytes, mean {} bytes", total / count);
        }
        "run" => {
            let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
            let data = std::fs::read(file).expect("read corpus");
            let msgs: Vec<&[u8]> = data.split(|&b| b == b'\n').filter(|m| !m.is_empty()).collect();
            let bytes: usize = msgs.iter().map(|m| m.len()).sum();
            for m in &msgs {
                Message::parse(m).expect("generated messages parse");
            }
            let mut best_index = f64::MAX;
            let mut best_full = f64::MAX;
            let mut sink = 0usize;
            for _ in 0..rounds {
                let t = Instant::now();
                for m in &msgs {
                    sink += Message::parse(m).map(|p| p.segment_count()).unwrap_or(0);
                }
                best_index = best_index.min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                for m in &msgs {
                    sink += Message::parse(m).map(|p| walk(&p)).unwrap_or(0);
                }
                best_full = best_full.min(t.elapsed().as_secs_f64());
            }
            let n = msgs.len() as f64;
            let mb = bytes as f64 / 1e6;
            println!(
                "rust hl7v2 tokenise+index: {:.0} msgs/s, {:.0} MB/s ({} msgs, best of {rounds})",
                n / best_index,
                mb / best_index,
                msgs.len()
            );
            println!("rust hl7v2 full access:    {:.0} msgs/s, {:.0} MB/s", n / best_full, mb / best_full);
            println!("RUST_MSGS_PER_S={:.0}", n / best_index);
            println!("RUST_FULL_MSGS_PER_S={:.0}", n / best_full);
            std::hint::black_box(sink);
        }
        _ => {
            eprintln!("unknown command {cmd}");
            std::process::exit(2);
        }
    }
}
