//! The `arteria` command line. Each subcommand lives in its own module with an `Args`
//! struct and a `run` function returning the process exit code; this file only dispatches,
//! so adding `convert`, `send`, `query` or `terminology` is one enum variant and one module.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod parse;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Parse(args) => parse::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("arteria: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
