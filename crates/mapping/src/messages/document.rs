//! TXA (+ OBX body) → DocumentReference (MDM messages).
//!
//! The OBX segments of an MDM carry the document body line by line (TX/FT/ST) or as
//! encapsulated data (ED); they become the DocumentReference's attachment.

use super::Walk;
use crate::coverage::NoteKind;
use crate::datatypes::{self as dt};
use canonical::model::*;
use hl7v2::Segment;

pub(crate) fn txa<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    flush(w);
    let env = w.env;
    let s = env.seg(seg);
    s.structural(&[1]);
    let mut d = DocumentReference {
        id: env.event_id("DocumentReference", seg.index(), ""),
        subject: w.patient_ref(),
        ..Default::default()
    };
    if let Some(t) = s.c1(2) {
        let (cc, known) = dt::table_code(env, &t, "0270");
        if !known {
            s.note(NoteKind::UnknownCode, 2, "document type not in HL7 table 0270; kept as a local code");
        }
        d.r#type = Some(cc);
    }
    d.date = dt::instant(env, s.f(4).map(|f| f.value()), s.place(4))
        .or_else(|| dt::instant(env, s.f(6).map(|f| f.value()), s.place(6)));
    for n in [5, 9] {
        if let Some(f) = s.f(n) {
            for r in f.repetitions() {
                d.author.extend(w.out.practitioner(env, &r));
            }
        }
    }
    if let Some(f) = s.f(10)
        && let Some(r) = f.repetition(1)
    {
        d.authenticator = w.out.practitioner(env, &r);
    }
    d.master_identifier = s.f(12).and_then(|f| f.repetition(1)).and_then(|r| dt::ei(env, &r));
    if let Some(parent) = s.f(13).and_then(|f| f.repetition(1)).and_then(|r| dt::ei(env, &r)) {
        d.identifier.push(Identifier { r#use: Some("secondary".into()), ..parent });
    }
    if let Some(f) = s.f(14) {
        for r in f.repetitions() {
            d.identifier.extend(dt::ei_typed(env, &r, "PLAC"));
        }
    }
    if let Some(f) = s.f(15) {
        d.identifier.extend(f.repetition(1).and_then(|r| dt::ei_typed(env, &r, "FILL")));
    }
    let file_name = s.text(16);
    d.doc_status = s.c1(17).and_then(|c| match c.as_str() {
        "AU" | "LA" => Some("final".to_string()),
        "IP" | "IN" | "PA" | "DI" | "DO" => Some("preliminary".to_string()),
        _ => {
            s.note(NoteKind::UnknownCode, 17, "document completion status not in table 0271");
            None
        }
    });
    if let Some(c) = s.c1(18) {
        let (cc, known) = dt::table_code(env, &c, "0272");
        if !known {
            s.note(NoteKind::UnknownCode, 18, "confidentiality not in HL7 table 0272; kept as a local code");
        }
        d.security_label.push(cc);
    }
    d.status = match s.c1(19).as_deref() {
        Some("OB" | "CA") => "superseded",
        Some("AV" | "AR" | "PU" | "UN") | None => "current",
        Some(_) => {
            s.note(NoteKind::UnknownCode, 19, "availability status not in table 0275; status current");
            "current"
        }
    }
    .into();
    d.description = file_name.clone();
    d.context = w.encounter_ref().map(|e| DocumentReferenceContext { encounter: vec![e], period: None });
    let i = w.out.push(Resource::DocumentReference(Box::new(d)));
    w.document = Some(i);
    w.document_text.clear();
    w.note_target = Some(i);
}

pub(crate) fn obx<'m>(w: &mut Walk<'_, 'm>, seg: Segment<'m>) {
    let env = w.env;
    let Some(di) = w.document else { return };
    let s = env.seg(seg);
    s.structural(&[1]);
    let vtype = s.c1(2).unwrap_or_default();
    let Some(f) = s.f(5) else {
        w.document_text.push(String::new());
        return;
    };
    if vtype == "ED" {
        if let Some(att) = f.repetition(1).and_then(|r| dt::ed(&r)) {
            if let Resource::DocumentReference(d) = w.out.get_mut(di) {
                d.content.push(DocumentReferenceContent { attachment: att });
            }
            return;
        }
        s.note(NoteKind::InvalidValue, 5, "ED value could not be decoded; kept as text");
    }
    let text = f.repetitions().map(|r| dt::formatted(r.value())).collect::<Vec<_>>().join("\n");
    w.document_text.push(text);
}

/// Closes the document: the collected text lines become a text/plain attachment; a document
/// without any body still gets a content entry naming it (FHIR requires one).
pub(crate) fn finish(w: &mut Walk<'_, '_>) {
    super::scheduling::finish(w);
    flush(w);
}

fn flush(w: &mut Walk<'_, '_>) {
    let Some(di) = w.document.take() else { return };
    let text = std::mem::take(&mut w.document_text);
    if let Resource::DocumentReference(d) = w.out.get_mut(di) {
        if !text.is_empty() {
            let body = text.join("\n");
            d.content.insert(
                0,
                DocumentReferenceContent {
                    attachment: Attachment {
                        content_type: Some("text/plain; charset=utf-8".into()),
                        data: Some(dt::base64(body.as_bytes())),
                        ..Default::default()
                    },
                },
            );
        }
        if d.content.is_empty() {
            d.content.push(DocumentReferenceContent {
                attachment: Attachment {
                    title: d.description.clone().or_else(|| Some("document without body".into())),
                    ..Default::default()
                },
            });
        }
    }
}
