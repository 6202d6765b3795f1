//! Sender retries: a sender that got no ACK (or an AE) resends the same message, and ingest
//! stores it again. Normalize must emit it once. The key is (tenant, sending application,
//! sending facility, MSH-10) within a time window.
//!
//! Two things make this subtle, and both are handled by remembering *where* a key was first
//! seen (its input offset) rather than just that it was seen:
//! - A transaction may abort after a record was processed; the loop then processes the same
//!   record again. Seeing the key again at the *same* offset is that replay, not a duplicate.
//! - A partition may move to another replica, or the service may restart. A replica that
//!   meets a partition it does not know (or a jump in offsets) first rebuilds the partition's
//!   window from the input topic itself (see [`crate::history`]), which is the source of truth:
//!   everything before the committed offset was processed.
//!
//! Duplicates of one message always share a partition: ingest keys by the patient in the
//! message, and the bytes are the same.
//!
//! Memory grows with the messages in the window, so a key is kept as a 128-bit fingerprint
//! (SHA-256 of its length-prefixed parts, truncated): about 60 bytes per message instead of four
//! strings twice over. Two different keys share a fingerprint with probability ~n/2^128 per
//! message (n keys in the window) — nil beside hardware error rates — and the first copy
//! stays in the raw topic regardless.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

/// The identity of a message for retry detection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey {
    pub tenant: String,
    pub application: String,
    pub facility: String,
    pub control_id: String,
}

impl DedupKey {
    /// The key's fingerprint: each part length-prefixed, so no two keys run together.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.tenant, &self.application, &self.facility, &self.control_id)
    }
}

impl Fingerprint {
    /// A key's fingerprint from its parts, for readers that have them borrowed.
    pub fn of(tenant: &str, application: &str, facility: &str, control_id: &str) -> Self {
        let mut h = Sha256::new();
        for part in [tenant, application, facility, control_id] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let d = h.finalize();
        let half = |r: std::ops::Range<usize>| u64::from_le_bytes(d[r].try_into().expect("8 bytes"));
        Fingerprint(half(0..8), half(8..16))
    }
}

/// 128 bits of a key's SHA-256 (two u64 rather than a u128: 8-byte alignment keeps the
/// expiry queue's entries at 24 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u64, u64);

/// The verdict for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First time (or the replay of the same record): process it.
    New,
    /// A retry of the message first seen at `first_offset`: do not re-emit.
    Duplicate { first_offset: i64 },
}

#[derive(Debug, Default)]
struct Partition {
    first_seen: HashMap<Fingerprint, (i64, i64)>,
    /// (received at ms, key) in arrival order, for expiry.
    order: VecDeque<(i64, Fingerprint)>,
    /// The offset after the last record seen; records must follow on from it.
    next_offset: i64,
}

/// Per input partition, the keys seen within the window.
#[derive(Debug)]
pub struct DedupIndex {
    window_ms: i64,
    partitions: HashMap<(String, i32), Partition>,
}

impl DedupIndex {
    pub fn new(window_secs: u64) -> Self {
        Self {
            window_ms: i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            partitions: HashMap::new(),
        }
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// Whether `offset` of this partition cannot be judged from what is known: the partition
    /// is new to this replica, or records were skipped (it moved away and back). A rewind to an
    /// earlier offset (after an aborted transaction) needs no rebuild.
    pub fn needs_history(&self, topic: &str, partition: i32, offset: i64) -> bool {
        match self.partitions.get(&(topic.to_string(), partition)) {
            None => true,
            Some(p) => offset > p.next_offset,
        }
    }

    /// Replaces the partition's state with `history` (records before `up_to`, in order).
    pub fn rebuild(
        &mut self,
        topic: &str,
        partition: i32,
        up_to: i64,
        history: impl IntoIterator<Item = (i64, i64, Fingerprint)>,
    ) {
        let mut p = Partition { next_offset: up_to, ..Partition::default() };
        for (offset, at_ms, key) in history {
            if offset >= up_to {
                break;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = p.first_seen.entry(key) {
                e.insert((offset, at_ms));
                p.order.push_back((at_ms, key));
            }
        }
        self.partitions.insert((topic.to_string(), partition), p);
    }

    /// Judges the record at `offset`, received at `at_ms`, and remembers it.
    pub fn check(&mut self, topic: &str, partition: i32, offset: i64, at_ms: i64, key: DedupKey) -> Verdict {
        let window = self.window_ms;
        let key = key.fingerprint();
        let p = self.partitions.entry((topic.to_string(), partition)).or_default();
        p.next_offset = p.next_offset.max(offset + 1);
        while let Some(t) = p.order.front().map(|(t, _)| *t) {
            if at_ms.saturating_sub(t) <= window {
                break;
            }
            let (_, k) = p.order.pop_front().expect("front exists");
            // Only forget it if this queue entry is the one that recorded it.
            if p.first_seen.get(&k).is_some_and(|(_, seen)| *seen == t) {
                p.first_seen.remove(&k);
            }
        }
        match p.first_seen.get(&key) {
            Some((first, _)) if *first != offset => Verdict::Duplicate { first_offset: *first },
            Some(_) => Verdict::New,
            None => {
                p.first_seen.insert(key, (offset, at_ms));
                p.order.push_back((at_ms, key));
                Verdict::New
            }
        }
    }

    /// Keys held, over all partitions (for the memory this index takes).
    pub fn len(&self) -> usize {
        self.partitions.values().map(|p| p.order.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets a partition (e.g. when it is known to have moved away).
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_string(), partition));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(c: &str) -> DedupKey {
        DedupKey { tenant: "t".into(), application: "LAB".into(), facility: "NORTH".into(), control_id: c.into() }
    }

    #[test]
    fn a_resend_is_a_duplicate_of_the_first() {
        let mut d = DedupIndex::new(60);
        assert_eq!(d.check("raw", 0, 10, 1_000, k("A")), Verdict::New);
        assert_eq!(d.check("raw", 0, 11, 2_000, k("B")), Verdict::New);
        assert_eq!(d.check("raw", 0, 12, 3_000, k("A")), Verdict::Duplicate { first_offset: 10 });
    }

    #[test]
    fn replaying_the_same_record_after_an_abort_is_not_a_duplicate() {
        let mut d = DedupIndex::new(60);
        assert_eq!(d.check("raw", 0, 10, 1_000, k("A")), Verdict::New);
        assert_eq!(d.check("raw", 0, 11, 1_001, k("B")), Verdict::New);
        // Transaction aborted: the loop rewinds to 10 and processes both again.
        assert!(!d.needs_history("raw", 0, 10), "a rewind needs no rebuild");
        assert_eq!(d.check("raw", 0, 10, 1_000, k("A")), Verdict::New);
        assert_eq!(d.check("raw", 0, 11, 1_001, k("B")), Verdict::New);
    }

    #[test]
    fn the_key_includes_the_sender_and_tenant() {
        let mut d = DedupIndex::new(60);
        d.check("raw", 0, 1, 0, k("A"));
        let other_sender = DedupKey { facility: "SOUTH".into(), ..k("A") };
        let other_tenant = DedupKey { tenant: "u".into(), ..k("A") };
        assert_eq!(d.check("raw", 0, 2, 0, other_sender), Verdict::New);
        assert_eq!(d.check("raw", 0, 3, 0, other_tenant), Verdict::New);
    }

    #[test]
    fn parts_do_not_run_together() {
        // "AB" + "C" and "A" + "BC" concatenate alike; the length prefixes keep them apart.
        let mut d = DedupIndex::new(60);
        let a = DedupKey { application: "AB".into(), facility: "C".into(), ..k("1") };
        let b = DedupKey { application: "A".into(), facility: "BC".into(), ..k("1") };
        assert_eq!(d.check("raw", 0, 1, 0, a.clone()), Verdict::New);
        assert_eq!(d.check("raw", 0, 2, 0, b), Verdict::New);
        assert_eq!(d.check("raw", 0, 3, 0, a), Verdict::Duplicate { first_offset: 1 });
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn expired_keys_are_forgotten() {
        let mut d = DedupIndex::new(10);
        for i in 0..1_000 {
            d.check("raw", 0, i, i * 1_000, k(&i.to_string()));
        }
        // 11 s of keys (t-10 s .. t) at one per second remain.
        assert_eq!(d.len(), 11);
    }

    #[test]
    fn outside_the_window_a_resend_is_new_again() {
        let mut d = DedupIndex::new(10);
        d.check("raw", 0, 1, 0, k("A"));
        assert_eq!(d.check("raw", 0, 2, 5_000, k("A")), Verdict::Duplicate { first_offset: 1 });
        assert_eq!(d.check("raw", 0, 3, 20_000, k("A")), Verdict::New, "window of 10 s passed");
    }

    #[test]
    fn partitions_are_independent_and_unknown_ones_need_history() {
        let mut d = DedupIndex::new(60);
        assert!(d.needs_history("raw", 3, 100));
        d.rebuild(
            "raw",
            3,
            100,
            [(98, 0, k("A")), (99, 0, k("B")), (100, 0, k("C"))].map(|(o, t, k)| (o, t, k.fingerprint())),
        );
        assert!(!d.needs_history("raw", 3, 100));
        assert!(d.needs_history("raw", 3, 150), "a gap means records were processed elsewhere");
        assert!(d.needs_history("raw", 4, 0));
        assert_eq!(d.check("raw", 3, 100, 0, k("A")), Verdict::Duplicate { first_offset: 98 });
        assert_eq!(d.check("raw", 3, 101, 0, k("C")), Verdict::New, "history stops before up_to");
    }
}
