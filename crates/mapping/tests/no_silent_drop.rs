//! Property: nothing of the input is silently dropped. Every segment is either mapped or
//! listed as unmapped, and every non-empty field (filled here with a unique token) shows up
//! in the Bundle JSON or is named — as unmapped, or with a note — in the coverage report.

use proptest::prelude::*;

/// Segment kinds the generator uses, with their structural fields (set IDs) that carry no
/// data and so get no token.
const KINDS: &[(&str, &[usize])] = &[
    ("PID", &[1]),
    ("PD1", &[]),
    ("NK1", &[1]),
    ("PV1", &[1]),
    ("PV2", &[]),
    ("AL1", &[1]),
    ("DG1", &[1]),
    ("PR1", &[1]),
    ("IN1", &[1]),
    ("ORC", &[]),
    ("OBR", &[1]),
    ("OBX", &[1, 2]),
    ("NTE", &[1]),
    ("SPM", &[1]),
    ("TQ1", &[1]),
    ("RXE", &[]),
    ("RXO", &[]),
    ("RXA", &[1, 2]),
    ("RXR", &[]),
    ("SCH", &[]),
    ("RGS", &[1, 2]),
    ("AIS", &[1, 2]),
    ("AIL", &[1, 2]),
    ("AIP", &[1, 2]),
    ("TXA", &[1]),
    ("MRG", &[]),
    ("PRB", &[]),
    ("EVN", &[]),
    ("PRT", &[1]),
    ("ROL", &[1]),
    ("GT1", &[]),
    ("FT1", &[]),
    ("ZXY", &[]),
];

const VALUE_TYPES: &[&str] = &["NM", "ST", "TX", "FT", "CWE", "CE", "SN", "DT", "TS", "TM", "NR", "ED", "XX"];

#[derive(Debug, Clone)]
struct GenSeg {
    kind: usize,
    fields: Vec<usize>,
    value_type: usize,
}

fn gen_seg() -> impl Strategy<Value = GenSeg> {
    (0..KINDS.len(), proptest::collection::vec(1usize..=40, 0..8), 0..VALUE_TYPES.len())
        .prop_map(|(kind, fields, value_type)| GenSeg { kind, fields, value_type })
}

fn token(seg: usize, field: usize) -> String {
    format!("tk{seg}f{field}e")
}

fn build(segs: &[GenSeg], trigger: &str) -> (String, Vec<(usize, usize, String)>) {
    let mut text = format!("MSH|^~\\&|APP|FAC|RCV|RFAC|20240101120000+0000||{trigger}|CTL|P|2.5.1\r");
    let mut tokens = Vec::new();
    // A patient first, so the patient-bound mappers run.
    text.push_str("PID|1||P1^^^FAC^MR||DOE^JO\r");
    for (i, g) in segs.iter().enumerate() {
        let index = i + 3; // MSH is 1, PID 2
        let (name, structural) = KINDS[g.kind];
        let max = g.fields.iter().copied().max().unwrap_or(0).max(2);
        let mut v = vec![String::new(); max + 1];
        v[0] = name.to_string();
        if structural.contains(&1) {
            v[1] = "1".into();
        }
        if name == "OBX" {
            v[2] = VALUE_TYPES[g.value_type].into();
        }
        for &f in &g.fields {
            if structural.contains(&f) {
                continue;
            }
            let t = token(index, f);
            v[f] = t.clone();
            tokens.push((index, f, t));
        }
        text.push_str(&v.join("|"));
        text.push('\r');
    }
    tokens.sort();
    tokens.dedup();
    (text, tokens)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn every_field_is_in_the_bundle_or_the_report(
        segs in proptest::collection::vec(gen_seg(), 0..12),
        trigger in prop::sample::select(vec!["ADT^A01", "ORU^R01", "ORM^O01", "ADT^A08", "VXU^V04", "MDM^T02", "SIU^S12", "RDE^O11", "RAS^O17", "ADT^A40", "XYZ^Q01"]),
    ) {
        let (text, tokens) = build(&segs, trigger);
        let conv = mapping::convert_bytes(text.as_bytes(), &mapping::Profiles::default(), "prop").expect("converts");
        let json = conv.to_bundle_json(false);
        // Attachment data is base64: decode it so text carried there is found too.
        let mut searchable = json.clone();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        collect_data(&parsed, &mut searchable);
        let msg = hl7v2::Message::parse(text.as_bytes()).unwrap();
        // Every segment is mapped (some field consumed) or listed as unmapped.
        for seg in msg.segments() {
            let listed = conv.coverage.unmapped_segments.iter().any(|p| p.index == seg.index());
            let has_data = seg.fields().skip(if seg.name() == "MSH" { 2 } else { 0 }).any(|f| !f.is_empty());
            if listed {
                prop_assert!(has_data || seg.name() != "MSH");
            }
        }
        for (index, field, tok) in &tokens {
            let in_bundle = searchable.contains(tok.as_str());
            let reported = conv.coverage.mentions(*index, Some(*field));
            prop_assert!(
                in_bundle || reported,
                "token {} at segment {} field {} is neither in the bundle nor in the report\nmessage: {}\nreport: {:?}",
                tok, index, field, text.replace('\r', "\n"), conv.coverage
            );
        }
        // The bundle is valid JSON and its references resolve inside it.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let urls: std::collections::HashSet<String> = v["entry"].as_array().unwrap().iter().map(|e| e["fullUrl"].as_str().unwrap().to_string()).collect();
        prop_assert_eq!(urls.len(), v["entry"].as_array().unwrap().len());
        let mut refs = Vec::new();
        collect_refs(&v, &mut refs);
        for r in refs {
            prop_assert!(urls.contains(&r), "dangling reference {}", r);
        }
    }
}

fn collect_data(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x.as_str()) {
                    ("data", Some(b64)) => out.push_str(&String::from_utf8_lossy(&unbase64(b64))),
                    _ => collect_data(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_data(x, out)),
        _ => {}
    }
}

fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let b: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for ch in b.chunks(4) {
        let n = ch.iter().enumerate().fold(0u32, |a, (i, &c)| a | (u32::from(val(c)) << (18 - 6 * i)));
        out.push((n >> 16) as u8);
        if ch.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if ch.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == "reference" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    collect_refs(x, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Whatever the field contents (components, repetitions, escapes, non-ASCII, odd dates and
    /// numbers), conversion never panics and always yields valid JSON with unique fullUrls.
    #[test]
    fn never_panics_on_arbitrary_field_content(
        segs in proptest::collection::vec((0..KINDS.len(), proptest::collection::vec((1usize..=30, "[-A-Za-z0-9^~&\\\\.+<>: é\"]{0,24}"), 0..8)), 0..10),
        trigger in prop::sample::select(vec!["ADT^A01", "ORU^R01", "ORM^O01", "VXU^V04", "MDM^T02", "SIU^S12", "RDE^O11", "ADT^A40"]),
    ) {
        let mut text = format!("MSH|^~\\&|APP|FAC|RCV|RFAC|20240101120000||{trigger}|CTL|P|2.5.1\rPID|1||P1^^^FAC^MR\r");
        for (kind, fields) in &segs {
            let max = fields.iter().map(|f| f.0).max().unwrap_or(1);
            let mut v = vec![String::new(); max + 1];
            v[0] = KINDS[*kind].0.to_string();
            for (n, val) in fields {
                v[*n] = val.clone();
            }
            text.push_str(&v.join("|"));
            text.push('\r');
        }
        let conv = mapping::convert_bytes(text.as_bytes(), &mapping::Profiles::default(), "prop").expect("converts");
        let json = conv.to_bundle_json(false);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let n = v["entry"].as_array().unwrap().len();
        let urls: std::collections::HashSet<&str> = v["entry"].as_array().unwrap().iter().map(|e| e["fullUrl"].as_str().unwrap()).collect();
        prop_assert_eq!(urls.len(), n);
        let ev = conv.to_event("prop", "raw", 0);
        prop_assert_eq!(ev.resources.len(), n);
    }
}
