//! The ingest stage's logic: take HL7 v2 from senders over MLLP (and HTTP), check it just
//! enough to answer precisely, write it byte for byte to `hl7v2.raw.v1`, and acknowledge only
//! once Kafka has acknowledged the write.
//!
//! - [`intake`]: the decision for one message (accept / reject), pure and unit tested.
//! - [`allow`]: the per-sender allow-list.
//! - [`publish`]: where accepted and rejected messages go (Kafka, or a test double).
//! - [`session`]: one message in, one answer out: intake + publish + the ACK to send.
//! - [`mllp_server`]: the MLLP listener: connections, limits, idle timeouts, back-pressure.
//! - [`http`]: the HTTP endpoint taking HL7 v2 and returning the ACK.
//! - [`tls`]: TLS and mutual TLS on both listeners (`[ingest.tls]`).
//! - [`peer`]: who a message came from (address, verified client certificate).
//! - [`config`]: the `[ingest]` settings.
//!
//! The service binary (`services/ingest`) only loads configuration and wires these together.

pub mod allow;
pub mod config;
pub mod http;
pub mod intake;
pub mod mllp_server;
pub mod peer;
pub mod publish;
pub mod session;
pub mod tls;

pub use config::IngestConfig;
pub use peer::Peer;
pub use publish::{KafkaPublisher, PublishError, Publisher};
pub use session::{Answer, Session};
pub use tls::{TlsError, TlsServer};
