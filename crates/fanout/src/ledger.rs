//! Which patients fan-out has published on the Patient topic, so that a message whose sender
//! is not a source of demographics (a lab result's PID: MRN, name, birth date, sex) creates a
//! patient nobody has published yet but never replaces one: a FHIR conditional create
//! (`If-None-Exist`) on a topic. Without it, a lab result would replace the admission's
//! Patient — address, telephone, next of kin gone — on `fhir.patient.v1` and in the query store.
//!
//! The ledger is rebuilt from the Patient topic itself (its keys, read to the end) whenever the
//! loop's partition assignment changes, so a restarted or rebalanced replica knows what its
//! predecessors published. Between rebuilds it is kept in step with the transactions: what a
//! batch publishes is pending until the batch commits and forgotten if it aborts (the batch's
//! records come again). A patient's events are keyed by its id, so only the replica owning that
//! key publishes it; the ledger holds every patient's id, though (16 bytes each for our
//! UUID-shaped ids), because the Patient topic is not partitioned like the input.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bus::BusConfig;

/// Why the ledger could not be rebuilt (the batch is retried).
#[derive(Debug, thiserror::Error)]
#[error("rebuilding the ledger of published patients from {topic}: {source}")]
pub struct LedgerError {
    topic: String,
    source: bus::BusError,
}

/// A Patient id as the ledger holds it: our ids are UUIDs (a u128); anything else verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Uuid(u128),
    Other(Box<str>),
}

impl Key {
    fn of(id: &[u8]) -> Key {
        let hex: Vec<u8> = id.iter().copied().filter(|&b| b != b'-').collect();
        let uuid_shaped = id.len() == 36 && hex.len() == 32;
        match std::str::from_utf8(&hex).ok().filter(|_| uuid_shaped).and_then(|h| u128::from_str_radix(h, 16).ok()) {
            Some(n) => Key::Uuid(n),
            None => Key::Other(String::from_utf8_lossy(id).into()),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Published in committed transactions.
    known: HashSet<Key>,
    /// Published in the open batch.
    pending: HashSet<Key>,
    /// The assignment generation `known` was rebuilt for.
    generation: Option<u64>,
}

/// The ledger of one fan-out replica.
#[derive(Debug)]
pub struct PatientLedger {
    topic: String,
    bus: BusConfig,
    rebuild_timeout: Duration,
    state: Mutex<State>,
}

impl PatientLedger {
    /// A ledger of the Patient topic `topic`, read with the bus settings `bus`; empty until the
    /// first [`PatientLedger::prepare`].
    pub fn new(topic: &str, bus: &BusConfig) -> Self {
        Self {
            topic: topic.into(),
            bus: bus.clone(),
            rebuild_timeout: Duration::from_secs(120),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the ledger from the topic when `generation` is not the one it was built for.
    pub async fn prepare(&self, generation: u64) -> Result<(), LedgerError> {
        if self.state().generation == Some(generation) {
            return Ok(());
        }
        let (bus, topic, timeout) = (self.bus.clone(), self.topic.clone(), self.rebuild_timeout);
        let started = Instant::now();
        let scanned = tokio::task::spawn_blocking(move || {
            let mut known = HashSet::new();
            bus::snapshot::scan_keys(&bus, &topic, timeout, |key, present| {
                if present {
                    known.insert(Key::of(key));
                } else {
                    known.remove(&Key::of(key));
                }
            })
            .map(|stats| (known, stats))
        })
        .await
        .map_err(|e| LedgerError { topic: self.topic.clone(), source: bus::BusError::Join(e.to_string()) })?;
        let (known, stats) = scanned.map_err(|source| LedgerError { topic: self.topic.clone(), source })?;
        tracing::info!(topic = %self.topic, patients = known.len(), records = stats.records,
            took_ms = started.elapsed().as_millis() as u64, "ledger of published patients rebuilt");
        *self.state() = State { known, pending: HashSet::new(), generation: Some(generation) };
        Ok(())
    }

    /// Whether this event's Patient `id` goes on the topic: always when its sender is a source
    /// of demographics, otherwise only if no version of it was published before. A Patient
    /// that goes is recorded as pending.
    pub fn admit(&self, id: &str, create_only: bool) -> bool {
        let key = Key::of(id.as_bytes());
        let mut s = self.state();
        if create_only && (s.known.contains(&key) || s.pending.contains(&key)) {
            return false;
        }
        s.pending.insert(key);
        true
    }

    /// The batch's transaction ended: its Patients count once committed, and are forgotten
    /// when it aborted.
    pub fn settled(&self, committed: bool) {
        let mut s = self.state();
        let pending = std::mem::take(&mut s.pending);
        if committed {
            s.known.extend(pending);
        }
    }

    /// Patients known as published (committed), for metrics and tests.
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

    fn ledger() -> PatientLedger {
        PatientLedger::new("fhir.patient.v1", &BusConfig::default())
    }

    #[test]
    fn uuid_ids_are_held_as_numbers_and_others_as_text() {
        assert_eq!(Key::of(A.as_bytes()), Key::Uuid(0x0f1e2d3c_4b5a_8968_8776_655443322110));
        assert_eq!(Key::of(b"mrn-123"), Key::Other("mrn-123".into()));
        // 36 characters but not hex: kept as text, not confused with a number.
        let odd = "zz1e2d3c-4b5a-8968-8776-655443322110";
        assert_eq!(Key::of(odd.as_bytes()), Key::Other(odd.into()));
        assert_ne!(Key::of(A.as_bytes()), Key::of(B.as_bytes()));
    }

    #[test]
    fn a_create_only_patient_goes_once_and_a_source_of_demographics_always() {
        let l = ledger();
        assert!(l.admit(A, true), "nobody published A: created");
        assert!(!l.admit(A, true), "A is pending in this batch: not again");
        l.settled(true);
        assert!(!l.admit(A, true), "A committed: a lab result does not replace it");
        assert!(l.admit(A, false), "an admission replaces it");
        assert!(l.admit(B, false));
        l.settled(true);
        assert!(!l.admit(B, true));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn an_aborted_batch_is_forgotten() {
        let l = ledger();
        assert!(l.admit(A, true));
        l.settled(false);
        assert!(l.is_empty());
        assert!(l.admit(A, true), "the retried batch creates A again");
        l.settled(true);
        assert!(!l.admit(A, true));
    }
}
