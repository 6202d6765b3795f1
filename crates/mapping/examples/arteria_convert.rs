//! Runs the `arteria convert` command module (services/cli/src/convert.rs) on its own, so the
//! mapping crate can exercise it before the CLI binary wires it in:
//! `cargo run -p mapping --example arteria_convert -- FILE... [--profiles DIR] [--pretty]`.

#[path = "../../../services/cli/src/convert.rs"]
mod convert;

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: convert::ConvertArgs,
}

fn main() -> anyhow::Result<()> {
    let code = convert::run(Cli::parse().args)?;
    std::process::exit(code);
}
