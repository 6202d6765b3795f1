//! PRT (participation, v2.7+) and ROL (role, before v2.7) → the participant of the resource it follows: an Encounter
//! participant after PV1, the requester or performer of an order after ORC/OBR, a performer
//! of an Observation or Immunization, the general practitioner after PID/PD1.
//!
//! A participation with no FHIR home in its context (e.g. "result copies to" on an order, an
//! organisation as encounter participant) is left unmapped and so reported.

use super::Walk;
use crate::datatypes::{self as dt, comp};
use canonical::model::*;
use hl7v2::Segment;

pub(crate) fn prt<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(ti) = w.note_target.or(w.encounter.as_ref().map(|e| e.0)).or(w.patient.as_ref().map(|p| p.0)) else {
        return;
    };
    let Some(raw_role) = seg.field(4).and_then(|f| f.repetition(1)).filter(|r| !r.is_empty()) else { return };
    let role_code = comp(&raw_role, 1).unwrap_or_default();
    let has_person = seg.field(5).is_some_and(|f| !f.is_empty());
    let has_org = seg.field(8).is_some_and(|f| !f.is_empty());
    // Decide the home before reading (reading marks fields as mapped).
    let kind = w.out.resources[ti].resource_type();
    let home = match (kind, role_code.as_str()) {
        ("Encounter", _) if has_person => true,
        ("ServiceRequest", "OP" | "PH") => has_person || has_org,
        // Where the role is implied by the element (performer), only performing roles fit.
        ("Observation" | "DiagnosticReport", "PH" | "RO") => has_person || has_org,
        ("Immunization", r) if r != "RCT" => has_person || has_org,
        ("Patient", "PP") => has_person || has_org,
        _ => false,
    };
    // A delete of a participation cannot be expressed by adding one: left unmapped.
    let deletes = seg.field(2).is_some_and(|f| f.as_str() == "DE");
    if !home || deletes {
        return;
    }
    let s = env.seg(seg);
    s.structural(&[1]);
    action_code(&s); // AD/UP/CO (add, update, correct): the participation is present
    let role = s.f(4).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe_table(env, &r, "0912"));
    let actor = match s.f(5).and_then(|f| f.repetition(1)) {
        Some(r) => w.out.practitioner(env, &r),
        None => s.f(8).and_then(|f| f.repetition(1)).and_then(|r| {
            let ident = comp(&r, 10).map(|v| Identifier { value: Some(v), ..Default::default() });
            w.out.organization(env, comp(&r, 1), ident)
        }),
    };
    let Some(actor) = actor else { return };
    let start = dt::ts(env, s.f(11).map(|f| f.value()), s.place(11)).map(|t| t.value);
    let end = dt::ts(env, s.f(12).map(|f| f.value()), s.place(12)).map(|t| t.value);
    let period = (start.is_some() || end.is_some()).then_some(Period { start, end });
    match w.out.get_mut(ti) {
        Resource::Encounter(e) => e.participant.push(EncounterParticipant {
            r#type: role.into_iter().collect(),
            period,
            individual: Some(actor),
        }),
        Resource::ServiceRequest(sr) => match (role_code.as_str(), &sr.requester) {
            ("OP", None) => sr.requester = Some(actor),
            ("OP", Some(r)) if r.reference == actor.reference => {}
            ("OP", Some(_)) => {
                s.note(crate::coverage::NoteKind::Info, 5, "a second ordering provider; the order has one requester")
            }
            _ => sr.performer.push(actor),
        },
        Resource::Observation(o) => o.performer.push(actor),
        Resource::DiagnosticReport(d) => d.performer.push(actor),
        Resource::Immunization(i) => i.performer.push(ImmunizationPerformer { function: role, actor }),
        Resource::Patient(p) => p.general_practitioner.push(actor),
        _ => {}
    }
}

/// Field 2, the action code (table 0287), consumed: it says the participation is present. A
/// code outside the table is reported (it is not carried anywhere).
fn action_code(s: &crate::coverage::Seg<'_, '_>) {
    if let Some(code) = s.c1_ref(2)
        && !matches!(&*code, "AD" | "CO" | "DE" | "LI" | "UC" | "UN" | "UP")
    {
        s.note(crate::coverage::NoteKind::UnknownCode, 2, "action code not in HL7 table 0287");
    }
}

/// ROL (v2.3–2.6): a primary care provider after PID/PD1 → `Patient.generalPractitioner`; any
/// role after PV1 → an Encounter participant of that type. Other contexts stay unmapped.
pub(crate) fn rol<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(ti) = w.note_target.or(w.encounter.as_ref().map(|e| e.0)).or(w.patient.as_ref().map(|p| p.0)) else {
        return;
    };
    let role_code = seg.field(3).and_then(|f| f.component(1)).map(|c| c.as_str().to_string()).unwrap_or_default();
    let has_person = seg.field(4).is_some_and(|f| !f.is_empty());
    let deletes = seg.field(2).is_some_and(|f| f.as_str() == "DE");
    let home = match w.out.resources[ti].resource_type() {
        "Encounter" => has_person,
        "Patient" => has_person && matches!(role_code.as_str(), "PP" | "FHCP"),
        _ => false,
    };
    if !home || deletes {
        return;
    }
    let s = env.seg(seg);
    s.structural(&[1]); // role instance id: numbers the ROL itself, not the person
    action_code(&s); // AD/UP/CO: the role is present
    let role = s.f(3).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe_table(env, &r, "0443"));
    let mut actors = Vec::new();
    if let Some(f) = s.f(4) {
        for r in f.repetitions() {
            actors.extend(w.out.practitioner(env, &r));
        }
    }
    let start = dt::ts(env, s.f(5).map(|f| f.value()), s.place(5)).map(|t| t.value);
    let end = dt::ts(env, s.f(6).map(|f| f.value()), s.place(6)).map(|t| t.value);
    let period = (start.is_some() || end.is_some()).then_some(Period { start, end });
    match w.out.get_mut(ti) {
        Resource::Encounter(e) => {
            for a in actors {
                e.participant.push(EncounterParticipant {
                    r#type: role.clone().into_iter().collect(),
                    period: period.clone(),
                    individual: Some(a),
                });
            }
        }
        Resource::Patient(p) => {
            if let Some(p) = &period {
                for (n, v) in [(5, &p.start), (6, &p.end)] {
                    if v.is_some() {
                        s.note(
                            crate::coverage::NoteKind::Info,
                            n,
                            "role period not carried on the general practitioner",
                        );
                    }
                }
            }
            p.general_practitioner.extend(actors);
        }
        _ => {}
    }
}
