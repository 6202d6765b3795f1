//! The `arteria` command line. Each subcommand lives in its own module with an `Args`
//! struct and a `run` function returning the process exit code; this file only dispatches.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod convert;
mod dlq;
mod parse;
mod query;
mod send;
mod terminology;
mod tls;

#[derive(Debug, Parser)]
#[command(name = "arteria", version, about = "Arteria healthcare integration platform tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse HL7 v2 files (single messages, multi-message files, FHS/BHS batches or MLLP
    /// dumps) and report message types and errors with their location.
    Parse(parse::Args),
    /// Convert HL7 v2 files to FHIR R4 message Bundles, one JSON document per line.
    Convert(convert::ConvertArgs),
    /// Send every message of the files over MLLP and print `<MSH-10> <MSA-1>` per message.
    Send(send::Args),
    /// Read patients and observations from the query service (FHIR JSON, one per line).
    Query(query::Args),
    /// Load terminology releases; look up and translate codes.
    Terminology(terminology::Args),
    /// List a stage's dead letters; replay chosen ones to their source topic.
    Dlq(dlq::Args),
}

/// mimalloc: see the workspace Cargo.toml (allocation dominates conversion).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Behave like other Unix filters when the reader goes away (`arteria parse … | head`):
    // end quietly on SIGPIPE instead of failing a write. Rust ignores SIGPIPE by default.
    // SAFETY: called before any thread is spawned; restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Parse(args) => parse::run(&args),
        Command::Convert(args) => convert::run(args).map(|c| ExitCode::from(u8::try_from(c).unwrap_or(1))),
        Command::Send(args) => send::run(&args),
        Command::Query(args) => query::run(&args),
        Command::Terminology(args) => terminology::run(&args),
        Command::Dlq(args) => dlq::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("arteria: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
