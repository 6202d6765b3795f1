//! Message structures: which segments form which groups (HL7 abstract message syntax), and
//! the trigger-event → structure map of HL7 Table 0354.
//!
//! Definitions are data, written in the notation of the standard (`[ ]` optional, `{ }`
//! repeating, `<A|B>` choice, `NAME:` names a group), parsed once on first use. Grouping is
//! a greedy walk: each segment goes to the innermost open group that can take it at its
//! position (closing inner groups, or starting a new repetition of a group whose first
//! segment it is). Segments the structure does not place — Z-segments, unknown segments,
//! known segments out of order — are kept where they occur, as [`Item::Extra`] of the
//! innermost open group: never dropped.
//!
//! The definitions follow v2.5.1 with the v2.8 additions (PRT, ARV) where they are optional.
//! A few required segments that real senders omit are optional here (ORC in ORM/OML/VXU
//! orders, RGS in SIU, STF in MFN), and the rarely used OML PRIOR_RESULT group is left out
//! because its first segments (PID, OBR) would otherwise capture the next order.

use crate::error::ErrorCode;
use crate::message::Message;
use std::collections::HashMap;
use std::sync::OnceLock;

/// One node of a structure definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A segment (or a choice of segments).
    Segment { names: Vec<String>, optional: bool, repeating: bool },
    /// A named group.
    Group { name: String, optional: bool, repeating: bool, children: Vec<Node> },
}

impl Node {
    fn optional(&self) -> bool {
        match self {
            Node::Segment { optional, .. } | Node::Group { optional, .. } => *optional,
        }
    }

    fn repeating(&self) -> bool {
        match self {
            Node::Segment { repeating, .. } | Node::Group { repeating, .. } => *repeating,
        }
    }

    fn set_flags(&mut self, opt: bool, rep: bool) {
        match self {
            Node::Segment { optional, repeating, .. } | Node::Group { optional, repeating, .. } => {
                *optional |= opt;
                *repeating |= rep;
            }
        }
    }

    /// Whether `seg` can start this node.
    fn starts_with(&self, seg: &str) -> bool {
        match self {
            Node::Segment { names, .. } => names.iter().any(|n| n == seg),
            Node::Group { children, .. } => {
                for c in children {
                    if c.starts_with(seg) {
                        return true;
                    }
                    if !c.optional() {
                        return false;
                    }
                }
                false
            }
        }
    }
}

/// A structure definition that failed to parse (a bug in the table; tested).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("structure definition error at {pos}: {reason}")]
pub struct DefinitionError {
    pub pos: usize,
    pub reason: &'static str,
}

struct DslParser<'s> {
    s: &'s [u8],
    i: usize,
}

impl DslParser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_') {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn fail(&self, reason: &'static str) -> DefinitionError {
        DefinitionError { pos: self.i, reason }
    }

    /// Parses nodes until `close` (or end of input when `close` is `None`).
    fn seq(&mut self, close: Option<u8>) -> Result<Vec<Node>, DefinitionError> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None if close.is_none() => return Ok(out),
                None => return Err(self.fail("unclosed bracket")),
                Some(c) if Some(c) == close => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'[') | Some(b'{') => {
                    let open = self.s[self.i];
                    self.i += 1;
                    let closer = if open == b'[' { b']' } else { b'}' };
                    let mut node = self.inner(closer)?;
                    node.set_flags(open == b'[', open == b'{');
                    out.push(node);
                }
                Some(b'<') => {
                    self.i += 1;
                    let mut names = Vec::new();
                    loop {
                        names.push(self.ident().ok_or_else(|| self.fail("segment expected in choice"))?);
                        match self.peek() {
                            Some(b'|') => self.i += 1,
                            Some(b'>') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(self.fail("'|' or '>' expected")),
                        }
                    }
                    out.push(Node::Segment { names, optional: false, repeating: false });
                }
                Some(_) => {
                    let name = self.ident().ok_or_else(|| self.fail("segment expected"))?;
                    if name.len() != 3 {
                        return Err(self.fail("segment ids have 3 characters"));
                    }
                    out.push(Node::Segment { names: vec![name], optional: false, repeating: false });
                }
            }
        }
    }

    /// The content of brackets: a named group, or a single node.
    fn inner(&mut self, close: u8) -> Result<Node, DefinitionError> {
        let save = self.i;
        if let Some(name) = self.ident()
            && self.peek() == Some(b':')
        {
            self.i += 1;
            let children = self.seq(Some(close))?;
            if children.is_empty() {
                return Err(self.fail("empty group"));
            }
            return Ok(Node::Group { name, optional: false, repeating: false, children });
        }
        self.i = save;
        let mut nodes = self.seq(Some(close))?;
        if nodes.len() != 1 {
            return Err(self.fail("a bracket with several nodes needs a group name"));
        }
        Ok(nodes.remove(0))
    }
}

/// Parses a structure definition written in the abstract message syntax.
pub fn parse_definition(name: &str, dsl: &str) -> Result<Node, DefinitionError> {
    let mut p = DslParser { s: dsl.as_bytes(), i: 0 };
    let children = p.seq(None)?;
    Ok(Node::Group { name: name.to_string(), optional: false, repeating: false, children })
}

const ADT_A01: &str = "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2] [PDA]";
const ADT_A09: &str = "MSH [{SFT}] [UAC] EVN PID [PD1] PV1 [PV2] [{DB1}] [{OBX}] [{DG1}]";
const RDE_O11: &str = "MSH [{SFT}] [UAC] [{NTE}] [PATIENT: PID [PD1] [{PRT}] [{NTE}] [PATIENT_VISIT: PV1 [PV2] [{PRT}]] [{INSURANCE: IN1 [IN2] [IN3]}] [GT1] [{AL1}]] {ORDER: ORC [{PRT}] [{TIMING: TQ1 [{TQ2}]}] [ORDER_DETAIL: RXO [{PRT}] [{NTE}] [{RXR}] [{COMPONENT: RXC [{NTE}]}]] RXE [{PRT}] [{NTE}] [{TIMING_ENCODED: TQ1 [{TQ2}]}] [{RXR}] [{RXC}] [{CDO}] [{OBSERVATION: OBX [{PRT}] [{NTE}]}] [{FT1}] [BLG] [{CTI}]}";
const MDM_T01: &str =
    "MSH [{SFT}] [UAC] EVN PID PV1 [{COMMON_ORDER: ORC [{TIMING: TQ1 [{TQ2}]}] OBR [{NTE}]}] TXA [{CON}]";
const QBP_Q21: &str = "MSH [{SFT}] [UAC] QPD RCP [DSC]";

/// (structure id, definition). Aliases share a definition.
const DEFINITIONS: &[(&str, &str)] = &[
    ("ADT_A01", ADT_A01),
    ("ADT_A02", "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [PDA]"),
    (
        "ADT_A03",
        "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{OBX}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [PDA]",
    ),
    (
        "ADT_A05",
        "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2]",
    ),
    (
        "ADT_A06",
        "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [MRG] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2]",
    ),
    ("ADT_A09", ADT_A09),
    ("ADT_A12", ADT_A09),
    ("ADT_A15", "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{DG1}]"),
    (
        "ADT_A16",
        "MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC]",
    ),
    ("ADT_A17", "MSH [{SFT}] [UAC] EVN {PATIENT: PID [PD1] PV1 [PV2] [{DB1}] [{OBX}]}"),
    ("ADT_A20", "MSH [{SFT}] [UAC] EVN NPU"),
    ("ADT_A21", "MSH [{SFT}] [UAC] EVN PID [PD1] PV1 [PV2] [{DB1}] [{OBX}]"),
    ("ADT_A24", "MSH [{SFT}] [UAC] EVN {PATIENT: PID [PD1] [PV1] [{DB1}]}"),
    ("ADT_A30", "MSH [{SFT}] [UAC] EVN PID [PD1] MRG"),
    ("ADT_A37", "MSH [{SFT}] [UAC] EVN {PATIENT: PID [PV1] [{DB1}]}"),
    ("ADT_A38", "MSH [{SFT}] [UAC] EVN PID [PD1] PV1 [PV2] [{DB1}] [{OBX}] [{DG1}] [DRG]"),
    ("ADT_A39", "MSH [{SFT}] [UAC] EVN {PATIENT: PID [PD1] MRG [PV1]}"),
    ("ADT_A43", "MSH [{SFT}] [UAC] EVN {PATIENT: PID [PD1] MRG}"),
    ("ADT_A45", "MSH [{SFT}] [UAC] EVN PID [PD1] {MERGE_INFO: MRG PV1}"),
    ("ADT_A50", "MSH [{SFT}] [UAC] EVN PID [PD1] MRG PV1"),
    ("ADT_A52", "MSH [{SFT}] [UAC] EVN PID [PD1] PV1 [PV2]"),
    ("ADT_A54", "MSH [{SFT}] [UAC] EVN PID [PD1] [{ROL}] PV1 [PV2] [{ROL}]"),
    ("ADT_A60", "MSH [{SFT}] [UAC] EVN PID [VISIT: PV1 [PV2]] [{ADVERSE_REACTION_GROUP: IAM [{NTE}]}]"),
    ("ADT_A61", "MSH [{SFT}] [UAC] EVN PID [PD1] PV1 [{ROL}] [PV2] [{ROL}]"),
    (
        "ORU_R01",
        "MSH [{SFT}] [UAC] {PATIENT_RESULT: [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{NK1}] [{ARV}] [{PATIENT_OBSERVATION: OBX [{PRT}]}] [VISIT: PV1 [PV2] [{PRT}]]] {ORDER_OBSERVATION: [ORC] OBR [{NTE}] [{PRT}] [{TIMING_QTY: TQ1 [{TQ2}]}] [CTD] [{OBSERVATION: OBX [{PRT}] [{NTE}]}] [{FT1}] [{CTI}] [{SPECIMEN: SPM [{OBX}]}]}} [DSC]",
    ),
    (
        "ORM_O01",
        "MSH [{SFT}] [UAC] [{NTE}] [PATIENT: PID [PD1] [{NTE}] [PATIENT_VISIT: PV1 [PV2]] [{INSURANCE: IN1 [IN2] [IN3]}] [GT1] [{AL1}]] {ORDER: [ORC] [ORDER_DETAIL: <OBR|RQD|RQ1|RXO|ODS|ODT> [{NTE}] [CTD] [{DG1}] [{OBSERVATION: OBX [{NTE}]}]] [{FT1}] [{CTI}] [BLG]}",
    ),
    (
        "OML_O21",
        "MSH [{SFT}] [UAC] [{NTE}] [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{NK1}] [{ARV}] [PATIENT_VISIT: PV1 [PV2] [{PRT}]] [{INSURANCE: IN1 [IN2] [IN3]}] [GT1] [{AL1}]] {ORDER: [ORC] [{PRT}] [{TIMING: TQ1 [{TQ2}]}] [OBSERVATION_REQUEST: OBR [{PRT}] [TCD] [{NTE}] [CTD] [{DG1}] [{OBSERVATION: OBX [{PRT}] [TCD] [{NTE}]}] [{SPECIMEN: SPM [{OBX}] [{CONTAINER: SAC [{OBX}]}]}]] [{FT1}] [{CTI}] [BLG]}",
    ),
    (
        "OMG_O19",
        "MSH [{SFT}] [UAC] [{NTE}] [PATIENT: PID [PD1] [{PRT}] [{NTE}] [PATIENT_VISIT: PV1 [PV2]] [{INSURANCE: IN1 [IN2] [IN3]}] [GT1] [{AL1}]] {ORDER: [ORC] [{PRT}] [{TIMING: TQ1 [{TQ2}]}] OBR [{PRT}] [{NTE}] [CTD] [{DG1}] [{OBSERVATION: OBX [{PRT}] [{NTE}]}] [{SPECIMEN: SPM [{OBX}] [{CONTAINER: SAC [{OBX}]}]}] [{FT1}] [{CTI}] [BLG]}",
    ),
    (
        "OUL_R22",
        "MSH [{SFT}] [UAC] [NTE] [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{PATIENT_OBSERVATION: OBX [{PRT}]}]] [VISIT: PV1 [PV2] [{PRT}]] {SPECIMEN: SPM [{SPECIMEN_OBSERVATION: OBX [{PRT}]}] [{CONTAINER: SAC [INV]}] {ORDER: OBR [ORC] [{PRT}] [{NTE}] [{TIMING_QTY: TQ1 [{TQ2}]}] [{RESULT: OBX [{PRT}] [TCD] [{SID}] [{NTE}]}] [{CTI}]}} [DSC]",
    ),
    (
        "OUL_R23",
        "MSH [{SFT}] [UAC] [NTE] [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{PATIENT_OBSERVATION: OBX [{PRT}]}]] [VISIT: PV1 [PV2] [{PRT}]] {SPECIMEN: SPM [{SPECIMEN_OBSERVATION: OBX [{PRT}]}] {CONTAINER: SAC [INV] {ORDER: OBR [ORC] [{PRT}] [{NTE}] [{TIMING_QTY: TQ1 [{TQ2}]}] [{RESULT: OBX [{PRT}] [TCD] [{SID}] [{NTE}]}] [{CTI}]}}} [DSC]",
    ),
    (
        "OUL_R24",
        "MSH [{SFT}] [UAC] [NTE] [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{PATIENT_OBSERVATION: OBX [{PRT}]}]] [VISIT: PV1 [PV2] [{PRT}]] {ORDER: OBR [ORC] [{PRT}] [{NTE}] [{TIMING: TQ1 [{TQ2}]}] [{SPECIMEN: SPM [{SPECIMEN_OBSERVATION: OBX [{PRT}]}] [{CONTAINER: SAC [INV]}]}] [{RESULT: OBX [{PRT}] [TCD] [{SID}] [{NTE}]}] [{CTI}]} [DSC]",
    ),
    ("RDE_O11", RDE_O11),
    ("RDE_O25", RDE_O11),
    ("RDE_O01", RDE_O11),
    (
        "RDS_O13",
        "MSH [{SFT}] [UAC] [{NTE}] [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{AL1}] [PATIENT_VISIT: PV1 [PV2] [{PRT}]]] {ORDER: ORC [{PRT}] [{TIMING: TQ1 [{TQ2}]}] [ORDER_DETAIL: RXO [{PRT}] [{NTE}] [{RXR}] [{COMPONENT: RXC [{NTE}]}]] [ENCODING: RXE [{PRT}] [{NTE}] [{TIMING_ENCODED: TQ1 [{TQ2}]}] [{RXR}] [{RXC}]] RXD [{PRT}] [{NTE}] [{RXR}] [{RXC}] [{CDO}] [{OBSERVATION: OBX [{PRT}] [{NTE}]}] [{FT1}]}",
    ),
    (
        "RAS_O17",
        "MSH [{SFT}] [UAC] [{NTE}] [PATIENT: PID [PD1] [{NTE}] [{AL1}] [PATIENT_VISIT: PV1 [PV2]]] {ORDER: ORC [{TIMING: TQ1 [{TQ2}]}] [ORDER_DETAIL: RXO [ORDER_DETAIL_SUPPLEMENT: {NTE} {RXR} [COMPONENTS: RXC [{NTE}]]]] [ENCODING: RXE [{TIMING_ENCODED: TQ1 [{TQ2}]}] {RXR} [{RXC}]] {ADMINISTRATION: {RXA} [RXR] [{OBSERVATION: OBX [{NTE}]}]} [{CTI}]}",
    ),
    (
        "VXU_V04",
        "MSH [{SFT}] [UAC] PID [PD1] [{NK1}] [{ARV}] [PATIENT: PV1 [PV2]] [{GT1}] [{INSURANCE: IN1 [IN2] [IN3]}] [{PERSON_OBSERVATION: OBX [{PRT}] [{NTE}]}] [{ORDER: [ORC] [{PRT}] [{TIMING: TQ1 [{TQ2}]}] RXA [RXR] [{OBSERVATION: OBX [{PRT}] [{NTE}]}]}]",
    ),
    (
        "SIU_S12",
        "MSH [{SFT}] [UAC] SCH [{TQ1}] [{NTE}] [{PATIENT: PID [PD1] [PV1] [PV2] [{OBX}] [{DG1}]}] {RESOURCES: [RGS] [{SERVICE: AIS [{NTE}]}] [{GENERAL_RESOURCE: AIG [{NTE}]}] [{LOCATION_RESOURCE: AIL [{NTE}]}] [{PERSONNEL_RESOURCE: AIP [{NTE}]}]}",
    ),
    ("MDM_T01", MDM_T01),
    (
        "MDM_T02",
        "MSH [{SFT}] [UAC] EVN PID PV1 [{COMMON_ORDER: ORC [{TIMING: TQ1 [{TQ2}]}] OBR [{NTE}]}] TXA [{CON}] {OBSERVATION: OBX [{NTE}]}",
    ),
    ("ACK", "MSH [{SFT}] [UAC] MSA [{ERR}]"),
    ("QBP_Q11", QBP_Q21),
    ("QBP_Q21", QBP_Q21),
    ("RSP_K21", "MSH [{SFT}] [UAC] MSA [{ERR}] QAK QPD [QUERY_RESPONSE: PID [PD1] [{NK1}] [QRI]] [DSC]"),
    (
        "DFT_P03",
        "MSH [{SFT}] [UAC] EVN PID [PD1] [{PRT}] [{ROL}] [PV1] [PV2] [{PRT}] [{ROL}] [{DB1}] [{COMMON_ORDER: [ORC] [{TIMING_QUANTITY: TQ1 [{TQ2}]}] [ORDER: OBR [{NTE}]] [{OBSERVATION: OBX [{NTE}]}]}] {FINANCIAL: FT1 [{NTE}] [{PRT}] [{FINANCIAL_PROCEDURE: PR1 [{PRT}] [{ROL}]}] [{FINANCIAL_COMMON_ORDER: [ORC] [{FINANCIAL_TIMING_QUANTITY: TQ1 [{TQ2}]}] [FINANCIAL_ORDER: OBR [{NTE}]] [{FINANCIAL_OBSERVATION: OBX [{NTE}]}]}]} [{DG1}] [DRG] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC]",
    ),
    (
        "BAR_P01",
        "MSH [{SFT}] [UAC] EVN PID [PD1] [{PRT}] [{ROL}] {VISIT: [PV1] [PV2] [{PRT}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{PRT}] [{ROL}]}] [{GT1}] [{NK1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2]}",
    ),
    ("BAR_P02", "MSH [{SFT}] [UAC] EVN {PATIENT: PID [PD1] [PV1] [{DB1}]}"),
    ("BAR_P12", "MSH [{SFT}] [UAC] EVN PID PV1 [{DG1}] [DRG] [{PROCEDURE: PR1 [{PRT}] [{ROL}]}] [{OBX}]"),
    (
        "PPR_PC1",
        "MSH [{SFT}] [UAC] PID [PATIENT_VISIT: PV1 [PV2]] {PROBLEM: PRB [{NTE}] [{VAR}] [{PROBLEM_ROLE: ROL [{VAR}]}] [{PATHWAY: PTH [{VAR}]}] [{PROBLEM_OBSERVATION: OBX [{NTE}]}] [{GOAL: GOL [{NTE}] [{VAR}]}] [{ORDER: ORC [ORDER_DETAIL: <OBR|RXO> [{NTE}] [{VAR}] [{ORDER_OBSERVATION: OBX [{NTE}] [{VAR}]}]]}]}",
    ),
    ("MFN_M02", "MSH [{SFT}] [UAC] MFI {MF_STAFF: MFE [{STF}] [{PRA}] [{ORG}] [{AFF}] [{LAN}] [{EDU}] [{CER}]}"),
    (
        "REF_I12",
        "MSH [{SFT}] [UAC] RF1 [{AUTHORIZATION_CONTACT: AUT [CTD]}] {PROVIDER_CONTACT: PRD [{CTD}]} PID [{NK1}] [{GT1}] [{INSURANCE: IN1 [IN2] [IN3]}] [ACC] [{DG1}] [{DRG}] [{AL1}] [{PROCEDURE: PR1 [AUTHORIZATION: AUT [CTD]]}] [{OBSERVATION: OBR [{NTE}] [{RESULTS_NOTES: OBX [{PRT}] [{NTE}]}]}] [PATIENT_VISIT: PV1 [PV2]] [{NTE}]",
    ),
];

/// HL7 Table 0354 (the part covering the structures above): message code, trigger events,
/// structure.
const TABLE_0354: &[(&str, &str, &str)] = &[
    ("ADT", "A01 A04 A08 A13", "ADT_A01"),
    ("ADT", "A02", "ADT_A02"),
    ("ADT", "A03", "ADT_A03"),
    ("ADT", "A05 A14 A28 A31", "ADT_A05"),
    ("ADT", "A06 A07", "ADT_A06"),
    ("ADT", "A09 A10 A11", "ADT_A09"),
    ("ADT", "A12", "ADT_A12"),
    ("ADT", "A15", "ADT_A15"),
    ("ADT", "A16", "ADT_A16"),
    ("ADT", "A17", "ADT_A17"),
    ("ADT", "A20", "ADT_A20"),
    ("ADT", "A21 A22 A23 A25 A26 A27 A29 A32 A33", "ADT_A21"),
    ("ADT", "A24", "ADT_A24"),
    ("ADT", "A30 A34 A35 A36 A46 A47 A48 A49", "ADT_A30"),
    ("ADT", "A37", "ADT_A37"),
    ("ADT", "A38", "ADT_A38"),
    ("ADT", "A39 A40 A41 A42", "ADT_A39"),
    ("ADT", "A43 A44", "ADT_A43"),
    ("ADT", "A45", "ADT_A45"),
    ("ADT", "A50 A51", "ADT_A50"),
    ("ADT", "A52 A53 A55", "ADT_A52"),
    ("ADT", "A54 A56", "ADT_A54"),
    ("ADT", "A60", "ADT_A60"),
    ("ADT", "A61 A62", "ADT_A61"),
    ("ORU", "R01", "ORU_R01"),
    ("ORM", "O01", "ORM_O01"),
    ("OML", "O21", "OML_O21"),
    ("OMG", "O19", "OMG_O19"),
    ("OUL", "R22", "OUL_R22"),
    ("OUL", "R23", "OUL_R23"),
    ("OUL", "R24", "OUL_R24"),
    ("RDE", "O11", "RDE_O11"),
    ("RDE", "O25", "RDE_O25"),
    ("RDE", "O01", "RDE_O01"),
    ("RDS", "O13", "RDS_O13"),
    ("RAS", "O17", "RAS_O17"),
    ("VXU", "V04", "VXU_V04"),
    ("SIU", "S12 S13 S14 S15 S16 S17 S18 S19 S20 S21 S22 S23 S24 S26 S27", "SIU_S12"),
    ("MDM", "T01 T03 T05 T07 T09 T11", "MDM_T01"),
    ("MDM", "T02 T04 T06 T08 T10", "MDM_T02"),
    ("QBP", "Q11", "QBP_Q11"),
    ("QBP", "Q21 Q22 Q23 Q24 Q25", "QBP_Q21"),
    ("RSP", "K21 K22 K23 K24 K25", "RSP_K21"),
    ("DFT", "P03 P11", "DFT_P03"),
    ("BAR", "P01 P05", "BAR_P01"),
    ("BAR", "P02", "BAR_P02"),
    ("BAR", "P12", "BAR_P12"),
    ("PPR", "PC1 PC2 PC3", "PPR_PC1"),
    ("MFN", "M02", "MFN_M02"),
    ("REF", "I12 I13 I14 I15", "REF_I12"),
];

fn table() -> &'static HashMap<&'static str, Node> {
    static T: OnceLock<HashMap<&'static str, Node>> = OnceLock::new();
    T.get_or_init(|| {
        DEFINITIONS.iter().filter_map(|(id, dsl)| parse_definition(id, dsl).ok().map(|n| (*id, n))).collect()
    })
}

/// Every definition, parsed (or the first error), for tests and tools.
pub fn check_definitions() -> Result<usize, (String, DefinitionError)> {
    for (id, dsl) in DEFINITIONS {
        parse_definition(id, dsl).map_err(|e| (id.to_string(), e))?;
    }
    Ok(DEFINITIONS.len())
}

/// The definition of a structure id such as `ORU_R01`.
pub fn definition(structure: &str) -> Option<&'static Node> {
    table().get(structure)
}

/// The structure for a message code and trigger (Table 0354), e.g. `("ADT", "A04")` →
/// `ADT_A01`. `ACK` maps to `ACK` whatever the trigger.
pub fn structure_for(code: &str, trigger: &str) -> Option<&'static str> {
    if code == "ACK" {
        return Some("ACK");
    }
    TABLE_0354
        .iter()
        .find(|(c, triggers, _)| *c == code && triggers.split(' ').any(|t| t == trigger))
        .map(|(_, _, s)| *s)
}

/// A message whose structure we do not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StructureError {
    #[error("unsupported message type {code:?}")]
    UnsupportedMessageType { code: String },
    #[error("unsupported trigger event {code}^{trigger}")]
    UnsupportedEvent { code: String, trigger: String },
}

impl StructureError {
    /// HL7 Table 0357 code (200 or 201).
    pub fn code(&self) -> ErrorCode {
        match self {
            StructureError::UnsupportedMessageType { .. } => ErrorCode::UnsupportedMessageType,
            StructureError::UnsupportedEvent { .. } => ErrorCode::UnsupportedEventCode,
        }
    }
}

/// A group of a grouped message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub items: Vec<Item>,
}

/// A member of a group. Segment numbers are 1-based positions in the message
/// ([`crate::Segment::index`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Segment(usize),
    Group(Group),
    /// A segment the structure does not place here (Z-segment, unknown, out of order), kept
    /// in place.
    Extra(usize),
}

impl Group {
    /// Direct child groups named `name`.
    pub fn groups<'g>(&'g self, name: &'g str) -> impl Iterator<Item = &'g Group> + 'g {
        self.items.iter().filter_map(move |i| match i {
            Item::Group(g) if g.name == name => Some(g),
            _ => None,
        })
    }

    /// Every group named `name` at any depth, in message order.
    pub fn find_all<'g>(&'g self, name: &str) -> Vec<&'g Group> {
        let mut out = Vec::new();
        fn walk<'g>(g: &'g Group, name: &str, out: &mut Vec<&'g Group>) {
            for i in &g.items {
                if let Item::Group(c) = i {
                    if c.name == name {
                        out.push(c);
                    }
                    walk(c, name, out);
                }
            }
        }
        walk(self, name, &mut out);
        out
    }

    /// Segment numbers directly in this group (extras included), in order.
    pub fn segment_indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.items.iter().filter_map(|i| match i {
            Item::Segment(n) | Item::Extra(n) => Some(*n),
            Item::Group(_) => None,
        })
    }

    /// Every segment number in this group and below, in order.
    pub fn all_segment_indexes(&self) -> Vec<usize> {
        let mut out = Vec::new();
        fn walk(g: &Group, out: &mut Vec<usize>) {
            for i in &g.items {
                match i {
                    Item::Segment(n) | Item::Extra(n) => out.push(*n),
                    Item::Group(c) => walk(c, out),
                }
            }
        }
        walk(self, &mut out);
        out
    }
}

struct Frame<'d> {
    children: &'d [Node],
    child: usize,
    count: usize,
    group: Group,
}

fn close_to(stack: &mut Vec<Frame<'_>>, depth: usize) {
    while stack.len() > depth + 1 {
        let f = stack.pop().expect("depth checked");
        stack.last_mut().expect("depth checked").group.items.push(Item::Group(f.group));
    }
}

/// Descends into `node` (known to start with `seg`) from the frame on top of the stack.
fn enter<'d>(stack: &mut Vec<Frame<'d>>, node: &'d Node, seg: &str, index: usize) {
    match node {
        Node::Segment { .. } => {
            stack.last_mut().expect("non-empty").group.items.push(Item::Segment(index));
        }
        Node::Group { name, children, .. } => {
            stack.push(Frame { children, child: 0, count: 0, group: Group { name: name.clone(), items: Vec::new() } });
            let ci = children.iter().position(|c| c.starts_with(seg)).unwrap_or(0);
            let top = stack.last_mut().expect("just pushed");
            top.child = ci;
            top.count = 1;
            enter(stack, &children[ci], seg, index);
        }
    }
}

/// Groups the segments of `msg` by the structure definition `def`.
pub fn group_with(msg: &Message<'_>, def: &Node) -> Group {
    let Node::Group { name, children, .. } = def else {
        return Group { name: "?".into(), items: Vec::new() };
    };
    let mut stack =
        vec![Frame { children, child: 0, count: 0, group: Group { name: name.clone(), items: Vec::new() } }];
    for seg in msg.segments() {
        let name = seg.name();
        let index = seg.index();
        let mut placed = false;
        'frames: for depth in (0..stack.len()).rev() {
            let (start, cur_count) = (stack[depth].child, stack[depth].count);
            let children = stack[depth].children;
            for (ci, child) in children.iter().enumerate().skip(start) {
                let again = ci == start && cur_count > 0;
                if again && !child.repeating() {
                    continue;
                }
                if child.starts_with(name) {
                    close_to(&mut stack, depth);
                    let f = &mut stack[depth];
                    f.count = if again { f.count + 1 } else { 1 };
                    f.child = ci;
                    enter(&mut stack, child, name, index);
                    placed = true;
                    break 'frames;
                }
            }
        }
        if !placed {
            stack.last_mut().expect("root").group.items.push(Item::Extra(index));
        }
    }
    close_to(&mut stack, 0);
    stack.pop().expect("root").group
}

/// The structure id of a message: MSH-9.3 when it names a known structure, else Table 0354.
pub fn structure_id(msg: &Message<'_>) -> Result<&'static str, StructureError> {
    if let Some(s) = msg.structure_id()
        && let Some((id, _)) = table().get_key_value(s)
    {
        return Ok(id);
    }
    let code = msg.message_type().unwrap_or("");
    let trigger = msg.trigger().unwrap_or("");
    structure_for(code, trigger).ok_or_else(|| {
        if TABLE_0354.iter().any(|(c, _, _)| *c == code) || code == "ACK" {
            StructureError::UnsupportedEvent { code: code.into(), trigger: trigger.into() }
        } else {
            StructureError::UnsupportedMessageType { code: code.into() }
        }
    })
}

impl Message<'_> {
    /// Groups the message's segments by its structure.
    pub fn structure(&self) -> Result<Group, StructureError> {
        let id = structure_id(self)?;
        let def = definition(id).expect("every Table 0354 entry has a definition (tested)");
        Ok(group_with(self, def))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_entry_has_a_definition() {
        check_definitions().unwrap();
        for (_, _, id) in TABLE_0354 {
            assert!(definition(id).is_some(), "{id}");
        }
    }
}
