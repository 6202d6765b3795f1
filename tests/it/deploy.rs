//! The Kubernetes manifests (`deploy/kubernetes`) against the services they deploy: each
//! container runs a workspace binary with its ConfigMap's file, exposes exactly the ports that
//! file configures (bound to every interface, or nothing outside the pod reaches it), probes
//! the telemetry endpoint, and the transactional stages take their transactional id from a
//! stable pod name. That each config file loads in its service is a unit test of the service
//! (`the_kubernetes_config_loads`). No cluster needed; when kubectl is on the PATH, `kubectl
//! kustomize` must also render the whole.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

const SERVICES: &[&str] = &["ingest", "normalize", "enrich", "fanout", "query"];
const TRANSACTIONAL: &[&str] = &["normalize", "enrich", "fanout"];

fn dir() -> PathBuf {
    arteria_tests::workspace_root().join("deploy/kubernetes")
}

fn load(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn s(y: &Yaml) -> &str {
    y.as_str().unwrap_or_else(|| panic!("not a string: {y:?}"))
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or(&[])
}

/// Every `...addr` value in a service's cluster config, by key path, and the port of each.
fn addresses(config: &toml::Table, prefix: &str, out: &mut BTreeMap<String, String>) {
    for (k, v) in config {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => addresses(t, &path, out),
            toml::Value::String(a) if k.ends_with("addr") => {
                out.insert(path, a.clone());
            }
            _ => {}
        }
    }
}

/// The service's listening addresses: its built-in defaults with the cluster file over them.
fn listen_ports(service: &str) -> BTreeMap<String, u16> {
    let root = arteria_tests::workspace_root();
    let mut all = BTreeMap::new();
    for f in [root.join(format!("services/{service}/{service}.toml")), dir().join(format!("config/{service}.toml"))] {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        addresses(&table, "", &mut all);
    }
    // A disabled HTTP endpoint listens nowhere.
    all.into_iter()
        .map(|(k, a)| {
            let (host, port) = a.rsplit_once(':').unwrap_or_else(|| panic!("{service}: {k} = {a:?} has no port"));
            assert_eq!(host, "0.0.0.0", "{service}: {k} = {a:?} must listen on every interface in a pod");
            let port = port.parse().unwrap_or_else(|_| panic!("{service}: {k} = {a:?}"));
            (k, port)
        })
        .collect()
}

#[test]
fn every_workload_runs_its_service_with_its_config_ports_and_probes() {
    let kustomization = &load(&dir().join("kustomization.yaml"))[0];
    let generated: BTreeMap<&str, Vec<&str>> = list(&kustomization["configMapGenerator"])
        .iter()
        .map(|g| (s(&g["name"]), list(&g["files"]).iter().map(s).collect()))
        .collect();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let dockerfile = std::fs::read_to_string(arteria_tests::workspace_root().join("deploy/docker/Dockerfile")).unwrap();
    for res in list(&kustomization["resources"]) {
        for doc in load(&dir().join(s(res))) {
            let kind = s(&doc["kind"]);
            if kind != "Deployment" && kind != "StatefulSet" {
                continue;
            }
            let pod = &doc["spec"]["template"];
            let containers = list(&pod["spec"]["containers"]);
            assert_eq!(containers.len(), 1, "{}: one container", s(&doc["metadata"]["name"]));
            let c = &containers[0];
            let command: Vec<&str> = list(&c["command"]).iter().map(s).collect();
            let service = command[0].strip_prefix("/usr/local/bin/").expect("runs a binary of the image");
            assert!(SERVICES.contains(&service), "{service}: not one of the services");
            assert!(seen.insert(service.to_string()), "{service} deployed twice");
            assert!(dockerfile.contains(&format!("target/release/{service}")), "the image lacks {service}");
            assert!(
                dockerfile.contains(&format!("-p arteria-{service}")),
                "the image does not build arteria-{service}"
            );
            assert_eq!(command[1..], ["--config", &format!("/etc/arteria/{service}.toml")][..], "{service}");

            // The config file comes from the ConfigMap generated from config/<service>.toml.
            let cm = format!("arteria-{service}");
            assert_eq!(generated.get(cm.as_str()), Some(&vec![format!("config/{service}.toml").as_str()]));
            let mounts = list(&c["volumeMounts"]);
            let config_mount = mounts.iter().find(|m| s(&m["mountPath"]) == "/etc/arteria").expect("config mounted");
            let volume = list(&pod["spec"]["volumes"])
                .iter()
                .find(|v| v["name"] == config_mount["name"])
                .expect("the config volume");
            assert_eq!(s(&volume["configMap"]["name"]), cm);

            // Ports: exactly what the service listens on.
            let ports = listen_ports(service);
            let declared: BTreeMap<&str, u16> = list(&c["ports"])
                .iter()
                .map(|p| (s(&p["name"]), p["containerPort"].as_i64().unwrap() as u16))
                .collect();
            let want: BTreeSet<u16> = ports.values().copied().collect();
            let got: BTreeSet<u16> = declared.values().copied().collect();
            assert_eq!(got, want, "{service}: container ports against its config {ports:?}");
            let telemetry = ports["telemetry.http_addr"];
            assert_eq!(declared.get("telemetry"), Some(&telemetry), "{service}: the telemetry port is named");
            for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
                let get = &c[probe]["httpGet"];
                assert_eq!((s(&get["path"]), s(&get["port"])), (path, "telemetry"), "{service}: {probe}");
            }
            let scrape = &pod["metadata"]["annotations"]["prometheus.io/port"];
            assert_eq!(s(scrape), telemetry.to_string(), "{service}: Prometheus scrapes the telemetry port");

            // A transactional stage: a StatefulSet, its transactional id the pod's stable name.
            let env: Vec<&Yaml> = list(&c["env"]).iter().collect();
            let txn_var = format!("ARTERIA__{}__TRANSACTIONAL_ID", service.to_uppercase());
            let txn = env.iter().find(|e| s(&e["name"]) == txn_var);
            if TRANSACTIONAL.contains(&service) {
                assert_eq!(kind, "StatefulSet", "{service}: transactional ids need stable pod names");
                let txn = txn.unwrap_or_else(|| panic!("{service}: {txn_var} not set"));
                assert_eq!(s(&txn["valueFrom"]["fieldRef"]["fieldPath"]), "metadata.name");
            } else {
                assert!(txn.is_none(), "{service} has no transactions");
            }

            // The query store lives on the replica's own volume.
            if service == "query" {
                let cfg: toml::Table =
                    std::fs::read_to_string(dir().join("config/query.toml")).unwrap().parse().unwrap();
                let data_dir = cfg["query"]["data_dir"].as_str().expect("data_dir set for the cluster");
                let m = mounts.iter().find(|m| s(&m["mountPath"]) == data_dir).expect("the store's volume mounted");
                let claims = list(&doc["spec"]["volumeClaimTemplates"]);
                assert!(claims.iter().any(|t| t["metadata"]["name"] == m["name"]), "the store is a claim per replica");
            }
            // Nothing runs as root or can write its image.
            assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"].as_bool(), Some(true), "{service}");
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"].as_bool(), Some(true), "{service}");
        }
    }
    assert_eq!(seen, SERVICES.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(), "every service deployed");
}

#[test]
fn kubectl_renders_the_kustomization() {
    let out = match std::process::Command::new("kubectl").arg("kustomize").arg(dir()).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kubectl not found ({e}): rendering not checked; the manifests were checked file by file");
            return;
        }
    };
    assert!(out.status.success(), "kubectl kustomize failed: {}", String::from_utf8_lossy(&out.stderr));
    let docs = YamlLoader::load_from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| s(&d["kind"])).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "ConfigMap").count(), SERVICES.len(), "{kinds:?}");
    // Generated ConfigMaps get a content hash in their name; the workloads must follow it.
    for d in docs.iter().filter(|d| matches!(s(&d["kind"]), "Deployment" | "StatefulSet")) {
        let cm = s(&list(&d["spec"]["template"]["spec"]["volumes"])[0]["configMap"]["name"]);
        assert!(
            docs.iter().any(|c| s(&c["kind"]) == "ConfigMap" && s(&c["metadata"]["name"]) == cm),
            "{cm}: no such ConfigMap rendered"
        );
        let image = s(&list(&d["spec"]["template"]["spec"]["containers"])[0]["image"]);
        assert!(image.starts_with("registry.example.org/arteria/arteria:"), "{image}");
    }
}
