//! Conversion throughput per core in CPU time with mimalloc as the global allocator, as the
//! services and the CLI run it (conversion is allocation-bound, so the allocator matters).
//! `cargo run --release -p mapping --example throughput-mimalloc -- [SECONDS] [FILTER]`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "measure/mod.rs"]
mod measure;

fn main() {
    measure::run();
}
