//! FHIR R4 resources of the canonical model, plus the message `Bundle` that carries them.
//!
//! [`Resource`] is tagged by `resourceType`, so a `Vec<Resource>` serialises to exactly the
//! FHIR JSON of each. Choice elements (`value[x]`, `effective[x]` …) are enums flattened into
//! their parent, so only one variant can ever be present. Each type also describes its typed
//! Avro record (see [`crate::model::avro`]).

use super::datatypes::*;
use serde::Serialize;

fhir_choice!(
    /// `Observation.value[x]`.
    ObservationValue {
        Quantity(Quantity) = "valueQuantity",
        CodeableConcept(CodeableConcept) = "valueCodeableConcept",
        String(String) = "valueString",
        Boolean(bool) = "valueBoolean",
        Integer(i64) = "valueInteger",
        Range(Range) = "valueRange",
        Ratio(Ratio) = "valueRatio",
        Time(String) = "valueTime",
        DateTime(String) = "valueDateTime",
        Period(Period) = "valuePeriod",
    }
);

fhir_choice!(
    /// `effective[x]`: a point or a span (`occurrence[x]`, `performed[x]`, `onset[x]` and
    /// `collected[x]` below are the same choice under their own JSON keys). The point is
    /// shared text: a message's results usually repeat one observation time.
    Effective {
        DateTime(Shared) = "effectiveDateTime",
        Period(Period) = "effectivePeriod",
    }
);

fhir_choice!(
    Occurrence {
        DateTime(String) = "occurrenceDateTime",
        Period(Period) = "occurrencePeriod",
    }
);

fhir_choice!(
    Performed {
        DateTime(String) = "performedDateTime",
        Period(Period) = "performedPeriod",
    }
);

fhir_choice!(
    Onset {
        DateTime(String) = "onsetDateTime",
        String(String) = "onsetString",
    }
);

fhir_choice!(
    Collected {
        DateTime(String) = "collectedDateTime",
        Period(Period) = "collectedPeriod",
    }
);

fhir_choice!(
    Deceased {
        Boolean(bool) = "deceasedBoolean",
        DateTime(String) = "deceasedDateTime",
    }
);

fhir_choice!(
    MultipleBirth {
        Boolean(bool) = "multipleBirthBoolean",
        Integer(i64) = "multipleBirthInteger",
    }
);

fhir_choice!(
    /// `medication[x]` (always a code here; a Medication resource is not needed).
    Medication {
        CodeableConcept(CodeableConcept) = "medicationCodeableConcept",
    }
);

fhir_choice!(
    AdministrationEffective {
        DateTime(String) = "effectiveDateTime",
        Period(Period) = "effectivePeriod",
    }
);

fhir_struct!(PatientLink { other: Reference, r#type: String });
fhir_struct!(PatientCommunication { language: CodeableConcept, preferred: Option<bool> });

fhir_struct!(Patient {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    active: Option<bool>,
    name: Vec<HumanName>,
    telecom: Vec<ContactPoint>,
    gender: Option<Text>,
    birth_date: Option<String>,
    #[serde(rename = "_birthDate")]
    birth_date_element: Option<PrimitiveExtensions>,
    #[serde(flatten)]
    deceased: Option<Deceased>,
    address: Vec<Address>,
    marital_status: Option<CodeableConcept>,
    #[serde(flatten)]
    multiple_birth: Option<MultipleBirth>,
    communication: Vec<PatientCommunication>,
    general_practitioner: Vec<Reference>,
    managing_organization: Option<Reference>,
    link: Vec<PatientLink>,
});

fhir_struct!(RelatedPerson {
    id: String,
    identifier: Vec<Identifier>,
    patient: Reference,
    relationship: Vec<CodeableConcept>,
    name: Vec<HumanName>,
    telecom: Vec<ContactPoint>,
    gender: Option<String>,
    birth_date: Option<String>,
    address: Vec<Address>,
    period: Option<Period>,
});

fhir_struct!(EncounterParticipant {
    r#type: Vec<CodeableConcept>,
    period: Option<Period>,
    individual: Option<Reference>,
});
fhir_struct!(EncounterLocation { location: Reference, status: Option<String> });
fhir_struct!(EncounterHospitalization {
    pre_admission_identifier: Option<Identifier>,
    admit_source: Option<CodeableConcept>,
    re_admission: Option<CodeableConcept>,
    diet_preference: Vec<CodeableConcept>,
    special_arrangement: Vec<CodeableConcept>,
    discharge_disposition: Option<CodeableConcept>,
});
fhir_struct!(EncounterDiagnosis { condition: Reference, rank: Option<u32> });

fhir_struct!(Encounter {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    status: Text,
    class: Coding,
    r#type: Vec<CodeableConcept>,
    service_type: Option<CodeableConcept>,
    priority: Option<CodeableConcept>,
    subject: Option<Reference>,
    participant: Vec<EncounterParticipant>,
    period: Option<Period>,
    reason_code: Vec<CodeableConcept>,
    diagnosis: Vec<EncounterDiagnosis>,
    hospitalization: Option<EncounterHospitalization>,
    location: Vec<EncounterLocation>,
    service_provider: Option<Reference>,
});

fhir_struct!(ObservationReferenceRange {
    low: Option<Quantity>,
    high: Option<Quantity>,
    r#type: Option<CodeableConcept>,
    text: Option<String>,
});

fhir_struct!(Observation {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    based_on: Vec<Reference>,
    part_of: Vec<Reference>,
    status: Text,
    category: Vec<CodeableConcept>,
    code: CodeableConcept,
    subject: Option<Reference>,
    encounter: Option<Reference>,
    #[serde(flatten)]
    effective: Option<Effective>,
    issued: Option<String>,
    performer: Vec<Reference>,
    #[serde(flatten)]
    value: Option<ObservationValue>,
    // Rarely sent: boxed so that an Observation stays within the allocators' small sizes
    // (glibc's per-thread cache takes blocks up to 1,032 bytes).
    data_absent_reason: Option<Box<CodeableConcept>>,
    interpretation: Vec<CodeableConcept>,
    note: Vec<Annotation>,
    body_site: Option<Box<CodeableConcept>>,
    method: Option<Box<CodeableConcept>>,
    specimen: Option<Reference>,
    reference_range: Vec<ObservationReferenceRange>,
    has_member: Vec<Reference>,
    derived_from: Vec<Reference>,
});

fhir_struct!(DiagnosticReport {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    based_on: Vec<Reference>,
    status: Text,
    category: Vec<CodeableConcept>,
    code: CodeableConcept,
    subject: Option<Reference>,
    encounter: Option<Reference>,
    #[serde(flatten)]
    effective: Option<Effective>,
    issued: Option<String>,
    performer: Vec<Reference>,
    results_interpreter: Vec<Reference>,
    specimen: Vec<Reference>,
    result: Vec<Reference>,
    conclusion: Option<String>,
    presented_form: Vec<Attachment>,
});

fhir_struct!(ServiceRequest {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    based_on: Vec<Reference>,
    requisition: Option<Identifier>,
    status: Text,
    intent: Text,
    category: Vec<CodeableConcept>,
    priority: Option<Text>,
    code: Option<CodeableConcept>,
    subject: Reference,
    encounter: Option<Reference>,
    #[serde(flatten)]
    occurrence: Option<Occurrence>,
    authored_on: Option<String>,
    requester: Option<Reference>,
    performer: Vec<Reference>,
    reason_code: Vec<CodeableConcept>,
    specimen: Vec<Reference>,
    body_site: Vec<CodeableConcept>,
    note: Vec<Annotation>,
});

fhir_struct!(SpecimenCollection {
    collector: Option<Reference>,
    #[serde(flatten)]
    collected: Option<Collected>,
    quantity: Option<Quantity>,
    method: Option<CodeableConcept>,
    body_site: Option<CodeableConcept>,
});
fhir_struct!(SpecimenContainer {
    identifier: Vec<Identifier>,
    r#type: Option<CodeableConcept>,
});

fhir_struct!(Specimen {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    accession_identifier: Option<Identifier>,
    status: Option<String>,
    r#type: Option<CodeableConcept>,
    subject: Option<Reference>,
    received_time: Option<String>,
    parent: Vec<Reference>,
    request: Vec<Reference>,
    collection: Option<SpecimenCollection>,
    container: Vec<SpecimenContainer>,
    condition: Vec<CodeableConcept>,
    note: Vec<Annotation>,
});

fhir_struct!(MedicationRequestDispense {
    number_of_repeats_allowed: Option<u32>,
    quantity: Option<Quantity>,
});
fhir_struct!(MedicationRequestSubstitution {
    allowed_boolean: Option<bool>,
});

fhir_struct!(MedicationRequest {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    group_identifier: Option<Identifier>,
    status: String,
    intent: String,
    #[serde(flatten)]
    medication: Option<Medication>,
    subject: Reference,
    encounter: Option<Reference>,
    authored_on: Option<String>,
    requester: Option<Reference>,
    reason_code: Vec<CodeableConcept>,
    note: Vec<Annotation>,
    dosage_instruction: Vec<Dosage>,
    dispense_request: Option<MedicationRequestDispense>,
    substitution: Option<MedicationRequestSubstitution>,
});

fhir_struct!(MedicationAdministrationPerformer { actor: Reference });
fhir_struct!(MedicationAdministrationDosage {
    text: Option<String>,
    site: Option<CodeableConcept>,
    route: Option<CodeableConcept>,
    dose: Option<Quantity>,
});

fhir_struct!(MedicationAdministration {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    status: String,
    status_reason: Vec<CodeableConcept>,
    #[serde(flatten)]
    medication: Option<Medication>,
    subject: Reference,
    context: Option<Reference>,
    #[serde(flatten)]
    effective: Option<AdministrationEffective>,
    performer: Vec<MedicationAdministrationPerformer>,
    request: Option<Reference>,
    note: Vec<Annotation>,
    dosage: Option<MedicationAdministrationDosage>,
});

fhir_struct!(ImmunizationPerformer { function: Option<CodeableConcept>, actor: Reference });

fhir_struct!(Immunization {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    status: String,
    status_reason: Option<CodeableConcept>,
    vaccine_code: CodeableConcept,
    patient: Reference,
    encounter: Option<Reference>,
    #[serde(flatten)]
    occurrence: Option<Occurrence>,
    recorded: Option<String>,
    primary_source: Option<bool>,
    report_origin: Option<CodeableConcept>,
    location: Option<Reference>,
    manufacturer: Option<Reference>,
    lot_number: Option<String>,
    expiration_date: Option<String>,
    site: Option<CodeableConcept>,
    route: Option<CodeableConcept>,
    dose_quantity: Option<Quantity>,
    performer: Vec<ImmunizationPerformer>,
    note: Vec<Annotation>,
    reason_code: Vec<CodeableConcept>,
});

fhir_struct!(AllergyReaction {
    manifestation: Vec<CodeableConcept>,
    severity: Option<String>,
});

fhir_struct!(AllergyIntolerance {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    clinical_status: Option<CodeableConcept>,
    verification_status: Option<CodeableConcept>,
    r#type: Option<String>,
    category: Vec<String>,
    criticality: Option<String>,
    code: Option<CodeableConcept>,
    patient: Reference,
    #[serde(flatten)]
    onset: Option<Onset>,
    recorded_date: Option<String>,
    reaction: Vec<AllergyReaction>,
});

fhir_struct!(Condition {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    clinical_status: Option<CodeableConcept>,
    verification_status: Option<CodeableConcept>,
    category: Vec<CodeableConcept>,
    severity: Option<CodeableConcept>,
    code: Option<CodeableConcept>,
    subject: Reference,
    encounter: Option<Reference>,
    #[serde(flatten)]
    onset: Option<Onset>,
    recorded_date: Option<String>,
    recorder: Option<Reference>,
    note: Vec<Annotation>,
});

fhir_struct!(ProcedurePerformer { function: Option<CodeableConcept>, actor: Reference });

fhir_struct!(Procedure {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    status: String,
    code: Option<CodeableConcept>,
    subject: Reference,
    encounter: Option<Reference>,
    #[serde(flatten)]
    performed: Option<Performed>,
    performer: Vec<ProcedurePerformer>,
    reason_code: Vec<CodeableConcept>,
    note: Vec<Annotation>,
});

fhir_struct!(PractitionerQualification { code: CodeableConcept });

fhir_struct!(Practitioner {
    id: String,
    identifier: Vec<Identifier>,
    name: Vec<HumanName>,
    telecom: Vec<ContactPoint>,
    address: Vec<Address>,
    qualification: Vec<PractitionerQualification>,
});

fhir_struct!(Organization {
    id: String,
    identifier: Vec<Identifier>,
    name: Option<String>,
    telecom: Vec<ContactPoint>,
    address: Vec<Address>,
});

fhir_struct!(Location {
    id: String,
    identifier: Vec<Identifier>,
    status: Option<String>,
    name: Option<String>,
    description: Option<String>,
    mode: Option<String>,
    physical_type: Option<CodeableConcept>,
    part_of: Option<Reference>,
});

fhir_struct!(CoverageClass { r#type: CodeableConcept, value: String, name: Option<String> });

fhir_struct!(Coverage {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    status: String,
    r#type: Option<CodeableConcept>,
    subscriber: Option<Reference>,
    subscriber_id: Option<String>,
    beneficiary: Reference,
    dependent: Option<String>,
    relationship: Option<CodeableConcept>,
    period: Option<Period>,
    payor: Vec<Reference>,
    class: Vec<CoverageClass>,
    order: Option<u32>,
});

fhir_struct!(DocumentReferenceContent { attachment: Attachment });
fhir_struct!(DocumentReferenceContext {
    encounter: Vec<Reference>,
    period: Option<Period>,
});
fhir_struct!(DocumentReferenceRelatesTo { code: String, target: Reference });

fhir_struct!(DocumentReference {
    id: String,
    extension: Vec<Extension>,
    master_identifier: Option<Identifier>,
    identifier: Vec<Identifier>,
    status: String,
    doc_status: Option<String>,
    r#type: Option<CodeableConcept>,
    subject: Option<Reference>,
    date: Option<String>,
    author: Vec<Reference>,
    authenticator: Option<Reference>,
    relates_to: Vec<DocumentReferenceRelatesTo>,
    description: Option<String>,
    security_label: Vec<CodeableConcept>,
    content: Vec<DocumentReferenceContent>,
    context: Option<DocumentReferenceContext>,
});

fhir_struct!(AppointmentParticipant {
    r#type: Vec<CodeableConcept>,
    actor: Option<Reference>,
    required: Option<String>,
    status: String,
});

fhir_struct!(Appointment {
    id: String,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    status: String,
    cancelation_reason: Option<CodeableConcept>,
    service_type: Vec<CodeableConcept>,
    appointment_type: Option<CodeableConcept>,
    reason_code: Vec<CodeableConcept>,
    priority: Option<u32>,
    description: Option<String>,
    start: Option<String>,
    end: Option<String>,
    minutes_duration: Option<u32>,
    comment: Option<String>,
    based_on: Vec<Reference>,
    participant: Vec<AppointmentParticipant>,
});

fhir_struct!(ProvenanceAgent {
    r#type: Option<CodeableConcept>,
    who: Reference,
});
fhir_struct!(ProvenanceEntity { role: Text, what: Reference });

fhir_struct!(Provenance {
    id: String,
    target: Vec<Reference>,
    occurred_date_time: Option<String>,
    recorded: String,
    activity: Option<CodeableConcept>,
    agent: Vec<ProvenanceAgent>,
    entity: Vec<ProvenanceEntity>,
});

fhir_struct!(MessageHeaderDestination {
    name: Option<String>,
    endpoint: String,
    receiver: Option<Reference>,
});
fhir_struct!(MessageHeaderSource {
    name: Option<String>,
    software: Option<String>,
    version: Option<String>,
    endpoint: String,
});

fhir_struct!(MessageHeader {
    id: String,
    extension: Vec<Extension>,
    event_coding: Coding,
    destination: Vec<MessageHeaderDestination>,
    sender: Option<Reference>,
    source: MessageHeaderSource,
    reason: Option<CodeableConcept>,
    focus: Vec<Reference>,
});

/// Any resource of the canonical model, serialised with its `resourceType`. Boxed: the
/// resource structs are large, and a message's list of them is built by pushing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "resourceType")]
pub enum Resource {
    MessageHeader(Box<MessageHeader>),
    Patient(Box<Patient>),
    RelatedPerson(Box<RelatedPerson>),
    Encounter(Box<Encounter>),
    Observation(Box<Observation>),
    DiagnosticReport(Box<DiagnosticReport>),
    ServiceRequest(Box<ServiceRequest>),
    Specimen(Box<Specimen>),
    MedicationRequest(Box<MedicationRequest>),
    MedicationAdministration(Box<MedicationAdministration>),
    Immunization(Box<Immunization>),
    AllergyIntolerance(Box<AllergyIntolerance>),
    Condition(Box<Condition>),
    Procedure(Box<Procedure>),
    Practitioner(Box<Practitioner>),
    Organization(Box<Organization>),
    Location(Box<Location>),
    Coverage(Box<Coverage>),
    DocumentReference(Box<DocumentReference>),
    Appointment(Box<Appointment>),
    Provenance(Box<Provenance>),
}

impl From<MessageHeader> for Resource {
    fn from(r: MessageHeader) -> Resource {
        Resource::MessageHeader(Box::new(r))
    }
}

impl From<Patient> for Resource {
    fn from(r: Patient) -> Resource {
        Resource::Patient(Box::new(r))
    }
}

impl From<RelatedPerson> for Resource {
    fn from(r: RelatedPerson) -> Resource {
        Resource::RelatedPerson(Box::new(r))
    }
}

impl From<Encounter> for Resource {
    fn from(r: Encounter) -> Resource {
        Resource::Encounter(Box::new(r))
    }
}

impl From<Observation> for Resource {
    fn from(r: Observation) -> Resource {
        Resource::Observation(Box::new(r))
    }
}

impl From<DiagnosticReport> for Resource {
    fn from(r: DiagnosticReport) -> Resource {
        Resource::DiagnosticReport(Box::new(r))
    }
}

impl From<ServiceRequest> for Resource {
    fn from(r: ServiceRequest) -> Resource {
        Resource::ServiceRequest(Box::new(r))
    }
}

impl From<Specimen> for Resource {
    fn from(r: Specimen) -> Resource {
        Resource::Specimen(Box::new(r))
    }
}

impl From<MedicationRequest> for Resource {
    fn from(r: MedicationRequest) -> Resource {
        Resource::MedicationRequest(Box::new(r))
    }
}

impl From<MedicationAdministration> for Resource {
    fn from(r: MedicationAdministration) -> Resource {
        Resource::MedicationAdministration(Box::new(r))
    }
}

impl From<Immunization> for Resource {
    fn from(r: Immunization) -> Resource {
        Resource::Immunization(Box::new(r))
    }
}

impl From<AllergyIntolerance> for Resource {
    fn from(r: AllergyIntolerance) -> Resource {
        Resource::AllergyIntolerance(Box::new(r))
    }
}

impl From<Condition> for Resource {
    fn from(r: Condition) -> Resource {
        Resource::Condition(Box::new(r))
    }
}

impl From<Procedure> for Resource {
    fn from(r: Procedure) -> Resource {
        Resource::Procedure(Box::new(r))
    }
}

impl From<Practitioner> for Resource {
    fn from(r: Practitioner) -> Resource {
        Resource::Practitioner(Box::new(r))
    }
}

impl From<Organization> for Resource {
    fn from(r: Organization) -> Resource {
        Resource::Organization(Box::new(r))
    }
}

impl From<Location> for Resource {
    fn from(r: Location) -> Resource {
        Resource::Location(Box::new(r))
    }
}

impl From<Coverage> for Resource {
    fn from(r: Coverage) -> Resource {
        Resource::Coverage(Box::new(r))
    }
}

impl From<DocumentReference> for Resource {
    fn from(r: DocumentReference) -> Resource {
        Resource::DocumentReference(Box::new(r))
    }
}

impl From<Appointment> for Resource {
    fn from(r: Appointment) -> Resource {
        Resource::Appointment(Box::new(r))
    }
}

impl From<Provenance> for Resource {
    fn from(r: Provenance) -> Resource {
        Resource::Provenance(Box::new(r))
    }
}

macro_rules! resource_meta {
    ($($v:ident),*) => {
        impl Resource {
            /// The FHIR resource type name.
            pub fn resource_type(&self) -> &'static str {
                match self { $(Resource::$v(_) => stringify!($v),)* }
            }
            /// The logical id.
            pub fn id(&self) -> &str {
                match self { $(Resource::$v(r) => &r.id,)* }
            }
        }

        impl crate::model::json::JsonWrite for Resource {
            fn write_json(&self, out: &mut Vec<u8>) {
                use crate::model::json::JsonMembers;
                match self {
                    $(Resource::$v(r) => {
                        out.extend_from_slice(concat!(r#"{"resourceType":""#, stringify!($v), r#"","#).as_bytes());
                        r.write_members(out);
                    })*
                }
                crate::model::json::close_object(out);
            }
        }

        /// The Avro shapes of every resource, in the order of this enum (the union order).
        pub(crate) fn describe() -> crate::model::avro::Shapes {
            use crate::model::avro::{AvroModel, Elem, Kind, ShapeBuilder};
            let mut b = ShapeBuilder::default();
            let resources = vec![$(
                (stringify!($v), match $v::avro_elem(&mut b) {
                    Elem::One { kind: Kind::Record(id), list: false } => id,
                    other => unreachable!("a resource is a record, not {other:?}"),
                }),
            )*];
            crate::model::avro::finish(b, resources)
        }
    };
}
resource_meta!(
    MessageHeader,
    Patient,
    RelatedPerson,
    Encounter,
    Observation,
    DiagnosticReport,
    ServiceRequest,
    Specimen,
    MedicationRequest,
    MedicationAdministration,
    Immunization,
    AllergyIntolerance,
    Condition,
    Procedure,
    Practitioner,
    Organization,
    Location,
    Coverage,
    DocumentReference,
    Appointment,
    Provenance
);

/// One entry of a Bundle.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    pub full_url: String,
    pub resource: Resource,
}

/// A FHIR Bundle (here always `type: message`, MessageHeader first).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "resourceType", rename = "Bundle", rename_all = "camelCase")]
pub struct Bundle {
    pub id: String,
    #[serde(skip_serializing_if = "crate::model::Skip::skip")]
    pub identifier: Option<Identifier>,
    pub r#type: &'static str,
    #[serde(skip_serializing_if = "crate::model::Skip::skip")]
    pub timestamp: Option<String>,
    pub entry: Vec<BundleEntry>,
}

impl crate::model::json::JsonWrite for BundleEntry {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"fullUrl":"#);
        crate::model::json::write_str(out, &self.full_url);
        out.extend_from_slice(br#","resource":"#);
        self.resource.write_json(out);
        out.push(b'}');
    }
}

impl crate::model::json::JsonWrite for Bundle {
    fn write_json(&self, out: &mut Vec<u8>) {
        use crate::model::json::member;
        out.extend_from_slice(br#"{"resourceType":"Bundle","id":"#);
        self.id.write_json(out);
        out.push(b',');
        member(&self.identifier, br#""identifier":"#, out);
        out.extend_from_slice(br#""type":"#);
        self.r#type.write_json(out);
        out.push(b',');
        member(&self.timestamp, br#""timestamp":"#, out);
        out.extend_from_slice(br#""entry":"#);
        self.entry.write_json(out);
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_json_has_type_and_choice_keys() {
        let obs = Observation {
            id: "o1".into(),
            status: "final".into(),
            code: CodeableConcept::text("x"),
            value: Some(ObservationValue::String("a\\b\n".into())),
            effective: Some(Effective::DateTime("2024-01-01".into())),
            ..Default::default()
        };
        let v = serde_json::to_value(Resource::from(obs)).unwrap();
        assert_eq!(v["resourceType"], "Observation");
        assert_eq!(v["valueString"], "a\\b\n");
        assert_eq!(v["effectiveDateTime"], "2024-01-01");
        assert!(v.get("value").is_none());
        assert!(v.get("note").is_none());
        let p = Patient { id: "p".into(), deceased: Some(Deceased::Boolean(false)), ..Default::default() };
        let v = serde_json::to_value(Resource::from(p)).unwrap();
        assert_eq!(v["deceasedBoolean"], false);
    }
}
