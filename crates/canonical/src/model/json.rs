//! FHIR JSON written straight into a byte buffer, the hot output of every conversion.
//!
//! serde_json's generic path cost about a third of a conversion: structs with a flattened
//! choice (`value[x]` …) go through its map serialiser, every constant key is escaped byte by
//! byte at run time, and every string is scanned one byte at a time. Here the `fhir_struct!`
//! and `fhir_choice!` macros generate a [`JsonWrite`] beside the serde derive, with each key
//! (quotes and colon included) built at compile time, and strings are scanned eight bytes at a
//! time. The output is byte-for-byte what `serde_json::to_writer` writes for the same value —
//! same key order, same omissions, same escapes — and the tests here and in `mapping` compare
//! the two. The serde derive stays for pretty printing and for callers that want a `Serialize`.

use super::Skip;

/// Writes a value as compact FHIR JSON (the same bytes as `serde_json::to_writer`).
pub trait JsonWrite {
    fn write_json(&self, out: &mut Vec<u8>);

    /// The value as a JSON string.
    fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        // Only valid UTF-8 (from `str`s) and ASCII are ever written.
        String::from_utf8(out).expect("JSON output is UTF-8")
    }
}

/// A choice element (`value[x]` …), flattened into its parent: writes its own `"key":value,`.
pub trait JsonFlat {
    fn write_flat(&self, out: &mut Vec<u8>);
}

/// The members of an object (`"key":value,` each, trailing comma), without the braces, so that
/// a tagged resource can add `resourceType` first.
pub trait JsonMembers {
    fn write_members(&self, out: &mut Vec<u8>);
}

/// `"key":` as bytes, built at compile time from the Rust field name (camelCase, as serde's
/// `rename_all = "camelCase"` does) or from an explicit rename.
pub struct Key {
    buf: [u8; 48],
    len: usize,
}

impl Key {
    /// The camelCase key of a Rust field name (`r#type` → `type`, `postal_code` → `postalCode`).
    pub const fn camel(rust: &str) -> Key {
        let b = rust.as_bytes();
        let mut i = if b.len() > 2 && b[0] == b'r' && b[1] == b'#' { 2 } else { 0 };
        let mut buf = [0u8; 48];
        buf[0] = b'"';
        let mut n = 1;
        let mut upper = false;
        while i < b.len() {
            let c = b[i];
            if c == b'_' {
                upper = true;
            } else {
                buf[n] = if upper { c.to_ascii_uppercase() } else { c };
                n += 1;
                upper = false;
            }
            i += 1;
        }
        Key::finish(buf, n)
    }

    /// The key exactly as given (a `#[serde(rename = "...")]`).
    pub const fn exact(name: &str) -> Key {
        let b = name.as_bytes();
        let mut buf = [0u8; 48];
        buf[0] = b'"';
        let mut i = 0;
        while i < b.len() {
            buf[i + 1] = b[i];
            i += 1;
        }
        Key::finish(buf, b.len() + 1)
    }

    const fn finish(mut buf: [u8; 48], n: usize) -> Key {
        let mut i = 1;
        while i < n {
            // Keys are written unescaped: a key needing an escape is a compile-time error.
            assert!(buf[i] >= 0x20 && buf[i] != b'"' && buf[i] != b'\\', "a JSON key needing an escape");
            i += 1;
        }
        buf[n] = b'"';
        buf[n + 1] = b':';
        Key { buf, len: n + 2 }
    }

    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Writes `key` and `v` followed by a comma, unless `v` is empty (FHIR forbids empty elements;
/// the serde derive skips the same fields with [`Skip`]).
#[inline]
pub fn member<T: JsonWrite + Skip + ?Sized>(v: &T, key: &[u8], out: &mut Vec<u8>) {
    if !v.skip() {
        out.extend_from_slice(key);
        v.write_json(out);
        out.push(b',');
    }
}

/// Ends an object whose members each ended with a comma: the last comma becomes the closing
/// brace (`{` alone becomes `{}`).
#[inline]
pub fn close_object(out: &mut Vec<u8>) {
    match out.last_mut() {
        Some(last @ b',') => *last = b'}',
        _ => out.push(b'}'),
    }
}

/// Writes an object from its members.
#[inline]
pub fn object<T: JsonMembers + ?Sized>(v: &T, out: &mut Vec<u8>) {
    out.push(b'{');
    v.write_members(out);
    close_object(out);
}

impl JsonWrite for str {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self)
    }
}

impl JsonWrite for String {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self)
    }
}

impl JsonWrite for std::borrow::Cow<'static, str> {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self)
    }
}

impl JsonWrite for bool {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl JsonWrite for u32 {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_u64(out, u64::from(*self))
    }
}

impl JsonWrite for u64 {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_u64(out, *self)
    }
}

impl JsonWrite for i32 {
    fn write_json(&self, out: &mut Vec<u8>) {
        i64::from(*self).write_json(out)
    }
}

impl JsonWrite for i64 {
    fn write_json(&self, out: &mut Vec<u8>) {
        if *self < 0 {
            out.push(b'-');
        }
        write_u64(out, self.unsigned_abs())
    }
}

impl<T: JsonWrite + ?Sized> JsonWrite for Box<T> {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out)
    }
}

impl<T: JsonWrite + ?Sized> JsonWrite for &T {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out)
    }
}

impl<T: JsonWrite> JsonWrite for Option<T> {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl<T: JsonWrite> JsonWrite for Vec<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        self.as_slice().write_json(out)
    }
}

impl<T: JsonWrite> JsonWrite for [T] {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            v.write_json(out);
        }
        out.push(b']');
    }
}

impl<T: JsonFlat> JsonFlat for Option<T> {
    #[inline]
    fn write_flat(&self, out: &mut Vec<u8>) {
        if let Some(v) = self {
            v.write_flat(out)
        }
    }
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Writes `s` as a JSON string with serde_json's escapes: `\"`, `\\`, `\b \f \n \r \t`, and
/// `\u00xx` (lower-case hex) for the other control characters; everything else as is.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// The inside of a JSON string: `s` with the escapes of [`write_str`], without the quotes.
///
/// Short strings (codes, units, numbers as text — most of them) are copied in whole words
/// while they are checked, the tail as the overlapping last word written over the bytes it
/// repeats after a `truncate`: a call to `memcpy` with a run-time length costs more than such a
/// copy. Longer ones are scanned, then copied in one piece.
#[inline]
pub fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let start = out.len();
    let n = b.len();
    let word = |i: usize| -> [u8; 8] { b[i..i + 8].try_into().expect("eight bytes") };
    let half = |i: usize| -> [u8; 4] { b[i..i + 4].try_into().expect("four bytes") };
    // A flagged byte always means a real escape in the same word (see `escape_mask`).
    let clean = if n > 16 {
        match first_escape(b, 0) {
            None => {
                out.extend_from_slice(b);
                return;
            }
            Some(j) => return write_escaped_from(out, b, j),
        }
    } else if n >= 8 {
        let (lo, hi) = (word(0), word(n - 8));
        let clean = escape_mask(u64::from_le_bytes(lo)) == 0 && escape_mask(u64::from_le_bytes(hi)) == 0;
        if clean {
            out.extend_from_slice(&lo);
            out.truncate(start + n - 8);
            out.extend_from_slice(&hi);
        }
        clean
    } else if n >= 4 {
        let (lo, hi) = (half(0), half(n - 4));
        let w = u64::from(u32::from_le_bytes(lo)) | u64::from(u32::from_le_bytes(hi)) << 32;
        let clean = escape_mask(w) == 0;
        if clean {
            out.extend_from_slice(&lo);
            out.truncate(start + n - 4);
            out.extend_from_slice(&hi);
        }
        clean
    } else {
        let clean = !b.iter().any(|&c| needs_escape(c));
        if clean {
            for &c in b {
                out.push(c);
            }
        }
        clean
    };
    if !clean {
        let j = first_escape(b, 0).expect("a byte to escape");
        write_escaped_from(out, b, j);
    }
}

/// The rest of a string that needs escapes, from the first byte `j` that does.
#[cold]
fn write_escaped_from(out: &mut Vec<u8>, b: &[u8], mut j: usize) {
    let mut start = 0;
    loop {
        out.extend_from_slice(&b[start..j]);
        escape(out, b[j]);
        start = j + 1;
        match first_escape(b, start) {
            Some(next) => j = next,
            None => break,
        }
    }
    out.extend_from_slice(&b[start..]);
}

/// The position of the first byte at or after `from` that needs an escape, eight bytes at a
/// time; the last few bytes are read as the (overlapping) last eight, never through a buffer
/// on the stack (filling one byte-wise and reading it whole stalls store-to-load forwarding).
#[inline]
fn first_escape(b: &[u8], from: usize) -> Option<usize> {
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("eight bytes"));
    let mut i = from;
    while i + 8 <= b.len() {
        let mask = escape_mask(word(i));
        if mask != 0 {
            // The lowest flagged byte is exact (a false flag can only follow a true one).
            return Some(i + (mask.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if i == b.len() {
        return None;
    }
    if b.len() >= 8 {
        // Clean: done. Flagged: the bytes before `i` in this word may hold an escape already
        // handled (its borrow can flag the next byte falsely), so look byte by byte.
        if escape_mask(word(b.len() - 8)) == 0 {
            return None;
        }
    }
    (i..b.len()).find(|&k| needs_escape(b[k]))
}

#[inline]
fn needs_escape(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// The high bit of each byte of `w` that is a control character, `"` or `\`.
#[inline]
fn escape_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let s = w ^ (ONES * u64::from(b'\\'));
    let backslash = s.wrapping_sub(ONES) & !s;
    (control | quote | backslash) & HIGH
}

#[cold]
fn escape(out: &mut Vec<u8>, c: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match c {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0C => out.extend_from_slice(b"\\f"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xF)]]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn same<T: JsonWrite + serde::Serialize>(v: &T) {
        assert_eq!(v.to_json(), serde_json::to_string(v).unwrap());
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        let mut all = String::new();
        for c in (0u8..0x80).map(char::from).chain(['é', '€', '😀', '\u{2028}']) {
            all.push(c);
        }
        for s in ["", "a", "abcdefgh", "abcdefg\"", "\"abcdefgh\\", "a\u{1}b\u{1f}c\u{7f}", all.as_str()] {
            same(&s.to_string());
        }
        // Every position of each escaped byte around the eight-byte steps, alone and followed
        // by the bytes a borrow from it could flag falsely.
        for len in [1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 20, 33] {
            for c in (0u8..0x20).chain([b'"', b'\\']) {
                for pos in 0..len {
                    for next in [b'x', b' ', b'#', b']', b'!'] {
                        let mut s = vec![next; len];
                        s[pos] = c;
                        same(&String::from_utf8(s).unwrap());
                    }
                }
            }
        }
        // Two escapes, in every pair of positions.
        for len in [4, 6, 9, 12, 16, 17, 24] {
            for p1 in 0..len {
                for p2 in p1 + 1..len {
                    for (c1, c2) in [(b'\n', b'"'), (b'"', b'\\'), (0x1f, 0x01)] {
                        let mut s = vec![b' '; len];
                        s[p1] = c1;
                        s[p2] = c2;
                        same(&String::from_utf8(s).unwrap());
                    }
                }
            }
        }
    }

    #[test]
    fn keys_are_built_as_serde_names_them() {
        assert_eq!(Key::camel("postal_code").bytes(), br#""postalCode":"#);
        assert_eq!(Key::camel("r#type").bytes(), br#""type":"#);
        assert_eq!(Key::camel("id").bytes(), br#""id":"#);
        assert_eq!(Key::exact("_birthDate").bytes(), br#""_birthDate":"#);
    }

    #[test]
    fn numbers_and_empty_objects() {
        for n in [0i64, 7, -7, i64::MAX, i64::MIN] {
            same(&n);
        }
        same(&u64::MAX);
        same(&Coding::default());
        same(&vec![Coding::default(), Coding { code: Some("x".into()), ..Default::default() }]);
    }

    #[test]
    fn resources_with_choices_renames_and_extensions() {
        let obs = Observation {
            id: "o1".into(),
            extension: vec![Extension::string("urn:x", "a\tb")],
            status: "final".into(),
            code: CodeableConcept::code("http://loinc.org", "2345-7", Some("Glucose")),
            value: Some(ObservationValue::Quantity(Quantity {
                value: Decimal::parse("1.50"),
                unit: Some("mg".into()),
                ..Default::default()
            })),
            effective: Some(Effective::Period(Period { start: Some("2024".into()), end: None })),
            reference_range: vec![ObservationReferenceRange { text: Some("<5".into()), ..Default::default() }],
            ..Default::default()
        };
        same(&Resource::from(obs));
        let p = Patient {
            id: "p".into(),
            birth_date_element: Some(PrimitiveExtensions {
                extension: vec![Extension { url: "u".into(), value: ExtensionValue::Coding(Coding::default()) }],
            }),
            deceased: Some(Deceased::Boolean(false)),
            multiple_birth: Some(MultipleBirth::Integer(-2)),
            ..Default::default()
        };
        same(&Resource::from(p));
        let m = MedicationRequest {
            id: "m".into(),
            dosage_instruction: vec![Dosage {
                sequence: Some(0),
                dose_and_rate: vec![
                    DoseAndRate { dose: None },
                    DoseAndRate { dose: Some(DoseValue::Range(Range::default())) },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        same(&Resource::from(m));
        let b = Bundle {
            id: "b".into(),
            identifier: None,
            r#type: "message",
            timestamp: Some("t".into()),
            entry: vec![BundleEntry {
                full_url: "urn:uuid:x".into(),
                resource: Resource::from(Organization::default()),
            }],
        };
        same(&b);
    }
}
