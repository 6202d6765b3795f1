//! Loaders and the UCUM parser never panic, whatever the bytes: random files and byte-flipped
//! copies of the fixtures give `Ok` (with skipped rows) or a clear `Err`, never a panic.

use std::path::{Path, PathBuf};

use terminology::{Format, LoadOptions, Ucum, loaders};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A small deterministic generator (no test may depend on luck).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn loaders_survive_random_and_mutated_files() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Format, &str); 6] = [
        ("Loinc.csv", Format::Loinc, "Loinc.csv"),
        ("icd10cm_order_2025.txt", Format::Icd10cmOrder, "icd10cm_order_2025.txt"),
        ("RXNCONSO.RRF", Format::RxnormRrf, "RXNCONSO.RRF"),
        ("ucum-essence-mini.xml", Format::UcumEssence, "ucum-essence.xml"),
        ("fhir/conceptmap-lab1.json", Format::FhirJson, "map.json"),
        ("fhir/codesystem-specimen.json", Format::FhirJson, "cs.json"),
    ];
    let mut rng = Lcg(42);
    let mut outcomes = (0, 0);
    for (src, format, name) in cases {
        let original = std::fs::read(fixture(src)).unwrap();
        let path = dir.path().join(name);
        for round in 0..150 {
            let bytes: Vec<u8> = if round % 3 == 0 {
                (0..(rng.next() % 300)).map(|_| rng.next() as u8).collect()
            } else {
                let mut b = original.clone();
                for _ in 0..(1 + rng.next() % 8) {
                    let i = (rng.next() as usize) % b.len();
                    b[i] = rng.next() as u8;
                }
                b
            };
            std::fs::write(&path, &bytes).unwrap();
            match loaders::load(format, &path, &LoadOptions::default()) {
                Ok(_) => outcomes.0 += 1,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    outcomes.1 += 1;
                }
            }
        }
    }
    // Both paths were exercised.
    assert!(outcomes.0 > 0 && outcomes.1 > 0, "{outcomes:?}");
}

#[test]
fn ucum_parser_survives_every_short_string() {
    let alphabet = ["m", "g", "/", ".", "(", ")", "[", "]", "{", "}", "1", "0", "*", "^", "-", "L", "µ", " "];
    let u = Ucum::builtin();
    let mut valid = 0;
    for a in alphabet {
        for b in alphabet {
            for c in alphabet {
                for d in alphabet {
                    let s = format!("{a}{b}{c}{d}");
                    if u.validate(&s).is_ok() {
                        valid += 1;
                        // A valid unit also has a canonical form and converts to itself.
                        let canon = u.canonical(&s).unwrap();
                        if canon.special.is_none() && !canon.special_in_compound {
                            let v = u.convert(1.0, &s, &s).unwrap();
                            assert!((v - 1.0).abs() < 1e-9, "{s}: {v}");
                        }
                    }
                }
            }
        }
    }
    assert!(valid > 100, "{valid}");
}
