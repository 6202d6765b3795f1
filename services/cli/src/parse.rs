//! `arteria parse FILE...`: parses every message in each file and reports per file the
//! message count, the message types and every error with its location. Exit code 0 when
//! every message parsed, 1 when any file or message failed. `--json` prints one JSON object
//! per message (JSON Lines) with its grouped structure; summaries then go to stderr.

use anyhow::{Context, Result, bail};
use hl7v2::structure::{Group, Item};
use hl7v2::{Limits, Message, ParseOptions, batch};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files to parse.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print each message's structure as JSON (one object per line).
    #[arg(long)]
    json: bool,
    /// Allow a required MSH field to be empty for these inputs (e.g. `MSH-11`); repeatable.
    #[arg(long = "allow-missing", value_name = "FIELD")]
    allow_missing: Vec<String>,
    /// Replace bytes invalid for the declared character set instead of failing.
    #[arg(long)]
    lenient_charset: bool,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Most segments per message.
    #[arg(long, default_value_t = Limits::default().max_segments)]
    max_segments: usize,
    /// Longest field, in bytes.
    #[arg(long, default_value_t = Limits::default().max_field_bytes)]
    max_field_bytes: usize,
}

fn msh_field(s: &str) -> Result<usize> {
    let n = s.trim().trim_start_matches("MSH-").trim_start_matches("msh-");
    let n: usize = n.parse().with_context(|| format!("--allow-missing {s:?}: expected e.g. MSH-11"))?;
    if !(9..=12).contains(&n) {
        bail!("--allow-missing {s:?}: only MSH-9 to MSH-12 are required fields");
    }
    Ok(n)
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let opts = ParseOptions {
        limits: Limits {
            max_message_bytes: args.max_message_bytes,
            max_segments: args.max_segments,
            max_field_bytes: args.max_field_bytes,
        },
        lenient_charset: args.lenient_charset,
        allow_missing_msh: args.allow_missing.iter().map(|s| msh_field(s)).collect::<Result<_>>()?,
    };
    let mut failed = false;
    for path in &args.files {
        failed |= !parse_file(path, args.json, &opts);
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Parses one file, printing its report. Returns whether everything parsed.
fn parse_file(path: &PathBuf, json_out: bool, opts: &ParseOptions) -> bool {
    let shown = path.display();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{shown}: cannot read: {e}");
            return false;
        }
    };
    let split = match batch::split(&bytes) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{shown}: {e} [HL7 {}]", e.code().code());
            return false;
        }
    };
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    let mut errors = 0;
    let total = split.message_count();
    for (i, chunk) in split.messages().enumerate() {
        let n = i + 1;
        match Message::parse_with(chunk.bytes, opts) {
            Ok(m) => {
                let t = match (m.message_type(), m.trigger()) {
                    (Some(c), Some(t)) => format!("{c}^{t}"),
                    (Some(c), None) => c.to_string(),
                    _ => "?".into(),
                };
                *types.entry(t).or_default() += 1;
                for w in m.warnings() {
                    eprintln!("{shown}: message {n}: warning: {w}");
                }
                if json_out {
                    println!("{}", message_json(&shown.to_string(), n, chunk.offset, &m));
                }
            }
            Err(e) => {
                errors += 1;
                let at = chunk.offset + e.location.offset;
                eprintln!(
                    "{shown}: message {n} (starting at byte {}): {} — file byte {at} [HL7 {}]",
                    chunk.offset,
                    e,
                    e.code().code()
                );
                if json_out {
                    let j = json!({
                        "file": shown.to_string(), "message": n, "offset": chunk.offset,
                        "error": { "text": e.kind.to_string(), "code": e.code().code(),
                                   "segment": e.location.segment, "segment_index": e.location.segment_index,
                                   "field": e.location.field, "byte": at }
                    });
                    println!("{j}");
                }
            }
        }
    }
    let kinds: Vec<String> = types.iter().map(|(t, c)| format!("{t} ×{c}")).collect();
    let summary = format!(
        "{shown}: {total} message{} ({}), {errors} error{}",
        if total == 1 { "" } else { "s" },
        if kinds.is_empty() { "none parsed".to_string() } else { kinds.join(", ") },
        if errors == 1 { "" } else { "s" },
    );
    if json_out {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    errors == 0
}

fn segment_json(m: &Message<'_>, index: usize, extra: bool) -> Json {
    let Some(seg) = m.segment_at(index) else {
        return Json::Null;
    };
    let fields: Vec<&str> = seg.fields().map(|f| f.as_str()).collect();
    let mut j = json!({ "segment": seg.name(), "index": index, "fields": fields });
    if extra {
        j["extra"] = Json::Bool(true);
    }
    j
}

fn group_json(m: &Message<'_>, g: &Group) -> Json {
    let items: Vec<Json> = g
        .items
        .iter()
        .map(|i| match i {
            Item::Segment(n) => segment_json(m, *n, false),
            Item::Extra(n) => segment_json(m, *n, true),
            Item::Group(c) => group_json(m, c),
        })
        .collect();
    json!({ "group": g.name, "items": items })
}

fn message_json(file: &str, n: usize, offset: usize, m: &Message<'_>) -> Json {
    let mut j = json!({
        "file": file,
        "message": n,
        "offset": offset,
        "type": m.message_type(),
        "trigger": m.trigger(),
        "control_id": m.control_id(),
        "version": m.version(),
        "charset": m.charset().hl7_name(),
        "warnings": m.warnings().iter().map(|w| w.to_string()).collect::<Vec<_>>(),
    });
    match m.structure() {
        Ok(g) => j["structure"] = group_json(m, &g),
        Err(e) => {
            j["structure_error"] = json!({ "text": e.to_string(), "code": e.code().code() });
            j["segments"] = Json::Array((1..=m.segment_count()).map(|i| segment_json(m, i, false)).collect());
        }
    }
    j
}
