//! The pipeline load harness as a library: synthetic messages, Prometheus histogram reading,
//! per-process CPU and memory, and latency percentiles. The binary (`arteria-load`) drives a
//! running pipeline with these; keeping them here lets each part be unit tested without one.

pub mod latency;
pub mod messages;
pub mod procs;
pub mod prom;
