//! Kafka plumbing (work in progress).
