//! The `arteria parse` command end to end, on synthetic files.

use std::io::Write;
use std::process::Command;

fn arteria() -> Command {
    Command::new(env!("CARGO_BIN_EXE_arteria"))
}

fn file(content: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(content).unwrap();
    f
}

const M1: &str = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rEVN|A01\rPID|1||7^^^H^MR||FAKE^PAT\rPV1|1|I\r";
const M2: &str = "MSH|^~\\&|A|B|C|D|2024||ORU^R01|2|P|2.5\rPID|1\rOBR|1\rOBX|1|NM|X||1\r";

#[test]
fn parses_a_multi_message_file() {
    let f = file(format!("{M1}\n{M2}\n{M1}").as_bytes());
    let out = arteria().arg("parse").arg(f.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(": 3 messages (ADT^A01 ×2, ORU^R01 ×1), 0 errors"), "{stdout}");
}

#[test]
fn reports_errors_with_location_and_fails() {
    let bad = M2.replace("|2|P|2.5", "|2||2.5");
    let f = file(format!("{M1}{bad}").as_bytes());
    let out = arteria().arg("parse").arg(f.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("message 2"), "{stderr}");
    assert!(stderr.contains("MSH-11 (processing id)"), "{stderr}");
    assert!(stderr.contains("[HL7 101]"), "{stderr}");
    // The same file passes when the sender profile allows MSH-11 to be empty.
    let out = arteria().args(["parse", "--allow-missing", "MSH-11"]).arg(f.path()).output().unwrap();
    assert!(out.status.success());
}

#[test]
fn batches_mllp_dumps_and_json() {
    let batch = format!("FHS|^~\\&\rBHS|^~\\&\r{M1}{M2}BTS|2\rFTS|1\r");
    let mut mllp = vec![0x0b];
    mllp.extend_from_slice(M2.as_bytes());
    mllp.extend_from_slice(b"\x1c\r");
    let (a, b) = (file(batch.as_bytes()), file(&mllp));
    let out = arteria().args(["parse", "--json"]).arg(a.path()).arg(b.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["type"], "ORU");
    let s = &lines[1]["structure"];
    assert_eq!(s["group"], "ORU_R01");
    assert_eq!(s["items"][1]["group"], "PATIENT_RESULT");
    assert_eq!(lines[2]["file"], b.path().display().to_string());
}

#[test]
fn garbage_and_missing_files_fail_cleanly() {
    let g = file(&[0xff, 0x00, 0x13, 0x37, b'\n', 0x80]);
    let out = arteria().arg("parse").arg(g.path()).arg("/nonexistent/file.hl7").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("outside any message"), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn bad_batch_count_fails() {
    let f = file(format!("BHS|^~\\&\r{M1}BTS|5\r").as_bytes());
    let out = arteria().arg("parse").arg(f.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BTS-1 says 5 messages, but there are 1"));
}
