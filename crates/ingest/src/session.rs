//! One message in, one answer out: run the intake decision, make the outcome durable (raw topic
//! or DLQ), and only then pick the acknowledgment. Shared by the MLLP and HTTP front ends so
//! both keep the same guarantee: AA/CA only after Kafka acknowledged the write; AE/CE when it
//! did not (the sender retries; normalize recognises the retry by sender and MSH-10); AR/CR
//! for input we will never take, after its original bytes are safe in the DLQ.

use crate::config::IngestConfig;
use crate::intake::{self, Decision, Rejected};
use crate::peer::Peer;
use crate::publish::{self, Publisher};
use bus::TraceParent;
use canonical::raw::Channel;
use hl7v2::ErrorCode;
use hl7v2::ack::{Ack, ErrDetail};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telemetry::{Metrics, Outcome};
use tracing::Instrument;

const STAGE: &str = "ingest";

/// What to answer the sender.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The encoded ACK, or `None` when the sender's MSH-15/16 asked for no answer.
    pub ack: Option<Vec<u8>>,
    pub outcome: Outcome,
}

/// The ingest stage's per-message logic, shared by every connection.
pub struct Session<P> {
    cfg: Arc<IngestConfig>,
    publisher: P,
    metrics: Metrics,
}

fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Mllp => "mllp",
        Channel::Http => "http",
        Channel::File => "file",
    }
}

fn store_unavailable() -> Vec<ErrDetail> {
    vec![ErrDetail::new(
        ErrorCode::ApplicationInternalError,
        "message store unavailable; the message was not accepted, please resend",
    )]
}

impl<P: Publisher> Session<P> {
    pub fn new(cfg: Arc<IngestConfig>, publisher: P, metrics: Metrics) -> Self {
        Self { cfg, publisher, metrics }
    }

    pub fn config(&self) -> &IngestConfig {
        &self.cfg
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn within_deadline<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, publish::PublishError>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(Duration::from_millis(self.cfg.ack_timeout_ms), f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no acknowledgement from Kafka within {} ms", self.cfg.ack_timeout_ms)),
        }
    }

    /// Handles one complete message.
    pub async fn handle(&self, bytes: &[u8], peer: Option<SocketAddr>, channel: Channel) -> Answer {
        self.handle_from(bytes, &Peer { addr: peer, client_cert: None }, channel).await
    }

    /// [`Session::handle`] for a peer that may have shown a verified client certificate.
    pub async fn handle_from(&self, bytes: &[u8], from: &Peer, channel: Channel) -> Answer {
        let peer = from.addr;
        let started = Instant::now();
        self.metrics.count(STAGE, Outcome::received);
        let received_at = intake::now_micros();
        let answer = match intake::decide_from(&self.cfg, bytes, from, channel, received_at) {
            Decision::Accept(a) => {
                // The trace of this message starts here; with an OTLP exporter configured it
                // is a recorded span that every later stage continues.
                let span = telemetry::propagation::record_span(STAGE, None);
                let trace = telemetry::propagation::traceparent(&span)
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(TraceParent::new_root);
                let publish = self.publisher.publish_raw(&a.key, &a.record, &trace);
                match self.within_deadline(publish.instrument(span)).await {
                    Ok(()) => {
                        tracing::debug!(message_id = %a.record.id, trace_id = %trace.trace_id_hex(), "accepted");
                        Answer { ack: a.ack.accept(), outcome: Outcome::acknowledged }
                    }
                    Err(e) => {
                        tracing::warn!(message_id = %a.record.id, error = %e, "raw write failed; answering AE/CE");
                        Answer { ack: a.ack.error(&store_unavailable()), outcome: Outcome::failed }
                    }
                }
            }
            Decision::Reject(r) => self.reject(r, bytes, peer, channel, received_at / 1000).await,
        };
        self.metrics.count(STAGE, answer.outcome);
        self.metrics.observe_latency(STAGE, started.elapsed());
        answer
    }

    /// Handles an MLLP frame that was over the size limit (only its head was kept).
    pub async fn handle_oversized(&self, head: &[u8], len: usize, peer: Option<SocketAddr>) -> Answer {
        self.metrics.count(STAGE, Outcome::received);
        let r = intake::oversized(&self.cfg, head, len);
        let answer = self.reject(r, head, peer, Channel::Mllp, intake::now_micros() / 1000).await;
        self.metrics.count(STAGE, answer.outcome);
        answer
    }

    async fn reject(
        &self,
        r: Rejected,
        original: &[u8],
        peer: Option<SocketAddr>,
        channel: Channel,
        received_ms: i64,
    ) -> Answer {
        let letter = publish::dead_letter(channel_name(channel), peer, original, r.class, &r.detail, received_ms);
        let trace = TraceParent::new_root();
        match self.within_deadline(self.publisher.publish_dead_letter(&r.key, &letter, &trace)).await {
            Ok(()) => {
                // Logs get the class, code and location only: a parser's detail may quote input
                // bytes (PHI). The full detail is in the dead letter and the NAK.
                let first = r.errors.first();
                tracing::info!(
                    dead_letter_id = %letter.id,
                    class = r.class,
                    code = first.map(|e| e.code.code()).unwrap_or(0),
                    location = %first.and_then(|e| e.location.as_ref()).map(|l| l.to_string()).unwrap_or_default(),
                    "rejected"
                );
                self.metrics.count(STAGE, Outcome::dead_lettered);
                Answer { ack: r.ack.reject(&r.errors), outcome: Outcome::rejected }
            }
            Err(e) => {
                // Not even the rejection is safe: ask for a resend rather than lose the bytes.
                tracing::warn!(class = r.class, error = %e, "dead-letter write failed; answering AE/CE");
                Answer { ack: r.ack.error(&store_unavailable()), outcome: Outcome::failed }
            }
        }
    }

    /// The answer when the service is shutting down and will not take the message.
    pub fn refuse_shutting_down(&self, bytes: &[u8]) -> Answer {
        let errs = [ErrDetail::new(ErrorCode::ApplicationInternalError, "receiver shutting down; please resend")];
        Answer { ack: Ack::for_bytes(bytes).error(&errs), outcome: Outcome::failed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::PublishError;
    use bus::dlq::DeadLetter;
    use canonical::raw::RawMessage;
    use std::sync::Mutex;

    /// In-memory stand-in for Kafka, for the decision logic only; the real broker is exercised
    /// by the integration tests.
    #[derive(Default)]
    struct Recorder {
        raw: Mutex<Vec<RawMessage>>,
        dead: Mutex<Vec<DeadLetter>>,
        fail: bool,
        hang: bool,
    }

    impl Publisher for Arc<Recorder> {
        async fn publish_raw(&self, _k: &[u8], r: &RawMessage, _t: &TraceParent) -> Result<(), PublishError> {
            if self.hang {
                std::future::pending::<()>().await;
            }
            if self.fail {
                return Err(PublishError::NotAcknowledged { topic: "raw".into(), detail: "down".into() });
            }
            self.raw.lock().unwrap().push(r.clone());
            Ok(())
        }
        async fn publish_dead_letter(&self, _k: &[u8], d: &DeadLetter, _t: &TraceParent) -> Result<(), PublishError> {
            if self.fail {
                return Err(PublishError::NotAcknowledged { topic: "dlq".into(), detail: "down".into() });
            }
            self.dead.lock().unwrap().push(d.clone());
            Ok(())
        }
    }

    const ADT: &[u8] =
        b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301||ADT^A01^ADT_A01|CTL-1|P|2.5.1\rPID|1||P-1^^^NORTH^MR\r";
    const ENHANCED: &[u8] =
        b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301||ADT^A01^ADT_A01|CTL-2|P|2.5.1|||AL|NE\rPID|1||P-1^^^NORTH^MR\r";

    fn session(rec: Arc<Recorder>, ack_timeout_ms: u64) -> Session<Arc<Recorder>> {
        Session::new(Arc::new(IngestConfig { ack_timeout_ms, ..Default::default() }), rec, Metrics::new())
    }

    fn text(a: &Answer) -> String {
        String::from_utf8(a.ack.clone().expect("an ACK")).unwrap()
    }

    #[tokio::test]
    async fn accepted_only_after_the_write() {
        let rec = Arc::new(Recorder::default());
        let s = session(rec.clone(), 1000);
        let a = s.handle(ADT, None, Channel::Mllp).await;
        assert!(text(&a).contains("MSA|AA|CTL-1"));
        assert_eq!(rec.raw.lock().unwrap().len(), 1);
        assert_eq!(rec.raw.lock().unwrap()[0].payload, ADT);
        assert_eq!(s.metrics().counted(STAGE, Outcome::acknowledged), 1);
    }

    #[tokio::test]
    async fn enhanced_mode_gets_a_commit_accept() {
        let rec = Arc::new(Recorder::default());
        let a = session(rec, 1000).handle(ENHANCED, None, Channel::Mllp).await;
        assert!(text(&a).contains("MSA|CA|CTL-2"), "{}", text(&a));
    }

    #[tokio::test]
    async fn kafka_down_means_ae_never_aa() {
        let rec = Arc::new(Recorder { fail: true, ..Default::default() });
        let s = session(rec.clone(), 1000);
        let a = s.handle(ADT, None, Channel::Mllp).await;
        let t = text(&a);
        assert!(t.contains("MSA|AE|CTL-1"), "{t}");
        assert!(!t.contains("MSA|AA"));
        assert_eq!(a.outcome, Outcome::failed);
        let e = session(rec, 1000).handle(ENHANCED, None, Channel::Mllp).await;
        assert!(text(&e).contains("MSA|CE|CTL-2"));
    }

    #[tokio::test]
    async fn a_write_that_never_completes_times_out_into_ae() {
        let rec = Arc::new(Recorder { hang: true, ..Default::default() });
        let a = session(rec, 50).handle(ADT, None, Channel::Mllp).await;
        assert!(text(&a).contains("MSA|AE|CTL-1"));
    }

    #[tokio::test]
    async fn malformed_goes_to_the_dlq_byte_for_byte_then_ar() {
        let rec = Arc::new(Recorder::default());
        let bad = b"MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301||ADT^A01|CTL-9|P|\rPID|1\r";
        let s = session(rec.clone(), 1000);
        let a = s.handle(bad, Some("127.0.0.1:5555".parse().unwrap()), Channel::Mllp).await;
        assert!(text(&a).contains("MSA|AR|CTL-9"));
        assert!(rec.raw.lock().unwrap().is_empty(), "nothing reaches the raw topic");
        let dead = rec.dead.lock().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].original_value.as_deref(), Some(&bad[..]));
        assert_eq!(dead[0].stage, "ingest");
        assert_eq!(dead[0].error_class, "parse");
        assert_eq!(dead[0].source_topic, "mllp");
        assert_eq!(s.metrics().counted(STAGE, Outcome::dead_lettered), 1);
    }

    #[tokio::test]
    async fn a_rejection_that_cannot_be_recorded_asks_for_a_resend() {
        let rec = Arc::new(Recorder { fail: true, ..Default::default() });
        let a = session(rec, 1000).handle(b"garbage", None, Channel::Mllp).await;
        assert!(text(&a).contains("\rMSA|AE"), "{}", text(&a));
    }

    /// Collects everything logged while it is the default subscriber.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn nothing_from_the_message_reaches_the_logs() {
        let logs = Captured::default();
        let w = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || w.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let marker = "ZZMARKERSURNAME";
        let good = format!(
            "MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301||ADT^A01^ADT_A01|CTL-L1|P|2.5.1\rPID|1||ID-{marker}^^^NORTH^MR||{marker}^ALEX\r"
        );
        // Broken where the parser quotes what it found: the name stands where MSH should be.
        let bad = format!("{marker}^ALEX|||\rPID|1\r");
        for (bytes, fail) in [(good.as_bytes(), false), (bad.as_bytes(), false), (good.as_bytes(), true)] {
            let rec = Arc::new(Recorder { fail, ..Default::default() });
            session(rec, 1000).handle(bytes, None, Channel::Mllp).await;
        }
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("rejected"), "the run did log: {text}");
        // The parser quotes up to 12 bytes of a line it cannot read; any 10 would be a leak.
        assert!(!text.contains(&marker[..10]), "message content leaked into the logs: {text}");
    }
}
