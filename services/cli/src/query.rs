//! `arteria query …`: reads from the query service's gRPC API and prints FHIR JSON, one
//! resource per line.

use anyhow::{Context, Result};
use query::client::{self, PatientRef};
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Query service address.
    #[arg(long, default_value = "127.0.0.1:50051", global = true)]
    addr: String,
    /// OAuth2 bearer token (JWT) for a query service with `auth.mode = "jwt"`.
    #[arg(long, env = "ARTERIA_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// A patient named by resource id or by identifier (`VALUE` or `SYSTEM|VALUE`).
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Who {
    /// The Patient resource id.
    #[arg(long)]
    id: Option<String>,
    /// An identifier: `VALUE` (any system) or `SYSTEM|VALUE`.
    #[arg(long)]
    identifier: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// One patient.
    Patient {
        #[command(flatten)]
        who: Who,
    },
    /// A patient's observations, newest first.
    Observations {
        /// The patient's resource id.
        #[arg(long, conflicts_with = "patient_identifier")]
        patient_id: Option<String>,
        /// The patient's identifier: `VALUE` or `SYSTEM|VALUE`.
        #[arg(long, required_unless_present = "patient_id")]
        patient_identifier: Option<String>,
        /// Only these codes (`CODE` or `SYSTEM|CODE`); repeatable.
        #[arg(long = "code")]
        codes: Vec<String>,
        /// Effective at or after (FHIR date or dateTime).
        #[arg(long)]
        from: Option<String>,
        /// Effective at or before.
        #[arg(long)]
        to: Option<String>,
    },
}

fn patient_ref(id: Option<&str>, identifier: Option<&str>) -> PatientRef {
    match (id, identifier) {
        (Some(id), _) => PatientRef::Id(id.into()),
        (None, Some(i)) => match i.split_once('|') {
            Some((system, value)) => PatientRef::Identifier { system: system.into(), value: value.into() },
            None => PatientRef::Identifier { system: String::new(), value: i.into() },
        },
        (None, None) => unreachable!("clap requires one of them"),
    }
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut c = client::connect_as(&args.addr, args.token.as_deref())
            .await
            .context("is the query service running? (make up)")?;
        let mut out = std::io::stdout().lock();
        match &args.command {
            Command::Patient { who } => {
                let r = client::patient(&mut c, &patient_ref(who.id.as_deref(), who.identifier.as_deref())).await?;
                writeln!(out, "{}", r.json)?;
            }
            Command::Observations { patient_id, patient_identifier, codes, from, to } => {
                let who = patient_ref(patient_id.as_deref(), patient_identifier.as_deref());
                for r in client::observations(&mut c, &who, codes, from.as_deref(), to.as_deref()).await? {
                    writeln!(out, "{}", r.json)?;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_with_and_without_a_system() {
        assert_eq!(patient_ref(None, Some("NW-1")), PatientRef::Identifier { system: "".into(), value: "NW-1".into() });
        assert_eq!(
            patient_ref(None, Some("urn:oid:1.2|NW-1")),
            PatientRef::Identifier { system: "urn:oid:1.2".into(), value: "NW-1".into() }
        );
        assert_eq!(patient_ref(Some("p1"), None), PatientRef::Id("p1".into()));
    }
}
