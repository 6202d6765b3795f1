//! UCUM unit expressions: parse, validate, reduce to a canonical form, convert.
//!
//! Why our own: quantities must carry a valid UCUM code, and comparing or converting lab
//! values (mg/dL vs g/L, mmol/L vs µmol/L) needs the canonical form of a unit — a factor
//! times a vector of the seven UCUM base units. Definitions come from `ucum-essence.xml`
//! (loaded by [`crate::loaders::ucum_essence`]; the shipped copy is used by default).
//!
//! Supported grammar (case-sensitive UCUM): prefixes, atoms (incl. `[...]` atoms),
//! integer exponents with sign, `.` and `/`, a leading `/`, integer factors, `10*3` / `10^3`,
//! parentheses and `{annotations}` (dimensionless). Conversion of special (non-ratio) units
//! is done for `Cel`, `[degF]` and `[degRe]` when they stand alone; the other special units
//! (pH, decibel, ...) validate but are reported as not convertible.
//!
//! Mass <-> mass and substance <-> substance are pure unit conversions; mass <-> substance
//! (mg/dL glucose -> mmol/L) needs the analyte's molar mass and is done by
//! [`Ucum::convert_mass_molar`] only when the caller supplies it.

use std::sync::OnceLock;

use rustc_hash::FxHashMap;

/// The seven UCUM base units, in the order of [`Canonical::dims`].
pub const BASE_UNITS: [&str; 7] = ["m", "s", "g", "rad", "K", "C", "cd"];

/// Errors of unit parsing and conversion.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UcumError {
    #[error("invalid UCUM unit {expr:?} at position {pos}: {reason}")]
    Invalid { expr: String, pos: usize, reason: String },
    #[error("units {from:?} and {to:?} are not commensurable ({from_canonical} vs {to_canonical})")]
    NotCommensurable { from: String, to: String, from_canonical: String, to_canonical: String },
    #[error("unit {unit:?} cannot be converted: {reason}")]
    NotConvertible { unit: String, reason: String },
}

/// A prefix definition from the essence.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixDef {
    pub code: String,
    pub name: String,
    pub value: f64,
}

/// A base unit definition from the essence.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseUnitDef {
    pub code: String,
    pub name: String,
    pub property: String,
    /// Dimension letter (L, T, M, A, C, Q, F).
    pub dim: String,
}

/// A derived unit definition from the essence.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitDef {
    pub code: String,
    pub name: String,
    pub property: String,
    pub class: String,
    pub is_metric: bool,
    pub is_special: bool,
    pub is_arbitrary: bool,
    /// `value` attribute of `<value>` (1 when absent).
    pub value: f64,
    /// `Unit` attribute of `<value>`: the definition in terms of other units.
    pub unit: String,
    /// For special units: (function name, value, unit).
    pub function: Option<(String, f64, String)>,
}

/// The content of a `ucum-essence.xml`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UcumEssence {
    pub version: String,
    pub revision_date: String,
    pub prefixes: Vec<PrefixDef>,
    pub base_units: Vec<BaseUnitDef>,
    pub units: Vec<UnitDef>,
}

/// A unit reduced to base units: `factor × Π base^dims × Π arbitrary^exp`.
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    pub factor: f64,
    pub dims: [i32; 7],
    /// Arbitrary units (e.g. `[IU]`) are their own dimension, sorted by code.
    pub arbitrary: Vec<(String, i32)>,
    /// Set when the expression is a single special unit (e.g. `Cel`): its function name.
    pub special: Option<String>,
    /// Set when a special unit appears inside a compound expression (not convertible).
    pub special_in_compound: bool,
}

impl Canonical {
    fn one() -> Canonical {
        Canonical { factor: 1.0, dims: [0; 7], arbitrary: Vec::new(), special: None, special_in_compound: false }
    }
    fn mul(mut self, o: &Canonical, sign: i32) -> Canonical {
        self.factor *= if sign > 0 { o.factor } else { 1.0 / o.factor };
        for i in 0..7 {
            self.dims[i] += sign * o.dims[i];
        }
        for (code, e) in &o.arbitrary {
            match self.arbitrary.iter_mut().find(|(c, _)| c == code) {
                Some(slot) => slot.1 += sign * e,
                None => self.arbitrary.push((code.clone(), sign * e)),
            }
        }
        self.arbitrary.retain(|(_, e)| *e != 0);
        self.arbitrary.sort();
        self.special_in_compound |= o.special_in_compound || o.special.is_some() || self.special.is_some();
        self.special = None;
        self
    }
    fn pow(mut self, e: i32) -> Canonical {
        if e == 1 {
            return self;
        }
        self.factor = self.factor.powi(e);
        for d in &mut self.dims {
            *d *= e;
        }
        for a in &mut self.arbitrary {
            a.1 *= e;
        }
        self.arbitrary.retain(|(_, e)| *e != 0);
        if self.special.take().is_some() {
            self.special_in_compound = true;
        }
        self
    }
    /// Same dimension (and same arbitrary units): a ratio conversion is meaningful.
    pub fn commensurable(&self, o: &Canonical) -> bool {
        self.dims == o.dims && self.arbitrary == o.arbitrary
    }
    /// The base-unit expression, e.g. `m-3.g` for mg/dL (factor printed separately).
    pub fn unit_expression(&self) -> String {
        let mut parts = Vec::new();
        for (i, d) in self.dims.iter().enumerate() {
            match d {
                0 => {}
                1 => parts.push(BASE_UNITS[i].to_string()),
                _ => parts.push(format!("{}{}", BASE_UNITS[i], d)),
            }
        }
        for (c, d) in &self.arbitrary {
            parts.push(if *d == 1 { c.clone() } else { format!("{c}{d}") });
        }
        if parts.is_empty() { "1".to_string() } else { parts.join(".") }
    }
}

impl std::fmt::Display for Canonical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.factor, self.unit_expression())
    }
}

#[derive(Debug, Clone)]
struct Atom {
    metric: bool,
    canonical: Canonical,
    name: String,
    property: String,
}

/// A UCUM unit system built from an essence.
#[derive(Debug, Clone)]
pub struct Ucum {
    version: String,
    prefixes: Vec<(String, f64)>,
    atoms: FxHashMap<String, Atom>,
}

/// The essence shipped with the crate (see `data/README.md` for its source and terms).
pub const SHIPPED_ESSENCE: &str = include_str!("../data/ucum-essence.xml");

impl Ucum {
    /// The unit system of the shipped essence, built once.
    pub fn builtin() -> &'static Ucum {
        static UCUM: OnceLock<Ucum> = OnceLock::new();
        UCUM.get_or_init(|| {
            let essence =
                crate::loaders::ucum_essence::parse_str(SHIPPED_ESSENCE, "ucum-essence.xml", Default::default())
                    .map(|(e, _)| e)
                    .unwrap_or_default();
            Ucum::from_essence(&essence).0
        })
    }

    /// Builds the unit system; returns it with the codes of units whose definition could
    /// not be resolved (they are left out).
    pub fn from_essence(essence: &UcumEssence) -> (Ucum, Vec<String>) {
        let mut prefixes: Vec<(String, f64)> = essence.prefixes.iter().map(|p| (p.code.clone(), p.value)).collect();
        // Longest prefix first so `da` wins over `d`.
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        let mut u = Ucum { version: essence.version.clone(), prefixes, atoms: FxHashMap::default() };
        for (i, b) in essence.base_units.iter().enumerate() {
            let mut c = Canonical::one();
            let slot = BASE_UNITS.iter().position(|x| *x == b.code).unwrap_or(i.min(6));
            c.dims[slot] = 1;
            u.atoms.insert(
                b.code.clone(),
                Atom { metric: true, canonical: c, name: b.name.clone(), property: b.property.clone() },
            );
        }
        // Definitions refer to each other in any order: resolve in passes until no progress.
        let mut pending: Vec<&UnitDef> = essence.units.iter().collect();
        loop {
            let before = pending.len();
            pending.retain(|d| {
                let resolved = if d.is_arbitrary && (d.unit == "1" || d.unit.is_empty()) {
                    let mut c = Canonical::one();
                    c.arbitrary.push((d.code.clone(), 1));
                    Some(c)
                } else if let Some((fname, fval, funit)) = &d.function {
                    u.parse(funit).ok().map(|mut c| {
                        c.factor *= fval;
                        c.special = Some(fname.clone());
                        c.special_in_compound = false;
                        c
                    })
                } else {
                    u.parse(if d.unit.is_empty() { "1" } else { &d.unit }).ok().map(|mut c| {
                        c.factor *= d.value;
                        c
                    })
                };
                match resolved {
                    Some(c) => {
                        u.atoms.insert(
                            d.code.clone(),
                            Atom {
                                metric: d.is_metric,
                                canonical: c,
                                name: d.name.clone(),
                                property: d.property.clone(),
                            },
                        );
                        false
                    }
                    None => true,
                }
            });
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        let unresolved = pending.iter().map(|d| d.code.clone()).collect();
        (u, unresolved)
    }

    /// Version of the essence this system was built from.
    pub fn version(&self) -> &str {
        &self.version
    }
    /// Number of atoms (base and derived units).
    pub fn atom_count(&self) -> usize {
        self.atoms.len()
    }
    /// Name and property of an atom (e.g. `g` -> gram, mass).
    pub fn atom_info(&self, code: &str) -> Option<(&str, &str)> {
        self.atoms.get(code).map(|a| (a.name.as_str(), a.property.as_str()))
    }

    /// Checks that `expr` is a valid UCUM expression.
    pub fn validate(&self, expr: &str) -> Result<(), UcumError> {
        self.parse(expr).map(|_| ())
    }
    pub fn is_valid(&self, expr: &str) -> bool {
        self.parse(expr).is_ok()
    }

    /// The canonical form of `expr`.
    pub fn canonical(&self, expr: &str) -> Result<Canonical, UcumError> {
        self.parse(expr)
    }

    /// Whether `a` and `b` measure the same kind of quantity.
    pub fn commensurable(&self, a: &str, b: &str) -> Result<bool, UcumError> {
        Ok(self.parse(a)?.commensurable(&self.parse(b)?))
    }

    /// Converts `value` from unit `from` to unit `to`.
    pub fn convert(&self, value: f64, from: &str, to: &str) -> Result<f64, UcumError> {
        let f = self.parse(from)?;
        let t = self.parse(to)?;
        for (c, unit) in [(&f, from), (&t, to)] {
            if c.special_in_compound {
                return Err(UcumError::NotConvertible {
                    unit: unit.to_string(),
                    reason: "a special (non-ratio) unit inside a compound expression".into(),
                });
            }
        }
        if !f.commensurable(&t) {
            return Err(UcumError::NotCommensurable {
                from: from.into(),
                to: to.into(),
                from_canonical: f.unit_expression(),
                to_canonical: t.unit_expression(),
            });
        }
        let base = to_base(value, &f, from)?;
        from_base(base, &t, to)
    }

    /// Mass concentration <-> substance concentration (e.g. mg/dL <-> mmol/L) with the
    /// analyte's molar mass in g/mol. Refuses anything that is not mass <-> amount of substance.
    pub fn convert_mass_molar(
        &self,
        value: f64,
        from: &str,
        to: &str,
        molar_mass_g_per_mol: f64,
    ) -> Result<f64, UcumError> {
        let f = self.parse(from)?;
        let t = self.parse(to)?;
        let mol = self.parse("mol")?;
        let g = self.parse("g")?;
        // from = mass/..., to = mol/...: value[from] -> grams-based -> moles-based.
        let mass_to_molar = f.clone().mul(&g, -1).mul(&mol, 1);
        if mass_to_molar.commensurable(&t) {
            let grams = value * f.factor;
            let in_mol = grams / molar_mass_g_per_mol * mol.factor;
            return Ok(in_mol / t.factor);
        }
        let molar_to_mass = f.clone().mul(&mol, -1).mul(&g, 1);
        if molar_to_mass.commensurable(&t) {
            let moles = value * f.factor / mol.factor;
            return Ok(moles * molar_mass_g_per_mol / t.factor);
        }
        Err(UcumError::NotCommensurable {
            from: from.into(),
            to: to.into(),
            from_canonical: f.unit_expression(),
            to_canonical: t.unit_expression(),
        })
    }

    // ---- parser -------------------------------------------------------------------------

    fn parse(&self, expr: &str) -> Result<Canonical, UcumError> {
        let mut p = Parser { s: expr.as_bytes(), expr, pos: 0, ucum: self };
        if expr.is_empty() {
            return Err(p.err("empty unit"));
        }
        let c = if p.peek() == Some(b'/') {
            p.pos += 1;
            Canonical::one().mul(&p.term()?, -1)
        } else {
            p.term()?
        };
        if p.pos != p.s.len() {
            return Err(p.err("unexpected character"));
        }
        if !c.factor.is_finite() || c.factor == 0.0 {
            return Err(UcumError::Invalid { expr: expr.into(), pos: 0, reason: "magnitude out of range".into() });
        }
        Ok(c)
    }

    fn resolve(&self, sym: &str) -> Option<(f64, &Atom)> {
        if let Some(a) = self.atoms.get(sym) {
            return Some((1.0, a));
        }
        for (p, v) in &self.prefixes {
            if let Some(rest) = sym.strip_prefix(p.as_str())
                && let Some(a) = self.atoms.get(rest).filter(|a| a.metric)
            {
                return Some((*v, a));
            }
        }
        None
    }
}

fn to_base(v: f64, c: &Canonical, unit: &str) -> Result<f64, UcumError> {
    match c.special.as_deref() {
        None => Ok(v * c.factor),
        Some("Cel") => Ok(v + 273.15),
        Some("degF") => Ok((v + 459.67) * 5.0 / 9.0),
        Some(other) => Err(UcumError::NotConvertible {
            unit: unit.into(),
            reason: format!("special unit function {other} is not implemented"),
        }),
    }
}

fn from_base(v: f64, c: &Canonical, unit: &str) -> Result<f64, UcumError> {
    match c.special.as_deref() {
        None => Ok(v / c.factor),
        Some("Cel") => Ok(v - 273.15),
        Some("degF") => Ok(v * 9.0 / 5.0 - 459.67),
        Some(other) => Err(UcumError::NotConvertible {
            unit: unit.into(),
            reason: format!("special unit function {other} is not implemented"),
        }),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    expr: &'a str,
    pos: usize,
    ucum: &'a Ucum,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn err(&self, reason: &str) -> UcumError {
        UcumError::Invalid { expr: self.expr.to_string(), pos: self.pos, reason: reason.to_string() }
    }
    fn term(&mut self) -> Result<Canonical, UcumError> {
        let mut c = self.component()?;
        loop {
            match self.peek() {
                Some(b'.') => {
                    self.pos += 1;
                    let r = self.component()?;
                    c = c.mul(&r, 1);
                }
                Some(b'/') => {
                    self.pos += 1;
                    let r = self.component()?;
                    c = c.mul(&r, -1);
                }
                _ => return Ok(c),
            }
        }
    }
    fn annotation(&mut self) -> Result<(), UcumError> {
        // At '{': annotations are free text without braces, only printable ASCII.
        let start = self.pos;
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'}' => return Ok(()),
                b'{' => return Err(self.err("nested '{' in annotation")),
                0x20..=0x7e => {}
                _ => return Err(self.err("non-ASCII character in annotation")),
            }
        }
        self.pos = start;
        Err(self.err("unterminated annotation '{'"))
    }
    fn component(&mut self) -> Result<Canonical, UcumError> {
        match self.peek() {
            None => Err(self.err("unit expected")),
            Some(b'(') => {
                self.pos += 1;
                let c = self.term()?;
                if self.peek() != Some(b')') {
                    return Err(self.err("')' expected"));
                }
                self.pos += 1;
                if self.peek() == Some(b'{') {
                    self.annotation()?;
                }
                Ok(c)
            }
            Some(b'{') => {
                self.annotation()?;
                Ok(Canonical::one())
            }
            Some(_) => {
                let c = self.simple()?;
                if self.peek() == Some(b'{') {
                    self.annotation()?;
                }
                Ok(c)
            }
        }
    }
    /// A factor, or a (prefixed) atom with an optional exponent.
    fn simple(&mut self) -> Result<Canonical, UcumError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b'[' => {
                    let close = self.s[self.pos..].iter().position(|&x| x == b']');
                    match close {
                        Some(k) => self.pos += k + 1,
                        None => return Err(self.err("unterminated '['")),
                    }
                }
                b'.' | b'/' | b'(' | b')' | b'{' => break,
                b']' | b'}' => return Err(self.err("unbalanced bracket")),
                b' ' | b'\t' => return Err(self.err("spaces are not allowed in UCUM")),
                0x21..=0x7e => self.pos += 1,
                _ => return Err(self.err("non-ASCII character (UCUM codes are ASCII, e.g. 'u' for micro)")),
            }
        }
        let tok = &self.expr[start..self.pos];
        if tok.is_empty() {
            return Err(self.err("unit expected"));
        }
        if tok.bytes().all(|b| b.is_ascii_digit()) {
            let v: f64 = tok.parse().map_err(|_| self.err("bad number"))?;
            if v == 0.0 {
                return Err(self.err("a factor of 0 is not a unit"));
            }
            let mut c = Canonical::one();
            c.factor = v;
            return Ok(c);
        }
        // Split a trailing signed integer exponent, unless the token ends in ']'.
        let digits = tok.bytes().rev().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && digits < tok.len() {
            let mut k = tok.len() - digits;
            let mut sign = 1;
            if matches!(tok.as_bytes()[k - 1], b'+' | b'-') && k >= 2 {
                if tok.as_bytes()[k - 1] == b'-' {
                    sign = -1;
                }
                k -= 1;
            }
            let sym = &tok[..k];
            let exp_digits = &tok[tok.len() - digits..];
            if let Some((pf, atom)) = self.ucum.resolve(sym) {
                let e: i32 = exp_digits.parse().map_err(|_| self.err("exponent too large"))?;
                return Ok(scaled(atom, pf).pow(sign * e));
            }
        }
        match self.ucum.resolve(tok) {
            Some((pf, atom)) => Ok(scaled(atom, pf)),
            None => {
                self.pos = start;
                Err(self.err(&format!("unknown unit '{tok}'")))
            }
        }
    }
}

fn scaled(atom: &Atom, prefix: f64) -> Canonical {
    let mut c = atom.canonical.clone();
    c.factor *= prefix;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u() -> &'static Ucum {
        Ucum::builtin()
    }
    fn close(a: f64, b: f64) -> bool {
        ((a - b) / b).abs() < 1e-9
    }

    #[test]
    fn shipped_essence_resolves_every_unit() {
        let essence =
            crate::loaders::ucum_essence::parse_str(SHIPPED_ESSENCE, "ucum-essence.xml", Default::default()).unwrap().0;
        let (ucum, unresolved) = Ucum::from_essence(&essence);
        assert!(unresolved.is_empty(), "unresolved: {unresolved:?}");
        assert_eq!(ucum.atom_count(), essence.units.len() + essence.base_units.len());
    }

    #[test]
    fn valid_and_invalid_expressions() {
        for ok in [
            "mg/dL",
            "mmol/L",
            "10*3/uL",
            "10^3/uL",
            "/min",
            "kg.m/s2",
            "m2",
            "s-1",
            "%",
            "[IU]/L",
            "meq/L",
            "{cells}/uL",
            "mm[Hg]",
            "g/(24.h)",
            "fL",
            "pg",
            "umol/L",
            "Cel",
            "[degF]",
            "kg/m2",
            "mL/min/{1.73_m2}",
            "10*-3",
            "U/L",
            "[pH]",
            "1",
            "cm[H2O]",
            "{score}",
        ] {
            assert!(u().is_valid(ok), "{ok} should be valid: {:?}", u().validate(ok));
        }
        for bad in [
            "",
            "mg/",
            "mg//dL",
            "mm/0",
            "10*999",
            "10*-999",
            "mg dL",
            "µg",
            "xyz",
            "mg/dL)",
            "(mg",
            "{unclosed",
            "[IU",
            "kg.",
            "dL}",
        ] {
            assert!(!u().is_valid(bad), "{bad:?} should be invalid");
        }
        let e = u().validate("mg/dX").unwrap_err();
        assert!(e.to_string().contains("unknown unit 'dX'"), "{e}");
        assert!(e.to_string().contains("position 3"), "{e}");
    }

    #[test]
    fn canonical_forms() {
        let c = u().canonical("mg/dL").unwrap();
        assert_eq!(c.unit_expression(), "m-3.g");
        assert!(close(c.factor, 1e-3 / 1e-4), "{}", c.factor);
        let n = u().canonical("10*3/uL").unwrap();
        assert_eq!(n.unit_expression(), "m-3");
        assert!(close(n.factor, 1e3 / 1e-9));
        assert!(u().canonical("[IU]/L").unwrap().unit_expression().contains("[iU]"));
    }

    #[test]
    fn conversions() {
        // mass/volume <-> mass/volume: 100 mg/dL = 1 g/L.
        assert!(close(u().convert(100.0, "mg/dL", "g/L").unwrap(), 1.0));
        assert!(close(u().convert(1.0, "g/L", "mg/dL").unwrap(), 100.0));
        // substance/volume: 5.5 mmol/L = 5500 umol/L.
        assert!(close(u().convert(5.5, "mmol/L", "umol/L").unwrap(), 5500.0));
        assert!(close(u().convert(250.0, "umol/L", "mmol/L").unwrap(), 0.25));
        assert!(close(u().convert(1.0, "10*3/uL", "10*9/L").unwrap(), 1.0));
        assert!(close(u().convert(1.0, "[lb_av]", "kg").unwrap(), 0.45359237));
        assert!(close(u().convert(37.0, "Cel", "[degF]").unwrap(), 98.6));
        assert!(close(u().convert(300.0, "K", "Cel").unwrap(), 26.85));
        assert!(close(u().convert(1.0, "h", "min").unwrap(), 60.0));
        // mass <-> substance is refused without a molar mass ...
        assert!(matches!(u().convert(90.0, "mg/dL", "mmol/L"), Err(UcumError::NotCommensurable { .. })));
        // ... and done with one (glucose 180.156 g/mol: 90 mg/dL ≈ 4.996 mmol/L).
        let v = u().convert_mass_molar(90.0, "mg/dL", "mmol/L", 180.156).unwrap();
        assert!((v - 4.9957).abs() < 1e-3, "{v}");
        let back = u().convert_mass_molar(v, "mmol/L", "mg/dL", 180.156).unwrap();
        assert!(close(back, 90.0));
        assert!(matches!(u().convert(1.0, "[pH]", "mol/L"), Err(UcumError::NotConvertible { .. })));
        assert!(matches!(u().convert(1.0, "Cel/h", "K/h"), Err(UcumError::NotConvertible { .. })));
        assert!(matches!(u().convert(1.0, "[IU]/L", "g/L"), Err(UcumError::NotCommensurable { .. })));
    }
}
