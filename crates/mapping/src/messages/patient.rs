//! PID, PD1, NK1 and MRG: the patient, the next of kin, and merges (A34/A39/A40 …).
//!
//! The Patient id comes from the patient's identifier (MR first) and its assigning authority,
//! so every message about the same person lands on the same resource. A merge yields two
//! Patients: the retired one (`active: false`, `link` replaced-by the survivor) and the
//! surviving one (`link` replaces the retired one), as the IG maps MRG.

use super::Walk;
use crate::context::{Env, reference};
use crate::coverage::NoteKind;
use crate::datatypes::{self as dt, comp, sub};
use crate::identity;
use crate::vocab;
use canonical::model::*;
use hl7v2::{Field, Segment};

const BIRTH_TIME: &str = "http://hl7.org/fhir/StructureDefinition/patient-birthTime";
const MOTHERS_MAIDEN: &str = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName";
const RELIGION: &str = "http://hl7.org/fhir/StructureDefinition/patient-religion";
/// PID-10 and PID-22. The IG maps them to the realm's extension ("local implementation"; US
/// Core race/ethnicity in the US). US Core's are complex extensions (nested `extension`),
/// which the canonical model cannot carry yet, so each repetition goes, whole, into an
/// Arteria extension with a CodeableConcept value: nothing of the coding is lost.
const RACE: &str = "urn:arteria:fhir:StructureDefinition:patient-race";
const ETHNIC_GROUP: &str = "urn:arteria:fhir:StructureDefinition:patient-ethnic-group";
/// CDC Race & Ethnicity code set (PHIN VADS), the code system of the US values of HL7 tables
/// 0005 and 0189 and of US Core's OMB categories.
const CDC_RACE_ETHNICITY: &str = "urn:oid:2.16.840.1.113883.6.238";

/// A race or ethnic group CWE (table 0005 / 0189) → CodeableConcept. Codes of the CDC form
/// `NNNN-N` labelled with the HL7 table or CDCREC are CDC Race & Ethnicity codes; other codes
/// without a known system stay in the sender's local system (never passed off as HL7's).
fn race_or_ethnicity(env: &Env<'_>, r: &hl7v2::Repetition<'_>, table: &str) -> Option<CodeableConcept> {
    let mut cc = dt::cwe(env, r)?;
    let hl7_table = vocab::v2_table(table);
    for c in &mut cc.coding {
        let cdc_shaped = c.code.as_deref().is_some_and(|code| {
            let b = code.as_bytes();
            b.len() == 6 && b[4] == b'-' && b.iter().enumerate().all(|(i, d)| i == 4 || d.is_ascii_digit())
        });
        // No system named, or the HL7 table named: the IG has no code system for these
        // user-defined tables, so CDC-shaped codes are CDC's and anything else is local.
        if c.system.is_none() || c.system.as_deref() == Some(hl7_table.as_str()) {
            c.system = Some(if cdc_shaped {
                CDC_RACE_ETHNICITY.into()
            } else {
                dt::local_system(env, &format!("HL7{table}"))
            });
        }
    }
    Some(cc)
}

/// The Patient id for an identifier list: the MR identifier if any, else the first.
fn patient_id(env: &Env<'_>, list: &Field<'_>) -> Option<String> {
    patient_key(env, &identifiers(env, list))
}

/// The Patient id for identifiers mapped from a CX list (one per repetition with an id, in
/// order): the one typed MR (CX-5) if any, else the first.
fn patient_key(env: &Env<'_>, ids: &[Identifier]) -> Option<String> {
    let mr = |i: &&Identifier| {
        i.r#type.as_ref().and_then(|t| t.coding.first()).is_some_and(|c| c.code.as_deref() == Some("MR"))
    };
    let id = ids.iter().find(mr).or(ids.first())?;
    // Without an assigning authority a number is only unique at its sender: scope it, so
    // MRN 123 from two senders never becomes one patient.
    let scope = match &id.system {
        Some(s) => s.clone(),
        None => format!("sender:{}", env.sender_key).into(),
    };
    Some(identity::id(env.tenant, "Patient", &[&scope, id.value.as_deref().unwrap_or("")]))
}

fn identifiers(env: &Env<'_>, f: &Field<'_>) -> Vec<Identifier> {
    f.repetitions().filter_map(|r| dt::cx(env, &r)).collect()
}

const MARITAL_V3: &[&str] = &["A", "D", "I", "L", "M", "P", "S", "T", "U", "W", "C"];

pub(crate) fn pid<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let s = env.seg(seg);
    s.structural(&[1]);
    let mut p = Patient::default();
    // PID-3 mapped once, for the key and the identifiers.
    let ids3 = s.f(3).map(|f| identifiers(env, &f)).unwrap_or_default();
    let id = patient_key(env, &ids3)
        .or_else(|| s.f(2).and_then(|f| patient_id(env, &f)))
        .or_else(|| s.f(4).and_then(|f| patient_id(env, &f)))
        .unwrap_or_else(|| env.event_id("Patient", seg.index(), ""));
    p.identifier = ids3;
    for n in [2, 4] {
        if let Some(f) = s.f(n) {
            p.identifier.extend(identifiers(env, &f));
        }
    }
    if let Some(f) = s.f(5) {
        p.name.extend(f.repetitions().filter_map(|r| dt::xpn(&r)));
    }
    if let Some(mm) = s.f(6).and_then(|f| f.repetition(1)).and_then(|r| sub(&r, 1, 1)) {
        p.extension.push(Extension::string(MOTHERS_MAIDEN, mm));
    }
    if let Some(t) = dt::ts(env, s.f(7).map(|f| f.value()), s.place(7)) {
        p.birth_date = Some(t.date().to_string());
        if t.precision >= crate::time::Precision::Hour {
            // The birth time extension belongs on the birthDate element itself.
            p.birth_date_element = Some(PrimitiveExtensions {
                extension: vec![Extension { url: BIRTH_TIME.into(), value: ExtensionValue::DateTime(t.value) }],
            });
        }
    }
    if let Some(sex) = s.c1(8) {
        match vocab::administrative_sex(&sex) {
            Some(g) => p.gender = Some(g.into()),
            None => s.note(NoteKind::UnknownCode, 8, "administrative sex not in HL7 table 0001"),
        }
    }
    if let Some(f) = s.f(9) {
        p.name.extend(f.repetitions().filter_map(|r| dt::xpn(&r)).map(|mut n| {
            n.r#use.get_or_insert_with(|| "nickname".into());
            n
        }));
    }
    for (n, table, url) in [(10, "0005", RACE), (22, "0189", ETHNIC_GROUP)] {
        if let Some(f) = s.f(n) {
            for cc in f.repetitions().filter_map(|r| race_or_ethnicity(env, &r, table)) {
                p.extension.push(Extension { url: url.into(), value: ExtensionValue::CodeableConcept(cc) });
            }
        }
    }
    if let Some(f) = s.f(11) {
        p.address.extend(f.repetitions().filter_map(|r| dt::xad(&r)));
    }
    for (n, default_use) in [(13, "home"), (14, "work")] {
        if let Some(f) = s.f(n) {
            p.telecom.extend(f.repetitions().filter_map(|r| dt::xtn(&r)).map(|mut c| {
                c.r#use.get_or_insert_with(|| default_use.into());
                c
            }));
        }
    }
    if let Some(lang) = s.f(15).and_then(|f| f.repetition(1)).and_then(|r| dt::language(env, &r)) {
        p.communication.push(PatientCommunication { language: lang, preferred: Some(true) });
    }
    if let Some(r) = s.f(16).and_then(|f| f.repetition(1)) {
        if let Some(code) = comp(&r, 1).filter(|c| MARITAL_V3.contains(&c.as_str()) && comp(&r, 3).is_none()) {
            p.marital_status = Some(CodeableConcept {
                coding: vec![Coding {
                    system: Some("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus".into()),
                    code: Some(code.into()),
                    display: comp(&r, 2).map(Text::from),
                    ..Default::default()
                }],
                text: None,
            });
        } else {
            p.marital_status = dt::cwe_table(env, &r, "0002");
        }
    }
    if let Some(rel) = s.f(17).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe_table(env, &r, "0006")) {
        p.extension.push(Extension { url: RELIGION.into(), value: ExtensionValue::CodeableConcept(rel) });
    }
    if let Some(mut an) = s.f(18).and_then(|f| f.repetition(1)).and_then(|r| dt::cx(env, &r)) {
        an.r#type
            .get_or_insert_with(|| CodeableConcept::code("http://terminology.hl7.org/CodeSystem/v2-0203", "AN", None));
        p.identifier.push(an);
    }
    if let Some(ssn) = s.c1(19) {
        p.identifier.push(Identifier {
            r#type: Some(CodeableConcept::code("http://terminology.hl7.org/CodeSystem/v2-0203", "SS", None)),
            system: Some("http://hl7.org/fhir/sid/us-ssn".into()),
            value: Some(ssn),
            ..Default::default()
        });
    }
    if let Some(r) = s.f(20).and_then(|f| f.repetition(1))
        && let Some(v) = comp(&r, 1)
    {
        let system = comp(&r, 2).map(|st| format!("urn:arteria:v2:drivers-license:{}", dt::urn_part(&st)).into());
        p.identifier.push(Identifier {
            r#type: Some(CodeableConcept::code("http://terminology.hl7.org/CodeSystem/v2-0203", "DL", None)),
            system,
            value: Some(v),
            ..Default::default()
        });
    }
    let birth_order = s.c1(25);
    if birth_order.as_deref().is_some_and(|b| b.parse::<i64>().is_err()) {
        s.note(NoteKind::InvalidValue, 25, "birth order is not a number");
    }
    match (s.c1(24).as_deref(), birth_order.as_deref().and_then(|b| b.parse::<i64>().ok())) {
        (_, Some(n)) => p.multiple_birth = Some(MultipleBirth::Integer(n)),
        (Some("Y"), None) => p.multiple_birth = Some(MultipleBirth::Boolean(true)),
        (Some("N"), None) => p.multiple_birth = Some(MultipleBirth::Boolean(false)),
        (Some(_), None) => s.note(NoteKind::UnknownCode, 24, "multiple birth indicator not Y/N"),
        (None, None) => {}
    }
    if let Some(t) = dt::ts(env, s.f(29).map(|f| f.value()), s.place(29)) {
        p.deceased = Some(Deceased::DateTime(t.value));
    } else if let Some(d) = s.c1(30) {
        match d.as_str() {
            "Y" => p.deceased = Some(Deceased::Boolean(true)),
            "N" => p.deceased = Some(Deceased::Boolean(false)),
            _ => s.note(NoteKind::UnknownCode, 30, "death indicator not Y/N"),
        }
    }
    // The same person twice in one message (repeated PID): ids must stay unique in the
    // bundle, so the second occurrence is keyed by its position — reported, not merged.
    let id = if w.out.has(&id) {
        s.note(NoteKind::Info, 3, "patient already in this message; this occurrence keyed by position");
        env.event_id("Patient", seg.index(), "")
    } else {
        id
    };
    p.id = id.clone();
    let i = w.out.push(Resource::Patient(Box::new(p)));
    w.patient = Some((i, w.out.reference_to(i)));
    // A new patient group starts: earlier visit, order and request groups are closed.
    w.encounter = None;
    w.order = None;
    w.request = None;
    w.note_target = Some(i);
}

pub(crate) fn pd1<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some((pi, _)) = w.patient.clone() else { return };
    let s = env.seg(seg);
    let mut gps = Vec::new();
    if let Some(f) = s.f(3) {
        for r in f.repetitions() {
            let ident = comp(&r, 10).map(|v| Identifier {
                system: dt::hd_system(
                    env,
                    sub(&r, 6, 1).as_deref(),
                    sub(&r, 6, 2).as_deref(),
                    sub(&r, 6, 3).as_deref(),
                ),
                value: Some(v),
                ..Default::default()
            });
            gps.extend(w.out.organization(env, comp(&r, 1), ident));
        }
    }
    if let Some(f) = s.f(4) {
        for r in f.repetitions() {
            gps.extend(w.out.practitioner(env, &r));
        }
    }
    if let Resource::Patient(p) = w.out.get_mut(pi) {
        p.general_practitioner.extend(gps);
    }
}

pub(crate) fn nk1<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(patient) = w.patient_ref() else { return };
    let s = env.seg(seg);
    s.structural(&[1]);
    let mut rp = RelatedPerson { id: env.event_id("RelatedPerson", seg.index(), ""), patient, ..Default::default() };
    if let Some(f) = s.f(2) {
        rp.name.extend(f.repetitions().filter_map(|r| dt::xpn(&r)));
    }
    if let Some(r) = s.f(3).and_then(|f| f.repetition(1)) {
        rp.relationship.extend(dt::cwe_table(env, &r, "0063"));
    }
    if let Some(f) = s.f(4) {
        rp.address.extend(f.repetitions().filter_map(|r| dt::xad(&r)));
    }
    for (n, default_use) in [(5, "home"), (6, "work"), (40, "work")] {
        if let Some(f) = s.f(n) {
            rp.telecom.extend(f.repetitions().filter_map(|r| dt::xtn(&r)).map(|mut c| {
                c.r#use.get_or_insert_with(|| default_use.into());
                c
            }));
        }
    }
    if let Some(r) = s.f(7).and_then(|f| f.repetition(1)) {
        rp.relationship.extend(dt::cwe_table(env, &r, "0131"));
    }
    let start = dt::ts(env, s.f(8).map(|f| f.value()), s.place(8)).map(|t| t.value);
    let end = dt::ts(env, s.f(9).map(|f| f.value()), s.place(9)).map(|t| t.value);
    if start.is_some() || end.is_some() {
        rp.period = Some(Period { start, end });
    }
    if let Some(sex) = s.c1(15) {
        match vocab::administrative_sex(&sex) {
            Some(g) => rp.gender = Some(g.into()),
            None => s.note(NoteKind::UnknownCode, 15, "administrative sex not in HL7 table 0001"),
        }
    }
    if let Some(t) = dt::ts(env, s.f(16).map(|f| f.value()), s.place(16)) {
        rp.birth_date = Some(t.date().to_string());
    }
    if let Some(f) = s.f(33) {
        rp.identifier.extend(identifiers(env, &f));
    }
    if rp.name.is_empty()
        && rp.relationship.is_empty()
        && rp.identifier.is_empty()
        && rp.telecom.is_empty()
        && rp.address.is_empty()
    {
        // Nothing identifies this person: the fields read are reported, not an empty resource.
        s.note_segment(
            NoteKind::InvalidValue,
            "next of kin without name, relationship, contact or identifier: not mapped",
        );
        return;
    }
    w.out.push(Resource::RelatedPerson(Box::new(rp)));
}

pub(crate) fn mrg<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some((survivor_i, survivor_ref)) = w.patient.clone() else { return };
    let s = env.seg(seg);
    let list = s.f(1).or_else(|| s.f(4));
    let Some(list) = list else {
        s.note(NoteKind::InvalidValue, 1, "merge without a prior patient identifier");
        return;
    };
    let Some(old_id) = patient_id(env, &list) else {
        s.note_segment(NoteKind::InvalidValue, "merge without a prior patient identifier value: not mapped");
        return;
    };
    let old_id = if w.out.has(&old_id) { env.event_id("Patient", seg.index(), "merged") } else { old_id };
    let mut old = Patient {
        id: old_id.clone(),
        identifier: identifiers(env, &list),
        active: Some(false),
        link: vec![PatientLink { other: survivor_ref.clone(), r#type: "replaced-by".into() }],
        ..Default::default()
    };
    if let Some(f) = s.f(7) {
        old.name.extend(f.repetitions().filter_map(|r| dt::xpn(&r)));
    }
    if let Some(f) = s.f(4) {
        for id in identifiers(env, &f) {
            if !old.identifier.contains(&id) {
                old.identifier.push(id);
            }
        }
    }
    if let Some(mut an) = s.f(3).and_then(|f| f.repetition(1)).and_then(|r| dt::cx(env, &r)) {
        an.r#type
            .get_or_insert_with(|| CodeableConcept::code("http://terminology.hl7.org/CodeSystem/v2-0203", "AN", None));
        old.identifier.push(an);
    }
    if old_id == survivor_ref.reference.as_deref().unwrap_or("").trim_start_matches("urn:uuid:") {
        s.note(NoteKind::InvalidValue, 1, "merge source and survivor are the same patient");
        return;
    }
    if let Resource::Patient(p) = w.out.get_mut(survivor_i) {
        p.link.push(PatientLink { other: reference(&old_id), r#type: "replaces".into() });
    }
    w.out.push(Resource::Patient(Box::new(old)));
}
