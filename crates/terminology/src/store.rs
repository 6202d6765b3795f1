//! The compact embedded store: every loaded code system version, ConceptMap, ValueSet and
//! UCUM essence in one file that opens in microseconds and answers lookups without allocating.
//!
//! Why a format of our own: the services must open the terminology on start-up without
//! re-parsing release files (a full LOINC CSV takes seconds), and a database would be a
//! second moving part. The file is a header, a directory of self-contained segments, and per
//! segment fixed-size little-endian `u32` records, an open-addressing hash index and a string
//! arena. Opening reads the file, checks the header and directory, and computes section
//! offsets; nothing is deserialised per concept. All reads are bounds-checked, so a corrupt
//! file gives empty answers or a `BadStore` error, never a panic.
//!
//! Layout (all integers little-endian):
//! ```text
//! file    := "ARTTERM\x01" format:u32 count:u32 dir[count] segment*
//! dir     := kind:u32 reserved:u32 offset:u64 length:u64          (offsets from file start)
//! codesys := header[16 words] concept[n]{9 words} slot[cap]{6 words} prop[np]{4 words} parent[npar] arena
//!            slot = concept+1, display offset, display length, code length byte + 11 code bytes
//! cmap    := header[16 words] group[ng]{4} entry[ne]{6} hash[cap] target[nt]{5} arena
//! vset    := JSON of ValueSetContent (small; parsed at open)
//! ucum    := version-len:u32 version xml   (the ucum-essence.xml text as loaded)
//! ```
//! The hash function ([`code_hash`]) is defined here and part of the format, so a file keeps
//! working across builds and dependency upgrades.

use std::borrow::Cow;
use std::path::Path;

use rustc_hash::FxHashMap;

use crate::content::{CodeSystemContent, ConceptMapContent, ConceptStatus, Equivalence, ValueSetContent};
use crate::error::{Result, TerminologyError};

const MAGIC: &[u8; 8] = b"ARTTERM\x01";
const FORMAT_VERSION: u32 = 1;
const CS_MAGIC: u32 = u32::from_le_bytes(*b"CSYS");
const CM_MAGIC: u32 = u32::from_le_bytes(*b"CMAP");
const HEADER_WORDS: usize = 16;
const CONCEPT_WORDS: usize = 9;
/// Code-system hash slot: concept index + 1, display span, then the code's length byte and
/// its first 11 bytes. A hit needs no read of the concept record or of the code in the arena.
const SLOT_WORDS: usize = 6;
const INLINE_CODE: usize = 11;
const PROP_WORDS: usize = 4;
const GROUP_WORDS: usize = 4;
const ENTRY_WORDS: usize = 6;
const TARGET_WORDS: usize = 5;
const DIR_ENTRY: usize = 24;

/// Kind of a store segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    CodeSystem,
    ConceptMap,
    ValueSet,
    UcumEssence,
}

impl SegmentKind {
    fn to_u32(self) -> u32 {
        match self {
            SegmentKind::CodeSystem => 1,
            SegmentKind::ConceptMap => 2,
            SegmentKind::ValueSet => 3,
            SegmentKind::UcumEssence => 4,
        }
    }
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => SegmentKind::CodeSystem,
            2 => SegmentKind::ConceptMap,
            3 => SegmentKind::ValueSet,
            4 => SegmentKind::UcumEssence,
            _ => return None,
        })
    }
}

/// The store's hash of a code: 8 bytes at a time, multiply-rotate. Stable by definition.
#[inline]
pub fn code_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    // Final avalanche (MurmurHash3's fmix64) so every input byte reaches the low bits the
    // table uses: codes like `A00.0001`/`A00.0002` differ only in their last bytes.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The 12 key bytes of a hash slot: length (saturating at 255) and the first 11 bytes.
#[inline]
fn slot_key(code: &[u8]) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[0] = code.len().min(255) as u8;
    let n = code.len().min(INLINE_CODE);
    key[1..1 + n].copy_from_slice(&code[..n]);
    key
}

#[inline]
fn pair_hash(system: &[u8], code: &[u8]) -> u64 {
    code_hash(code) ^ code_hash(system).rotate_left(17)
}

#[inline]
fn rd(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(s) => {
            let mut w = [0u8; 4];
            w.copy_from_slice(s);
            u32::from_le_bytes(w)
        }
        None => 0,
    }
}

// ---------------------------------------------------------------------------------------
// Writing

/// Accumulates words and a deduplicated string arena for one segment.
struct SegWriter {
    arena: Vec<u8>,
    interned: FxHashMap<String, (u32, u32)>,
}

impl SegWriter {
    fn new() -> Self {
        SegWriter { arena: Vec::new(), interned: FxHashMap::default() }
    }
    fn span(&mut self, s: &str) -> (u32, u32) {
        if s.is_empty() {
            return (0, 0);
        }
        if let Some(&sp) = self.interned.get(s) {
            return sp;
        }
        let sp = (self.arena.len() as u32, s.len() as u32);
        self.arena.extend_from_slice(s.as_bytes());
        self.interned.insert(s.to_string(), sp);
        sp
    }
}

fn push_span(words: &mut Vec<u32>, sp: (u32, u32)) {
    words.push(sp.0);
    words.push(sp.1);
}

fn finish(words: Vec<u32>, arena: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 4 + arena.len());
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&arena);
    out
}

fn table_capacity(n: usize) -> usize {
    (n * 2).next_power_of_two().max(8)
}

/// Encodes one code system version; returns the segment and notes (duplicates, missing parents).
fn encode_code_system(cs: &CodeSystemContent) -> (Vec<u8>, Vec<String>) {
    let mut notes = Vec::new();
    let mut index: FxHashMap<&str, u32> = FxHashMap::default();
    let mut order: Vec<usize> = Vec::with_capacity(cs.concepts.len());
    let mut dups = 0u64;
    for (i, c) in cs.concepts.iter().enumerate() {
        if index.contains_key(c.code.as_str()) {
            dups += 1;
            continue;
        }
        index.insert(c.code.as_str(), order.len() as u32);
        order.push(i);
    }
    if dups > 0 {
        notes.push(format!("{dups} duplicate codes ignored (first occurrence kept)"));
    }
    let n = order.len();
    let cap = table_capacity(n);
    let mut w = SegWriter::new();
    let mut concepts: Vec<u32> = Vec::with_capacity(n * CONCEPT_WORDS);
    let mut props: Vec<u32> = Vec::new();
    let mut parents: Vec<u32> = Vec::new();
    let mut missing_parents = 0u64;
    // Codes and displays first, so the strings a lookup touches sit together in the arena.
    let spans: Vec<((u32, u32), (u32, u32))> =
        order.iter().map(|&i| (w.span(&cs.concepts[i].code), w.span(&cs.concepts[i].display))).collect();
    for (&i, &(code, disp)) in order.iter().zip(&spans) {
        let c = &cs.concepts[i];
        let pstart = (props.len() / PROP_WORDS) as u32;
        for (k, v) in &c.properties {
            push_span(&mut props, w.span(k));
            push_span(&mut props, w.span(v));
        }
        let parent_start = parents.len() as u32;
        for p in &c.parents {
            match index.get(p.as_str()) {
                Some(&pi) => parents.push(pi),
                None => missing_parents += 1,
            }
        }
        push_span(&mut concepts, code);
        push_span(&mut concepts, disp);
        concepts.push(c.status.to_u32());
        concepts.push(pstart);
        concepts.push(c.properties.len() as u32);
        concepts.push(parent_start);
        concepts.push(parents.len() as u32 - parent_start);
    }
    if missing_parents > 0 {
        notes.push(format!("{missing_parents} is-a links name a parent that is not loaded"));
    }
    let mut hash = vec![0u32; cap * SLOT_WORDS];
    for (ci, &i) in order.iter().enumerate() {
        let code = cs.concepts[i].code.as_bytes();
        let mut slot = (code_hash(code) as usize) & (cap - 1);
        while hash[slot * SLOT_WORDS] != 0 {
            slot = (slot + 1) & (cap - 1);
        }
        let key = slot_key(code);
        let s = &mut hash[slot * SLOT_WORDS..(slot + 1) * SLOT_WORDS];
        s[0] = ci as u32 + 1;
        s[1] = spans[ci].1.0;
        s[2] = spans[ci].1.1;
        for k in 0..3 {
            s[3 + k] = u32::from_le_bytes([key[4 * k], key[4 * k + 1], key[4 * k + 2], key[4 * k + 3]]);
        }
    }
    let mut words = vec![0u32; HEADER_WORDS];
    words[0] = CS_MAGIC;
    words[1] = n as u32;
    words[2] = cap as u32;
    words[3] = (props.len() / PROP_WORDS) as u32;
    words[4] = parents.len() as u32;
    let meta = [&cs.system, &cs.version, &cs.name, &cs.source];
    for (k, s) in meta.iter().enumerate() {
        let sp = w.span(s);
        words[6 + 2 * k] = sp.0;
        words[7 + 2 * k] = sp.1;
    }
    words[5] = w.arena.len() as u32;
    words.extend_from_slice(&concepts);
    words.extend_from_slice(&hash);
    words.extend_from_slice(&props);
    words.extend_from_slice(&parents);
    (finish(words, w.arena), notes)
}

fn encode_concept_map(cm: &ConceptMapContent) -> Vec<u8> {
    let mut w = SegWriter::new();
    let mut groups = Vec::new();
    let mut entries: Vec<u32> = Vec::new();
    let mut targets: Vec<u32> = Vec::new();
    let mut keys: Vec<(u64, u32)> = Vec::new();
    for (gi, g) in cm.groups.iter().enumerate() {
        push_span(&mut groups, w.span(&g.source_system));
        push_span(&mut groups, w.span(&g.target_system));
        for el in &g.elements {
            let ei = (entries.len() / ENTRY_WORDS) as u32;
            keys.push((pair_hash(g.source_system.as_bytes(), el.code.as_bytes()), ei));
            push_span(&mut entries, w.span(&el.code));
            entries.push(gi as u32);
            entries.push((targets.len() / TARGET_WORDS) as u32);
            entries.push(el.targets.len() as u32);
            entries.push(0);
            for t in &el.targets {
                push_span(&mut targets, w.span(&t.code));
                push_span(&mut targets, w.span(&t.display));
                targets.push(t.equivalence.to_u32());
            }
        }
    }
    let cap = table_capacity(keys.len());
    let mut hash = vec![0u32; cap];
    for (h, ei) in keys {
        let mut slot = (h as usize) & (cap - 1);
        while hash[slot] != 0 {
            slot = (slot + 1) & (cap - 1);
        }
        hash[slot] = ei + 1;
    }
    let mut words = vec![0u32; HEADER_WORDS];
    words[0] = CM_MAGIC;
    words[1] = cm.groups.len() as u32;
    words[2] = (entries.len() / ENTRY_WORDS) as u32;
    words[3] = cap as u32;
    words[4] = (targets.len() / TARGET_WORDS) as u32;
    let sender = cm.sender.clone().unwrap_or_default();
    let meta = [&cm.url, &cm.version, &cm.name, &sender, &cm.source];
    for (k, s) in meta.iter().enumerate() {
        let sp = w.span(s);
        words[6 + 2 * k] = sp.0;
        words[7 + 2 * k] = sp.1;
    }
    words[5] = w.arena.len() as u32;
    words.extend_from_slice(&groups);
    words.extend_from_slice(&entries);
    words.extend_from_slice(&hash);
    words.extend_from_slice(&targets);
    finish(words, w.arena)
}

/// Builds a store file from loaded content (and, optionally, the segments of an existing
/// store, so `load` can add to what is there). Adding content with the same identity
/// (system + version, map URL + version + sender, value set URL + version) replaces it.
#[derive(Default)]
pub struct StoreBuilder {
    segments: Vec<(SegmentKind, String, Vec<u8>)>,
}

impl StoreBuilder {
    pub fn new() -> Self {
        StoreBuilder::default()
    }

    /// Starts from every segment of an existing store.
    pub fn from_store(store: &Store) -> Self {
        let mut b = StoreBuilder::new();
        for seg in &store.segments {
            let bytes = store.bytes[seg.start..seg.start + seg.len].to_vec();
            b.segments.push((seg.kind, seg.identity.clone(), bytes));
        }
        b
    }

    fn put(&mut self, kind: SegmentKind, identity: String, bytes: Vec<u8>) {
        if let Some(s) = self.segments.iter_mut().find(|s| s.1 == identity) {
            *s = (kind, identity, bytes);
        } else {
            self.segments.push((kind, identity, bytes));
        }
    }

    /// Adds a code system version; returns notes about duplicates and dangling parents.
    pub fn add_code_system(&mut self, cs: &CodeSystemContent) -> Vec<String> {
        let (bytes, notes) = encode_code_system(cs);
        self.put(SegmentKind::CodeSystem, format!("cs|{}|{}", cs.system, cs.version), bytes);
        notes
    }

    pub fn add_concept_map(&mut self, cm: &ConceptMapContent) {
        let id = format!("cm|{}|{}|{}", cm.url, cm.version, cm.sender.as_deref().unwrap_or(""));
        self.put(SegmentKind::ConceptMap, id, encode_concept_map(cm));
    }

    pub fn add_value_set(&mut self, vs: &ValueSetContent) {
        // A ValueSet is a few include rules: JSON keeps it simple and it is parsed once at open.
        let bytes = serde_json::to_vec(vs).unwrap_or_default();
        self.put(SegmentKind::ValueSet, format!("vs|{}|{}", vs.url, vs.version), bytes);
    }

    /// Keeps the UCUM essence text (checked by the loader) so services use the loaded version.
    pub fn add_ucum_essence(&mut self, version: &str, xml: &str) {
        let mut bytes = Vec::with_capacity(4 + version.len() + xml.len());
        bytes.extend_from_slice(&(version.len() as u32).to_le_bytes());
        bytes.extend_from_slice(version.as_bytes());
        bytes.extend_from_slice(xml.as_bytes());
        self.put(SegmentKind::UcumEssence, "ucum".to_string(), bytes);
    }

    /// Number of segments so far.
    pub fn len(&self) -> usize {
        self.segments.len()
    }
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The complete store file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let dir_end = 16 + DIR_ENTRY * self.segments.len();
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        let mut offset = dir_end.next_multiple_of(8);
        for (kind, _, bytes) in &self.segments {
            out.extend_from_slice(&kind.to_u32().to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            offset = (offset + bytes.len()).next_multiple_of(8);
        }
        for (_, _, bytes) in &self.segments {
            out.resize(out.len().next_multiple_of(8), 0);
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Writes the store atomically (temporary file, then rename), so a service opening it
    /// never sees half a file.
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp-write");
        std::fs::write(&tmp, self.to_bytes()).map_err(|e| TerminologyError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| TerminologyError::io(path, e))
    }
}

// ---------------------------------------------------------------------------------------
// Reading

#[derive(Debug, Clone)]
struct SegmentInfo {
    kind: SegmentKind,
    start: usize,
    len: usize,
    identity: String,
}

/// Section offsets of one code-system segment (absolute byte offsets in the store).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CsIndex {
    base: usize,
    n: u32,
    cap: u32,
    concepts: usize,
    hash: usize,
    props: usize,
    n_props: usize,
    parents: usize,
    n_parents: usize,
    arena: usize,
    arena_end: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct CmIndex {
    base: usize,
    n_groups: u32,
    n_entries: u32,
    cap: u32,
    groups: usize,
    entries: usize,
    hash: usize,
    targets: usize,
    n_targets: usize,
    arena: usize,
    arena_end: usize,
}

/// An opened store. Cheap to open; lookups go through [`CodeSystemRef`] and [`ConceptMapRef`].
pub struct Store {
    origin: String,
    bytes: Cow<'static, [u8]>,
    segments: Vec<SegmentInfo>,
    code_systems: Vec<CsIndex>,
    concept_maps: Vec<CmIndex>,
    value_sets: Vec<ValueSetContent>,
    ucum: Option<(String, std::ops::Range<usize>)>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("origin", &self.origin)
            .field("bytes", &self.bytes.len())
            .field("code_systems", &self.code_systems.len())
            .field("concept_maps", &self.concept_maps.len())
            .field("value_sets", &self.value_sets.len())
            .finish()
    }
}

impl Store {
    /// Opens a store file.
    pub fn open(path: &Path) -> Result<Store> {
        let bytes = std::fs::read(path).map_err(|e| TerminologyError::io(path, e))?;
        Store::from_bytes(Cow::Owned(bytes), path.display().to_string())
    }

    /// Opens a store from bytes (`Cow::Borrowed` for an `include_bytes!` store).
    pub fn from_bytes(bytes: Cow<'static, [u8]>, origin: impl Into<String>) -> Result<Store> {
        let origin = origin.into();
        let bad = |reason: String| TerminologyError::BadStore { origin: origin.clone(), reason };
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("not an Arteria terminology store (bad magic)".into()));
        }
        let version = rd(&bytes, 8);
        if version != FORMAT_VERSION {
            return Err(bad(format!("store format {version}, this build reads {FORMAT_VERSION}")));
        }
        let count = rd(&bytes, 12) as usize;
        if 16 + count.saturating_mul(DIR_ENTRY) > bytes.len() {
            return Err(bad("directory runs past the end of the file".into()));
        }
        let mut store = Store {
            origin: origin.clone(),
            bytes: Cow::Borrowed(&[]),
            segments: Vec::with_capacity(count),
            code_systems: Vec::new(),
            concept_maps: Vec::new(),
            value_sets: Vec::new(),
            ucum: None,
        };
        for i in 0..count {
            let d = 16 + i * DIR_ENTRY;
            let kind_raw = rd(&bytes, d);
            let lo = |o: usize| rd(&bytes, o) as u64 | ((rd(&bytes, o + 4) as u64) << 32);
            let (start, len) = (lo(d + 8) as usize, lo(d + 16) as usize);
            let end = start.checked_add(len).filter(|&e| e <= bytes.len());
            let Some(end) = end else {
                return Err(bad(format!("segment {i} runs past the end of the file")));
            };
            let Some(kind) = SegmentKind::from_u32(kind_raw) else {
                return Err(bad(format!("segment {i} has unknown kind {kind_raw}")));
            };
            let seg = &bytes[start..end];
            let identity = match kind {
                SegmentKind::CodeSystem => {
                    let ix = cs_index(seg, start).ok_or_else(|| bad(format!("segment {i}: bad code system")))?;
                    store.code_systems.push(ix);
                    let r = CodeSystemRef { bytes: &bytes, ix: &ix };
                    format!("cs|{}|{}", r.system(), r.version())
                }
                SegmentKind::ConceptMap => {
                    let ix = cm_index(seg, start).ok_or_else(|| bad(format!("segment {i}: bad concept map")))?;
                    store.concept_maps.push(ix);
                    let r = ConceptMapRef { bytes: &bytes, ix: &ix };
                    format!("cm|{}|{}|{}", r.url(), r.version(), r.sender().unwrap_or(""))
                }
                SegmentKind::ValueSet => {
                    let vs: ValueSetContent =
                        serde_json::from_slice(seg).map_err(|e| bad(format!("segment {i}: bad value set: {e}")))?;
                    let id = format!("vs|{}|{}", vs.url, vs.version);
                    store.value_sets.push(vs);
                    id
                }
                SegmentKind::UcumEssence => {
                    let vlen = rd(seg, 0) as usize;
                    let v = seg.get(4..4 + vlen).and_then(|v| std::str::from_utf8(v).ok());
                    let xml_ok = seg.get(4 + vlen..).map(|x| std::str::from_utf8(x).is_ok());
                    match (v, xml_ok) {
                        (Some(v), Some(true)) => {
                            store.ucum = Some((v.to_string(), start + 4 + vlen..end));
                        }
                        _ => return Err(bad(format!("segment {i}: bad UCUM essence"))),
                    }
                    "ucum".to_string()
                }
            };
            store.segments.push(SegmentInfo { kind, start, len, identity });
        }
        store.bytes = bytes;
        Ok(store)
    }

    /// Where the store came from (file path or `builtin`).
    pub fn origin(&self) -> &str {
        &self.origin
    }
    /// Size of the store in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    pub fn code_systems(&self) -> impl Iterator<Item = CodeSystemRef<'_>> {
        self.code_systems.iter().map(|ix| CodeSystemRef { bytes: &self.bytes, ix })
    }
    pub fn concept_maps(&self) -> impl Iterator<Item = ConceptMapRef<'_>> {
        self.concept_maps.iter().map(|ix| ConceptMapRef { bytes: &self.bytes, ix })
    }
    pub fn value_sets(&self) -> &[ValueSetContent] {
        &self.value_sets
    }
    /// The UCUM essence held by this store: (version, xml).
    pub fn ucum_essence(&self) -> Option<(&str, &str)> {
        let (v, range) = self.ucum.as_ref()?;
        let xml = std::str::from_utf8(&self.bytes[range.clone()]).ok()?;
        Some((v.as_str(), xml))
    }
    pub(crate) fn code_system_at(&self, i: usize) -> CodeSystemRef<'_> {
        CodeSystemRef { bytes: &self.bytes, ix: &self.code_systems[i] }
    }
    pub(crate) fn concept_map_at(&self, i: usize) -> ConceptMapRef<'_> {
        ConceptMapRef { bytes: &self.bytes, ix: &self.concept_maps[i] }
    }
    pub(crate) fn code_system_count(&self) -> usize {
        self.code_systems.len()
    }
    pub(crate) fn concept_map_count(&self) -> usize {
        self.concept_maps.len()
    }
}

fn cs_index(seg: &[u8], base: usize) -> Option<CsIndex> {
    if seg.len() < HEADER_WORDS * 4 || rd(seg, 0) != CS_MAGIC {
        return None;
    }
    let n = rd(seg, 4);
    let cap = rd(seg, 8);
    let np = rd(seg, 12) as usize;
    let npar = rd(seg, 16) as usize;
    let arena_len = rd(seg, 20) as usize;
    if cap == 0 || !cap.is_power_of_two() || (n as usize) >= cap as usize {
        return None;
    }
    let concepts = HEADER_WORDS * 4;
    let hash = concepts + n as usize * CONCEPT_WORDS * 4;
    let props = hash + cap as usize * SLOT_WORDS * 4;
    let parents = props + np * PROP_WORDS * 4;
    let arena = parents + npar * 4;
    if arena + arena_len != seg.len() {
        return None;
    }
    Some(CsIndex {
        base,
        n,
        cap,
        concepts: base + concepts,
        hash: base + hash,
        props: base + props,
        n_props: np,
        parents: base + parents,
        n_parents: npar,
        arena: base + arena,
        arena_end: base + arena + arena_len,
    })
}

fn cm_index(seg: &[u8], base: usize) -> Option<CmIndex> {
    if seg.len() < HEADER_WORDS * 4 || rd(seg, 0) != CM_MAGIC {
        return None;
    }
    let ng = rd(seg, 4);
    let ne = rd(seg, 8);
    let cap = rd(seg, 12);
    let nt = rd(seg, 16) as usize;
    let arena_len = rd(seg, 20) as usize;
    if cap == 0 || !cap.is_power_of_two() || ne >= cap {
        return None;
    }
    let groups = HEADER_WORDS * 4;
    let entries = groups + ng as usize * GROUP_WORDS * 4;
    let hash = entries + ne as usize * ENTRY_WORDS * 4;
    let targets = hash + cap as usize * 4;
    let arena = targets + nt * TARGET_WORDS * 4;
    if arena + arena_len != seg.len() {
        return None;
    }
    Some(CmIndex {
        base,
        n_groups: ng,
        n_entries: ne,
        cap,
        groups: base + groups,
        entries: base + entries,
        hash: base + hash,
        targets: base + targets,
        n_targets: nt,
        arena: base + arena,
        arena_end: base + arena + arena_len,
    })
}

/// A (start, count) range cut to the section's length, so a corrupt count cannot run away.
#[inline]
fn clamp(start: u32, count: u32, len: usize) -> (usize, usize) {
    let start = (start as usize).min(len);
    (start, (count as usize).min(len - start))
}

#[inline]
fn arena_bytes(bytes: &[u8], arena: usize, arena_end: usize, off: u32, len: u32) -> &[u8] {
    let s = arena + off as usize;
    let e = s + len as usize;
    if e > arena_end {
        return &[];
    }
    bytes.get(s..e).unwrap_or(&[])
}

#[inline]
fn arena_str(bytes: &[u8], arena: usize, arena_end: usize, off: u32, len: u32) -> &str {
    std::str::from_utf8(arena_bytes(bytes, arena, arena_end, off, len)).unwrap_or("")
}

/// One code system version inside a store.
#[derive(Clone, Copy)]
pub struct CodeSystemRef<'a> {
    bytes: &'a [u8],
    ix: &'a CsIndex,
}

impl<'a> CodeSystemRef<'a> {
    fn meta(&self, k: usize) -> &'a str {
        let o = self.ix.base + (6 + 2 * k) * 4;
        arena_str(self.bytes, self.ix.arena, self.ix.arena_end, rd(self.bytes, o), rd(self.bytes, o + 4))
    }
    pub fn system(&self) -> &'a str {
        self.meta(0)
    }
    pub fn version(&self) -> &'a str {
        self.meta(1)
    }
    pub fn name(&self) -> &'a str {
        self.meta(2)
    }
    /// The file it was loaded from.
    pub fn source(&self) -> &'a str {
        self.meta(3)
    }
    /// Number of concepts.
    pub fn len(&self) -> usize {
        self.ix.n as usize
    }
    pub fn is_empty(&self) -> bool {
        self.ix.n == 0
    }
    /// Whether any concept has is-a parents (subsumption is meaningful).
    pub fn has_hierarchy(&self) -> bool {
        self.ix.arena > self.ix.parents
    }

    /// Finds a concept by code. Allocation-free: one hash, a short probe comparing the key
    /// held in the slot; the concept record is not read on the way.
    #[inline]
    pub fn get(&self, code: &str) -> Option<ConceptRef<'a>> {
        let cap = self.ix.cap as usize;
        let code = code.as_bytes();
        let key = slot_key(code);
        let mut slot = (code_hash(code) as usize) & (cap - 1);
        for _ in 0..cap {
            let base = self.ix.hash + slot * SLOT_WORDS * 4;
            let v = rd(self.bytes, base);
            if v == 0 {
                return None;
            }
            if self.bytes.get(base + 12..base + 24) == Some(&key[..]) {
                let c =
                    ConceptRef { cs: *self, idx: v - 1, disp: (rd(self.bytes, base + 4), rd(self.bytes, base + 8)) };
                if code.len() <= INLINE_CODE || c.code_bytes() == code {
                    return Some(c);
                }
            }
            slot = (slot + 1) & (cap - 1);
        }
        None
    }

    /// The concept at position `idx` (0..len).
    pub fn concept(&self, idx: u32) -> Option<ConceptRef<'a>> {
        (idx < self.ix.n).then(|| ConceptRef::at(*self, idx))
    }

    pub fn concepts(&self) -> impl Iterator<Item = ConceptRef<'a>> + 'a {
        let cs = *self;
        (0..self.ix.n).map(move |idx| ConceptRef::at(cs, idx))
    }
}

/// A concept of a stored code system. All accessors borrow from the store.
#[derive(Clone, Copy)]
pub struct ConceptRef<'a> {
    cs: CodeSystemRef<'a>,
    idx: u32,
    /// Display span, copied from the hash slot or the record.
    disp: (u32, u32),
}

impl<'a> ConceptRef<'a> {
    fn at(cs: CodeSystemRef<'a>, idx: u32) -> Self {
        let o = cs.ix.concepts + idx as usize * CONCEPT_WORDS * 4;
        ConceptRef { cs, idx, disp: (rd(cs.bytes, o + 8), rd(cs.bytes, o + 12)) }
    }
    #[inline]
    fn word(&self, k: usize) -> u32 {
        rd(self.cs.bytes, self.cs.ix.concepts + (self.idx as usize * CONCEPT_WORDS + k) * 4)
    }
    #[inline]
    fn code_bytes(&self) -> &'a [u8] {
        arena_bytes(self.cs.bytes, self.cs.ix.arena, self.cs.ix.arena_end, self.word(0), self.word(1))
    }
    fn s(&self, off: u32, len: u32) -> &'a str {
        arena_str(self.cs.bytes, self.cs.ix.arena, self.cs.ix.arena_end, off, len)
    }
    /// Position in its code system (stable for this store).
    pub fn index(&self) -> u32 {
        self.idx
    }
    pub fn code_system(&self) -> CodeSystemRef<'a> {
        self.cs
    }
    pub fn code(&self) -> &'a str {
        self.s(self.word(0), self.word(1))
    }
    pub fn display(&self) -> &'a str {
        self.s(self.disp.0, self.disp.1)
    }
    pub fn status(&self) -> ConceptStatus {
        ConceptStatus::from_u32(self.word(4))
    }
    /// Properties in release order.
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let (start, count) = clamp(self.word(5), self.word(6), self.cs.ix.n_props);
        let me = *self;
        (start..start + count).map(move |p| {
            let o = me.cs.ix.props + p * PROP_WORDS * 4;
            let b = me.cs.bytes;
            (me.s(rd(b, o), rd(b, o + 4)), me.s(rd(b, o + 8), rd(b, o + 12)))
        })
    }
    /// The first property with this name.
    pub fn property(&self, name: &str) -> Option<&'a str> {
        self.properties().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
    /// Direct is-a parents.
    pub fn parents(&self) -> impl Iterator<Item = ConceptRef<'a>> + 'a {
        let (start, count) = clamp(self.word(7), self.word(8), self.cs.ix.n_parents);
        let me = *self;
        (start..start + count).filter_map(move |p| {
            let pi = rd(me.cs.bytes, me.cs.ix.parents + p * 4);
            me.cs.concept(pi)
        })
    }
}

impl std::fmt::Debug for ConceptRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Concept")
            .field("system", &self.cs.system())
            .field("code", &self.code())
            .field("display", &self.display())
            .field("status", &self.status())
            .finish()
    }
}

/// One ConceptMap inside a store.
#[derive(Clone, Copy)]
pub struct ConceptMapRef<'a> {
    bytes: &'a [u8],
    ix: &'a CmIndex,
}

/// One mapping target, borrowed from the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetRef<'a> {
    pub system: &'a str,
    pub code: &'a str,
    pub display: &'a str,
    pub equivalence: Equivalence,
}

impl<'a> ConceptMapRef<'a> {
    fn s(&self, off: u32, len: u32) -> &'a str {
        arena_str(self.bytes, self.ix.arena, self.ix.arena_end, off, len)
    }
    fn meta(&self, k: usize) -> &'a str {
        let o = self.ix.base + (6 + 2 * k) * 4;
        self.s(rd(self.bytes, o), rd(self.bytes, o + 4))
    }
    pub fn url(&self) -> &'a str {
        self.meta(0)
    }
    pub fn version(&self) -> &'a str {
        self.meta(1)
    }
    pub fn name(&self) -> &'a str {
        self.meta(2)
    }
    /// The sender whose local map this is, if any.
    pub fn sender(&self) -> Option<&'a str> {
        Some(self.meta(3)).filter(|s| !s.is_empty())
    }
    pub fn source(&self) -> &'a str {
        self.meta(4)
    }
    /// Number of source codes mapped.
    pub fn len(&self) -> usize {
        self.ix.n_entries as usize
    }
    pub fn is_empty(&self) -> bool {
        self.ix.n_entries == 0
    }
    /// (source system, target system) of group `g`.
    pub fn group(&self, g: u32) -> Option<(&'a str, &'a str)> {
        if g >= self.ix.n_groups {
            return None;
        }
        let o = self.ix.groups + g as usize * GROUP_WORDS * 4;
        let b = self.bytes;
        Some((self.s(rd(b, o), rd(b, o + 4)), self.s(rd(b, o + 8), rd(b, o + 12))))
    }
    /// Source systems of all groups (with repeats).
    pub fn groups(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let me = *self;
        (0..self.ix.n_groups).filter_map(move |g| me.group(g))
    }

    /// The targets of `code` in source system `system`. Allocation-free.
    pub fn get(&self, system: &str, code: &str) -> Option<MapEntryRef<'a>> {
        let cap = self.ix.cap as usize;
        let mut slot = (pair_hash(system.as_bytes(), code.as_bytes()) as usize) & (cap - 1);
        for _ in 0..cap {
            let v = rd(self.bytes, self.ix.hash + slot * 4);
            if v == 0 {
                return None;
            }
            let e = MapEntryRef { map: *self, idx: v - 1 };
            // Byte compares: no UTF-8 check on the way to a hit.
            if e.bytes_at(0) == code.as_bytes() && e.source_system_bytes() == system.as_bytes() {
                return Some(e);
            }
            slot = (slot + 1) & (cap - 1);
        }
        None
    }

    /// All mapped source codes.
    pub fn entries(&self) -> impl Iterator<Item = MapEntryRef<'a>> + 'a {
        let map = *self;
        (0..self.ix.n_entries).map(move |idx| MapEntryRef { map, idx })
    }
}

/// A mapped source code and its targets.
#[derive(Clone, Copy)]
pub struct MapEntryRef<'a> {
    map: ConceptMapRef<'a>,
    idx: u32,
}

impl<'a> MapEntryRef<'a> {
    fn word(&self, k: usize) -> u32 {
        rd(self.map.bytes, self.map.ix.entries + (self.idx as usize * ENTRY_WORDS + k) * 4)
    }
    fn bytes_at(&self, k: usize) -> &'a [u8] {
        arena_bytes(self.map.bytes, self.map.ix.arena, self.map.ix.arena_end, self.word(k), self.word(k + 1))
    }
    fn source_system_bytes(&self) -> &'a [u8] {
        let g = self.word(2);
        if g >= self.map.ix.n_groups {
            return &[];
        }
        let o = self.map.ix.groups + g as usize * GROUP_WORDS * 4;
        arena_bytes(
            self.map.bytes,
            self.map.ix.arena,
            self.map.ix.arena_end,
            rd(self.map.bytes, o),
            rd(self.map.bytes, o + 4),
        )
    }
    pub fn code(&self) -> &'a str {
        self.map.s(self.word(0), self.word(1))
    }
    pub fn source_system(&self) -> &'a str {
        self.map.group(self.word(2)).map(|g| g.0).unwrap_or("")
    }
    pub fn target_system(&self) -> &'a str {
        self.map.group(self.word(2)).map(|g| g.1).unwrap_or("")
    }
    pub fn map(&self) -> ConceptMapRef<'a> {
        self.map
    }
    pub fn targets(&self) -> impl Iterator<Item = TargetRef<'a>> + 'a {
        let (start, count) = clamp(self.word(3), self.word(4), self.map.ix.n_targets);
        let me = *self;
        let system = self.target_system();
        (start..start + count).map(move |t| {
            let o = me.map.ix.targets + t * TARGET_WORDS * 4;
            let b = me.map.bytes;
            TargetRef {
                system,
                code: me.map.s(rd(b, o), rd(b, o + 4)),
                display: me.map.s(rd(b, o + 8), rd(b, o + 12)),
                equivalence: Equivalence::from_u32(rd(b, o + 16)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{ConceptContent, MapElement, MapGroup, MapTarget};

    fn sample() -> CodeSystemContent {
        let mut root = ConceptContent::new("1", "Root");
        root.properties.push(("kind".into(), "top".into()));
        let mut child = ConceptContent::new("2", "Child");
        child.parents.push("1".into());
        child.parents.push("404".into());
        let mut old = ConceptContent::new("3", "Old");
        old.status = ConceptStatus::Inactive;
        CodeSystemContent {
            system: "urn:test".into(),
            version: "v1".into(),
            name: "Test".into(),
            source: "mem".into(),
            concepts: vec![root, child, old, ConceptContent::new("1", "Duplicate")],
        }
    }

    #[test]
    fn round_trip_code_system() {
        let mut b = StoreBuilder::new();
        let notes = b.add_code_system(&sample());
        assert_eq!(notes.len(), 2, "{notes:?}");
        let store = Store::from_bytes(Cow::Owned(b.to_bytes()), "mem").unwrap();
        let cs = store.code_systems().next().unwrap();
        assert_eq!((cs.system(), cs.version(), cs.name(), cs.len()), ("urn:test", "v1", "Test", 3));
        let root = cs.get("1").unwrap();
        assert_eq!(root.display(), "Root");
        assert_eq!(root.property("kind"), Some("top"));
        let child = cs.get("2").unwrap();
        assert_eq!(child.parents().map(|p| p.code()).collect::<Vec<_>>(), vec!["1"]);
        assert_eq!(cs.get("3").unwrap().status(), ConceptStatus::Inactive);
        assert!(cs.get("4").is_none());
        assert!(cs.get("").is_none());
    }

    #[test]
    fn many_codes_all_found() {
        let cs = CodeSystemContent {
            system: "urn:many".into(),
            version: "1".into(),
            name: String::new(),
            source: String::new(),
            concepts: (0..5000).map(|i| ConceptContent::new(format!("C{i}"), format!("D{i}"))).collect(),
        };
        let mut b = StoreBuilder::new();
        b.add_code_system(&cs);
        let store = Store::from_bytes(Cow::Owned(b.to_bytes()), "mem").unwrap();
        let r = store.code_systems().next().unwrap();
        for i in 0..5000 {
            assert_eq!(r.get(&format!("C{i}")).unwrap().display(), format!("D{i}"));
        }
        assert!(r.get("C5000").is_none());
    }

    #[test]
    fn long_codes_sharing_the_inline_prefix() {
        // SNOMED-style ids longer than the 11 bytes held in the slot.
        let codes = ["900000000000207008", "900000000000207009", "90000000000", "900000000001"];
        let cs = CodeSystemContent {
            system: "urn:long".into(),
            version: "1".into(),
            name: String::new(),
            source: String::new(),
            concepts: codes.iter().map(|c| ConceptContent::new(*c, format!("d{c}"))).collect(),
        };
        let mut b = StoreBuilder::new();
        b.add_code_system(&cs);
        let store = Store::from_bytes(Cow::Owned(b.to_bytes()), "mem").unwrap();
        let r = store.code_systems().next().unwrap();
        for c in codes {
            let got = r.get(c).unwrap();
            assert_eq!((got.code(), got.display()), (c, format!("d{c}").as_str()));
        }
        assert!(r.get("900000000000207000").is_none());
        assert!(r.get("9000000000002070080").is_none());
    }

    #[test]
    fn concept_map_and_replace_by_identity() {
        let cm = ConceptMapContent {
            url: "urn:map".into(),
            version: "1".into(),
            name: "m".into(),
            sender: Some("LAB1".into()),
            source: "mem".into(),
            groups: vec![MapGroup {
                source_system: "urn:local".into(),
                target_system: "http://loinc.org".into(),
                elements: vec![MapElement {
                    code: "GLU".into(),
                    targets: vec![MapTarget {
                        code: "2345-7".into(),
                        display: "Glucose".into(),
                        equivalence: Equivalence::Equivalent,
                    }],
                }],
            }],
        };
        let mut b = StoreBuilder::new();
        b.add_concept_map(&cm);
        b.add_code_system(&sample());
        b.add_code_system(&sample());
        assert_eq!(b.len(), 2);
        let store = Store::from_bytes(Cow::Owned(b.to_bytes()), "mem").unwrap();
        let m = store.concept_maps().next().unwrap();
        assert_eq!(m.sender(), Some("LAB1"));
        let e = m.get("urn:local", "GLU").unwrap();
        let t: Vec<_> = e.targets().collect();
        assert_eq!(t[0].code, "2345-7");
        assert_eq!(t[0].system, "http://loinc.org");
        assert!(m.get("urn:other", "GLU").is_none());
        // Re-building from the store keeps both segments.
        let again = StoreBuilder::from_store(&store);
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn corrupt_bytes_error_not_panic() {
        let mut b = StoreBuilder::new();
        b.add_code_system(&sample());
        let good = b.to_bytes();
        assert!(Store::from_bytes(Cow::Owned(b"nonsense".to_vec()), "x").is_err());
        for cut in [0, 10, 20, 40, good.len() / 2, good.len() - 1] {
            let r = Store::from_bytes(Cow::Owned(good[..cut].to_vec()), "x");
            assert!(r.is_err(), "cut at {cut} accepted");
        }
        // Flipping bytes anywhere must never panic.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xA5;
            if let Ok(s) = Store::from_bytes(Cow::Owned(bad), "x") {
                for cs in s.code_systems() {
                    let _ = cs.get("1").map(|c| (c.display(), c.properties().count(), c.parents().count()));
                }
            }
        }
    }
}
