//! `arteria send --to HOST:PORT FILE...`: sends every message in the files over MLLP, waits for
//! each acknowledgment, and prints one line per message in input order: `<MSH-10> <MSA-1>`
//! (e.g. `HX-0001 AA`), or `<MSH-10> ERROR <reason>` when no ACK came back. A message whose
//! MSH-15 asks for no ACK (NE), or for one only on error (ER, listened for 2 s), prints
//! `<MSH-10> - (<why>)` instead of waiting out the timeout. Exit code 0 when every message was
//! accepted (AA or CA, or no ACK requested and none came), 1 otherwise.
//!
//! `--concurrency N` opens N connections, each sending one message at a time (MLLP's
//! request/response rhythm); `--rate R` caps the total at R messages per second.
//!
//! `--tls` speaks MLLP over TLS (see [`crate::tls`]): `--ca` for a private CA, `--cert`/`--key`
//! for endpoints that require a client certificate, `--server-name` when the certificate is
//! not issued for the host in `--to`.

use crate::tls::{self, TlsClient};
use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use hl7v2::mllp::{MllpCodec, MllpItem};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
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
    #[command(flatten)]
    tls: tls::TlsArgs,
}

/// What came back for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// MSA-1 of the ACK.
    Ack(String),
    /// No usable ACK: connection or timeout problem, or an answer that is not an ACK.
    Error(String),
    /// No ACK, and none was asked for: MSH-15 (enhanced mode) is NE, or ER with no error.
    NotRequested(String),
}

impl Reply {
    pub fn accepted(&self) -> bool {
        matches!(self, Reply::Ack(c) if c == "AA" || c == "CA") || matches!(self, Reply::NotRequested(_))
    }
}

/// How long to listen for an ACK that MSH-15 = ER only sends on error.
const ER_GRACE: Duration = Duration::from_secs(2);

/// MSH-15 (accept acknowledgement type) of `msg`, when its header can be read and it is set.
fn accept_ack_type(msg: &[u8]) -> Option<String> {
    let h = hl7v2::header::Header::sniff(msg)?;
    Some(h.accept_ack_type.trim().to_ascii_uppercase()).filter(|s| !s.is_empty())
}

fn msa1(ack: &[u8]) -> Option<String> {
    let msg = hl7v2::Message::parse(ack).ok()?;
    msg.get("MSA-1").map(|v| v.as_str().to_string()).filter(|s| !s.is_empty())
}

/// A plain or TLS byte stream to the receiver.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// One MLLP connection that sends a message and waits for its answer.
struct Connection {
    addr: String,
    tls: Option<Arc<TlsClient>>,
    framed: Option<Framed<Box<dyn Io>, MllpCodec>>,
    timeout: Duration,
}

/// Opens a connection to `addr`, with the TLS handshake when `tls` is given.
async fn connect(addr: &str, tls: Option<&TlsClient>, timeout: Duration) -> Result<Box<dyn Io>, String> {
    let s = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    match tls {
        None => Ok(Box::new(s)),
        Some(tls) => match tokio::time::timeout(timeout, tls.connect(s)).await {
            Ok(Ok(s)) => Ok(Box::new(s)),
            Ok(Err(e)) => Err(format!("TLS handshake with {addr} failed: {e}")),
            Err(_) => Err(format!("no TLS handshake with {addr} within {} s", timeout.as_secs())),
        },
    }
}

impl Connection {
    async fn exchange(&mut self, msg: &[u8]) -> Reply {
        if self.framed.is_none() {
            match connect(&self.addr, self.tls.as_deref(), self.timeout).await {
                Ok(s) => self.framed = Some(Framed::new(s, MllpCodec::new(64 << 20))),
                Err(e) => return Reply::Error(e),
            }
        }
        let framed = self.framed.as_mut().expect("connected above");
        if let Err(e) = framed.send(msg).await {
            self.framed = None;
            return Reply::Error(format!("send failed: {e}"));
        }
        // Enhanced mode: NE asks for no ACK at all, ER for one only on error.
        let (wait, silence) = match accept_ack_type(msg).as_deref() {
            Some("NE") => return Reply::NotRequested("MSH-15 NE: no ACK requested".into()),
            Some("ER") => (ER_GRACE, Some("MSH-15 ER: no error ACK")),
            _ => (self.timeout, None),
        };
        let reply = loop {
            match tokio::time::timeout(wait, framed.next()).await {
                Err(_) if silence.is_some() => break Reply::NotRequested(silence.unwrap_or_default().into()),
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

/// Sends `messages` to `addr` (over TLS when `tls` is given) over `concurrency` connections at
/// most `rate` per second and returns the replies in input order.
pub async fn send_all(
    addr: &str,
    tls: Option<Arc<TlsClient>>,
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
        let mut conn = Connection { addr: addr.to_string(), tls: tls.clone(), framed: None, timeout };
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
    // Certificates first: a wrong path should not wait for the messages to be read.
    let tls = args.tls.client(&args.to)?.map(Arc::new);
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
    let timeout = Duration::from_secs(args.timeout);
    let replies = rt.block_on(send_all(&args.to, tls, messages, args.concurrency, args.rate, timeout));
    let mut out = std::io::stdout().lock();
    let mut all_ok = true;
    for (id, reply) in ids.iter().zip(&replies) {
        let id = if id.is_empty() { "-" } else { id.as_str() };
        match reply {
            Reply::Ack(code) => writeln!(out, "{id} {code}")?,
            Reply::Error(e) => writeln!(out, "{id} ERROR {e}")?,
            Reply::NotRequested(why) => writeln!(out, "{id} - ({why})")?,
        }
        all_ok &= reply.accepted();
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
        let replies = send_all(&addr, None, msgs, 4, 0.0, Duration::from_secs(5)).await;
        assert_eq!(replies.len(), 51);
        assert!(replies[..50].iter().all(|r| *r == Reply::Ack("AA".into())));
        assert_eq!(replies[50], Reply::Ack("AR".into()));
        assert!(!replies[50].accepted());
    }

    #[tokio::test]
    async fn a_dropped_connection_is_an_error_and_the_next_message_reconnects() {
        let addr = receiver().await;
        let replies = send_all(&addr, None, vec![msg("DROP1"), msg("OK2")], 1, 0.0, Duration::from_secs(5)).await;
        assert!(matches!(&replies[0], Reply::Error(e) if e.contains("closed")), "{replies:?}");
        assert_eq!(replies[1], Reply::Ack("AA".into()));
    }

    /// A throwaway CA that issues certificates for the TLS tests.
    struct Ca {
        params: rcgen::CertificateParams,
        key: rcgen::KeyPair,
        pem: String,
    }

    impl Ca {
        fn new() -> Self {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
            let key = rcgen::KeyPair::generate().unwrap();
            let pem = params.self_signed(&key).unwrap().pem();
            Self { params, key, pem }
        }

        /// (certificate PEM, key PEM) for `names`, for a server or a client.
        fn issue(&self, names: &[&str], client: bool) -> (String, String) {
            let mut params =
                rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
            params.extended_key_usages = vec![if client {
                rcgen::ExtendedKeyUsagePurpose::ClientAuth
            } else {
                rcgen::ExtendedKeyUsagePurpose::ServerAuth
            }];
            let key = rcgen::KeyPair::generate().unwrap();
            let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
            (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
        }
    }

    /// A TLS MLLP receiver answering AA, with a server certificate from `ca` for 127.0.0.1;
    /// with `clients` set it requires client certificates from that CA.
    async fn tls_receiver(ca: &Ca, clients: Option<&Ca>) -> String {
        let (cert, key) = ca.issue(&["127.0.0.1", "mllp.test"], false);
        let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match clients {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(CertificateDer::from_pem_slice(c.pem.as_bytes()).unwrap()).unwrap();
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(v)
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(builder.with_single_cert(chain, key).unwrap()));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(s) = acceptor.accept(s).await else { return };
                    let mut f = Framed::new(s, MllpCodec::new(1 << 20));
                    while let Some(Ok(MllpItem::Frame(m))) = f.next().await {
                        let id = hl7v2::header::Header::sniff(&m).unwrap().control_id;
                        let ack = format!("MSH|^~\\&|R|R|S|S|20240101||ACK|A{id}|P|2.5.1\rMSA|AA|{id}\r");
                        f.send(ack.into_bytes()).await.unwrap();
                    }
                });
            }
        });
        addr
    }

    fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[tokio::test]
    async fn over_tls_the_receiver_is_verified_against_the_given_ca() {
        let (ca, stranger) = (Ca::new(), Ca::new());
        let addr = tls_receiver(&ca, None).await;
        let dir = tempfile::tempdir().unwrap();
        let trusted = tls::TlsArgs { tls: true, ca: Some(write(&dir, "ca.pem", &ca.pem)), ..Default::default() };
        let client = trusted.client(&addr).unwrap().map(Arc::new);
        let replies = send_all(&addr, client, vec![msg("T1"), msg("T2")], 1, 0.0, Duration::from_secs(5)).await;
        assert_eq!(replies, vec![Reply::Ack("AA".into()), Reply::Ack("AA".into())]);

        // The certificate names 127.0.0.1 and mllp.test; another expected name fails.
        let renamed = tls::TlsArgs { server_name: Some("other.test".into()), ..trusted.clone() };
        let replies = send_all(
            &addr,
            renamed.client(&addr).unwrap().map(Arc::new),
            vec![msg("T3")],
            1,
            0.0,
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(&replies[0], Reply::Error(e) if e.contains("TLS handshake")), "{replies:?}");
        let named = tls::TlsArgs { server_name: Some("mllp.test".into()), ..trusted };
        let replies = send_all(
            &addr,
            named.client(&addr).unwrap().map(Arc::new),
            vec![msg("T4")],
            1,
            0.0,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(replies[0], Reply::Ack("AA".into()));

        let untrusted =
            tls::TlsArgs { tls: true, ca: Some(write(&dir, "other.pem", &stranger.pem)), ..Default::default() };
        let replies = send_all(
            &addr,
            untrusted.client(&addr).unwrap().map(Arc::new),
            vec![msg("T5")],
            1,
            0.0,
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(&replies[0], Reply::Error(e) if e.contains("TLS handshake")), "{replies:?}");
    }

    #[tokio::test]
    async fn a_receiver_that_requires_client_certificates_gets_ours() {
        let (ca, clients) = (Ca::new(), Ca::new());
        let addr = tls_receiver(&ca, Some(&clients)).await;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = clients.issue(&["lab.north.test"], true);
        let base = tls::TlsArgs { tls: true, ca: Some(write(&dir, "ca.pem", &ca.pem)), ..Default::default() };
        let without = base.client(&addr).unwrap().map(Arc::new);
        let replies = send_all(&addr, without, vec![msg("C1")], 1, 0.0, Duration::from_secs(5)).await;
        assert!(matches!(&replies[0], Reply::Error(_)), "refused without a client certificate: {replies:?}");
        let with = tls::TlsArgs {
            cert: Some(write(&dir, "client.pem", &cert)),
            key: Some(write(&dir, "client-key.pem", &key)),
            ..base
        };
        let replies =
            send_all(&addr, with.client(&addr).unwrap().map(Arc::new), vec![msg("C2")], 1, 0.0, Duration::from_secs(5))
                .await;
        assert_eq!(replies[0], Reply::Ack("AA".into()));
    }

    /// `send` as the command line sees it.
    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn the_tls_options_parse_and_depend_on_each_other() {
        use clap::{CommandFactory, Parser};
        Cmd::command().debug_assert();
        let c = Cmd::try_parse_from([
            "send",
            "--to",
            "h:1",
            "--tls",
            "--ca",
            "ca.pem",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--server-name",
            "mllp.test",
            "m.hl7",
        ])
        .unwrap();
        assert!(c.args.tls.tls);
        assert_eq!(c.args.tls.server_name.as_deref(), Some("mllp.test"));
        assert!(Cmd::try_parse_from(["send", "--to", "h:1", "m.hl7"]).is_ok_and(|c| !c.args.tls.tls));
        for bad in [
            &["send", "--to", "h:1", "--ca", "ca.pem", "m.hl7"][..],
            &["send", "--to", "h:1", "--tls", "--cert", "c.pem", "m.hl7"],
            &["send", "--to", "h:1", "--tls", "--key", "k.pem", "m.hl7"],
        ] {
            assert!(Cmd::try_parse_from(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[tokio::test]
    async fn no_ack_is_awaited_when_msh15_asks_for_none() {
        // A receiver that never answers: NE returns at once; ER after its short grace.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut f = Framed::new(s, MllpCodec::new(1 << 20));
                    while f.next().await.is_some() {}
                });
            }
        });
        let with = |id: &str, msh15: &str| {
            format!("MSH|^~\\&|A|B|C|D|20250101||ADT^A01|{id}|P|2.5.1|||{msh15}|AL\rPID|1||1^^^X^MR\r").into_bytes()
        };
        let replies = send_all(
            &addr,
            None,
            vec![with("N1", "NE"), with("E1", "ER"), with("A1", "AL")],
            1,
            0.0,
            Duration::from_secs(3),
        )
        .await;
        assert!(matches!(&replies[0], Reply::NotRequested(w) if w.contains("NE")), "{replies:?}");
        assert!(matches!(&replies[1], Reply::NotRequested(w) if w.contains("ER")), "{replies:?}");
        assert!(matches!(&replies[2], Reply::Error(e) if e.contains("no ACK")), "AL still waits: {replies:?}");
        assert!(replies[0].accepted() && replies[1].accepted() && !replies[2].accepted());
    }

    #[tokio::test]
    async fn nobody_listening_is_a_clear_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let replies = send_all(&addr, None, vec![msg("X1")], 1, 0.0, Duration::from_secs(2)).await;
        assert!(matches!(&replies[0], Reply::Error(e) if e.contains("cannot connect")), "{replies:?}");
    }
}
