//! Any bytes: parse (strict and lenient), walk every field down to subcomponents, unescape,
//! group by structure, re-encode and re-parse, split as a batch, sniff the header, build a
//! NAK. Nothing may panic, and a message that parsed must re-parse to the same segments.
#![no_main]

use hl7v2::{batch, encode::OwnedMessage, Ack, ErrDetail, Header, Message, ParseOptions, Warning};
use libfuzzer_sys::fuzz_target;

fn walk(m: &Message<'_>) {
    for seg in m.segments() {
        for f in seg.fields() {
            let _ = f.unescaped();
            for r in f.repetitions() {
                for c in r.components() {
                    for s in c.subcomponents() {
                        let _ = s.unescaped_with(hl7v2::escape::Formatting::Render);
                        let _ = s.is_null();
                    }
                }
            }
        }
    }
    let _ = m.structure();
    for p in ["PID-3[2].1", "OBX(2)-5.1.1", "MSH-9.2", "MSH-2"] {
        let _ = m.get(p);
    }
}

fuzz_target!(|data: &[u8]| {
    let lenient = ParseOptions { lenient_charset: true, ..Default::default() };
    for opts in [ParseOptions::default(), lenient] {
        match Message::parse_with(data, &opts) {
            Ok(m) => {
                walk(&m);
                let _ = Ack::for_message(&m).accept();
                // Lenient decoding may have put U+FFFD where the declared set cannot write it
                // back; the identity holds for everything else.
                if m.warnings().iter().any(|w| matches!(w, Warning::ReplacedInvalidBytes { .. })) {
                    continue;
                }
                let again_bytes = m.encode();
                let again = Message::parse_with(&again_bytes, &opts).expect("re-encoded message must parse");
                assert_eq!(again.segment_count(), m.segment_count());
                for (a, b) in again.segments().zip(m.segments()) {
                    assert_eq!(a.raw(), b.raw());
                }
                let owned = OwnedMessage::from_message(&m);
                let bytes = owned.encode();
                let back = Message::parse_with(&bytes, &opts).expect("owned re-encoding must parse");
                assert_eq!(OwnedMessage::from_message(&back), owned);
            }
            Err(e) => {
                let _ = e.to_string();
                let _ = Ack::for_bytes(data).reject(&[ErrDetail::from(&e)]);
            }
        }
    }
    let _ = Header::sniff(data);
    if let Ok(split) = batch::split(data) {
        for c in split.messages() {
            let _ = Message::parse(c.bytes);
        }
    }
});
