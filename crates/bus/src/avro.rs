//! Avro values on Kafka, in the Confluent wire format, with schemas in the registry.
//!
//! Producers register the schema of their Rust type under the topic's value subject
//! (TopicNameStrategy: `<topic>-value`) through `schema_registry_converter`, so the registry
//! refuses an incompatible change at the first send rather than a consumer failing later.
//! Consumers fetch the writer's schema by the id in the message and resolve it to their own
//! type, which is what makes BACKWARD-compatible evolution work. The wire framing itself is a
//! pure function ([`wire`]) so it can be checked byte by byte without a registry.

use std::any::TypeId;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::ResolvedSchema;
use apache_avro::writer::datum::GenericDatumWriter;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::avro_common::get_supplied_schema;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{RegistryAuth, RegistryConfig};
use crate::projection::Projection;

/// The Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary body.
pub mod wire {
    /// The only magic byte defined.
    pub const MAGIC: u8 = 0;
    /// Bytes before the Avro body.
    pub const HEADER_LEN: usize = 5;

    /// Why bytes are not a Confluent-framed value.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum WireError {
        #[error("value is {0} bytes, shorter than the 5-byte Confluent header")]
        TooShort(usize),
        #[error("value starts with magic byte {0:#04x}, expected 0x00 (not Confluent wire format)")]
        BadMagic(u8),
    }

    /// Frames an Avro body with its schema id.
    pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
        let mut out = header(schema_id, body.len());
        out.extend_from_slice(body);
        out
    }

    /// The header alone, with room for a body of about `body_len` bytes to be written after it.
    pub fn header(schema_id: u32, body_len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + body_len);
        out.push(MAGIC);
        out.extend_from_slice(&schema_id.to_be_bytes());
        out
    }

    /// Splits a framed value into schema id and Avro body.
    pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), WireError> {
        if bytes.len() < HEADER_LEN {
            return Err(WireError::TooShort(bytes.len()));
        }
        if bytes[0] != MAGIC {
            return Err(WireError::BadMagic(bytes[0]));
        }
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        Ok((id, &bytes[HEADER_LEN..]))
    }
}

/// Avro and registry failures, split by whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("not a Confluent-framed Avro value: {0}")]
    Wire(#[from] wire::WireError),
    /// The registry could not be reached or answered with a server error: retry later.
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    /// The registry refused (e.g. incompatible schema, unknown id): retrying will not help.
    #[error("schema registry refused the request: {0}")]
    RegistryRefused(String),
    #[error("cannot encode {type_name} as Avro: {detail}")]
    Encode { type_name: &'static str, detail: String },
    #[error("cannot decode Avro value (writer schema id {schema_id}) as {type_name}: {detail}")]
    Decode { schema_id: u32, type_name: &'static str, detail: String },
    #[error("invalid registry settings: {0}")]
    Settings(String),
}

impl AvroError {
    /// Whether the same call may succeed later (network, registry down).
    pub fn is_transient(&self) -> bool {
        matches!(self, AvroError::RegistryUnavailable(_))
    }

    fn from_registry(e: SRCError) -> Self {
        // SRCError's own flag says whether the failure was the connection/HTTP layer.
        if e.retriable {
            AvroError::RegistryUnavailable(e.to_string())
        } else {
            AvroError::RegistryRefused(e.to_string())
        }
    }
}

/// Connection to the schema registry, shared by every typed serde of a service.
#[derive(Clone)]
pub struct Registry {
    settings: SrSettings,
    encoder: Arc<AvroEncoder>,
    decoder: Arc<AvroDecoder>,
    /// Record fields cut out before decoding (see [`Registry::skipping_on_decode`]).
    skip_on_decode: Arc<[String]>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// Builds the client (no network call yet).
    pub fn new(cfg: &RegistryConfig) -> Result<Self, AvroError> {
        let mut b = SrSettings::new_builder(cfg.url.trim_end_matches('/').to_string());
        b.set_timeout(Duration::from_millis(cfg.timeout_ms));
        match &cfg.auth {
            RegistryAuth::None => {}
            RegistryAuth::Basic { username, password } => {
                b.set_basic_authorization(username, Some(&password.0));
            }
            RegistryAuth::Bearer { token } => {
                b.set_token_authorization(&token.0);
            }
        }
        let settings = b.build().map_err(|e| AvroError::Settings(e.to_string()))?;
        Ok(Self {
            encoder: Arc::new(AvroEncoder::new(settings.clone())),
            decoder: Arc::new(AvroDecoder::new(settings.clone())),
            settings,
            skip_on_decode: Arc::new([]),
        })
    }

    /// Serdes made from this registry drop record fields with these names from what they
    /// decode: the bytes are cut out before decoding ([`crate::projection`]), so the reader's
    /// type sees them as absent (they must have a default there). For a service that reads only
    /// part of a large record — e.g. `fhir_json` and not the typed copy beside it.
    pub fn skipping_on_decode(mut self, fields: &[&str]) -> Self {
        self.skip_on_decode = fields.iter().map(|f| f.to_string()).collect();
        self
    }

    /// The underlying settings, for direct registry calls.
    pub fn settings(&self) -> &SrSettings {
        &self.settings
    }

    /// Lists subjects: a cheap call to check the registry is reachable.
    pub async fn ping(&self) -> Result<(), AvroError> {
        schema_registry_converter::async_impl::schema_registry::get_all_subjects(&self.settings)
            .await
            .map(|_| ())
            .map_err(AvroError::from_registry)
    }

    /// Waits until the registry answers, retrying with backoff per `bus.startup_retry`.
    pub async fn wait_ready(
        &self,
        bus: &crate::config::BusConfig,
        shutdown: &crate::shutdown::Shutdown,
    ) -> Result<(), crate::error::BusError> {
        let retry = &bus.startup_retry;
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let last_error = match self.ping().await {
                Ok(()) => return Ok(()),
                Err(e) => e.to_string(),
            };
            let waited = started.elapsed();
            if retry.give_up_after().is_some_and(|l| waited >= l) {
                return Err(crate::error::BusError::RegistryUnavailable {
                    url: bus.registry.url.clone(),
                    attempts: attempt,
                    waited_ms: waited.as_millis() as u64,
                    last_error,
                });
            }
            let d = retry.delay(attempt);
            tracing::warn!(url = %bus.registry.url, attempt, retry_in_ms = d.as_millis() as u64, error = %last_error, "schema registry not reachable yet");
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = shutdown.wait() => return Err(crate::error::BusError::ShutDown("waiting for the schema registry")),
            }
        }
    }

    /// A typed serde for values of `topic` (subject `<topic>-value`).
    pub fn value_serde<T>(&self, topic: &str) -> AvroSerde<T>
    where
        T: apache_avro::AvroSchema + Serialize + DeserializeOwned + 'static,
    {
        AvroSerde::new(self.clone(), topic)
    }
}

/// How to read records written with one schema id into one Rust type: the writer schema with
/// its named types resolved, and our reader schema likewise when the two differ.
///
/// Built once per schema id and kept: resolving walks the whole schema, and with the typed FHIR
/// records in `ClinicalEvent` and `FhirResource` (60+ named types) redoing it per record cost
/// more than the decode itself (query: ~1.6 ms per resource). The schemas are leaked to get the
/// `'static` borrow the resolution needs, once per schema id and serde, as
/// schema_registry_converter does for its own cache: schema ids are few and live for the
/// process anyway.
struct Decoding {
    /// Set when the writer schema has fields to drop: `writer` is then the projected schema.
    projection: Option<Projection>,
    writer: &'static Schema,
    writer_names: ResolvedSchema<'static>,
    /// `None` when the writer schema is our reader schema (no resolution step).
    reader: Option<(&'static Schema, ResolvedSchema<'static>)>,
    /// The writer schema is exactly `T`'s own (before any projection): a hand-written reader
    /// of `T`'s layout may read the bytes ([`AvroSerde::decode_with`]).
    own: bool,
}

/// A Rust type's own schema, parsed and resolved once per process and shared by every serde of
/// the type: fan-out and query keep one serde per topic (~20), and a parsed schema with the
/// typed FHIR records is ~450 kB.
struct TypeSchema {
    schema: &'static Schema,
    canonical: String,
    names: ResolvedSchema<'static>,
}

fn type_schema<T: apache_avro::AvroSchema + 'static>() -> &'static TypeSchema {
    static SCHEMAS: OnceLock<Mutex<HashMap<TypeId, &'static TypeSchema>>> = OnceLock::new();
    let mut m = SCHEMAS.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
    m.entry(TypeId::of::<T>()).or_insert_with(|| {
        let schema: &'static Schema = Box::leak(Box::new(T::get_schema()));
        let names = ResolvedSchema::try_from(schema).expect("a derived schema resolves");
        Box::leak(Box::new(TypeSchema { schema, canonical: schema.canonical_form(), names }))
    })
}

/// How to write `T`: its registered schema id and a writer built once. Encoding through
/// schema_registry_converter's `encode_struct` instead cloned the subject strategy — which
/// carries the whole schema text, ~150 kB with the typed FHIR records — and the schema's name
/// table for every record: with 20 resources per message that was most of fan-out's CPU.
struct Encoding {
    id: u32,
    writer: GenericDatumWriter<'static>,
}

/// Encoder/decoder of one Rust type on one topic.
pub struct AvroSerde<T> {
    registry: Registry,
    topic: String,
    reader: &'static TypeSchema,
    /// Shared: it carries the whole schema text (~150 kB for the FHIR events), and callers
    /// clone a serde per record.
    strategy: Arc<SubjectNameStrategy>,
    skip_on_decode: Arc<[String]>,
    /// Per writer schema id, shared by clones (fan-out clones a serde per output).
    decodings: Arc<Mutex<HashMap<u32, Arc<Decoding>>>>,
    /// Set by the first encode (or [`AvroSerde::register`]), shared by clones.
    encoding: Arc<tokio::sync::OnceCell<Encoding>>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for AvroSerde<T> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            topic: self.topic.clone(),
            reader: self.reader,
            strategy: self.strategy.clone(),
            skip_on_decode: self.skip_on_decode.clone(),
            decodings: self.decodings.clone(),
            encoding: self.encoding.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> AvroSerde<T>
where
    T: apache_avro::AvroSchema + Serialize + DeserializeOwned + 'static,
{
    pub fn new(registry: Registry, topic: &str) -> Self {
        let reader = type_schema::<T>();
        let strategy = Arc::new(SubjectNameStrategy::TopicNameStrategyWithSchema(
            topic.to_string(),
            false,
            get_supplied_schema(reader.schema),
        ));
        Self {
            skip_on_decode: registry.skip_on_decode.clone(),
            registry,
            topic: topic.to_string(),
            reader,
            strategy,
            decodings: Arc::default(),
            encoding: Arc::default(),
            _t: PhantomData,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The subject this serde registers under.
    pub fn subject(&self) -> String {
        format!("{}-value", self.topic)
    }

    /// Registers `T`'s schema (if new) and returns its id. The first `encode` does the same;
    /// calling this at start-up surfaces an incompatible schema before any input is read.
    pub async fn register(&self) -> Result<u32, AvroError> {
        self.encoding().await.map(|e| e.id)
    }

    /// Registers `T`'s schema once (a failure is not kept: the next call asks again) and
    /// builds its writer.
    async fn encoding(&self) -> Result<&Encoding, AvroError> {
        self.encoding
            .get_or_try_init(|| async {
                let key = format!("{}-value", self.topic);
                let registered = self
                    .registry
                    .encoder
                    .get_schema_and_id(&key, SubjectNameStrategy::clone(&self.strategy))
                    .await
                    .map_err(AvroError::from_registry)?;
                let encode_err = |e: apache_avro::Error| AvroError::Encode {
                    type_name: std::any::type_name::<T>(),
                    detail: e.to_string(),
                };
                let writer = GenericDatumWriter::builder(self.reader.schema)
                    .resolved_schemata(self.reader.names.clone())
                    .build()
                    .map_err(encode_err)?;
                Ok(Encoding { id: registered.id, writer })
            })
            .await
    }

    /// Like [`AvroSerde::encode`], with a hand-written body writer: `write` appends `value`'s
    /// Avro binary for `T`'s schema — the bytes `encode` would write (the writer's own tests
    /// must hold it to that); this only frames them with the registered schema id.
    pub async fn encode_with(&self, value: &T, write: impl FnOnce(&T, &mut Vec<u8>)) -> Result<Vec<u8>, AvroError> {
        let enc = self.encoding().await?;
        let mut out = wire::header(enc.id, 1024);
        write(value, &mut out);
        Ok(out)
    }

    /// Encodes in the Confluent wire format with `T`'s registered schema.
    pub async fn encode(&self, value: &T) -> Result<Vec<u8>, AvroError> {
        let enc = self.encoding().await?;
        let mut out = wire::header(enc.id, 1024);
        enc.writer
            .write_ser(&mut out, value)
            .map_err(|e| AvroError::Encode { type_name: std::any::type_name::<T>(), detail: e.to_string() })?;
        Ok(out)
    }

    /// The decoding of writer schema `id`, built on first use.
    async fn decoding_of(&self, id: u32) -> Result<Arc<Decoding>, AvroError> {
        let known = self.decodings.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
        Ok(match known {
            Some(d) => d,
            None => {
                let writer = self.registry.decoder.get_schema(id).await.map_err(AvroError::from_registry)?;
                let d = Arc::new(self.decoding(&writer.parsed).map_err(|detail| AvroError::Decode {
                    schema_id: id,
                    type_name: std::any::type_name::<T>(),
                    detail,
                })?);
                self.decodings.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_insert(d).clone()
            }
        })
    }

    /// Like [`AvroSerde::decode`], with a hand-written reader of `T`'s own layout
    /// ([`crate::body_reader`]): `read` gets the body when it was written with exactly `T`'s
    /// schema and returns the value (it may stop before the end, e.g. before a trailing field it
    /// does not want); any other writer schema takes the schema-resolving path of `decode`.
    pub async fn decode_with(
        &self,
        bytes: &[u8],
        read: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, AvroError> {
        self.decode_part(bytes, read, |t| t).await
    }

    /// Reads only part of a value: `read` gets the body when it was written with exactly `T`'s
    /// schema; for any other writer schema the value is decoded whole and `part` takes what
    /// `read` would have.
    pub async fn decode_part<U>(
        &self,
        bytes: &[u8],
        read: impl FnOnce(&[u8]) -> Result<U, String>,
        part: impl FnOnce(T) -> U,
    ) -> Result<U, AvroError> {
        let (id, body) = wire::unframe(bytes)?;
        if self.decoding_of(id).await?.own {
            return read(body).map_err(|detail| AvroError::Decode {
                schema_id: id,
                type_name: std::any::type_name::<T>(),
                detail,
            });
        }
        self.decode(bytes).await.map(part)
    }

    /// Decodes a Confluent-framed value written with any schema the registry knows and that
    /// resolves to `T` (Avro schema resolution: defaults for missing fields and so on).
    pub async fn decode(&self, bytes: &[u8]) -> Result<T, AvroError> {
        let (id, body) = wire::unframe(bytes)?;
        let decode_err =
            |detail: String| AvroError::Decode { schema_id: id, type_name: std::any::type_name::<T>(), detail };
        let d = self.decoding_of(id).await?;
        let projected;
        let mut cursor = match &d.projection {
            None => body,
            Some(p) => {
                let mut out = Vec::with_capacity(body.len());
                let read = p.project(body, &mut out).map_err(|e| decode_err(e.to_string()))?;
                if read != body.len() {
                    return Err(decode_err(format!("{} trailing bytes after the record", body.len() - read)));
                }
                projected = out;
                &projected[..]
            }
        };
        let value = match &d.reader {
            None => {
                let reader = GenericDatumReader::builder(d.writer)
                    .resolved_writer_schemata(d.writer_names.clone())
                    .build()
                    .map_err(|e| decode_err(e.to_string()))?;
                reader.read_deser::<T>(&mut cursor).map_err(|e| decode_err(e.to_string()))?
            }
            Some((schema, names)) => {
                let reader = GenericDatumReader::builder(d.writer)
                    .resolved_writer_schemata(d.writer_names.clone())
                    .reader_schema(schema)
                    .resolved_reader_schemata(names.clone())
                    .build()
                    .map_err(|e| decode_err(e.to_string()))?;
                let v = reader.read_value(&mut cursor).map_err(|e| decode_err(e.to_string()))?;
                apache_avro::from_value::<T>(&v).map_err(|e| decode_err(e.to_string()))?
            }
        };
        if !cursor.is_empty() {
            return Err(decode_err(format!("{} trailing bytes after the record", cursor.len())));
        }
        Ok(value)
    }

    /// Resolves `writer` (and our schema, when they differ) for [`Decoding`]. With fields to
    /// skip, both sides lose them first, so a writer that is our own schema still decodes
    /// without a resolution step.
    fn decoding(&self, writer: &Schema) -> Result<Decoding, String> {
        let own = writer.canonical_form() == self.reader.canonical;
        if self.skip_on_decode.is_empty() && own {
            // The common case: written with our own schema, which is parsed already.
            let r = self.reader;
            return Ok(Decoding {
                projection: None,
                writer: r.schema,
                writer_names: r.names.clone(),
                reader: None,
                own: true,
            });
        }
        let (projection, writer, reader_schema, reader_canonical) = if self.skip_on_decode.is_empty() {
            (None, writer.clone(), None, self.reader.canonical.clone())
        } else {
            let p = Projection::new(writer, &self.skip_on_decode).map_err(|e| e.to_string())?;
            let reader = crate::projection::without_fields(self.reader.schema, &self.skip_on_decode)
                .map_err(|e| e.to_string())?;
            let canonical = reader.canonical_form();
            let writer = p.schema().clone();
            (p.drops_any().then_some(p), writer, Some(reader), canonical)
        };
        let writer: &'static Schema = Box::leak(Box::new(writer));
        let writer_names = ResolvedSchema::try_from(writer).map_err(|e| e.to_string())?;
        let reader = if writer.canonical_form() == reader_canonical {
            None
        } else {
            match reader_schema {
                None => (self.reader.schema, self.reader.names.clone()),
                Some(schema) => {
                    let schema: &'static Schema = Box::leak(Box::new(schema));
                    (schema, ResolvedSchema::try_from(schema).map_err(|e| e.to_string())?)
                }
            }
            .into()
        };
        Ok(Decoding { projection, writer, writer_names, reader, own })
    }
}

#[cfg(test)]
mod tests {
    use super::wire::*;

    #[test]
    fn frames_byte_by_byte() {
        let framed = frame(0x0102_0304, &[0xaa, 0xbb]);
        assert_eq!(framed, vec![0x00, 0x01, 0x02, 0x03, 0x04, 0xaa, 0xbb]);
        assert_eq!(unframe(&framed).unwrap(), (0x0102_0304, &[0xaa, 0xbb][..]));
        assert_eq!(unframe(&frame(7, &[])).unwrap(), (7, &[][..]));
    }

    #[test]
    fn refuses_short_and_foreign_values() {
        assert_eq!(unframe(&[0, 0, 0, 1]), Err(WireError::TooShort(4)));
        assert_eq!(unframe(&[]), Err(WireError::TooShort(0)));
        assert_eq!(unframe(b"MSH|^~\\&|"), Err(WireError::BadMagic(b'M')));
    }
}
