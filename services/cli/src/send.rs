//! `arteria send --to HOST:PORT FILE...`: sends every message in the files over MLLP, waits for
//! each acknowledgment, and prints one line per message in input order: `<MSH-10> <MSA-1>`
//! (e.g. `HX-0001 AA`), or `<MSH-10> ERROR <reason>` when no ACK came back. Exit code 0 when
//! every message was accepted (AA or CA), 1 otherwise.
//!
//! `--concurrency N` opens N connections, each sending one message at a time (MLLP's
//! request/response rhythm); `--rate R` caps the total at R messages per second.

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use hl7v2::mllp::{MllpCodec, MllpItem};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio_util::codec::Framed;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Receiver address, e.g. 127.0.0.1:2575.
    #[arg(long)]
    to: String,
    /// Files of HL7 v2 messages (single, multi-message, batch or MLLP dump).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Connections used in parallel.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Most messages per second in total (0 = as fast as the receiver answers).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// How long to wait for each ACK, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// What came back for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// MSA-1 of the ACK.
    Ack(String),
    /// No usable ACK: connection or timeout problem, or an answer that is not an ACK.
    Error(String),
}

impl Reply {
    pub fn accepted(&self) -> bool {
        matches!(self, Reply::Ack(c) if c == "AA" || c == "CA")
    }
}

fn msa1(ack: &[u8]) -> Option<String> {
    let msg = hl7v2::Message::parse(ack).ok()?;
    msg.get("MSA-1").map(|v| v.as_str().to_string()).filter(|s| !s.is_empty())
}

/// One MLLP connection that sends a message and waits for its answer.
struct Connection {
    addr: String,
    framed: Option<Framed<TcpStream, MllpCodec>>,
    timeout: Duration,
}

impl Connection {
    async fn exchange(&mut self, msg: &[u8]) -> Reply {
        if self.framed.is_none() {
            match TcpStream::connect(&self.addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    self.framed = Some(Framed::new(s, MllpCodec::new(64 << 20)));
                }
                Err(e) => return Reply::Error(format!("cannot connect to {}: {e}", self.addr)),
            }
        }
        let framed = self.framed.as_mut().expect("connected above");
        if let Err(e) = framed.send(msg).await {
            self.framed = None;
            return Reply::Error(format!("send failed: {e}"));
        }
        let reply = loop {
            match tokio::time::timeout(self.timeout, framed.next()).await {
                Err(_) => break Reply::Error(format!("no ACK within {} s", self.timeout.as_secs())),
                Ok(None) => break Reply::Error("connection closed before the ACK".into()),
                Ok(Some(Err(e))) => break Reply::Error(format!("receive failed: {e}")),
                Ok(Some(Ok(MllpItem::Frame(ack)))) => {
                    break match msa1(&ack) {
                        Some(code) => Reply::Ack(code),
                        None => Reply::Error("answer is not an ACK with MSA-1".into()),
                    };
                }
                // Noise between frames is skipped; an oversized answer is not an ACK.
                Ok(Some(Ok(MllpItem::Garbage { .. }))) => continue,
                Ok(Some(Ok(MllpItem::Oversized { .. }))) => break Reply::Error("oversized answer".into()),
            }
        };
        if matches!(reply, Reply::Error(_)) {
            // The stream is in an unknown state: start afresh for the next message.
            self.framed = None;
        }
        reply
    }
}

/// Sends `messages` to `addr` over `concurrency` connections at most `rate` per second and
/// returns the replies in input order.
pub async fn send_all(
    addr: &str,
    messages: Vec<Vec<u8>>,
    concurrency: usize,
    rate: f64,
    timeout: Duration,
) -> Vec<Reply> {
    let n = messages.len();
    let queue = Arc::new(Mutex::new(messages.into_iter().enumerate()));
    let pace = (rate > 0.0).then(|| {
        let mut iv = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Arc::new(Mutex::new(iv))
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Reply)>();
    for _ in 0..concurrency.max(1).min(n.max(1)) {
        let (queue, pace, tx) = (queue.clone(), pace.clone(), tx.clone());
        let mut conn = Connection { addr: addr.to_string(), framed: None, timeout };
        tokio::spawn(async move {
            loop {
                let next = queue.lock().await.next();
                let Some((i, msg)) = next else { break };
                if let Some(p) = &pace {
                    p.lock().await.tick().await;
                }
                let reply = conn.exchange(&msg).await;
                if tx.send((i, reply)).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut out = vec![None; n];
    while let Some((i, r)) = rx.recv().await {
        out[i] = Some(r);
    }
    out.into_iter().map(|r| r.unwrap_or_else(|| Reply::Error("not sent".into()))).collect()
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let mut messages = Vec::new();
    let mut ids = Vec::new();
    for path in &args.files {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let split =
            hl7v2::batch::split(&bytes).with_context(|| format!("{}: cannot split into messages", path.display()))?;
        for chunk in split.messages() {
            ids.push(hl7v2::header::Header::sniff(chunk.bytes).map(|h| h.control_id).unwrap_or_default());
            messages.push(chunk.bytes.to_vec());
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let replies =
        rt.block_on(send_all(&args.to, messages, args.concurrency, args.rate, Duration::from_secs(args.timeout)));
    let mut out = std::io::stdout().lock();
    let mut all_ok = true;
    for (id, reply) in ids.iter().zip(&replies) {
        let id = if id.is_empty() { "-" } else { id.as_str() };
        match reply {
            Reply::Ack(code) => writeln!(out, "{id} {code}")?,
            Reply::Error(e) => writeln!(out, "{id} ERROR {e}")?,
        }
        all_ok &= reply.accepted();
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny MLLP receiver for the client's own tests: answers AA, or AR for control ids
    /// starting with `BAD`, or closes the connection for `DROP`.
    async fn receiver() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut f = Framed::new(s, MllpCodec::new(1 << 20));
                    while let Some(Ok(MllpItem::Frame(m))) = f.next().await {
                        let h = hl7v2::header::Header::sniff(&m).unwrap();
                        if h.control_id.starts_with("DROP") {
                            return;
                        }
                        let code = if h.control_id.starts_with("BAD") { "AR" } else { "AA" };
                        let ack =
                            format!("MSH|^~\\&|R|R|S|S|20240101||ACK|A{0}|P|2.5.1\rMSA|{code}|{0}\r", h.control_id);
                        f.send(ack.into_bytes()).await.unwrap();
                    }
                });
            }
        });
        addr
    }

    fn msg(id: &str) -> Vec<u8> {
        format!("MSH|^~\\&|S|S|R|R|20240101||ADT^A01|{id}|P|2.5.1\rPID|1\r").into_bytes()
    }

    #[tokio::test]
    async fn replies_come_back_in_input_order_over_several_connections() {
        let addr = receiver().await;
        let msgs: Vec<Vec<u8>> = (0..50).map(|i| msg(&format!("M{i}"))).chain([msg("BAD1")]).collect();
        let replies = send_all(&addr, msgs, 4, 0.0, Duration::from_secs(5)).await;
        assert_eq!(replies.len(), 51);
        assert!(replies[..50].iter().all(|r| *r == Reply::Ack("AA".into())));
        assert_eq!(replies[50], Reply::Ack("AR".into()));
        assert!(!replies[50].accepted());
    }

    #[tokio::test]
    async fn a_dropped_connection_is_an_error_and_the_next_message_reconnects() {
        let addr = receiver().await;
        let replies = send_all(&addr, vec![msg("DROP1"), msg("OK2")], 1, 0.0, Duration::from_secs(5)).await;
        assert!(matches!(&replies[0], Reply::Error(e) if e.contains("closed")), "{replies:?}");
        assert_eq!(replies[1], Reply::Ack("AA".into()));
    }

    #[tokio::test]
    async fn nobody_listening_is_a_clear_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let replies = send_all(&addr, vec![msg("X1")], 1, 0.0, Duration::from_secs(2)).await;
        assert!(matches!(&replies[0], Reply::Error(e) if e.contains("cannot connect")), "{replies:?}");
    }
}
