//! How every Arteria service reads its configuration: one TOML file (optional — every key has a
//! documented default) plus environment overrides, deserialised into the service's typed
//! settings. Environment wins, so one image serves every environment (Kubernetes sets env).
//!
//! Overrides name a key by its path with `__` between levels, under the `ARTERIA__` prefix:
//! `ARTERIA__INGEST__MLLP__ADDR=0.0.0.0:2575` sets `[ingest.mllp] addr`. The value is read as a
//! TOML value when it parses as one (`42`, `true`, `["P", "T"]`), else as a string. Two
//! shortcuts match what `deploy/local/stack.sh env` prints: `ARTERIA_KAFKA_BOOTSTRAP` sets
//! `bus.kafka.bootstrap_servers` and `ARTERIA_REGISTRY_URL` sets `bus.registry.url`.
//!
//! One environment (or one file) can serve every service: a section that belongs to another
//! Arteria service ([`SERVICE_SECTIONS`]) is left out for a service that has no such section,
//! so `ARTERIA__QUERY__DATA_DIR` set for the whole deployment does not stop fan-out from
//! starting. Any other unknown key is still an error, so a typo does not pass silently.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

pub const PREFIX: &str = "ARTERIA__";

/// The shortcuts: variable → key path.
pub const SHORTCUTS: &[(&str, &[&str])] = &[
    ("ARTERIA_KAFKA_BOOTSTRAP", &["bus", "kafka", "bootstrap_servers"]),
    ("ARTERIA_REGISTRY_URL", &["bus", "registry", "url"]),
];

/// The top-level sections that belong to one service each (`query` also owns `audit` and
/// `auth`). A service ignores the ones it does not have; see the module doc.
pub const SERVICE_SECTIONS: &[&str] = &["ingest", "normalize", "enrich", "fanout", "query", "audit", "auth"];

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid TOML: {detail}")]
    Syntax { path: PathBuf, detail: String },
    #[error("environment variable {var} cannot override {key}: {detail}")]
    Override { var: String, key: String, detail: String },
    #[error("invalid configuration ({origin}): {detail}")]
    Invalid { origin: String, detail: String },
}

fn parse_value(raw: &str) -> Value {
    // `toml` parses documents, so wrap the value in one.
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

fn set_path(root: &mut Table, path: &[String], value: Value, var: &str) -> Result<(), SettingsError> {
    let key = path.join(".");
    let Some((last, parents)) = path.split_last() else {
        return Err(SettingsError::Override { var: var.into(), key, detail: "empty key".into() });
    };
    let mut t = root;
    for p in parents {
        let entry = t.entry(p.clone()).or_insert_with(|| Value::Table(Table::new()));
        t = match entry {
            Value::Table(t) => t,
            _ => {
                return Err(SettingsError::Override {
                    var: var.into(),
                    key,
                    detail: format!("{p} is a value, not a section"),
                });
            }
        };
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// Applies the overrides found in `vars` to `table`.
pub fn apply_overrides<I>(table: &mut Table, vars: I) -> Result<(), SettingsError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut vars: Vec<(String, String)> = vars.into_iter().collect();
    // Deterministic order: shortcuts first, then the specific ARTERIA__ keys, sorted.
    vars.sort();
    for (var, raw) in &vars {
        if let Some((_, path)) = SHORTCUTS.iter().find(|(v, _)| v == var) {
            let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            set_path(table, &path, Value::String(raw.clone()), var)?;
        }
    }
    for (var, raw) in &vars {
        if let Some(rest) = var.strip_prefix(PREFIX) {
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(SettingsError::Override {
                    var: var.clone(),
                    key: rest.into(),
                    detail: "empty key part".into(),
                });
            }
            set_path(table, &path, parse_value(raw), var)?;
        }
    }
    Ok(())
}

/// Merges `over` into `base`: sections merge key by key, any other value replaces.
pub fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Reads `path` (when given) and the process environment into `T`.
pub fn load<T: DeserializeOwned>(path: Option<&Path>) -> Result<T, SettingsError> {
    load_with("", path, std::env::vars())
}

/// [`load`] over a service's own defaults (a TOML document, e.g. its shipped example file):
/// defaults, then the file, then the environment.
pub fn load_over<T: DeserializeOwned>(defaults: &str, path: Option<&Path>) -> Result<T, SettingsError> {
    load_with(defaults, path, std::env::vars())
}

/// [`load_over`] with an explicit environment (for tests).
pub fn load_with<T: DeserializeOwned, I>(defaults: &str, path: Option<&Path>, vars: I) -> Result<T, SettingsError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut table = defaults
        .parse::<Table>()
        .map_err(|e| SettingsError::Syntax { path: "<built-in defaults>".into(), detail: e.to_string() })?;
    if let Some(p) = path {
        let text = std::fs::read_to_string(p).map_err(|source| SettingsError::Read { path: p.into(), source })?;
        let file =
            text.parse::<Table>().map_err(|e| SettingsError::Syntax { path: p.into(), detail: e.to_string() })?;
        merge(&mut table, file);
    }
    apply_overrides(&mut table, vars)?;
    if let Some(fields) = struct_fields::<T>() {
        table.retain(|k, _| fields.contains(&k) || !SERVICE_SECTIONS.contains(&k));
    }
    let origin = path.map(|p| p.display().to_string()).unwrap_or_else(|| "defaults and environment".into());
    T::deserialize(Value::Table(table)).map_err(|e| SettingsError::Invalid { origin, detail: e.to_string() })
}

/// The field names of `T` when it deserialises as a struct (serde's derive passes them to
/// `deserialize_struct`), without deserialising anything.
fn struct_fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    use serde::de::{self, Visitor};
    struct Probe<'a>(&'a mut Option<&'static [&'static str]>);
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = Some(fields);
            Err(de::Error::custom("fields probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields = None;
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Kafka {
        bootstrap_servers: String,
        retries: u32,
    }
    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Bus {
        kafka: Kafka,
    }
    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Svc {
        bus: Bus,
        ids: Vec<String>,
        enabled: bool,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_when_nothing_is_given() {
        let s: Svc = load_with("", None, env(&[])).unwrap();
        assert_eq!(s, Svc::default());
    }

    #[test]
    fn file_then_environment_with_typed_values() {
        let dir = std::env::temp_dir().join(format!("settings-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("svc.toml");
        std::fs::write(&f, "enabled = false\n[bus.kafka]\nbootstrap_servers = \"file:9092\"\nretries = 1\n").unwrap();
        let s: Svc = load_with(
            "",
            Some(&f),
            env(&[
                ("ARTERIA__BUS__KAFKA__RETRIES", "7"),
                ("ARTERIA__ENABLED", "true"),
                ("ARTERIA__IDS", r#"["P", "T"]"#),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.bus.kafka.bootstrap_servers, "file:9092");
        assert_eq!(s.bus.kafka.retries, 7);
        assert!(s.enabled);
        assert_eq!(s.ids, vec!["P", "T"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn shortcut_and_specific_override_the_specific_wins() {
        let s: Svc = load_with("", None, env(&[("ARTERIA_KAFKA_BOOTSTRAP", "short:1")])).unwrap();
        assert_eq!(s.bus.kafka.bootstrap_servers, "short:1");
        let s: Svc = load_with(
            "",
            None,
            env(&[("ARTERIA_KAFKA_BOOTSTRAP", "short:1"), ("ARTERIA__BUS__KAFKA__BOOTSTRAP_SERVERS", "long:2")]),
        )
        .unwrap();
        assert_eq!(s.bus.kafka.bootstrap_servers, "long:2");
    }

    #[test]
    fn service_defaults_sit_under_the_file_section_by_section() {
        let dir = std::env::temp_dir().join(format!("settings-test-d-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("svc.toml");
        std::fs::write(&f, "[bus.kafka]\nretries = 3\n").unwrap();
        let defaults = "enabled = true\n[bus.kafka]\nbootstrap_servers = \"default:9092\"\nretries = 1\n";
        let s: Svc = load_with(defaults, Some(&f), env(&[])).unwrap();
        assert!(s.enabled, "from the defaults");
        assert_eq!(s.bus.kafka.bootstrap_servers, "default:9092", "sibling key kept from the defaults");
        assert_eq!(s.bus.kafka.retries, 3, "the file wins over the defaults");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn another_services_section_is_left_out_but_a_misspelt_one_is_refused() {
        let shared = env(&[
            ("ARTERIA__QUERY__DATA_DIR", "/var/lib/arteria"),
            ("ARTERIA__INGEST__MLLP__ADDR", "0.0.0.0:2575"),
            ("ARTERIA__BUS__KAFKA__RETRIES", "4"),
        ]);
        let s: Svc = load_with("[fanout]\nx = 1\n", None, shared).unwrap();
        assert_eq!(s.bus.kafka.retries, 4, "the shared sections still apply");
        let e = load_with::<Svc, _>("", None, env(&[("ARTERIA__QEURY__DATA_DIR", "/x")])).unwrap_err();
        assert!(e.to_string().contains("qeury"), "{e}");
        assert_eq!(struct_fields::<Svc>(), Some(&["bus", "ids", "enabled"][..]));
        assert_eq!(struct_fields::<Vec<String>>(), None);
    }

    #[test]
    fn a_service_keeps_its_own_section_strict() {
        #[derive(Debug, Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct Query {
            data_dir: String,
        }
        #[derive(Debug, Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct QuerySvc {
            query: Query,
        }
        let s: QuerySvc = load_with("", None, env(&[("ARTERIA__QUERY__DATA_DIR", "/d")])).unwrap();
        assert_eq!(s.query.data_dir, "/d");
        let e = load_with::<QuerySvc, _>("", None, env(&[("ARTERIA__QUERY__DATA_DRI", "/d")])).unwrap_err();
        assert!(e.to_string().contains("data_dri"), "{e}");
    }

    #[test]
    fn errors_name_the_problem() {
        let e = load_with::<Svc, _>("", None, env(&[("ARTERIA__BUS__KAFKA__RETRIES", "many")])).unwrap_err();
        assert!(e.to_string().contains("invalid configuration"), "{e}");
        let e = load_with::<Svc, _>("", None, env(&[("ARTERIA__NOPE", "1")])).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = load_with::<Svc, _>("", Some(Path::new("/nonexistent/x.toml")), env(&[])).unwrap_err();
        assert!(matches!(e, SettingsError::Read { .. }));
    }
}
