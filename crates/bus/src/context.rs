//! librdkafka callbacks surfaced through `tracing`.
//!
//! librdkafka reports broker disconnects, leaving the group after a stalled poll, fatal
//! idempotence errors and rebalances only through its log and error callbacks; without this
//! they vanish. Only librdkafka's own text is logged: it names brokers, topics and partitions,
//! never message payloads, so no PHI reaches the logs. Consumer lag comes the same way, from
//! librdkafka's statistics callback, so reading it costs no extra broker round trip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;

/// Context for producers and admin clients.
#[derive(Clone, Debug)]
pub struct BusContext {
    /// Which client this is, e.g. `normalize/producer`; appears in every log line.
    pub name: Arc<str>,
}

impl BusContext {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into() }
    }
}

fn log_rdkafka(name: &str, level: RDKafkaLogLevel, fac: &str, msg: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", client = name, facility = fac, "{msg}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", client = name, facility = fac, "{msg}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", client = name, facility = fac, "{msg}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", client = name, facility = fac, "{msg}")
        }
    }
}

fn error_rdkafka(name: &str, error: &KafkaError, reason: &str) {
    // Transport failures are routine while a broker restarts; librdkafka retries them itself.
    let routine = matches!(
        error.rdkafka_error_code(),
        Some(
            rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure | rdkafka::types::RDKafkaErrorCode::AllBrokersDown
        )
    );
    if routine {
        tracing::warn!(target: "librdkafka", client = name, error = %error, "{reason}");
    } else {
        tracing::error!(target: "librdkafka", client = name, error = %error, "{reason}");
    }
}

impl ClientContext for BusContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_rdkafka(&self.name, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        error_rdkafka(&self.name, &error, reason);
    }
}

/// Records behind the end of one assigned input partition (read_committed: the end is the
/// last stable offset), as librdkafka last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
    /// The next offset the reader will be handed (librdkafka's `app_offset`, which passes
    /// commit markers and aborted records too), or before the first record its committed
    /// offset; -1 when neither is known. Never the prefetch position: a record fetched but not
    /// yet handed over has not been read.
    pub position: i64,
}

/// The latest lag report of a consumer; shared so a metrics task can read it while the
/// consumer runs. Empty until the first statistics interval has passed.
#[derive(Clone, Debug, Default)]
pub struct LagReport(Arc<Mutex<Vec<PartitionLag>>>);

impl LagReport {
    /// The partitions of the last report (only those with a known position).
    pub fn snapshot(&self) -> Vec<PartitionLag> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn update(&self, stats: &Statistics) {
        let mut now: Vec<PartitionLag> = stats
            .topics
            .iter()
            .flat_map(|(topic, t)| {
                // Partition -1 is librdkafka's internal "unassigned" queue.
                t.partitions.iter().filter(|(p, _)| **p >= 0).filter_map(|(p, part)| {
                    partition_lag(part).map(|lag| PartitionLag {
                        topic: topic.clone(),
                        partition: *p,
                        lag,
                        position: [part.app_offset, part.committed_offset].into_iter().find(|o| *o >= 0).unwrap_or(-1),
                    })
                })
            })
            .collect();
        now.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        if let Ok(mut v) = self.0.lock() {
            *v = now;
        }
    }
}

/// Records between the consumer's position and the end of the partition, or `None` when this
/// member does not consume it or knows neither yet.
///
/// librdkafka's own `consumer_lag` counts from the *committed* offset, which a transactional
/// stage never learns (its offsets are committed through the producer), so it would stay
/// unknown. The position (`app_offset`: last record handed to the stage + 1) is what the stage
/// has reached; before the first record, the committed offset or the fetch position stand in.
/// The end is the last stable offset (read_committed), else the high watermark.
fn partition_lag(p: &rdkafka::statistics::Partition) -> Option<i64> {
    if !p.desired {
        return None;
    }
    let end = [p.ls_offset, p.hi_offset].into_iter().find(|o| *o >= 0)?;
    let at = [p.app_offset, p.committed_offset, p.next_offset].into_iter().find(|o| *o >= 0)?;
    Some((end - at).max(0))
}

/// Context for consumers: logs rebalances and counts them so the transactional loop can tell
/// that its partitions changed under an open transaction, and keeps the last lag report.
#[derive(Clone, Debug)]
pub struct BusConsumerContext {
    pub name: Arc<str>,
    rebalances: Arc<AtomicU64>,
    lag: LagReport,
}

impl BusConsumerContext {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), rebalances: Arc::new(AtomicU64::new(0)), lag: LagReport::default() }
    }

    /// Number of revocations seen so far.
    pub fn rebalance_generation(&self) -> u64 {
        self.rebalances.load(Ordering::SeqCst)
    }

    /// The consumer's lag, refreshed every `statistics.interval.ms`.
    pub fn lag(&self) -> LagReport {
        self.lag.clone()
    }
}

impl ClientContext for BusConsumerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_rdkafka(&self.name, level, fac, log_message);
    }

    fn stats(&self, statistics: Statistics) {
        self.lag.update(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        error_rdkafka(&self.name, &error, reason);
    }
}

impl ConsumerContext for BusConsumerContext {
    // Kept short on purpose: it runs inside the consumer's poll.
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                self.rebalances.fetch_add(1, Ordering::SeqCst);
                tracing::info!(client = &*self.name, partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(client = &*self.name, partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Error(e) => {
                tracing::error!(client = &*self.name, error = %e, "rebalance error");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statistics document of the shape librdkafka emits, trimmed to the keys rdkafka's
    /// `Statistics` requires, with partitions `(id, desired, ls_offset, app_offset)` of one topic.
    fn stats_json(partitions: &[(i32, bool, i64, i64)]) -> String {
        let window = r#"{"min":0,"max":0,"avg":0,"sum":0,"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0,"hdrsize":0,"cnt":0}"#;
        let parts: Vec<String> = partitions
            .iter()
            .map(|(p, desired, ls, app)| {
                format!(
                    r#""{p}":{{"partition":{p},"broker":1,"leader":1,"desired":{desired},"unknown":false,"msgq_cnt":0,"msgq_bytes":0,"xmit_msgq_cnt":0,"xmit_msgq_bytes":0,"fetchq_cnt":0,"fetchq_size":0,"fetch_state":"active","query_offset":-1001,"next_offset":-1001,"app_offset":{app},"stored_offset":-1001,"committed_offset":-1001,"eof_offset":-1001,"lo_offset":0,"hi_offset":{ls},"ls_offset":{ls},"consumer_lag":-1,"consumer_lag_stored":-1,"txmsgs":0,"txbytes":0,"rxmsgs":0,"rxbytes":0,"msgs":0,"rx_ver_drops":0,"msgs_inflight":0,"next_ack_seq":0,"next_err_seq":0,"acked_msgid":0}}"#
                )
            })
            .collect();
        format!(
            r#"{{"name":"c","client_id":"c","type":"consumer","ts":0,"time":0,"age":0,"replyq":0,"msg_cnt":0,"msg_size":0,"msg_max":0,"msg_size_max":0,"simple_cnt":0,"metadata_cache_cnt":0,"brokers":{{}},"tx":0,"tx_bytes":0,"rx":0,"rx_bytes":0,"txmsgs":0,"txmsg_bytes":0,"rxmsgs":0,"rxmsg_bytes":0,"topics":{{"t.in":{{"topic":"t.in","age":0,"metadata_age":0,"batchsize":{window},"batchcnt":{window},"partitions":{{{}}}}}}}}}"#,
            parts.join(",")
        )
    }

    #[test]
    fn lag_report_keeps_only_known_assigned_partitions() {
        // Partition 0: 12 behind; 1: not this member's; 2: position not known yet; -1: internal.
        let parts = [(0, true, 20, 8), (1, false, 50, 1), (2, true, 7, -1001), (-1, true, 99, 0)];
        let stats: Statistics = match serde_json::from_str(&stats_json(&parts)) {
            Ok(s) => s,
            Err(e) => panic!("statistics fixture does not match rdkafka's shape: {e}"),
        };
        let ctx = BusConsumerContext::new("t");
        assert!(ctx.lag().snapshot().is_empty());
        ctx.stats(stats);
        assert_eq!(
            ctx.lag().snapshot(),
            vec![PartitionLag { topic: "t.in".into(), partition: 0, lag: 12, position: 8 }]
        );
        // A later report replaces the earlier one (a revoked partition disappears).
        ctx.stats(serde_json::from_str(&stats_json(&[(1, true, 3, 0)])).expect("fixture"));
        assert_eq!(
            ctx.lag().snapshot(),
            vec![PartitionLag { topic: "t.in".into(), partition: 1, lag: 3, position: 0 }]
        );
    }
}
