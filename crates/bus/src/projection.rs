//! Decoding only the fields a reader uses: named record fields are cut out of the Avro binary
//! before it is decoded.
//!
//! Avro records carry no lengths, so a reader that does not want a large field (the typed FHIR
//! records beside `fhir_json`) still has to walk it, and apache_avro's serde reader walks it by
//! building every value it meets. Here the writer's schema is compiled once into a small plan of
//! byte shapes (varint, length-prefixed, fixed, record, union …) with named types resolved to
//! indices; one pass over a datum copies everything but the dropped fields into a new buffer,
//! which is then decoded with the writer schema minus those fields ([`Projection::schema`]).
//! The pass allocates nothing beyond the output buffer and never panics on bad bytes: truncated
//! or malformed data is an error, as it would be for the full decoder.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, Name, NamespaceRef, ResolvedSchema, UuidSchema};
use serde_json::Value as Json;

/// Why a datum or schema could not be projected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    #[error("datum ends early (at byte {0})")]
    Truncated(usize),
    #[error("malformed varint at byte {0}")]
    BadVarint(usize),
    #[error("negative or oversized length {len} at byte {at}")]
    BadLength { len: i64, at: usize },
    #[error("union branch {index} out of range at byte {at}")]
    BadBranch { index: i64, at: usize },
    #[error("data nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("schema cannot be projected: {0}")]
    Schema(String),
}

/// Deeper nesting than any of our records needs: the limit only guards the stack against
/// recursive schemas fed crafted data.
const MAX_DEPTH: usize = 256;

/// The byte shape of one schema node.
#[derive(Debug, Clone)]
enum Node {
    /// `null`: no bytes.
    Empty,
    /// A zig-zag varint: int, long, enum index, dates and times.
    Varint,
    /// A fixed number of bytes: boolean, float, double, fixed, duration.
    Fixed(usize),
    /// A varint length then that many bytes: string, bytes and the logical types on them.
    Sized,
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    /// Fields in order; `true` marks a field to drop.
    Record(Vec<(usize, bool)>),
}

/// A writer schema compiled for dropping some fields.
#[derive(Debug)]
pub struct Projection {
    nodes: Vec<Node>,
    root: usize,
    schema: Schema,
    drops_any: bool,
}

impl Projection {
    /// Compiles `writer` to drop every record field whose name is in `drop`.
    pub fn new(writer: &Schema, drop: &[String]) -> Result<Self, ProjectionError> {
        let resolved = ResolvedSchema::try_from(writer).map_err(|e| ProjectionError::Schema(e.to_string()))?;
        let mut c = Compiler { names: resolved.get_names(), drop, nodes: Vec::new(), named: HashMap::new() };
        let root = c.compile(writer, None)?;
        let drops_any = c.nodes.iter().any(|n| matches!(n, Node::Record(fs) if fs.iter().any(|f| f.1)));
        let schema = if drops_any { without_fields(writer, drop)? } else { writer.clone() };
        Ok(Self { nodes: c.nodes, root, schema, drops_any })
    }

    /// Whether the writer schema has any field to drop (if not, decode the datum as it is).
    pub fn drops_any(&self) -> bool {
        self.drops_any
    }

    /// The writer schema without the dropped fields: the schema of [`Projection::project`]'s output.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Copies `datum` without the dropped fields into `out`; returns the bytes of `datum` read
    /// (anything after them is not part of the record).
    pub fn project(&self, datum: &[u8], out: &mut Vec<u8>) -> Result<usize, ProjectionError> {
        let mut w = Walk { nodes: &self.nodes, buf: datum, pos: 0, copied: 0, out };
        w.node(self.root, true, 0)?;
        w.flush_to(w.pos);
        Ok(w.pos)
    }
}

/// `schema` with the named fields removed from every record, through its JSON form so that
/// apache_avro rebuilds the lookup tables and checks the result.
pub fn without_fields(schema: &Schema, drop: &[String]) -> Result<Schema, ProjectionError> {
    fn strip(v: &mut Json, drop: &[String]) {
        match v {
            Json::Object(m) => {
                if m.get("type").and_then(Json::as_str) == Some("record")
                    && let Some(Json::Array(fields)) = m.get_mut("fields")
                {
                    fields
                        .retain(|f| !f.get("name").and_then(Json::as_str).is_some_and(|n| drop.iter().any(|d| d == n)));
                }
                m.values_mut().for_each(|v| strip(v, drop));
            }
            Json::Array(a) => a.iter_mut().for_each(|v| strip(v, drop)),
            _ => {}
        }
    }
    let mut json = serde_json::to_value(schema).map_err(|e| ProjectionError::Schema(e.to_string()))?;
    strip(&mut json, drop);
    Schema::parse(&json).map_err(|e| ProjectionError::Schema(e.to_string()))
}

struct Compiler<'s, 'd> {
    names: &'s HashMap<Name, &'s Schema>,
    drop: &'d [String],
    nodes: Vec<Node>,
    /// Named types already compiled (or being compiled: recursion), by full name.
    named: HashMap<Name, usize>,
}

impl Compiler<'_, '_> {
    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn compile(&mut self, s: &Schema, ns: NamespaceRef) -> Result<usize, ProjectionError> {
        Ok(match s {
            Schema::Null => self.push(Node::Empty),
            Schema::Boolean => self.push(Node::Fixed(1)),
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
            | Schema::Enum(_) => self.push(Node::Varint),
            Schema::Float => self.push(Node::Fixed(4)),
            Schema::Double => self.push(Node::Fixed(8)),
            Schema::Bytes | Schema::String | Schema::BigDecimal => self.push(Node::Sized),
            Schema::Uuid(UuidSchema::Bytes | UuidSchema::String) => self.push(Node::Sized),
            Schema::Uuid(_) => self.push(Node::Fixed(16)),
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => self.push(Node::Sized),
                InnerDecimalSchema::Fixed(f) => self.push(Node::Fixed(f.size)),
            },
            Schema::Fixed(f) => self.push(Node::Fixed(f.size)),
            Schema::Duration(_) => self.push(Node::Fixed(12)),
            Schema::Array(a) => {
                let i = self.push(Node::Empty);
                let items = self.compile(&a.items, ns)?;
                self.nodes[i] = Node::Array(items);
                i
            }
            Schema::Map(m) => {
                let i = self.push(Node::Empty);
                let values = self.compile(&m.types, ns)?;
                self.nodes[i] = Node::Map(values);
                i
            }
            Schema::Union(u) => {
                let i = self.push(Node::Empty);
                let branches = u.variants().iter().map(|v| self.compile(v, ns)).collect::<Result<_, _>>()?;
                self.nodes[i] = Node::Union(branches);
                i
            }
            Schema::Record(r) => {
                let full = r.name.fully_qualified_name(ns).into_owned();
                if let Some(&i) = self.named.get(&full) {
                    return Ok(i);
                }
                let i = self.push(Node::Empty);
                self.named.insert(full.clone(), i);
                let mut fields = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    let dropped = self.drop.contains(&f.name);
                    fields.push((self.compile(&f.schema, full.namespace())?, dropped));
                }
                self.nodes[i] = Node::Record(fields);
                i
            }
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(ns).into_owned();
                if let Some(&i) = self.named.get(&full) {
                    return Ok(i);
                }
                let def = *self
                    .names
                    .get(&full)
                    .ok_or_else(|| ProjectionError::Schema(format!("unknown named type {full}")))?;
                self.compile(def, full.namespace())?
            }
        })
    }
}

struct Walk<'a> {
    nodes: &'a [Node],
    buf: &'a [u8],
    pos: usize,
    /// Bytes of `buf` before this are in `out` (or dropped).
    copied: usize,
    out: &'a mut Vec<u8>,
}

impl Walk<'_> {
    fn flush_to(&mut self, end: usize) {
        self.out.extend_from_slice(&self.buf[self.copied..end]);
        self.copied = end;
    }

    #[inline]
    fn varint(&mut self) -> Result<i64, ProjectionError> {
        // One byte is the common case (nulls' branch 0, short lengths).
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(i64::from(b >> 1) ^ -i64::from(b & 1));
        }
        self.varint_long()
    }

    fn varint_long(&mut self) -> Result<i64, ProjectionError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(ProjectionError::Truncated(self.pos))?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(ProjectionError::BadVarint(start));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        Err(ProjectionError::BadVarint(start))
    }

    fn advance(&mut self, n: usize) -> Result<(), ProjectionError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(ProjectionError::Truncated(self.buf.len()))?;
        self.pos = end;
        Ok(())
    }

    fn length(&mut self) -> Result<usize, ProjectionError> {
        let at = self.pos;
        let len = self.varint()?;
        usize::try_from(len).map_err(|_| ProjectionError::BadLength { len, at })
    }

    /// Walks one value of `node`. `keep` is false inside a dropped field: nothing is copied then,
    /// so block headers need no rewriting.
    fn node(&mut self, node: usize, keep: bool, depth: usize) -> Result<(), ProjectionError> {
        if depth > MAX_DEPTH {
            return Err(ProjectionError::TooDeep(MAX_DEPTH));
        }
        let nodes = self.nodes;
        match &nodes[node] {
            Node::Empty => {}
            Node::Varint => {
                self.varint()?;
            }
            Node::Fixed(n) => self.advance(*n)?,
            Node::Sized => {
                let n = self.length()?;
                self.advance(n)?;
            }
            &Node::Array(items) => self.blocks(keep, depth, |w, keep, depth| w.node(items, keep, depth))?,
            &Node::Map(values) => self.blocks(keep, depth, |w, keep, depth| {
                let n = w.length()?;
                w.advance(n)?;
                w.node(values, keep, depth)
            })?,
            Node::Union(branches) => {
                let at = self.pos;
                let index = self.varint()?;
                let b = usize::try_from(index)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .copied()
                    .ok_or(ProjectionError::BadBranch { index, at })?;
                self.node(b, keep, depth + 1)?;
            }
            Node::Record(fields) => {
                for &(f, dropped) in fields {
                    if keep && dropped {
                        self.flush_to(self.pos);
                        self.node(f, false, depth + 1)?;
                        self.copied = self.pos;
                    } else {
                        // Most elements of a typed record are absent: a null union branch or an
                        // empty array, one zero byte. Stepping over it here saves two calls.
                        let absent = self.buf.get(self.pos) == Some(&0)
                            && match &nodes[f] {
                                Node::Union(b) => b.first().is_some_and(|&i| matches!(nodes[i], Node::Empty)),
                                Node::Array(_) | Node::Map(_) => true,
                                _ => false,
                            };
                        if absent {
                            self.pos += 1;
                        } else {
                            self.node(f, keep, depth + 1)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Array and map blocks. A negative count is followed by the block's byte size, which no
    /// longer holds once fields inside are dropped: such a header is rewritten as a plain count.
    fn blocks(
        &mut self,
        keep: bool,
        depth: usize,
        mut item: impl FnMut(&mut Self, bool, usize) -> Result<(), ProjectionError>,
    ) -> Result<(), ProjectionError> {
        loop {
            let header = self.pos;
            let count = self.varint()?;
            if count == 0 {
                return Ok(());
            }
            let n = if count < 0 {
                let size_at = self.pos;
                let size = self.varint()?;
                if size < 0 {
                    return Err(ProjectionError::BadLength { len: size, at: size_at });
                }
                if keep {
                    self.flush_to(header);
                    write_varint(self.out, count.unsigned_abs() as i64);
                    self.copied = self.pos;
                }
                count.unsigned_abs()
            } else {
                count as u64
            };
            for _ in 0..n {
                item(self, keep, depth + 1)?;
            }
        }
    }
}

/// Zig-zag varint, as Avro writes longs.
fn write_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value;
    use apache_avro::writer::datum::GenericDatumWriter;

    fn to_avro_datum(s: &Schema, v: Value) -> Result<Vec<u8>, apache_avro::Error> {
        GenericDatumWriter::builder(s).build()?.write_value_to_vec(v)
    }

    fn from_avro_datum(s: &Schema, bytes: &mut &[u8], _: Option<()>) -> Result<Value, apache_avro::Error> {
        GenericDatumReader::builder(s).build()?.read_value(bytes)
    }

    fn schema() -> Schema {
        Schema::parse_str(
            r#"{"type": "record", "name": "Event", "namespace": "t", "fields": [
                {"name": "id", "type": "string"},
                {"name": "typed", "type": ["null", {"type": "record", "name": "Big", "fields": [
                    {"name": "n", "type": "long"},
                    {"name": "tags", "type": {"type": "array", "items": "string"}},
                    {"name": "next", "type": ["null", "Big"]},
                    {"name": "flag", "type": "boolean"},
                    {"name": "d", "type": "double"},
                    {"name": "m", "type": {"type": "map", "values": "int"}}
                ]}]},
                {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
                    {"name": "code", "type": "string"},
                    {"name": "typed", "type": ["null", "Big"]},
                    {"name": "when", "type": {"type": "long", "logicalType": "timestamp-micros"}}
                ]}}},
                {"name": "tail", "type": "int"}
            ]}"#,
        )
        .unwrap()
    }

    fn big(n: i64, next: Option<Value>) -> Value {
        Value::Record(vec![
            ("n".into(), Value::Long(n)),
            ("tags".into(), Value::Array(vec![Value::String("a\"b".into()), Value::String("ü".into())])),
            ("next".into(), Value::Union(u32::from(next.is_some()), Box::new(next.unwrap_or(Value::Null)))),
            ("flag".into(), Value::Boolean(true)),
            ("d".into(), Value::Double(1.5)),
            ("m".into(), Value::Map([("k".to_string(), Value::Int(-3))].into())),
        ])
    }

    fn item(code: &str, typed: Option<Value>) -> Value {
        Value::Record(vec![
            ("code".into(), Value::String(code.into())),
            ("typed".into(), Value::Union(u32::from(typed.is_some()), Box::new(typed.unwrap_or(Value::Null)))),
            ("when".into(), Value::TimestampMicros(1_700_000_000_000_000)),
        ])
    }

    fn event() -> Value {
        Value::Record(vec![
            ("id".into(), Value::String("e1".into())),
            ("typed".into(), Value::Union(1, Box::new(big(7, Some(big(-8, None)))))),
            (
                "items".into(),
                Value::Array(vec![item("x", Some(big(1, None))), item("y", None), item("z", Some(big(2, None)))]),
            ),
            ("tail".into(), Value::Int(42)),
        ])
    }

    fn drop() -> Vec<String> {
        vec!["typed".to_string()]
    }

    #[test]
    fn drops_the_named_fields_everywhere_and_keeps_the_rest() {
        let s = schema();
        let bytes = to_avro_datum(&s, event()).unwrap();
        let p = Projection::new(&s, &drop()).unwrap();
        assert!(p.drops_any());
        let mut out = Vec::new();
        assert_eq!(p.project(&bytes, &mut out).unwrap(), bytes.len());
        assert!(out.len() < bytes.len());
        let got = from_avro_datum(p.schema(), &mut &out[..], None).unwrap();
        let Value::Record(fields) = got else { panic!("{got:?}") };
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["id", "items", "tail"]);
        assert_eq!(fields[0].1, Value::String("e1".into()));
        assert_eq!(fields[2].1, Value::Int(42));
        let Value::Array(items) = &fields[1].1 else { panic!() };
        let codes: Vec<_> = items
            .iter()
            .map(|i| match i {
                Value::Record(f) => {
                    assert_eq!(f.len(), 2, "typed dropped inside array items too");
                    f[0].1.clone()
                }
                _ => panic!(),
            })
            .collect();
        assert_eq!(codes, [Value::String("x".into()), Value::String("y".into()), Value::String("z".into())]);
    }

    #[test]
    fn nothing_to_drop_copies_the_datum_unchanged() {
        let s = schema();
        let bytes = to_avro_datum(&s, event()).unwrap();
        let p = Projection::new(&s, &["absent".to_string()]).unwrap();
        assert!(!p.drops_any());
        let mut out = Vec::new();
        p.project(&bytes, &mut out).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn negative_block_counts_are_rewritten_when_items_shrink() {
        // Writers may frame array blocks as (-count, byte size); the size no longer holds after
        // dropping, so the projection writes a plain count.
        let s = schema();
        let normal = to_avro_datum(&s, event()).unwrap();
        let p = Projection::new(&s, &drop()).unwrap();
        let mut expected = Vec::new();
        p.project(&normal, &mut expected).unwrap();

        // Same datum with the items array written as one sized block.
        let id_and_typed_end = {
            let head = Value::Record(vec![
                ("id".into(), Value::String("e1".into())),
                ("typed".into(), Value::Union(1, Box::new(big(7, Some(big(-8, None)))))),
            ]);
            let hs = Schema::parse_str(
                r#"{"type": "record", "name": "H", "fields": [{"name": "id", "type": "string"},
                {"name": "typed", "type": ["null", {"type": "record", "name": "Big", "fields": [
                    {"name": "n", "type": "long"}, {"name": "tags", "type": {"type": "array", "items": "string"}},
                    {"name": "next", "type": ["null", "Big"]}, {"name": "flag", "type": "boolean"},
                    {"name": "d", "type": "double"}, {"name": "m", "type": {"type": "map", "values": "int"}}]}]}]}"#,
            )
            .unwrap();
            to_avro_datum(&hs, head).unwrap().len()
        };
        let items_and_tail = &normal[id_and_typed_end..];
        // Plain framing: count 3 (zig-zag 6), the items, 0, then tail.
        assert_eq!(items_and_tail[0], 6);
        let tail = to_avro_datum(&Schema::Int, Value::Int(42)).unwrap();
        let items_body = &items_and_tail[1..items_and_tail.len() - 1 - tail.len()];
        let mut sized = normal[..id_and_typed_end].to_vec();
        write_varint(&mut sized, -3);
        write_varint(&mut sized, items_body.len() as i64);
        sized.extend_from_slice(items_body);
        sized.push(0);
        sized.extend_from_slice(&tail);
        assert_eq!(from_avro_datum(&s, &mut &sized[..], None).unwrap(), event(), "hand-framed datum is valid");

        let mut out = Vec::new();
        p.project(&sized, &mut out).unwrap();
        assert_eq!(out, expected);
    }

    #[test]
    fn bad_bytes_are_errors_never_panics() {
        let s = schema();
        let bytes = to_avro_datum(&s, event()).unwrap();
        let p = Projection::new(&s, &drop()).unwrap();
        for cut in 0..bytes.len() {
            assert!(p.project(&bytes[..cut], &mut Vec::new()).is_err(), "truncated at {cut}");
        }
        // Every single-byte corruption either projects or fails cleanly.
        for i in 0..bytes.len() {
            for b in [0x00, 0x7f, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] = b;
                let _ = p.project(&bad, &mut Vec::new());
            }
        }
        assert!(matches!(
            p.project(&[0x02, b'x', 0x04], &mut Vec::new()),
            Err(ProjectionError::BadBranch { index: 2, .. })
        ));
        assert!(matches!(p.project(&[0xff; 11], &mut Vec::new()), Err(ProjectionError::BadVarint(0))));
    }

    #[test]
    fn recursion_is_bounded() {
        let s = Schema::parse_str(
            r#"{"type": "record", "name": "L", "fields": [{"name": "next", "type": ["null", "L"]}]}"#,
        )
        .unwrap();
        let p = Projection::new(&s, &drop()).unwrap();
        let mut deep = vec![0x02; 10_000];
        deep.push(0x00);
        assert_eq!(p.project(&deep, &mut Vec::new()), Err(ProjectionError::TooDeep(MAX_DEPTH)));
    }
}
