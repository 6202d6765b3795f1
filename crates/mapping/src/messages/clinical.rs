//! AL1 → AllergyIntolerance, DG1/PRB → Condition, PR1 → Procedure, IN1 → Coverage.

use super::Walk;
use crate::coverage::NoteKind;
use crate::datatypes::{self as dt, comp};
use crate::vocab;
use canonical::model::*;
use hl7v2::Segment;

const ALLERGY_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";

pub(crate) fn al1<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(patient) = w.patient_ref() else { return };
    let s = env.seg(seg);
    s.structural(&[1]);
    let mut a =
        AllergyIntolerance { id: env.event_id("AllergyIntolerance", seg.index(), ""), patient, ..Default::default() };
    a.clinical_status = Some(CodeableConcept::code(ALLERGY_CLINICAL, "active", Some("Active")));
    if let Some(t) = s.c1(2) {
        let (cat, ty) = vocab::allergen_type(&t);
        if cat.is_none() && ty.is_none() {
            s.note(NoteKind::UnknownCode, 2, "allergen type not in HL7 table 0127");
        }
        a.category.extend(cat.map(String::from));
        a.r#type = ty.map(String::from);
    }
    a.code = s.f(3).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe(env, &r));
    let mut severity = None;
    if let Some(sev) = s.c1(4) {
        let (crit, rs) = vocab::allergy_severity(&sev);
        if crit.is_none() {
            s.note(NoteKind::UnknownCode, 4, "allergy severity not in HL7 table 0128");
        }
        a.criticality = crit.map(String::from);
        severity = rs;
    }
    if let Some(f) = s.f(5) {
        let manifestation: Vec<_> = f
            .repetitions()
            .filter_map(|r| {
                // AL1-5 is ST before v2.4, CWE after: plain text stays text, not a fake code.
                if r.component_count() > 1 {
                    dt::cwe(env, &r)
                } else {
                    r.text().map(|t| CodeableConcept::text(t.into_owned()))
                }
            })
            .collect();
        if !manifestation.is_empty() {
            a.reaction.push(AllergyReaction { manifestation, severity: severity.map(String::from) });
        }
    }
    if let Some(t) = dt::ts(env, s.f(6).map(|f| f.value()), s.place(6)) {
        a.onset = Some(Onset::DateTime(t.value));
    }
    if a.code.is_none() {
        a.code = Some(CodeableConcept::text("allergen not specified"));
        s.note(NoteKind::InvalidValue, 3, "allergen code missing");
    }
    w.out.push(Resource::AllergyIntolerance(Box::new(a)));
}

fn condition_base(w: &Walk<'_, '_>, id: String, subject: Reference) -> Condition {
    Condition { id, subject, encounter: w.encounter_ref(), ..Default::default() }
}

pub(crate) fn dg1<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(patient) = w.patient_ref() else { return };
    let s = env.seg(seg);
    s.structural(&[1]);
    let mut c = condition_base(w, env.event_id("Condition", seg.index(), ""), patient);
    c.category.push(CodeableConcept::code(CONDITION_CATEGORY, "encounter-diagnosis", Some("Encounter Diagnosis")));
    c.code = s.f(3).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe(env, &r));
    if let Some(desc) = s.text(4) {
        match &mut c.code {
            Some(cc) if cc.text.is_none() => cc.text = Some(desc),
            Some(_) => {}
            None => c.code = Some(CodeableConcept::text(desc)),
        }
    }
    if let Some(t) = dt::ts(env, s.f(5).map(|f| f.value()), s.place(5)) {
        c.onset = Some(Onset::DateTime(t.value));
    }
    if let Some(r) = s.f(6).and_then(|f| f.repetition(1)) {
        c.category.extend(dt::cwe_table(env, &r, "0052"));
    }
    if let Some(r) = s.f(16).and_then(|f| f.repetition(1)) {
        c.recorder = w.out.practitioner(env, &r);
    }
    if let Some(t) = dt::ts(env, s.f(19).map(|f| f.value()), s.place(19)) {
        c.recorded_date = Some(t.value);
    }
    if let Some(mut id) = s.f(20).and_then(|f| f.repetition(1)).and_then(|r| dt::ei(env, &r)) {
        id.r#use = Some("official".into());
        c.identifier.push(id);
    }
    if c.code.is_none() {
        c.code = Some(CodeableConcept::text("diagnosis not specified"));
        s.note(NoteKind::InvalidValue, 3, "diagnosis code missing");
    }
    w.out.push(Resource::Condition(Box::new(c)));
}

/// PRB (problem, PPR messages) → Condition on the problem list.
pub(crate) fn prb<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(patient) = w.patient_ref() else { return };
    let s = env.seg(seg);
    let mut c = condition_base(w, env.event_id("Condition", seg.index(), ""), patient);
    c.category.push(CodeableConcept::code(CONDITION_CATEGORY, "problem-list-item", Some("Problem List Item")));
    let action = s.c1(1);
    if action.as_deref().is_some_and(|a| !matches!(a, "AD" | "CO" | "DE" | "LI" | "UC" | "UN" | "UP")) {
        s.note(NoteKind::UnknownCode, 1, "action code not in table 0287");
    }
    if let Some(t) = dt::ts(env, s.f(2).map(|f| f.value()), s.place(2)) {
        c.recorded_date = Some(t.value);
    }
    c.code = s.f(3).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe(env, &r));
    if let Some(mut id) = s.f(4).and_then(|f| f.repetition(1)).and_then(|r| dt::ei(env, &r)) {
        id.r#use = Some("official".into());
        c.identifier.push(id);
    }
    if let Some(t) = dt::ts(env, s.f(16).map(|f| f.value()), s.place(16)) {
        c.onset = Some(Onset::DateTime(t.value));
    }
    let (clinical, verification) = match action.as_deref() {
        Some("DE") => (None, Some("entered-in-error")),
        _ => (Some("active"), None),
    };
    c.clinical_status = clinical.map(|cs| CodeableConcept::code(CONDITION_CLINICAL, cs, None));
    c.verification_status = verification
        .map(|v| CodeableConcept::code("http://terminology.hl7.org/CodeSystem/condition-ver-status", v, None));
    if c.code.is_none() {
        c.code = Some(CodeableConcept::text("problem not specified"));
        s.note(NoteKind::InvalidValue, 3, "problem code missing");
    }
    let i = w.out.push(Resource::Condition(Box::new(c)));
    w.note_target = Some(i);
}

pub(crate) fn pr1<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(patient) = w.patient_ref() else { return };
    let s = env.seg(seg);
    s.structural(&[1]);
    let mut p = Procedure {
        id: env.event_id("Procedure", seg.index(), ""),
        subject: patient,
        encounter: w.encounter_ref(),
        status: "completed".into(),
        ..Default::default()
    };
    p.code = s.f(3).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe(env, &r));
    if let Some(desc) = s.text(4) {
        match &mut p.code {
            Some(cc) if cc.text.is_none() => cc.text = Some(desc),
            Some(_) => {}
            None => p.code = Some(CodeableConcept::text(desc)),
        }
    }
    if let Some(t) = dt::ts(env, s.f(5).map(|f| f.value()), s.place(5)) {
        p.performed = Some(Performed::DateTime(t.value));
    }
    for (n, role) in [(8, "ANS"), (11, "SURG"), (12, "ANS")] {
        if let Some(f) = s.f(n) {
            for r in f.repetitions() {
                if let Some(actor) = w.out.practitioner(env, &r) {
                    let function =
                        Some(CodeableConcept::text(if role == "SURG" { "surgeon" } else { "anesthesiologist" }));
                    p.performer.push(ProcedurePerformer { function, actor });
                }
            }
        }
    }
    if let Some(r) = s.f(15).and_then(|f| f.repetition(1)) {
        p.reason_code.extend(dt::cwe(env, &r));
    }
    if let Some(id) = s.f(19).and_then(|f| f.repetition(1)).and_then(|r| dt::ei(env, &r)) {
        p.identifier.push(id);
    }
    let _ = comp;
    w.out.push(Resource::Procedure(Box::new(p)));
}

pub(crate) fn in1<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(patient) = w.patient_ref() else { return };
    let s = env.seg(seg);
    s.structural(&[1]);
    let mut c = Coverage {
        id: env.event_id("Coverage", seg.index(), ""),
        status: "active".into(),
        beneficiary: patient.clone(),
        ..Default::default()
    };
    if let Some(r) = s.f(2).and_then(|f| f.repetition(1))
        && let Some(plan) = comp(&r, 1)
    {
        c.class.push(CoverageClass {
            r#type: CodeableConcept::code("http://terminology.hl7.org/CodeSystem/coverage-class", "plan", Some("Plan")),
            value: plan,
            name: comp(&r, 2),
        });
    }
    let company_id = s.f(3).and_then(|f| f.repetition(1)).and_then(|r| dt::cx(env, &r));
    let company_name = s.f(4).and_then(|f| f.repetition(1)).and_then(|r| comp(&r, 1));
    match w.out.organization(env, company_name, company_id) {
        Some(org) => c.payor.push(org),
        None => {
            c.payor.push(patient.clone());
            s.note(NoteKind::Info, 3, "no insurance company given; the patient is recorded as payor");
        }
    }
    if let Some(group) = s.c1(8) {
        c.class.push(CoverageClass {
            r#type: CodeableConcept::code(
                "http://terminology.hl7.org/CodeSystem/coverage-class",
                "group",
                Some("Group"),
            ),
            value: group,
            name: s.text(9),
        });
    }
    let start = dt::ts(env, s.f(12).map(|f| f.value()), s.place(12)).map(|t| t.date().to_string());
    let end = dt::ts(env, s.f(13).map(|f| f.value()), s.place(13)).map(|t| t.date().to_string());
    if start.is_some() || end.is_some() {
        c.period = Some(Period { start, end });
    }
    if let Some(r) = s.f(15).and_then(|f| f.repetition(1)) {
        c.r#type = dt::cwe_table(env, &r, "0086");
    }
    if let Some(r) = s.f(17).and_then(|f| f.repetition(1)) {
        c.relationship = comp(&r, 1).map(|code| match code.as_str() {
            "SEL" | "01" => CodeableConcept::code(
                "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                "self",
                Some("Self"),
            ),
            "SPO" | "02" => CodeableConcept::code(
                "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                "spouse",
                Some("Spouse"),
            ),
            "CHD" | "03" => CodeableConcept::code(
                "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                "child",
                Some("Child"),
            ),
            "DOM" => CodeableConcept::code(
                "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                "common",
                Some("Common Law Spouse"),
            ),
            _ => dt::cwe_table(env, &r, "0063").unwrap_or_else(|| CodeableConcept::text(code)),
        });
    }
    if let Some(r) = s.f(22).and_then(|f| f.repetition(1)) {
        match comp(&r, 1).map(|n| n.parse::<u32>().ok().filter(|&n| n > 0)) {
            Some(Some(n)) => c.order = Some(n),
            Some(None) => {
                s.note(NoteKind::InvalidValue, 22, "coordination of benefits priority is not a positive number")
            }
            None => {}
        }
    }
    if let Some(policy) = s.c1(36) {
        c.identifier.push(Identifier {
            value: Some(policy),
            r#type: Some(CodeableConcept::code("http://terminology.hl7.org/CodeSystem/v2-0203", "SN", None)),
            ..Default::default()
        });
    }
    if let Some(r) = s.f(49).and_then(|f| f.repetition(1)) {
        c.subscriber_id = comp(&r, 1);
    }
    w.out.push(Resource::Coverage(Box::new(c)));
}
