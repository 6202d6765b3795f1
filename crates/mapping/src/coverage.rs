//! The coverage report: every segment and field of the input that was not mapped, listed —
//! so that nothing is ever dropped silently.
//!
//! Mappers read fields through [`Seg`], which marks each field it hands out as consumed. At the
//! end every non-empty field that no mapper consumed is listed (a whole segment when nothing
//! of it was), and mapping problems found on consumed fields (unknown code, bad date …) are
//! listed as notes with their location. Set IDs and MSH-1/MSH-2 are structural (numbering and
//! delimiters, no data) and count as consumed.

use canonical::{Issue, IssueSeverity};
use hl7v2::{Field, Segment};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};

/// Where in the input: segment name, 1-based position in the message, optional field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    /// Borrowed from a static table for the segments mapped here (see [`segment_name`]).
    pub segment: Cow<'static, str>,
    pub index: usize,
    pub field: Option<usize>,
}

/// The segment name for a [`Place`]: a place is made for every time converted and every
/// note, so the names of the segments mapped here are not copied each time (Z-segments and
/// others are).
pub fn segment_name(name: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 42] = [
        "MSH", "EVN", "PID", "PD1", "NK1", "PV1", "PV2", "ORC", "OBR", "OBX", "NTE", "SPM", "TQ1", "AL1", "DG1", "PR1",
        "IN1", "IN2", "GT1", "MRG", "ROL", "PRT", "RXA", "RXR", "RXE", "RXO", "RXD", "RXC", "RXG", "SCH", "AIS", "AIG",
        "AIL", "AIP", "RGS", "TXA", "CTI", "SFT", "MSA", "ERR", "QRD", "FT1",
    ];
    // Compared as packed 3-byte words (a name is almost always three letters).
    const fn pack(b: &[u8]) -> u32 {
        (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32
    }
    const PACKED: [u32; 42] = {
        let mut p = [0u32; 42];
        let mut i = 0;
        while i < KNOWN.len() {
            p[i] = pack(KNOWN[i].as_bytes());
            i += 1;
        }
        p
    };
    if name.len() == 3 {
        let w = pack(name.as_bytes());
        if let Some(i) = PACKED.iter().position(|&k| k == w) {
            return Cow::Borrowed(KNOWN[i]);
        }
    }
    Cow::Owned(name.to_string())
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.field {
            Some(n) => write!(f, "{}[{}]-{}", self.segment, self.index, n),
            None => write!(f, "{}[{}]", self.segment, self.index),
        }
    }
}

/// What kind of note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// A code not in the vocabulary map; the original is kept as text/coding where possible.
    UnknownCode,
    /// A value that is not valid for its datatype (kept as text where possible).
    InvalidValue,
    /// A time without an offset got the fallback zone because no profile names one.
    ZoneAssumed,
    /// A field the sender profile says to ignore.
    Ignored,
    /// Other information about how a value was carried.
    Info,
}

impl NoteKind {
    pub fn code(self) -> &'static str {
        match self {
            NoteKind::UnknownCode => "unknown-code",
            NoteKind::InvalidValue => "invalid-value",
            NoteKind::ZoneAssumed => "time-zone-assumed",
            NoteKind::Ignored => "ignored-by-profile",
            NoteKind::Info => "info",
        }
    }

    fn severity(self) -> IssueSeverity {
        match self {
            NoteKind::UnknownCode | NoteKind::ZoneAssumed => IssueSeverity::Warning,
            NoteKind::InvalidValue => IssueSeverity::Error,
            NoteKind::Ignored | NoteKind::Info => IssueSeverity::Info,
        }
    }
}

/// A problem with a consumed field. `detail` never holds the value itself (PHI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub kind: NoteKind,
    pub place: Place,
    pub detail: String,
}

/// A time value as sent and as written, for audit of zone handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeRecord {
    pub place: Place,
    /// Shared (not copied) between the records of a time text that repeats, as OBX-14 does.
    pub original: std::sync::Arc<str>,
    pub converted: std::sync::Arc<str>,
    pub zone: crate::time::ZoneSource,
}

/// What was not mapped from one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoverageReport {
    /// Segments of which nothing was mapped.
    pub unmapped_segments: Vec<Place>,
    /// Non-empty fields of mapped segments that no mapper consumed.
    pub unmapped_fields: Vec<Place>,
    pub notes: Vec<Note>,
    /// Every time value converted, with its original text (the original string is kept here).
    pub times: Vec<TimeRecord>,
}

impl CoverageReport {
    /// Whether everything was mapped without problems.
    pub fn is_complete(&self) -> bool {
        self.unmapped_segments.is_empty() && self.unmapped_fields.is_empty() && self.notes.is_empty()
    }

    /// Whether a segment position (and field) is listed as unmapped or noted.
    pub fn mentions(&self, index: usize, field: Option<usize>) -> bool {
        self.unmapped_segments.iter().any(|p| p.index == index)
            || self
                .unmapped_fields
                .iter()
                .chain(self.notes.iter().map(|n| &n.place))
                .any(|p| p.index == index && (field.is_none() || p.field == field || p.field.is_none()))
    }

    /// The report as event issues (stage `normalize`), without any data values.
    pub fn to_issues(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        for p in &self.unmapped_segments {
            out.push(Issue {
                severity: IssueSeverity::Warning,
                code: "unmapped-segment".into(),
                location: p.to_string(),
                stage: "normalize".into(),
                detail: format!("segment {} was not mapped", p.segment),
            });
        }
        for p in &self.unmapped_fields {
            out.push(Issue {
                severity: IssueSeverity::Warning,
                code: "unmapped-field".into(),
                location: p.to_string(),
                stage: "normalize".into(),
                detail: "field was not mapped".into(),
            });
        }
        for n in &self.notes {
            out.push(Issue {
                severity: n.kind.severity(),
                code: n.kind.code().into(),
                location: n.place.to_string(),
                stage: "normalize".into(),
                detail: n.detail.clone(),
            });
        }
        out
    }
}

/// Consumption marks for one message, filled while mapping.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Per segment (0-based), a bit per field 1..=127; bit 0 = segment handled.
    used: Vec<Cell<u128>>,
    notes: RefCell<Vec<Note>>,
    times: RefCell<Vec<TimeRecord>>,
}

impl Tracker {
    pub fn new(segments: usize) -> Tracker {
        Tracker {
            used: (0..segments).map(|_| Cell::new(0)).collect(),
            // About one time per segment (OBX-14, OBR-7 …): room for them up front.
            times: RefCell::new(Vec::with_capacity(segments)),
            ..Default::default()
        }
    }

    pub fn mark(&self, index: usize, field: usize) {
        if let Some(c) = self.used.get(index.wrapping_sub(1)) {
            let bit = if field < 128 { 1u128 << field } else { 0 };
            c.set(c.get() | bit | 1);
        }
    }

    /// Marks the whole segment as handled (every field consumed), e.g. a group marker.
    pub fn mark_all(&self, index: usize) {
        if let Some(c) = self.used.get(index.wrapping_sub(1)) {
            c.set(u128::MAX);
        }
    }

    pub fn note(&self, kind: NoteKind, place: Place, detail: impl Into<String>) {
        self.notes.borrow_mut().push(Note { kind, place, detail: detail.into() });
    }

    pub fn time(&self, rec: TimeRecord) {
        self.times.borrow_mut().push(rec);
    }

    /// Builds the report by comparing the marks with what the message holds.
    pub fn report<'m>(self, segments: impl Iterator<Item = Segment<'m>>) -> CoverageReport {
        let mut rep = CoverageReport::default();
        for seg in segments {
            let used = self.used.get(seg.index() - 1).map_or(0, Cell::get);
            if used == 0 {
                rep.unmapped_segments.push(Place {
                    segment: segment_name(seg.name()),
                    index: seg.index(),
                    field: None,
                });
                continue;
            }
            if used == u128::MAX {
                continue;
            }
            // Only the fields not consumed are looked at (most are consumed).
            for n in 1..=seg.field_count() {
                if (n >= 128 || used & (1u128 << n) == 0) && seg.field(n).is_some_and(|f| !f.is_empty()) {
                    rep.unmapped_fields.push(Place {
                        segment: segment_name(seg.name()),
                        index: seg.index(),
                        field: Some(n),
                    });
                }
            }
        }
        rep.notes = self.notes.into_inner();
        rep.times = self.times.into_inner();
        rep
    }
}

/// A segment being mapped: hands out fields and marks them consumed.
#[derive(Clone, Copy)]
pub struct Seg<'a, 'm> {
    pub seg: Segment<'m>,
    pub tracker: &'a Tracker,
}

impl<'a, 'm> Seg<'a, 'm> {
    pub fn new(seg: Segment<'m>, tracker: &'a Tracker) -> Self {
        tracker.mark(seg.index(), 0);
        Seg { seg, tracker }
    }

    pub fn name(&self) -> &'m str {
        self.seg.name()
    }

    pub fn index(&self) -> usize {
        self.seg.index()
    }

    /// Field `n` if it has a value (neither empty nor the `""` null), marked consumed.
    pub fn f(&self, n: usize) -> Option<Field<'m>> {
        self.tracker.mark(self.seg.index(), n);
        self.seg.field(n).filter(|f| !f.is_empty() && !f.is_null())
    }

    /// Field `n` as unescaped text of its first repetition, whole (components joined as sent).
    pub fn text(&self, n: usize) -> Option<String> {
        self.f(n).and_then(|f| f.repetition(1)).and_then(|r| r.text()).map(|c| c.into_owned())
    }

    /// First component of field `n`, unescaped.
    pub fn c1(&self, n: usize) -> Option<String> {
        self.f(n).and_then(|f| f.component(1)).and_then(|c| c.text()).map(|c| c.into_owned())
    }

    /// First component of field `n`, unescaped, borrowed from the message where it can be:
    /// for codes that are only compared.
    pub fn c1_ref(&self, n: usize) -> Option<std::borrow::Cow<'m, str>> {
        self.f(n).and_then(|f| f.component(1)).and_then(|c| c.text())
    }

    /// Marks structural fields (set IDs) as consumed.
    pub fn structural(&self, fields: &[usize]) {
        for &n in fields {
            self.tracker.mark(self.seg.index(), n);
        }
    }

    /// Notes (as not mapped) the components of field `n` other than `used` that hold data, for
    /// fields of which only some components have a FHIR home.
    pub fn partial(&self, n: usize, used: &[usize]) {
        let Some(f) = self.seg.field(n) else { return };
        let lost: Vec<usize> = f
            .repetitions()
            .flat_map(|r| {
                r.components().enumerate().filter(|(_, c)| !c.is_empty()).map(|(i, _)| i + 1).collect::<Vec<_>>()
            })
            .filter(|i| !used.contains(i))
            .collect();
        if let Some(first) = lost.iter().min() {
            self.note(NoteKind::Info, n, format!("component {first} (and any others listed by position) not mapped"));
        }
    }

    pub fn place(&self, field: usize) -> Place {
        Place { segment: segment_name(self.seg.name()), index: self.seg.index(), field: Some(field) }
    }

    pub fn note(&self, kind: NoteKind, field: usize, detail: impl Into<String>) {
        self.tracker.note(kind, self.place(field), detail);
    }

    /// A note about the whole segment (e.g. it could not become a resource).
    pub fn note_segment(&self, kind: NoteKind, detail: impl Into<String>) {
        self.tracker.note(
            kind,
            Place { segment: segment_name(self.seg.name()), index: self.seg.index(), field: None },
            detail,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::segment_name;
    use std::borrow::Cow;

    #[test]
    fn segment_names_from_the_table_or_copied() {
        assert!(matches!(segment_name("OBX"), Cow::Borrowed("OBX")));
        assert!(matches!(segment_name("MSH"), Cow::Borrowed("MSH")));
        for other in ["ZPI", "OB", "OBXX", "obx", ""] {
            assert!(matches!(segment_name(other), Cow::Owned(ref s) if s == other), "{other}");
        }
    }
}
