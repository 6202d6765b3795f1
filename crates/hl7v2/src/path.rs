//! Terse paths into a message, like `PID-3[2].1`, `OBX(3)-5` or `MSH-9.2`, so that mapping
//! code, tests and the CLI can name a value the way HL7 people write it.
//!
//! Grammar: `SEG[(occurrence)]-FIELD[[repetition]][.COMPONENT[.SUBCOMPONENT]]`, every number
//! 1-based; `-` may stand for `.` between field, component and subcomponent (`PID-5-1`).
//! Without a repetition, a component path reads the first repetition; without a component,
//! the whole field (or repetition) is returned raw.

use crate::message::Segment;
use crate::value::Value;
use std::fmt;
use std::str::FromStr;

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    /// Segment id bytes (ASCII upper-case letters and digits); see [`Path::segment`].
    pub segment_id: [u8; 3],
    /// Which occurrence of the segment, 1-based (`OBX(3)`).
    pub occurrence: usize,
    pub field: usize,
    pub repetition: Option<usize>,
    pub component: Option<usize>,
    pub subcomponent: Option<usize>,
}

/// Why a path string is not a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HL7 path {path:?}: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: &'static str,
}

struct Cursor<'s> {
    s: &'s [u8],
    i: usize,
}

impl Cursor<'_> {
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn number(&mut self) -> Option<usize> {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if self.i == start || self.i - start > 6 {
            return None;
        }
        let n: usize = std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()?;
        (n >= 1).then_some(n)
    }
}

impl FromStr for Path {
    type Err = PathError;

    fn from_str(path: &str) -> Result<Path, PathError> {
        let fail = |reason| PathError { path: path.to_string(), reason };
        let b = path.trim().as_bytes();
        if b.len() < 5 {
            return Err(fail("too short; expected e.g. PID-3"));
        }
        let seg = &b[..3];
        if !seg.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
            return Err(fail("segment id must be 3 upper-case letters or digits"));
        }
        let mut c = Cursor { s: b, i: 3 };
        let mut occurrence = 1;
        if c.eat(b'(') {
            occurrence = c.number().ok_or_else(|| fail("segment occurrence must be a number ≥ 1"))?;
            if !c.eat(b')') {
                return Err(fail("missing ')' after segment occurrence"));
            }
        }
        if !(c.eat(b'-') || c.eat(b'.')) {
            return Err(fail("expected '-' after the segment id"));
        }
        let field = c.number().ok_or_else(|| fail("field must be a number ≥ 1"))?;
        let mut repetition = None;
        if c.eat(b'[') {
            repetition = Some(c.number().ok_or_else(|| fail("repetition must be a number ≥ 1"))?);
            if !c.eat(b']') {
                return Err(fail("missing ']' after repetition"));
            }
        }
        let mut component = None;
        let mut subcomponent = None;
        if c.eat(b'.') || c.eat(b'-') {
            component = Some(c.number().ok_or_else(|| fail("component must be a number ≥ 1"))?);
            if c.eat(b'.') || c.eat(b'-') {
                subcomponent = Some(c.number().ok_or_else(|| fail("subcomponent must be a number ≥ 1"))?);
            }
        }
        if c.i != b.len() {
            return Err(fail("unexpected characters at the end"));
        }
        Ok(Path { segment_id: [seg[0], seg[1], seg[2]], occurrence, field, repetition, component, subcomponent })
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.segment())?;
        if self.occurrence != 1 {
            write!(f, "({})", self.occurrence)?;
        }
        write!(f, "-{}", self.field)?;
        if let Some(r) = self.repetition {
            write!(f, "[{r}]")?;
        }
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        if let Some(s) = self.subcomponent {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

impl Path {
    /// The segment id, e.g. `PID`.
    pub fn segment(&self) -> &str {
        // Checked to be ASCII when parsed.
        std::str::from_utf8(&self.segment_id).unwrap_or("???")
    }

    /// Resolves the field/repetition/component part in a segment (the segment part is the
    /// caller's business).
    pub fn resolve_in<'m>(&self, seg: &Segment<'m>) -> Option<Value<'m>> {
        let f = seg.field(self.field)?;
        match (self.repetition, self.component, self.subcomponent) {
            (None, None, _) => Some(f.value()),
            (Some(r), None, _) => Some(f.repetition(r)?.value()),
            (r, Some(c), None) => Some(f.repetition(r.unwrap_or(1))?.component(c)?.value()),
            (r, Some(c), Some(s)) => f.repetition(r.unwrap_or(1))?.component(c)?.subcomponent(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let p: Path = "PID-3[2].1".parse().unwrap();
        assert_eq!((p.field, p.repetition, p.component, p.subcomponent), (3, Some(2), Some(1), None));
        let p: Path = "OBX(3)-5".parse().unwrap();
        assert_eq!((p.occurrence, p.field), (3, 5));
        let p: Path = "PID-5-1-2".parse().unwrap();
        assert_eq!((p.component, p.subcomponent), (Some(1), Some(2)));
        let p: Path = "ZPD.1".parse().unwrap();
        assert_eq!(p.segment(), "ZPD");
        assert_eq!("OBX(3)-5[2].1.4".parse::<Path>().unwrap().to_string(), "OBX(3)-5[2].1.4");
    }

    #[test]
    fn rejects_bad() {
        for bad in
            ["", "PID", "pid-3", "PID-0", "PID-3[0]", "PID-3[2", "PID(0)-1", "PID-3.x", "PID-3.1.2.3", "PID-99999999"]
        {
            assert!(bad.parse::<Path>().is_err(), "{bad}");
        }
    }
}
