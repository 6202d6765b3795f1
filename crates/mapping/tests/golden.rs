//! Golden tests per message type over synthetic messages written for these tests (fake names
//! and numbers), with hand-checked expectations on the FHIR output.

use serde_json::Value;

fn convert_with(msg: &str, profiles: &mapping::Profiles) -> (Value, mapping::Conversion) {
    let bytes = msg.replace('\n', "\r");
    let conv = mapping::convert_bytes(bytes.as_bytes(), profiles, "test-tenant").expect("converts");
    let v: Value = serde_json::from_str(&conv.to_bundle_json(false)).expect("valid JSON");
    (v, conv)
}

fn convert(msg: &str) -> (Value, mapping::Conversion) {
    convert_with(msg, &mapping::Profiles::default())
}

/// A segment with the given fields set (1-based), so test messages never miscount pipes.
fn seg(name: &str, fields: &[(usize, &str)]) -> String {
    let n = fields.iter().map(|f| f.0).max().unwrap_or(0);
    let mut v = vec![""; n + 1];
    v[0] = name;
    for &(i, x) in fields {
        v[i] = x;
    }
    v.join("|")
}

fn all<'a>(b: &'a Value, rtype: &str) -> Vec<&'a Value> {
    b["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).filter(|r| r["resourceType"] == rtype).collect()
}

fn one<'a>(b: &'a Value, rtype: &str) -> &'a Value {
    let v = all(b, rtype);
    assert_eq!(v.len(), 1, "expected one {rtype}, found {}", v.len());
    v[0]
}

fn by_ref<'a>(b: &'a Value, reference: &Value) -> &'a Value {
    let r = reference["reference"].as_str().expect("a reference");
    b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["fullUrl"] == r)
        .map(|e| &e["resource"])
        .unwrap_or_else(|| panic!("{r} not in bundle"))
}

fn obs_by_code<'a>(b: &'a Value, code: &str) -> &'a Value {
    all(b, "Observation")
        .into_iter()
        .find(|o| o["code"]["coding"][0]["code"] == code)
        .unwrap_or_else(|| panic!("no Observation {code}"))
}

const ORU: &str = "MSH|^~\\&|LAB|ACME|EHR|ACME|20240310093000-0500||ORU^R01^ORU_R01|CTRL-1|P|2.5.1
PID|1||MRN123^^^ACME&2.16.840.1.113883.3.999&ISO^MR~999-00-1234^^^SSA^SS||O\\T\\BRIEN^MARY^ANN^^^^L||19800215|F|||12 Main St\\S\\Apt 3^^Springfield^IL^62701^USA^H||^PRN^PH^^1^217^5550100
PV1|1|O|CLINIC^^^ACME||||1234^Welby^Marcus^^^^^^ACME
ORC|RE|PL1^EHR|FL1^LAB
OBR|1|PL1^EHR|FL1^LAB|24331-1^Lipid panel^LN|||20240310083000-0500|||||||||||||||20240310090000-0500|||F
NTE|1||Fasting specimen\\.br\\second line
OBX|1|NM|2093-3^Cholesterol^LN||196|mg/dL^mg/dL^UCUM|<200|H|||F|||20240310083000-0500
NTE|1||Repeat advised
OBX|2|SN|33914-3^eGFR^LN||>^60|mL/min/{1.73_m2}^mL/min/1.73m2^UCUM|>=60|N|||F
OBX|3|SN|5196-1^Titer^LN||^1^:^128||||||F
OBX|4|SN|2345-7^Glucose range^LN||^10^-^20|mg/dL^mg/dL^UCUM|||||F
OBX|5|ST|8251-1^Comment^LN||Positive \\T\\ confirmed||||||C
OBX|6|TX|11526-1^Report^LN||line one\\.br\\line two~line three||||||F
OBX|7|CWE|600-7^Culture^LN||260373001^Detected^SCT||||||F
OBX|8|DT|11778-8^Delivery date^LN||20240301||||||F
OBX|9|NM|2571-8^Triglyceride^LN||||||||X
OBX|10|NM|1975-2^Bilirubin^LN||1.50|mg/dL^^L|0.2-1.2|HH|||P
SPM|1|SP1&LAB||119297000^Blood^SCT|||||||||||||20240310080000-0500
OBX|11|NM|3167-4^Specimen volume^LN||5|mL^mL^UCUM|||||F
";

fn two_obr_msg() -> String {
    "MSH|^~\\&|LAB|ACME|EHR|ACME|20240310093000-0500||ORU^R01|CTRL-2|P|2.5.1
PID|1||MRN123^^^ACME^MR||DOE^JANE||19800215|F
OBR|1|SAME-1^EHR||1111-1^First^LN|||20240310083000-0500|||||||||||||||||F
OBX|1|NM|2093-3^Cholesterol^LN||196|mg/dL^mg/dL^UCUM|||||F
OBR|2|SAME-1^EHR||2222-2^Second^LN|||20240310083000-0500|||||||||||||||||F
OBX|1|NM|2093-3^Cholesterol^LN||205|mg/dL^mg/dL^UCUM|||||F
"
    .to_string()
}

fn merge_msg() -> String {
    "MSH|^~\\&|ADT|GH|EHR|GH|20240601120000+0200||ADT^A40^ADT_A39|M-1|P|2.5
EVN|A40|20240601120000+0200
PID|1||KEEP-1^^^GH^MR||SMITH^JOHN||19700101|M
MRG|OLD-9^^^GH^MR
"
    .to_string()
}

fn clinical_msg() -> String {
    let in1 = seg(
        "IN1",
        &[
            (1, "1"),
            (2, "PLAN-A^Gold"),
            (3, "INS-1^^^GH"),
            (4, "Acme Insurance"),
            (8, "GRP-7"),
            (12, "20240101"),
            (13, "20241231"),
            (17, "SEL"),
            (22, "1"),
            (36, "POL-123"),
        ],
    );
    format!(
        "MSH|^~\\&|ADT|GH|EHR|GH|20240601120000+0200||ADT^A01|X-1|P|2.5
PID|1||55555^^^GH^MR||SMITH^JOHN||19700101|M
NK1|1|SMITH^JANE|SPO^Spouse^HL70063||^PRN^PH^^^555^1234567
PV1|1|I|WARD1
AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives~Wheezing|20200101
DG1|1||I10^Essential hypertension^I10||20240601|A
PR1|1||0DTJ4ZZ^Appendectomy^I10P||20240602
{in1}
"
    )
}

fn vxu_msg() -> String {
    let rxa = seg(
        "RXA",
        &[
            (1, "0"),
            (2, "1"),
            (3, "20240415100000-0400"),
            (5, "08^Hep B, adolescent or pediatric^CVX"),
            (6, "0.5"),
            (7, "mL^mL^UCUM"),
            (9, "00^New immunization record^NIP001"),
            (15, "LOT-42"),
            (17, "MSD^Merck^MVX"),
            (20, "CP"),
            (21, "A"),
        ],
    );
    format!(
        "MSH|^~\\&|IIS|CLINIC|REG|STATE|20240415103000-0400||VXU^V04^VXU_V04|V-1|P|2.5.1
PID|1||IZ-77^^^CLINIC^MR||DOE^BABY||20230101|F
ORC|RE||IZ-ORDER-1^CLINIC
{rxa}
RXR|IM^Intramuscular^HL70162|LA^Left Arm^HL70163
OBX|1|CE|64994-7^Vaccine funding program eligibility category^LN|1|V02^VFC eligible^HL70064||||||F
"
    )
}

fn rde_msg() -> String {
    let rxe = seg(
        "RXE",
        &[
            (1, "^Q6H^^20240601"),
            (2, "00093-7146-56^Amoxicillin 500 MG Oral Capsule^NDC"),
            (3, "500"),
            (5, "mg^mg^UCUM"),
            (6, "CAP^Capsule"),
            (7, "^Take with food"),
            (10, "30"),
            (11, "CAP^Capsule"),
            (12, "2"),
        ],
    );
    format!(
        "MSH|^~\\&|PHARM|GH|EHR|GH|20240601120000+0200||RDE^O11^RDE_O11|R-1|P|2.5
PID|1||55555^^^GH^MR||SMITH^JOHN||19700101|M
ORC|NW|P-1^EHR|||||||20240601110000+0200|||1234^Welby^Marcus
{rxe}
RXR|PO^Oral^HL70162
"
    )
}

fn siu_msg() -> String {
    "MSH|^~\\&|SCHED|GH|EHR|GH|20240601120000+0200||SIU^S12^SIU_S12|S-1|P|2.5
SCH|APT-1^SCHED|APT-F1^SCHED|||||ROUTINE^Routine^HL70276|Normal^Normal^HL70277|30|MIN|^^30^20240610090000+0200^20240610093000+0200|||||||||||||Booked
PID|1||55555^^^GH^MR||SMITH^JOHN||19700101|M
RGS|1
AIS|1||CONSULT^Consultation
AIP|1||1234^Welby^Marcus
AIL|1||ROOM5^^^GH
".to_string()
}

fn mdm_msg() -> String {
    let txa = seg(
        "TXA",
        &[
            (1, "1"),
            (2, "DS"),
            (3, "TX"),
            (4, "20240601110000+0200"),
            (5, "1234^Welby^Marcus"),
            (12, "DOC-1^DOCS"),
            (17, "AU"),
            (19, "AV"),
        ],
    );
    format!(
        "MSH|^~\\&|DOCS|GH|EHR|GH|20240601120000+0200||MDM^T02^MDM_T02|D-1|P|2.5
EVN|T02|20240601120000+0200
PID|1||55555^^^GH^MR||SMITH^JOHN||19700101|M
PV1|1|O
{txa}
OBX|1|TX|||Discharge summary line 1
OBX|2|TX|||Line 2 with \\T\\ ampersand
"
    )
}

fn orm_msg() -> String {
    "MSH|^~\\&|EHR|GH|LAB|GH|20240601120000+0200||ORM^O01|O-1|P|2.3
PID|1||55555^^^GH^MR||SMITH^JOHN||19700101|M
ORC|NW|ORD-1^EHR||||||^^^20240602080000+0200^^S|20240601115000+0200|||1234^Welby^Marcus
OBR|1|ORD-1^EHR||80061^Lipid panel^C4|||||||||||||||||||||||^^^20240602080000+0200^^S
NTE|1||Patient fasting
"
    .to_string()
}

#[test]
fn oru_r01_results_values_units_ranges_and_specimen_group() {
    let (b, conv) = convert(ORU);
    assert_eq!(b["type"], "message");
    assert_eq!(b["timestamp"], "2024-03-10T09:30:00-05:00");
    assert_eq!(b["entry"][0]["resource"]["resourceType"], "MessageHeader");
    assert_eq!(b["entry"][0]["resource"]["eventCoding"]["code"], "R01");

    // Patient: identifiers with types and systems, escaped name and address decoded.
    let p = one(&b, "Patient");
    assert_eq!(p["identifier"][0]["value"], "MRN123");
    assert_eq!(p["identifier"][0]["system"], "urn:oid:2.16.840.1.113883.3.999");
    assert_eq!(p["identifier"][0]["type"]["coding"][0]["code"], "MR");
    assert_eq!(p["identifier"][1]["type"]["coding"][0]["code"], "SS");
    assert_eq!(p["name"][0]["family"], "O&BRIEN");
    assert_eq!(p["name"][0]["given"], serde_json::json!(["MARY", "ANN"]));
    assert_eq!(p["name"][0]["use"], "usual");
    assert_eq!(p["address"][0]["line"][0], "12 Main St^Apt 3");
    assert_eq!(p["address"][0]["use"], "home");
    assert_eq!(p["gender"], "female");
    assert_eq!(p["birthDate"], "1980-02-15");
    assert_eq!(p["telecom"][0]["value"], "+1 (217) 5550100");

    let enc = one(&b, "Encounter");
    assert_eq!(enc["class"]["code"], "AMB");
    assert_eq!(enc["participant"][0]["type"][0]["coding"][0]["code"], "ATND");
    assert_eq!(by_ref(&b, &enc["participant"][0]["individual"])["name"][0]["family"], "Welby");

    // Report and order.
    let dr = one(&b, "DiagnosticReport");
    assert_eq!(dr["status"], "final");
    assert_eq!(dr["code"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(dr["effectiveDateTime"], "2024-03-10T08:30:00-05:00");
    assert_eq!(dr["issued"], "2024-03-10T09:00:00-05:00");
    assert_eq!(dr["result"].as_array().unwrap().len(), 11, "every OBX is a result, the specimen one too");
    let sr = one(&b, "ServiceRequest");
    assert_eq!(sr["note"][0]["text"], "Fasting specimen\nsecond line");
    assert_eq!(by_ref(&b, &dr["basedOn"][0])["id"], sr["id"]);
    let ids: Vec<&str> =
        sr["identifier"].as_array().unwrap().iter().map(|i| i["type"]["coding"][0]["code"].as_str().unwrap()).collect();
    assert_eq!(ids, ["PLAC", "FILL"]);

    // NM with UCUM unit, range, interpretation, note.
    let chol = obs_by_code(&b, "2093-3");
    assert_eq!(
        chol["valueQuantity"],
        serde_json::json!({"value": 196, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"})
    );
    assert_eq!(chol["referenceRange"][0]["text"], "<200");
    assert!(chol["referenceRange"][0].get("high").is_none(), "'<200' is exclusive: not an inclusive high");
    assert_eq!(chol["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(
        chol["interpretation"][0]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    );
    assert_eq!(chol["status"], "final");
    assert_eq!(chol["note"][0]["text"], "Repeat advised");
    assert_eq!(chol["effectiveDateTime"], "2024-03-10T08:30:00-05:00");
    // SN: comparator, ratio, range.
    let egfr = obs_by_code(&b, "33914-3");
    assert_eq!(egfr["valueQuantity"]["comparator"], ">");
    assert_eq!(egfr["valueQuantity"]["value"], 60);
    assert_eq!(egfr["referenceRange"][0]["low"]["value"], 60);
    let titer = obs_by_code(&b, "5196-1");
    assert_eq!(titer["valueRatio"]["numerator"]["value"], 1);
    assert_eq!(titer["valueRatio"]["denominator"]["value"], 128);
    let glu = obs_by_code(&b, "2345-7");
    assert_eq!(glu["valueRange"]["low"]["value"], 10);
    assert_eq!(glu["valueRange"]["high"]["value"], 20);
    // ST / TX with escapes, corrected status.
    let st = obs_by_code(&b, "8251-1");
    assert_eq!(st["valueString"], "Positive & confirmed");
    assert_eq!(st["status"], "corrected");
    assert_eq!(obs_by_code(&b, "11526-1")["valueString"], "line one\nline two\nline three");
    // CWE, DT.
    let cwe = obs_by_code(&b, "600-7");
    assert_eq!(cwe["valueCodeableConcept"]["coding"][0]["system"], "http://snomed.info/sct");
    assert_eq!(cwe["valueCodeableConcept"]["coding"][0]["code"], "260373001");
    assert_eq!(obs_by_code(&b, "11778-8")["valueDateTime"], "2024-03-01");
    // No value, cancelled.
    let tg = obs_by_code(&b, "2571-8");
    assert_eq!(tg["status"], "cancelled");
    assert_eq!(tg["dataAbsentReason"]["coding"][0]["code"], "not-performed");
    assert!(tg.get("valueQuantity").is_none());
    // Non-UCUM unit stays text; precision kept; critical flag; preliminary.
    let bili = obs_by_code(&b, "1975-2");
    assert!(
        conv.to_bundle_json(false).contains(r#""valueQuantity":{"value":1.50,"unit":"mg/dL","#),
        "1.50 keeps its digits"
    );
    assert_eq!(bili["valueQuantity"]["unit"], "mg/dL");
    assert_ne!(bili["valueQuantity"]["system"], "http://unitsofmeasure.org", "a local (L) unit is not claimed as UCUM");
    assert!(bili["valueQuantity"]["system"].as_str().unwrap().starts_with("urn:arteria:v2:codesystem:"));
    assert_eq!(bili["referenceRange"][0]["low"]["value"].to_string(), "0.2");
    assert_eq!(bili["referenceRange"][0]["high"]["value"].to_string(), "1.2");
    assert_eq!(bili["interpretation"][0]["coding"][0]["code"], "HH");
    assert_eq!(bili["status"], "preliminary");
    // The OBX after SPM is mapped, with the specimen.
    let spm_obs = obs_by_code(&b, "3167-4");
    let spec = by_ref(&b, &spm_obs["specimen"]);
    assert_eq!(spec["resourceType"], "Specimen");
    assert_eq!(spec["type"]["coding"][0]["code"], "119297000");
    assert_eq!(spec["collection"]["collectedDateTime"], "2024-03-10T08:00:00-05:00");
    assert!(chol.get("specimen").is_none(), "OBX before the SPM is not in the specimen group");
    assert_eq!(dr["specimen"][0]["reference"], spm_obs["specimen"]["reference"]);

    // Provenance last, targets resolvable.
    let prov = b["entry"].as_array().unwrap().last().unwrap();
    assert_eq!(prov["resource"]["resourceType"], "Provenance");
    for t in prov["resource"]["target"].as_array().unwrap() {
        by_ref(&b, t);
    }
    assert_eq!(conv.message_type, "ORU^R01");
    // Everything was mapped except OBX-4-like fields not present here: nothing unmapped.
    assert!(conv.coverage.unmapped_segments.is_empty(), "{:?}", conv.coverage.unmapped_segments);
}

#[test]
fn two_obrs_with_the_same_placer_number_do_not_collide() {
    let msg = &two_obr_msg();
    let (b, _) = convert(msg);
    let drs = all(&b, "DiagnosticReport");
    let srs = all(&b, "ServiceRequest");
    assert_eq!((drs.len(), srs.len()), (2, 2));
    assert_ne!(drs[0]["id"], drs[1]["id"]);
    assert_ne!(srs[0]["id"], srs[1]["id"]);
    let obs = all(&b, "Observation");
    assert_ne!(obs[0]["id"], obs[1]["id"]);
    // Each report keeps its own result.
    assert_eq!(by_ref(&b, &drs[0]["result"][0])["valueQuantity"]["value"], 196);
    assert_eq!(by_ref(&b, &drs[1]["result"][0])["valueQuantity"]["value"], 205);
    let urls: std::collections::HashSet<&str> =
        b["entry"].as_array().unwrap().iter().map(|e| e["fullUrl"].as_str().unwrap()).collect();
    assert_eq!(urls.len(), b["entry"].as_array().unwrap().len(), "fullUrls unique");
    // Deterministic: the same message gives the same ids; another tenant other ids.
    let (again, _) = convert(msg);
    assert_eq!(again, b);
    let other =
        mapping::convert_bytes(msg.replace('\n', "\r").as_bytes(), &mapping::Profiles::default(), "other-tenant")
            .unwrap();
    assert_ne!(
        other.id,
        mapping::convert_bytes(msg.replace('\n', "\r").as_bytes(), &mapping::Profiles::default(), "test-tenant")
            .unwrap()
            .id
    );
}

/// Event resources of messages sent in the same second share their ids' first eight digits
/// (storage locality), master data does not, and the digits do not show the time.
#[test]
fn event_ids_of_one_second_share_a_lead_that_hides_the_time() {
    let leads = |msg: &str| -> (Vec<String>, String) {
        let (b, _) = convert(msg);
        let ids = |t: &str| all(&b, t).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        let mut events = ids("Observation");
        events.extend(ids("DiagnosticReport"));
        events.extend(ids("ServiceRequest"));
        events.extend(ids("MessageHeader"));
        assert!(events.len() >= 4);
        (events, ids("Patient").remove(0))
    };
    let (first, patient) = leads(ORU);
    let lead = &first[0][..8];
    assert!(first.iter().all(|id| &id[..8] == lead), "{first:?}");
    assert_ne!(&patient[..8], lead, "master data keeps the plain hash");
    assert!(!lead.contains("2024") && !lead.contains("0930"));

    // Another message (another control id) in the same second, with another fraction: the
    // same lead, other ids. A second later: another lead.
    let (same_second, _) =
        leads(&ORU.replace("20240310093000-0500||ORU", "20240310093000.25-0500||ORU").replace("CTRL-1", "CTRL-2"));
    assert!(same_second.iter().all(|id| &id[..8] == lead));
    assert!(same_second.iter().all(|id| !first.contains(id)));
    let (next_second, _) = leads(&ORU.replace("20240310093000-0500||ORU", "20240310093001-0500||ORU"));
    assert!(next_second.iter().all(|id| &id[..8] != lead));
    assert_eq!(
        first.iter().map(|i| &i[8..]).collect::<Vec<_>>(),
        next_second.iter().map(|i| &i[8..]).collect::<Vec<_>>(),
        "after the lead, the ids are the key's (sender, control id, position)"
    );
}

fn adt(trigger: &str, admit: Option<&str>, discharge: Option<&str>) -> String {
    let mut pv1 = vec![(1, "1"), (2, "I"), (3, "WARD1^101^B^GH"), (10, "MED"), (14, "7"), (19, "V-1^^^GH^VN")];
    pv1.extend(admit.map(|a| (44, a)));
    pv1.extend(discharge.map(|d| (45, d)));
    format!(
        "MSH|^~\\&|ADT|GH|EHR|GH|20240601120000+0200||ADT^{trigger}^ADT_A01|C-{trigger}|P|2.5
EVN|{trigger}|20240601120000+0200
PID|1||55555^^^GH^MR||SMITH^JOHN^Q||19700101|M
{}
",
        seg("PV1", &pv1)
    )
}

#[test]
fn adt_encounter_status_class_period_by_trigger() {
    let (adm, dis) = (Some("20240601080000+0200"), Some("20240605170000+0200"));
    let (b, _) = convert(&adt("A01", adm, None));
    let e = one(&b, "Encounter");
    assert_eq!(e["status"], "in-progress");
    assert_eq!(e["class"]["code"], "IMP");
    assert_eq!(e["class"]["system"], "http://terminology.hl7.org/CodeSystem/v3-ActCode");
    assert_eq!(e["period"]["start"], "2024-06-01T08:00:00+02:00");
    assert_eq!(e["identifier"][0]["value"], "V-1");
    let bed = by_ref(&b, &e["location"][0]["location"]);
    assert_eq!(bed["name"], "B");
    assert_eq!(by_ref(&b, &bed["partOf"])["name"], "101");
    let a01_id = e["id"].clone();

    let (b, _) = convert(&adt("A03", adm, dis));
    let e = one(&b, "Encounter");
    assert_eq!(e["status"], "finished");
    assert_eq!(e["period"]["end"], "2024-06-05T17:00:00+02:00");
    assert_eq!(e["id"], a01_id, "the visit number keys the Encounter across messages");

    let (b, _) = convert(&adt("A08", adm, dis));
    assert_eq!(one(&b, "Encounter")["status"], "finished", "A08 takes the status from the dates");

    let (b, _) = convert(&adt("A11", adm, None));
    let e = one(&b, "Encounter");
    assert_eq!(e["status"], "entered-in-error", "cancel admit: the encounter did not happen");
    assert_eq!(e["id"], a01_id);

    let (b, conv) = convert(&adt("A13", adm, dis));
    let e = one(&b, "Encounter");
    assert_eq!(e["status"], "in-progress", "cancel discharge: back in progress (IG Event[EncounterStatus])");
    assert!(e["period"].get("end").is_none());
    assert!(
        conv.coverage.notes.iter().any(|n| n.place.segment == "PV1" && n.place.field == Some(45)),
        "the dropped end is reported"
    );

    let (b, _) = convert(&adt("A04", None, None));
    assert_eq!(one(&b, "Encounter")["status"], "planned");
    assert_eq!(one(&b, "Patient")["gender"], "male");
}

#[test]
fn adt_a40_merge_links_both_patients() {
    let msg = &merge_msg();
    let (b, _) = convert(msg);
    let pats = all(&b, "Patient");
    assert_eq!(pats.len(), 2);
    let survivor = pats.iter().find(|p| p["identifier"][0]["value"] == "KEEP-1").unwrap();
    let old = pats.iter().find(|p| p["identifier"][0]["value"] == "OLD-9").unwrap();
    assert_eq!(survivor["link"][0]["type"], "replaces");
    assert_eq!(by_ref(&b, &survivor["link"][0]["other"])["id"], old["id"]);
    assert_eq!(old["link"][0]["type"], "replaced-by");
    assert_eq!(by_ref(&b, &old["link"][0]["other"])["id"], survivor["id"]);
    assert_eq!(old["active"], false);
    // The old Patient's id is the one a message about OLD-9 would have produced.
    let (earlier, _) = convert(
        "MSH|^~\\&|ADT|GH|EHR|GH|20240101120000+0200||ADT^A04|E-1|P|2.5\nPID|1||OLD-9^^^GH^MR||SMITH^J||19700101|M\n",
    );
    assert_eq!(one(&earlier, "Patient")["id"], old["id"]);
}

#[test]
fn adt_allergy_diagnosis_procedure_insurance_next_of_kin() {
    let msg = &clinical_msg();
    let (b, conv) = convert(msg);
    let a = one(&b, "AllergyIntolerance");
    assert_eq!(a["category"][0], "medication");
    assert_eq!(a["type"], "allergy");
    assert_eq!(a["criticality"], "high");
    assert_eq!(a["code"]["coding"][0]["system"], "http://www.nlm.nih.gov/research/umls/rxnorm");
    assert_eq!(a["reaction"][0]["manifestation"][1]["text"], "Wheezing");
    assert_eq!(a["reaction"][0]["severity"], "severe");
    assert_eq!(a["onsetDateTime"], "2020-01-01");
    let c = one(&b, "Condition");
    assert_eq!(c["code"]["coding"][0]["system"], "http://hl7.org/fhir/sid/icd-10");
    assert_eq!(c["code"]["coding"][0]["code"], "I10");
    assert_eq!(c["onsetDateTime"], "2024-06-01");
    let p = one(&b, "Procedure");
    assert_eq!(p["status"], "completed");
    assert_eq!(p["performedDateTime"], "2024-06-02");
    let cov = one(&b, "Coverage");
    assert_eq!(cov["payor"][0]["display"], "Acme Insurance");
    assert_eq!(cov["relationship"]["coding"][0]["code"], "self");
    assert_eq!(cov["period"], serde_json::json!({"start": "2024-01-01", "end": "2024-12-31"}));
    assert_eq!(cov["identifier"][0]["value"], "POL-123");
    let rp = one(&b, "RelatedPerson");
    assert_eq!(rp["relationship"][0]["coding"][0]["code"], "SPO");
    assert_eq!(rp["name"][0]["given"][0], "JANE");
    assert!(conv.coverage.unmapped_segments.is_empty());
}

#[test]
fn vxu_immunization_cvx_lot_manufacturer_route() {
    let msg = &vxu_msg();
    let (b, _) = convert(msg);
    let im = one(&b, "Immunization");
    assert_eq!(im["status"], "completed");
    assert_eq!(im["vaccineCode"]["coding"][0]["system"], "http://hl7.org/fhir/sid/cvx");
    assert_eq!(im["vaccineCode"]["coding"][0]["code"], "08");
    assert_eq!(im["occurrenceDateTime"], "2024-04-15T10:00:00-04:00");
    assert_eq!(im["lotNumber"], "LOT-42");
    assert_eq!(im["primarySource"], true);
    assert_eq!(im["doseQuantity"]["value"], 0.5);
    assert_eq!(im["route"]["coding"][0]["code"], "IM");
    assert_eq!(im["site"]["coding"][0]["code"], "LA");
    let mfr = by_ref(&b, &im["manufacturer"]);
    assert_eq!(mfr["name"], "Merck");
    assert_eq!(mfr["identifier"][0]["value"], "MSD");
    assert_eq!(im["identifier"][0]["value"], "IZ-ORDER-1");
    let o = one(&b, "Observation");
    assert_eq!(o["partOf"][0]["reference"], format!("urn:uuid:{}", im["id"].as_str().unwrap()));
}

#[test]
fn rde_medication_request_codes_and_dose() {
    let msg = &rde_msg();
    let (b, _) = convert(msg);
    let m = one(&b, "MedicationRequest");
    assert_eq!(m["status"], "active");
    assert_eq!(m["intent"], "order");
    assert_eq!(m["medicationCodeableConcept"]["coding"][0]["system"], "http://hl7.org/fhir/sid/ndc");
    assert_eq!(m["medicationCodeableConcept"]["coding"][0]["code"], "00093-7146-56");
    assert_eq!(m["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"], 500);
    assert_eq!(m["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["code"], "mg");
    assert_eq!(m["dosageInstruction"][0]["route"]["coding"][0]["code"], "PO");
    assert_eq!(m["dosageInstruction"][0]["timing"]["code"]["text"], "Q6H");
    assert_eq!(m["dispenseRequest"]["quantity"]["value"], 30);
    assert_eq!(m["dispenseRequest"]["numberOfRepeatsAllowed"], 2);
    assert_eq!(m["authoredOn"], "2024-06-01T11:00:00+02:00");
    assert_eq!(by_ref(&b, &m["requester"])["name"][0]["family"], "Welby");
}

#[test]
fn siu_appointment_and_mdm_document() {
    let siu = &siu_msg();
    let (b, _) = convert(siu);
    let a = one(&b, "Appointment");
    assert_eq!(a["status"], "booked");
    assert_eq!(a["start"], "2024-06-10T09:00:00+02:00");
    assert_eq!(a["end"], "2024-06-10T09:30:00+02:00");
    assert_eq!(a["minutesDuration"], 30);
    assert_eq!(a["serviceType"][0]["coding"][0]["code"], "CONSULT");
    let actors: Vec<&str> = a["participant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| by_ref(&b, &p["actor"])["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["Patient", "Practitioner", "Location"]);

    let mdm = &mdm_msg();
    let (b, _) = convert(mdm);
    let d = one(&b, "DocumentReference");
    assert_eq!(d["status"], "current");
    assert_eq!(d["docStatus"], "final");
    assert_eq!(d["type"]["coding"][0]["code"], "DS");
    assert_eq!(d["masterIdentifier"]["value"], "DOC-1");
    assert_eq!(d["date"], "2024-06-01T11:00:00+02:00");
    let data = d["content"][0]["attachment"]["data"].as_str().unwrap();
    assert_eq!(data, mapping::datatypes::base64("Discharge summary line 1\nLine 2 with & ampersand".as_bytes()));
}

#[test]
fn orm_order_is_a_service_request() {
    let msg = &orm_msg();
    let (b, _) = convert(msg);
    assert!(all(&b, "DiagnosticReport").is_empty(), "an order is not a report");
    let sr = one(&b, "ServiceRequest");
    assert_eq!(sr["status"], "active");
    assert_eq!(sr["intent"], "order");
    assert_eq!(sr["priority"], "stat");
    assert_eq!(sr["code"]["coding"][0]["system"], "http://www.ama-assn.org/go/cpt");
    assert_eq!(sr["occurrenceDateTime"], "2024-06-02T08:00:00+02:00");
    assert_eq!(sr["note"][0]["text"], "Patient fasting");
}

#[test]
fn sender_profile_zone_identifier_system_and_z_segments() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("acme.toml"),
        "name = 'acme-lab'\napplication = 'LAB'\ntime_zone = 'America/Chicago'\nignore_fields = ['PID-2']\n\
         [identifier_systems]\nACME = 'urn:oid:2.16.840.1.113883.3.999.1'\n\
         [code_systems]\n'99ACME' = 'http://acme.example/fhir/CodeSystem/lab'\n\
         [[z_segments]]\nsegment = 'ZPI'\nfield = 2\ntarget = 'Patient'\nurl = 'http://acme.example/fhir/StructureDefinition/pet-name'\n",
    )
    .unwrap();
    let profiles = mapping::Profiles::load_dir(dir.path()).unwrap();
    let msg = "MSH|^~\\&|LAB|ACME|EHR|ACME|20240115083000||ORU^R01|Z-1|P|2.5.1
PID|1|OLDID|MRN1^^^ACME^MR||DOE^JANE||19800215|F
ZPI|1|Rex
OBR|1|PL1||X1^Local panel^99ACME|||202407150830|||||||||||||||||F
OBX|1|NM|X2^Local test^99ACME||7|||||||F
";
    let (b, conv) = convert_with(msg, &profiles);
    assert_eq!(conv.profile.as_deref(), Some("acme-lab"));
    // Times without offset get the profile's zone (CST in January, CDT in July).
    assert_eq!(b["timestamp"], "2024-01-15T08:30:00-06:00");
    assert_eq!(one(&b, "DiagnosticReport")["effectiveDateTime"], "2024-07-15T08:30:00-05:00");
    assert!(conv.coverage.times.iter().any(|t| &*t.original == "20240115083000"), "original string kept");
    let p = one(&b, "Patient");
    assert_eq!(p["identifier"][0]["system"], "urn:oid:2.16.840.1.113883.3.999.1");
    assert_eq!(p["extension"][0]["url"], "http://acme.example/fhir/StructureDefinition/pet-name");
    assert_eq!(p["extension"][0]["valueString"], "Rex");
    assert_eq!(obs_by_code(&b, "X2")["code"]["coding"][0]["system"], "http://acme.example/fhir/CodeSystem/lab");
    assert!(
        conv.coverage.notes.iter().any(|n| n.kind == mapping::coverage::NoteKind::Ignored && n.place.field == Some(2))
    );
    assert!(!conv.coverage.notes.iter().any(|n| n.kind == mapping::coverage::NoteKind::ZoneAssumed));

    // Without a profile the fallback zone is used and that is reported.
    let (b, conv) = convert(msg);
    assert_eq!(b["timestamp"], "2024-01-15T08:30:00+00:00");
    assert!(conv.coverage.notes.iter().any(|n| n.kind == mapping::coverage::NoteKind::ZoneAssumed));
    assert!(conv.coverage.unmapped_segments.iter().any(|p| p.segment == "ZPI"), "unknown Z-segment reported");
}

#[test]
fn unmapped_segments_and_fields_are_reported() {
    let msg = "MSH|^~\\&|ADT|GH|EHR|GH|20240601120000+0200||ADT^A01|U-1|P|2.5
PID|1||55555^^^GH^MR||SMITH^JOHN||19700101|M||2106-3^White^HL70005|||||||||||||||||Y
PV1|1|I|WARD1
ZZZ|1|secret
GT1|1||SMITH^JOHN
";
    let (_, conv) = convert(msg);
    let c = &conv.coverage;
    let segs: Vec<(String, usize)> = c.unmapped_segments.iter().map(|p| (p.segment.to_string(), p.index)).collect();
    assert_eq!(segs, [("ZZZ".to_string(), 4), ("GT1".to_string(), 5)]);
    assert!(
        c.unmapped_fields.iter().any(|p| p.segment == "PID" && p.field == Some(27)),
        "PID-27 veterans military status is not mapped and must be listed"
    );
    assert!(!c.mentions(2, Some(10)), "PID-10 race is mapped (to a Patient extension)");
    let issues = c.to_issues();
    assert!(
        issues.iter().all(|i| !i.detail.contains("secret") && !i.detail.contains("SMITH")),
        "no data in issue details"
    );
    let ev = conv.to_event("test-tenant", "raw-1", 0);
    assert_eq!(ev.event_type, "hl7v2.adt.a01");
    assert_eq!(ev.resources[0].resource_type, "MessageHeader");
    assert_eq!(ev.patient_key.as_deref(), Some(ev.resources[1].id.as_str()));
}

#[test]
fn prt_participations_land_on_their_resource() {
    let msg = "MSH|^~\\&|ADT|GH|EHR|GH|20240601120000+0200||ADT^A01|P-1|P|2.8
PID|1||55555^^^GH^MR||SMITH^JOHN||19700101|M
PV1|1|I|WARD1
PRT|1|AD||AD^Admitting Provider^HL70912|777^House^Greg||||||20240601080000+0200
PRT|2|AD||RCT^Result Copies To^HL70912||||Some Org
";
    let (b, conv) = convert(msg);
    let e = one(&b, "Encounter");
    assert_eq!(e["participant"][0]["type"][0]["coding"][0]["code"], "AD");
    assert_eq!(by_ref(&b, &e["participant"][0]["individual"])["name"][0]["family"], "House");
    assert_eq!(e["participant"][0]["period"]["start"], "2024-06-01T08:00:00+02:00");
    // An organisation cannot be an encounter participant: that PRT is reported, not forced in.
    assert!(conv.coverage.unmapped_segments.iter().any(|p| p.segment == "PRT" && p.index == 5));

    // ROL (before v2.7): primary care provider after PID → general practitioner.
    let rol = "MSH|^~\\&|ADT|GH|EHR|GH|20240601120000+0200||ADT^A04|R-1|P|2.5
PID|1||55555^^^GH^MR||SMITH^JOHN||19700101|M
ROL|1|AD|PP^Primary Care Provider^HL70443|888^Quinn^Mike
";
    let (b, conv) = convert(rol);
    let p = one(&b, "Patient");
    assert_eq!(by_ref(&b, &p["generalPractitioner"][0])["name"][0]["family"], "Quinn");
    assert!(conv.coverage.unmapped_segments.is_empty());
}

#[test]
fn identifiers_without_authority_are_scoped_by_sender() {
    let a = "MSH|^~\\&|APP|SITE-A|EHR|X|20240601120000+0200||ADT^A04|S-1|P|2.5\nPID|1||123||DOE^A||19700101|M\n";
    let b = "MSH|^~\\&|APP|SITE-B|EHR|X|20240601120000+0200||ADT^A04|S-1|P|2.5\nPID|1||123||ROE^B||19800101|F\n";
    let (ba, _) = convert(a);
    let (bb, _) = convert(b);
    assert_ne!(one(&ba, "Patient")["id"], one(&bb, "Patient")["id"], "MRN 123 at two senders is two patients");
    let (again, _) = convert(a);
    assert_eq!(one(&ba, "Patient")["id"], one(&again, "Patient")["id"]);
    // With an authority the sender does not matter: the authority names the number space.
    let c = "MSH|^~\\&|APP|SITE-A|EHR|X|20240601120000+0200||ADT^A04|S-2|P|2.5\nPID|1||123^^^STATE^MR||DOE^A\n";
    let d = "MSH|^~\\&|APP|SITE-B|EHR|X|20240601120000+0200||ADT^A04|S-3|P|2.5\nPID|1||123^^^STATE^MR||DOE^A\n";
    assert_eq!(one(&convert(c).0, "Patient")["id"], one(&convert(d).0, "Patient")["id"]);
}

/// Every golden message's Bundle passes the FHIR R4 validator too (one JVM run; skipped
/// loudly without Java unless `CI=true`).
/// PID-10 race (repeating, HL7 table, CDCREC and a local code) and PID-22 ethnic group.
fn race_msg() -> String {
    let pid = seg(
        "PID",
        &[
            (1, "1"),
            (3, "RA-778^^^NORTHCLINIC^MR"),
            (5, "QUILL^ROWAN"),
            (7, "19881102"),
            (8, "F"),
            (10, "2106-3^White^HL70005~2028-9^Asian^CDCREC~X9^Other local^^^^^^^Declined to specify further"),
            (22, "2186-5^Not Hispanic or Latino^HL70189"),
        ],
    );
    format!("MSH|^~\\&|REG|NORTHCLINIC|EHR|NORTHCLINIC|20240420101500+0200||ADT^A04|R-77|P|2.5.1\n{pid}\n")
}

#[test]
fn pid_race_and_ethnic_group_become_patient_extensions() {
    let (b, conv) = convert(&race_msg());
    let p = one(&b, "Patient");
    let ext =
        |url: &str| -> Vec<&Value> { p["extension"].as_array().unwrap().iter().filter(|e| e["url"] == url).collect() };
    let race = ext("urn:arteria:fhir:StructureDefinition:patient-race");
    assert_eq!(race.len(), 3, "one extension per PID-10 repetition");
    let coding = |e: &Value| e["valueCodeableConcept"]["coding"][0].clone();
    // Table 0005 with a CDC-shaped code and CDCREC both land in the CDC code set.
    assert_eq!(coding(race[0])["system"], "urn:oid:2.16.840.1.113883.6.238");
    assert_eq!(coding(race[0])["code"], "2106-3");
    assert_eq!(coding(race[0])["display"], "White");
    assert_eq!(coding(race[1])["system"], "urn:oid:2.16.840.1.113883.6.238");
    assert_eq!(coding(race[1])["code"], "2028-9");
    // A code that is not CDC's and names no system stays local to the sender, with its text.
    assert_eq!(coding(race[2])["system"], "urn:arteria:v2:codesystem:REG%7CNORTHCLINIC:HL70005");
    assert_eq!(race[2]["valueCodeableConcept"]["text"], "Declined to specify further");
    let eth = ext("urn:arteria:fhir:StructureDefinition:patient-ethnic-group");
    assert_eq!(eth.len(), 1);
    assert_eq!(coding(eth[0])["system"], "urn:oid:2.16.840.1.113883.6.238");
    assert_eq!(coding(eth[0])["code"], "2186-5");
    assert_eq!(coding(eth[0])["display"], "Not Hispanic or Latino");
    let c = &conv.coverage;
    assert!(!c.mentions(2, Some(10)) && !c.mentions(2, Some(22)), "PID-10 and PID-22 are mapped: {c:?}");
}

#[test]
fn golden_bundles_pass_the_fhir_validator() {
    if std::process::Command::new("java").arg("-version").output().is_err() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("java is required for the FHIR validator in CI");
        }
        eprintln!("\n*** SKIPPED: java not found; the FHIR R4 validator cannot run ***\n");
        return;
    }
    let mut messages = vec![
        ORU.to_string(),
        two_obr_msg(),
        merge_msg(),
        clinical_msg(),
        vxu_msg(),
        rde_msg(),
        siu_msg(),
        mdm_msg(),
        orm_msg(),
        race_msg(),
    ];
    for t in ["A01", "A03", "A04", "A08", "A11", "A13"] {
        messages.push(adt(t, Some("20240601080000+0200"), Some("20240605170000+0200")));
    }
    let mut ndjson = String::new();
    for m in &messages {
        ndjson.push_str(&convert(m).1.to_bundle_json(false));
        ndjson.push('\n');
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("golden.ndjson");
    std::fs::write(&file, ndjson).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/fhir-validator/validate.sh");
    let out = std::process::Command::new("bash").arg(script).arg(&file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let errors: Vec<&str> = text.lines().filter(|l| l.contains(": error:") || l.contains(": fatal:")).collect();
    assert!(
        out.status.success() && errors.is_empty(),
        "FHIR validation failed:\n{}\n{}",
        errors.join("\n"),
        text.lines().rev().take(10).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn shipped_example_profile_loads_and_matches() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let profiles = mapping::Profiles::load_dir(&dir).expect("shipped profiles load");
    let p = profiles.find(Some("EXLAB"), Some("EXAMPLE-HOSP")).expect("example profile matches");
    assert_eq!(p.file.name, "example-lab");
    assert!(p.zone.is_some());
}

#[test]
fn borrowed_bundle_json_is_the_bundle() {
    let mut messages = vec![
        ORU.to_string(),
        two_obr_msg(),
        merge_msg(),
        clinical_msg(),
        vxu_msg(),
        rde_msg(),
        siu_msg(),
        mdm_msg(),
        orm_msg(),
        race_msg(),
    ];
    for t in ["A01", "A03", "A04", "A08", "A11", "A13"] {
        messages.push(adt(t, Some("20240601080000+0200"), Some("20240605170000+0200")));
    }
    for m in &messages {
        let conv = convert(m).1;
        // The JSON is written from the resources without copying them; `bundle()` is the
        // owned Bundle, the reference for what that must give.
        assert_eq!(conv.to_bundle_json(false), serde_json::to_string(&conv.bundle()).unwrap());
    }
}
