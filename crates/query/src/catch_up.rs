//! Whether a query replica has caught up with its topics. Its `/readyz` waits for it, so a new
//! replica (an empty volume, a store being rebuilt) takes no traffic until its store holds
//! what the topics held when it started, instead of answering searches from part of it.
//!
//! "Caught up" is judged once: the consumer's position (from its lag report) in every partition
//! that held records at start has reached that partition's end as it was then. Records written
//! since do not count, so a replica starting under load becomes ready as soon as it has read
//! the past, however fast new records arrive. Afterwards it stays ready whatever its lag: a
//! busy period must not take every replica out of service at once (`arteria_consumer_lag`
//! shows it instead). The position counts records handed to the materialiser, which stores at
//! most two batches behind them.

use std::time::{Duration, Instant};

use bus::context::{LagReport, PartitionLag};
use bus::{BusConfig, Shutdown};

/// How often the lag report is looked at; it refreshes with librdkafka's statistics (5 s).
const POLL: Duration = Duration::from_millis(500);

/// Whether a consumer whose lag report is `report` has caught up with `backlog` (the
/// partitions that held records at start, with their ends then): its position in each has
/// reached that end.
pub fn caught_up(backlog: &[(String, i32, i64)], report: &[PartitionLag]) -> bool {
    backlog.iter().all(|(t, p, end)| report.iter().any(|l| &l.topic == t && l.partition == *p && l.position >= *end))
}

/// Waits until the consumer behind `lag` has caught up with what `subscription` held when
/// this was called. Returns false if `shutdown` came first. Reading the topics' ends is
/// retried until it succeeds: readiness never comes from an error.
pub async fn wait(bus: &BusConfig, subscription: &[String], lag: LagReport, shutdown: &Shutdown) -> bool {
    let started = Instant::now();
    let backlog = loop {
        let (b, s) = (bus.clone(), subscription.to_vec());
        let read = tokio::task::spawn_blocking(move || {
            bus::snapshot::partitions_with_records(&b, &s, Duration::from_secs(30))
        })
        .await;
        match read.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
            Ok(backlog) => break backlog,
            Err(error) => tracing::warn!(%error, "cannot read the topics' ends for readiness; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait() => return false,
        }
    };
    tracing::info!(partitions = backlog.len(), "waiting to catch up with the topics before ready");
    loop {
        if caught_up(&backlog, &lag.snapshot()) {
            tracing::info!(
                partitions = backlog.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "caught up with the topics"
            );
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait() => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(topic: &str, partition: i32, position: i64) -> PartitionLag {
        PartitionLag { topic: topic.into(), partition, lag: 0, position }
    }

    fn backlog(parts: &[(&str, i32, i64)]) -> Vec<(String, i32, i64)> {
        parts.iter().map(|(t, p, end)| (t.to_string(), *p, *end)).collect()
    }

    #[test]
    fn nothing_to_read_is_caught_up_at_once() {
        assert!(caught_up(&[], &[]));
        assert!(caught_up(&[], &[at("fhir.patient.v1", 0, 0)]));
    }

    #[test]
    fn every_partition_that_held_records_must_reach_its_end_then() {
        let b = backlog(&[("fhir.patient.v1", 0, 40), ("fhir.observation.v1", 1, 7)]);
        assert!(!caught_up(&b, &[]), "no report yet");
        assert!(!caught_up(&b, &[at("fhir.patient.v1", 0, 40)]), "the Observations not reached");
        assert!(!caught_up(&b, &[at("fhir.patient.v1", 0, 40), at("fhir.observation.v1", 1, 6)]), "one short");
        assert!(!caught_up(&b, &[at("fhir.patient.v1", 0, 40), at("fhir.observation.v1", 0, 9)]), "another partition");
        assert!(!caught_up(&b, &[at("fhir.patient.v1", 0, 40), at("fhir.observation.v1", 1, -1)]), "position unknown");
        assert!(caught_up(&b, &[at("fhir.patient.v1", 0, 40), at("fhir.observation.v1", 1, 7)]));
        assert!(
            caught_up(
                &b,
                &[at("fhir.patient.v1", 0, 4000), at("fhir.observation.v1", 1, 9), at("fhir.encounter.v1", 0, 0)]
            ),
            "records written since, and partitions that held none, do not hold it up"
        );
    }
}
