//! Ingest over TLS against the real broker and registry, with a throwaway CA and certificates
//! made at test time: a message sent over TLS is answered AA and is on `hl7v2.raw.v1`; a
//! plaintext client on the TLS port gets no ACK, is counted, and the listener keeps serving;
//! with `client_ca` set a client without a certificate (or with one from another CA) is refused
//! and one with a valid certificate gets AA; allow-list rules can name the client certificate;
//! the HTTP endpoint is HTTPS-only likewise; the real `ingest` binary does all this from its
//! configuration and refuses to start on a bad certificate file, naming it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arteria_tests::mllp::TlsSender;
use arteria_tests::services::{Service, bin_dir, free_port};
use arteria_tests::{create_topic, read_committed, require_stack, unique};
use bus::{BusConfig, BusProducer, Registry, Shutdown};
use canonical::raw::RawMessage;
use ingest::allow::AllowRule;
use ingest::config::TlsConfig;
use ingest::tls::{HandshakeFailure, Listener};
use ingest::{IngestConfig, KafkaPublisher, Session, TlsServer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use telemetry::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn adt(id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|REG|NORTH|ARTERIA|HUB|20240301101500+0100||ADT^A01^ADT_A01|{id}|P|2.5.1\rEVN|A01|20240301101500\rPID|1||TLS-P-1^^^NORTH^MR||TESTER^ALEX||19800101|U\r"
    )
    .into_bytes()
}

/// A throwaway certificate authority, and the files it issued, in a temporary directory.
struct Pki {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        params.distinguished_name.push(rcgen::DnType::CommonName, "Arteria test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self { params, key, pem, dir: tempfile::tempdir().unwrap() }
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// The CA certificate as a file.
    fn ca_file(&self) -> PathBuf {
        self.write("ca.pem", &self.pem)
    }

    /// A certificate for `names` (server or client use) and its key, PEM.
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

    /// `[ingest.tls]` with a server certificate for 127.0.0.1 written to files.
    fn server_tls(&self, client_ca: Option<PathBuf>) -> TlsConfig {
        let (cert, key) = self.issue(&["127.0.0.1", "localhost"], false);
        TlsConfig {
            cert: Some(self.write("server.pem", &cert)),
            key: Some(self.write("server-key.pem", &key)),
            client_ca,
            ..Default::default()
        }
    }

    /// A client configuration trusting this CA, with an optional client certificate.
    fn client(&self, cert: Option<(String, String)>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(match cert {
            None => b.with_no_client_auth(),
            Some((cert, key)) => b
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
        })
    }
}

struct Running {
    mllp: SocketAddr,
    http: SocketAddr,
    tls: Arc<TlsServer>,
    shutdown: Shutdown,
    raw: String,
    dlq: String,
    producer: BusProducer,
}

/// Ingest's MLLP listener and HTTP endpoint, both TLS-only, as the service wires them.
async fn start(cfg: &BusConfig, ingest: IngestConfig) -> Running {
    let metrics = Metrics::new();
    let tls = TlsServer::load(&ingest, &metrics).expect("[ingest.tls] loads").expect("TLS is on");
    let registry = Registry::new(&cfg.registry).unwrap();
    let producer = BusProducer::new(cfg, "it-ingest-tls").unwrap();
    let publisher = KafkaPublisher::new(producer.clone(), &registry, &ingest.raw_topic, &ingest.dlq_topic);
    publisher.register_schemas().await.unwrap();
    let (raw, dlq) = (ingest.raw_topic.clone(), ingest.dlq_topic.clone());
    let session = Arc::new(Session::new(Arc::new(ingest), publisher, metrics));
    let shutdown = Shutdown::new();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mllp = l.local_addr().unwrap();
    tokio::spawn(ingest::mllp_server::serve_with(
        l,
        Some(tls.clone()),
        session.clone(),
        shutdown.clone(),
        Duration::from_secs(5),
    ));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = l.local_addr().unwrap();
    let stop = shutdown.clone();
    tokio::spawn(ingest::http::serve_with(l, Some(tls.clone()), session, async move { stop.wait().await }));
    Running { mllp, http, tls, shutdown, raw, dlq, producer }
}

async fn topics(cfg: &BusConfig, name: &str, tls: TlsConfig) -> IngestConfig {
    let ingest = IngestConfig {
        raw_topic: unique(&format!("{name}.raw")),
        dlq_topic: unique(&format!("{name}.dlq")),
        tls,
        ..Default::default()
    };
    create_topic(cfg, &ingest.raw_topic, 3).await;
    create_topic(cfg, &ingest.dlq_topic, 3).await;
    ingest
}

/// Writes `bytes` in plaintext and reads whatever comes back until the server closes.
async fn plaintext_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await {
            Err(_) => panic!("the server neither answered nor closed a plaintext connection in 30 s"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A TLS connection, or why the handshake failed.
async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let s = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(config).connect(name, s).await
}

/// `POST /hl7v2` over HTTPS with a hand-written HTTP/1.1 request; the whole response as text.
async fn https_post(addr: SocketAddr, config: Arc<rustls::ClientConfig>, body: &[u8]) -> String {
    let mut s = tls_connect(addr, config).await.expect("HTTPS handshake");
    let head = format!(
        "POST /hl7v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/hl7-v2\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    // Until the server closes (with or without close_notify).
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Waits (bounded) for a handshake failure to be counted: the connection is dropped just
/// before the counter moves.
async fn counted(tls: &TlsServer, listener: Listener, reason: HandshakeFailure, n: u64) {
    for _ in 0..100 {
        if tls.failures(listener, reason) >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tls.failures(listener, reason), n, "{listener:?} handshake failures for {reason:?}");
}

async fn decoded_raw(cfg: &BusConfig, topic: &str, expected: usize) -> Vec<RawMessage> {
    let serde = Registry::new(&cfg.registry).unwrap().value_serde::<RawMessage>(topic);
    let mut out = Vec::new();
    for r in read_committed(cfg, topic, expected, Duration::from_secs(15)).await {
        out.push(serde.decode(r.value.as_deref().unwrap()).await.unwrap());
    }
    out
}

fn control_ids(raw: &[RawMessage]) -> Vec<String> {
    let mut ids: Vec<String> = raw.iter().filter_map(|r| r.control_id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_message_gets_aa_and_reaches_kafka_while_plaintext_clients_are_dropped() {
    let cfg = require_stack();
    let pki = Pki::new();
    let run = start(&cfg, topics(&cfg, "ingest-tls.one-way", pki.server_tls(None)).await).await;
    let client = pki.client(None);

    let mut sender = TlsSender::new(&run.mllp.to_string(), client.clone(), "127.0.0.1");
    assert_eq!(sender.send_once(&adt("TLS-1")).await, Ok("AA".into()));

    // A plaintext MLLP sender on the TLS port: no ACK, the connection is closed, it is counted.
    let back = plaintext_exchange(run.mllp, &hl7v2::mllp::frame(&adt("PLAIN-1"))).await;
    assert!(!back.contains(&0x0b) && !String::from_utf8_lossy(&back).contains("MSA"), "no MLLP answer: {back:?}");
    counted(&run.tls, Listener::mllp, HandshakeFailure::not_tls, 1).await;

    // The listener keeps serving, the open TLS connection and new ones alike.
    assert_eq!(sender.send_once(&adt("TLS-2")).await, Ok("AA".into()));
    let mut fresh = TlsSender::new(&run.mllp.to_string(), client.clone(), "127.0.0.1");
    assert_eq!(fresh.send_once(&adt("TLS-3")).await, Ok("AA".into()));

    // HTTPS works; plaintext HTTP on the HTTPS port is dropped and counted.
    let resp = https_post(run.http, client.clone(), &adt("TLS-HTTP-1")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("MSA|AA|TLS-HTTP-1"), "{resp}");
    let body = adt("PLAIN-HTTP-1");
    let mut req =
        format!("POST /hl7v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    req.extend_from_slice(&body);
    let back = plaintext_exchange(run.http, &req).await;
    assert!(!String::from_utf8_lossy(&back).contains("HTTP/1.1"), "no HTTP answer over plaintext: {back:?}");
    counted(&run.tls, Listener::http, HandshakeFailure::not_tls, 1).await;

    // Exactly the TLS messages are on the raw topic, byte for byte; nothing went to the DLQ.
    let raw = decoded_raw(&cfg, &run.raw, 5).await;
    assert_eq!(control_ids(&raw), ["TLS-1", "TLS-2", "TLS-3", "TLS-HTTP-1"]);
    assert!(raw.iter().all(|r| r.payload == adt(r.control_id.as_deref().unwrap())));
    assert!(read_committed(&cfg, &run.dlq, 1, Duration::from_secs(3)).await.is_empty());
    run.producer.flush(Duration::from_secs(5)).await.unwrap();
    run.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_ca_only_clients_with_a_valid_certificate_get_through() {
    let cfg = require_stack();
    let (pki, senders, stranger) = (Pki::new(), Pki::new(), Pki::new());
    let mut ingest = topics(&cfg, "ingest-tls.mutual", pki.server_tls(Some(senders.ca_file()))).await;
    // REG may send only with a certificate for lab.north.test.
    ingest.allow = vec![AllowRule {
        application: Some("REG".into()),
        cert_names: vec!["lab.north.test".into()],
        ..Default::default()
    }];
    let run = start(&cfg, ingest).await;
    let addr = run.mllp.to_string();

    // No client certificate: refused (in TLS 1.3 the client learns it on its first read).
    let mut anonymous = TlsSender::new(&addr, pki.client(None), "127.0.0.1");
    let r = anonymous.send_once(&adt("MTLS-NOCERT")).await;
    assert!(r.is_err(), "a client without a certificate got an answer: {r:?}");
    counted(&run.tls, Listener::mllp, HandshakeFailure::no_client_cert, 1).await;

    // A certificate from a CA ingest does not trust: refused.
    let mut foreign = TlsSender::new(&addr, pki.client(Some(stranger.issue(&["lab.north.test"], true))), "127.0.0.1");
    let r = foreign.send_once(&adt("MTLS-FOREIGN")).await;
    assert!(r.is_err(), "a client with an untrusted certificate got an answer: {r:?}");
    counted(&run.tls, Listener::mllp, HandshakeFailure::bad_client_cert, 1).await;

    // A valid certificate for the allow-listed name: AA.
    let lab = pki.client(Some(senders.issue(&["lab.north.test"], true)));
    let mut good = TlsSender::new(&addr, lab.clone(), "127.0.0.1");
    assert_eq!(good.send_once(&adt("MTLS-OK")).await, Ok("AA".into()));

    // A valid certificate for another name: the handshake succeeds, the allow-list says AR.
    let mut other = TlsSender::new(&addr, pki.client(Some(senders.issue(&["ris.north.test"], true))), "127.0.0.1");
    assert_eq!(other.send_once(&adt("MTLS-OTHER")).await, Ok("AR".into()));

    // HTTPS with the same rules.
    let resp = https_post(run.http, lab, &adt("MTLS-HTTP")).await;
    assert!(resp.starts_with("HTTP/1.1 200") && resp.contains("MSA|AA|MTLS-HTTP"), "{resp}");
    // In TLS 1.3 the client may finish its side before the server refuses; kept open until counted.
    let anonymous_https = tls_connect(run.http, pki.client(None)).await;
    counted(&run.tls, Listener::http, HandshakeFailure::no_client_cert, 1).await;
    drop(anonymous_https);

    let raw = decoded_raw(&cfg, &run.raw, 3).await;
    assert_eq!(control_ids(&raw), ["MTLS-HTTP", "MTLS-OK"], "only certified, allow-listed messages");
    let dead = read_committed(&cfg, &run.dlq, 2, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 1, "the AR'd message is dead-lettered");
    let w = bus::DeadLetterWriter::new(&Registry::new(&cfg.registry).unwrap(), "ingest", Some(&run.dlq));
    let letter = w.decode(dead[0].value.as_deref().unwrap()).await.unwrap();
    assert_eq!(letter.error_class, "sender-not-allowed");
    assert_eq!(letter.original_value.as_deref(), Some(&adt("MTLS-OTHER")[..]));
    run.producer.flush(Duration::from_secs(5)).await.unwrap();
    run.shutdown.trigger();
}

/// Reads `/metrics` until `line` is there (bounded); the exposition text.
async fn metrics_with(port: u16, line: &str) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut text = String::new();
    for _ in 0..100 {
        text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if text.contains(line) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_binary_serves_mutual_tls_from_its_configuration() {
    let cfg = require_stack();
    let (pki, senders) = (Pki::new(), Pki::new());
    let tls = pki.server_tls(Some(senders.ca_file()));
    let path = |p: &Option<PathBuf>| p.as_ref().unwrap().display().to_string();
    let raw = unique("ingest-tls.bin.raw");
    let (mllp_port, http_port) = (free_port(), free_port());
    let mut ingest = Service::start(
        "ingest",
        &[
            ("ARTERIA__BUS__TOPICS__PARTITIONS", "3".to_string()),
            ("ARTERIA__INGEST__RAW_TOPIC", raw.clone()),
            ("ARTERIA__INGEST__DLQ_TOPIC", unique("ingest-tls.bin.dlq")),
            ("ARTERIA__INGEST__MLLP__ADDR", format!("127.0.0.1:{mllp_port}")),
            ("ARTERIA__INGEST__HTTP__ADDR", format!("127.0.0.1:{http_port}")),
            ("ARTERIA__INGEST__TLS__CERT", path(&tls.cert)),
            ("ARTERIA__INGEST__TLS__KEY", path(&tls.key)),
            ("ARTERIA__INGEST__TLS__CLIENT_CA", path(&tls.client_ca)),
        ],
    );
    ingest.wait_ready(Duration::from_secs(120)).await;
    let client = pki.client(Some(senders.issue(&["lab.north.test"], true)));
    let mut sender = TlsSender::new(&format!("127.0.0.1:{mllp_port}"), client.clone(), "127.0.0.1");
    assert_eq!(sender.deliver(&adt("BIN-TLS-1"), 5).await, Ok(1));

    let back =
        plaintext_exchange(format!("127.0.0.1:{mllp_port}").parse().unwrap(), &hl7v2::mllp::frame(&adt("BIN-PLAIN")))
            .await;
    assert!(!String::from_utf8_lossy(&back).contains("MSA"), "no ACK over plaintext");
    let line = r#"arteria_tls_handshake_failures_total{listener="mllp",reason="not_tls"} 1"#;
    let text = metrics_with(ingest.health_port, line).await;
    assert!(text.contains(line), "{text}");

    let resp = https_post(format!("127.0.0.1:{http_port}").parse().unwrap(), client, &adt("BIN-HTTPS-1")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    let got = decoded_raw(&cfg, &raw, 3).await;
    assert_eq!(control_ids(&got), ["BIN-HTTPS-1", "BIN-TLS-1"]);
    ingest.stop();
}

#[test]
fn the_ingest_binary_refuses_a_bad_certificate_file_and_names_it() {
    let bin = bin_dir().join("ingest");
    assert!(bin.is_file(), "{} is missing: `cargo build -p arteria-ingest` (make test does it)", bin.display());
    let pki = Pki::new();
    let tls = pki.server_tls(None);
    let junk = pki.write("junk-chain.pem", "not a certificate\n");
    let out = std::process::Command::new(bin)
        .env("ARTERIA__INGEST__TLS__CERT", &junk)
        .env("ARTERIA__INGEST__TLS__KEY", tls.key.as_ref().unwrap())
        .env("ARTERIA__TELEMETRY__HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success(), "ingest started with a junk certificate file");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&*junk.to_string_lossy()) && err.contains("CERTIFICATE"), "{err}");
}
