//! HL7 v2 → the canonical FHIR R4-aligned model, following the HL7 V2-to-FHIR IG, with
//! sender profiles and a coverage report of everything that was not mapped.
//!
//! ```
//! let bytes = b"MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101120000+0100||ORU^R01|MSG1|P|2.5.1\r\
//! PID|1||111^^^HOSP^MR||DOE^JANE||19800101|F\r\
//! OBR|1|ORD1||2345-7^Glucose^LN|||20240101110000+0100||||||||||||||||F\r\
//! OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L^mmol/L^UCUM|3.9-5.5|N|||F\r";
//! let msg = hl7v2::Message::parse(bytes).unwrap();
//! let conv = mapping::convert(&msg, &mapping::Profiles::default(), "tenant-a").unwrap();
//! let json = conv.to_bundle_json(false);
//! assert!(json.starts_with(r#"{"resourceType":"Bundle""#));
//! assert!(conv.resources.iter().any(|r| r.resource_type() == "Observation"));
//! ```
//!
//! Modules: [`datatypes`] (v2 datatypes → FHIR datatypes), [`vocab`] (the IG's vocabulary
//! maps), [`time`] (TS/DTM with zones), [`identity`] (deterministic ids), [`profile`] (sender
//! profiles), [`coverage`] (the report), `messages` (the segment walk and per-segment
//! mappers), `bundle` (MSH/EVN → MessageHeader/Provenance, the Bundle), [`event`]
//! (the `ClinicalEvent` for Kafka). Files holding several messages, batches or MLLP captures
//! are split by `hl7v2::batch`.

mod bundle;
mod context;
pub mod coverage;
pub mod datatypes;
pub mod event;
pub mod identity;
mod messages;
pub mod profile;
pub mod time;
pub mod vocab;

pub use coverage::CoverageReport;
pub use profile::{Profile, Profiles};

use canonical::model::{Bundle, BundleEntry, Identifier, Resource};
use context::Env;
use coverage::Tracker;

/// The version of the mapping logic, recorded in every event's provenance.
pub const LOGIC_VERSION: &str = concat!("arteria-mapping/", env!("CARGO_PKG_VERSION"));

/// Why a message could not be converted at all.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The bytes are not a parseable HL7 v2 message.
    #[error("{0}")]
    Parse(#[from] hl7v2::ParseError),
}

/// One converted message: the canonical resources (MessageHeader first) and what was not
/// mapped.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// Deterministic bundle id (tenant, sender, control id).
    pub id: String,
    /// `MSH-9.1^MSH-9.2`, e.g. `ADT^A01`.
    pub message_type: String,
    pub control_id: String,
    /// MSH-3.1 and MSH-4.1.
    pub sender_application: String,
    pub sender_facility: String,
    /// MSH-7 as a FHIR instant, when it has a time of day.
    pub timestamp: Option<String>,
    /// Every resource, MessageHeader first.
    pub resources: Vec<Resource>,
    pub coverage: CoverageReport,
    /// Name of the sender profile applied.
    pub profile: Option<String>,
    /// Id of the (first) Patient, the Kafka key of the event.
    pub patient_id: Option<String>,
}

/// Converts one parsed message. `tenant` salts every id.
pub fn convert(msg: &hl7v2::Message<'_>, profiles: &Profiles, tenant: &str) -> Result<Conversion, MapError> {
    // HD: the namespace id, else the universal id (senders that fill only HD-2 must not all
    // share one empty key — ids and local code systems are scoped by it).
    let hd = |n: usize| {
        let f = msg.msh().field(n);
        let c = |k: usize| f.and_then(|f| f.component(k)).map(|c| c.as_str()).filter(|s| !s.is_empty());
        c(1).or_else(|| c(2)).unwrap_or("")
    };
    let (app, fac) = (hd(3), hd(4));
    let profile = profiles.find(Some(app).filter(|s| !s.is_empty()), Some(fac).filter(|s| !s.is_empty()));
    let tracker = Tracker::new(msg.segment_count());
    let control_id = msg.control_id().unwrap_or("").to_string();
    let env = Env {
        tenant,
        sender_key: format!("{app}|{fac}"),
        control_id: control_id.clone(),
        time_lead: identity::time_lead(tenant, msg.msh().field(7).map(|f| f.as_str()).unwrap_or("")),
        profile,
        zone: profiles.zone_for(profile),
        tracker: &tracker,
        delims: msg.delimiters(),
        last_time: Default::default(),
        // Room for the event types of a message (one hash state each).
        event_prefixes: std::cell::RefCell::new(Vec::with_capacity(8)),
        units_seen: Default::default(),
    };
    for (n, present) in [(11, msg.processing_id().is_some()), (12, msg.version().is_some())] {
        if !present {
            tracker.note(
                coverage::NoteKind::InvalidValue,
                coverage::Place { segment: "MSH".into(), index: 1, field: Some(n) },
                "required MSH field is empty",
            );
        }
    }
    let out = messages::walk(&env, msg);
    let (resources, timestamp) = bundle::envelope(&env, msg, out);
    let id = identity::id(tenant, "Bundle", &[&env.sender_key, &control_id]);
    drop(env);
    let coverage = tracker.report(msg.segments());
    let patient_id = resources.iter().find(|r| r.resource_type() == "Patient").map(|r| r.id().to_string());
    let message_type = match (msg.message_type(), msg.trigger()) {
        (Some(t), Some(e)) => format!("{t}^{e}"),
        (Some(t), None) => t.to_string(),
        _ => String::new(),
    };
    Ok(Conversion {
        id,
        message_type,
        control_id,
        sender_application: app.to_string(),
        sender_facility: fac.to_string(),
        timestamp,
        resources,
        coverage,
        profile: profile.map(|p| p.file.name.clone()),
        patient_id,
    })
}

/// Parse options for conversion: MSH-11 (processing id) and MSH-12 (version) may be empty —
/// the mapping does not depend on them, and their absence is reported, not fatal.
pub fn parse_options() -> hl7v2::ParseOptions {
    hl7v2::ParseOptions { allow_missing_msh: vec![11, 12], ..Default::default() }
}

/// Parses (with [`parse_options`]) and converts one message.
pub fn convert_bytes(bytes: &[u8], profiles: &Profiles, tenant: &str) -> Result<Conversion, MapError> {
    let msg = hl7v2::Message::parse_with(bytes, &parse_options())?;
    convert(&msg, profiles, tenant)
}

impl Conversion {
    fn bundle_identifier(&self) -> Identifier {
        Identifier {
            system: Some(
                format!(
                    "urn:arteria:v2:message:{}",
                    datatypes::urn_part(&format!("{}|{}", self.sender_application, self.sender_facility))
                )
                .into(),
            ),
            value: Some(self.control_id.clone()).filter(|c| !c.is_empty()),
            ..Default::default()
        }
    }

    /// The FHIR R4 message Bundle (MessageHeader first, `urn:uuid:` fullUrls).
    pub fn bundle(&self) -> Bundle {
        Bundle {
            id: self.id.clone(),
            identifier: Some(self.bundle_identifier()),
            r#type: "message",
            timestamp: self.timestamp.clone(),
            entry: self
                .resources
                .iter()
                .map(|r| BundleEntry { full_url: format!("urn:uuid:{}", r.id()), resource: r.clone() })
                .collect(),
        }
    }

    /// The Bundle as JSON: compact (one line, for NDJSON) or pretty.
    pub fn to_bundle_json(&self, pretty: bool) -> String {
        let mut out = Vec::new();
        if pretty {
            serde_json::to_writer_pretty(&mut out, &self.borrowed()).expect("the model serialises to JSON");
        } else {
            self.append_bundle_json(&mut out);
        }
        String::from_utf8(out).expect("JSON output is UTF-8")
    }

    /// Writes the Bundle as compact JSON to `w`, without copying the resources.
    pub fn write_bundle_json<W: std::io::Write>(&self, mut w: W) -> serde_json::Result<()> {
        let mut out = Vec::new();
        self.append_bundle_json(&mut out);
        w.write_all(&out).map_err(serde_json::Error::io)
    }

    /// Appends the Bundle as compact JSON to `out` (the same bytes as serde_json writes for
    /// [`Conversion::bundle`], without copying the resources), reserving room first (about 1 kB
    /// per resource in practice), so that the buffer does not grow step by step.
    pub fn append_bundle_json(&self, out: &mut Vec<u8>) {
        use canonical::model::json::{JsonWrite, write_escaped, write_str};
        out.reserve(1024 * (self.resources.len() + 1));
        out.extend_from_slice(br#"{"resourceType":"Bundle","id":"#);
        write_str(out, &self.id);
        out.push(b',');
        out.extend_from_slice(br#""identifier":"#);
        self.bundle_identifier().write_json(out);
        out.extend_from_slice(br#","type":"message","#);
        if let Some(t) = &self.timestamp {
            out.extend_from_slice(br#""timestamp":"#);
            write_str(out, t);
            out.push(b',');
        }
        out.extend_from_slice(br#""entry":["#);
        for (i, r) in self.resources.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"fullUrl":"urn:uuid:"#);
            write_escaped(out, r.id());
            out.extend_from_slice(br#"","resource":"#);
            r.write_json(out);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    }

    fn borrowed(&self) -> BorrowedBundle<'_> {
        BorrowedBundle {
            id: &self.id,
            identifier: self.bundle_identifier(),
            r#type: "message",
            timestamp: self.timestamp.as_deref(),
            entry: Entries(&self.resources),
        }
    }
}

/// The same JSON as [`Bundle`], borrowing the resources.
#[derive(serde::Serialize)]
#[serde(tag = "resourceType", rename = "Bundle", rename_all = "camelCase")]
struct BorrowedBundle<'a> {
    id: &'a str,
    identifier: Identifier,
    r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a str>,
    entry: Entries<'a>,
}

/// The bundle entries, written from the resources without building entry values.
struct Entries<'a>(&'a [Resource]);

impl serde::Serialize for Entries<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            seq.serialize_element(&BorrowedEntry { full_url: UrnUuid(r.id()), resource: r })?;
        }
        seq.end()
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct BorrowedEntry<'a> {
    full_url: UrnUuid<'a>,
    resource: &'a Resource,
}

/// `urn:uuid:<id>` written straight into the output.
struct UrnUuid<'a>(&'a str);

impl serde::Serialize for UrnUuid<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const PREFIX: &[u8] = b"urn:uuid:";
        let mut buf = [0u8; 64];
        let n = PREFIX.len() + self.0.len();
        if n > buf.len() {
            return s.collect_str(&format_args!("urn:uuid:{}", self.0));
        }
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        buf[PREFIX.len()..n].copy_from_slice(self.0.as_bytes());
        s.serialize_str(std::str::from_utf8(&buf[..n]).expect("prefix and id are UTF-8"))
    }
}
