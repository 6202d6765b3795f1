//! Kafka headers Arteria relies on, with typed accessors.
//!
//! The message id and W3C trace context must survive every hop, and a DLQ record must keep the
//! original headers byte for byte. Centralising the header names and their parsing here keeps
//! every service spelling them the same way.

use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::trace::TraceParent;

/// Stable id of the logical message (UUID or deterministic id), for idempotent consumers.
pub const MESSAGE_ID: &str = "message-id";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// W3C vendor trace state, carried unchanged.
pub const TRACESTATE: &str = "tracestate";
/// Media type of the value, e.g. `application/vnd.arteria.raw+avro`.
pub const CONTENT_TYPE: &str = "content-type";
/// When ingest accepted the message (µs since the epoch, decimal ASCII), carried to the end of
/// the pipeline so the last stage can observe the end-to-end latency where it happens.
pub const RECEIVED_AT: &str = "arteria-received-at";

/// Headers of one record, in order, as owned bytes (a header value may be null).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageHeaders {
    entries: Vec<(String, Option<Vec<u8>>)>,
}

impl MessageHeaders {
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies every header of a consumed message.
    pub fn from_kafka<H: Headers>(headers: Option<&H>) -> Self {
        let mut entries = Vec::new();
        if let Some(h) = headers {
            for hd in h.iter() {
                entries.push((hd.key.to_string(), hd.value.map(<[u8]>::to_vec)));
            }
        }
        Self { entries }
    }

    /// Converts to the rdkafka type for producing.
    pub fn to_kafka(&self) -> OwnedHeaders {
        let mut out = OwnedHeaders::new_with_capacity(self.entries.len());
        for (k, v) in &self.entries {
            out = out.insert(Header { key: k, value: v.as_deref() });
        }
        out
    }

    /// All entries in order, duplicates included.
    pub fn entries(&self) -> &[(String, Option<Vec<u8>>)] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Last value of `name` (Kafka allows repeats; the last one wins, as in Kafka clients).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| v.as_deref())
    }

    /// Last value of `name` as UTF-8, if it is.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Replaces every `name` header with one value.
    pub fn set(&mut self, name: &str, value: impl Into<Vec<u8>>) -> &mut Self {
        self.entries.retain(|(k, _)| k != name);
        self.entries.push((name.to_string(), Some(value.into())));
        self
    }

    /// Appends a header, keeping existing ones with the same name.
    pub fn push(&mut self, name: &str, value: Option<Vec<u8>>) -> &mut Self {
        self.entries.push((name.to_string(), value));
        self
    }

    pub fn message_id(&self) -> Option<&str> {
        self.get_str(MESSAGE_ID)
    }

    pub fn set_message_id(&mut self, id: &str) -> &mut Self {
        self.set(MESSAGE_ID, id)
    }

    /// The trace context, or `None` when absent or malformed (a bad header from a sender must
    /// not fail processing; it just starts a new trace).
    pub fn traceparent(&self) -> Option<TraceParent> {
        self.get_str(TRACEPARENT).and_then(|s| s.parse().ok())
    }

    pub fn set_traceparent(&mut self, tp: &TraceParent) -> &mut Self {
        self.set(TRACEPARENT, tp.to_string())
    }

    pub fn tracestate(&self) -> Option<&str> {
        self.get_str(TRACESTATE)
    }

    pub fn content_type(&self) -> Option<&str> {
        self.get_str(CONTENT_TYPE)
    }

    pub fn set_content_type(&mut self, ct: &str) -> &mut Self {
        self.set(CONTENT_TYPE, ct)
    }

    /// Ingest's accept time in µs since the epoch, or `None` when absent or not a number.
    pub fn received_at_micros(&self) -> Option<i64> {
        self.get_str(RECEIVED_AT).and_then(|s| s.parse().ok())
    }

    pub fn set_received_at_micros(&mut self, micros: i64) -> &mut Self {
        self.set(RECEIVED_AT, micros.to_string())
    }

    /// Copies the accept time to a record produced because of this one, unless `out` has its own.
    pub fn propagate_received_at_to(&self, out: &mut MessageHeaders) {
        if out.get(RECEIVED_AT).is_none()
            && let Some(v) = self.get(RECEIVED_AT)
        {
            out.set(RECEIVED_AT, v.to_vec());
        }
    }

    /// Context for a record produced because of this one: a child of its trace (or a new root
    /// when it had none), with `tracestate` carried over unchanged.
    pub fn propagate_trace_to(&self, out: &mut MessageHeaders) {
        let tp = self.traceparent().map(|t| t.child()).unwrap_or_else(TraceParent::new_root);
        out.set_traceparent(&tp);
        if let Some(ts) = self.get(TRACESTATE) {
            out.set(TRACESTATE, ts.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rdkafka_headers_keeping_order_nulls_and_repeats() {
        let mut h = MessageHeaders::new();
        h.set_message_id("m-1").push("x", None).push("x", Some(vec![0, 255])).set_content_type("a/b");
        let k = h.to_kafka();
        let back = MessageHeaders::from_kafka(Some(&k));
        assert_eq!(back, h);
        assert_eq!(back.get("x"), Some(&[0u8, 255][..]));
        assert_eq!(back.message_id(), Some("m-1"));
        assert_eq!(back.content_type(), Some("a/b"));
    }

    #[test]
    fn set_replaces_all_previous_values() {
        let mut h = MessageHeaders::new();
        h.push(MESSAGE_ID, Some(b"a".to_vec())).push(MESSAGE_ID, Some(b"b".to_vec()));
        h.set_message_id("c");
        assert_eq!(h.entries().len(), 1);
        assert_eq!(h.message_id(), Some("c"));
    }

    #[test]
    fn trace_propagates_as_a_child_or_starts_a_root() {
        let mut input = MessageHeaders::new();
        let tp = TraceParent::new_root();
        input.set_traceparent(&tp).set(TRACESTATE, "vendor=1");
        let mut out = MessageHeaders::new();
        input.propagate_trace_to(&mut out);
        let child = out.traceparent().unwrap();
        assert_eq!(child.trace_id, tp.trace_id);
        assert_ne!(child.parent_id, tp.parent_id);
        assert_eq!(out.tracestate(), Some("vendor=1"));

        let mut bad = MessageHeaders::new();
        bad.set(TRACEPARENT, "garbage");
        assert_eq!(bad.traceparent(), None);
        let mut out2 = MessageHeaders::new();
        bad.propagate_trace_to(&mut out2);
        assert!(out2.traceparent().is_some());
    }

    #[test]
    fn received_at_is_copied_unless_the_output_has_its_own() {
        let mut input = MessageHeaders::new();
        input.set_received_at_micros(1_700_000_000_123_456);
        assert_eq!(input.received_at_micros(), Some(1_700_000_000_123_456));
        let mut out = MessageHeaders::new();
        input.propagate_received_at_to(&mut out);
        assert_eq!(out.received_at_micros(), Some(1_700_000_000_123_456));

        let mut own = MessageHeaders::new();
        own.set_received_at_micros(5);
        input.propagate_received_at_to(&mut own);
        assert_eq!(own.received_at_micros(), Some(5));

        let mut none = MessageHeaders::new();
        MessageHeaders::new().propagate_received_at_to(&mut none);
        assert!(none.is_empty());
        none.set(RECEIVED_AT, "soon");
        assert_eq!(none.received_at_micros(), None);
    }
}
