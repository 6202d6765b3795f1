//! `arteria terminology …`: load release files into a store, and look codes up or translate
//! them with the same engine the terminology-enrich service uses (shipped content plus the
//! stores given with `--store`).

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use terminology::{Format, LoadOptions, LoadPolicy, LoadRequest, Terminology};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Load release files (Loinc.csv, SNOMED RF2 snapshot, ICD-10-CM order file, RXNCONSO.RRF,
    /// ucum-essence.xml, FHIR CodeSystem/ValueSet/ConceptMap JSON, HL7 v2 tables, local maps)
    /// into a store file; what the store already holds is kept.
    Load {
        /// The store file to create or extend.
        #[arg(long)]
        store: PathBuf,
        /// Format of the files (loinc, snomed, icd10cm, rxnorm, ucum, fhir, hl7v2-tables,
        /// local-map); detected from the file name when omitted.
        #[arg(long)]
        format: Option<String>,
        /// Refuse the whole load on the first malformed row instead of skipping and reporting.
        #[arg(long)]
        strict: bool,
        /// Version label recorded for the loaded content.
        #[arg(long)]
        version: Option<String>,
        /// For local maps: the sender they apply to, `APPLICATION|FACILITY` (MSH-3.1|MSH-4.1).
        #[arg(long)]
        sender: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a code's display, status and properties.
    Lookup {
        /// Extra store files over the shipped content.
        #[arg(long = "store")]
        stores: Vec<PathBuf>,
        /// System URI or name (e.g. http://loinc.org, LN, SCT, HL70078).
        system: String,
        code: String,
    },
    /// Translate a code through the concept maps (public and the sender's local maps).
    Translate {
        #[arg(long = "store")]
        stores: Vec<PathBuf>,
        /// Only translations into this system.
        #[arg(long)]
        target: Option<String>,
        /// Use this sender's local maps too, `APPLICATION|FACILITY`.
        #[arg(long)]
        sender: Option<String>,
        system: String,
        code: String,
    },
    /// List the loaded code systems.
    Systems {
        #[arg(long = "store")]
        stores: Vec<PathBuf>,
    },
}

fn open(stores: &[PathBuf]) -> Result<Terminology> {
    if stores.is_empty() {
        Ok(Terminology::builtin())
    } else {
        Terminology::open(stores).with_context(|| format!("opening {stores:?}"))
    }
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match &args.command {
        Command::Load { store, format, strict, version, sender, files } => {
            let format = match format {
                Some(f) => Some(Format::parse(f).with_context(|| format!("unknown format {f:?}"))?),
                None => None,
            };
            let options = LoadOptions {
                policy: if *strict { LoadPolicy::Refuse } else { LoadPolicy::SkipAndReport },
                version: version.clone(),
                sender: sender.clone(),
            };
            let requests: Vec<LoadRequest> = files
                .iter()
                .map(|f| {
                    let format = format.or_else(|| Format::detect(f));
                    if format.is_none() {
                        bail!("{}: cannot tell the format from the name; give --format", f.display());
                    }
                    Ok(LoadRequest { format, path: f.clone(), options: options.clone() })
                })
                .collect::<Result<_>>()?;
            let reports = terminology::load_into_store(store, &requests)
                .with_context(|| format!("loading into {}", store.display()))?;
            for r in &reports {
                writeln!(out, "{r}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Lookup { stores, system, code } => {
            let t = open(stores)?;
            let Some(c) = t.lookup(system, code) else {
                eprintln!("{system} {code}: not found");
                return Ok(ExitCode::from(1));
            };
            writeln!(out, "{}|{}  {}", c.code_system().system(), c.code(), c.display())?;
            writeln!(out, "  status: {}", c.status().as_str())?;
            for (k, v) in c.properties() {
                writeln!(out, "  {k}: {v}")?;
            }
            for p in c.parents() {
                writeln!(out, "  parent: {} {}", p.code(), p.display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Translate { stores, target, sender, system, code } => {
            let t = open(stores)?;
            let found = t.translate(system, code, target.as_deref(), sender.as_deref());
            if found.is_empty() {
                eprintln!("{system} {code}: no translation");
                return Ok(ExitCode::from(1));
            }
            for tr in found {
                let via = tr.sender.map(|s| format!(" (local map of {s})")).unwrap_or_default();
                writeln!(
                    out,
                    "{}|{}  {}  [{} via {}{via}]",
                    tr.system,
                    tr.code,
                    tr.display,
                    tr.equivalence.as_str(),
                    tr.map_url
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Systems { stores } => {
            for s in open(stores)?.systems() {
                writeln!(
                    out,
                    "{}  {}  version {}  {} concepts  ({})",
                    s.system, s.name, s.version, s.concepts, s.origin
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
