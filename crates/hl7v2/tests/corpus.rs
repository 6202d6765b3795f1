//! Every HL7 v2 message of the shared sample corpus parses, round-trips, groups without
//! losing a segment, and can be acknowledged.
//!
//! The corpus is read in place from `$ARTERIA_SHARED/corpus` (default: `../shared` next to
//! the workspace root) and never copied into the repository. When it is missing the test
//! fails under `CI=true` and otherwise prints a loud skip notice.
//!
//! Four corpus messages leave MSH-11 (processing id) empty. The parser treats a missing
//! required MSH field as an error, so this test checks that they fail with exactly that
//! error under the default options and parse once a sender profile allows it.

use hl7v2::encode::OwnedMessage;
use hl7v2::{Ack, AckCode, ErrorKind, Header, Message, ParseOptions, batch};
use std::path::{Path, PathBuf};

fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("ARTERIA_SHARED") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    let corpus = dir.join("corpus");
    if corpus.is_dir() {
        return Some(corpus);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("shared corpus not found at {} (set ARTERIA_SHARED)", corpus.display());
    }
    eprintln!("\n*** SKIPPING corpus test: no corpus at {} (set ARTERIA_SHARED) ***\n", corpus.display());
    None
}

/// HL7 v2 files: `*.hl7` and `*.txt` anywhere in the corpus (the C-CDA folders hold XML).
fn hl7_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            hl7_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("hl7" | "txt")) {
            out.push(p);
        }
    }
}

fn check_round_trips(m: &Message<'_>, opts: &ParseOptions, name: &str) {
    let bytes = m.encode();
    let again = Message::parse_with(&bytes, opts).unwrap_or_else(|e| panic!("{name}: re-parse: {e}"));
    assert_eq!(again.segment_count(), m.segment_count(), "{name}");
    for (a, b) in again.segments().zip(m.segments()) {
        assert_eq!(a.raw(), b.raw(), "{name}");
    }
    let owned = OwnedMessage::from_message(m);
    let rebuilt = owned.encode();
    let back = Message::parse_with(&rebuilt, opts).unwrap_or_else(|e| panic!("{name}: owned re-parse: {e}"));
    assert_eq!(OwnedMessage::from_message(&back), owned, "{name}");
}

#[test]
fn corpus_parses_round_trips_and_groups() {
    let Some(corpus) = shared_dir() else { return };
    let mut files = Vec::new();
    hl7_files(&corpus, &mut files);
    assert!(files.len() >= 200, "only {} HL7 v2 files found under {}", files.len(), corpus.display());

    let relaxed = ParseOptions { allow_missing_msh: vec![11], ..Default::default() };
    let (mut messages, mut grouped, mut missing_msh11) = (0, 0, Vec::new());
    for path in &files {
        let name = path.strip_prefix(&corpus).unwrap().display().to_string();
        let bytes = std::fs::read(path).unwrap();
        let split = batch::split(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        for chunk in split.messages() {
            messages += 1;
            let header = Header::sniff(chunk.bytes).unwrap_or_else(|| panic!("{name}: no MSH"));
            let (m, opts) = match Message::parse(chunk.bytes) {
                Ok(m) => (m, ParseOptions::default()),
                Err(e) => {
                    // The only accepted failure: MSH-11 really is empty.
                    assert!(
                        matches!(e.kind, ErrorKind::RequiredFieldMissing { field: 11, .. })
                            && header.processing_id.is_empty(),
                        "{name}: {e}"
                    );
                    missing_msh11.push(name.clone());
                    let m = Message::parse_with(chunk.bytes, &relaxed).unwrap_or_else(|e| panic!("{name}: {e}"));
                    (m, relaxed.clone())
                }
            };
            check_round_trips(&m, &opts, &name);
            if let Ok(g) = m.structure() {
                grouped += 1;
                let mut all = g.all_segment_indexes();
                all.sort_unstable();
                assert_eq!(all, (1..=m.segment_count()).collect::<Vec<_>>(), "{name}: segments lost or duplicated");
            }
            let ack = Ack::for_message(&m).control_id("T").timestamp("20240101").build(AckCode::AA, &[]);
            let ack = Message::parse(&ack).unwrap_or_else(|e| panic!("{name}: ACK does not parse: {e}"));
            assert_eq!(ack.get("MSA-2").map(|v| v.as_str()), m.control_id(), "{name}");
        }
    }
    eprintln!(
        "corpus: {} files, {messages} messages, {grouped} grouped by a known structure, {} need MSH-11 relaxed: {missing_msh11:?}",
        files.len(),
        missing_msh11.len()
    );
    assert!(messages >= 200);
    assert_eq!(missing_msh11.len(), 4, "{missing_msh11:?}");
    assert_eq!(grouped, messages, "every corpus message type has a structure definition");
}
