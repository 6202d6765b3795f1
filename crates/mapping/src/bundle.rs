//! MSH and EVN → MessageHeader and Provenance, and the message Bundle that carries a
//! conversion (MessageHeader first, as the IG maps MSH; every entry `urn:uuid:<id>` so that
//! references resolve inside the bundle).

use crate::context::{Env, Out, reference};
use crate::coverage::NoteKind;
use crate::datatypes::{self as dt, comp};
use canonical::model::*;
use hl7v2::Message;

const EVENT_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v2-0003";
const MESSAGE_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v2-0076";
const PROCESSING_ID: &str = "urn:arteria:fhir:StructureDefinition:v2-processing-id";
const VERSION_ID: &str = "urn:arteria:fhir:StructureDefinition:v2-version-id";

fn app_endpoint(name: &str) -> String {
    format!("urn:arteria:v2:application:{}", dt::urn_part(name))
}

/// Builds the MessageHeader (first) and Provenance (last) around the mapped resources.
pub(crate) fn envelope(env: &Env<'_>, msg: &Message<'_>, mut out: Out) -> (Vec<Resource>, Option<String>) {
    let s = env.seg(msg.msh());
    s.structural(&[1, 2, 18]);
    let trigger = s.f(9).and_then(|f| f.repetition(1)).and_then(|r| comp(&r, 2));
    let mtype = s.f(9).and_then(|f| f.repetition(1)).and_then(|r| comp(&r, 1)).unwrap_or_default();
    let app = s.f(3).and_then(|f| f.repetition(1)).and_then(|r| comp(&r, 1).or_else(|| comp(&r, 2)));
    let fac = s.f(4).and_then(|f| f.repetition(1)).and_then(|r| comp(&r, 1).or_else(|| comp(&r, 2)));
    let timestamp = dt::instant(env, s.f(7).map(|f| f.value()), s.place(7));
    let _ = s.f(10);
    let sender = out.organization(env, fac.clone().or(app.clone()), None);
    let mut mh = MessageHeader {
        id: env.event_id("MessageHeader", 1, ""),
        event_coding: match &trigger {
            Some(t) => Coding { system: Some(EVENT_SYSTEM.into()), code: Some(t.clone().into()), ..Default::default() },
            None => Coding {
                system: Some(MESSAGE_TYPE_SYSTEM.into()),
                code: Some(mtype.clone().into()),
                ..Default::default()
            },
        },
        sender: sender.clone(),
        source: MessageHeaderSource {
            name: app.clone(),
            endpoint: s
                .f(24)
                .and_then(|f| f.repetition(1))
                .and_then(|r| comp(&r, 2).filter(|u| u.contains(':')))
                .unwrap_or_else(|| app_endpoint(app.as_deref().or(fac.as_deref()).unwrap_or("unknown"))),
            ..Default::default()
        },
        ..Default::default()
    };
    let dest_app = s.f(5).and_then(|f| f.repetition(1)).and_then(|r| comp(&r, 1).or_else(|| comp(&r, 2)));
    let dest_fac = s.f(6).and_then(|f| f.repetition(1)).and_then(|r| comp(&r, 1).or_else(|| comp(&r, 2)));
    if dest_app.is_some() || dest_fac.is_some() {
        let receiver = out.organization(env, dest_fac.clone(), None);
        let name = dest_app.clone().or(dest_fac.clone());
        mh.destination.push(MessageHeaderDestination {
            endpoint: app_endpoint(name.as_deref().unwrap_or("unknown")),
            name,
            receiver,
        });
    }
    if let Some(p) = s.c1(11) {
        mh.extension.push(Extension::string(PROCESSING_ID, p));
    }
    if let Some(v) = s.c1(12) {
        mh.extension.push(Extension::string(VERSION_ID, v));
    }
    if let Some(sft) = msg.segment("SFT") {
        let ss = env.seg(sft);
        mh.source.software = ss.c1(3);
        mh.source.version = ss.c1(2);
    }
    // EVN: reason, operator, when.
    let mut recorded = None;
    let mut occurred = None;
    let mut operator = None;
    if let Some(evn) = msg.segment("EVN") {
        let es = env.seg(evn);
        recorded = dt::instant(env, es.f(2).map(|f| f.value()), es.place(2));
        if let Some(r) = es.f(4).and_then(|f| f.repetition(1)) {
            mh.reason = dt::cwe_table(env, &r, "0062");
        }
        if let Some(r) = es.f(5).and_then(|f| f.repetition(1)) {
            operator = out.practitioner(env, &r);
        }
        occurred = dt::ts(env, es.f(6).map(|f| f.value()), es.place(6)).map(|t| t.value);
    }
    let master =
        |r: &Resource| matches!(r, Resource::Practitioner(_) | Resource::Organization(_) | Resource::Location(_));
    let targets: Vec<Reference> = (0..out.resources.len()).map(|i| out.reference_to(i)).collect();
    let body = std::mem::take(&mut out.resources);
    let mut all = Vec::with_capacity(body.len() + 2);
    mh.focus = body.iter().zip(&targets).filter(|(r, _)| !master(r)).map(|(_, t)| t.clone()).collect();
    let recorded = recorded.or_else(|| timestamp.clone());
    let mh_ref = reference(&mh.id);
    all.push(Resource::MessageHeader(Box::new(mh)));
    all.extend(body);
    match recorded {
        Some(rec) => {
            let mut agent = vec![];
            if let Some(who) = sender {
                agent.push(ProvenanceAgent {
                    r#type: Some(CodeableConcept::code(
                        "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                        "author",
                        Some("Author"),
                    )),
                    who,
                });
            }
            if let Some(who) = operator {
                agent.push(ProvenanceAgent {
                    r#type: Some(CodeableConcept::code(
                        "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                        "enterer",
                        Some("Enterer"),
                    )),
                    who,
                });
            }
            if !agent.is_empty() {
                let control = env.control_id.clone();
                all.push(Resource::from(Provenance {
                    id: env.event_id("Provenance", 1, ""),
                    target: if targets.is_empty() { vec![mh_ref] } else { targets },
                    occurred_date_time: occurred,
                    recorded: rec,
                    activity: trigger.map(|t| CodeableConcept::code(EVENT_SYSTEM, t, None)),
                    agent,
                    entity: vec![ProvenanceEntity {
                        role: "source".into(),
                        what: Reference {
                            identifier: Some(Box::new(Identifier {
                                system: Some(
                                    format!("urn:arteria:v2:message:{}", dt::urn_part(&env.sender_key)).into(),
                                ),
                                value: Some(control),
                                ..Default::default()
                            })),
                            display: Some(format!("HL7 v2 message {mtype}")),
                            ..Default::default()
                        },
                    }],
                }));
            }
        }
        None => s.note(NoteKind::Info, 7, "no message or event time with time of day: no Provenance"),
    }
    (all, timestamp)
}
