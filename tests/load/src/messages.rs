//! Synthetic ADT^A01 and ORU^R01 messages for load runs, written for this harness (no shared
//! data): every message has a unique MSH-10 within a run (the run tag keeps runs apart, since
//! normalize drops sender retries by MSH-10), and patients are spread over a configurable
//! population so the topics' keys and the store's rows look like a real feed.
//!
//! Messages are a pure function of (run tag, index, timestamp): a run can be regenerated, and
//! the mix of types and patients does not depend on timing.

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Kind {
    /// ADT^A01 admission: EVN, PID, NK1, PV1, AL1, DG1.
    Adt,
    /// ORU^R01 chemistry panel: PID, PV1, ORC, OBR and 10 numeric OBX.
    Oru,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Adt => "ADT^A01",
            Kind::Oru => "ORU^R01",
        }
    }
}

const FAMILY: &[&str] = &[
    "Ashdown",
    "Brightwater",
    "Calloway",
    "Dunmore",
    "Everly",
    "Fairbanks",
    "Greyson",
    "Holloway",
    "Ingram",
    "Jessop",
    "Kingsley",
    "Lockhart",
    "Merriweather",
    "Northcote",
    "Oakes",
    "Pemberton",
    "Quill",
    "Rowntree",
    "Stanhope",
    "Thornbury",
    "Underhill",
    "Vance",
    "Whitlock",
    "Yardley",
];
const GIVEN_F: &[&str] = &["Ada", "Beatrix", "Clara", "Delphine", "Edith", "Flora", "Greta", "Hazel", "Iris", "Juno"];
const GIVEN_M: &[&str] = &["Albin", "Bram", "Cedric", "Dorian", "Emeric", "Felix", "Gideon", "Hugo", "Ivo", "Jasper"];
const CITY: &[(&str, &str)] =
    &[("Millbrook", "40110"), ("Ravensford", "40220"), ("Stonehaven", "40330"), ("Westmere", "40440")];
const STREET: &[&str] = &["Elm Row", "Quarry Lane", "Harbour Street", "Orchard Way", "Mill Road"];
const ALLERGY: &[(&str, &str, &str)] = &[
    ("7980", "Penicillin G", "Rash"),
    ("2670", "Codeine", "Nausea"),
    ("1191", "Aspirin", "Wheezing"),
    ("10831", "Sulfamethoxazole", "Hives"),
];
const DIAGNOSIS: &[(&str, &str)] = &[
    ("J18.9", "Pneumonia, unspecified organism"),
    ("I50.9", "Heart failure, unspecified"),
    ("N39.0", "Urinary tract infection, site not specified"),
    ("K35.80", "Unspecified acute appendicitis"),
];
/// LOINC code, display, unit, reference low and high, and the number of value steps each side of the middle.
const PANEL: &[(&str, &str, &str, f64, f64, u32)] = &[
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70.0, 99.0, 600),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.57, 1.0, 12),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 134.0, 144.0, 160),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.2, 30),
    ("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", 96.0, 106.0, 150),
    ("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", "mmol/L", 20.0, 29.0, 120),
    ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 6.0, 24.0, 250),
    ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", 8.7, 10.2, 25),
    ("2885-2", "Protein [Mass/volume] in Serum or Plasma", "g/dL", 6.0, 8.5, 35),
    ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", 3.5, 5.5, 30),
];

/// SplitMix64: a good, tiny, dependency-free mixer for deterministic "random" choices.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<T: Copy>(list: &[T], r: u64) -> T {
    list[(r % list.len() as u64) as usize]
}

/// One segment from (field number, value) pairs; fields not given are empty.
fn segment(out: &mut String, name: &str, fields: &[(usize, &str)]) {
    out.push_str(name);
    let mut at = 0;
    for (n, v) in fields {
        debug_assert!(*n > at, "fields in order");
        for _ in at..*n {
            out.push('|');
        }
        out.push_str(v);
        at = *n;
    }
    out.push('\r');
}

/// Makes the messages of one run.
#[derive(Debug, Clone)]
pub struct Generator {
    run: String,
    patients: u64,
    oru_per_mille: u64,
    /// The event times of every message, or `None`: each message stamped when it is made, as
    /// a live feed's are (the ids of event resources lead with their message's second).
    timestamp: Option<String>,
}

impl Generator {
    /// `run`: a short tag unique to the run (in every MSH-10); `patients`: population size;
    /// `oru_share`: fraction of ORU^R01 (the rest ADT^A01); `timestamp`: HL7 DTM for the
    /// messages' event times (e.g. `20261125191500+0000`).
    pub fn new(run: &str, patients: u64, oru_share: f64, timestamp: &str) -> Self {
        Self {
            run: run.to_string(),
            patients: patients.max(1),
            oru_per_mille: (oru_share.clamp(0.0, 1.0) * 1000.0).round() as u64,
            timestamp: Some(timestamp.to_string()),
        }
    }

    /// A generator that stamps each message with the time it is made (UTC, to the
    /// millisecond), with a run tag derived from the current time.
    pub fn for_now(patients: u64, oru_share: f64) -> Self {
        let now = jiff::Timestamp::now();
        let run = format!("{:06}", now.as_second().rem_euclid(1_000_000));
        Self { timestamp: None, ..Self::new(&run, patients, oru_share, "") }
    }

    /// The same generator stamping every message with `timestamp` (an HL7 DTM) instead.
    pub fn stamped(self, timestamp: &str) -> Self {
        Self { timestamp: Some(timestamp.to_string()), ..self }
    }

    pub fn run(&self) -> &str {
        &self.run
    }

    /// The kind of message `i` (fixed by the index, so the mix is the same in every run).
    pub fn kind(&self, i: u64) -> Kind {
        if mix(i ^ 0x5eed) % 1000 < self.oru_per_mille { Kind::Oru } else { Kind::Adt }
    }

    /// MSH-10 of message `i`: at most 20 characters, unique within the run.
    pub fn control_id(&self, i: u64) -> String {
        format!("LD{}-{i:010}", self.run)
    }

    /// Message `i` of its [`Generator::kind`].
    pub fn message(&self, i: u64) -> Vec<u8> {
        self.message_of(i, self.kind(i))
    }

    /// Message `i` as the given kind (the calibration sends one of each).
    pub fn message_of(&self, i: u64, kind: Kind) -> Vec<u8> {
        let r = mix(i);
        let patient = mix(i.wrapping_mul(31) ^ 0xC0FFEE) % self.patients;
        let p = Person::of(patient);
        let cid = self.control_id(i);
        let now;
        let ts = match &self.timestamp {
            Some(t) => t.as_str(),
            None => {
                now = jiff::Timestamp::now().strftime("%Y%m%d%H%M%S%.3f+0000").to_string();
                now.as_str()
            }
        };
        let mut s = String::with_capacity(2048);
        let msg_type = match kind {
            Kind::Adt => "ADT^A01^ADT_A01",
            Kind::Oru => "ORU^R01^ORU_R01",
        };
        let app = match kind {
            Kind::Adt => "LOADADT",
            Kind::Oru => "LOADLAB",
        };
        segment(
            &mut s,
            "MSH",
            &[
                (1, "^~\\&"),
                (2, app),
                (3, "LOADTEST"),
                (4, "ARTERIA"),
                (5, "HUB"),
                (6, ts),
                (8, msg_type),
                (9, &cid),
                (10, "P"),
                (11, "2.5.1"),
            ],
        );
        let mrn = format!("LT{patient:07}^^^LOADTEST^MR");
        let name = format!("{}^{}^^^{}", p.family, p.given, p.title);
        let visit = format!("V{}{i:010}^^^LOADTEST^VN", self.run);
        match kind {
            Kind::Adt => {
                segment(&mut s, "EVN", &[(1, "A01"), (2, ts)]);
                let addr = p.address();
                let phone = format!("^PRN^PH^^44^1632^{:06}", 960_000 + (patient % 1000));
                segment(
                    &mut s,
                    "PID",
                    &[
                        (1, "1"),
                        (3, &mrn),
                        (5, &name),
                        (7, &p.birth_date),
                        (8, p.sex),
                        (11, &addr),
                        (13, &phone),
                        (16, "M"),
                    ],
                );
                let kin = format!("{}^{}", p.family, p.kin_given);
                segment(&mut s, "NK1", &[(1, "1"), (2, &kin), (3, "SPO^Spouse^HL70063")]);
                let bed = format!(
                    "WARD{}^{}^{}^LOADTEST",
                    1 + r % 9,
                    100 + (r >> 13) % 40,
                    ["A", "B"][(r >> 17) as usize % 2]
                );
                let doctor = doctor((r >> 19) % 500);
                segment(
                    &mut s,
                    "PV1",
                    &[(1, "1"), (2, "I"), (3, &bed), (7, &doctor), (10, "MED"), (19, &visit), (44, ts)],
                );
                let (code, drug, reaction) = pick(ALLERGY, r >> 29);
                let allergen = format!("{code}^{drug}^RXNORM");
                segment(&mut s, "AL1", &[(1, "1"), (2, "DA"), (3, &allergen), (4, "MO"), (5, reaction)]);
                let (code, text) = pick(DIAGNOSIS, r >> 31);
                let dx = format!("{code}^{text}^I10");
                segment(&mut s, "DG1", &[(1, "1"), (3, &dx), (5, &ts[..8]), (6, "A")]);
            }
            Kind::Oru => {
                segment(&mut s, "PID", &[(1, "1"), (3, &mrn), (5, &name), (7, &p.birth_date), (8, p.sex)]);
                let loc = format!("CLINIC{}^{}^^LOADTEST", 1 + r % 6, 1 + (r >> 7) % 20);
                segment(&mut s, "PV1", &[(1, "1"), (2, "O"), (3, &loc), (19, &visit)]);
                let placer = format!("P{}{i:010}^LOADEHR", self.run);
                let filler = format!("F{}{i:010}^LOADLAB", self.run);
                segment(&mut s, "ORC", &[(1, "RE"), (2, &placer), (3, &filler)]);
                let doctor = doctor((r >> 19) % 500);
                segment(
                    &mut s,
                    "OBR",
                    &[
                        (1, "1"),
                        (2, &placer),
                        (3, &filler),
                        (4, "24323-8^Comprehensive metabolic 2000 panel - Serum or Plasma^LN"),
                        (7, ts),
                        (14, ts),
                        (15, "^^^^^^Venous blood"),
                        (16, &doctor),
                        (22, ts),
                        (25, "F"),
                    ],
                );
                for (n, (code, display, unit, low, high, spread)) in PANEL.iter().enumerate() {
                    let v = mix(r ^ n as u64) % (*spread as u64 * 2 + 1);
                    // Centred on the reference range, out of it now and then.
                    let mid = (low + high) / 2.0;
                    let value = mid + (v as f64 - *spread as f64) / *spread as f64 * (high - low) * 0.7;
                    let flag = if value < *low {
                        "L"
                    } else if value > *high {
                        "H"
                    } else {
                        "N"
                    };
                    let digits = if *high < 20.0 { 2 } else { 0 };
                    let set_id = (n + 1).to_string();
                    let obs = format!("{code}^{display}^LN");
                    let value = format!("{value:.digits$}");
                    let range = format!("{low}-{high}");
                    segment(
                        &mut s,
                        "OBX",
                        &[
                            (1, &set_id),
                            (2, "NM"),
                            (3, &obs),
                            (5, &value),
                            (6, unit),
                            (7, &range),
                            (8, flag),
                            (11, "F"),
                            (14, ts),
                        ],
                    );
                }
            }
        }
        s.into_bytes()
    }
}

/// Doctor `n` as an XCN. A name is fixed by the number, as in a hospital's staff master file:
/// the same doctor on every message (a random name per message made every Practitioner a new
/// version each time, which no real feed does).
fn doctor(n: u64) -> String {
    let r = mix(n ^ 0xD0C7);
    format!("D{n:04}^{}^{}^^^Dr.", pick(FAMILY, r >> 23), pick(GIVEN_F, r >> 27))
}

/// A patient's demographics: fixed by the patient, so every admission repeats them as an EHR
/// does until they change.
struct Person {
    r: u64,
    kin_given: &'static str,
    family: &'static str,
    given: &'static str,
    title: &'static str,
    sex: &'static str,
    birth_date: String,
}

impl Person {
    fn of(patient: u64) -> Self {
        let r = mix(patient ^ 0xFACE);
        let female = r & 1 == 0;
        let year = 1930 + (r >> 8) % 90;
        let month = 1 + (r >> 16) % 12;
        let day = 1 + (r >> 24) % 28;
        Self {
            r,
            kin_given: pick(GIVEN_M, r >> 11),
            family: pick(FAMILY, r >> 32),
            given: if female { pick(GIVEN_F, r >> 40) } else { pick(GIVEN_M, r >> 40) },
            title: if female { "Ms." } else { "Mr." },
            sex: if female { "F" } else { "M" },
            birth_date: format!("{year}{month:02}{day:02}"),
        }
    }

    /// Home address (XAD).
    fn address(&self) -> String {
        let r = mix(self.r ^ 0xADD);
        let (city, zip) = pick(CITY, r >> 3);
        format!("{} {}^^{city}^^{zip}^GB^H", 1 + (r >> 9) % 180, pick(STREET, r >> 5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn generator() -> Generator {
        Generator::new("123456", 500, 0.5, "20261125191500+0000")
    }

    #[test]
    fn every_message_parses_with_its_type_and_a_unique_control_id() {
        let g = generator();
        let mut ids = HashSet::new();
        let mut kinds = [0u32; 2];
        let mut patients = HashSet::new();
        for i in 0..5_000 {
            let bytes = g.message(i);
            let m = hl7v2::Message::parse(&bytes).unwrap_or_else(|e| panic!("message {i}: {e}"));
            assert!(m.warnings().is_empty(), "message {i}: {:?}", m.warnings());
            let cid = m.control_id().unwrap().to_string();
            assert_eq!(cid, g.control_id(i));
            assert!(cid.len() <= 20, "{cid}");
            assert!(ids.insert(cid), "duplicate control id at {i}");
            assert_eq!(m.version(), Some("2.5.1"));
            patients.insert(m.get("PID-3.1").unwrap().as_str().to_string());
            match g.kind(i) {
                Kind::Oru => {
                    kinds[1] += 1;
                    assert_eq!((m.message_type(), m.trigger()), (Some("ORU"), Some("R01")));
                    assert_eq!(m.segments_named("OBX").count(), 10);
                    for obx in m.segments_named("OBX") {
                        let v = obx.raw().split('|').nth(5).unwrap();
                        assert!(v.parse::<f64>().is_ok(), "OBX-5 {v:?} of message {i}");
                    }
                }
                Kind::Adt => {
                    kinds[0] += 1;
                    assert_eq!((m.message_type(), m.trigger()), (Some("ADT"), Some("A01")));
                    for seg in ["EVN", "PID", "NK1", "PV1", "AL1", "DG1"] {
                        assert!(m.segment(seg).is_some(), "{seg} in message {i}");
                    }
                    assert_eq!(m.get("PV1-44").unwrap().as_str(), "20261125191500+0000");
                }
            }
        }
        // Roughly half each, and the population is used, not one patient.
        assert!(kinds.iter().all(|k| (2_000..3_000).contains(k)), "{kinds:?}");
        assert!(patients.len() > 400, "{}", patients.len());
    }

    #[test]
    fn a_doctor_and_a_patients_demographics_are_the_same_on_every_message() {
        let g = generator();
        let mut doctors: std::collections::HashMap<String, String> = Default::default();
        let mut homes: std::collections::HashMap<String, (String, String)> = Default::default();
        for i in 0..3_000 {
            let bytes = g.message(i);
            let m = hl7v2::Message::parse(&bytes).unwrap();
            let (field, adt) = match g.kind(i) {
                Kind::Adt => ("PV1-7", true),
                Kind::Oru => ("OBR-16", false),
            };
            let doctor = m.get(field).unwrap().as_str().to_string();
            let number = doctor.split('^').next().unwrap().to_string();
            assert_eq!(doctors.entry(number).or_insert_with(|| doctor.clone()), &doctor, "message {i}");
            if adt {
                let mrn = m.get("PID-3.1").unwrap().as_str().to_string();
                let home =
                    (m.get("PID-11").unwrap().as_str().to_string(), m.get("NK1-2").unwrap().as_str().to_string());
                assert_eq!(homes.entry(mrn).or_insert_with(|| home.clone()), &home, "message {i}");
            }
        }
        // Many doctors and patients came back, so the equality above was tested.
        assert!(doctors.len() > 100 && doctors.len() <= 500, "{}", doctors.len());
        assert!(homes.len() < 1_400, "{} patients over ~1,500 admissions", homes.len());
    }

    #[test]
    fn runs_differ_only_where_they_must() {
        let a = generator();
        let b = Generator::new("654321", 500, 0.5, "20261125191500+0000");
        assert_eq!(a.message(7), a.message(7), "deterministic");
        assert_ne!(a.control_id(7), b.control_id(7));
        assert_eq!(a.kind(7), b.kind(7));
    }

    /// A live generator stamps each message when it is made, to the millisecond, in a form
    /// the mapping reads (the event ids' lead comes from MSH-7's second).
    #[test]
    fn a_live_generator_stamps_each_message_now() {
        let g = Generator::for_now(10, 0.5);
        let before = jiff::Timestamp::now().strftime("%Y%m%d%H%M%S").to_string();
        let bytes = g.message(3);
        let after = jiff::Timestamp::now().strftime("%Y%m%d%H%M%S").to_string();
        let m = hl7v2::Message::parse(&bytes).unwrap();
        let sent = m.get("MSH-7").unwrap().as_str().to_string();
        assert_eq!(sent.len(), "20261125191500.123+0000".len(), "{sent}");
        assert!(sent.ends_with("+0000") && sent.as_bytes()[14] == b'.', "{sent}");
        assert!((before.as_str()..=after.as_str()).contains(&&sent[..14]), "{before} {sent} {after}");
        let t = mapping::convert_bytes(&bytes, &mapping::Profiles::default(), "t").unwrap().timestamp;
        assert!(t.is_some_and(|t| t.contains('.')), "MSH-7 with milliseconds is a FHIR instant");
    }

    #[test]
    fn the_share_decides_the_mix() {
        let only_adt = Generator::new("1", 10, 0.0, "20261125191500+0000");
        let only_oru = Generator::new("1", 10, 1.0, "20261125191500+0000");
        assert!((0..200).all(|i| only_adt.kind(i) == Kind::Adt));
        assert!((0..200).all(|i| only_oru.kind(i) == Kind::Oru));
    }

    #[test]
    fn sizes_are_those_of_real_feeds() {
        let g = generator();
        let oru = g.message_of(1, Kind::Oru).len();
        let adt = g.message_of(1, Kind::Adt).len();
        assert!((1_200..3_000).contains(&oru), "{oru}");
        assert!((500..1_500).contains(&adt), "{adt}");
    }
}
