//! Terminology operations with FHIR semantics over one or more stores: `$lookup`,
//! `$validate-code`, `$subsumes`, `$translate` (public ConceptMaps and per-sender local
//! maps) and `$expand` of small value sets.
//!
//! Stores are layered: the shipped content first, then store files in the order given; a
//! later layer's version of a code system wins. The hot paths (`lookup`, `translate_first`)
//! do not allocate.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::content::{ConceptStatus, Equivalence, ValueSetContent, ValueSetInclude, systems};
use crate::error::{Result, TerminologyError};
use crate::store::{CodeSystemRef, ConceptMapRef, ConceptRef, Store};
use crate::ucum::Ucum;
use crate::units::UnitTable;

/// Result of `$validate-code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation<'a> {
    /// The code exists and may be used; `display` is the code system's display.
    Valid { display: &'a str },
    /// The code exists but the display given differs from the code system's.
    DisplayMismatch { expected: &'a str },
    /// The code exists but is inactive or deprecated.
    NotActive { status: ConceptStatus, display: &'a str },
    /// The code is not in the (loaded version of the) code system.
    UnknownCode,
    /// The code system is not loaded.
    UnknownSystem,
}

impl Validation<'_> {
    /// FHIR `result`: true when the code is valid (a display mismatch is a warning).
    pub fn is_valid(&self) -> bool {
        matches!(self, Validation::Valid { .. } | Validation::DisplayMismatch { .. })
    }
}

/// Result of `$subsumes` (FHIR outcome codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subsumption {
    Equivalent,
    /// A subsumes B (B is-a A).
    Subsumes,
    /// A is subsumed by B (A is-a B).
    SubsumedBy,
    NotSubsumed,
}

impl Subsumption {
    pub fn as_str(self) -> &'static str {
        match self {
            Subsumption::Equivalent => "equivalent",
            Subsumption::Subsumes => "subsumes",
            Subsumption::SubsumedBy => "subsumed-by",
            Subsumption::NotSubsumed => "not-subsumed",
        }
    }
}

/// One `$translate` match, borrowed from the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Translation<'a> {
    pub system: &'a str,
    pub code: &'a str,
    /// The map's display, else the target code system's display, else empty.
    pub display: &'a str,
    pub equivalence: Equivalence,
    /// Canonical URL of the ConceptMap that gave it.
    pub map_url: &'a str,
    /// Set when the map is a sender's local map.
    pub sender: Option<&'a str>,
}

/// One concept of a value set expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpansionItem {
    pub system: String,
    pub version: String,
    pub code: String,
    pub display: String,
}

#[derive(Debug, Clone, Copy)]
struct SegRef {
    store: u32,
    seg: u32,
}

/// A code system loaded in some layer: (system, version, concepts, origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    pub system: String,
    pub version: String,
    pub name: String,
    pub concepts: usize,
    pub origin: String,
    pub source: String,
}

/// The terminology services see: layered stores, UCUM and the sender-unit table.
pub struct Terminology {
    stores: Vec<Store>,
    systems: FxHashMap<String, SegRef>,
    versions: Vec<(String, String, SegRef)>,
    public_maps: Vec<SegRef>,
    sender_maps: FxHashMap<String, Vec<SegRef>>,
    value_sets: FxHashMap<String, (u32, usize)>,
    ucum: Option<Ucum>,
    units: UnitTable,
    /// Memo of ancestor sets for `subsumes`, keyed by (store, segment, concept).
    ancestors: Mutex<AncestorMemo>,
}

type AncestorMemo = FxHashMap<(u32, u32, u32), Arc<FxHashSet<u32>>>;

/// Ancestor sets kept by the `subsumes` memo before it is cleared (bounds its memory).
const ANCESTOR_MEMO_MAX: usize = 50_000;

impl Default for Terminology {
    fn default() -> Self {
        Terminology::empty()
    }
}

impl Terminology {
    /// No content at all (UCUM still works from the shipped essence).
    pub fn empty() -> Terminology {
        Terminology {
            stores: Vec::new(),
            systems: FxHashMap::default(),
            versions: Vec::new(),
            public_maps: Vec::new(),
            sender_maps: FxHashMap::default(),
            value_sets: FxHashMap::default(),
            ucum: None,
            units: UnitTable::builtin(),
            ancestors: Mutex::new(FxHashMap::default()),
        }
    }

    /// The shipped content: LOINC starter set, HL7 v2 tables, UCUM, sender-unit table.
    pub fn builtin() -> Terminology {
        let mut t = Terminology::empty();
        t.add_store(crate::builtin::store());
        t
    }

    /// The shipped content plus the given store files (later files win).
    pub fn open(paths: &[PathBuf]) -> Result<Terminology> {
        let mut t = Terminology::builtin();
        for p in paths {
            t.add_store(Store::open(p)?);
        }
        Ok(t)
    }

    /// Adds a store as the newest layer.
    pub fn add_store(&mut self, store: Store) -> &mut Self {
        let si = self.stores.len() as u32;
        for i in 0..store.code_system_count() {
            let cs = store.code_system_at(i);
            let r = SegRef { store: si, seg: i as u32 };
            self.systems.insert(cs.system().to_string(), r);
            self.versions.push((cs.system().to_string(), cs.version().to_string(), r));
        }
        for i in 0..store.concept_map_count() {
            let m = store.concept_map_at(i);
            let r = SegRef { store: si, seg: i as u32 };
            match m.sender() {
                Some(s) => self.sender_maps.entry(s.to_string()).or_default().push(r),
                None => self.public_maps.push(r),
            }
        }
        for (i, vs) in store.value_sets().iter().enumerate() {
            self.value_sets.insert(vs.url.clone(), (si, i));
        }
        if let Some((_, xml)) = store.ucum_essence()
            && let Ok((essence, _)) = crate::loaders::ucum_essence::parse_str(xml, store.origin(), Default::default())
        {
            self.ucum = Some(Ucum::from_essence(&essence).0);
        }
        self.stores.push(store);
        self
    }

    /// Adds loaded content (e.g. sender maps from the sender profiles) as an in-memory layer,
    /// through the same store writer as a file.
    pub fn add_content(&mut self, content: &crate::loaders::LoadedContent, origin: &str) -> Result<&mut Self> {
        let mut b = crate::store::StoreBuilder::new();
        content.add_to(&mut b);
        let store = Store::from_bytes(std::borrow::Cow::Owned(b.to_bytes()), origin)?;
        Ok(self.add_store(store))
    }

    /// Replaces the sender-unit table.
    pub fn set_units(&mut self, units: UnitTable) -> &mut Self {
        self.units = units;
        self
    }

    pub fn units(&self) -> &UnitTable {
        &self.units
    }

    /// The UCUM system in use (a loaded essence, else the shipped one).
    pub fn ucum(&self) -> &Ucum {
        self.ucum.as_ref().unwrap_or_else(|| Ucum::builtin())
    }

    /// Every loaded code system version, oldest layer first.
    pub fn systems(&self) -> Vec<SystemInfo> {
        self.versions
            .iter()
            .map(|(s, v, r)| {
                let cs = self.cs(*r);
                SystemInfo {
                    system: s.clone(),
                    version: v.clone(),
                    name: cs.name().to_string(),
                    concepts: cs.len(),
                    origin: self.stores[r.store as usize].origin().to_string(),
                    source: cs.source().to_string(),
                }
            })
            .collect()
    }

    /// Every ConceptMap (public and per-sender).
    pub fn concept_maps(&self) -> impl Iterator<Item = ConceptMapRef<'_>> {
        self.stores.iter().flat_map(|s| s.concept_maps())
    }

    fn cs(&self, r: SegRef) -> CodeSystemRef<'_> {
        self.stores[r.store as usize].code_system_at(r.seg as usize)
    }
    fn map(&self, r: SegRef) -> ConceptMapRef<'_> {
        self.stores[r.store as usize].concept_map_at(r.seg as usize)
    }

    /// The newest loaded version of a code system. Accepts HL7 v2 names (`LN`, `SCT`, `I10C`...).
    #[inline]
    pub fn code_system(&self, system: &str) -> Option<CodeSystemRef<'_>> {
        if let Some(r) = self.systems.get(system) {
            return Some(self.cs(*r));
        }
        if let Some(uri) = systems::canonical_uri(system) {
            return self.systems.get(uri).map(|r| self.cs(*r));
        }
        // `HL70001`-style table names (CWE-3) -> the table's URI, built on the stack.
        let digits = system.strip_prefix("HL7").filter(|d| d.len() == 4 && d.bytes().all(|b| b.is_ascii_digit()))?;
        let prefix = systems::HL7V2_PREFIX.as_bytes();
        let mut buf = [0u8; 64];
        buf[..prefix.len()].copy_from_slice(prefix);
        buf[prefix.len()..prefix.len() + 4].copy_from_slice(digits.as_bytes());
        let uri = std::str::from_utf8(&buf[..prefix.len() + 4]).ok()?;
        self.systems.get(uri).map(|r| self.cs(*r))
    }

    /// A specific version of a code system.
    pub fn code_system_version(&self, system: &str, version: &str) -> Option<CodeSystemRef<'_>> {
        let uri = systems::canonical_uri(system).unwrap_or(system);
        self.versions.iter().rev().find(|(s, v, _)| s == uri && v == version).map(|(_, _, r)| self.cs(*r))
    }

    /// `$lookup`: the concept (display, status, properties via [`ConceptRef`]). Allocation-free.
    #[inline]
    pub fn lookup(&self, system: &str, code: &str) -> Option<ConceptRef<'_>> {
        let cs = self.code_system(system)?;
        find_code(&cs, code)
    }

    /// `$validate-code`, optionally checking the display.
    /// UCUM is a grammar, not a list: its codes are validated by the parser (display empty).
    pub fn validate_code<'a>(&'a self, system: &str, code: &str, display: Option<&str>) -> Validation<'a> {
        if systems::canonical_uri(system) == Some(systems::UCUM) {
            return if self.ucum().is_valid(code) {
                Validation::Valid { display: "" }
            } else {
                Validation::UnknownCode
            };
        }
        let Some(cs) = self.code_system(system) else {
            return Validation::UnknownSystem;
        };
        let Some(c) = find_code(&cs, code) else {
            return Validation::UnknownCode;
        };
        if !c.status().is_usable() {
            return Validation::NotActive { status: c.status(), display: c.display() };
        }
        match display {
            Some(d) if !d.is_empty() && !d.eq_ignore_ascii_case(c.display()) => {
                Validation::DisplayMismatch { expected: c.display() }
            }
            _ => Validation::Valid { display: c.display() },
        }
    }

    /// `$subsumes` over the is-a hierarchy (SNOMED CT is-a, ICD-10-CM code structure, nested
    /// FHIR concepts). Each concept's ancestor set is found breadth-first once and memoised.
    pub fn subsumes(&self, system: &str, code_a: &str, code_b: &str) -> Result<Subsumption> {
        let r = self.resolve(system).ok_or_else(|| TerminologyError::UnknownSystem(system.into()))?;
        let cs = self.cs(r);
        let a = find_code(&cs, code_a).ok_or_else(|| unknown_code(system, code_a))?;
        let b = find_code(&cs, code_b).ok_or_else(|| unknown_code(system, code_b))?;
        if a.index() == b.index() {
            return Ok(Subsumption::Equivalent);
        }
        if self.ancestors_of(r, b).contains(&a.index()) {
            Ok(Subsumption::Subsumes)
        } else if self.ancestors_of(r, a).contains(&b.index()) {
            Ok(Subsumption::SubsumedBy)
        } else {
            Ok(Subsumption::NotSubsumed)
        }
    }

    fn ancestors_of(&self, r: SegRef, c: ConceptRef<'_>) -> Arc<FxHashSet<u32>> {
        let key = (r.store, r.seg, c.index());
        // A poisoned memo only means another thread panicked mid-insert: the map is still valid.
        let memo = self.ancestors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = memo.get(&key) {
            return set.clone();
        }
        drop(memo);
        let set = Arc::new(ancestors(c));
        let mut memo = self.ancestors.lock().unwrap_or_else(|e| e.into_inner());
        if memo.len() >= ANCESTOR_MEMO_MAX {
            memo.clear();
        }
        memo.insert(key, set.clone());
        set
    }

    fn resolve(&self, system: &str) -> Option<SegRef> {
        if let Some(r) = self.systems.get(system) {
            return Some(*r);
        }
        let cs = self.code_system(system)?;
        self.versions.iter().rev().find(|(s, v, _)| s == cs.system() && v == cs.version()).map(|(_, _, r)| *r)
    }

    /// `$translate`: the best match for a code, from the sender's local maps first, then the
    /// public maps; `target` restricts the target system. Allocation-free.
    pub fn translate_first<'a>(
        &'a self,
        system: &str,
        code: &str,
        target: Option<&str>,
        sender: Option<&str>,
    ) -> Option<Translation<'a>> {
        let mut best: Option<Translation<'a>> = None;
        self.for_each_translation(system, code, target, sender, |t| {
            if t.equivalence.is_match() {
                best = Some(t);
                false
            } else {
                true
            }
        });
        best
    }

    /// `$translate`: every target (including unmatched/disjoint statements) in map order:
    /// sender maps, then public maps.
    pub fn translate<'a>(
        &'a self,
        system: &str,
        code: &str,
        target: Option<&str>,
        sender: Option<&str>,
    ) -> Vec<Translation<'a>> {
        let mut v = Vec::new();
        self.for_each_translation(system, code, target, sender, |t| {
            v.push(t);
            true
        });
        v
    }

    fn for_each_translation<'a>(
        &'a self,
        system: &str,
        code: &str,
        target: Option<&str>,
        sender: Option<&str>,
        mut f: impl FnMut(Translation<'a>) -> bool,
    ) {
        let target_uri = target.map(|t| systems::canonical_uri(t).unwrap_or(t));
        let sender_maps = sender.and_then(|s| self.sender_maps.get(s)).map(Vec::as_slice).unwrap_or(&[]);
        // Newest layer first, so a reloaded map overrides the old one.
        for r in sender_maps.iter().rev().chain(self.public_maps.iter().rev()) {
            let m = self.map(*r);
            // A group without source system matches any system.
            let entry = m.get(system, code).or_else(|| if system.is_empty() { None } else { m.get("", code) });
            let Some(entry) = entry else { continue };
            for t in entry.targets() {
                if target_uri.is_some_and(|u| u != t.system) {
                    continue;
                }
                let display = if !t.display.is_empty() {
                    t.display
                } else {
                    self.lookup(t.system, t.code).map(|c| c.display()).unwrap_or("")
                };
                let tr = Translation {
                    system: t.system,
                    code: t.code,
                    display,
                    equivalence: t.equivalence,
                    map_url: m.url(),
                    sender: m.sender(),
                };
                if !f(tr) {
                    return;
                }
            }
        }
    }

    /// A loaded value set definition.
    pub fn value_set(&self, url: &str) -> Option<&ValueSetContent> {
        let (s, i) = self.value_sets.get(url)?;
        self.stores[*s as usize].value_sets().get(*i)
    }

    /// `$expand` of a small value set: includes (concept lists, `is-a`/`descendent-of`/`=`
    /// filters on `concept`, whole systems, other value sets) minus excludes, capped at `limit`.
    pub fn expand(&self, url: &str, limit: usize) -> Result<Vec<ExpansionItem>> {
        let mut seen_vs = FxHashSet::default();
        let mut out = self.expand_inner(url, limit, &mut seen_vs)?;
        out.sort_by(|a, b| (&a.system, &a.code).cmp(&(&b.system, &b.code)));
        out.dedup_by(|a, b| a.system == b.system && a.code == b.code);
        Ok(out)
    }

    fn expand_inner(&self, url: &str, limit: usize, seen: &mut FxHashSet<String>) -> Result<Vec<ExpansionItem>> {
        if !seen.insert(url.to_string()) {
            return Err(TerminologyError::UnsupportedValueSet {
                url: url.into(),
                reason: "value set includes itself".into(),
            });
        }
        let vs = self.value_set(url).ok_or_else(|| TerminologyError::UnknownValueSet(url.into()))?;
        let mut items = Vec::new();
        for inc in &vs.include {
            items.extend(self.expand_include(url, inc, limit, seen)?);
            if items.len() > limit {
                return Err(TerminologyError::ExpansionTooLarge { url: url.into(), limit });
            }
        }
        let mut excluded: FxHashSet<(String, String)> = FxHashSet::default();
        for exc in &vs.exclude {
            for it in self.expand_include(url, exc, usize::MAX, seen)? {
                excluded.insert((it.system, it.code));
            }
        }
        items.retain(|it| !excluded.contains(&(it.system.clone(), it.code.clone())));
        seen.remove(url);
        Ok(items)
    }

    fn expand_include(
        &self,
        url: &str,
        inc: &ValueSetInclude,
        limit: usize,
        seen: &mut FxHashSet<String>,
    ) -> Result<Vec<ExpansionItem>> {
        let mut from_vs: Option<Vec<ExpansionItem>> = None;
        for other in &inc.value_sets {
            let items = self.expand_inner(other, limit, seen)?;
            from_vs = Some(match from_vs {
                None => items,
                // Several value sets in one include intersect (FHIR semantics).
                Some(prev) => prev
                    .into_iter()
                    .filter(|p| items.iter().any(|i| i.system == p.system && i.code == p.code))
                    .collect(),
            });
        }
        let Some(system) = &inc.system else {
            return Ok(from_vs.unwrap_or_default());
        };
        let cs = match &inc.version {
            Some(v) => self.code_system_version(system, v),
            None => self.code_system(system),
        }
        .ok_or_else(|| TerminologyError::UnknownSystem(system.clone()))?;
        let item = |c: ConceptRef<'_>, display: Option<&str>| ExpansionItem {
            system: cs.system().to_string(),
            version: cs.version().to_string(),
            code: c.code().to_string(),
            display: display.unwrap_or(c.display()).to_string(),
        };
        let mut out: Vec<ExpansionItem> = Vec::new();
        if !inc.concepts.is_empty() {
            for (code, display) in &inc.concepts {
                // Unknown codes are left out of the expansion, as a terminology server does.
                if let Some(c) = find_code(&cs, code) {
                    out.push(item(c, display.as_deref()));
                }
            }
        } else if inc.filters.is_empty() {
            if cs.len() > limit {
                return Err(TerminologyError::ExpansionTooLarge { url: url.into(), limit });
            }
            out.extend(cs.concepts().filter(|c| c.status().is_usable()).map(|c| item(c, None)));
        }
        for f in &inc.filters {
            if f.property != "concept" && f.property != "code" {
                return Err(TerminologyError::UnsupportedValueSet {
                    url: url.into(),
                    reason: format!(
                        "filter on property {:?} (only concept is-a/descendent-of/= are expanded)",
                        f.property
                    ),
                });
            }
            let root = find_code(&cs, &f.value).ok_or_else(|| unknown_code(system, &f.value))?;
            let matched: Vec<ExpansionItem> = match f.op.as_str() {
                "=" => vec![item(root, None)],
                "is-a" | "descendent-of" => {
                    let mut v: Vec<ExpansionItem> = descendants(&cs, root, limit)
                        .map_err(|_| TerminologyError::ExpansionTooLarge { url: url.into(), limit })?
                        .into_iter()
                        .map(|c| item(c, None))
                        .collect();
                    if f.op == "is-a" {
                        v.push(item(root, None));
                    }
                    v
                }
                other => {
                    return Err(TerminologyError::UnsupportedValueSet {
                        url: url.into(),
                        reason: format!("filter op {other:?} (only is-a, descendent-of and = are expanded)"),
                    });
                }
            };
            // Several filters in one include intersect; the first one seeds the set.
            if out.is_empty() && inc.concepts.is_empty() {
                out = matched;
            } else {
                out.retain(|o| matched.iter().any(|m| m.code == o.code));
            }
        }
        if let Some(vs_items) = from_vs {
            out.retain(|o| vs_items.iter().any(|i| i.system == o.system && i.code == o.code));
        }
        Ok(out)
    }
}

fn unknown_code(system: &str, code: &str) -> TerminologyError {
    TerminologyError::UnknownCode { system: system.into(), code: code.into() }
}

/// Finds a code; for ICD-10-CM also the dotless form senders often use (`E119` -> `E11.9`).
#[inline]
fn find_code<'a>(cs: &CodeSystemRef<'a>, code: &str) -> Option<ConceptRef<'a>> {
    if let Some(c) = cs.get(code) {
        return Some(c);
    }
    if cs.system() == systems::ICD10CM && code.len() > 3 && code.len() < 16 && !code.contains('.') && code.is_ascii() {
        let mut buf = [0u8; 16];
        buf[..3].copy_from_slice(&code.as_bytes()[..3]);
        buf[3] = b'.';
        buf[4..code.len() + 1].copy_from_slice(&code.as_bytes()[3..]);
        let dotted = std::str::from_utf8(&buf[..code.len() + 1]).ok()?;
        return cs.get(dotted);
    }
    None
}

/// All proper ancestors of `c` (breadth-first over parents, each node once: cycles in bad
/// data cannot loop).
fn ancestors(c: ConceptRef<'_>) -> FxHashSet<u32> {
    let mut seen = FxHashSet::default();
    let mut queue: VecDeque<ConceptRef<'_>> = c.parents().collect();
    while let Some(p) = queue.pop_front() {
        if seen.insert(p.index()) {
            queue.extend(p.parents());
        }
    }
    seen
}

/// All descendants of `root` (children are found by a scan of parent links: value sets here
/// are small and this keeps the store free of a second index). Errs past `limit`.
fn descendants<'a>(
    cs: &CodeSystemRef<'a>,
    root: ConceptRef<'a>,
    limit: usize,
) -> std::result::Result<Vec<ConceptRef<'a>>, ()> {
    let mut children: FxHashMap<u32, Vec<ConceptRef<'a>>> = FxHashMap::default();
    for c in cs.concepts() {
        for p in c.parents() {
            children.entry(p.index()).or_default().push(c);
        }
    }
    let mut out = Vec::new();
    let mut seen = FxHashSet::default();
    let mut queue = VecDeque::from([root.index()]);
    while let Some(i) = queue.pop_front() {
        for c in children.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(c.index()) {
                out.push(*c);
                if out.len() > limit {
                    return Err(());
                }
                queue.push_back(c.index());
            }
        }
    }
    Ok(out)
}
