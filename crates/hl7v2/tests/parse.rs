//! Parser behaviour on synthetic messages (fake patients): delimiters, terminators, BOM,
//! character sets, escapes, nulls, path access, required MSH fields, malformed input, limits.

use hl7v2::{Charset, ErrorKind, Limits, Message, ParseOptions, Warning};

const ADT: &str = "MSH|^~\\&|REG|GENHOSP|EHR|GENHOSP|20240301101500||ADT^A01^ADT_A01|MSG00001|P|2.5.1\r\
EVN|A01|20240301101500\r\
PID|1||100001^^^GENHOSP^MR~999-00-1234^^^SSA^SS||TESTPATIENT^ALICE^Q^^MS||19700101|F|||1 FAKE ST^^NOWHERE^ZZ^00000||555-0100~555-0199\r\
PV1|1|I|WARD1^101^A\r";

fn parse(s: &str) -> Message<'_> {
    Message::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn header_accessors() {
    let m = parse(ADT);
    assert_eq!(m.message_type(), Some("ADT"));
    assert_eq!(m.trigger(), Some("A01"));
    assert_eq!(m.structure_id(), Some("ADT_A01"));
    assert_eq!(m.control_id(), Some("MSG00001"));
    assert_eq!(m.processing_id(), Some("P"));
    assert_eq!(m.version(), Some("2.5.1"));
    assert_eq!(m.sender().application, Some("REG"));
    assert_eq!(m.receiver().facility, Some("GENHOSP"));
    assert_eq!(m.segment_count(), 4);
    assert!(m.is_borrowed());
    assert_eq!(m.charset(), Charset::Unspecified);
}

#[test]
fn msh_fields_are_numbered_like_the_standard() {
    let m = parse(ADT);
    let msh = m.msh();
    assert_eq!(msh.field(1).unwrap().as_str(), "|");
    assert_eq!(msh.field(2).unwrap().as_str(), "^~\\&");
    assert_eq!(msh.field(2).unwrap().repetition_count(), 1, "MSH-2 is never split");
    assert_eq!(msh.field(3).unwrap().as_str(), "REG");
    assert_eq!(m.get("MSH-9.3").unwrap().as_str(), "ADT_A01");
}

#[test]
fn path_access() {
    let m = parse(ADT);
    assert_eq!(m.get("PID-3[2].1").unwrap().as_str(), "999-00-1234");
    assert_eq!(m.get("PID-3.4").unwrap().as_str(), "GENHOSP");
    assert_eq!(m.get("PID-3[2]").unwrap().as_str(), "999-00-1234^^^SSA^SS");
    assert_eq!(m.get("PID-5-2").unwrap().as_str(), "ALICE");
    assert_eq!(m.get("PID-13[2]").unwrap().as_str(), "555-0199");
    assert!(m.get("PID-3[3]").is_none());
    assert!(m.get("PID-99").is_none());
    assert!(m.get("OBX-1").is_none());
    assert!(m.get("not a path").is_none());
    assert_eq!(m.segment("PID").unwrap().get("5.1").unwrap().as_str(), "TESTPATIENT");
}

#[test]
fn typed_walk_of_repetitions_and_components() {
    let m = parse(ADT);
    let pid = m.segment("PID").unwrap();
    let ids: Vec<(String, String)> = pid
        .field(3)
        .unwrap()
        .repetitions()
        .map(|r| {
            (
                r.component(1).unwrap().unescaped().into_owned(),
                r.component(5).map(|c| c.as_str().to_string()).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(ids, [("100001".into(), "MR".into()), ("999-00-1234".into(), "SS".into())]);
    assert_eq!(pid.fields().len(), pid.field_count());
}

#[test]
fn occurrences() {
    let s = "MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5\rOBX|1|NM|A||1\rOBX|2|NM|B||2\rOBX|3|ST|C||three\r";
    let m = parse(s);
    assert_eq!(m.get("OBX(3)-5").unwrap().as_str(), "three");
    assert_eq!(m.get("OBX(2)-3").unwrap().as_str(), "B");
    assert!(m.get("OBX(4)-5").is_none());
    assert_eq!(m.segments_named("OBX").count(), 3);
    assert_eq!(m.segment_at(4).unwrap().name(), "OBX");
}

#[test]
fn segment_terminators_cr_crlf_lf_and_blank_lines() {
    let cr = parse(ADT);
    for variant in [ADT.replace('\r', "\r\n"), ADT.replace('\r', "\n"), ADT.replace('\r', "\n\n")] {
        let m = Message::parse(variant.as_bytes()).unwrap();
        assert_eq!(m.segment_count(), cr.segment_count());
        assert_eq!(m.get("PID-5.2").unwrap().as_str(), "ALICE");
        assert_eq!(m.get("PV1-3.3").unwrap().as_str(), "A");
    }
    // No final terminator at all.
    let m = parse(ADT.trim_end_matches('\r'));
    assert_eq!(m.get("PV1-3.3").unwrap().as_str(), "A");
}

#[test]
fn byte_order_mark() {
    let mut b = b"\xEF\xBB\xBF".to_vec();
    b.extend_from_slice(ADT.as_bytes());
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.control_id(), Some("MSG00001"));
    assert!(m.text().starts_with("MSH"));
}

#[test]
fn five_encoding_characters() {
    let s = "MSH|^~\\&#|A|B|C|D|2024||ADT^A01|1|P|2.7\rPID|1||1||LAST\\P\\ONE^FIRST#\r";
    let m = parse(s);
    assert_eq!(m.delimiters().truncation, Some(b'#'));
    assert_eq!(m.get("MSH-2").unwrap().as_str(), "^~\\&#");
    assert_eq!(m.get("PID-5.1").unwrap().unescaped(), "LAST#ONE");
    assert_eq!(m.get("PID-5.2").unwrap().as_str(), "FIRST#");
}

#[test]
fn unusual_delimiters() {
    let s = "MSH#@*$%#APP#FAC#B#C#2024##ADT@A01#7#P#2.4\rPID#1##55@@@FAC@MR*66##NAME@WITH$F$HASH%SUB\r";
    let m = parse(s);
    assert_eq!(m.get("PID-3[2]").unwrap().as_str(), "66");
    assert_eq!(m.get("PID-3.4").unwrap().as_str(), "FAC");
    assert_eq!(m.get("PID-5.2.1").unwrap().unescaped(), "WITH#HASH");
    assert_eq!(m.get("PID-5.2.2").unwrap().as_str(), "SUB");
}

#[test]
fn doubled_escape_in_msh2_is_accepted_with_a_warning() {
    let s = "MSH|^~\\\\&|A|B|C|D|2024||ADT^A01|1|P|2.6\rPID|1||X\\F\\Y\r";
    let m = parse(s);
    assert_eq!(m.warnings(), &[Warning::DoubledEscapeInMsh2]);
    assert_eq!(m.get("PID-3").unwrap().unescaped(), "X|Y");
}

#[test]
fn escapes_through_the_message() {
    let s = "MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5\r\
OBX|1|FT|NOTE||Fever \\T\\ chills\\.br\\Pain\\S\\5\\R\\6 \\E\\ \\F\\ \\H\\bold\\N\\ \\X4869\\ \\XC3A9\\\r";
    let m = parse(s);
    let v = m.get("OBX-5").unwrap();
    assert_eq!(v.unescaped(), "Fever & chills\\.br\\Pain^5~6 \\ | \\H\\bold\\N\\ Hi é");
    assert_eq!(v.unescaped_with(hl7v2::escape::Formatting::Render), "Fever & chills\nPain^5~6 \\ | bold Hi é");
}

#[test]
fn explicit_null_is_not_empty() {
    let s = "MSH|^~\\&|A|B|C|D|2024||ADT^A08|1|P|2.5\rPID|1||1||\"\"^JOHN|||\"\"\r";
    let m = parse(s);
    assert!(m.get("PID-5.1").unwrap().is_null());
    assert!(!m.get("PID-5.1").unwrap().is_empty());
    assert!(m.get("PID-8").unwrap().is_null());
    assert!(m.get("PID-7").unwrap().is_empty());
    assert!(!m.get("PID-7").unwrap().is_null());
}

#[test]
fn charsets() {
    // 8859/1: é is 0xE9, transcoded once.
    let b = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5|||||| 8859/1\rPID|1||1||Ren\xE9e^Zo\xEB\r".to_vec();
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.charset(), Charset::Latin1);
    assert!(!m.is_borrowed());
    assert_eq!(m.get("PID-5.1").unwrap().as_str(), "Renée");
    assert_eq!(m.get("PID-5.2").unwrap().as_str(), "Zoë");
    // 8859/15: 0xA4 is the euro sign.
    let b = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||8859/15\rNTE|1||\xA4 5\r";
    assert_eq!(Message::parse(b).unwrap().get("NTE-3").unwrap().as_str(), "€ 5");
    // UTF-8, declared both ways, borrowed.
    for cs in ["UNICODE UTF-8", "UTF-8"] {
        let s = format!("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||{cs}\rPID|1||1||Müller^Jürgen\r");
        let m = Message::parse(s.as_bytes()).unwrap();
        assert_eq!(m.charset(), Charset::Utf8);
        assert!(m.is_borrowed());
        assert_eq!(m.get("PID-5.1").unwrap().as_str(), "Müller");
    }
    // ASCII declared, ASCII sent.
    let s = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||ASCII\rPID|1\r";
    assert_eq!(parse(s).charset(), Charset::Ascii);
    // MSH-18 repeats: the first repetition is the default set.
    let s = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||8859/1~ISO IR87\rPID|1\r";
    assert_eq!(parse(s).charset(), Charset::Latin1);
}

#[test]
fn invalid_bytes_for_declared_charset() {
    let b = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||ASCII\rPID|1||1||Ren\xE9e\r";
    let e = Message::parse(b).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidBytes { charset: "ASCII", byte: 0xE9 });
    assert_eq!(e.location.segment.as_deref(), Some("PID"));
    assert_eq!(e.location.segment_index, Some(2));
    assert_eq!(e.location.field, Some(5));
    assert_eq!(e.location.offset, b.iter().position(|&c| c == 0xE9).unwrap());
    assert_eq!(e.code().code(), 102);

    let b = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||UNICODE UTF-8\rPID|1||1||Bad\xFF\xFEname\r";
    let e = Message::parse(b).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidBytes { byte: 0xFF, .. }));
    // Lenient mode replaces and reports.
    let opts = ParseOptions { lenient_charset: true, ..Default::default() };
    let m = Message::parse_with(b, &opts).unwrap();
    assert_eq!(m.get("PID-5").unwrap().as_str(), "Bad\u{FFFD}\u{FFFD}name");
    assert!(matches!(m.warnings()[0], Warning::ReplacedInvalidBytes { count: 2, .. }));
}

#[test]
fn unknown_and_unsupported_charsets() {
    let e = Message::parse(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||EBCDIC\r").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::UnknownCharset { .. }));
    assert_eq!(e.location.field, Some(18));
    assert_eq!(e.code().code(), 103);
    let e = Message::parse(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||ISO IR87\r").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::UnsupportedCharset { .. }));
}

#[test]
fn required_msh_fields() {
    let cases = [
        ("MSH|^~\\&|A|B|C|D|2024|||1|P|2.5\r", 9),
        ("MSH|^~\\&|A|B|C|D|2024||^A01|1|P|2.5\r", 9),
        ("MSH|^~\\&|A|B|C|D|2024||ADT^A01||P|2.5\r", 10),
        ("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1||2.5\r", 11),
        ("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P\r", 12),
        ("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|\"\"\r", 12),
    ];
    for (s, field) in cases {
        let e = Message::parse(s.as_bytes()).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::RequiredFieldMissing { field: f, .. } if f == field), "{s:?}: {e}");
        assert_eq!(e.location.field, Some(field));
        assert_eq!(e.code().code(), 101);
    }
    // A sender profile may relax a field explicitly.
    let opts = ParseOptions { allow_missing_msh: vec![11], ..Default::default() };
    assert!(Message::parse_with(cases[3].0.as_bytes(), &opts).is_ok());
    assert!(Message::parse_with(cases[2].0.as_bytes(), &opts).is_err());
}

#[test]
fn version_is_read_unescaped() {
    // Found by fuzzing: '.' as the truncation character makes a literal version "2\P\8".
    let m = Message::parse(b"MSH|(^~\\.|A|B|C|D|2024||ADT(A01|1|P|2~P~8\r").unwrap();
    assert_eq!(m.delimiters().truncation, Some(b'.'));
    assert_eq!(m.get("MSH-12").unwrap().unescaped(), "2.8");
    // Likewise MSH-18 when '/' is a delimiter.
    let m = Message::parse(b"MSH|^~\\&/|A|B|C|D|2024||ADT^A01|1|P|2.8||||||8859\\P\\1\rPID|1||\xE9\r").unwrap();
    assert_eq!(m.charset(), Charset::Latin1);
}

#[test]
fn version_must_be_v2() {
    let e = Message::parse(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|3.0\r").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::UnsupportedVersion { .. }));
    assert_eq!(e.code().code(), 203);
    for v in ["2.1", "2.3.1", "2.5.1", "2.8.2", "2.5^USA"] {
        let s = format!("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|{v}\r");
        assert!(Message::parse(s.as_bytes()).is_ok(), "{v}");
    }
}

#[test]
fn malformed_inputs_give_clear_errors() {
    let e = Message::parse(b"").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Empty);
    let e = Message::parse(b"\xEF\xBB\xBF\r\n").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Empty);
    let e = Message::parse(b"PID|1||123\r").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::MissingMsh { ref found } if found == "segment PID"));
    assert_eq!(e.to_string(), "message must start with an MSH segment, found segment PID (at segment 1, byte 0)");
    // Nothing of the content: only the segment id, or the first byte when there is none.
    let e = Message::parse(b"{\"resourceType\":\"Patient\"}").unwrap_err();
    assert_eq!(e.to_string(), "message must start with an MSH segment, found byte 0x7B (at segment 1, byte 0)");
    let e = Message::parse(b"BHS|^~\\&\r").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::BatchHeader { .. }));
    // Bad MSH-2.
    for bad in ["MSH|^~|A\r", "MSH|^^\\&|A\r", "MSH|^~\\&&&&|A\r", "MSHA^~\\&|A\r", "MSH", "MSH|"] {
        let e = Message::parse(bad.as_bytes()).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::BadEncodingCharacters { .. }), "{bad:?}: {e}");
        assert_eq!(e.code().code(), 102);
    }
    // Truncated / garbled segment ids.
    let base = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\r";
    for (tail, found) in [("PI", "PI"), ("PID|1\rpv1|x", "pv1"), ("P D|1", "P D"), ("PIDX|1", "PIDX")] {
        let s = format!("{base}{tail}");
        let e = Message::parse(s.as_bytes()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSegmentId { found: found.into() }, "{tail:?}");
        assert_eq!(e.code().code(), 100);
    }
    let e = Message::parse(format!("{base}PID|1\r{base}").as_bytes()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnexpectedMsh);
    assert_eq!(e.location.segment_index, Some(3));
}

#[test]
fn limits() {
    let big = format!("MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5\rOBX|1|ED|PDF||{}\r", "A".repeat(5000));
    let small = |l: Limits| ParseOptions { limits: l, ..Default::default() };
    let e = Message::parse_with(big.as_bytes(), &small(Limits { max_message_bytes: 1000, ..Limits::default() }))
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::MessageTooLarge { max: 1000, .. }));
    let e =
        Message::parse_with(big.as_bytes(), &small(Limits { max_field_bytes: 4096, ..Limits::default() })).unwrap_err();
    assert_eq!(e.kind, ErrorKind::FieldTooLong { len: 5000, max: 4096 });
    assert_eq!(e.location.segment.as_deref(), Some("OBX"));
    assert_eq!(e.location.field, Some(5));
    let e = Message::parse_with(big.as_bytes(), &small(Limits { max_segments: 1, ..Limits::default() })).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::TooManySegments { max: 1 }));
    assert!(Message::parse(big.as_bytes()).is_ok());
}

#[test]
fn zero_copy_values_point_into_the_input() {
    let m = Message::parse(ADT.as_bytes()).unwrap();
    let v = m.get("PID-5.1").unwrap().as_str();
    let inside = ADT.as_bytes().as_ptr_range();
    assert!(inside.contains(&v.as_ptr()));
}

#[test]
fn into_owned_outlives_input() {
    let owned = {
        let buf = ADT.as_bytes().to_vec();
        Message::parse(&buf).unwrap().into_owned()
    };
    assert_eq!(owned.get("PID-5.2").unwrap().as_str(), "ALICE");
}

#[test]
fn debug_output_has_no_content() {
    let m = parse(ADT);
    let d = format!("{m:?}");
    assert!(!d.contains("ALICE") && !d.contains("TESTPATIENT"), "{d}");
}
