//! The server's time zone never changes the output: the same conversion run in child
//! processes under different `TZ` settings gives byte-identical bundles (times without an
//! offset take the sender profile's or the configured fallback zone, never the local one).

use std::process::Command;

const MSG: &str = "MSH|^~\\&|LAB|ACME|EHR|ACME|20240115083000||ORU^R01|TZ-1|P|2.5.1\rPID|1||MRN1^^^ACME^MR||DOE^JANE||19800215|F\rOBR|1|PL1||1-1^Panel^LN|||202407150830|||||||||||||||||F\rOBX|1|NM|2-2^Test^LN||7|mg/dL^mg/dL^UCUM|||||F|||202403100230\r";

fn child_output() -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), "name='p'\napplication='LAB'\ntime_zone='America/New_York'\n").unwrap();
    let with_profile = mapping::Profiles::load_dir(dir.path()).unwrap();
    let a = mapping::convert_bytes(MSG.as_bytes(), &with_profile, "t").unwrap().to_bundle_json(false);
    let b = mapping::convert_bytes(MSG.as_bytes(), &mapping::Profiles::default(), "t").unwrap().to_bundle_json(false);
    format!("{a}\n{b}")
}

#[test]
fn server_time_zone_does_not_change_output() {
    if std::env::var_os("ARTERIA_TZ_CHILD").is_some() {
        println!("<<<{}>>>", child_output());
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let run = |tz: &str| {
        let out = Command::new(&exe)
            .args(["--exact", "server_time_zone_does_not_change_output", "--nocapture", "--test-threads=1"])
            .env("ARTERIA_TZ_CHILD", "1")
            .env("TZ", tz)
            .output()
            .unwrap();
        let s = String::from_utf8(out.stdout).unwrap();
        let start = s.find("<<<").expect("child printed its output") + 3;
        let end = s.find(">>>").unwrap();
        s[start..end].to_string()
    };
    let kolkata = run("Asia/Kolkata");
    let la = run("America/Los_Angeles");
    let utc = run("UTC");
    assert_eq!(kolkata, la);
    assert_eq!(kolkata, utc);
    // And the zones applied are the profile's (EST/EDT, DST gap moved forward) and UTC fallback.
    let (profiled, fallback) = kolkata.split_once('\n').unwrap();
    assert!(profiled.contains(r#""timestamp":"2024-01-15T08:30:00-05:00""#));
    assert!(profiled.contains(r#""effectiveDateTime":"2024-07-15T08:30:00-04:00""#));
    assert!(
        profiled.contains(r#""effectiveDateTime":"2024-03-10T03:30:00-04:00""#),
        "02:30 does not exist in New York on 2024-03-10"
    );
    assert!(fallback.contains(r#""timestamp":"2024-01-15T08:30:00+00:00""#));
}
