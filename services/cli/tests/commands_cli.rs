//! `arteria convert --enrich` and `arteria terminology …` end to end, on synthetic files.

use std::io::Write;
use std::process::Command;

fn arteria() -> Command {
    Command::new(env!("CARGO_BIN_EXE_arteria"))
}

const ORU: &str = "MSH|^~\\&|LAB|NORTH|HUB|HUB|20240301120000+0100||ORU^R01^ORU_R01|CLI-1|P|2.5.1\rPID|1||CLI-P-1^^^NORTH^MR||FAKE^PAT\rOBR|1|O1||2345-7^^LN\rOBX|1|NM|2345-7^^LN||95|mg/dl|70-99|N|||F\r";

fn observations(stdout: &[u8]) -> Vec<serde_json::Value> {
    let line = String::from_utf8(stdout.to_vec()).unwrap();
    let bundle: serde_json::Value = serde_json::from_str(line.lines().next().expect("one bundle")).unwrap();
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .filter(|r| r["resourceType"] == "Observation")
        .collect()
}

#[test]
fn convert_enrich_adds_display_and_ucum_beside_the_originals() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("oru.hl7");
    std::fs::write(&f, ORU).unwrap();

    let plain = arteria().arg("convert").arg(&f).output().unwrap();
    assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
    let obs = observations(&plain.stdout);
    assert_eq!(obs[0]["valueQuantity"]["unit"], "mg/dl");
    assert!(obs[0]["valueQuantity"].get("code").is_none(), "not enriched without --enrich");

    let enriched = arteria().args(["convert", "--enrich"]).arg(&f).output().unwrap();
    assert!(enriched.status.success(), "{}", String::from_utf8_lossy(&enriched.stderr));
    let obs = observations(&enriched.stdout);
    assert_eq!(obs[0]["valueQuantity"]["unit"], "mg/dl", "sender's unit kept");
    assert_eq!(obs[0]["valueQuantity"]["code"], "mg/dL");
    assert_eq!(obs[0]["valueQuantity"]["system"], "http://unitsofmeasure.org");
    assert_eq!(obs[0]["code"]["coding"][0]["code"], "2345-7");
    assert!(obs[0]["code"]["coding"][0]["display"].as_str().unwrap().contains("Glucose"));
}

#[test]
fn terminology_load_then_lookup_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("Loinc.csv");
    let mut w = std::fs::File::create(&csv).unwrap();
    // A made-up code in the LOINC table layout (only the columns the loader reads matter).
    writeln!(w, "\"LOINC_NUM\",\"STATUS\",\"LONG_COMMON_NAME\",\"CLASSTYPE\"").unwrap();
    writeln!(w, "\"99999-5\",\"ACTIVE\",\"Made-up analyte for the CLI test\",\"1\"").unwrap();
    writeln!(w, "\"bad row without enough columns\"").unwrap();
    drop(w);
    let store = dir.path().join("local.store");

    let load = arteria()
        .args(["terminology", "load", "--version", "test-1", "--store"])
        .arg(&store)
        .arg(&csv)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&load.stdout);
    assert!(load.status.success(), "{report}{}", String::from_utf8_lossy(&load.stderr));
    assert!(report.contains("Loinc.csv:3"), "the malformed row is reported with file and line: {report}");

    let found = arteria()
        .args(["terminology", "lookup", "--store"])
        .arg(&store)
        .args(["http://loinc.org", "99999-5"])
        .output()
        .unwrap();
    assert!(found.status.success(), "{}", String::from_utf8_lossy(&found.stderr));
    assert!(String::from_utf8_lossy(&found.stdout).contains("Made-up analyte for the CLI test"));

    let missing = arteria().args(["terminology", "lookup", "http://loinc.org", "99999-5"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1), "not in the shipped content alone");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}
