//! Contract types (work in progress).
