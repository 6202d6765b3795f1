//! The Avro shape of the canonical model: every model type describes its own Avro record, so
//! the typed FHIR records in `schemas/*.avsc` are derived from the same Rust types the mapping
//! fills (and tested to equal the committed files).
//!
//! The rule is one Avro field per FHIR JSON key, named exactly as the key, so an analyst's path
//! is the FHIR path (`valueQuantity.value`, `code.coding[].code`):
//! - an element is `["null", T]` with default null, a repeating one an array with default `[]`
//!   (FHIR leaves empty elements out, so absent and empty are the same thing);
//! - a choice element (`value[x]`) is one such field per variant (`valueQuantity`, `valueString` …);
//! - `decimal` is a string holding the JSON digits exactly ("1.50" stays "1.50");
//! - dates and times are the FHIR strings, with the source's precision and offset;
//! - integers are `long`; each struct is a named record in [`FHIR_NAMESPACE`], defined once
//!   and referenced by name afterwards (recursion, e.g. Identifier ↔ Reference, included).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde_json::{Value, json};

/// Namespace of the typed FHIR records (the contract records stay in `org.arteria.v1`).
pub const FHIR_NAMESPACE: &str = "org.arteria.fhir.r4";

/// What a field holds, once lists and optionality are set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    /// A FHIR decimal: an Avro string with the exact digits, a JSON number in FHIR JSON.
    Decimal,
    Boolean,
    Long,
    /// A record, by index into [`Shapes::records`].
    Record(usize),
}

/// How a Rust field type appears in its parent record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elem {
    One {
        kind: Kind,
        list: bool,
    },
    /// A choice element: one optional field per (JSON key, kind).
    Choice(Vec<(&'static str, Kind)>),
}

impl Elem {
    pub fn record(id: usize) -> Elem {
        Elem::One { kind: Kind::Record(id), list: false }
    }

    /// The kind of a choice variant; variants are single values by construction of the model.
    pub fn single_kind(self, key: &str) -> Kind {
        match self {
            Elem::One { kind, list: false } => kind,
            other => panic!("choice variant {key} must be a single value, not {other:?}"),
        }
    }
}

/// One field of a typed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldShape {
    /// The FHIR JSON key, also the Avro field name.
    pub name: String,
    pub kind: Kind,
    pub list: bool,
}

/// One typed record (a FHIR datatype, backbone element or resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordShape {
    /// The Rust type name, also the Avro record name.
    pub name: &'static str,
    pub fields: Vec<FieldShape>,
}

impl RecordShape {
    /// The position of the field with this JSON key.
    pub fn field(&self, json_key: &str) -> Option<usize> {
        self.field_from(json_key, 0)
    }

    /// The same, trying position `hint` first: JSON written from the model has its keys in
    /// field order, so the next key is almost always the next field (no hashing per key).
    pub fn field_from(&self, json_key: &str, hint: usize) -> Option<usize> {
        let n = self.fields.len();
        (0..n).map(|i| (hint + i) % n).find(|&i| self.fields[i].name == json_key)
    }
}

/// A Rust type of the model that knows its Avro shape.
pub trait AvroModel {
    fn avro_elem(b: &mut ShapeBuilder) -> Elem;
}

/// Collects the records while the model's types describe themselves.
#[derive(Debug, Default)]
pub struct ShapeBuilder {
    records: Vec<Option<RecordShape>>,
    by_name: HashMap<&'static str, usize>,
}

impl ShapeBuilder {
    /// The id of the record `name`, describing its fields with `fields` the first time. The id
    /// is reserved before the fields are described, so recursive types refer to themselves.
    pub fn record(&mut self, name: &'static str, fields: impl FnOnce(&mut Self) -> Vec<FieldShape>) -> usize {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        let id = self.records.len();
        self.records.push(None);
        self.by_name.insert(name, id);
        let fields = fields(self);
        let unique = fields.iter().map(|f| f.name.as_str()).collect::<HashSet<_>>();
        assert_eq!(unique.len(), fields.len(), "record {name} has two fields with the same JSON key");
        self.records[id] = Some(RecordShape { name, fields });
        id
    }
}

/// Adds the field(s) of one Rust field to a record.
pub fn push_field(fields: &mut Vec<FieldShape>, name: String, elem: Elem) {
    match elem {
        Elem::One { kind, list } => fields.push(FieldShape { name, kind, list }),
        Elem::Choice(variants) => {
            fields.extend(variants.into_iter().map(|(key, kind)| FieldShape { name: key.into(), kind, list: false }))
        }
    }
}

/// serde's `rename_all = "camelCase"` for a Rust field name (raw identifiers unprefixed).
pub fn camel_case(rust: &str) -> String {
    let rust = rust.strip_prefix("r#").unwrap_or(rust);
    let mut out = String::with_capacity(rust.len());
    let mut upper = false;
    for c in rust.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

macro_rules! leaf {
    ($kind:expr => $($t:ty),*) => {
        $(impl AvroModel for $t {
            fn avro_elem(_: &mut ShapeBuilder) -> Elem {
                Elem::One { kind: $kind, list: false }
            }
        })*
    };
}
leaf!(Kind::String => String, &'static str);
leaf!(Kind::Boolean => bool);
leaf!(Kind::Long => u32, u64, i32, i64);

impl<T: AvroModel> AvroModel for Option<T> {
    fn avro_elem(b: &mut ShapeBuilder) -> Elem {
        T::avro_elem(b)
    }
}

impl<T: AvroModel> AvroModel for Box<T> {
    fn avro_elem(b: &mut ShapeBuilder) -> Elem {
        T::avro_elem(b)
    }
}

impl<T: AvroModel> AvroModel for Vec<T> {
    fn avro_elem(b: &mut ShapeBuilder) -> Elem {
        match T::avro_elem(b) {
            Elem::One { kind, list: false } => Elem::One { kind, list: true },
            other => panic!("a list of {other:?} has no FHIR JSON form in the model"),
        }
    }
}

/// Every typed record, and the resource records in the order of [`crate::model::Resource`]
/// (the order of the branches of the `typed` unions).
#[derive(Debug)]
pub struct Shapes {
    pub records: Vec<RecordShape>,
    /// (resource type, record id), in union order (after `null`).
    pub resources: Vec<(&'static str, usize)>,
}

impl Shapes {
    /// The union branch (0-based, not counting `null`) and record of a resource type.
    pub fn resource(&self, resource_type: &str) -> Option<(usize, &RecordShape)> {
        self.resources.iter().position(|(t, _)| *t == resource_type).map(|i| (i, &self.records[self.resources[i].1]))
    }

    /// The schema JSON of a `["null", <every resource record>]` union, records defined inline.
    pub fn resource_union_json(&self) -> Value {
        let mut defined = HashSet::new();
        let mut branches = vec![json!("null")];
        branches.extend(self.resources.iter().map(|&(_, id)| self.kind_json(Kind::Record(id), &mut defined)));
        Value::Array(branches)
    }

    fn kind_json(&self, kind: Kind, defined: &mut HashSet<usize>) -> Value {
        match kind {
            Kind::String | Kind::Decimal => json!("string"),
            Kind::Boolean => json!("boolean"),
            Kind::Long => json!("long"),
            Kind::Record(id) => {
                let r = &self.records[id];
                if !defined.insert(id) {
                    return json!(format!("{FHIR_NAMESPACE}.{}", r.name));
                }
                let fields: Vec<Value> = r.fields.iter().map(|f| self.field_json(f, defined)).collect();
                json!({"type": "record", "name": r.name, "namespace": FHIR_NAMESPACE, "fields": fields})
            }
        }
    }

    fn field_json(&self, f: &FieldShape, defined: &mut HashSet<usize>) -> Value {
        let t = self.kind_json(f.kind, defined);
        let mut v = if f.list {
            json!({"name": f.name, "type": {"type": "array", "items": t}, "default": []})
        } else {
            json!({"name": f.name, "type": ["null", t], "default": null})
        };
        if f.kind == Kind::Decimal {
            v["doc"] = json!("FHIR decimal: the JSON number's exact digits as text, e.g. \"1.50\".");
        }
        v
    }
}

/// The shapes of the model, described once.
pub fn shapes() -> &'static Shapes {
    static SHAPES: OnceLock<Shapes> = OnceLock::new();
    SHAPES.get_or_init(crate::model::resources::describe)
}

/// Builds [`Shapes`] from a builder whose resources were described in union order.
pub(crate) fn finish(b: ShapeBuilder, resources: Vec<(&'static str, usize)>) -> Shapes {
    let records = b.records.into_iter().map(|r| r.expect("every reserved record is described")).collect();
    Shapes { records, resources }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_as_serde_does() {
        assert_eq!(camel_case("postal_code"), "postalCode");
        assert_eq!(camel_case("r#type"), "type");
        assert_eq!(camel_case("occurred_date_time"), "occurredDateTime");
        assert_eq!(camel_case("id"), "id");
    }

    #[test]
    fn records_follow_the_json_keys() {
        let s = shapes();
        let (_, obs) = s.resource("Observation").unwrap();
        let names: Vec<&str> = obs.fields.iter().map(|f| f.name.as_str()).collect();
        for key in
            ["id", "basedOn", "effectiveDateTime", "effectivePeriod", "valueQuantity", "valueString", "referenceRange"]
        {
            assert!(names.contains(&key), "{key} in {names:?}");
        }
        assert!(!names.contains(&"value") && !names.contains(&"effective"), "choices are expanded: {names:?}");
        let q = obs.fields[obs.field("valueQuantity").unwrap()].kind;
        let Kind::Record(q) = q else { panic!("Quantity is a record") };
        let value = &s.records[q].fields[s.records[q].field("value").unwrap()];
        assert_eq!(value.kind, Kind::Decimal);
        let (_, p) = s.resource("Patient").unwrap();
        assert!(p.field("_birthDate").is_some(), "explicit serde renames are kept");
        assert_eq!(s.resources.len(), 21);
    }
}
