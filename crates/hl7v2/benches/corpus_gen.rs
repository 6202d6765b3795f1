//! Deterministic generator of realistic synthetic HL7 v2 traffic for benchmarks: ADT^A01/A08
//! and ORU^R01 messages of 1–4 KB with repetitions, components, escapes and Z-segments, and
//! one large ORU whose OBX-5 carries a base64 document. All names and ids are fake.
#![allow(dead_code)]

/// xorshift64*: small, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const FAMILY: &[&str] =
    &["TESTPERSON", "O\\T\\BRIEN", "FAKENAME", "SAMPLE-SMITH", "EXAMPLE", "DUMMY", "PLACEHOLDER", "MOCKINGBIRD"];
const GIVEN: &[&str] = &["ALEX", "JORDAN", "SAM", "CASEY", "RILEY", "TAYLOR", "MORGAN", "JAMIE"];
const STREETS: &[&str] = &["1 NOWHERE LN", "22 FICTION AVE", "333 TEST BLVD\\S\\APT 4", "4 SAMPLE RD"];
const TESTS: &[(&str, &str, &str, &str)] = &[
    ("718-7", "Hemoglobin", "g/dL", "13.5-17.5"),
    ("6690-2", "Leukocytes", "10*3/uL", "4.5-11.0"),
    ("2345-7", "Glucose", "mg/dL", "70-99"),
    ("2160-0", "Creatinine", "mg/dL", "0.7-1.3"),
    ("2951-2", "Sodium", "mmol/L", "136-145"),
    ("2823-3", "Potassium", "mmol/L", "3.5-5.1"),
];
const NOTES: &[&str] = &[
    "Specimen received in good condition\\.br\\Verified by second reader",
    "Result confirmed on repeat analysis \\T\\ reviewed",
    "Hemolysed sample\\S\\interpret with caution",
    "Called to ward at 10:42 \\F\\ read back OK",
    "Reference range updated 2023\\R\\see lab manual",
];

fn ts(r: &mut Rng) -> String {
    format!("2024{:02}{:02}{:02}{:02}{:02}", 1 + r.below(12), 1 + r.below(28), r.below(24), r.below(60), r.below(60))
}

fn msh(r: &mut Rng, typ: &str, n: u64) -> String {
    format!(
        "MSH|^~\\&|{}|{}|EHR|CENTRAL|{}||{}|MSG{:08}|P|2.5.1|||AL|NE||UNICODE UTF-8\r",
        r.pick(&["LAB", "REG", "RIS", "PHARM"]),
        r.pick(&["NORTH", "SOUTH", "EAST"]),
        ts(r),
        typ,
        n
    )
}

fn pid(r: &mut Rng) -> String {
    let mrn = r.below(10_000_000);
    let mut ids = format!("{mrn}^^^GENHOSP^MR");
    for _ in 0..r.below(3) {
        ids.push_str(&format!(
            "~{}^^^{}^{}",
            r.below(1_000_000_000),
            r.pick(&["SSA", "NHS", "DMV"]),
            r.pick(&["SS", "NH", "DL"])
        ));
    }
    format!(
        "PID|1||{ids}||{}^{}^{}^^{}||19{:02}{:02}{:02}|{}|||{}^^FAKETOWN^ZZ^{:05}^USA^H~PO BOX {}^^FAKETOWN^ZZ^00000^USA^M||555-{:04}^PRN^PH~555-{:04}^WPN^PH|||{}|||{:09}\r",
        r.pick(FAMILY),
        r.pick(GIVEN),
        r.pick(GIVEN),
        r.pick(&["MR", "MS", "MX"]),
        r.below(100),
        1 + r.below(12),
        1 + r.below(28),
        r.pick(&["F", "M", "U"]),
        r.pick(STREETS),
        r.below(100_000),
        r.below(999),
        r.below(10_000),
        r.below(10_000),
        r.pick(&["S", "M", "D"]),
        r.below(1_000_000_000),
    )
}

fn pv1(r: &mut Rng) -> String {
    format!(
        "PV1|1|{}|{}^{}^{}^GENHOSP||||{}^DOCTOR^TEST^^^DR|||MED||||ADM|||{}^DOCTOR^OTHER^^^DR|IN||||||||||||||||||||||||||{}\r",
        r.pick(&["I", "O", "E"]),
        r.pick(&["WARD1", "WARD2", "ICU"]),
        r.below(500),
        r.pick(&["A", "B"]),
        r.below(100_000),
        r.below(100_000),
        ts(r)
    )
}

/// One ADT^A01 or A08 message of roughly `target` bytes.
pub fn adt(r: &mut Rng, n: u64, target: usize) -> String {
    let trig = r.pick(&["A01", "A08"]);
    let mut m = msh(r, &format!("ADT^{trig}^ADT_A01"), n);
    m.push_str(&format!("EVN|{trig}|{}\r", ts(r)));
    m.push_str(&pid(r));
    m.push_str(&format!(
        "NK1|1|{}^{}|SPO^Spouse^HL70063|{}^^FAKETOWN^ZZ|555-{:04}\r",
        r.pick(FAMILY),
        r.pick(GIVEN),
        r.pick(STREETS),
        r.below(10_000)
    ));
    m.push_str(&pv1(r));
    let mut i = 1;
    while m.len() + 260 < target {
        match r.below(4) {
            0 => m.push_str(&format!("AL1|{i}|DA|{}^{}^RXNORM|{}|{}\r", r.below(100_000), r.pick(&["PENICILLIN", "LATEX", "PEANUT \\T\\ TREE NUT"]), r.pick(&["SV", "MO", "MI"]), r.pick(&["HIVES~RASH", "ANAPHYLAXIS", "NAUSEA"]))),
            1 => m.push_str(&format!("DG1|{i}||I{:02}.{}^Sample diagnosis {i}^I10||{}|A\r", r.below(100), r.below(10), ts(r))),
            2 => m.push_str(&format!("IN1|{i}|PLAN{}|{}|FAKE INSURANCE CO|PO BOX {}^^FAKETOWN^ZZ^00000||555-{:04}|GRP{}|||||||||{}^{}|SEL|19{:02}0101\r", r.below(100), r.below(100_000), r.below(9999), r.below(10_000), r.below(100_000), r.pick(FAMILY), r.pick(GIVEN), r.below(100))),
            _ => m.push_str(&format!("ZPD|{i}|{}|custom \\E\\ field^x~y|{}\r", r.below(1000), ts(r))),
        }
        i += 1;
    }
    m
}

/// One ORU^R01 message of roughly `target` bytes.
pub fn oru(r: &mut Rng, n: u64, target: usize) -> String {
    let mut m = msh(r, "ORU^R01^ORU_R01", n);
    m.push_str(&pid(r));
    m.push_str(&pv1(r));
    let order = r.below(100_000_000);
    m.push_str(&format!("ORC|RE|{order}^LAB|{order}^LAB||CM||||{}|||{}^DOCTOR^TEST^^^DR\r", ts(r), r.below(100_000)));
    m.push_str(&format!("OBR|1|{order}^LAB|{order}^LAB|24323-8^Comprehensive metabolic panel^LN|||{}|||||||||{}^DOCTOR^TEST^^^DR||||||{}|||F\r", ts(r), r.below(100_000), ts(r)));
    let mut i = 1;
    while m.len() + 220 < target {
        let (code, name, unit, range) = TESTS[r.below(TESTS.len() as u64) as usize];
        m.push_str(&format!(
            "OBX|{i}|NM|{code}^{name}^LN||{}.{}|{unit}^{unit}^UCUM|{range}|{}|||F|||{}||{}^TECH^LAB\r",
            r.below(200),
            r.below(10),
            r.pick(&["N", "H", "L", ""]),
            ts(r),
            r.below(1000)
        ));
        if r.below(3) == 0 {
            m.push_str(&format!("NTE|{i}|L|{}\r", r.pick(NOTES)));
        }
        i += 1;
    }
    m.push_str(&format!("SPM|1|{}^LAB||BLD^Whole blood^HL70487|||||||||||||{}\r", r.below(1_000_000), ts(r)));
    m
}

/// `count` messages, half ADT and half ORU, each 1–4 KB, from `seed`.
pub fn corpus(count: usize, seed: u64) -> Vec<String> {
    let mut r = Rng::new(seed);
    (0..count as u64)
        .map(|n| {
            let target = 1024 + r.below(3072 - 400) as usize;
            if n % 2 == 0 { adt(&mut r, n, target) } else { oru(&mut r, n, target) }
        })
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 4);
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(T[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An ORU^R01 whose OBX-5 (ED) holds `payload_bytes` of base64 text.
pub fn big_base64(payload_bytes: usize, seed: u64) -> String {
    let mut r = Rng::new(seed);
    let raw: Vec<u8> = (0..payload_bytes * 3 / 4).map(|_| r.next_u64() as u8).collect();
    let b64 = base64(&raw);
    let mut m = msh(&mut r, "ORU^R01^ORU_R01", 1);
    m.push_str(&pid(&mut r));
    m.push_str("OBR|1|1^LAB||11502-2^Laboratory report^LN\r");
    m.push_str(&format!("OBX|1|ED|PDF^Report^L||^application^pdf^Base64^{b64}||||||F\r"));
    m
}
