//! Loader for FHIR R4 `CodeSystem`, `ValueSet` and `ConceptMap` resources in JSON (one
//! resource, or a `Bundle` of them).
//!
//! This is how HL7's own terminology (including the v2 tables), national value sets and a
//! sender's local code map arrive. Nested CodeSystem concepts become is-a children, as
//! FHIR's `hierarchyMeaning = is-a` says; a `parent` property does the same. A malformed
//! entry is reported with its JSON path (JSON has no rows), the rest loads as the policy says.

use std::path::Path;

use serde_json::Value;

use crate::content::{
    CodeSystemContent, ConceptContent, ConceptMapContent, ConceptStatus, Equivalence, LoadOptions, LoadReport,
    MapElement, MapGroup, MapTarget, ValueSetContent, ValueSetFilter, ValueSetInclude,
};
use crate::error::{Result, RowError, TerminologyError};
use crate::loaders::{LoadedContent, file_name};

/// Loads a JSON file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<(LoadedContent, LoadReport)> {
    let text = std::fs::read(path).map_err(|e| TerminologyError::io(path, e))?;
    parse_slice(&text, path, opts)
}

/// Parses JSON bytes; `path` names them in messages.
pub fn parse_slice(bytes: &[u8], path: &Path, opts: &LoadOptions) -> Result<(LoadedContent, LoadReport)> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        TerminologyError::bad_file(path, format!("invalid JSON at line {} column {}: {e}", e.line(), e.column()))
    })?;
    let mut out = LoadedContent::default();
    let mut report = LoadReport::new("fhir", path.to_path_buf());
    let resources: Vec<(String, &Value)> = match v.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => v
            .get("entry")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .enumerate()
                    .filter_map(|(i, e)| e.get("resource").map(|r| (format!("entry[{i}].resource"), r)))
                    .collect()
            })
            .unwrap_or_default(),
        Some(_) => vec![(String::new(), &v)],
        None => return Err(TerminologyError::bad_file(path, "no resourceType: not a FHIR resource")),
    };
    let mut ctx = Ctx { path, opts, report: &mut report };
    for (at, r) in resources {
        match r.get("resourceType").and_then(Value::as_str) {
            Some("CodeSystem") => {
                if let Some(cs) = ctx.code_system(r, &at)? {
                    out.code_systems.push(cs);
                }
            }
            Some("ValueSet") => {
                if let Some(vs) = ctx.value_set(r, &at)? {
                    out.value_sets.push(vs);
                }
            }
            Some("ConceptMap") => {
                if let Some(cm) = ctx.concept_map(r, &at)? {
                    out.concept_maps.push(cm);
                }
            }
            other => {
                ctx.report.filtered += 1;
                ctx.report.notes.push(format!("{at}: resourceType {other:?} ignored"));
            }
        }
    }
    let targets: Vec<String> = out
        .code_systems
        .iter()
        .map(|c| c.system.clone())
        .chain(out.value_sets.iter().map(|v| v.url.clone()))
        .chain(out.concept_maps.iter().map(|m| m.url.clone()))
        .collect();
    report.target = targets.join(" ");
    report.version = out
        .code_systems
        .first()
        .map(|c| c.version.clone())
        .or_else(|| out.concept_maps.first().map(|c| c.version.clone()))
        .or_else(|| out.value_sets.first().map(|c| c.version.clone()))
        .unwrap_or_default();
    Ok((out, report))
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn join(at: &str, rest: &str) -> String {
    if at.is_empty() { rest.to_string() } else { format!("{at}.{rest}") }
}

/// A property value of any FHIR type, as text.
fn property_value(p: &Value) -> Option<String> {
    for k in ["valueCode", "valueString", "valueDateTime"] {
        if let Some(v) = s(p, k) {
            return Some(v.to_string());
        }
    }
    if let Some(b) = p.get("valueBoolean").and_then(Value::as_bool) {
        return Some(b.to_string());
    }
    if let Some(n) = p.get("valueInteger").or_else(|| p.get("valueDecimal")) {
        return Some(n.to_string());
    }
    p.get("valueCoding").and_then(|c| s(c, "code")).map(str::to_string)
}

struct Ctx<'a> {
    path: &'a Path,
    opts: &'a LoadOptions,
    report: &'a mut LoadReport,
}

impl Ctx<'_> {
    fn bad(&mut self, at: &str, reason: &str) -> Result<()> {
        self.report.rows_read += 1;
        let e = RowError { file: self.path.to_path_buf(), line: 0, reason: format!("{at}: {reason}") };
        self.report.reject(self.opts.policy, e)
    }

    fn url(&mut self, r: &Value, at: &str, what: &str) -> Result<Option<String>> {
        match s(r, "url") {
            Some(u) if !u.is_empty() => Ok(Some(u.to_string())),
            _ => {
                self.bad(&join(at, "url"), &format!("{what} without a url"))?;
                Ok(None)
            }
        }
    }

    fn code_system(&mut self, r: &Value, at: &str) -> Result<Option<CodeSystemContent>> {
        let Some(url) = self.url(r, at, "CodeSystem")? else { return Ok(None) };
        let mut cs = CodeSystemContent {
            system: url,
            version: s(r, "version").or(self.opts.version.as_deref()).unwrap_or("").to_string(),
            name: s(r, "title").or_else(|| s(r, "name")).unwrap_or("").to_string(),
            source: file_name(self.path),
            concepts: Vec::new(),
        };
        self.concepts(arr(r, "concept"), &join(at, "concept"), None, &mut cs.concepts)?;
        self.report.loaded += cs.concepts.len() as u64;
        Ok(Some(cs))
    }

    fn concepts(
        &mut self,
        list: &[Value],
        at: &str,
        parent: Option<&str>,
        out: &mut Vec<ConceptContent>,
    ) -> Result<()> {
        for (i, c) in list.iter().enumerate() {
            let here = format!("{at}[{i}]");
            let Some(code) = s(c, "code").filter(|c| !c.is_empty()) else {
                self.bad(&here, "concept without a code")?;
                continue;
            };
            self.report.rows_read += 1;
            let mut cc = ConceptContent::new(code, s(c, "display").unwrap_or(""));
            if let Some(p) = parent {
                cc.parents.push(p.to_string());
            }
            for p in arr(c, "property") {
                let (Some(k), Some(v)) = (s(p, "code"), property_value(p)) else { continue };
                match (k, v.as_str()) {
                    ("status", st) => {
                        cc.status = match st {
                            "retired" | "inactive" => ConceptStatus::Inactive,
                            "deprecated" => ConceptStatus::Deprecated,
                            _ => ConceptStatus::Active,
                        };
                        cc.properties.push((k.to_string(), v));
                    }
                    ("inactive", "true") => cc.status = ConceptStatus::Inactive,
                    ("deprecated", _) => cc.status = ConceptStatus::Deprecated,
                    ("parent" | "subsumedBy", _) => cc.parents.push(v),
                    _ => cc.properties.push((k.to_string(), v)),
                }
            }
            let code = cc.code.clone();
            out.push(cc);
            self.concepts(arr(c, "concept"), &format!("{here}.concept"), Some(&code), out)?;
        }
        Ok(())
    }

    fn includes(&mut self, list: &[Value], at: &str) -> Result<Vec<ValueSetInclude>> {
        let mut out = Vec::new();
        for (i, inc) in list.iter().enumerate() {
            let here = format!("{at}[{i}]");
            let mut vi = ValueSetInclude {
                system: s(inc, "system").map(str::to_string),
                version: s(inc, "version").map(str::to_string),
                ..Default::default()
            };
            for (j, c) in arr(inc, "concept").iter().enumerate() {
                match s(c, "code") {
                    Some(code) if !code.is_empty() => {
                        vi.concepts.push((code.to_string(), s(c, "display").map(str::to_string)))
                    }
                    _ => self.bad(&format!("{here}.concept[{j}]"), "concept without a code")?,
                }
            }
            for (j, f) in arr(inc, "filter").iter().enumerate() {
                match (s(f, "property"), s(f, "op"), s(f, "value")) {
                    (Some(p), Some(o), Some(v)) => {
                        vi.filters.push(ValueSetFilter { property: p.into(), op: o.into(), value: v.into() })
                    }
                    _ => self.bad(&format!("{here}.filter[{j}]"), "filter needs property, op and value")?,
                }
            }
            vi.value_sets = arr(inc, "valueSet").iter().filter_map(Value::as_str).map(str::to_string).collect();
            if vi.system.is_none() && vi.value_sets.is_empty() {
                self.bad(&here, "include/exclude needs a system or a valueSet")?;
                continue;
            }
            out.push(vi);
        }
        Ok(out)
    }

    fn value_set(&mut self, r: &Value, at: &str) -> Result<Option<ValueSetContent>> {
        let Some(url) = self.url(r, at, "ValueSet")? else { return Ok(None) };
        let compose = r.get("compose").cloned().unwrap_or(Value::Null);
        let include = self.includes(arr(&compose, "include"), &join(at, "compose.include"))?;
        let exclude = self.includes(arr(&compose, "exclude"), &join(at, "compose.exclude"))?;
        self.report.loaded += 1;
        Ok(Some(ValueSetContent {
            url,
            version: s(r, "version").or(self.opts.version.as_deref()).unwrap_or("").to_string(),
            name: s(r, "title").or_else(|| s(r, "name")).unwrap_or("").to_string(),
            source: file_name(self.path),
            include,
            exclude,
        }))
    }

    fn concept_map(&mut self, r: &Value, at: &str) -> Result<Option<ConceptMapContent>> {
        let Some(url) = self.url(r, at, "ConceptMap")? else { return Ok(None) };
        let mut cm = ConceptMapContent {
            url,
            version: s(r, "version").or(self.opts.version.as_deref()).unwrap_or("").to_string(),
            name: s(r, "title").or_else(|| s(r, "name")).unwrap_or("").to_string(),
            sender: self.opts.sender.clone(),
            source: file_name(self.path),
            groups: Vec::new(),
        };
        for (gi, g) in arr(r, "group").iter().enumerate() {
            let gat = join(at, &format!("group[{gi}]"));
            let Some(target) = s(g, "target").filter(|t| !t.is_empty()) else {
                self.bad(&gat, "group without a target system")?;
                continue;
            };
            let mut group = MapGroup {
                // A group without source matches codes of any system (handy for local maps).
                source_system: s(g, "source").unwrap_or("").to_string(),
                target_system: target.to_string(),
                elements: Vec::new(),
            };
            for (ei, el) in arr(g, "element").iter().enumerate() {
                let eat = format!("{gat}.element[{ei}]");
                let Some(code) = s(el, "code").filter(|c| !c.is_empty()) else {
                    self.bad(&eat, "element without a code")?;
                    continue;
                };
                self.report.rows_read += 1;
                let mut me = MapElement { code: code.to_string(), targets: Vec::new() };
                for (ti, t) in arr(el, "target").iter().enumerate() {
                    let eq = s(t, "equivalence").or_else(|| s(t, "relationship")).unwrap_or("equivalent");
                    let Some(equivalence) = Equivalence::parse(eq) else {
                        self.bad(&format!("{eat}.target[{ti}]"), &format!("unknown equivalence {eq:?}"))?;
                        continue;
                    };
                    let tcode = s(t, "code").unwrap_or("");
                    if tcode.is_empty() && equivalence.is_match() {
                        self.bad(&format!("{eat}.target[{ti}]"), "target without a code")?;
                        continue;
                    }
                    me.targets.push(MapTarget {
                        code: tcode.to_string(),
                        display: s(t, "display").unwrap_or("").to_string(),
                        equivalence,
                    });
                }
                group.elements.push(me);
                self.report.loaded += 1;
            }
            cm.groups.push(group);
        }
        Ok(Some(cm))
    }
}
