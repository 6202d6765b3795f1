//! Rewrites `schemas/*.avsc` of the contract types from the Rust types, for a deliberate schema
//! change: `cargo run -p canonical --example write-schemas`. A file whose schema is unchanged is
//! left as it is (its formatting too). The tests then check the files against the types and
//! every committed version for BACKWARD compatibility, so review the diff before committing.

use std::path::PathBuf;

use apache_avro::{AvroSchema, Schema};

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let types: [(&str, Schema); 4] = [
        ("RawMessage.avsc", canonical::RawMessage::get_schema()),
        ("ClinicalEvent.avsc", canonical::ClinicalEvent::get_schema()),
        ("AuditEvent.avsc", canonical::AuditEvent::get_schema()),
        ("FhirResource.avsc", canonical::FhirResource::get_schema()),
    ];
    for (file, schema) in types {
        let path = dir.join(file);
        let derived = serde_json::to_value(&schema).expect("a schema serialises");
        let current = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| Schema::parse_str(&t).ok())
            .map(|s| serde_json::to_value(&s).expect("a schema serialises"));
        if current.as_ref() == Some(&derived) {
            println!("{file}: unchanged");
            continue;
        }
        let mut text = String::new();
        pretty(&derived, 0, &mut text);
        text.push('\n');
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        println!("{file}: written ({} bytes)", text.len());
    }
}

/// The order keys are written in: a named type's `type`, `name`, `namespace`, `doc` first; a
/// field's `name`, `doc`, `type`, `default` (how the files have always read).
fn key_rank(obj: &serde_json::Map<String, serde_json::Value>, key: &str) -> usize {
    let named = obj.contains_key("fields") || obj.contains_key("symbols");
    let order: &[&str] = if named || obj.contains_key("items") || obj.contains_key("logicalType") {
        &["type", "name", "namespace", "doc", "symbols", "items", "logicalType", "fields", "default"]
    } else {
        &["name", "doc", "type", "default"]
    };
    order.iter().position(|k| *k == key).unwrap_or(order.len())
}

/// Pretty JSON with two-space indentation (serde_json's style) and keys in [`key_rank`] order.
fn pretty(v: &serde_json::Value, indent: usize, out: &mut String) {
    let pad = |n: usize, out: &mut String| out.extend(std::iter::repeat_n(' ', n));
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by_key(|k| (key_rank(m, k), k.as_str()));
            out.push_str("{\n");
            for (i, k) in keys.iter().enumerate() {
                pad(indent + 2, out);
                out.push_str(&serde_json::to_string(k).expect("a key serialises"));
                out.push_str(": ");
                pretty(&m[k.as_str()], indent + 2, out);
                out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
            }
            pad(indent, out);
            out.push('}');
        }
        serde_json::Value::Array(a) if !a.is_empty() => {
            out.push_str("[\n");
            for (i, x) in a.iter().enumerate() {
                pad(indent + 2, out);
                pretty(x, indent + 2, out);
                out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            pad(indent, out);
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).expect("JSON serialises")),
    }
}
