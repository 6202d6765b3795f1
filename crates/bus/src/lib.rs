//! Kafka plumbing for every Arteria service.
//!
//! One place owns how services talk to Kafka and the schema registry, so the guarantees in the
//! design (acks=all idempotent writes, read_committed reads, exactly-once stage transactions,
//! dead letters that keep the original bytes, trace context across hops, graceful shutdown)
//! hold the same way everywhere. It knows nothing of HL7 or FHIR.
//!
//! - [`config`]: typed settings → librdkafka properties (security passed through).
//! - [`producer`]: idempotent producer whose `send` resolves on the broker's acknowledgement.
//! - [`consumer`]: read_committed consumers and the owned [`InputRecord`].
//! - [`txloop`]: the transactional consume-transform-produce loop.
//! - [`snapshot`]: a topic's keys from start to end, for state rebuilt from a compacted topic.
//! - [`dlq`]: the `DeadLetter` record and its writer.
//! - [`avro`]: Confluent wire format and registry-backed Avro serde.
//! - [`body_reader`]: hand-written readers of the leading fields of our own records.
//! - [`projection`]: cutting fields a reader does not use out of Avro bytes before decoding.
//! - [`headers`], [`trace`]: message id and W3C trace context in headers.
//! - [`topics`]: start-up checks: broker reachable, topics present with the right shape.
//! - [`shutdown`]: SIGTERM/SIGINT → a shared shutdown signal.

pub mod avro;
pub mod body_reader;
pub mod config;
pub mod consumer;
pub mod context;
pub mod dlq;
pub mod dlq_replay;
pub mod error;
pub mod headers;
pub mod producer;
pub mod projection;
pub mod shutdown;
pub mod snapshot;
pub mod topics;
pub mod trace;
pub mod txloop;

pub use avro::{AvroError, AvroSerde, Registry};
pub use config::{BusConfig, KafkaConfig, RegistryConfig};
pub use consumer::{BusConsumer, InputRecord};
pub use dlq::{DeadLetter, DeadLetterWriter};
pub use error::BusError;
pub use headers::MessageHeaders;
pub use producer::{BusProducer, Delivered};
pub use shutdown::Shutdown;
pub use trace::TraceParent;
pub use txloop::{Output, ProcessError, Processor, TxLoop, TxLoopConfig, TxLoopStats};
