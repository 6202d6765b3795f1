//! A sender's side of MLLP for tests: send one message, read its ACK, and resend on failure the
//! way a real interface engine does (a message counts as delivered only once answered AA/CA).

use futures::{SinkExt, StreamExt};
use hl7v2::mllp::{MllpCodec, MllpItem};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// One connection that reconnects when needed.
pub struct Sender {
    addr: String,
    conn: Option<Framed<TcpStream, MllpCodec>>,
}

impl Sender {
    pub fn new(addr: &str) -> Self {
        Self { addr: addr.into(), conn: None }
    }

    /// Sends once; returns MSA-1 or why there was no ACK.
    pub async fn send_once(&mut self, msg: &[u8]) -> Result<String, String> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr).await.map_err(|e| format!("connect: {e}"))?;
            self.conn = Some(Framed::new(s, MllpCodec::new(16 << 20)));
        }
        let result = exchange(self.conn.as_mut().expect("connected"), msg).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Sends until answered AA or CA (resending after errors, AE and CE), at most `tries`
    /// times; returns how many sends it took.
    pub async fn deliver(&mut self, msg: &[u8], tries: u32) -> Result<u32, String> {
        let mut last = String::new();
        for n in 1..=tries {
            if delivered(self.send_once(msg).await, &mut last) {
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!("not delivered after {tries} tries: {last}"))
    }
}

/// Whether one attempt delivered the message (AA or CA); otherwise `last` says why not.
fn delivered(attempt: Result<String, String>, last: &mut String) -> bool {
    match attempt {
        Ok(code) if code == "AA" || code == "CA" => true,
        Ok(code) => {
            *last = format!("answered {code}");
            false
        }
        Err(e) => {
            *last = e;
            false
        }
    }
}

/// One MLLP exchange on an open connection: send `msg`, return MSA-1 of the answer.
async fn exchange<S>(c: &mut Framed<S, MllpCodec>, msg: &[u8]) -> Result<String, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    c.send(msg).await.map_err(|e| format!("send: {e}"))?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), c.next()).await {
            Err(_) => return Err("no ACK in 30 s".to_string()),
            Ok(None) => return Err("connection closed".to_string()),
            Ok(Some(Err(e))) => return Err(format!("receive: {e}")),
            Ok(Some(Ok(MllpItem::Frame(ack)))) => {
                let m = hl7v2::Message::parse(&ack).map_err(|e| format!("ACK does not parse: {e}"))?;
                return m.get("MSA-1").map(|v| v.as_str().to_string()).ok_or_else(|| "no MSA-1".to_string());
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// [`Sender`] over TLS: one TLS connection, re-established (handshake included) when needed.
pub struct TlsSender {
    addr: String,
    connector: tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
    conn: Option<Framed<tokio_rustls::client::TlsStream<TcpStream>, MllpCodec>>,
}

impl TlsSender {
    /// A sender to `addr` with `config` (trusted CAs, optional client certificate), checking
    /// the receiver's certificate against `server_name`.
    pub fn new(addr: &str, config: std::sync::Arc<rustls::ClientConfig>, server_name: &str) -> Self {
        Self {
            addr: addr.into(),
            connector: tokio_rustls::TlsConnector::from(config),
            server_name: rustls::pki_types::ServerName::try_from(server_name.to_string()).expect("a valid server name"),
            conn: None,
        }
    }

    /// Sends once; returns MSA-1 or why there was no ACK (a failed handshake included).
    pub async fn send_once(&mut self, msg: &[u8]) -> Result<String, String> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr).await.map_err(|e| format!("connect: {e}"))?;
            let s = self.connector.connect(self.server_name.clone(), s).await.map_err(|e| format!("handshake: {e}"))?;
            self.conn = Some(Framed::new(s, MllpCodec::new(16 << 20)));
        }
        let result = exchange(self.conn.as_mut().expect("connected"), msg).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Sends until answered AA or CA, at most `tries` times, like [`Sender::deliver`].
    pub async fn deliver(&mut self, msg: &[u8], tries: u32) -> Result<u32, String> {
        let mut last = String::new();
        for n in 1..=tries {
            if delivered(self.send_once(msg).await, &mut last) {
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!("not delivered after {tries} tries: {last}"))
    }
}
