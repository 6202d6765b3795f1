//! The typed form of a resource on the wire: FHIR JSON ↔ the `org.arteria.fhir.r4` Avro records
//! of [`crate::model::avro`].
//!
//! The typed record is derived from the resource's FHIR JSON when the record is encoded, not
//! stored beside it, so the two can never disagree whoever built or changed the JSON (mapping,
//! enrichment, fan-out). The JSON is read once with the shape as a guide: decimals are taken as
//! their raw digits, every key must be an element the model knows, and nothing is guessed. A
//! resource the typed model cannot hold exactly (an unknown type or element) is written with
//! `typed` null — `fhir_json` always carries the complete resource.
//!
//! Errors name the element path and position only, never a value (values are PHI).

use std::borrow::Cow;
use std::fmt;

use apache_avro::types::Value as AvroValue;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeTupleStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::avro::{FieldShape, Kind, RecordShape, Shapes, shapes};

/// Why a resource has no typed form, or a typed value no FHIR JSON form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypedError {
    #[error("resource type {0:?} has no typed record")]
    UnknownResourceType(String),
    /// The JSON does not fit the typed model; `detail` names the element path and position.
    #[error("{resource_type} JSON does not fit the typed model: {detail}")]
    Json { resource_type: String, detail: String },
    /// An Avro value is not a typed record of this schema.
    #[error("typed Avro value does not fit the model at {path}: {detail}")]
    Avro { path: String, detail: String },
}

/// A resource's FHIR JSON read into the shape of its typed record (borrowing the JSON's text).
#[derive(Debug, Clone, PartialEq)]
pub struct TypedResource<'a> {
    /// The union branch (0-based, after `null`) of the resource type.
    branch: usize,
    record: TypedRecord<'a>,
}

#[derive(Debug, Clone, PartialEq)]
struct TypedRecord<'a> {
    shape: &'static RecordShape,
    /// Present fields as (position in the shape, value), in shape order.
    fields: Vec<(usize, TValue<'a>)>,
}

#[derive(Debug, Clone, PartialEq)]
enum TValue<'a> {
    Str(Cow<'a, str>),
    Decimal(&'a str),
    Bool(bool),
    Long(i64),
    Record(TypedRecord<'a>),
    List(Vec<TValue<'a>>),
}

impl<'a> TypedResource<'a> {
    /// Reads `json` (one resource of type `resource_type`) into its typed record. Fails on
    /// anything the record could not give back exactly: an unknown element, a value of the wrong
    /// JSON type, `null`, an empty array, a duplicate key, a `resourceType` other than the one
    /// given.
    pub fn from_json(resource_type: &str, json: &'a str) -> Result<Self, TypedError> {
        let s = shapes();
        let (branch, shape) =
            s.resource(resource_type).ok_or_else(|| TypedError::UnknownResourceType(resource_type.to_string()))?;
        let mut de = serde_json::Deserializer::from_str(json);
        let seed = RecordSeed { shapes: s, shape, path: Path::Root(shape.name), top: Some(resource_type) };
        let record = seed
            .deserialize(&mut de)
            .and_then(|r| de.end().map(|()| r))
            .map_err(|e| TypedError::Json { resource_type: resource_type.to_string(), detail: e.to_string() })?;
        Ok(TypedResource { branch, record })
    }

    /// The resource type.
    pub fn resource_type(&self) -> &'static str {
        self.record.shape.name
    }

    /// The union branch of this resource in a `typed` field, counting `null` as branch 0.
    pub fn union_index(&self) -> usize {
        self.branch + 1
    }
}

/// Where in the resource a value is, for error messages (element names only).
#[derive(Clone, Copy)]
enum Path<'p> {
    Root(&'static str),
    Field(&'p Path<'p>, &'static str),
    Item(&'p Path<'p>),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Item(parent) => write!(f, "{parent}[]"),
        }
    }
}

/// The `visit_*` methods a visitor does not accept, each refusing with the path and the JSON type
/// expected — never the value found (serde's default messages quote it).
macro_rules! refuse {
    (@one $f:expr, bool) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { { let (p, e) = ($f)(&self); Err(wrong_type(p, e)) } }
    };
    (@one $f:expr, i64) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { { let (p, e) = ($f)(&self); Err(wrong_type(p, e)) } }
    };
    (@one $f:expr, u64) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { { let (p, e) = ($f)(&self); Err(wrong_type(p, e)) } }
    };
    (@one $f:expr, f64) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { { let (p, e) = ($f)(&self); Err(wrong_type(p, e)) } }
    };
    (@one $f:expr, str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { { let (p, e) = ($f)(&self); Err(wrong_type(p, e)) } }
    };
    (@one $f:expr, unit) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { { let (p, e) = ($f)(&self); Err(wrong_type(p, e)) } }
    };
    (@one $f:expr, map) => {
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> { { let (p, e) = ($f)(&self); Err(wrong_type(p, e)) } }
    };
    (@one $f:expr, seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> { { let (p, e) = ($f)(&self); Err(wrong_type(p, e)) } }
    };
    ($f:expr; $($m:ident),*) => { $(refuse!(@one $f, $m);)* };
}

struct RecordSeed<'p> {
    shapes: &'static Shapes,
    shape: &'static RecordShape,
    path: Path<'p>,
    /// At the top of a resource: the `resourceType` expected.
    top: Option<&'p str>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = TypedRecord<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = TypedRecord<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object at {}", self.path)
    }

    refuse!(|s: &Self| (s.path, "an object"); bool, i64, u64, f64, str, unit, seq);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: Vec<(usize, TValue<'de>)> = Vec::with_capacity(8);
        let mut seen_type = false;
        let mut hint = 0;
        while let Some(key) = map.next_key_seed(KeySeed { shape: self.shape, top: self.top.is_some(), hint })? {
            match key {
                Key::ResourceType => {
                    let t: Cow<'de, str> = map.next_value_seed(StrSeed(Path::Field(&self.path, "resourceType")))?;
                    if seen_type || Some(t.as_ref()) != self.top {
                        return Err(de::Error::custom(format_args!(
                            "{}.resourceType is not {}",
                            self.path, self.shape.name
                        )));
                    }
                    seen_type = true;
                }
                Key::Field(i) => {
                    hint = i + 1;
                    let f: &'static FieldShape = &self.shape.fields[i];
                    let path = Path::Field(&self.path, f.name.as_str());
                    let v = map.next_value_seed(FieldSeed { shapes: self.shapes, field: f, path })?;
                    match fields.binary_search_by_key(&i, |(j, _)| *j) {
                        Ok(_) => return Err(de::Error::custom(format_args!("{path} appears twice"))),
                        Err(at) => fields.insert(at, (i, v)),
                    }
                }
                Key::Unknown(k) => {
                    return Err(de::Error::custom(format_args!(
                        "{}.{k} is not an element of the typed model",
                        self.path
                    )));
                }
            }
        }
        if self.top.is_some() && !seen_type {
            return Err(de::Error::custom(format_args!("{} has no resourceType", self.path)));
        }
        Ok(TypedRecord { shape: self.shape, fields })
    }
}

enum Key {
    ResourceType,
    Field(usize),
    Unknown(String),
}

struct KeySeed {
    shape: &'static RecordShape,
    top: bool,
    /// The field expected next (the one after the previous key's).
    hint: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an element name")
    }

    fn visit_str<E: de::Error>(self, k: &str) -> Result<Key, E> {
        Ok(match self.shape.field_from(k, self.hint) {
            Some(i) => Key::Field(i),
            None if self.top && k == "resourceType" => Key::ResourceType,
            // Element names are structure, not data; bounded so a garbage key cannot flood a log.
            None => Key::Unknown(k.chars().take(64).collect()),
        })
    }
}

struct FieldSeed<'p> {
    shapes: &'static Shapes,
    field: &'static FieldShape,
    path: Path<'p>,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = TValue<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TValue<'de>, D::Error> {
        let one = ValueSeed { shapes: self.shapes, kind: self.field.kind, path: self.path };
        if self.field.list { d.deserialize_any(ListVisitor(one)) } else { one.deserialize(d) }
    }
}

struct ListVisitor<'p>(ValueSeed<'p>);

impl<'de> Visitor<'de> for ListVisitor<'_> {
    type Value = TValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a non-empty array at {}", self.0.path)
    }

    refuse!(|s: &Self| (s.0.path, "an array"); bool, i64, u64, f64, str, unit, map);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TValue<'de>, A::Error> {
        let path = Path::Item(&self.0.path);
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(v) = seq.next_element_seed(ValueSeed { path, ..self.0 })? {
            items.push(v);
        }
        if items.is_empty() {
            // FHIR has no empty arrays, and the typed form could not tell one from an absent key.
            return Err(de::Error::custom(format_args!("{} is an empty array", self.0.path)));
        }
        Ok(TValue::List(items))
    }
}

#[derive(Clone, Copy)]
struct ValueSeed<'p> {
    shapes: &'static Shapes,
    kind: Kind,
    path: Path<'p>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = TValue<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TValue<'de>, D::Error> {
        match self.kind {
            Kind::String => StrSeed(self.path).deserialize(d).map(TValue::Str),
            Kind::Decimal => {
                let raw = <&'de RawValue>::deserialize(d)?.get();
                if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                    Ok(TValue::Decimal(raw))
                } else {
                    Err(de::Error::custom(format_args!("{} is not a JSON number", self.path)))
                }
            }
            Kind::Boolean => d.deserialize_any(Scalar(self.path, "a boolean")),
            Kind::Long => d.deserialize_any(Scalar(self.path, "an integer")),
            Kind::Record(id) => {
                let shape = &self.shapes.records[id];
                RecordSeed { shapes: self.shapes, shape, path: self.path, top: None }.deserialize(d).map(TValue::Record)
            }
        }
    }
}

/// A string, borrowed from the JSON when it has no escapes.
struct StrSeed<'p>(Path<'p>);

impl<'de> DeserializeSeed<'de> for StrSeed<'_> {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrSeed<'_> {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a string at {}", self.0)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
    refuse!(|s: &Self| (s.0, "a string"); bool, i64, u64, f64, unit, map, seq);
}

fn wrong_type<E: de::Error>(path: Path<'_>, expected: &str) -> E {
    E::custom(format_args!("{path} is not {expected}"))
}

/// A boolean or an integer (which one is in `.1`), refusing everything else without echoing it.
struct Scalar<'p>(Path<'p>, &'static str);

impl<'de> Visitor<'de> for Scalar<'_> {
    type Value = TValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.1, self.0)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        if self.1 == "a boolean" { Ok(TValue::Bool(v)) } else { Err(wrong_type(self.0, self.1)) }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        if self.1 == "an integer" { Ok(TValue::Long(v)) } else { Err(wrong_type(self.0, self.1)) }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        match i64::try_from(v) {
            Ok(v) if self.1 == "an integer" => Ok(TValue::Long(v)),
            _ => Err(wrong_type(self.0, self.1)),
        }
    }
    refuse!(|s: &Self| (s.0, s.1); f64, str, unit, map, seq);
}

// --- Typed → Avro (through apache_avro's schema-aware serializer) -------------------------

impl Serialize for TypedResource<'_> {
    /// Serialises as the resource's record; against the `typed` union the record name picks
    /// the branch.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.record.serialize(s)
    }
}

impl Serialize for TypedRecord<'_> {
    /// A tuple struct named as the record: apache_avro then writes the fields by position
    /// (every one, in schema order, absent ones as null or []), with no lookup by field name
    /// and no buffering; the name picks the branch of a union.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_tuple_struct(self.shape.name, self.shape.fields.len())?;
        let mut present = self.fields.iter().peekable();
        for (i, f) in self.shape.fields.iter().enumerate() {
            let value = present.next_if(|(j, _)| *j == i).map(|(_, v)| v);
            st.serialize_field(&FieldOut { list: f.list, value })?;
        }
        st.end()
    }
}

struct FieldOut<'v, 'a> {
    list: bool,
    value: Option<&'v TValue<'a>>,
}

impl Serialize for FieldOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.list, self.value) {
            (true, None) => s.serialize_seq(Some(0))?.end(),
            (true, Some(v)) => v.serialize(s),
            (false, None) => s.serialize_none(),
            (false, Some(v)) => s.serialize_some(v),
        }
    }
}

impl Serialize for TValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TValue::Str(v) => s.serialize_str(v),
            TValue::Decimal(v) => s.serialize_str(v),
            TValue::Bool(v) => s.serialize_bool(*v),
            TValue::Long(v) => s.serialize_i64(*v),
            TValue::Record(r) => r.serialize(s),
            TValue::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
        }
    }
}

/// The `typed` field of a record carrying `fhir_json`: the typed resource, or null when the JSON
/// does not fit the model (see the module doc).
pub(crate) struct TypedField<'a> {
    pub resource_type: &'a str,
    pub fhir_json: &'a str,
}

impl Serialize for TypedField<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match TypedResource::from_json(self.resource_type, self.fhir_json) {
            Ok(t) => t.serialize(s),
            // `null` is the union's branch 0.
            Err(_) => s.serialize_unit(),
        }
    }
}

// --- Typed → Avro binary, directly ----------------------------------------------------------

/// Avro's zig-zag varint (int and long alike).
pub(crate) fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// An Avro string or bytes: length, then the bytes.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    write_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// Writes the `typed` field of a record carrying `fhir_json` as Avro binary: the same bytes as
/// serialising [`TypedField`] through apache_avro (a test holds them equal over every message
/// of the corpus), without going through its schema-aware serializer, which was half the cost.
pub(crate) fn write_typed_field(out: &mut Vec<u8>, resource_type: &str, fhir_json: &str) {
    // JSON written from the model goes in one pass; anything else the general way.
    let start = out.len();
    if crate::typed_stream::write(out, resource_type, fhir_json) {
        return;
    }
    out.truncate(start);
    match TypedResource::from_json(resource_type, fhir_json) {
        Ok(t) => t.write_avro(out),
        Err(_) => write_long(out, 0),
    }
}

impl TypedResource<'_> {
    /// The `typed` union value: the branch, then the record.
    pub(crate) fn write_avro(&self, out: &mut Vec<u8>) {
        write_long(out, self.union_index() as i64);
        self.record.write_avro(out);
    }
}

impl TypedRecord<'_> {
    /// Every field of the shape in order: absent ones as null (branch 0) or an empty array.
    fn write_avro(&self, out: &mut Vec<u8>) {
        let mut present = self.fields.iter().peekable();
        for (i, f) in self.shape.fields.iter().enumerate() {
            match (f.list, present.next_if(|(j, _)| *j == i).map(|(_, v)| v)) {
                (true, None) => write_long(out, 0),
                (true, Some(v)) => v.write_avro(out),
                (false, None) => write_long(out, 0),
                (false, Some(v)) => {
                    write_long(out, 1);
                    v.write_avro(out);
                }
            }
        }
    }
}

impl TValue<'_> {
    fn write_avro(&self, out: &mut Vec<u8>) {
        match self {
            TValue::Str(v) => write_str(out, v),
            TValue::Decimal(v) => write_str(out, v),
            TValue::Bool(v) => out.push(u8::from(*v)),
            TValue::Long(v) => write_long(out, *v),
            TValue::Record(r) => r.write_avro(out),
            TValue::List(items) => {
                // One block: the count, the items, the closing zero (apache_avro writes the same).
                write_long(out, items.len() as i64);
                items.iter().for_each(|v| v.write_avro(out));
                write_long(out, 0);
            }
        }
    }
}

// --- Avro → FHIR JSON ---------------------------------------------------------------------

/// The FHIR JSON of a decoded `typed` value (`Union(i, Record)` as apache_avro reads the field,
/// or the bare record with its branch index given through `Union`). `Ok(None)` for null.
/// Keys come out in the model's order with `resourceType` first, which for JSON the mapping
/// wrote is byte for byte the original.
pub fn to_fhir_json(typed: &AvroValue) -> Result<Option<String>, TypedError> {
    let s = shapes();
    let (index, record) = match typed {
        AvroValue::Null => return Ok(None),
        AvroValue::Union(0, v) if matches!(**v, AvroValue::Null) => return Ok(None),
        AvroValue::Union(i, v) => (*i as usize, &**v),
        _ => return Err(avro_err("typed", "not a union value")),
    };
    let &(resource_type, id) =
        s.resources.get(index.wrapping_sub(1)).ok_or_else(|| avro_err("typed", "union branch out of range"))?;
    let mut out = String::with_capacity(512);
    out.push_str("{\"resourceType\":");
    push_json_str(&mut out, resource_type);
    write_fields(s, &s.records[id], record, &mut out, resource_type, true)?;
    Ok(Some(out))
}

fn avro_err(path: &str, detail: &str) -> TypedError {
    TypedError::Avro { path: path.to_string(), detail: detail.to_string() }
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json's escaping, so the text is what the model's serialisation writes.
    out.push_str(&serde_json::to_string(s).expect("a string serialises"));
}

/// Writes the record's present fields as JSON members (and the closing brace); `comma` says
/// whether a member was already written.
fn write_fields(
    s: &Shapes,
    shape: &RecordShape,
    v: &AvroValue,
    out: &mut String,
    path: &str,
    mut comma: bool,
) -> Result<(), TypedError> {
    let AvroValue::Record(fields) = v else { return Err(avro_err(path, "not a record")) };
    if fields.len() != shape.fields.len() {
        return Err(avro_err(path, "field count differs from the model's record"));
    }
    for ((name, fv), f) in fields.iter().zip(&shape.fields) {
        if *name != f.name {
            return Err(avro_err(path, "field names differ from the model's record"));
        }
        let fv = match fv {
            AvroValue::Union(_, inner) => &**inner,
            other => other,
        };
        match fv {
            AvroValue::Null => continue,
            AvroValue::Array(items) if items.is_empty() => continue,
            _ => {}
        }
        if comma {
            out.push(',');
        }
        comma = true;
        push_json_str(out, &f.name);
        out.push(':');
        let fpath = || format!("{path}.{}", f.name);
        if f.list {
            let AvroValue::Array(items) = fv else { return Err(avro_err(&fpath(), "not an array")) };
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_value(s, f.kind, item, out, &fpath())?;
            }
            out.push(']');
        } else {
            write_value(s, f.kind, fv, out, &fpath())?;
        }
    }
    out.push('}');
    Ok(())
}

fn write_value(s: &Shapes, kind: Kind, v: &AvroValue, out: &mut String, path: &str) -> Result<(), TypedError> {
    match (kind, v) {
        (Kind::String, AvroValue::String(t)) => push_json_str(out, t),
        (Kind::Decimal, AvroValue::String(t)) => {
            // Only a JSON number may go into the JSON unquoted.
            if !t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) || serde_json::from_str::<&RawValue>(t).is_err()
            {
                return Err(avro_err(path, "decimal text is not a JSON number"));
            }
            out.push_str(t);
        }
        (Kind::Boolean, AvroValue::Boolean(b)) => out.push_str(if *b { "true" } else { "false" }),
        (Kind::Long, AvroValue::Long(n)) => out.push_str(&n.to_string()),
        (Kind::Long, AvroValue::Int(n)) => out.push_str(&n.to_string()),
        (Kind::Record(id), rec) => {
            out.push('{');
            write_fields(s, &s.records[id], rec, out, path, false)?;
        }
        _ => return Err(avro_err(path, "value type differs from the model")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_into_the_shape_and_refuses_what_it_cannot_hold() {
        let t = TypedResource::from_json(
            "Observation",
            r#"{"status":"final","resourceType":"Observation","id":"o1","valueQuantity":{"value":1.50,"unit":"mg"}}"#,
        )
        .unwrap();
        assert_eq!(t.resource_type(), "Observation");
        let q =
            t.record.fields.iter().find_map(|(i, v)| (t.record.shape.fields[*i].name == "valueQuantity").then_some(v));
        let Some(TValue::Record(q)) = q else { panic!("valueQuantity read as a record") };
        assert!(q.fields.iter().any(|(_, v)| *v == TValue::Decimal("1.50")), "digits kept: {q:?}");

        let err = |t: &str, j: &str| TypedResource::from_json(t, j).unwrap_err().to_string();
        assert!(
            err("Observation", r#"{"resourceType":"Observation","secret":"x"}"#)
                .contains("Observation.secret is not an element")
        );
        let e = err("Observation", r#"{"resourceType":"Observation","valueQuantity":{"value":"Jane Doe"}}"#);
        assert!(e.contains("Observation.valueQuantity.value is not a JSON number") && !e.contains("Jane"), "{e}");
        let e = err("Observation", r#"{"resourceType":"Observation","status":true}"#);
        assert!(e.contains("Observation.status is not a string"), "{e}");
        let e = err("Patient", r#"{"resourceType":"Patient","name":[{"given":[7]}]}"#);
        assert!(e.contains("Patient.name[].given[] is not a string") && !e.contains('7'), "{e}");
        assert!(err("Patient", r#"{"resourceType":"Patient","name":[]}"#).contains("empty array"));
        assert!(err("Patient", r#"{"resourceType":"Patient","id":"a","id":"b"}"#).contains("twice"));
        assert!(err("Patient", r#"{"resourceType":"Observation"}"#).contains("resourceType"));
        assert!(err("Patient", r#"{"id":"a"}"#).contains("no resourceType"));
        assert!(err("Patient", r#"{"resourceType":"Patient","id":null}"#).contains("Patient.id is not a string"));
        assert!(err("Patient", r#"{"resourceType":"Patient"} x"#).contains("trailing"));
        assert!(matches!(TypedResource::from_json("Medication", "{}"), Err(TypedError::UnknownResourceType(_))));
        let e = err("Coverage", r#"{"resourceType":"Coverage","order":1.5}"#);
        assert!(e.contains("Coverage.order is not an integer") && !e.contains("1.5"), "{e}");
    }
}
