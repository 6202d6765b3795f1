//! Which patients and visits fan-out has published, so that a message that names them but is
//! not their source — a lab result's PID (MRN, name, birth date, sex) and PV1 (visit number,
//! class, location) — creates a Patient or Encounter nobody has published yet but never
//! replaces one: a FHIR conditional create (`If-None-Exist`) on a topic. Without it, a lab
//! result would replace the admission's Patient (address, telephone, next of kin gone) and
//! Encounter (attending doctor, admission time gone, status `unknown`) on the `fhir.<type>.v1`
//! topics and in the query store.
//!
//! The ledger is rebuilt from those topics themselves (their keys, read to the end) whenever the
//! loop's partition assignment changes, so a restarted or rebalanced replica knows what its
//! predecessors published. Between rebuilds it is kept in step with the transactions: what a
//! batch publishes is pending until the batch commits and forgotten if it aborts (the batch's
//! records come again). A patient's events are keyed by its id, so only the replica owning that
//! key publishes its resources; the ledger holds every id of the tracked types, though (16 bytes
//! each for our UUID-shaped ids), because the current-state topics are not partitioned like
//! the input.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bus::BusConfig;

/// Why the ledger could not be rebuilt (the batch is retried).
#[derive(Debug, thiserror::Error)]
#[error("rebuilding the ledger of published resources from {topic}: {source}")]
pub struct LedgerError {
    topic: String,
    source: bus::BusError,
}

/// A resource id as the ledger holds it: our ids are UUIDs (a u128); anything else verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Id {
    Uuid(u128),
    Other(Box<str>),
}

impl Id {
    fn of(id: &[u8]) -> Id {
        let hex: Vec<u8> = id.iter().copied().filter(|&b| b != b'-').collect();
        let uuid_shaped = id.len() == 36 && hex.len() == 32;
        match std::str::from_utf8(&hex).ok().filter(|_| uuid_shaped).and_then(|h| u128::from_str_radix(h, 16).ok()) {
            Some(n) => Id::Uuid(n),
            None => Id::Other(String::from_utf8_lossy(id).into()),
        }
    }
}

/// A tracked resource: the index of its type in [`Ledger::types`], and its id.
type Key = (u8, Id);

#[derive(Debug, Default)]
struct State {
    /// Published in committed transactions.
    known: HashSet<Key>,
    /// Published in the open batch.
    pending: HashSet<Key>,
    /// Left out in the open batch, per type index: counted only once the batch commits (an
    /// aborted batch's records come again and are counted then).
    withheld: Vec<u64>,
    /// The assignment generation `known` was rebuilt for.
    generation: Option<u64>,
}

/// The ledger of one fan-out replica.
#[derive(Debug)]
pub struct Ledger {
    /// Tracked resource types and their current-state topics.
    types: Vec<(String, String)>,
    bus: BusConfig,
    /// How long a rebuild may go without progress before the batch is retried.
    rebuild_stall: Duration,
    state: Mutex<State>,
}

impl Ledger {
    /// A ledger of `types` (resource type, its current-state topic), read with the bus settings
    /// `bus`; empty until the first [`Ledger::prepare`]. At most 256 types.
    pub fn new(types: Vec<(String, String)>, bus: &BusConfig) -> Self {
        assert!(types.len() <= 256, "the ledger tracks at most 256 resource types");
        Self { types, bus: bus.clone(), rebuild_stall: Duration::from_secs(60), state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn type_index(&self, resource_type: &str) -> Option<u8> {
        self.types.iter().position(|(t, _)| t == resource_type).map(|i| i as u8)
    }

    /// Whether resources of this type are tracked.
    pub fn tracks(&self, resource_type: &str) -> bool {
        self.type_index(resource_type).is_some()
    }

    /// Rebuilds the ledger from the topics when `generation` is not the one it was built for.
    pub async fn prepare(&self, generation: u64) -> Result<(), LedgerError> {
        if self.state().generation == Some(generation) {
            return Ok(());
        }
        let started = Instant::now();
        let mut known = HashSet::new();
        let mut records = 0;
        for (i, (_, topic)) in self.types.iter().enumerate() {
            let (bus, t, stall) = (self.bus.clone(), topic.clone(), self.rebuild_stall);
            let fail = |source| LedgerError { topic: topic.clone(), source };
            let (ids, stats) = tokio::task::spawn_blocking(move || {
                let mut ids = HashSet::new();
                bus::snapshot::scan_keys(&bus, &t, stall, |key, present| {
                    if present {
                        ids.insert(Id::of(key));
                    } else {
                        ids.remove(&Id::of(key));
                    }
                })
                .map(|stats| (ids, stats))
            })
            .await
            .map_err(|e| fail(bus::BusError::Join(e.to_string())))?
            .map_err(fail)?;
            records += stats.records;
            known.extend(ids.into_iter().map(|id| (i as u8, id)));
        }
        tracing::info!(
            types = self.types.len(),
            resources = known.len(),
            records,
            took_ms = started.elapsed().as_millis() as u64,
            "ledger of published resources rebuilt"
        );
        *self.state() = State { known, generation: Some(generation), ..State::default() };
        Ok(())
    }

    /// Whether this event's resource goes on its topic: always when the message is a source
    /// of it, otherwise (`create_only`) only if no version of it was published before. An
    /// untracked type always goes. A resource that goes is recorded as pending.
    pub fn admit(&self, resource_type: &str, id: &str, create_only: bool) -> bool {
        let Some(t) = self.type_index(resource_type) else { return true };
        let key = (t, Id::of(id.as_bytes()));
        let mut s = self.state();
        if create_only && (s.known.contains(&key) || s.pending.contains(&key)) {
            let t = t as usize;
            if s.withheld.len() <= t {
                s.withheld.resize(t + 1, 0);
            }
            s.withheld[t] += 1;
            return false;
        }
        s.pending.insert(key);
        true
    }

    /// The batch's transaction ended: its resources count once committed, and are forgotten
    /// when it aborted. Returns what a committed batch left out, per resource type (nothing
    /// for an aborted one).
    pub fn settled(&self, committed: bool) -> Vec<(&str, u64)> {
        let mut s = self.state();
        let pending = std::mem::take(&mut s.pending);
        let withheld = std::mem::take(&mut s.withheld);
        if !committed {
            return Vec::new();
        }
        s.known.extend(pending);
        withheld.iter().enumerate().filter(|(_, n)| **n > 0).map(|(t, n)| (self.types[t].0.as_str(), *n)).collect()
    }

    /// Resources known as published (committed).
    pub fn len(&self) -> usize {
        self.state().known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0f1e2d3c-4b5a-8968-8776-655443322110";
    const B: &str = "1f1e2d3c-4b5a-8968-8776-655443322110";

    fn ledger() -> Ledger {
        let types = [("Patient", "fhir.patient.v1"), ("Encounter", "fhir.encounter.v1")];
        Ledger::new(types.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(), &BusConfig::default())
    }

    #[test]
    fn uuid_ids_are_held_as_numbers_and_others_as_text() {
        assert_eq!(Id::of(A.as_bytes()), Id::Uuid(0x0f1e2d3c_4b5a_8968_8776_655443322110));
        assert_eq!(Id::of(b"mrn-123"), Id::Other("mrn-123".into()));
        // 36 characters but not hex: kept as text, not confused with a number.
        let odd = "zz1e2d3c-4b5a-8968-8776-655443322110";
        assert_eq!(Id::of(odd.as_bytes()), Id::Other(odd.into()));
        assert_ne!(Id::of(A.as_bytes()), Id::of(B.as_bytes()));
    }

    #[test]
    fn a_create_only_resource_goes_once_and_from_its_source_always() {
        let l = ledger();
        assert!(l.admit("Patient", A, true), "nobody published A: created");
        assert!(!l.admit("Patient", A, true), "A is pending in this batch: not again");
        l.settled(true);
        assert!(!l.admit("Patient", A, true), "A committed: a lab result does not replace it");
        assert!(l.admit("Patient", A, false), "an admission replaces it");
        assert!(l.admit("Patient", B, false));
        l.settled(true);
        assert!(!l.admit("Patient", B, true));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn types_are_tracked_apart_and_untracked_types_always_go() {
        let l = ledger();
        assert!(l.admit("Patient", A, true));
        l.settled(true);
        assert!(l.admit("Encounter", A, true), "an Encounter with the Patient's id is another resource");
        assert!(l.admit("Observation", A, true) && l.admit("Observation", A, true), "not tracked");
        assert!(!l.tracks("Observation") && l.tracks("Encounter"));
        l.settled(true);
        assert!(!l.admit("Encounter", A, true));
        assert_eq!(l.len(), 2, "untracked types are not held");
    }

    #[test]
    fn an_aborted_batch_is_forgotten() {
        let l = ledger();
        assert!(l.admit("Encounter", A, true));
        l.settled(false);
        assert!(l.is_empty());
        assert!(l.admit("Encounter", A, true), "the retried batch creates A again");
        l.settled(true);
        assert!(!l.admit("Encounter", A, true));
    }

    #[test]
    fn what_was_left_out_counts_only_when_its_batch_commits() {
        let l = ledger();
        assert!(l.admit("Patient", A, false) && l.admit("Encounter", B, false));
        assert_eq!(l.settled(true), vec![], "nothing left out");
        assert!(!l.admit("Encounter", B, true));
        assert!(!l.admit("Encounter", B, true));
        assert_eq!(l.settled(false), vec![], "an aborted batch's records come again");
        assert!(!l.admit("Patient", A, true));
        assert!(!l.admit("Encounter", B, true));
        assert!(l.admit("Observation", B, true), "untracked");
        assert_eq!(l.settled(true), vec![("Patient", 1), ("Encounter", 1)], "the retried batch, counted once");
        assert_eq!(l.settled(true), vec![], "an empty batch");
    }
}
