//! RXE/RXO → MedicationRequest, RXA → Immunization (VXU) or MedicationAdministration (RAS
//! and other pharmacy messages), RXR → route and site of the medication before it.

use super::results::orc_info;
use super::{Family, Walk};
use crate::coverage::NoteKind;
use crate::datatypes::{self as dt, comp};
use crate::vocab;
use canonical::model::*;
use hl7v2::Segment;

/// A number field with a units field → Quantity; a value that is not a number is reported.
fn dose(
    s: &crate::coverage::Seg<'_, '_>,
    n: usize,
    num: Option<String>,
    unit_field: usize,
    w: &Walk<'_, '_>,
) -> Option<Quantity> {
    let unit = s.f(unit_field).and_then(|f| f.repetition(1));
    let u = unit.map(|r| dt::units(w.env, &r)).unwrap_or((None, None, None));
    let Some(num) = num else {
        if unit.is_some() {
            s.note(NoteKind::InvalidValue, unit_field, "units without an amount");
        }
        return None;
    };
    let q = dt::quantity(&num, &u);
    if q.is_none() {
        s.note(NoteKind::InvalidValue, n, "amount is not a number");
        if unit.is_some() {
            s.note(NoteKind::InvalidValue, unit_field, "units of an amount that is not a number");
        }
    }
    q
}

fn med_request<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>, rxe: bool) {
    let env = w.env;
    let Some(subject) = w.patient_ref() else { return };
    let orc = orc_info(w);
    let s = env.seg(seg);
    let mut m = MedicationRequest {
        id: env.event_id("MedicationRequest", seg.index(), ""),
        intent: "order".into(),
        subject,
        encounter: w.encounter_ref(),
        ..Default::default()
    };
    if let Some(o) = orc {
        m.identifier = o.identifiers;
        m.group_identifier = o.requisition;
        m.authored_on = o.authored;
        m.requester = o.requester;
        m.status = match vocab::order_status(o.control.as_deref(), o.status.as_deref()) {
            "revoked" => "cancelled",
            "on-hold" => "on-hold",
            "completed" => "completed",
            "entered-in-error" => "entered-in-error",
            "active" => "active",
            _ => "unknown",
        }
        .into();
    } else {
        m.status = "unknown".into();
    }
    // Field numbers differ between RXE (give) and RXO (requested).
    let (code_f, min_f, max_f, unit_f, form_f, instr_f, disp_f, disp_u_f, refills_f, subst_f) =
        if rxe { (2, 3, 4, 5, 6, 7, 10, 11, 12, 9) } else { (1, 2, 3, 4, 5, 6, 11, 12, 13, 9) };
    let code = s.f(code_f).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe(env, &r));
    match code {
        Some(c) => m.medication = Some(Medication::CodeableConcept(c)),
        None => {
            s.note(NoteKind::InvalidValue, code_f, "medication code missing");
            m.medication = Some(Medication::CodeableConcept(CodeableConcept::text("medication not specified")));
        }
    }
    let lo = dose(&s, min_f, s.c1(min_f), unit_f, w);
    let hi = dose(&s, max_f, s.c1(max_f), unit_f, w).filter(|_| s.c1(max_f).is_some());
    let mut dosage = Dosage::default();
    match (lo, hi) {
        (Some(a), Some(b)) if a.value != b.value => dosage
            .dose_and_rate
            .push(DoseAndRate { dose: Some(DoseValue::Range(Range { low: Some(a), high: Some(b) })) }),
        (Some(a), _) => dosage.dose_and_rate.push(DoseAndRate { dose: Some(DoseValue::Quantity(a)) }),
        _ => {}
    }
    if let Some(r) = s.f(form_f).and_then(|f| f.repetition(1)) {
        dosage.method = dt::cwe(env, &r);
    }
    if let Some(f) = s.f(instr_f) {
        let t: Vec<String> = f
            .repetitions()
            .filter_map(|r| dt::cwe(env, &r))
            .filter_map(|c| {
                c.text.or_else(|| {
                    c.coding.first().and_then(|x| x.display.clone().or(x.code.clone()).map(Text::into_owned))
                })
            })
            .collect();
        if !t.is_empty() {
            dosage.text = Some(t.join("; "));
        }
    }
    if rxe {
        s.partial(1, &[2]);
        if let Some(r) = s.f(1).and_then(|f| f.repetition(1)) {
            // TQ-1: quantity^interval^duration^start — the interval code as timing text.
            if let Some(code) = dt::sub(&r, 2, 1).or_else(|| comp(&r, 2)) {
                dosage.timing = Some(Timing { code: Some(CodeableConcept::text(code)) });
            }
        }
    }
    if dosage != Dosage::default() {
        m.dosage_instruction.push(dosage);
    }
    let mut disp =
        MedicationRequestDispense { quantity: dose(&s, disp_f, s.c1(disp_f), disp_u_f, w), ..Default::default() };
    match s.c1(refills_f).map(|n| n.parse::<u32>()) {
        Some(Ok(n)) => disp.number_of_repeats_allowed = Some(n),
        Some(Err(_)) => s.note(NoteKind::InvalidValue, refills_f, "number of refills is not a number"),
        None => {}
    }
    if disp != MedicationRequestDispense::default() {
        m.dispense_request = Some(disp);
    }
    match s.c1(subst_f).as_deref() {
        Some("N") => m.substitution = Some(MedicationRequestSubstitution { allowed_boolean: Some(false) }),
        Some("G" | "T" | "Y") => m.substitution = Some(MedicationRequestSubstitution { allowed_boolean: Some(true) }),
        Some(_) => s.note(NoteKind::UnknownCode, subst_f, "substitution code not in table 0161"),
        None => {}
    }
    if rxe && let Some(f) = s.f(21) {
        for r in f.repetitions() {
            if let Some(c) = dt::cwe(env, &r) {
                let text = c.text.or_else(|| {
                    c.coding.first().and_then(|x| x.display.clone().or(x.code.clone()).map(Text::into_owned))
                });
                m.note.extend(text.map(|text| Annotation { text, ..Default::default() }));
            }
        }
    }
    let i = w.out.push(Resource::MedicationRequest(Box::new(m)));
    w.medication = Some(i);
    w.request = None;
    w.note_target = Some(i);
}

pub(crate) fn rxe<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    med_request(w, seg, true)
}

pub(crate) fn rxo<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    med_request(w, seg, false)
}

pub(crate) fn rxa<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(patient) = w.patient_ref() else { return };
    let orc = orc_info(w);
    let s = env.seg(seg);
    s.structural(&[1, 2]);
    let start = dt::ts(env, s.f(3).map(|f| f.value()), s.place(3)).map(|t| t.value);
    let end = dt::ts(env, s.f(4).map(|f| f.value()), s.place(4)).map(|t| t.value);
    let code = s.f(5).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe(env, &r)).unwrap_or_else(|| {
        s.note(NoteKind::InvalidValue, 5, "administered code missing");
        CodeableConcept::text("not specified")
    });
    // 999 is the v2 "unknown amount" convention, not a dose.
    let amount = s.c1(6).filter(|a| a != "999");
    let dose_q = dose(&s, 6, amount, 7, w);
    let completion = s.c1(20);
    let action = s.c1(21);
    if action.as_deref().is_some_and(|a| !matches!(a, "A" | "U" | "D")) {
        s.note(NoteKind::UnknownCode, 21, "action code not in table 0206 (A, U, D)");
    }
    let performers: Vec<Reference> =
        s.f(10).map(|f| f.repetitions().filter_map(|r| w.out.practitioner(env, &r)).collect()).unwrap_or_default();
    let mut identifiers = orc.as_ref().map(|o| o.identifiers.clone()).unwrap_or_default();
    // No group identifier on administrations: the placer group number is a secondary identifier.
    identifiers.extend(
        orc.as_ref().and_then(|o| o.requisition.clone()).map(|g| Identifier { r#use: Some("secondary".into()), ..g }),
    );
    let i = if w.family == Family::Vaccination {
        let mut im = Immunization {
            id: env.event_id("Immunization", seg.index(), ""),
            patient,
            encounter: w.encounter_ref(),
            vaccine_code: code,
            identifier: identifiers,
            ..Default::default()
        };
        im.status = match (action.as_deref(), completion.as_deref()) {
            (Some("D"), _) => "entered-in-error",
            (_, Some(c)) => vocab::completion_status(c).unwrap_or_else(|| {
                s.note(NoteKind::UnknownCode, 20, "completion status not in table 0322");
                "completed"
            }),
            _ => "completed",
        }
        .into();
        if end.as_ref().is_some_and(|e| Some(e) != start.as_ref()) {
            s.note(NoteKind::Info, 4, "administration end differs from start; an immunisation has one time");
        }
        im.occurrence = start.map(Occurrence::DateTime);
        if im.occurrence.is_none() {
            s.note(NoteKind::InvalidValue, 3, "administration date missing");
        }
        im.dose_quantity = dose_q;
        if let Some(f) = s.f(9) {
            for r in f.repetitions() {
                match comp(&r, 1).as_deref() {
                    Some("00") => im.primary_source = Some(true),
                    Some(c) if c.starts_with('0') => {
                        im.primary_source = Some(false);
                        im.report_origin = dt::cwe(env, &r).or_else(|| Some(CodeableConcept::text(c.to_string())));
                    }
                    _ => {
                        if let Some(t) = dt::cwe(env, &r) {
                            let text = t.text.or_else(|| {
                                t.coding
                                    .first()
                                    .and_then(|x| x.display.clone().or(x.code.clone()).map(Text::into_owned))
                            });
                            im.note.extend(text.map(|text| Annotation { text, ..Default::default() }));
                        }
                    }
                }
            }
        }
        im.performer = performers
            .into_iter()
            .map(|actor| ImmunizationPerformer {
                function: Some(CodeableConcept::code(
                    "http://terminology.hl7.org/CodeSystem/v2-0443",
                    "AP",
                    Some("Administering Provider"),
                )),
                actor,
            })
            .collect();
        if let Some(f) = s.f(11) {
            // LA2 has PL's layout for its first components (point of care, room, bed, facility).
            im.location = w.out.location(env, &f);
        }
        im.lot_number = s.c1(15);
        im.expiration_date = dt::ts(env, s.f(16).map(|f| f.value()), s.place(16)).map(|t| t.date().to_string());
        if let Some(r) = s.f(17).and_then(|f| f.repetition(1)) {
            let ident = comp(&r, 1).map(|c| Identifier {
                system: comp(&r, 3).map(|sys| dt::code_system(env, &sys)),
                value: Some(c),
                ..Default::default()
            });
            im.manufacturer = w.out.organization(env, comp(&r, 2), ident);
        }
        if let Some(r) = s.f(18).and_then(|f| f.repetition(1)) {
            im.status_reason = dt::cwe(env, &r);
        }
        if let Some(t) = dt::ts(env, s.f(22).map(|f| f.value()), s.place(22)) {
            im.recorded = Some(t.value);
        }
        if let Some(f) = s.f(19) {
            im.reason_code.extend(f.repetitions().filter_map(|r| dt::cwe(env, &r)));
        }
        w.out.push(Resource::Immunization(Box::new(im)))
    } else {
        let mut ma = MedicationAdministration {
            id: env.event_id("MedicationAdministration", seg.index(), ""),
            subject: patient,
            context: w.encounter_ref(),
            medication: Some(Medication::CodeableConcept(code)),
            identifier: identifiers,
            ..Default::default()
        };
        ma.status = match (action.as_deref(), completion.as_deref()) {
            (Some("D"), _) => "entered-in-error",
            (_, Some("CP")) | (_, None) => "completed",
            (_, Some("RE" | "NA")) => "not-done",
            (_, Some("PA")) => "in-progress",
            (_, Some(_)) => {
                s.note(NoteKind::UnknownCode, 20, "completion status not in table 0322");
                "unknown"
            }
        }
        .into();
        ma.effective = match (start, end) {
            (Some(a), Some(b)) if a != b => {
                Some(AdministrationEffective::Period(Period { start: Some(a), end: Some(b) }))
            }
            (Some(a), _) => Some(AdministrationEffective::DateTime(a)),
            (None, Some(b)) => Some(AdministrationEffective::DateTime(b)),
            (None, None) => {
                s.note(NoteKind::InvalidValue, 3, "administration date missing");
                None
            }
        };
        ma.performer = performers.into_iter().map(|actor| MedicationAdministrationPerformer { actor }).collect();
        if dose_q.is_some() {
            ma.dosage = Some(MedicationAdministrationDosage { dose: dose_q, ..Default::default() });
        }
        if let Some(r) = s.f(18).and_then(|f| f.repetition(1)) {
            ma.status_reason.extend(dt::cwe(env, &r));
        }
        if let Some(prev) = w.medication
            && let Resource::MedicationRequest(mr) = &w.out.resources[prev]
        {
            ma.request = Some(crate::context::reference(&mr.id));
        }
        w.out.push(Resource::MedicationAdministration(Box::new(ma)))
    };
    w.medication = Some(i);
    w.request = None;
    w.note_target = Some(i);
}

pub(crate) fn rxr<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(mi) = w.medication else { return };
    let s = env.seg(seg);
    let route = s.f(1).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe_table(env, &r, "0162"));
    let site = s.f(2).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe_table(env, &r, "0163"));
    // One route and site per administration: a further RXR is reported, never overwrites.
    let mut clash = false;
    let mut set = |r: &mut Option<CodeableConcept>, st: &mut Option<CodeableConcept>| {
        if (route.is_some() && r.is_some()) || (site.is_some() && st.is_some()) {
            clash = true;
            return;
        }
        if route.is_some() {
            *r = route.clone();
        }
        if site.is_some() {
            *st = site.clone();
        }
    };
    match w.out.get_mut(mi) {
        Resource::Immunization(im) => set(&mut im.route, &mut im.site),
        Resource::MedicationAdministration(ma) => {
            let d = ma.dosage.get_or_insert_with(Default::default);
            set(&mut d.route, &mut d.site);
        }
        Resource::MedicationRequest(mr) => {
            // Each further RXR on an order is an alternative route: its own dosage line.
            let has_route = mr.dosage_instruction.iter().any(|d| d.route.is_some() || d.site.is_some());
            if mr.dosage_instruction.is_empty() || has_route {
                mr.dosage_instruction.push(Dosage::default());
            }
            let d = mr.dosage_instruction.last_mut().expect("just ensured");
            d.route = route.clone();
            d.site = site.clone();
        }
        _ => {}
    }
    if clash {
        s.note_segment(NoteKind::Info, "a further route/site for the same administration: not carried");
    }
}
