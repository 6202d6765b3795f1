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
    /// TLS to a query service that serves it (`[query.tls]`), given before the subcommand.
    #[command(flatten)]
    tls: crate::tls::TlsArgs,
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
        let host_port = args.addr.rsplit_once("://").map_or(args.addr.as_str(), |(_, rest)| rest);
        let tls = args.tls.config(host_port)?.map(|(config, server_name)| client::ClientTls { config, server_name });
        let mut c = client::connect_over(&args.addr, args.token.as_deref(), tls)
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

    /// `cert`, `key` PEMs for `name` signed by a new CA, and the CA's PEM.
    fn issued(name: &str, client: bool) -> (String, String, String) {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let mut leaf = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        leaf.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &rcgen::Issuer::from_params(&ca, &ca_key)).unwrap().pem();
        (cert, key.serialize_pem(), ca_pem)
    }

    /// `arteria query` with `argv` (after `query`), run as the CLI runs it (its own runtime).
    fn query(argv: &[&str]) -> Result<ExitCode> {
        let cmd = <Args as clap::Args>::augment_args(clap::Command::new("query"));
        let m = cmd.try_get_matches_from(std::iter::once("query").chain(argv.iter().copied())).unwrap();
        let args = <Args as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
        std::thread::spawn(move || run(&args)).join().unwrap()
    }

    #[test]
    fn reads_from_a_query_service_that_requires_mutual_tls() {
        let d = tempfile::tempdir().unwrap();
        let file = |name: &str, pem: &str| {
            let p = d.path().join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let (server_cert, server_key, server_ca) = issued("127.0.0.1", false);
        let (client_cert, client_key, client_ca) = issued("reader.test", true);
        let files = tls_server::TlsFiles {
            cert: Some(file("server.pem", &server_cert)),
            key: Some(file("server-key.pem", &server_key)),
            client_ca: Some(file("clients.pem", &client_ca)),
        };
        let (ca, cert, key) =
            (file("ca.pem", &server_ca), file("client.pem", &client_cert), file("client-key.pem", &client_key));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = std::sync::Arc::new(query::Store::open(&d.path().join("store"), 4).unwrap());
        let shutdown = bus::Shutdown::new();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = shutdown.clone();
        let service = query::QueryService::new(store, shutdown.clone());
        let tls = files.server_config().unwrap();
        let tls = tls.map(|t| (t, query::server::Handshakes::default()));
        let server = rt.spawn(query::server::serve_with(listener, tls, service, async move { stop.wait().await }));

        let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
        let (ca, cert, key) = (path(&ca), path(&cert), path(&key));
        // Through TLS with the client certificate: the service itself answers (no such patient).
        let e = query(&["--addr", &addr, "--tls", "--ca", &ca, "--cert", &cert, "--key", &key, "patient", "--id", "x"])
            .unwrap_err();
        assert!(format!("{e:#}").contains("Patient/x not found"), "{e:#}");
        // Plaintext to the TLS port, or TLS without the client certificate: no answer from it.
        for argv in [
            vec!["--addr", &addr, "patient", "--id", "x"],
            vec!["--addr", &addr, "--tls", "--ca", &ca, "patient", "--id", "x"],
        ] {
            let e = query(&argv).unwrap_err();
            assert!(!format!("{e:#}").contains("not found"), "{argv:?} was answered: {e:#}");
        }
        shutdown.trigger();
        rt.block_on(server).unwrap().unwrap();
    }
}
