//! Conversion throughput per core in CPU time, with the system allocator (glibc malloc).
//! Complements the criterion benchmark (wall time); `throughput-mimalloc` is the same with the
//! services' allocator.
//! `cargo run --release -p mapping --example throughput -- [SECONDS] [FILTER]` (FILTER: run only the
//! measurements whose name contains it, e.g. `oru_r01_10obx -> FHIR`, for profiling one path).

#[path = "measure/mod.rs"]
mod measure;

fn main() {
    measure::run();
}
