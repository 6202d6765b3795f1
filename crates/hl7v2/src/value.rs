//! Borrowed views of fields, repetitions, components and subcomponents.
//!
//! They are slices of the message text plus its delimiters; splitting happens only when a
//! caller walks into a level, and nothing is allocated unless text is unescaped. Indexes are
//! 1-based, as HL7 numbers them. `None` means "not present"; a present but empty value is
//! `Some` with [`Value::is_empty`], and the explicit null `""` is [`Value::is_null`].

use crate::Delimiters;
use crate::escape::{self, Formatting};
use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

/// A raw value at any level, with the delimiters needed to split or unescape it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Value<'m> {
    raw: &'m str,
    delims: Delimiters,
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.raw, f)
    }
}

impl fmt::Display for Value<'_> {
    /// The raw (still escaped) text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

impl<'m> Value<'m> {
    pub fn new(raw: &'m str, delims: Delimiters) -> Self {
        Value { raw, delims }
    }

    /// The raw text, escapes and inner delimiters included.
    pub fn as_str(&self) -> &'m str {
        self.raw
    }

    pub fn delimiters(&self) -> Delimiters {
        self.delims
    }

    /// Present but holding nothing.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The explicit null `""`: the sender says "delete this value", which is not the same as
    /// leaving it empty ("no change / not sent").
    pub fn is_null(&self) -> bool {
        self.raw == "\"\""
    }

    /// Text with escape sequences decoded; formatting escapes (`\.br\` …) kept as formatting.
    pub fn unescaped(&self) -> Cow<'m, str> {
        escape::unescape(self.raw, &self.delims)
    }

    /// Text with escape sequences decoded and formatting treated as asked.
    pub fn unescaped_with(&self, fmt: Formatting) -> Cow<'m, str> {
        escape::unescape_with(self.raw, &self.delims, fmt)
    }

    /// Unescaped text, or `None` when empty or null: handy for "has a value?" mapping code.
    pub fn text(&self) -> Option<Cow<'m, str>> {
        if self.is_empty() || self.is_null() { None } else { Some(self.unescaped()) }
    }

    fn parts(&self, sep: Option<u8>) -> Parts<'m> {
        Parts { rest: Some(self.raw), sep, delims: self.delims }
    }
}

/// Splits a value on one delimiter (or yields it whole when `sep` is `None`).
#[derive(Clone)]
struct Parts<'m> {
    rest: Option<&'m str>,
    sep: Option<u8>,
    delims: Delimiters,
}

impl<'m> Iterator for Parts<'m> {
    type Item = Value<'m>;
    fn next(&mut self) -> Option<Value<'m>> {
        let r = self.rest?;
        let Some(sep) = self.sep else {
            self.rest = None;
            return Some(Value::new(r, self.delims));
        };
        // Components are short: a plain loop beats a vectorised search's set-up cost.
        let b = r.as_bytes();
        let found = if b.len() < 32 { b.iter().position(|&c| c == sep) } else { memchr::memchr(sep, b) };
        match found {
            Some(i) => {
                self.rest = Some(&r[i + 1..]);
                Some(Value::new(&r[..i], self.delims))
            }
            None => {
                self.rest = None;
                Some(Value::new(r, self.delims))
            }
        }
    }
}

fn nth(parts: Parts<'_>, n: usize) -> Option<Value<'_>> {
    if n == 0 {
        return None;
    }
    parts.into_iter().nth(n - 1)
}

macro_rules! deref_value {
    ($t:ident) => {
        impl<'m> Deref for $t<'m> {
            type Target = Value<'m>;
            fn deref(&self) -> &Value<'m> {
                &self.value
            }
        }
        impl fmt::Debug for $t<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.value.raw, f)
            }
        }
        impl fmt::Display for $t<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.value.raw)
            }
        }
    };
}

/// One field of a segment, with all its repetitions.
#[derive(Clone, Copy)]
pub struct Field<'m> {
    value: Value<'m>,
    /// MSH-1 and MSH-2 hold delimiter characters themselves and are never split.
    opaque: bool,
}
deref_value!(Field);

impl<'m> Field<'m> {
    pub(crate) fn new(value: Value<'m>, opaque: bool) -> Self {
        Field { value, opaque }
    }

    /// The field as a plain value.
    pub fn value(&self) -> Value<'m> {
        self.value
    }

    fn sep(&self, b: u8) -> Option<u8> {
        (!self.opaque).then_some(b)
    }

    /// Every repetition (an empty field has one empty repetition).
    pub fn repetitions(&self) -> impl Iterator<Item = Repetition<'m>> + Clone + use<'m> {
        let opaque = self.opaque;
        self.value.parts(self.sep(self.value.delims.repetition)).map(move |value| Repetition { value, opaque })
    }

    /// The `n`th repetition, 1-based.
    pub fn repetition(&self, n: usize) -> Option<Repetition<'m>> {
        let opaque = self.opaque;
        nth(self.value.parts(self.sep(self.value.delims.repetition)), n).map(|value| Repetition { value, opaque })
    }

    pub fn repetition_count(&self) -> usize {
        self.value.parts(self.sep(self.value.delims.repetition)).count()
    }

    /// Component `n` of the first repetition.
    pub fn component(&self, n: usize) -> Option<Component<'m>> {
        self.repetition(1)?.component(n)
    }

    /// Components of the first repetition.
    pub fn components(&self) -> impl Iterator<Item = Component<'m>> + Clone + use<'m> {
        let first = self.repetition(1).unwrap_or(Repetition { value: self.value, opaque: true });
        first.components()
    }
}

/// One repetition of a field.
#[derive(Clone, Copy)]
pub struct Repetition<'m> {
    value: Value<'m>,
    opaque: bool,
}
deref_value!(Repetition);

impl<'m> Repetition<'m> {
    pub fn value(&self) -> Value<'m> {
        self.value
    }

    fn sep(&self) -> Option<u8> {
        (!self.opaque).then_some(self.value.delims.component)
    }

    pub fn components(&self) -> impl Iterator<Item = Component<'m>> + Clone + use<'m> {
        let opaque = self.opaque;
        self.value.parts(self.sep()).map(move |value| Component { value, opaque })
    }

    /// Component `n`, 1-based.
    pub fn component(&self, n: usize) -> Option<Component<'m>> {
        let opaque = self.opaque;
        nth(self.value.parts(self.sep()), n).map(|value| Component { value, opaque })
    }

    pub fn component_count(&self) -> usize {
        self.value.parts(self.sep()).count()
    }
}

/// One component of a repetition.
#[derive(Clone, Copy)]
pub struct Component<'m> {
    value: Value<'m>,
    opaque: bool,
}
deref_value!(Component);

impl<'m> Component<'m> {
    pub fn value(&self) -> Value<'m> {
        self.value
    }

    fn sep(&self) -> Option<u8> {
        (!self.opaque).then_some(self.value.delims.subcomponent)
    }

    pub fn subcomponents(&self) -> impl Iterator<Item = Value<'m>> + Clone + use<'m> {
        self.value.parts(self.sep())
    }

    /// Subcomponent `n`, 1-based.
    pub fn subcomponent(&self, n: usize) -> Option<Value<'m>> {
        nth(self.value.parts(self.sep()), n)
    }

    pub fn subcomponent_count(&self) -> usize {
        self.value.parts(self.sep()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(raw: &str) -> Field<'_> {
        Field::new(Value::new(raw, Delimiters::default()), false)
    }

    #[test]
    fn levels() {
        let x = f("a^b&c~d^^e");
        assert_eq!(x.repetition_count(), 2);
        assert_eq!(x.repetition(2).unwrap().as_str(), "d^^e");
        assert_eq!(x.repetition(2).unwrap().component(3).unwrap().as_str(), "e");
        assert_eq!(x.repetition(2).unwrap().component(2).unwrap().as_str(), "");
        assert!(x.repetition(2).unwrap().component(4).is_none());
        assert!(x.repetition(3).is_none());
        assert!(x.repetition(0).is_none());
        let c = x.component(2).unwrap();
        assert_eq!(c.subcomponent_count(), 2);
        assert_eq!(c.subcomponent(2).unwrap().as_str(), "c");
        let comps: Vec<_> = x.components().map(|c| c.as_str()).collect();
        assert_eq!(comps, ["a", "b&c"]);
    }

    #[test]
    fn empty_and_null() {
        let e = f("");
        assert!(e.is_empty());
        assert_eq!(e.repetition_count(), 1);
        assert!(e.text().is_none());
        let n = f("\"\"");
        assert!(n.is_null());
        assert!(!n.is_empty());
        assert!(n.text().is_none());
        assert!(f("a^\"\"").component(2).unwrap().is_null());
    }

    #[test]
    fn opaque_is_never_split() {
        let x = Field::new(Value::new("^~\\&", Delimiters::default()), true);
        assert_eq!(x.repetition_count(), 1);
        assert_eq!(x.component(1).unwrap().as_str(), "^~\\&");
        assert_eq!(x.component(1).unwrap().subcomponent(1).unwrap().as_str(), "^~\\&");
    }
}
