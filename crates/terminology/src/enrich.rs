//! Enrichment of coded data: each coding gains the standard coding beside it (never
//! replacing it), a missing display is filled in, each quantity gets its UCUM system and
//! code, and an [`EnrichmentReport`] says per coding what was done and what could not be mapped.
//!
//! It works over small structs of its own ([`Coding`], [`CodeableConcept`], [`Quantity`]) and
//! the [`Enrichable`] visitor trait, so wiring it to the canonical `ClinicalEvent` is a thin
//! adapter. [`enrich_fhir_json`] is such an adapter for FHIR JSON resources and bundles.
//!
//! Rules: nothing is removed; a present value is never changed. Codings are only appended,
//! displays only filled where absent, quantity system/code only filled where absent.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::content::systems;
use crate::ops::{Terminology, Validation};

mod text;

/// A FHIR Coding.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Coding {
    pub system: Option<String>,
    pub version: Option<String>,
    pub code: Option<String>,
    pub display: Option<String>,
    pub user_selected: Option<bool>,
}

impl Coding {
    pub fn new(system: &str, code: &str) -> Coding {
        Coding { system: Some(system.into()), code: Some(code.into()), ..Default::default() }
    }
}

/// A FHIR CodeableConcept.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CodeableConcept {
    pub coding: Vec<Coding>,
    pub text: Option<String>,
}

/// A FHIR Quantity.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Quantity {
    pub value: Option<f64>,
    /// The unit as the sender wrote it (kept as is).
    pub unit: Option<String>,
    pub system: Option<String>,
    pub code: Option<String>,
}

/// Something holding codings and quantities: the canonical event adapter implements this.
pub trait Enrichable {
    /// Calls `f` with a path (for the report, e.g. `Observation/obs-1.code`) and each concept.
    fn visit_concepts(&mut self, f: &mut dyn FnMut(&str, &mut CodeableConcept));
    /// Calls `f` with a path and each quantity.
    fn visit_quantities(&mut self, f: &mut dyn FnMut(&str, &mut Quantity));
}

/// Why a coding or unit was not mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum NotMappedReason {
    /// The coding has no code.
    NoCode,
    /// The code system is loaded but does not contain the code.
    UnknownCode { system: String },
    /// No ConceptMap (sender or public) maps this code to a standard system.
    NoMap,
    /// The coding names a standard system (e.g. SNOMED CT) whose content is not loaded.
    SystemNotLoaded { system: String },
    /// A map says explicitly that the code has no match.
    MapUnmatched { map_url: String },
    /// The quantity has no unit.
    NoUnit,
    /// The unit string is neither in the sender-unit table nor valid UCUM.
    UnknownUnit { unit: String },
    /// The quantity claims UCUM but its code is not valid UCUM.
    InvalidUcum { code: String, error: String },
    /// The quantity is coded in another unit system: left as is, UCUM suggested.
    OtherUnitSystem { system: String, suggested: Option<String> },
}

/// What was done to one coding or quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// A standard coding was appended beside the original.
    StandardCodingAdded {
        system: String,
        code: String,
        display: String,
        map_url: Option<String>,
    },
    /// The standard coding was already present in the concept.
    StandardCodingPresent {
        system: String,
        code: String,
    },
    /// The coding is already in a known standard system and its code exists.
    AlreadyStandard,
    /// The missing display was filled in.
    DisplayAdded {
        display: String,
    },
    /// The sender's display differs from the code system's (left unchanged).
    DisplayDiffers {
        expected: String,
    },
    /// The code exists but is not active.
    InactiveCode {
        status: String,
    },
    /// The quantity got UCUM system and code from its unit string.
    UnitNormalised {
        from: String,
        to: String,
    },
    /// The quantity already had a valid UCUM code.
    UnitAlreadyUcum,
    NotMapped(NotMappedReason),
}

/// One report line: a coding (system, code) or a quantity (unit) at a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportEntry {
    pub path: String,
    pub system: Option<String>,
    /// The code, or for a quantity the unit string.
    pub code: Option<String>,
    pub actions: Vec<Action>,
}

impl ReportEntry {
    pub fn not_mapped(&self) -> Option<&NotMappedReason> {
        self.actions.iter().find_map(|a| match a {
            Action::NotMapped(r) => Some(r),
            _ => None,
        })
    }
}

/// Counts over a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReportSummary {
    pub codings: u64,
    pub quantities: u64,
    pub standard_added: u64,
    pub already_standard: u64,
    pub displays_added: u64,
    pub units_normalised: u64,
    pub not_mapped: u64,
}

/// The enrichment report of one event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EnrichmentReport {
    pub entries: Vec<ReportEntry>,
}

impl EnrichmentReport {
    /// Entries that could not be mapped.
    pub fn not_mapped(&self) -> impl Iterator<Item = (&ReportEntry, &NotMappedReason)> {
        self.entries.iter().filter_map(|e| e.not_mapped().map(|r| (e, r)))
    }
    pub fn summary(&self) -> ReportSummary {
        let mut s = ReportSummary::default();
        for e in &self.entries {
            let is_quantity = e.actions.iter().any(|a| {
                matches!(
                    a,
                    Action::UnitNormalised { .. }
                        | Action::UnitAlreadyUcum
                        | Action::NotMapped(
                            NotMappedReason::NoUnit
                                | NotMappedReason::UnknownUnit { .. }
                                | NotMappedReason::InvalidUcum { .. }
                                | NotMappedReason::OtherUnitSystem { .. }
                        )
                )
            });
            if is_quantity {
                s.quantities += 1
            } else {
                s.codings += 1
            }
            for a in &e.actions {
                match a {
                    Action::StandardCodingAdded { .. } => s.standard_added += 1,
                    Action::AlreadyStandard | Action::StandardCodingPresent { .. } => s.already_standard += 1,
                    Action::DisplayAdded { .. } => s.displays_added += 1,
                    Action::UnitNormalised { .. } => s.units_normalised += 1,
                    Action::NotMapped(_) => s.not_mapped += 1,
                    _ => {}
                }
            }
        }
        s
    }
}

/// The sender key local code maps are registered under (`LoadOptions::sender`) and looked up
/// by: `APPLICATION|FACILITY`, from MSH-3.1 and MSH-4.1.
pub fn sender_key(application: &str, facility: &str) -> String {
    format!("{application}|{facility}")
}

/// `{path}.coding[{i}]`, the report path of a concept's coding.
fn coding_path(path: &str, i: usize) -> String {
    let mut p = String::with_capacity(path.len() + 12);
    p.push_str(path);
    p.push_str(".coding");
    text::push_index(&mut p, i as u32);
    p
}

/// Enrichment settings.
#[derive(Debug, Clone)]
pub struct EnrichOptions {
    /// The sender whose local maps apply (from the event envelope).
    pub sender: Option<String>,
    /// Target systems a translation may add, in preference order.
    pub targets: Vec<String>,
}

impl Default for EnrichOptions {
    fn default() -> Self {
        EnrichOptions {
            sender: None,
            targets: [systems::LOINC, systems::SNOMED, systems::ICD10CM, systems::RXNORM].map(String::from).to_vec(),
        }
    }
}

/// Applies enrichment with one terminology and option set.
pub struct Enricher<'t> {
    term: &'t Terminology,
    opts: EnrichOptions,
    /// UCUM codes already validated (`Some`: the error): an event repeats a few units in
    /// every value and reference range, and parsing them was a tenth of its enrichment.
    ucum_checked: std::cell::RefCell<rustc_hash::FxHashMap<String, Option<String>>>,
}

impl<'t> Enricher<'t> {
    pub fn new(term: &'t Terminology, opts: EnrichOptions) -> Self {
        Enricher { term, opts, ucum_checked: Default::default() }
    }

    /// `Ucum::validate`, remembered.
    fn ucum_error(&self, code: &str) -> Option<String> {
        if let Some(known) = self.ucum_checked.borrow().get(code) {
            return known.clone();
        }
        let error = self.term.ucum().validate(code).err().map(|e| e.to_string());
        self.ucum_checked.borrow_mut().insert(code.to_string(), error.clone());
        error
    }

    /// Enriches everything `e` exposes.
    pub fn enrich<E: Enrichable + ?Sized>(&self, e: &mut E) -> EnrichmentReport {
        let mut report = EnrichmentReport::default();
        e.visit_concepts(&mut |path, cc| self.enrich_concept(path, cc, &mut report));
        e.visit_quantities(&mut |path, q| self.enrich_quantity(path, q, &mut report));
        report
    }

    /// Enriches one concept: one report entry per original coding.
    pub fn enrich_concept(&self, path: &str, cc: &mut CodeableConcept, report: &mut EnrichmentReport) {
        let originals = cc.coding.len();
        for i in 0..originals {
            let mut actions = Vec::new();
            let (system, code) = (cc.coding[i].system.clone(), cc.coding[i].code.clone());
            let Some(code_s) = code.as_deref().filter(|c| !c.is_empty()) else {
                actions.push(Action::NotMapped(NotMappedReason::NoCode));
                report.entries.push(ReportEntry { path: coding_path(path, i), system, code, actions });
                continue;
            };
            let sys_s = system.as_deref().unwrap_or("");
            let known = self.term.code_system(sys_s);
            let mut resolved = false;
            if let Some(cs) = known {
                match self.term.validate_code(sys_s, code_s, cc.coding[i].display.as_deref()) {
                    Validation::UnknownSystem | Validation::UnknownCode => {}
                    v => {
                        resolved = true;
                        let concept_display = match &v {
                            Validation::Valid { display } | Validation::NotActive { display, .. } => *display,
                            Validation::DisplayMismatch { expected } => *expected,
                            _ => "",
                        };
                        if let Validation::NotActive { status, .. } = &v {
                            actions.push(Action::InactiveCode { status: status.as_str().into() });
                        }
                        if cs.system() != sys_s {
                            // Sender used an alias (LN, SCT, I10C...): add the coding under the URI.
                            self.add_coding(cc, cs.system(), code_s, concept_display, None, &mut actions);
                        } else {
                            actions.push(Action::AlreadyStandard);
                            if let Validation::DisplayMismatch { expected } = v {
                                actions.push(Action::DisplayDiffers { expected: expected.into() });
                            } else if cc.coding[i].display.as_deref().is_none_or(str::is_empty)
                                && !concept_display.is_empty()
                            {
                                cc.coding[i].display = Some(concept_display.into());
                                actions.push(Action::DisplayAdded { display: concept_display.into() });
                            }
                        }
                    }
                }
            }
            if !resolved {
                self.translate_into(cc, sys_s, code_s, &mut actions);
                let standard_uri = systems::canonical_uri(sys_s);
                if known.is_none()
                    && let Some(uri) = standard_uri
                    && actions.iter().all(|a| matches!(a, Action::NotMapped(NotMappedReason::NoMap)))
                {
                    actions.clear();
                    actions.push(Action::NotMapped(NotMappedReason::SystemNotLoaded { system: uri.into() }));
                }
                if actions.iter().all(|a| matches!(a, Action::NotMapped(_))) && known.is_some() {
                    // A standard system that lacks the code: say so rather than "no map".
                    actions.retain(|a| !matches!(a, Action::NotMapped(NotMappedReason::NoMap)));
                    if actions.is_empty() {
                        let system = known.map(|c| c.system().to_string()).unwrap_or_default();
                        actions.push(Action::NotMapped(NotMappedReason::UnknownCode { system }));
                    }
                }
            }
            report.entries.push(ReportEntry { path: coding_path(path, i), system, code, actions });
        }
    }

    fn translate_into(&self, cc: &mut CodeableConcept, system: &str, code: &str, actions: &mut Vec<Action>) {
        let all = self.term.translate(system, code, None, self.opts.sender.as_deref());
        let pick = self
            .opts
            .targets
            .iter()
            .find_map(|t| all.iter().find(|tr| tr.equivalence.is_match() && tr.system == t.as_str()));
        match pick {
            Some(tr) => {
                let url = Some(tr.map_url.to_string());
                self.add_coding(cc, tr.system, tr.code, tr.display, url, actions);
            }
            None => {
                let unmatched = all.iter().find(|t| !t.equivalence.is_match());
                actions.push(Action::NotMapped(match unmatched {
                    Some(t) => NotMappedReason::MapUnmatched { map_url: t.map_url.into() },
                    None => NotMappedReason::NoMap,
                }));
            }
        }
    }

    fn add_coding(
        &self,
        cc: &mut CodeableConcept,
        system: &str,
        code: &str,
        display: &str,
        map_url: Option<String>,
        actions: &mut Vec<Action>,
    ) {
        let present = cc.coding.iter().any(|c| c.system.as_deref() == Some(system) && c.code.as_deref() == Some(code));
        if present {
            actions.push(Action::StandardCodingPresent { system: system.into(), code: code.into() });
            return;
        }
        let display = if display.is_empty() {
            self.term.lookup(system, code).map(|c| c.display()).unwrap_or("")
        } else {
            display
        };
        cc.coding.push(Coding {
            system: Some(system.into()),
            version: self.term.code_system(system).map(|c| c.version().to_string()).filter(|v| !v.is_empty()),
            code: Some(code.into()),
            display: (!display.is_empty()).then(|| display.to_string()),
            user_selected: Some(false),
        });
        actions.push(Action::StandardCodingAdded {
            system: system.into(),
            code: code.into(),
            display: display.into(),
            map_url,
        });
    }

    /// Enriches one quantity: fills UCUM system and code from the unit string when absent.
    pub fn enrich_quantity(&self, path: &str, q: &mut Quantity, report: &mut EnrichmentReport) {
        let ucum = self.term.ucum();
        let mut actions = Vec::new();
        let raw = q.code.clone().filter(|c| !c.is_empty()).or_else(|| q.unit.clone().filter(|u| !u.is_empty()));
        match (q.system.as_deref(), q.code.as_deref()) {
            (Some(systems::UCUM), Some(code)) => match self.ucum_error(code) {
                None => actions.push(Action::UnitAlreadyUcum),
                Some(error) => {
                    actions.push(Action::NotMapped(NotMappedReason::InvalidUcum { code: code.into(), error }))
                }
            },
            (Some(other), _) if other != systems::UCUM => {
                let units = self.term.units();
                let suggested =
                    [q.code.as_deref(), q.unit.as_deref()].into_iter().flatten().find_map(|r| units.to_ucum(r, ucum));
                actions.push(Action::NotMapped(NotMappedReason::OtherUnitSystem { system: other.into(), suggested }));
            }
            _ => match raw.as_deref() {
                None => actions.push(Action::NotMapped(NotMappedReason::NoUnit)),
                Some(r) => match self.term.units().to_ucum(r, ucum) {
                    Some(code) => {
                        // Equal means the sender already wrote the UCUM code (table targets are valid UCUM).
                        let already = code == r.trim();
                        q.system = Some(systems::UCUM.into());
                        if q.unit.is_none() {
                            q.unit = Some(r.to_string());
                        }
                        actions.push(if already {
                            Action::UnitAlreadyUcum
                        } else {
                            Action::UnitNormalised { from: r.into(), to: code.clone() }
                        });
                        if q.code.is_none() {
                            q.code = Some(code);
                        }
                    }
                    None => actions.push(Action::NotMapped(NotMappedReason::UnknownUnit { unit: r.into() })),
                },
            },
        }
        report.entries.push(ReportEntry { path: path.into(), system: q.system.clone(), code: raw, actions });
    }
}

// ---- FHIR JSON adapter -------------------------------------------------------------------

/// A FHIR JSON resource or Bundle seen as [`Enrichable`]: every object with a `coding`
/// array is a CodeableConcept, every object with a numeric `value` and a `unit`, `code` or
/// `system` is a Quantity.
pub struct FhirJson<'a>(pub &'a mut Value);

fn walk(v: &mut Value, path: &mut String, f: &mut dyn FnMut(&str, &mut Value) -> bool) {
    if f(path, v) {
        return;
    }
    let len = path.len();
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk(child, path, f);
                path.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter_mut().enumerate() {
                path.push_str(&format!("[{i}]"));
                walk(child, path, f);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn str_field(m: &serde_json::Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

impl Enrichable for FhirJson<'_> {
    fn visit_concepts(&mut self, f: &mut dyn FnMut(&str, &mut CodeableConcept)) {
        concepts_in(self.0, f, &mut false);
    }

    fn visit_quantities(&mut self, f: &mut dyn FnMut(&str, &mut Quantity)) {
        quantities_in(self.0, f, &mut false);
    }
}

/// [`FhirJson`] that also tells whether enrichment added anything (a unit already valid UCUM
/// is reported `UnitAlreadyUcum` yet may gain its system and code).
struct TrackedJson<'a> {
    json: &'a mut Value,
    changed: bool,
}

impl Enrichable for TrackedJson<'_> {
    fn visit_concepts(&mut self, f: &mut dyn FnMut(&str, &mut CodeableConcept)) {
        concepts_in(self.json, f, &mut self.changed);
    }

    fn visit_quantities(&mut self, f: &mut dyn FnMut(&str, &mut Quantity)) {
        quantities_in(self.json, f, &mut self.changed);
    }
}

fn concepts_in(json: &mut Value, f: &mut dyn FnMut(&str, &mut CodeableConcept), changed: &mut bool) {
    walk(json, &mut String::new(), &mut |path, v| {
        let Value::Object(m) = v else { return false };
        let Some(Value::Array(codings)) = m.get("coding") else { return false };
        let mut cc = CodeableConcept {
            coding: codings
                .iter()
                .map(|c| {
                    let o = c.as_object();
                    let g = |k: &str| o.and_then(|o| str_field(o, k));
                    Coding {
                        system: g("system"),
                        version: g("version"),
                        code: g("code"),
                        display: g("display"),
                        user_selected: o.and_then(|o| o.get("userSelected")).and_then(Value::as_bool),
                    }
                })
                .collect(),
            text: str_field(m, "text"),
        };
        f(path, &mut cc);
        if let Some(Value::Array(arr)) = m.get_mut("coding") {
            // Only fill absent displays and append new codings: the original JSON stays.
            for (i, c) in cc.coding.iter().enumerate() {
                if i < arr.len() {
                    if let (Some(d), Some(obj)) = (&c.display, arr[i].as_object_mut())
                        && !obj.contains_key("display")
                    {
                        obj.insert("display".into(), Value::String(d.clone()));
                        *changed = true;
                    }
                } else {
                    arr.push(serde_json::to_value(FhirCoding::from(c)).unwrap_or(Value::Null));
                    *changed = true;
                }
            }
        }
        true
    });
}

fn quantities_in(json: &mut Value, f: &mut dyn FnMut(&str, &mut Quantity), changed: &mut bool) {
    walk(json, &mut String::new(), &mut |path, v| {
        let Value::Object(m) = v else { return false };
        let Some(value) = m.get("value").and_then(Value::as_f64) else { return false };
        if !(m.contains_key("unit") || m.contains_key("code") || m.contains_key("system")) || m.contains_key("coding") {
            return false;
        }
        let mut q = Quantity {
            value: Some(value),
            unit: str_field(m, "unit"),
            system: str_field(m, "system"),
            code: str_field(m, "code"),
        };
        f(path, &mut q);
        for (k, val) in [("unit", &q.unit), ("system", &q.system), ("code", &q.code)] {
            if let Some(val) = val
                && !m.contains_key(k)
            {
                m.insert(k.into(), Value::String(val.clone()));
                *changed = true;
            }
        }
        true
    });
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FhirCoding<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_selected: Option<bool>,
}

impl<'a> From<&'a Coding> for FhirCoding<'a> {
    fn from(c: &'a Coding) -> Self {
        FhirCoding {
            system: c.system.as_deref(),
            version: c.version.as_deref(),
            code: c.code.as_deref(),
            display: c.display.as_deref(),
            user_selected: c.user_selected,
        }
    }
}

/// Enriches a FHIR JSON resource or Bundle in place (for `arteria convert --enrich`).
pub fn enrich_fhir_json(enricher: &Enricher<'_>, resource: &mut Value) -> EnrichmentReport {
    enricher.enrich(&mut FhirJson(resource))
}

/// One resource's enrichment from its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEnrichment {
    pub report: EnrichmentReport,
    /// The enriched resource as `serde_json::to_string` writes it, when enrichment added
    /// anything; `None` when nothing changed (the text stays as it is, byte for byte).
    pub json: Option<String>,
}

/// Enriches one FHIR JSON resource given as text, with the same report and result as
/// [`enrich_fhir_json`] on its parsed `Value`, but without building one when the text is
/// plain serde_json output (the enrich stage's input). An error when `text` is not JSON.
pub fn enrich_fhir_text(enricher: &Enricher<'_>, text: &str) -> Result<TextEnrichment, serde_json::Error> {
    if let Some(mut doc) = text::Doc::parse(text) {
        let report = enricher.enrich(&mut doc);
        let json = doc.changed().then(|| doc.write());
        return Ok(TextEnrichment { report, json });
    }
    let mut value: Value = serde_json::from_str(text)?;
    let mut tracked = TrackedJson { json: &mut value, changed: false };
    let report = enricher.enrich(&mut tracked);
    let json = tracked.changed.then(|| serde_json::to_string(&value).expect("a JSON value serialises"));
    Ok(TextEnrichment { report, json })
}
