//! PV1 and PV2 → Encounter, with the status the trigger event implies.
//!
//! The IG's Event[EncounterStatus] map sets the status for A01–A13; cancels of encounters that
//! never happened (A11, A27, A38) become `entered-in-error`; A13 (cancel discharge) puts the
//! encounter back in progress without an end. For other triggers (A08, A31, non-ADT messages)
//! the visit's own dates decide: a discharge date means finished, an admit date in progress,
//! neither unknown. The Encounter id follows the visit number (PV1-19) so every message about
//! one visit updates one resource.

use super::{Family, Walk};
use crate::coverage::NoteKind;
use crate::datatypes as dt;
use crate::identity;
use crate::vocab;
use canonical::model::*;
use hl7v2::Segment;

const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

pub(crate) fn pv1<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(subject) = w.patient_ref() else { return };
    let s = env.seg(seg);
    s.structural(&[1]);
    let class_code = s.c1(2);
    let has_more = (3..=seg.field_count()).any(|n| seg.field(n).is_some_and(|f| !f.is_empty() && !f.is_null()));
    if !has_more && class_code.as_deref().is_none_or(|c| c == "N") {
        if class_code.is_some() {
            s.note(NoteKind::Info, 2, "patient class 'not applicable' and no visit data: no Encounter created");
        }
        return;
    }
    let mut e = Encounter { subject: Some(subject), ..Default::default() };
    e.class = match class_code.as_deref().map(|c| (c, vocab::patient_class(c))) {
        Some((_, Some((sys, code, display)))) => Coding {
            system: Some(sys.into()),
            code: Some(code.into()),
            display: Some(display.into()),
            ..Default::default()
        },
        other => {
            if other.is_some() {
                s.note(NoteKind::UnknownCode, 2, "patient class not in HL7 table 0004; class set to unknown");
            }
            Coding {
                system: Some(vocab::v2_table("0004").into()),
                code: Some("U".into()),
                display: Some("Unknown".into()),
                ..Default::default()
            }
        }
    };
    let visit_id = s.f(19).and_then(|f| f.repetition(1)).and_then(|r| dt::cx(env, &r));
    let id = match &visit_id {
        Some(v) => identity::id(
            env.tenant,
            "Encounter",
            &[v.system.as_deref().unwrap_or(&env.sender_key), v.value.as_deref().unwrap_or("")],
        ),
        None => env.event_id("Encounter", seg.index(), ""),
    };
    if let Some(mut v) = visit_id {
        v.r#type
            .get_or_insert_with(|| CodeableConcept::code("http://terminology.hl7.org/CodeSystem/v2-0203", "VN", None));
        e.identifier.push(v);
    }
    if let Some(mut alt) = s.f(50).and_then(|f| f.repetition(1)).and_then(|r| dt::cx(env, &r)) {
        alt.r#use = Some("secondary".into());
        e.identifier.push(alt);
    }
    let discharged = w.family == Family::Adt && w.trigger == "A03";
    if let Some(f) = s.f(3)
        && let Some(l) = w.out.location(env, &f)
    {
        e.location.push(EncounterLocation {
            location: l,
            status: Some(if discharged { "completed" } else { "active" }.into()),
        });
    }
    if let Some(r) = s.f(4).and_then(|f| f.repetition(1)) {
        e.r#type.extend(dt::cwe_table(env, &r, "0007"));
    }
    let mut hosp = EncounterHospitalization::default();
    if let Some(r) = s.f(5).and_then(|f| f.repetition(1)) {
        hosp.pre_admission_identifier = dt::cx(env, &r);
    }
    if let Some(f) = s.f(6)
        && let Some(l) = w.out.location(env, &f)
    {
        e.location.push(EncounterLocation { location: l, status: Some("completed".into()) });
    }
    for (n, code, display) in [
        (7, "ATND", "attender"),
        (8, "REF", "referrer"),
        (9, "CON", "consultant"),
        (17, "ADM", "admitter"),
        (52, "PART", "Participation"),
    ] {
        if let Some(f) = s.f(n) {
            for r in f.repetitions() {
                if let Some(p) = w.out.practitioner(env, &r) {
                    e.participant.push(EncounterParticipant {
                        r#type: vec![CodeableConcept::code(PARTICIPATION, code, Some(display))],
                        individual: Some(p),
                        ..Default::default()
                    });
                }
            }
        }
    }
    if let Some(r) = s.f(10).and_then(|f| f.repetition(1)) {
        e.service_type = dt::cwe_table(env, &r, "0069");
    }
    if let Some(f) = s.f(11)
        && let Some(l) = w.out.location(env, &f)
    {
        e.location.push(EncounterLocation { location: l, status: Some("reserved".into()) });
    }
    if let Some(r) = s.f(13).and_then(|f| f.repetition(1)) {
        hosp.re_admission = dt::cwe_table(env, &r, "0092");
    }
    if let Some(r) = s.f(14).and_then(|f| f.repetition(1)) {
        hosp.admit_source = dt::cwe_table(env, &r, "0023");
    }
    if let Some(r) = s.f(18).and_then(|f| f.repetition(1)) {
        e.r#type.extend(dt::cwe_table(env, &r, "0018"));
    }
    if let Some(r) = s.f(36).and_then(|f| f.repetition(1)) {
        hosp.discharge_disposition = dt::cwe_table(env, &r, "0112");
    }
    if let Some(f) = s.f(38) {
        hosp.diet_preference.extend(f.repetitions().filter_map(|r| dt::cwe_table(env, &r, "0114")));
    }
    if let Some(name) = s.c1(39) {
        e.service_provider = w.out.organization(env, Some(name), None);
    }
    if hosp != EncounterHospitalization::default() {
        e.hospitalization = Some(hosp);
    }
    let start = dt::ts(env, s.f(44).map(|f| f.value()), s.place(44)).map(|t| t.value);
    let mut end = dt::ts(env, s.f(45).map(|f| f.value()), s.place(45)).map(|t| t.value);
    let by_trigger = (w.family == Family::Adt).then(|| vocab::event_encounter_status(&w.trigger)).flatten();
    if w.family == Family::Adt && w.trigger == "A13" && end.is_some() {
        s.note(NoteKind::Info, 45, "discharge cancelled (A13): the discharge date is not carried as the encounter end");
        end = None;
    }
    e.status = match by_trigger {
        Some(st) => st,
        None if end.is_some() => "finished",
        None if start.is_some() => "in-progress",
        None => "unknown",
    }
    .into();
    if e.status == "in-progress" || e.status == "planned" {
        // A live encounter has no end yet; a sent end is kept only if the status allows it.
        if end.is_some() && e.status == "planned" {
            s.note(NoteKind::Info, 45, "planned encounter with a discharge date");
        }
    }
    if let (Some(a), Some(b)) = (&start, &end)
        && crate::time::is_after(a, b)
    {
        s.note(NoteKind::InvalidValue, 45, "discharge before admission; the end is not carried");
        end = None;
    }
    if start.is_some() || end.is_some() {
        e.period = Some(Period { start, end });
    }
    let id = if w.out.has(&id) {
        s.note(NoteKind::Info, 19, "visit already in this message; this occurrence keyed by position");
        env.event_id("Encounter", seg.index(), "")
    } else {
        id
    };
    e.id = id.clone();
    let i = w.out.push(Resource::Encounter(Box::new(e)));
    w.encounter = Some((i, w.out.reference_to(i)));
    w.note_target = Some(i);
}

pub(crate) fn pv2<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some((ei, _)) = w.encounter.clone() else { return };
    let s = env.seg(seg);
    let mut reasons = Vec::new();
    if let Some(r) = s.f(3).and_then(|f| f.repetition(1)) {
        reasons.extend(dt::cwe(env, &r));
    }
    if let Resource::Encounter(e) = w.out.get_mut(ei) {
        e.reason_code.extend(reasons);
    }
}
