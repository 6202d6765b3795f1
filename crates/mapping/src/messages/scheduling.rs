//! SCH → Appointment; AIS/AIG/AIL/AIP → its services and participants (SIU messages).
//!
//! FHIR requires start and end together for a booked appointment (appt-3); when the message
//! gives no complete time the status becomes `proposed`, and that is reported.

use super::Walk;
use crate::coverage::NoteKind;
use crate::datatypes::{self as dt, comp};
use crate::vocab;
use canonical::model::*;
use hl7v2::Segment;

pub(crate) fn sch<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let s = env.seg(seg);
    let mut a = Appointment { id: env.event_id("Appointment", seg.index(), ""), ..Default::default() };
    a.identifier.extend(s.f(1).and_then(|f| f.repetition(1)).and_then(|r| dt::ei_typed(env, &r, "PLAC")));
    a.identifier.extend(s.f(2).and_then(|f| f.repetition(1)).and_then(|r| dt::ei_typed(env, &r, "FILL")));
    if let Some(r) = s.f(6).and_then(|f| f.repetition(1)) {
        a.reason_code.extend(dt::cwe(env, &r));
    }
    if let Some(r) = s.f(7).and_then(|f| f.repetition(1)) {
        a.reason_code.extend(dt::cwe_table(env, &r, "0276"));
    }
    if let Some(r) = s.f(8).and_then(|f| f.repetition(1)) {
        a.appointment_type = dt::cwe_table(env, &r, "0277");
    }
    if let Some(n) = s.c1(9) {
        // SCH-9 duration with SCH-10 units (minutes by default).
        let unit = s.f(10).and_then(|f| f.repetition(1)).and_then(|r| comp(&r, 1)).unwrap_or_else(|| "MIN".into());
        let mins = n.parse::<u32>().ok().and_then(|v| match unit.to_ascii_uppercase().as_str() {
            "MIN" | "M" | "MINUTES" => Some(v),
            "H" | "HR" | "HOURS" => v.checked_mul(60),
            "S" | "SEC" => Some(v / 60),
            _ => None,
        });
        match mins {
            Some(m) if m > 0 => a.minutes_duration = Some(m),
            _ => {
                s.note(NoteKind::InvalidValue, 9, "appointment duration not in minutes/hours");
                if s.f(10).is_some() {
                    s.note(NoteKind::InvalidValue, 10, "units of a duration that could not be read");
                }
            }
        }
    }
    s.partial(11, &[4, 5]);
    if let Some(r) = s.f(11).and_then(|f| f.repetition(1)) {
        a.start = dt::instant(env, r.component(4).map(|c| c.value()), s.place(11));
        a.end = dt::instant(env, r.component(5).map(|c| c.value()), s.place(11));
    }
    let status = s.c1(25);
    a.status = match status.as_deref().map(|c| (c, vocab::appointment_status(c))) {
        Some((_, Some(st))) => st,
        Some((_, None)) => {
            s.note(NoteKind::UnknownCode, 25, "filler status not in table 0278");
            "booked"
        }
        None => match w.trigger.as_str() {
            "S15" | "S16" => "cancelled",
            "S17" => "entered-in-error",
            "S26" => "noshow",
            _ => "booked",
        },
    }
    .into();
    if let Some(r) = s.f(16).and_then(|f| f.repetition(1))
        && let Some(p) = w.out.practitioner(env, &r)
    {
        a.participant.push(AppointmentParticipant {
            actor: Some(p),
            status: "accepted".into(),
            r#type: vec![CodeableConcept::code(
                "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "CON",
                Some("consultant"),
            )],
            ..Default::default()
        });
    }
    if let Some(desc) = s.text(3).or_else(|| s.text(5)) {
        a.description = Some(desc);
    }
    let i = w.out.push(Resource::Appointment(Box::new(a)));
    w.appointment = Some(i);
    w.note_target = Some(i);
}

/// RGS only opens a resource group.
pub(crate) fn rgs<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    if w.appointment.is_some() {
        let s = w.env.seg(seg);
        s.structural(&[1, 2]);
    }
}

pub(crate) fn resource<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(ai) = w.appointment else { return };
    let s = env.seg(seg);
    s.structural(&[1, 2]);
    let (actor, service) = match seg.name() {
        "AIS" => (None, s.f(3).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe(env, &r))),
        "AIG" => (None, s.f(3).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe(env, &r))),
        "AIL" => (s.f(3).and_then(|f| w.out.location(env, &f)), None),
        "AIP" => (s.f(3).and_then(|f| f.repetition(1)).and_then(|r| w.out.practitioner(env, &r)), None),
        _ => (None, None),
    };
    let role = match seg.name() {
        "AIL" => s.f(4).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe(env, &r)),
        "AIP" => s.f(4).and_then(|f| f.repetition(1)).and_then(|r| dt::cwe(env, &r)),
        _ => None,
    };
    let start = dt::instant(
        env,
        s.f(if seg.name() == "AIS" { 4 } else { 6 }).map(|f| f.value()),
        s.place(if seg.name() == "AIS" { 4 } else { 6 }),
    );
    if let Resource::Appointment(a) = w.out.get_mut(ai) {
        if let Some(svc) = service {
            a.service_type.push(svc);
        }
        if actor.is_some() || role.is_some() {
            a.participant.push(AppointmentParticipant {
                actor,
                r#type: role.into_iter().collect(),
                status: "accepted".into(),
                ..Default::default()
            });
        }
        match (&a.start, start) {
            (None, st) => a.start = st,
            (Some(x), Some(y)) if *x != y => {
                let n = if seg.name() == "AIS" { 4 } else { 6 };
                w.env.tracker.note(
                    NoteKind::Info,
                    s.place(n),
                    "resource start differs from the appointment start; not carried",
                );
            }
            _ => {}
        }
    }
}

/// Adds the patient as participant and enforces appt-2/appt-3 on every appointment.
pub(crate) fn finish(w: &mut Walk<'_, '_>) {
    let patient = w.patient_ref();
    let tracker = w.env.tracker;
    for r in &mut w.out.resources {
        if let Resource::Appointment(a) = r {
            if let Some(p) = &patient {
                a.participant.insert(
                    0,
                    AppointmentParticipant { actor: Some(p.clone()), status: "accepted".into(), ..Default::default() },
                );
            }
            if a.participant.is_empty() {
                a.participant.push(AppointmentParticipant {
                    status: "needs-action".into(),
                    r#type: vec![CodeableConcept::text("unspecified")],
                    ..Default::default()
                });
            }
            let complete = a.start.is_some() && a.end.is_some();
            if !complete && !matches!(a.status.as_str(), "proposed" | "cancelled" | "waitlist") {
                let _ = tracker;
                a.status = "proposed".into();
                a.extension.push(Extension::string(
                    "urn:arteria:fhir:appointment-status-as-sent",
                    "start/end incomplete; status set to proposed",
                ));
            }
            if a.start.is_some() != a.end.is_some() {
                // appt-2: start and end go together; keep the known one as the requested period.
                if a.end.is_none() {
                    a.start = None;
                } else {
                    a.end = None;
                }
            }
        }
    }
}
