//! The message walk: one pass over the segments in order, tracking the groups of the message
//! structure (patient, visit, order, observation request, specimen, …) and handing each
//! segment to its mapper with the context it belongs to.
//!
//! Segments mean the same in every message (an OBX is an Observation whether it comes in an
//! ORU, an OML or a VXU), so the mappers are per segment (`patient`, `visit`, `results`,
//! `pharmacy`, `scheduling`, `document`); what differs per message family — the encounter
//! status implied by the trigger, cancels, merges, whether an OBR is a report or an order —
//! is decided here from MSH-9. Group boundaries follow the v2 abstract message syntax: an OBX
//! after an SPM belongs to that SPECIMEN group (and is mapped with a reference to the
//! specimen, never dropped); an NTE belongs to the segment before it.

mod clinical;
mod document;
mod participation;
mod patient;
mod pharmacy;
mod results;
mod scheduling;
mod visit;

use crate::context::{Env, Out};
use crate::coverage::{NoteKind, Seg};
use canonical::model::*;
use hl7v2::{Message, Segment};

/// Message families with their own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// ADT (and BAR/DFT-style patient administration).
    Adt,
    /// ORU / OUL: results; OBR → DiagnosticReport + ServiceRequest.
    Results,
    /// ORM / OML / OMG / OMB …: orders; OBR → ServiceRequest.
    Orders,
    /// RDE / RDS / RAS / OMP / RGV: pharmacy orders and administrations.
    Pharmacy,
    /// VXU: immunisations.
    Vaccination,
    /// SIU: scheduling.
    Scheduling,
    /// MDM: documents.
    Documents,
    /// Any other type: the generic segment mappers still apply.
    Other,
}

impl Family {
    pub fn of(message_type: &str) -> Family {
        match message_type {
            "ADT" | "BAR" | "DFT" | "PPR" | "REF" | "RRI" | "PPP" | "PGL" => Family::Adt,
            "ORU" | "OUL" => Family::Results,
            "ORM" | "OML" | "OMG" | "OMB" | "OMD" | "OMI" | "OMN" | "OMS" | "ORL" | "ORG" => Family::Orders,
            "RDE" | "RDS" | "RAS" | "OMP" | "RGV" | "RRE" | "RRD" | "RRA" | "RXO" => Family::Pharmacy,
            "VXU" => Family::Vaccination,
            "SIU" | "SRM" => Family::Scheduling,
            "MDM" => Family::Documents,
            _ => Family::Other,
        }
    }
}

/// An order group in progress (ORC seen, maybe OBR/RXE/RXA following).
#[derive(Clone, Copy)]
pub(crate) struct OrderGroup<'m> {
    pub orc: Segment<'m>,
}

/// The observation request group in progress.
#[derive(Clone)]
pub(crate) struct RequestGroup {
    pub sr: Option<usize>,
    pub dr: Option<usize>,
    pub sr_ref: Option<Reference>,
    pub specimen: Option<Reference>,
    /// Specimens of this request (SPM inside the OBR group).
    pub specimens: Vec<Reference>,
    /// True after an SPM: OBX now belong to the SPECIMEN group.
    pub in_specimen_group: bool,
    pub effective: Option<Shared>,
}

/// State of the walk through one message.
pub(crate) struct Walk<'a, 'm> {
    pub env: &'a Env<'a>,
    pub out: Out,
    pub family: Family,
    pub trigger: String,
    pub patient: Option<(usize, Reference)>,
    pub encounter: Option<(usize, Reference)>,
    pub order: Option<OrderGroup<'m>>,
    pub request: Option<RequestGroup>,
    /// Resource the next NTE annotates.
    pub note_target: Option<usize>,
    /// Last medication/immunisation resource (for RXR, RXC, OBX after RXA).
    pub medication: Option<usize>,
    pub appointment: Option<usize>,
    pub document: Option<usize>,
    /// Texts of OBX in an MDM document body, in order.
    pub document_text: Vec<String>,
    /// TQ1 segments of the current order that came before its OBR (ORC, TQ1, OBR order).
    pub pending_tq1: Vec<Segment<'m>>,
}

/// Maps every segment of `msg` (after MSH), returning the resources built.
pub(crate) fn walk<'a, 'm>(env: &'a Env<'a>, msg: &'m Message<'m>) -> Out {
    let message_type = msg.message_type().unwrap_or("");
    let mut w = Walk {
        env,
        out: Out::default(),
        family: Family::of(message_type),
        trigger: msg.trigger().unwrap_or("").to_string(),
        patient: None,
        encounter: None,
        order: None,
        request: None,
        note_target: None,
        medication: None,
        appointment: None,
        document: None,
        document_text: Vec::new(),
        pending_tq1: Vec::new(),
    };
    if let Some(p) = env.profile {
        for seg in msg.segments() {
            for f in 1..=seg.field_count() {
                if p.is_ignored(seg.name(), f) && seg.field(f).is_some_and(|v| !v.is_empty()) {
                    env.tracker.mark(seg.index(), f);
                    env.tracker.note(
                        NoteKind::Ignored,
                        Seg::new(seg, env.tracker).place(f),
                        "field ignored by the sender profile",
                    );
                }
            }
        }
    }
    for seg in msg.segments().skip(1) {
        w.segment(seg);
    }
    w.finish();
    w.out
}

impl<'a, 'm> Walk<'a, 'm> {
    fn segment(&mut self, seg: Segment<'m>) {
        let name = seg.name();
        if name.starts_with('Z') {
            self.z_segment(seg);
            return;
        }
        match name {
            // Handled with MSH in the bundle (EVN → Provenance) or pure structure.
            "EVN" | "SFT" | "UAC" => {}
            "PID" => patient::pid(self, seg),
            "PD1" => patient::pd1(self, seg),
            "NK1" => patient::nk1(self, seg),
            "MRG" => patient::mrg(self, seg),
            "PV1" => visit::pv1(self, seg),
            "PV2" => visit::pv2(self, seg),
            "AL1" => clinical::al1(self, seg),
            "DG1" => clinical::dg1(self, seg),
            "PR1" => clinical::pr1(self, seg),
            "IN1" => clinical::in1(self, seg),
            "PRB" => clinical::prb(self, seg),
            "ORC" => results::orc(self, seg),
            "OBR" => results::obr(self, seg),
            "OBX" => results::obx(self, seg),
            "SPM" => results::spm(self, seg),
            "NTE" => results::nte(self, seg),
            "TQ1" => results::tq1(self, seg),
            "PRT" => participation::prt(self, seg),
            "ROL" => participation::rol(self, seg),
            "RXE" => pharmacy::rxe(self, seg),
            "RXO" => pharmacy::rxo(self, seg),
            "RXA" => pharmacy::rxa(self, seg),
            "RXR" => pharmacy::rxr(self, seg),
            "SCH" => scheduling::sch(self, seg),
            "AIS" | "AIG" | "AIL" | "AIP" => scheduling::resource(self, seg),
            "RGS" => scheduling::rgs(self, seg),
            "TXA" => document::txa(self, seg),
            _ => {}
        }
    }

    /// Z-segment fields the profile maps to extensions on the nearest earlier resource of
    /// the target type; anything else of the segment stays unmapped (reported).
    fn z_segment(&mut self, seg: Segment<'m>) {
        let Some(profile) = self.env.profile else { return };
        let rules: Vec<_> = profile.file.z_segments.iter().filter(|r| r.segment == seg.name()).collect();
        if rules.is_empty() {
            return;
        }
        let s = self.env.seg(seg);
        for rule in rules {
            let Some(text) = s.text(rule.field) else { continue };
            let target = self.out.resources.iter_mut().rev().find(|r| r.resource_type() == rule.target);
            match target.and_then(extensions_mut) {
                Some(ext) => ext.push(Extension::string(rule.url.clone(), text)),
                None => s.note(
                    NoteKind::InvalidValue,
                    rule.field,
                    format!("no {} before this segment to carry the extension", rule.target),
                ),
            }
        }
    }

    pub fn patient_ref(&self) -> Option<Reference> {
        self.patient.as_ref().map(|p| p.1.clone())
    }

    pub fn encounter_ref(&self) -> Option<Reference> {
        self.encounter.as_ref().map(|e| e.1.clone())
    }

    fn finish(&mut self) {
        document::finish(self);
    }
}

/// The `extension` list of resources that carry one.
pub(crate) fn extensions_mut(r: &mut Resource) -> Option<&mut Vec<Extension>> {
    Some(match r {
        Resource::Patient(x) => &mut x.extension,
        Resource::Encounter(x) => &mut x.extension,
        Resource::Observation(x) => &mut x.extension,
        Resource::DiagnosticReport(x) => &mut x.extension,
        Resource::ServiceRequest(x) => &mut x.extension,
        Resource::Specimen(x) => &mut x.extension,
        Resource::MedicationRequest(x) => &mut x.extension,
        Resource::MedicationAdministration(x) => &mut x.extension,
        Resource::Immunization(x) => &mut x.extension,
        Resource::AllergyIntolerance(x) => &mut x.extension,
        Resource::Condition(x) => &mut x.extension,
        Resource::Procedure(x) => &mut x.extension,
        Resource::Coverage(x) => &mut x.extension,
        Resource::DocumentReference(x) => &mut x.extension,
        Resource::Appointment(x) => &mut x.extension,
        Resource::MessageHeader(x) => &mut x.extension,
        _ => return None,
    })
}

/// The `note` list of resources that carry one.
pub(crate) fn notes_mut(r: &mut Resource) -> Option<&mut Vec<Annotation>> {
    Some(match r {
        Resource::Observation(x) => &mut x.note,
        Resource::ServiceRequest(x) => &mut x.note,
        Resource::Specimen(x) => &mut x.note,
        Resource::MedicationRequest(x) => &mut x.note,
        Resource::MedicationAdministration(x) => &mut x.note,
        Resource::Immunization(x) => &mut x.note,
        Resource::Condition(x) => &mut x.note,
        Resource::Procedure(x) => &mut x.note,
        _ => return None,
    })
}
