//! Loader for `ucum-essence.xml`, the machine-readable UCUM definitions.
//!
//! Reads prefixes, base units and derived units (with special-unit functions) into a
//! [`UcumEssence`]; [`crate::ucum::Ucum::from_essence`] turns it into a working unit system.
//! A unit element without a code or with a non-numeric value is a malformed row (line of
//! its start tag).

use std::path::Path;

use quick_xml::events::{BytesStart, Event};

use crate::content::{LoadOptions, LoadReport, systems};
use crate::error::{Result, TerminologyError};
use crate::loaders::row_err;
use crate::ucum::{BaseUnitDef, PrefixDef, UcumEssence, UnitDef};

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    e.attributes().flatten().find(|a| a.key.as_ref() == name).map(|a| {
        let raw = String::from_utf8_lossy(&a.value).into_owned();
        quick_xml::escape::unescape(&raw).map(|c| c.into_owned()).unwrap_or(raw)
    })
}

#[derive(Default)]
struct Pending {
    kind: u8, // 1 prefix, 2 base, 3 unit
    line: u64,
    code: String,
    name: String,
    property: String,
    dim: String,
    class: String,
    metric: bool,
    special: bool,
    arbitrary: bool,
    value: Option<String>,
    unit: String,
    function: Option<(String, String, String)>,
}

/// Parses essence XML text. `path` is used in messages only.
pub fn parse_str(xml: &str, path: impl AsRef<Path>, opts: LoadOptions) -> Result<(UcumEssence, LoadReport)> {
    let path = path.as_ref();
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut essence = UcumEssence::default();
    let mut report = LoadReport::new("ucum", path.to_path_buf());
    report.target = systems::UCUM.into();
    let line_at = |pos: u64| -> u64 {
        xml.as_bytes()[..(pos as usize).min(xml.len())].iter().filter(|&&b| b == b'\n').count() as u64 + 1
    };
    let mut cur: Option<Pending> = None;
    let mut text_target: Option<&'static str> = None;
    let mut saw_root = false;
    loop {
        let pos = reader.buffer_position();
        let ev = reader.read_event().map_err(|e| {
            TerminologyError::bad_file(path, format!("XML error near line {}: {e}", line_at(reader.buffer_position())))
        })?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                match e.name().as_ref() {
                    b"root" => {
                        saw_root = true;
                        essence.version = attr(e, b"version").unwrap_or_default();
                        essence.revision_date = attr(e, b"revision-date").unwrap_or_default();
                    }
                    tag @ (b"prefix" | b"base-unit" | b"unit") => {
                        let kind = match tag {
                            b"prefix" => 1,
                            b"base-unit" => 2,
                            _ => 3,
                        };
                        cur = Some(Pending {
                            kind,
                            line: line_at(pos),
                            code: attr(e, b"Code").unwrap_or_default(),
                            dim: attr(e, b"dim").unwrap_or_default(),
                            class: attr(e, b"class").unwrap_or_default(),
                            metric: attr(e, b"isMetric").as_deref() == Some("yes"),
                            special: attr(e, b"isSpecial").as_deref() == Some("yes"),
                            arbitrary: attr(e, b"isArbitrary").as_deref() == Some("yes"),
                            ..Default::default()
                        });
                    }
                    b"name" if !empty => text_target = Some("name"),
                    b"property" if !empty => text_target = Some("property"),
                    b"value" => {
                        if let Some(p) = cur.as_mut() {
                            p.value = attr(e, b"value");
                            p.unit = attr(e, b"Unit").unwrap_or_default();
                        }
                    }
                    b"function" => {
                        if let Some(p) = cur.as_mut() {
                            p.function = Some((
                                attr(e, b"name").unwrap_or_default(),
                                attr(e, b"value").unwrap_or_default(),
                                attr(e, b"Unit").unwrap_or_default(),
                            ));
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) => {
                if let (Some(target), Some(p)) = (text_target, cur.as_mut()) {
                    let s = String::from_utf8_lossy(t.as_ref()).into_owned();
                    let s = quick_xml::escape::unescape(&s).map(|c| c.into_owned()).unwrap_or(s);
                    let slot = if target == "name" { &mut p.name } else { &mut p.property };
                    if slot.is_empty() {
                        *slot = s.trim().to_string();
                    }
                }
            }
            Event::End(ref e) => match e.name().as_ref() {
                b"name" | b"property" => text_target = None,
                b"prefix" | b"base-unit" | b"unit" => {
                    if let Some(p) = cur.take() {
                        report.rows_read += 1;
                        match finish(p) {
                            Ok(Item::Prefix(x)) => essence.prefixes.push(x),
                            Ok(Item::Base(x)) => essence.base_units.push(x),
                            Ok(Item::Unit(x)) => essence.units.push(x),
                            Err((line, msg)) => report.reject(opts.policy, row_err(path, line, msg))?,
                        }
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root || (essence.base_units.is_empty() && essence.units.is_empty()) {
        return Err(TerminologyError::bad_file(path, "no UCUM <root> with unit definitions found"));
    }
    report.version = essence.version.clone();
    report.loaded = (essence.prefixes.len() + essence.base_units.len() + essence.units.len()) as u64;
    report.notes.push(format!(
        "{} prefixes, {} base units, {} units",
        essence.prefixes.len(),
        essence.base_units.len(),
        essence.units.len()
    ));
    let (_, unresolved) = crate::ucum::Ucum::from_essence(&essence);
    if !unresolved.is_empty() {
        report.notes.push(format!("units whose definition could not be resolved: {}", unresolved.join(" ")));
    }
    Ok((essence, report))
}

enum Item {
    Prefix(PrefixDef),
    Base(BaseUnitDef),
    Unit(UnitDef),
}

fn num(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

fn finish(p: Pending) -> std::result::Result<Item, (u64, String)> {
    if p.code.is_empty() {
        return Err((p.line, "element without a Code attribute".into()));
    }
    match p.kind {
        1 => {
            let v = p
                .value
                .as_deref()
                .and_then(num)
                .ok_or((p.line, format!("prefix {}: value is not a number", p.code)))?;
            Ok(Item::Prefix(PrefixDef { code: p.code, name: p.name, value: v }))
        }
        2 => Ok(Item::Base(BaseUnitDef { code: p.code, name: p.name, property: p.property, dim: p.dim })),
        _ => {
            let value = match p.value.as_deref() {
                None => 1.0,
                Some(s) => num(s).ok_or((p.line, format!("unit {}: value {s:?} is not a number", p.code)))?,
            };
            let function = match p.function {
                None => None,
                Some((n, v, u)) => {
                    let v = num(&v).ok_or((p.line, format!("unit {}: function value is not a number", p.code)))?;
                    Some((n, v, u))
                }
            };
            if p.special && function.is_none() {
                return Err((p.line, format!("special unit {} has no <function>", p.code)));
            }
            if !p.special && !p.arbitrary && p.unit.is_empty() {
                return Err((p.line, format!("unit {} has no definition (<value Unit=...>)", p.code)));
            }
            Ok(Item::Unit(UnitDef {
                code: p.code,
                name: p.name,
                property: p.property,
                class: p.class,
                is_metric: p.metric,
                is_special: p.special,
                is_arbitrary: p.arbitrary,
                value,
                unit: p.unit,
                function,
            }))
        }
    }
}
