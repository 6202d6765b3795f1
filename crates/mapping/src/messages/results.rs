//! ORC, OBR, OBX, SPM, NTE and TQ1: orders, reports, observations and specimens.
//!
//! OBR → ServiceRequest (every family) and, in results messages, a DiagnosticReport based on
//! it. OBX → Observation of every value type (NM, SN, ST/TX/FT, CWE/CE, DT/TS/DTM, TM, ED,
//! NR, DR, MO, NA …); an OBX after an SPM is a specimen observation and references that
//! Specimen — never dropped. An OBX-5 that cannot be read as its declared type is kept as
//! text and reported, never silently discarded.

use super::{Family, RequestGroup, Walk};
use crate::context::{Env, reference};
use crate::coverage::{NoteKind, Seg};
use crate::datatypes::{self as dt, comp, sub};
use crate::vocab;
use canonical::model::*;
use hl7v2::escape::Formatting;
use hl7v2::{Repetition, Segment};

const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const DATA_ABSENT: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
/// R4 Observation has no valueAttachment (R5 has); HAPI rejects the 5.0 cross-version URL in
/// R4, so an Arteria extension carries it.
const VALUE_ATTACHMENT: &str = "urn:arteria:fhir:StructureDefinition:observation-value-attachment";

pub(crate) fn orc<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    w.pending_tq1.clear();
    w.order = Some(super::OrderGroup { orc: seg });
    w.request = None;
    w.note_target = None;
}

/// What the current ORC says about an order (its fields are consumed on use).
pub(crate) struct OrcInfo {
    pub identifiers: Vec<Identifier>,
    pub requisition: Option<Identifier>,
    pub control: Option<String>,
    pub status: Option<String>,
    pub authored: Option<String>,
    pub requester: Option<Reference>,
}

pub(crate) fn orc_info(w: &mut Walk<'_, '_>) -> Option<OrcInfo> {
    let env = w.env;
    let orc = w.order?.orc;
    let s = env.seg(orc);
    let mut identifiers = Vec::new();
    identifiers.extend(s.f(2).and_then(|f| f.repetition(1)).and_then(|r| dt::ei_typed(env, &r, "PLAC")));
    identifiers.extend(s.f(3).and_then(|f| f.repetition(1)).and_then(|r| dt::ei_typed(env, &r, "FILL")));
    let requisition = s.f(4).and_then(|f| f.repetition(1)).and_then(|r| dt::ei(env, &r));
    let authored = dt::ts(env, s.f(9).map(|f| f.value()), s.place(9)).map(|t| t.value);
    let requester = s.f(12).and_then(|f| f.repetition(1)).and_then(|r| w.out.practitioner(env, &r));
    let (control, status) = (s.c1(1), s.c1(5));
    let (control_ok, status_ok) = vocab::order_codes_known(control.as_deref(), status.as_deref());
    if !control_ok {
        s.note(NoteKind::UnknownCode, 1, "order control code not in table 0119");
    }
    if !status_ok {
        s.note(NoteKind::UnknownCode, 5, "order status not in table 0038");
    }
    Some(OrcInfo { identifiers, requisition, control, status, authored, requester })
}

/// Adds `id` unless the list has one with the same value and system (copied only when added:
/// ORC-2/3 and OBR-2/3 usually repeat each other).
fn push_unique(list: &mut Vec<Identifier>, id: &Identifier) {
    if !list.iter().any(|x| x.value == id.value && x.system == id.system) {
        list.push(id.clone());
    }
}

pub(crate) fn obr<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(subject) = w.patient_ref() else { return };
    let s = env.seg(seg);
    s.structural(&[1]);
    let orc = orc_info(w);
    let placer = s.f(2).and_then(|f| f.repetition(1)).and_then(|r| dt::ei_typed(env, &r, "PLAC"));
    let filler = s.f(3).and_then(|f| f.repetition(1)).and_then(|r| dt::ei_typed(env, &r, "FILL"));
    let code = s.f(4).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe(env, &r));
    let mut sr = ServiceRequest {
        id: env.event_id("ServiceRequest", seg.index(), ""),
        intent: "order".into(),
        subject: subject.clone(),
        encounter: w.encounter_ref(),
        code: code.clone(),
        ..Default::default()
    };
    if let Some(o) = orc {
        sr.status = vocab::order_status(o.control.as_deref(), o.status.as_deref()).into();
        for id in o.identifiers {
            if !sr.identifier.iter().any(|x| x.value == id.value && x.system == id.system) {
                sr.identifier.push(id);
            }
        }
        sr.requisition = o.requisition;
        sr.authored_on = o.authored;
        sr.requester = o.requester;
    } else {
        sr.status = "unknown".into();
    }
    for id in placer.iter().chain(filler.iter()) {
        push_unique(&mut sr.identifier, id);
    }
    if let Some(p) = s.c1(5) {
        sr.priority = priority(&p);
        if sr.priority.is_none() {
            s.note(NoteKind::UnknownCode, 5, "priority not mapped");
        }
    }
    if sr.authored_on.is_none() {
        sr.authored_on = dt::ts(env, s.f(6).map(|f| f.value()), s.place(6)).map(|t| t.value);
    }
    // OBR-16 repeats ORC-12 in most messages; when it names someone else, that is reported.
    let ordering = s.f(16).and_then(|f| f.repetition(1)).and_then(|r| w.out.practitioner(env, &r));
    match (&sr.requester, ordering) {
        (None, o) => sr.requester = o,
        (Some(a), Some(b)) if a.reference != b.reference => {
            s.note(NoteKind::Info, 16, "ordering provider differs from ORC-12; ORC-12 is the requester")
        }
        _ => {}
    }
    if let Some(f) = s.f(31) {
        sr.reason_code.extend(f.repetitions().filter_map(|r| dt::cwe(env, &r)));
    }
    s.partial(27, &[4, 6]);
    if let Some(r) = s.f(27).and_then(|f| f.repetition(1)) {
        if let Some(p) = comp(&r, 6).and_then(|p| priority(&p)) {
            sr.priority = Some(p);
        }
        if let Some(start) = dt::ts(env, r.component(4).map(|c| c.value()), s.place(27)) {
            sr.occurrence = Some(Occurrence::DateTime(start.value));
        }
    }
    let start = dt::ts(env, s.f(7).map(|f| f.value()), s.place(7)).map(|t| t.value);
    let end = dt::ts(env, s.f(8).map(|f| f.value()), s.place(8)).map(|t| t.value);
    let effective = match (&start, &end) {
        (Some(a), Some(b)) => Some(Effective::Period(Period { start: Some(a.clone()), end: Some(b.clone()) })),
        (Some(a), None) => Some(Effective::DateTime(a.into())),
        (None, Some(b)) => Some(Effective::Period(Period { start: None, end: Some(b.clone()) })),
        _ => None,
    };
    let sr_i = w.out.push(Resource::ServiceRequest(Box::new(sr)));
    let sr_ref = w.out.reference_to(sr_i);
    let mut dr_i = None;
    if w.family == Family::Results {
        let mut dr = DiagnosticReport {
            id: env.event_id("DiagnosticReport", seg.index(), ""),
            based_on: vec![sr_ref.clone()],
            subject: Some(subject),
            encounter: w.encounter_ref(),
            effective: effective.clone(),
            ..Default::default()
        };
        dr.identifier.extend(filler);
        dr.code = code.unwrap_or_else(|| {
            s.note(NoteKind::InvalidValue, 4, "universal service identifier missing");
            CodeableConcept::text("unspecified report")
        });
        dr.status = match s.c1(25) {
            Some(c) => vocab::report_status(&c).unwrap_or_else(|| {
                s.note(NoteKind::UnknownCode, 25, "result status not in HL7 table 0123");
                "unknown"
            }),
            None => "unknown",
        }
        .into();
        dr.issued = dt::instant(env, s.f(22).map(|f| f.value()), s.place(22));
        if let Some(r) = s.f(24).and_then(|f| f.repetition(1)) {
            dr.category.extend(dt::cwe_table(env, &r, "0074"));
        }
        for n in [32, 33] {
            if let Some(f) = s.f(n) {
                for r in f.repetitions() {
                    if let Some(p) = ndl(w, &r) {
                        dr.results_interpreter.push(p);
                    }
                }
            }
        }
        if let Some(f) = s.f(34) {
            for r in f.repetitions() {
                if let Some(p) = ndl(w, &r) {
                    dr.performer.push(p);
                }
            }
        }
        dr_i = Some(w.out.push(Resource::DiagnosticReport(Box::new(dr))));
    } else if start.is_some() {
        // In an order, OBR-7 is when the specimen is to be / was collected.
        if let Resource::ServiceRequest(sr) = w.out.get_mut(sr_i)
            && sr.occurrence.is_none()
        {
            sr.occurrence = Some(match effective.clone() {
                Some(Effective::Period(p)) => Occurrence::Period(p),
                Some(Effective::DateTime(d)) => Occurrence::DateTime(d.into()),
                None => unreachable!("start is set"),
            });
        }
    }
    w.request = Some(RequestGroup {
        sr: Some(sr_i),
        dr: dr_i,
        sr_ref: Some(sr_ref),
        specimen: None,
        specimens: Vec::new(),
        in_specimen_group: false,
        effective: match effective {
            Some(Effective::DateTime(d)) => Some(d),
            _ => start.map(Shared::from),
        },
    });
    w.note_target = Some(sr_i);
    for tq in std::mem::take(&mut w.pending_tq1) {
        tq1(w, tq);
    }
}

fn priority(code: &str) -> Option<Text> {
    Some(
        match code {
            "S" => "stat",
            "A" => "asap",
            "R" => "routine",
            "T" | "P" | "C" => "urgent",
            _ => return None,
        }
        .into(),
    )
}

/// NDL (OBR-32..35): the first component is a CNN with subcomponents (id & family & given …).
fn ndl(w: &mut Walk<'_, '_>, r: &Repetition<'_>) -> Option<Reference> {
    let env = w.env;
    let c = r.component(1)?;
    // Build an XCN-shaped view from the CNN subcomponents by re-reading them as components.
    let subs: Vec<String> = c.subcomponents().map(|v| v.as_str().to_string()).collect();
    if subs.iter().all(|s| s.is_empty()) {
        return None;
    }
    let d = env.delims;
    let as_xcn = subs.join(&(d.component as char).to_string());
    let field_text = format!("MSH{f}{enc}{f}\rZZZ{f}{as_xcn}", f = d.field as char, enc = encoding_chars(&d));
    let msg = hl7v2::Message::parse_with(
        field_text.as_bytes(),
        &hl7v2::ParseOptions { allow_missing_msh: vec![9, 10, 11, 12], ..Default::default() },
    )
    .ok()?;
    let rep = msg.segment("ZZZ")?.field(1)?.repetition(1)?;
    w.out.practitioner(env, &rep)
}

fn encoding_chars(d: &hl7v2::Delimiters) -> String {
    let mut s = String::new();
    s.push(d.component as char);
    s.push(d.repetition as char);
    s.push(d.escape as char);
    s.push(d.subcomponent as char);
    s
}

pub(crate) fn obx<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    if w.family == Family::Documents && w.document.is_some() {
        super::document::obx(w, seg);
        return;
    }
    let env = w.env;
    let s = env.seg(seg);
    s.structural(&[1]);
    // Boxed from the start: filled in place, not moved (888 bytes) at the end.
    let mut o = Box::new(Observation {
        id: env.event_id("Observation", seg.index(), ""),
        subject: w.patient_ref(),
        encounter: w.encounter_ref(),
        ..Default::default()
    });
    o.code = s.f(3).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe(env, &r)).unwrap_or_else(|| {
        s.note(NoteKind::InvalidValue, 3, "observation identifier missing");
        CodeableConcept::text("unspecified observation")
    });
    let vtype = s.c1_ref(2).unwrap_or_default();
    let unit = s.f(6).and_then(|f| f.repetition(1)).map(|r| checked_units(env, &s, &r)).unwrap_or((None, None, None));
    let mut unit_used = false;
    match s.f(5) {
        Some(f) if vtype == "ED" => match f.repetition(1).and_then(|r| dt::ed(&r)) {
            Some(att) => {
                o.extension.push(Extension { url: VALUE_ATTACHMENT.into(), value: ExtensionValue::Attachment(att) })
            }
            None => {
                s.note(NoteKind::InvalidValue, 5, "ED value could not be decoded; kept as text");
                o.value = Some(ObservationValue::String(f.value().unescaped().into_owned()));
            }
        },
        Some(f) => {
            let (value, used) = value(env, &s, &vtype, &f, &unit);
            unit_used = used;
            let reps = f.repetitions().filter(|r| !r.is_empty()).count();
            if reps > 1 && !matches!(value, Some(ObservationValue::String(_))) {
                // Only one value[x]: the other repetitions are kept, as text, in a note.
                let all: Vec<String> =
                    f.repetitions().filter(|r| !r.is_empty()).map(|r| dt::formatted(r.value())).collect();
                o.note.push(Annotation {
                    text: format!("All values as sent: {}", all.join(" ~ ")),
                    ..Default::default()
                });
                s.note(NoteKind::Info, 5, "value repeats; first mapped, all kept as text in a note");
            }
            o.value = value;
        }
        None => {
            let status = s.c1_ref(11);
            let reason = if matches!(status.as_deref(), Some("X") | Some("N")) {
                ("not-performed", "Not Performed")
            } else {
                ("unknown", "Unknown")
            };
            o.data_absent_reason = Some(Box::new(CodeableConcept::code(DATA_ABSENT, reason.0, Some(reason.1))));
        }
    }
    if !unit_used && unit.0.is_some() {
        // Units the value could not carry (text, coded or absent value) are kept as a note.
        o.note
            .push(Annotation { text: format!("Units: {}", unit.0.clone().unwrap_or_default()), ..Default::default() });
    }
    if let Some(text) = s.text(7) {
        let (low, high) = dt::reference_range(&text, unit);
        // Exactly one: a first push would reserve four (1,248 B, past glibc's per-thread cache).
        o.reference_range = vec![ObservationReferenceRange { low, high, text: Some(text), ..Default::default() }];
    }
    if let Some(f) = s.f(8) {
        for r in f.repetitions() {
            let Some(code) = dt::txt_ref(r.component(1).map(|c| c.value())) else { continue };
            match vocab::interpretation(&code) {
                Some((c, d)) => o.interpretation.push(CodeableConcept::code(INTERPRETATION, c, Some(d))),
                None => {
                    s.note(NoteKind::UnknownCode, 8, "abnormal flag not in HL7 table 0078; kept as sent");
                    o.interpretation.extend(dt::cwe_table(env, &r, "0078"));
                }
            }
        }
    }
    o.status = match s.c1_ref(11) {
        Some(c) => vocab::observation_status(&c).unwrap_or_else(|| {
            s.note(NoteKind::UnknownCode, 11, "result status not in HL7 table 0085");
            "unknown"
        }),
        None => "unknown",
    }
    .into();
    let effective = dt::ts_shared(env, s.f(14).map(|f| f.value()), s.place(14));
    o.effective = effective.or_else(|| w.request.as_ref().and_then(|r| r.effective.clone())).map(Effective::DateTime);
    if let Some(f) = s.f(16) {
        for r in f.repetitions() {
            o.performer.extend(w.out.practitioner(env, &r));
        }
    }
    if let Some(r) = s.f(17).and_then(|f| f.repetition(1)) {
        o.method = dt::cwe(env, &r).map(Box::new);
    }
    if let Some(r) = s.f(20).and_then(|f| f.repetition(1)) {
        o.body_site = dt::cwe(env, &r).map(Box::new);
    }
    if let Some(r) = s.f(23).and_then(|f| f.repetition(1)) {
        let ident = comp(&r, 10).map(|v| Identifier { value: Some(v), ..Default::default() });
        o.performer.extend(w.out.organization(env, comp(&r, 1), ident));
    }
    if let Some(f) = s.f(25) {
        for r in f.repetitions() {
            o.performer.extend(w.out.practitioner(env, &r));
        }
    }
    if let Some(id) = s.f(21).and_then(|f| f.repetition(1)).and_then(|r| dt::ei(env, &r)) {
        o.identifier.push(id);
    }
    // Where the observation belongs.
    match w.family {
        Family::Vaccination | Family::Pharmacy if w.medication.is_some() && w.request.is_none() => {
            let mi = w.medication.expect("checked");
            let id = w.out.resources[mi].id().to_string();
            match &w.out.resources[mi] {
                Resource::MedicationRequest(_) => o.based_on.push(reference(&id)),
                _ => o.part_of.push(reference(&id)),
            }
        }
        _ => {}
    }
    let mut dr_i = None;
    if let Some(req) = &w.request {
        o.based_on.extend(req.sr_ref.clone());
        if req.in_specimen_group {
            o.specimen = req.specimen.clone();
        }
        dr_i = req.dr;
    }
    let oi = w.out.push(Resource::Observation(o));
    let oref = w.out.reference_to(oi);
    if let Some(di) = dr_i
        && let Resource::DiagnosticReport(dr) = w.out.get_mut(di)
    {
        dr.result.push(oref);
    }
    w.note_target = Some(oi);
}

/// OBX-6 with a UCUM claim checked for plausibility: a declared UCUM code that cannot be a
/// UCUM expression keeps its text but loses the UCUM system (reported).
fn checked_units(env: &Env<'_>, s: &Seg<'_, '_>, r: &Repetition<'_>) -> dt::Units {
    let u = dt::units(env, r);
    if u.1.as_deref() == Some("http://unitsofmeasure.org") && !u.2.as_deref().is_some_and(ucum_syntax_ok) {
        s.note(NoteKind::InvalidValue, 6, "unit declared as UCUM is not a UCUM expression; kept as text");
        return (u.0, None, None);
    }
    u
}

/// UCUM's lexical rules: printable ASCII without spaces, balanced brackets/braces/parentheses.
pub(crate) fn ucum_syntax_ok(code: &str) -> bool {
    let mut depth = [0i32; 3];
    if code.is_empty() {
        return false;
    }
    for b in code.bytes() {
        match b {
            b'[' => depth[0] += 1,
            b']' => depth[0] -= 1,
            b'{' => depth[1] += 1,
            b'}' => depth[1] -= 1,
            b'(' => depth[2] += 1,
            b')' => depth[2] -= 1,
            0x21..=0x7E => {}
            _ => return false,
        }
        if depth.iter().any(|&d| d < 0) {
            return false;
        }
    }
    depth == [0, 0, 0]
}

use dt::Units as Unit;

/// OBX-5 by OBX-2. Returns the value and whether the units were used by it.
fn value(
    env: &Env<'_>,
    s: &Seg<'_, '_>,
    vtype: &str,
    f: &hl7v2::Field<'_>,
    unit: &Unit,
) -> (Option<ObservationValue>, bool) {
    let reps = || f.repetitions().filter(|r| !r.is_empty());
    let Some(first) = reps().next() else { return (None, false) };
    let as_text = |r: &Repetition<'_>| dt::formatted(r.value());
    let joined_text = || reps().map(|r| as_text(&r)).collect::<Vec<_>>().join("\n");
    let mut used_unit = false;
    let v = match vtype {
        "NM" => match dt::quantity(&first.value().unescaped_with(Formatting::Render), unit) {
            Some(q) => {
                used_unit = true;
                ObservationValue::Quantity(q)
            }
            None => {
                s.note(NoteKind::InvalidValue, 5, "NM value is not a number; kept as text");
                ObservationValue::String(joined_text())
            }
        },
        "SN" => {
            let (v, u) = sn(&first, unit, &joined_text);
            used_unit = u;
            if matches!(v, ObservationValue::String(_)) {
                s.note(NoteKind::Info, 5, "SN value not a quantity, range or ratio; kept as text");
            }
            v
        }
        "ST" | "TX" | "FT" | "VR" | "NA" | "RP" | "TN" | "GTS" | "CP" | "AD" | "PN" | "XAD" | "XPN" | "XON" | "XCN"
        | "CX" | "EI" | "SI" => {
            if !matches!(vtype, "ST" | "TX" | "FT") {
                s.note(NoteKind::Info, 5, format!("value type {vtype} carried as text"));
            }
            ObservationValue::String(joined_text())
        }
        "CWE" | "CE" | "CNE" | "CF" | "CNE " => match dt::cwe(env, &first) {
            Some(cc) => ObservationValue::CodeableConcept(cc),
            None => ObservationValue::String(joined_text()),
        },
        "IS" | "ID" => ObservationValue::CodeableConcept(CodeableConcept::text(as_text(&first))),
        "DT" | "DTM" | "TS" => match dt::ts(env, Some(first.value()), s.place(5)) {
            Some(t) => ObservationValue::DateTime(t.value),
            None => ObservationValue::String(joined_text()),
        },
        "TM" => match time_of_day(first.as_str()) {
            Some(t) => ObservationValue::Time(t),
            None => {
                s.note(NoteKind::InvalidValue, 5, "TM value is not a time; kept as text");
                ObservationValue::String(joined_text())
            }
        },
        "NR" => {
            let (l, h) = (comp(&first, 1), comp(&first, 2));
            let lo = l.as_deref().and_then(|v| dt::quantity(v, unit));
            let hi = h.as_deref().and_then(|v| dt::quantity(v, unit));
            if lo.is_some() == l.is_some() && hi.is_some() == h.is_some() && (lo.is_some() || hi.is_some()) {
                used_unit = true;
                ObservationValue::Range(Range { low: lo, high: hi })
            } else {
                s.note(NoteKind::InvalidValue, 5, "NR value is not a numeric range; kept as text");
                ObservationValue::String(joined_text())
            }
        }
        "DR" => {
            let start = dt::ts(env, first.component(1).map(|c| c.value()), s.place(5)).map(|t| t.value);
            let end = dt::ts(env, first.component(2).map(|c| c.value()), s.place(5)).map(|t| t.value);
            ObservationValue::Period(Period { start, end })
        }
        "MO" => match comp(&first, 1).and_then(|v| Decimal::parse(&v)) {
            Some(value) => ObservationValue::Quantity(Quantity {
                value: Some(value),
                unit: comp(&first, 2).map(Shared::from),
                system: comp(&first, 2).map(|_| "urn:iso:std:iso:4217".into()),
                code: comp(&first, 2).map(Shared::from),
                comparator: None,
            }),
            None => ObservationValue::String(joined_text()),
        },
        other => {
            s.note(NoteKind::UnknownCode, 2, format!("value type {other:?} not recognised; value carried as text"));
            ObservationValue::String(joined_text())
        }
    };
    (Some(v), used_unit)
}

/// SN: comparator ^ num1 ^ separator ^ num2 → Quantity (with comparator), Range or Ratio.
fn sn(r: &Repetition<'_>, unit: &Unit, text: &dyn Fn() -> String) -> (ObservationValue, bool) {
    let cmp = comp(r, 1);
    let n1 = comp(r, 2);
    let sep = comp(r, 3);
    let n2 = comp(r, 4);
    let q = |n: &Option<String>| n.as_deref().and_then(|n| dt::quantity(n, unit));
    let comparator = match cmp.as_deref() {
        None | Some("=") => Some(None),
        Some(c @ ("<" | ">" | "<=" | ">=")) => Some(Some(c.to_string().into())),
        _ => None,
    };
    match (comparator, sep.as_deref(), q(&n1), q(&n2)) {
        (Some(c), None, Some(mut a), None) => {
            a.comparator = c;
            (ObservationValue::Quantity(a), true)
        }
        (Some(None), Some("-"), Some(a), Some(b)) => {
            (ObservationValue::Range(Range { low: Some(a), high: Some(b) }), true)
        }
        (Some(None), Some(":" | "/"), Some(a), Some(_)) => {
            let den = n2.as_deref().and_then(|n| dt::quantity(n, &(None, None, None)));
            (ObservationValue::Ratio(Ratio { numerator: Some(a), denominator: den }), true)
        }
        _ => (ObservationValue::String(text()), false),
    }
}

/// v2 TM (HH[MM[SS[.S]]][+/-ZZZZ]) → FHIR time (HH:MM:SS), when it has no offset.
fn time_of_day(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if !matches!(digits, 2 | 4 | 6) || (digits < b.len() && b[digits] != b'.') {
        return None;
    }
    let n = |i: usize| -> Option<u32> { s.get(i..i + 2)?.parse().ok() };
    let (h, m, sec) = (n(0)?, if digits >= 4 { n(2)? } else { 0 }, if digits >= 6 { n(4)? } else { 0 });
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let frac = if digits < b.len() { &s[digits..] } else { "" };
    if !frac.is_empty() && (frac.len() < 2 || !frac[1..].bytes().all(|c| c.is_ascii_digit())) {
        return None;
    }
    Some(format!("{h:02}:{m:02}:{sec:02}{frac}"))
}

pub(crate) fn spm<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let s = env.seg(seg);
    s.structural(&[1]);
    let mut sp =
        Specimen { id: env.event_id("Specimen", seg.index(), ""), subject: w.patient_ref(), ..Default::default() };
    if let Some(r) = s.f(2).and_then(|f| f.repetition(1)) {
        for (n, ty) in [(1, "PLAC"), (2, "FILL")] {
            if let Some(v) = sub(&r, n, 1) {
                sp.identifier.push(Identifier {
                    system: dt::hd_system(
                        env,
                        sub(&r, n, 2).as_deref(),
                        sub(&r, n, 3).as_deref(),
                        sub(&r, n, 4).as_deref(),
                    ),
                    value: Some(v),
                    r#type: Some(CodeableConcept::code("http://terminology.hl7.org/CodeSystem/v2-0203", ty, None)),
                    ..Default::default()
                });
            }
        }
    }
    if let Some(r) = s.f(4).and_then(|f| f.repetition(1)) {
        sp.r#type = dt::cwe_table(env, &r, "0487");
    }
    let mut col = SpecimenCollection::default();
    if let Some(r) = s.f(7).and_then(|f| f.repetition(1)) {
        col.method = dt::cwe_table(env, &r, "0488");
    }
    if let Some(r) = s.f(8).and_then(|f| f.repetition(1)) {
        col.body_site = dt::cwe(env, &r);
    }
    if let Some(r) = s.f(12).and_then(|f| f.repetition(1))
        && let Some(v) = comp(&r, 1)
    {
        let unit_text = sub(&r, 2, 2).or_else(|| sub(&r, 2, 1));
        let (system, code) = match (sub(&r, 2, 1), sub(&r, 2, 3)) {
            (Some(c), Some(sys)) => (Some(dt::code_system(env, &sys)), Some(c)),
            _ => (None, None),
        };
        col.quantity = dt::quantity(&v, &(unit_text.map(Shared::from), system, code.map(Shared::from)));
        if col.quantity.is_none() {
            s.note(NoteKind::InvalidValue, 12, "collection amount is not a number");
        }
    }
    if let Some(r) = s.f(17).and_then(|f| f.repetition(1)) {
        let start = dt::ts(env, r.component(1).map(|c| c.value()), s.place(17)).map(|t| t.value);
        let end = dt::ts(env, r.component(2).map(|c| c.value()), s.place(17)).map(|t| t.value);
        col.collected = match (start, end) {
            (Some(a), None) => Some(Collected::DateTime(a)),
            (a, b) if a.is_some() || b.is_some() => Some(Collected::Period(Period { start: a, end: b })),
            _ => None,
        };
    }
    if col != SpecimenCollection::default() {
        sp.collection = Some(col);
    }
    sp.received_time = dt::ts(env, s.f(18).map(|f| f.value()), s.place(18)).map(|t| t.value);
    match s.c1(20).as_deref() {
        Some("Y") => sp.status = Some("available".into()),
        Some("N") => sp.status = Some("unavailable".into()),
        Some(_) => s.note(NoteKind::UnknownCode, 20, "availability not Y/N"),
        None => {}
    }
    if let Some(f) = s.f(21) {
        sp.status = Some("unsatisfactory".into());
        for r in f.repetitions() {
            if let Some(t) = dt::cwe_table(env, &r, "0490") {
                sp.note.push(Annotation {
                    text: format!(
                        "Rejected: {}",
                        t.text
                            .clone()
                            .or_else(|| t.coding.first().and_then(|c| c
                                .display
                                .clone()
                                .or(c.code.clone())
                                .map(Text::into_owned)))
                            .unwrap_or_default()
                    ),
                    ..Default::default()
                });
            }
        }
    }
    if let Some(f) = s.f(24) {
        sp.condition.extend(f.repetitions().filter_map(|r| dt::cwe_table(env, &r, "0493")));
    }
    if let Some(r) = s.f(27).and_then(|f| f.repetition(1))
        && let Some(t) = dt::cwe(env, &r)
    {
        sp.container.push(SpecimenContainer { r#type: Some(t), ..Default::default() });
    }
    let req = w.request.as_ref().map(|r| (r.sr, r.dr, r.sr_ref.clone()));
    sp.request.extend(req.as_ref().and_then(|r| r.2.clone()));
    let si = w.out.push(Resource::Specimen(Box::new(sp)));
    let spref = w.out.reference_to(si);
    if let Some((sr_i, dr_i, _)) = req {
        if let Some(i) = sr_i
            && let Resource::ServiceRequest(sr) = w.out.get_mut(i)
        {
            sr.specimen.push(spref.clone());
        }
        if let Some(i) = dr_i
            && let Resource::DiagnosticReport(dr) = w.out.get_mut(i)
        {
            dr.specimen.push(spref.clone());
        }
        if let Some(rq) = w.request.as_mut() {
            rq.specimen = Some(spref.clone());
            rq.specimens.push(spref);
            rq.in_specimen_group = true;
        }
    }
    w.note_target = Some(si);
}

pub(crate) fn nte<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(ti) = w.note_target else { return };
    let accepts = match &w.out.resources[ti] {
        Resource::Appointment(_) => true,
        r => !matches!(
            r,
            Resource::Patient(_)
                | Resource::Encounter(_)
                | Resource::DocumentReference(_)
                | Resource::DiagnosticReport(_)
        ),
    };
    if !accepts {
        return;
    }
    let s = env.seg(seg);
    s.structural(&[1]);
    let text = s.f(3).map(|f| f.repetitions().map(|r| dt::formatted(r.value())).collect::<Vec<_>>().join("\n"));
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else { return };
    let author = s.f(5).and_then(|f| f.repetition(1)).and_then(|r| w.out.practitioner(env, &r));
    let time = dt::ts(env, s.f(6).map(|f| f.value()), s.place(6)).map(|t| t.value);
    let source = s.c1(2);
    let ctype = s.f(4).and_then(|f| f.repetition(1)).and_then(|r| comp(&r, 1));
    let mut text = text;
    if let Some(c) = ctype {
        text = format!("[{c}] {text}");
    }
    if let Some(src) = source {
        text = format!("{text} (source: {src})");
    }
    match w.out.get_mut(ti) {
        Resource::Appointment(a) => {
            let c = a.comment.get_or_insert_with(String::new);
            if !c.is_empty() {
                c.push('\n');
            }
            c.push_str(&text);
        }
        r => {
            if let Some(notes) = super::notes_mut(r) {
                notes.push(Annotation { author_reference: author, time, text, ..Default::default() });
            }
        }
    }
}

pub(crate) fn tq1<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(sr_i) = w.request.as_ref().and_then(|r| r.sr) else {
        // Timing given with the ORC, before its OBR: applied when the OBR comes.
        if w.order.is_some() {
            w.pending_tq1.push(seg);
        }
        return;
    };
    let s = env.seg(seg);
    s.structural(&[1]);
    let start = dt::ts(env, s.f(7).map(|f| f.value()), s.place(7)).map(|t| t.value);
    let end = dt::ts(env, s.f(8).map(|f| f.value()), s.place(8)).map(|t| t.value);
    let prio = s.f(9).and_then(|f| f.repetition(1)).and_then(|r| comp(&r, 1));
    let prio_mapped = prio.as_deref().and_then(priority);
    if prio.is_some() && prio_mapped.is_none() {
        s.note(NoteKind::UnknownCode, 9, "priority not mapped");
    }
    if let Resource::ServiceRequest(sr) = w.out.get_mut(sr_i) {
        match (start, end) {
            (Some(a), None) => sr.occurrence = Some(Occurrence::DateTime(a)),
            (a, b) if a.is_some() || b.is_some() => {
                sr.occurrence = Some(Occurrence::Period(Period { start: a, end: b }))
            }
            _ => {}
        }
        if prio_mapped.is_some() {
            sr.priority = prio_mapped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ucum_syntax() {
        for ok in ["mg/dL", "10*3/uL", "mm[Hg]", "{cells}/uL", "%", "g.m-2"] {
            assert!(ucum_syntax_ok(ok), "{ok}");
        }
        for bad in ["", "mg dL", "mm[Hg", "µg"] {
            assert!(!ucum_syntax_ok(bad), "{bad}");
        }
    }

    #[test]
    fn tm_values() {
        assert_eq!(time_of_day("0830").as_deref(), Some("08:30:00"));
        assert_eq!(time_of_day("083015.5").as_deref(), Some("08:30:15.5"));
        assert_eq!(time_of_day("2500"), None);
        assert_eq!(time_of_day("08+0100"), None);
    }
}
