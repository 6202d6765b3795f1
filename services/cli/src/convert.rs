//! `arteria convert`: HL7 v2 files to FHIR R4 message Bundles, one compact JSON document per
//! message on stdout (NDJSON), following the V2-to-FHIR IG (see the `mapping` crate).
//!
//! A file may hold one message, several, an HL7 batch (FHS/BHS … BTS/FTS) or an MLLP capture
//! (split by `hl7v2::batch`).
//! A message that cannot be converted is reported on stderr with its file, position and the
//! parser's location, the others are still converted, and the exit status is then 1.

use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `arteria convert`.
#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// HL7 v2 files: single messages, multi-message files, batches or MLLP captures.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Directory of sender profiles (`*.toml`: time zone, identifier systems, Z-segments …).
    #[arg(long, value_name = "DIR")]
    pub profiles: Option<PathBuf>,
    /// Pretty-print each Bundle (no longer one line per message).
    #[arg(long)]
    pub pretty: bool,
    /// Tenant whose salt makes the resource ids.
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// IANA time zone for times without an offset from senders whose profile names none
    /// (default UTC; every such use is reported in the coverage report).
    #[arg(long, value_name = "ZONE")]
    pub fallback_zone: Option<String>,
    /// Also print each message's coverage report (what was not mapped) to stderr.
    #[arg(long)]
    pub report: bool,
    /// Enrich each Bundle as the terminology-enrich stage does: standard codings with displays
    /// beside the originals, quantities with UCUM system and code.
    #[arg(long)]
    pub enrich: bool,
    /// Terminology store files (from `arteria terminology load`) over the shipped content.
    #[arg(long = "store", value_name = "FILE", requires = "enrich")]
    pub stores: Vec<PathBuf>,
}

/// Runs the command; returns the process exit status (0 all converted, 1 some failed).
pub fn run(args: ConvertArgs) -> anyhow::Result<i32> {
    let mut profiles = match &args.profiles {
        Some(dir) => mapping::Profiles::load_dir(dir)
            .with_context(|| format!("loading sender profiles from {}", dir.display()))?,
        None => mapping::Profiles::default(),
    };
    if let Some(z) = &args.fallback_zone {
        profiles = profiles.with_fallback_zone(z).with_context(|| format!("--fallback-zone {z}"))?;
    }
    let term = match (args.enrich, args.stores.is_empty()) {
        (false, _) => None,
        (true, true) => Some(terminology::Terminology::builtin()),
        (true, false) => Some(terminology::Terminology::open(&args.stores).context("opening the terminology stores")?),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0usize;
    for file in &args.files {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", file.display());
                failed += 1;
                continue;
            }
        };
        // hl7v2's splitter: batches, multi-message files, MLLP captures; a file it cannot
        // split (content outside any message, BTS/FTS counts that do not match …) is reported
        // with the byte offset and none of it is converted.
        let split = match hl7v2::batch::split(&bytes) {
            Ok(s) => s,
            Err(hl7v2::batch::BatchError::Empty) => {
                eprintln!("{}: no HL7 v2 message found", file.display());
                failed += 1;
                continue;
            }
            Err(e) => {
                eprintln!("{}: cannot split into messages: {e}", file.display());
                failed += 1;
                continue;
            }
        };
        for (i, chunk) in split.messages().enumerate() {
            let piece = Piece { index: i + 1, offset: chunk.offset, bytes: chunk.bytes };
            match mapping::convert_bytes(piece.bytes, &profiles, &args.tenant) {
                Ok(conv) => {
                    if let Some(term) = &term {
                        let sender = terminology::enrich::sender_key(&conv.sender_application, &conv.sender_facility);
                        let enricher = terminology::Enricher::new(
                            term,
                            terminology::EnrichOptions { sender: Some(sender), ..Default::default() },
                        );
                        let mut bundle: serde_json::Value = serde_json::from_str(&conv.to_bundle_json(false))?;
                        let report = terminology::enrich::enrich_fhir_json(&enricher, &mut bundle);
                        if args.pretty {
                            serde_json::to_writer_pretty(&mut out, &bundle)?;
                        } else {
                            serde_json::to_writer(&mut out, &bundle)?;
                        }
                        if args.report {
                            for (entry, reason) in report.not_mapped() {
                                eprintln!(
                                    "{}: message {}: not enriched {}: {reason:?}",
                                    file.display(),
                                    piece.index,
                                    entry.path
                                );
                            }
                        }
                    } else if args.pretty {
                        out.write_all(conv.to_bundle_json(true).as_bytes())?;
                    } else {
                        conv.write_bundle_json(&mut out)?;
                    }
                    out.write_all(b"\n")?;
                    if args.report {
                        report(file, piece.index, &conv.coverage);
                    }
                }
                Err(e) => {
                    // The parser's location is relative to the message; add where it starts.
                    eprintln!("{}: message {} (starting at byte {}): {e}", file.display(), piece.index, piece.offset);
                    failed += 1;
                }
            }
        }
    }
    out.flush()?;
    Ok(if failed > 0 { 1 } else { 0 })
}

/// One message of a file: its 1-based position and byte offset, for error messages.
struct Piece<'a> {
    index: usize,
    offset: usize,
    bytes: &'a [u8],
}

fn report(file: &std::path::Path, index: usize, cov: &mapping::CoverageReport) {
    let f = file.display();
    for p in &cov.unmapped_segments {
        eprintln!("{f}: message {index}: unmapped segment {p}");
    }
    for p in &cov.unmapped_fields {
        eprintln!("{f}: message {index}: unmapped field {p}");
    }
    for n in &cov.notes {
        eprintln!("{f}: message {index}: {} {}: {}", n.kind.code(), n.place, n.detail);
    }
}
