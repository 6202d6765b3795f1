//! `make schemas-check`: every `schemas/*.avsc` parses, is exactly what its Rust type derives,
//! and can read every committed earlier version of itself (BACKWARD). An incompatible change
//! is refused both by this check and by the registry.

use std::collections::BTreeMap;

use apache_avro::{AvroSchema, Schema};
use arteria_tests::schema_check::{History, check_backward, committed_versions, parse, schema_files};
use arteria_tests::{register_schema as register, require_stack, set_compatibility, unique, workspace_root};

fn rust_types() -> BTreeMap<&'static str, Schema> {
    BTreeMap::from([
        ("schemas/RawMessage.avsc", canonical::RawMessage::get_schema()),
        ("schemas/ClinicalEvent.avsc", canonical::ClinicalEvent::get_schema()),
        ("schemas/AuditEvent.avsc", canonical::AuditEvent::get_schema()),
        ("schemas/FhirResource.avsc", canonical::FhirResource::get_schema()),
        ("schemas/DeadLetter.avsc", bus::DeadLetter::get_schema()),
    ])
}

#[test]
fn every_schema_parses_and_is_exactly_its_rust_type() {
    let files = schema_files(&workspace_root()).expect("schemas/ is readable");
    let mut types = rust_types();
    let mut problems = Vec::new();
    for f in &files {
        let schema = match parse(&f.text) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{} does not parse: {e}", f.rel_path));
                continue;
            }
        };
        if let Schema::Record(r) = &schema
            && r.name.namespace() != Some("org.arteria.v1")
        {
            problems.push(format!("{}: namespace {:?}, expected org.arteria.v1", f.rel_path, r.name.namespace()));
        }
        let Some(derived) = types.remove(f.rel_path.as_str()) else {
            problems.push(format!("{} has no Rust type checked against it (add it to rust_types())", f.rel_path));
            continue;
        };
        if derived.canonical_form() != schema.canonical_form()
            || serde_json::to_value(&derived).unwrap() != serde_json::to_value(&schema).unwrap()
        {
            problems.push(format!(
                "{} differs from its Rust type; the type derives:\n{}",
                f.rel_path,
                serde_json::to_string_pretty(&derived).unwrap()
            ));
        }
    }
    for missing in types.keys() {
        problems.push(format!("{missing} is missing"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_schema_can_read_all_its_committed_versions() {
    let root = workspace_root();
    let files = schema_files(&root).unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    for f in &files {
        match committed_versions(&root, &f.rel_path) {
            History::Unavailable(why) => {
                eprintln!(
                    "!!! schemas-check: cannot read the history of {} ({why}); BACKWARD check skipped for it",
                    f.rel_path
                );
                if std::env::var("CI").as_deref() == Ok("true") && !why.starts_with("shallow") {
                    problems.push(format!("{}: history unavailable in CI: {why}", f.rel_path));
                }
            }
            History::Versions(vs) => {
                if vs.is_empty() {
                    eprintln!("schemas-check: {} is new (no committed version yet)", f.rel_path);
                }
                for (rev, old) in vs {
                    checked += 1;
                    if let Err(e) = check_backward(&old, &f.text) {
                        problems
                            .push(format!("{} cannot read data written with its version at {rev}: {e}", f.rel_path));
                    }
                }
            }
        }
    }
    eprintln!("schemas-check: {} files, {checked} committed versions checked for BACKWARD compatibility", files.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// RawMessage.avsc with one change applied to its JSON.
fn raw_message_with(change: impl FnOnce(&mut serde_json::Value)) -> String {
    let text = std::fs::read_to_string(workspace_root().join("schemas/RawMessage.avsc")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    change(&mut v);
    v.to_string()
}

fn add_required_field(v: &mut serde_json::Value) {
    v["fields"].as_array_mut().unwrap().push(serde_json::json!({"name": "priority", "type": "int"}));
}

fn add_optional_field(v: &mut serde_json::Value) {
    v["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "priority", "type": ["null", "int"], "default": null}));
}

fn change_id_type(v: &mut serde_json::Value) {
    for f in v["fields"].as_array_mut().unwrap() {
        if f["name"] == "id" {
            f["type"] = serde_json::json!("long");
        }
    }
}

#[test]
fn the_check_refuses_incompatible_changes_and_accepts_compatible_ones() {
    let current = std::fs::read_to_string(workspace_root().join("schemas/RawMessage.avsc")).unwrap();
    let e = check_backward(&current, &raw_message_with(add_required_field)).unwrap_err();
    assert!(e.contains("priority"), "the error names the field: {e}");
    assert!(check_backward(&current, &raw_message_with(change_id_type)).is_err());
    assert_eq!(check_backward(&current, &raw_message_with(add_optional_field)), Ok(()));
}

#[tokio::test]
async fn the_registry_refuses_incompatible_changes() {
    require_stack();
    let client = reqwest::Client::new();
    let subject = format!("{}-value", unique("compat"));
    let v1 = std::fs::read_to_string(workspace_root().join("schemas/RawMessage.avsc")).unwrap();
    let r = register(&client, &subject, &v1).await;
    assert!(r.status().is_success(), "v1 registers: {} {}", r.status(), r.text().await.unwrap_or_default());
    set_compatibility(&client, &subject, "BACKWARD").await;

    for (what, bad) in [
        ("a required field without default", raw_message_with(add_required_field)),
        ("a type change", raw_message_with(change_id_type)),
    ] {
        let r = register(&client, &subject, &bad).await;
        assert_eq!(r.status().as_u16(), 409, "{what} must be refused with 409: {}", r.text().await.unwrap_or_default());
    }
    // The same subject accepts a compatible change: the 409s were about compatibility.
    let r = register(&client, &subject, &raw_message_with(add_optional_field)).await;
    assert!(r.status().is_success(), "compatible v2 registers: {}", r.status());
}
