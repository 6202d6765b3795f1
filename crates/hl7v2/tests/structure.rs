//! Segment grouping by message structure (synthetic messages).

use hl7v2::Message;
use hl7v2::structure::{self, Group, Item, StructureError, check_definitions, structure_for};

fn names(m: &Message<'_>, idx: &[usize]) -> Vec<String> {
    idx.iter().map(|&i| m.segment_at(i).unwrap().name().to_string()).collect()
}

/// Renders a grouping compactly: `NAME(SEG SEG CHILD(...))`, extras marked with `+`.
fn render(m: &Message<'_>, g: &Group) -> String {
    let parts: Vec<String> = g
        .items
        .iter()
        .map(|i| match i {
            Item::Segment(n) => m.segment_at(*n).unwrap().name().to_string(),
            Item::Extra(n) => format!("+{}", m.segment_at(*n).unwrap().name()),
            Item::Group(c) => render(m, c),
        })
        .collect();
    format!("{}({})", g.name, parts.join(" "))
}

#[test]
fn every_definition_parses_and_every_table_entry_has_one() {
    let n = check_definitions().unwrap();
    assert!(n >= 40, "{n}");
    for (code, trigger) in
        [("ADT", "A04"), ("ADT", "A40"), ("ORU", "R01"), ("SIU", "S26"), ("MDM", "T02"), ("RDE", "O01"), ("VXU", "V04")]
    {
        let s = structure_for(code, trigger).unwrap();
        assert!(structure::definition(s).is_some(), "{s}");
    }
    assert_eq!(structure_for("ADT", "A08"), Some("ADT_A01"));
    assert_eq!(structure_for("ADT", "A31"), Some("ADT_A05"));
    assert_eq!(structure_for("ACK", "A01"), Some("ACK"));
    assert_eq!(structure_for("XYZ", "A01"), None);
}

#[test]
fn definition_syntax_errors_are_caught() {
    assert!(structure::parse_definition("X", "MSH [PID PV1]").is_err(), "unnamed multi-node bracket");
    assert!(structure::parse_definition("X", "MSH [PID").is_err());
    assert!(structure::parse_definition("X", "MSH PIDX").is_err());
    assert!(structure::parse_definition("X", "MSH {G: }").is_err());
    assert!(structure::parse_definition("X", "MSH <OBR|RXO> [{G: OBX [{NTE}]}]").is_ok());
}

#[test]
fn oru_groups_observations_and_specimens() {
    let s = "MSH|^~\\&|LAB|H|EHR|H|2024||ORU^R01|1|P|2.5.1\r\
PID|1||1^^^H^MR||TEST^ONE\r\
PV1|1|O\r\
ORC|RE|1\r\
OBR|1|1||CBC\r\
NTE|1||order note\r\
OBX|1|NM|WBC||5.0\r\
NTE|1||obs note\r\
OBX|2|NM|RBC||4.1\r\
ZOB|custom\r\
SPM|1|S1\r\
OBX|3|ST|SPEC-QUALITY||OK\r\
OBR|2|2||BMP\r\
OBX|1|NM|NA||140\r";
    let m = Message::parse(s.as_bytes()).unwrap();
    let g = m.structure().unwrap();
    assert_eq!(
        render(&m, &g),
        "ORU_R01(MSH PATIENT_RESULT(PATIENT(PID VISIT(PV1)) \
ORDER_OBSERVATION(ORC OBR NTE OBSERVATION(OBX NTE) OBSERVATION(OBX +ZOB) SPECIMEN(SPM OBX)) \
ORDER_OBSERVATION(OBR OBSERVATION(OBX))))"
    );
    // The OBX after SPM belongs to the specimen group.
    let spec = g.find_all("SPECIMEN");
    assert_eq!(names(&m, &spec[0].all_segment_indexes()), ["SPM", "OBX"]);
    assert_eq!(m.segment_at(spec[0].all_segment_indexes()[1]).unwrap().get("3").unwrap().as_str(), "SPEC-QUALITY");
    assert_eq!(g.find_all("OBSERVATION").len(), 3);
    // Nothing is dropped.
    let mut all = g.all_segment_indexes();
    all.sort();
    assert_eq!(all, (1..=m.segment_count()).collect::<Vec<_>>());
}

#[test]
fn oru_multiple_patients() {
    let s = "MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5\rPID|1\rOBR|1\rOBX|1\rPID|2\rOBR|1\rOBX|1\rOBX|2\r";
    let m = Message::parse(s.as_bytes()).unwrap();
    let g = m.structure().unwrap();
    assert_eq!(g.groups("PATIENT_RESULT").count(), 2);
    assert_eq!(
        render(&m, &g),
        "ORU_R01(MSH PATIENT_RESULT(PATIENT(PID) ORDER_OBSERVATION(OBR OBSERVATION(OBX))) \
PATIENT_RESULT(PATIENT(PID) ORDER_OBSERVATION(OBR OBSERVATION(OBX) OBSERVATION(OBX))))"
    );
}

#[test]
fn adt_with_z_segments_and_insurance() {
    let s = "MSH|^~\\&|A|B|C|D|2024||ADT^A04|1|P|2.3\rEVN|A04\rPID|1\rZPI|extra\rNK1|1\rNK1|2\rPV1|1\rAL1|1\rAL1|2\rDG1|1\rPR1|1\rROL|1\rIN1|1\rIN2|1\rIN1|2\rZIN|x\r";
    let m = Message::parse(s.as_bytes()).unwrap();
    let g = m.structure().unwrap();
    assert_eq!(
        render(&m, &g),
        "ADT_A01(MSH EVN PID +ZPI NK1 NK1 PV1 AL1 AL1 DG1 PROCEDURE(PR1 ROL) INSURANCE(IN1 IN2) INSURANCE(IN1 +ZIN))"
    );
}

#[test]
fn out_of_order_segment_is_kept_in_place() {
    let s = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rEVN|A01\rPID|1\rPV1|1\rEVN|again\rOBX|1\r";
    let m = Message::parse(s.as_bytes()).unwrap();
    assert_eq!(render(&m, &m.structure().unwrap()), "ADT_A01(MSH EVN PID PV1 +EVN OBX)");
}

#[test]
fn merge_a40() {
    let s = "MSH|^~\\&|A|B|C|D|2024||ADT^A40^ADT_A39|1|P|2.5\rEVN|A40\rPID|1||NEW\rMRG|OLD\rPID|1||NEW2\rMRG|OLD2\r";
    let m = Message::parse(s.as_bytes()).unwrap();
    assert_eq!(render(&m, &m.structure().unwrap()), "ADT_A39(MSH EVN PATIENT(PID MRG) PATIENT(PID MRG))");
}

#[test]
fn orm_vxu_siu_mdm_rde() {
    let cases = [
        (
            "ORM^O01",
            "PID|1\rPV1|1\rORC|NW\rOBR|1\rNTE|1\rOBX|1\rORC|NW\rOBR|2\r",
            "ORM_O01(MSH PATIENT(PID PATIENT_VISIT(PV1)) ORDER(ORC ORDER_DETAIL(OBR NTE OBSERVATION(OBX))) ORDER(ORC ORDER_DETAIL(OBR)))",
        ),
        (
            "VXU^V04",
            "PID|1\rORC|RE\rRXA|0\rRXR|IM\rOBX|1\rOBX|2\rORC|RE\rRXA|0\r",
            "VXU_V04(MSH PID ORDER(ORC RXA RXR OBSERVATION(OBX) OBSERVATION(OBX)) ORDER(ORC RXA))",
        ),
        (
            "SIU^S12",
            "SCH|1\rPID|1\rPV1|1\rRGS|1\rAIS|1\rAIL|1\rAIP|1\rAIP|2\r",
            "SIU_S12(MSH SCH PATIENT(PID PV1) RESOURCES(RGS SERVICE(AIS) LOCATION_RESOURCE(AIL) PERSONNEL_RESOURCE(AIP) PERSONNEL_RESOURCE(AIP)))",
        ),
        (
            "MDM^T02",
            "EVN|T02\rPID|1\rPV1|1\rTXA|1\rOBX|1\rOBX|2\r",
            "MDM_T02(MSH EVN PID PV1 TXA OBSERVATION(OBX) OBSERVATION(OBX))",
        ),
        (
            "RDE^O01",
            "PID|1\rZVI|1\rORC|NW\rRXO|1\rRXR|PO\rRXE|1\rRXR|PO\rOBX|1\r",
            "RDE_O01(MSH PATIENT(PID +ZVI) ORDER(ORC ORDER_DETAIL(RXO RXR) RXE RXR OBSERVATION(OBX)))",
        ),
    ];
    for (t, body, want) in cases {
        let s = format!("MSH|^~\\&|A|B|C|D|2024||{t}|1|P|2.5\r{body}");
        let m = Message::parse(s.as_bytes()).unwrap();
        assert_eq!(render(&m, &m.structure().unwrap()), want, "{t}");
    }
}

#[test]
fn ack_structure() {
    let s = "MSH|^~\\&|A|B|C|D|2024||ACK^A01^ACK|1|P|2.5\rMSA|AE|9\rERR||PID^1^3|101\rERR||PID^1^5|101\r";
    let m = Message::parse(s.as_bytes()).unwrap();
    assert_eq!(render(&m, &m.structure().unwrap()), "ACK(MSH MSA ERR ERR)");
}

#[test]
fn unknown_structures_are_typed_errors() {
    let m = Message::parse(b"MSH|^~\\&|A|B|C|D|2024||ZZZ^Z01|1|P|2.5\r").unwrap();
    let e = m.structure().unwrap_err();
    assert_eq!(e, StructureError::UnsupportedMessageType { code: "ZZZ".into() });
    assert_eq!(e.code().code(), 200);
    let m = Message::parse(b"MSH|^~\\&|A|B|C|D|2024||ADT^Z99|1|P|2.5\r").unwrap();
    assert_eq!(m.structure().unwrap_err().code().code(), 201);
}
