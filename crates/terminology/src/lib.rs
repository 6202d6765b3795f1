//! Terminology (work in progress).
