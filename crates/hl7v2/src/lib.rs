//! HL7 v2 engine (work in progress).
