//! Property tests: messages generated from the model (arbitrary text full of delimiter
//! characters, line breaks, backslashes and non-ASCII) survive encode → parse unchanged, in
//! several delimiter sets and character sets; and arbitrary bytes never make the parser panic.

use hl7v2::encode::{Leaf, OwnedField, OwnedMessage, OwnedSegment};
use hl7v2::{Charset, Delimiters, Message};
use proptest::prelude::*;

fn delimiters() -> impl Strategy<Value = Delimiters> {
    prop_oneof![
        Just(Delimiters::default()),
        Just(Delimiters { truncation: Some(b'#'), ..Delimiters::default() }),
        Just(Delimiters::from_msh(b'!', b"@*$%").unwrap().0),
        Just(Delimiters::from_msh(b'|', b"^~\\&").unwrap().0),
    ]
}

fn leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        1 => Just(Leaf::Null),
        2 => "[a-z ]{0,6}".prop_map(Leaf::Text),
        6 => "[a-zA-Z0-9 |^~\\\\&#!@*$%\"\r\néü€日\\.]{0,12}".prop_map(Leaf::Text),
    ]
}

fn field() -> impl Strategy<Value = OwnedField> {
    prop::collection::vec(prop::collection::vec(prop::collection::vec(leaf(), 1..3), 1..4), 1..3)
        .prop_map(|repetitions| OwnedField { repetitions })
}

fn segment() -> impl Strategy<Value = OwnedSegment> {
    ("[A-Z][A-Z0-9]{2}", prop::collection::vec(field(), 0..7))
        .prop_filter("not a header", |(n, _)| !matches!(n.as_str(), "MSH" | "FHS" | "BHS" | "BTS" | "FTS"))
        .prop_map(|(name, fields)| OwnedSegment { name, fields })
}

fn message() -> impl Strategy<Value = OwnedMessage> {
    (delimiters(), prop::bool::ANY, field(), prop::collection::vec(segment(), 0..6)).prop_map(
        |(d, latin1, app, segs)| {
            let mut m = OwnedMessage::new(d);
            m.segments[0].fields.push(app);
            m.set("MSH-9.1", "ORU").unwrap();
            m.set("MSH-9.2", "R01").unwrap();
            m.set("MSH-10", "ID|1").unwrap();
            m.set("MSH-11", "P").unwrap();
            m.set("MSH-12", "2.5.1").unwrap();
            if latin1 {
                m.charset = Charset::Latin1;
                m.set("MSH-18", "8859/1").unwrap();
            }
            m.segments.extend(segs);
            m
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn model_encode_parse_is_identity(m in message()) {
        let bytes = m.encode();
        let parsed = Message::parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(OwnedMessage::from_message(&parsed), m.clone());
        // And the parsed message re-encodes to the same bytes.
        prop_assert_eq!(parsed.encode(), bytes);
    }

    #[test]
    fn path_access_sees_the_model(m in message()) {
        let bytes = m.encode();
        let parsed = Message::parse(&bytes).unwrap();
        for (si, seg) in m.segments.iter().enumerate().skip(1) {
            let s = parsed.segment_at(si + 1).unwrap();
            prop_assert_eq!(s.name(), seg.name.as_str());
            for (fi, f) in seg.fields.iter().enumerate() {
                for (ri, r) in f.repetitions.iter().enumerate() {
                    for (ci, c) in r.iter().enumerate() {
                        for (ki, l) in c.iter().enumerate() {
                            let v = s.field(fi + 1).unwrap().repetition(ri + 1).unwrap()
                                .component(ci + 1).unwrap().subcomponent(ki + 1).unwrap();
                            match l {
                                Leaf::Null => prop_assert!(v.is_null()),
                                Leaf::Text(t) => prop_assert_eq!(v.unescaped(), t.as_str()),
                                Leaf::Raw(r) => prop_assert_eq!(v.as_str(), r.as_str()),
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Message::parse(&bytes);
        let _ = hl7v2::batch::split(&bytes);
        let _ = hl7v2::Header::sniff(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(m in message(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = m.encode();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(p) = Message::parse(&bytes) {
            let _ = p.structure();
            for s in p.segments() { for f in s.fields() { let _ = f.unescaped(); } }
        }
    }
}
