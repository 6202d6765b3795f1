//! Reading the leading fields of an Avro body by hand.
//!
//! Some readers want a few fields from the front of a large record: the query store wants a
//! resource's envelope and JSON, not the typed record after them; normalize, rebuilding its
//! duplicate window, wants the sender and control id, not the payload. Avro carries no field
//! lengths, so the generic decoder builds every value it meets; a reader that knows the
//! layout can stop when it has what it needs. Use it only through
//! [`crate::AvroSerde::decode_with`], which calls it for bytes written with the reader's own
//! schema and falls back to schema resolution otherwise.
//!
//! Errors name the field and the byte position, never the content (it may be PHI). Nothing
//! here panics on any bytes.

/// A position in an Avro body.
#[derive(Debug, Clone)]
pub struct BodyReader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> BodyReader<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Self { body, at: 0 }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.at
    }

    /// A zig-zag varint of at most 10 bytes: `int`, `long`, an enum's index, a union's branch.
    pub fn long(&mut self, field: &str) -> Result<i64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.body.get(self.at) else {
                return Err(format!("{field}: the body ends at byte {} inside a number", self.at));
            };
            self.at += 1;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        Err(format!("{field}: a number longer than 10 bytes at byte {}", self.at))
    }

    /// `bytes`, borrowed from the body.
    pub fn bytes(&mut self, field: &str) -> Result<&'a [u8], String> {
        let len = self.long(field)?;
        let start = self.at;
        let end =
            usize::try_from(len).ok().and_then(|n| start.checked_add(n)).filter(|&e| e <= self.body.len()).ok_or_else(
                || format!("{field}: length {len} at byte {start} does not fit the {}-byte body", self.body.len()),
            )?;
        self.at = end;
        Ok(&self.body[start..end])
    }

    /// A `string`, borrowed from the body.
    pub fn str(&mut self, field: &str) -> Result<&'a str, String> {
        let b = self.bytes(field)?;
        let start = self.at - b.len();
        std::str::from_utf8(b).map_err(|e| format!("{field}: not UTF-8 at byte {}", start + e.valid_up_to()))
    }

    /// An enum's symbol index, checked against the number of symbols.
    pub fn symbol(&mut self, field: &str, symbols: usize) -> Result<usize, String> {
        let at = self.at;
        let i = self.long(field)?;
        usize::try_from(i)
            .ok()
            .filter(|&i| i < symbols)
            .ok_or_else(|| format!("{field}: symbol {i} at byte {at} (the enum has {symbols})"))
    }

    /// Checks that the record took the whole body, as the generic decoder does.
    pub fn finish(&self) -> Result<(), String> {
        match self.body.len() - self.at {
            0 => Ok(()),
            n => Err(format!("{n} trailing bytes after the record")),
        }
    }

    /// A `string`, owned.
    pub fn string(&mut self, field: &str) -> Result<String, String> {
        self.str(field).map(str::to_string)
    }

    /// `["null", "string"]`, borrowed.
    pub fn opt_str(&mut self, field: &str) -> Result<Option<&'a str>, String> {
        if self.present(field)? { self.str(field).map(Some) } else { Ok(None) }
    }

    /// `["null", "string"]`, owned.
    pub fn opt_string(&mut self, field: &str) -> Result<Option<String>, String> {
        Ok(self.opt_str(field)?.map(str::to_string))
    }

    /// The branch of a `["null", T]` union: whether a `T` follows.
    pub fn present(&mut self, field: &str) -> Result<bool, String> {
        match self.long(field)? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(format!("{field}: union branch {n} at byte {} (the schema has 0 and 1)", self.at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_varints_strings_and_optional_strings() {
        // long 1 (0x02), -1 (0x01), 150 (0xac 0x02); "hé"; null; "x"
        let b = [0x02, 0x01, 0xac, 0x02, 0x06, b'h', 0xc3, 0xa9, 0x00, 0x02, 0x02, b'x'];
        let mut r = BodyReader::new(&b);
        assert_eq!(r.long("a").unwrap(), 1);
        assert_eq!(r.long("b").unwrap(), -1);
        assert_eq!(r.long("c").unwrap(), 150);
        assert_eq!(r.str("d").unwrap(), "hé");
        assert_eq!(r.opt_str("e").unwrap(), None);
        assert_eq!(r.opt_string("f").unwrap(), Some("x".to_string()));
        assert_eq!(r.position(), b.len());
        r.finish().unwrap();
    }

    #[test]
    fn reads_bytes_and_symbols_and_refuses_trailing_bytes() {
        // bytes [ff 00], then symbol 2
        let b = [0x04, 0xff, 0x00, 0x04];
        let mut r = BodyReader::new(&b);
        assert_eq!(r.bytes("payload").unwrap(), &[0xff, 0x00]);
        assert_eq!(r.symbol("channel", 3).unwrap(), 2);
        assert_eq!(r.finish(), Ok(()));
        let mut r = BodyReader::new(&b);
        r.bytes("payload").unwrap();
        assert_eq!(r.finish(), Err("1 trailing bytes after the record".to_string()));
        let e = BodyReader::new(&[0x06]).symbol("channel", 3).unwrap_err();
        assert_eq!(e, "channel: symbol 3 at byte 0 (the enum has 3)");
        let e = BodyReader::new(&[0x01]).symbol("channel", 3).unwrap_err();
        assert_eq!(e, "channel: symbol -1 at byte 0 (the enum has 3)");
    }

    #[test]
    fn errors_name_the_field_and_position_not_the_content() {
        let e = BodyReader::new(&[0x08, b's', b'e', b'c']).str("control_id").unwrap_err();
        assert_eq!(e, "control_id: length 4 at byte 1 does not fit the 4-byte body");
        let e = BodyReader::new(&[0x04, b'o', 0xff]).str("tenant").unwrap_err();
        assert_eq!(e, "tenant: not UTF-8 at byte 2");
        let e = BodyReader::new(&[0x04]).opt_str("peer").unwrap_err();
        assert!(e.starts_with("peer: union branch 2"), "{e}");
        assert!(BodyReader::new(&[0xff; 11]).long("id").unwrap_err().starts_with("id: a number longer"));
        assert!(BodyReader::new(&[0x80]).long("id").unwrap_err().starts_with("id: the body ends"));
        // A negative length is refused, not wrapped.
        assert!(BodyReader::new(&[0x01]).str("id").unwrap_err().starts_with("id: length -1"));
    }
}
