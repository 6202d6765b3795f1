//! Test harness: where the local stack and ../shared are.
