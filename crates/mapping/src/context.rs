//! What a mapping needs while it walks one message: the environment (tenant, sender, profile,
//! zone, coverage tracker) and the resources built so far, with the deduplication of shared
//! master data (one Practitioner per id, one Location per place) and the deterministic ids.

use crate::coverage::{Seg, Tracker};
use crate::datatypes::{self, comp, sub};
use crate::identity;
use crate::profile::Profile;
use crate::time::ZoneRule;
use canonical::model::*;
use hl7v2::{Delimiters, Field, Repetition, Segment};
use std::collections::HashMap;

/// Read-only facts about the message being mapped.
pub struct Env<'a> {
    pub tenant: &'a str,
    /// `MSH-3.1|MSH-4.1`, keys event ids and local code systems.
    pub sender_key: String,
    pub control_id: String,
    pub profile: Option<&'a Profile>,
    pub zone: &'a ZoneRule,
    pub tracker: &'a Tracker,
    pub delims: Delimiters,
    /// The last time converted (raw text and result): a message's OBX usually repeat one
    /// observation time, and the conversion depends only on the text and the zone. The raw and
    /// converted texts are shared with every coverage time record made from them.
    pub last_time: std::cell::RefCell<Option<LastTime>>,
    /// The lead of this message's event ids (see [`identity::time_lead`]).
    pub time_lead: Option<[u8; 4]>,
    /// Hash states of the event ids' shared first parts, per resource type (see
    /// [`identity::Prefix`]).
    pub event_prefixes: std::cell::RefCell<Vec<(&'static str, identity::Prefix)>>,
    /// Units converted so far, by their raw text (see [`datatypes::units`]).
    pub units_seen: std::cell::RefCell<Vec<(Box<str>, datatypes::Units)>>,
}

/// Raw text, its conversion, and the converted text (see [`Env::last_time`]).
pub type LastTime = (std::sync::Arc<str>, crate::time::FhirTime, std::sync::Arc<str>);

impl<'a> Env<'a> {
    #[cfg(test)]
    pub fn for_test(tracker: &'a Tracker, zone: &'a ZoneRule, delims: Delimiters) -> Env<'a> {
        Env {
            tenant: "t",
            sender_key: "TEST".into(),
            control_id: "1".into(),
            time_lead: None,
            profile: None,
            zone,
            tracker,
            delims,
            last_time: Default::default(),
            event_prefixes: Default::default(),
            units_seen: Default::default(),
        }
    }

    /// Id of an event resource made from the segment at `index` (position keeps two OBRs
    /// with the same OBR-2 apart).
    pub fn event_id(&self, rtype: &'static str, index: usize, extra: &str) -> String {
        // The position as decimal text, formatted on the stack (this runs per resource).
        let mut buf = itoa::Buffer::new();
        let pos = buf.format(index);
        let mut prefixes = self.event_prefixes.borrow_mut();
        let i = match prefixes.iter().position(|(t, _)| *t == rtype) {
            Some(i) => i,
            None => {
                let prefix = identity::Prefix::new(self.tenant, rtype, &[&self.sender_key, &self.control_id]);
                prefixes.push((rtype, prefix.led_by(self.time_lead)));
                prefixes.len() - 1
            }
        };
        prefixes[i].1.id(&[pos, extra])
    }

    pub fn seg<'m>(&self, s: Segment<'m>) -> Seg<'a, 'm> {
        Seg::new(s, self.tracker)
    }
}

/// `urn:uuid:` reference to a resource id.
pub fn reference(id: &str) -> Reference {
    Reference::to(urn_uuid(id))
}

/// `urn:uuid:<id>`, built in one piece (this runs for every resource).
pub fn urn_uuid(id: &str) -> Shared {
    Shared::concat(&["urn:uuid:", id])
}

/// Resources built so far and the shared master data.
#[derive(Default)]
pub struct Out {
    pub resources: Vec<Resource>,
    /// The `urn:uuid:` reference of each resource once made: one text shared by every element
    /// that points at the resource (subjects, results, the header's focus, provenance targets).
    refs: Vec<Option<Shared>>,
    master: HashMap<String, usize>,
    /// The reference made for each XCN text seen (ORC-12, OBR-16 and OBX-16 usually repeat one).
    practitioners: Vec<(Box<str>, Reference)>,
}

impl Out {
    pub fn push(&mut self, r: Resource) -> usize {
        self.resources.push(r);
        self.resources.len() - 1
    }

    /// A reference to the resource at `i`, sharing the text made for it the first time (made
    /// anew if its id has changed since).
    pub fn reference_to(&mut self, i: usize) -> Reference {
        let id = self.resources[i].id();
        if self.refs.len() <= i {
            self.refs.resize(i + 1, None);
        }
        match &self.refs[i] {
            Some(r) if r.strip_prefix("urn:uuid:") == Some(id) => Reference::to(r.clone()),
            _ => {
                let r = urn_uuid(id);
                self.refs[i] = Some(r.clone());
                Reference::to(r)
            }
        }
    }

    fn master(&mut self, id: String, make: impl FnOnce(String) -> Resource) -> Reference {
        match self.master.get(&id) {
            Some(&i) => self.reference_to(i),
            None => {
                let i = self.push(make(id.clone()));
                self.master.insert(id, i);
                self.reference_to(i)
            }
        }
    }

    /// XCN → Practitioner (deduplicated by id, or by name when the sender sends no id).
    pub fn practitioner(&mut self, env: &Env<'_>, r: &Repetition<'_>) -> Option<Reference> {
        // The same text gives the same practitioner (already in the output) and reference.
        if let Some((_, reference)) = self.practitioners.iter().find(|(raw, _)| **raw == *r.as_str()) {
            return Some(reference.clone());
        }
        let reference = self.new_practitioner(env, r)?;
        if self.practitioners.len() < 16 {
            self.practitioners.push((r.as_str().into(), reference.clone()));
        }
        Some(reference)
    }

    fn new_practitioner(&mut self, env: &Env<'_>, r: &Repetition<'_>) -> Option<Reference> {
        let id_value = comp(r, 1);
        let name = datatypes::xcn_name(r);
        if id_value.is_none() && name.is_none() {
            return None;
        }
        let system =
            datatypes::hd_system(env, sub(r, 9, 1).as_deref(), sub(r, 9, 2).as_deref(), sub(r, 9, 3).as_deref());
        // As for patients: an id without an authority is scoped by its sender.
        let key_sys: Text = system.clone().unwrap_or_else(|| format!("sender:{}", env.sender_key).into());
        let rid = match &id_value {
            Some(v) => identity::id(env.tenant, "Practitioner", &[&key_sys, v]),
            None => identity::id(env.tenant, "Practitioner", &["name", &env.sender_key, r.as_str()]),
        };
        let display = name.as_ref().map(display_name);
        let mut reference = self.master(rid, |id| {
            let identifier = id_value
                .map(|v| {
                    let r#type = comp(r, 13).map(|t| {
                        if crate::vocab::identifier_type_known(&t) {
                            CodeableConcept::code("http://terminology.hl7.org/CodeSystem/v2-0203", t, None)
                        } else {
                            CodeableConcept::text(t)
                        }
                    });
                    vec![Identifier { system, value: Some(v), r#type, ..Default::default() }]
                })
                .unwrap_or_default();
            Resource::from(Practitioner { id, identifier, name: name.into_iter().collect(), ..Default::default() })
        });
        reference.display = display;
        Some(reference)
    }

    /// XON / HD name → Organization (deduplicated by id or name).
    pub fn organization(
        &mut self,
        env: &Env<'_>,
        name: Option<String>,
        ident: Option<Identifier>,
    ) -> Option<Reference> {
        if name.is_none() && ident.is_none() {
            return None;
        }
        let key = match &ident {
            Some(i) => format!("{}|{}", i.system.as_deref().unwrap_or(""), i.value.as_deref().unwrap_or("")),
            None => format!("name|{}", name.as_deref().unwrap_or("")),
        };
        let rid = identity::id(env.tenant, "Organization", &[&key]);
        let display = name.clone();
        let mut r = self.master(rid, |id| {
            Resource::from(Organization { id, identifier: ident.into_iter().collect(), name, ..Default::default() })
        });
        r.display = display;
        Some(r)
    }

    /// PL → Location: the most specific level (bed, room, point of care, facility), each
    /// level a Location `partOf` the one above, deduplicated by its full path.
    pub fn location(&mut self, env: &Env<'_>, f: &Field<'_>) -> Option<Reference> {
        let r = f.repetition(1)?;
        let levels = [
            (4, "si", "Site"),
            (7, "bu", "Building"),
            (8, "lvl", "Level"),
            (1, "wa", "Ward"),
            (2, "ro", "Room"),
            (3, "bd", "Bed"),
        ];
        let mut parent: Option<Reference> = None;
        let mut path = String::new();
        for (n, code, display) in levels {
            let name = if n == 4 { sub(&r, 4, 1).or_else(|| sub(&r, 4, 2)) } else { comp(&r, n) };
            let Some(name) = name else { continue };
            path.push(char::from(b'0' + n as u8));
            path.push('=');
            path.push_str(&name);
            path.push(';');
            let rid = identity::id(env.tenant, "Location", &[&env.sender_key, &path]);
            let part_of = parent.clone();
            let mut reference = self.master(rid, |id| {
                Resource::from(Location {
                    id,
                    name: Some(name.clone()),
                    mode: Some("instance".into()),
                    physical_type: Some(CodeableConcept::code(
                        "http://terminology.hl7.org/CodeSystem/location-physical-type",
                        code,
                        Some(display),
                    )),
                    part_of,
                    ..Default::default()
                })
            });
            reference.display = Some(name);
            parent = Some(reference);
        }
        if let (Some(p), Some(desc)) = (&parent, comp(&r, 9)) {
            let id = p.reference.as_deref().unwrap_or("").trim_start_matches("urn:uuid:").to_string();
            if let Some(&i) = self.master.get(&id)
                && let Resource::Location(l) = &mut self.resources[i]
            {
                l.description.get_or_insert(desc);
            }
        }
        parent
    }

    /// Whether a resource with this id is already in the message's output.
    pub fn has(&self, id: &str) -> bool {
        self.resources.iter().any(|r| r.id() == id)
    }

    /// The resource at `i`, for mappers that add to an earlier resource (notes, results).
    pub fn get_mut(&mut self, i: usize) -> &mut Resource {
        &mut self.resources[i]
    }
}

/// Text for a Reference.display.
pub fn display_name(n: &HumanName) -> String {
    let mut parts: Vec<&str> = n.prefix.iter().map(String::as_str).collect();
    parts.extend(n.given.iter().map(String::as_str));
    parts.extend(n.family.as_deref());
    parts.extend(n.suffix.iter().map(String::as_str));
    parts.join(" ")
}
