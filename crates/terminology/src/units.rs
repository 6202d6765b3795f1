//! The sender-unit table: unit strings senders really write, mapped to UCUM.
//!
//! Why: `mg/dl`, `K/uL` or `x10E3/uL` are what LIS feeds send; some are not UCUM and some
//! are valid UCUM with the wrong meaning (`K/uL` is kelvin per microlitre). The table is
//! consulted before UCUM validity for that reason. Rules, in order:
//! 1. exact match in the table;
//! 2. ASCII case-insensitive match in the table;
//! 3. the string is already valid UCUM (kept as is);
//! 4. `µ`/`μ` replaced by `u`, then 1–3 again;
//! 5. otherwise not mapped.
//!
//! The shipped table is `data/sender-units.toml`; sites extend it with their own TOML
//! (`[units]` table of `"sender string" = "UCUM code"`), later entries winning.

use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::error::{Result, TerminologyError};
use crate::ucum::Ucum;

/// The shipped table.
pub const SHIPPED_TABLE: &str = include_str!("../data/sender-units.toml");

/// How a sender unit string was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitResolution<'a> {
    /// Found in the table (the UCUM code is the table's).
    Table(&'a str),
    /// Already valid UCUM: kept as is.
    AlreadyUcum(&'a str),
    /// Valid UCUM after replacing the micro sign with `u` (owned: see [`UnitResolution::code`]).
    MicroSign,
    /// Neither in the table nor valid UCUM.
    Unknown,
}

/// The sender-unit table.
#[derive(Debug, Clone, Default)]
pub struct UnitTable {
    exact: FxHashMap<String, String>,
    folded: FxHashMap<String, String>,
}

#[derive(Deserialize)]
struct TomlTable {
    #[serde(default)]
    units: std::collections::BTreeMap<String, String>,
}

impl UnitTable {
    /// An empty table.
    pub fn new() -> Self {
        UnitTable::default()
    }

    /// The shipped table.
    pub fn builtin() -> UnitTable {
        let mut t = UnitTable::new();
        // The shipped file is tested to parse; an error here would be a build defect.
        if let Err(e) = t.extend_from_toml(SHIPPED_TABLE, "data/sender-units.toml") {
            debug_assert!(false, "{e}");
        }
        t
    }

    /// Adds (or overrides) one mapping.
    pub fn insert(&mut self, sender: &str, ucum: &str) {
        self.exact.insert(sender.to_string(), ucum.to_string());
        self.folded.insert(sender.to_ascii_lowercase(), ucum.to_string());
    }

    /// Adds the `[units]` entries of a TOML document.
    pub fn extend_from_toml(&mut self, text: &str, origin: &str) -> Result<usize> {
        let t: TomlTable = toml::from_str(text)
            .map_err(|e| TerminologyError::BadUnitTable { origin: origin.into(), reason: e.to_string() })?;
        let n = t.units.len();
        for (k, v) in &t.units {
            self.insert(k, v);
        }
        Ok(n)
    }

    /// Reads a TOML file and adds its entries.
    pub fn extend_from_file(&mut self, path: &std::path::Path) -> Result<usize> {
        let text = std::fs::read_to_string(path).map_err(|e| TerminologyError::io(path, e))?;
        self.extend_from_toml(&text, &path.display().to_string())
    }

    pub fn len(&self) -> usize {
        self.exact.len()
    }
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// Entries whose UCUM code is not valid UCUM (a table mistake), with the error.
    pub fn invalid_entries(&self, ucum: &Ucum) -> Vec<(String, String, String)> {
        let mut v: Vec<_> = self
            .exact
            .iter()
            .filter_map(|(k, u)| ucum.validate(u).err().map(|e| (k.clone(), u.clone(), e.to_string())))
            .collect();
        v.sort();
        v
    }

    fn table(&self, s: &str) -> Option<&str> {
        if let Some(u) = self.exact.get(s) {
            return Some(u);
        }
        // Case fold on the stack for the usual short strings: no allocation.
        let mut buf = [0u8; 48];
        if s.len() <= buf.len() {
            let b = &mut buf[..s.len()];
            b.copy_from_slice(s.as_bytes());
            b.make_ascii_lowercase();
            let folded = std::str::from_utf8(b).ok()?;
            self.folded.get(folded).map(String::as_str)
        } else {
            self.folded.get(&s.to_ascii_lowercase()).map(String::as_str)
        }
    }

    /// Resolves a sender unit string (see the module doc for the rules).
    pub fn resolve<'a>(&'a self, raw: &'a str, ucum: &Ucum) -> UnitResolution<'a> {
        let s = raw.trim();
        if s.is_empty() {
            return UnitResolution::Unknown;
        }
        if let Some(u) = self.table(s) {
            return UnitResolution::Table(u);
        }
        if ucum.is_valid(s) {
            return UnitResolution::AlreadyUcum(s);
        }
        if s.contains(['µ', 'μ']) {
            return UnitResolution::MicroSign;
        }
        UnitResolution::Unknown
    }

    /// The UCUM code for a sender unit string, or `None` if it cannot be resolved.
    pub fn to_ucum(&self, raw: &str, ucum: &Ucum) -> Option<String> {
        match self.resolve(raw, ucum) {
            UnitResolution::Table(u) | UnitResolution::AlreadyUcum(u) => Some(u.to_string()),
            UnitResolution::MicroSign => {
                let replaced = raw.trim().replace(['µ', 'μ'], "u");
                match self.resolve(&replaced, ucum) {
                    UnitResolution::Table(u) | UnitResolution::AlreadyUcum(u) => Some(u.to_string()),
                    _ => None,
                }
            }
            UnitResolution::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_parses_and_every_target_is_valid_ucum() {
        let t = UnitTable::builtin();
        assert!(t.len() > 40, "{}", t.len());
        let bad = t.invalid_entries(Ucum::builtin());
        assert!(bad.is_empty(), "{bad:?}");
    }

    #[test]
    fn sender_strings_normalise() {
        let t = UnitTable::builtin();
        let u = Ucum::builtin();
        for (raw, want) in [
            ("mg/dl", "mg/dL"),
            ("MG/DL", "mg/dL"),
            ("mmol/l", "mmol/L"),
            ("10^3/uL", "10*3/uL"),
            ("K/uL", "10*3/uL"),
            ("x10E3/uL", "10*3/uL"),
            ("10*3/ul", "10*3/uL"),
            ("g/dl", "g/dL"),
            ("mEq/L", "meq/L"),
            ("IU/L", "[IU]/L"),
            ("sec", "s"),
            ("%", "%"),
            ("fL", "fL"),
            ("µg/L", "ug/L"),
            (" mg/dL ", "mg/dL"),
            ("mL/min/1.73m2", "mL/min/{1.73_m2}"),
        ] {
            assert_eq!(t.to_ucum(raw, u).as_deref(), Some(want), "{raw}");
        }
        // Valid UCUM not in the table is kept.
        assert_eq!(t.resolve("mg/kg", u), UnitResolution::AlreadyUcum("mg/kg"));
        // `K/uL` must come from the table, not be read as kelvin.
        assert_eq!(t.resolve("K/uL", u), UnitResolution::Table("10*3/uL"));
        for raw in ["", "per cent-ish", "mg/dX"] {
            assert_eq!(t.to_ucum(raw, u), None, "{raw}");
        }
    }

    #[test]
    fn extend_overrides_and_reports_bad_toml() {
        let mut t = UnitTable::builtin();
        t.extend_from_toml("[units]\n\"mcg/ml\" = \"ug/mL\"\n\"mg/dl\" = \"mg/dL\"\n", "site.toml").unwrap();
        assert_eq!(t.to_ucum("MCG/ML", Ucum::builtin()).as_deref(), Some("ug/mL"));
        let e = t.extend_from_toml("[units\n", "broken.toml").unwrap_err();
        assert!(e.to_string().contains("broken.toml"), "{e}");
    }
}
