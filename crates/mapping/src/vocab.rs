//! Vocabulary maps from the V2-to-FHIR IG's code system concept maps, hand-coded (the IG's
//! tables are the specification; see `v2-to-fhir-mappings/codesystems`).
//!
//! Each function maps one v2 table code to its FHIR code; `None` means the code is not in the
//! map, and the caller keeps the original and reports it — a guess is never made.

/// System URI of an HL7 v2 table, e.g. `v2-0203`.
pub fn v2_table(n: &str) -> String {
    format!("http://terminology.hl7.org/CodeSystem/v2-{n}")
}

/// HL7 table 0001 AdministrativeSex → `Patient.gender`.
pub fn administrative_sex(code: &str) -> Option<&'static str> {
    Some(match code {
        "F" => "female",
        "M" => "male",
        "O" | "A" | "N" => "other",
        "U" => "unknown",
        _ => return None,
    })
}

/// HL7 table 0004 PatientClass → `Encounter.class` (system, code, display).
pub fn patient_class(code: &str) -> Option<(&'static str, &'static str, &'static str)> {
    const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
    const V2: &str = "http://terminology.hl7.org/CodeSystem/v2-0004";
    Some(match code {
        "E" => (ACT, "EMER", "emergency"),
        "I" => (ACT, "IMP", "inpatient encounter"),
        "O" => (ACT, "AMB", "ambulatory"),
        "P" => (ACT, "PRENC", "pre-admission"),
        "R" => (V2, "R", "Recurring patient"),
        "B" => (V2, "B", "Obstetrics"),
        "C" => (V2, "C", "Commercial Account"),
        "N" => (V2, "N", "Not Applicable"),
        "U" => (V2, "U", "Unknown"),
        _ => return None,
    })
}

/// Trigger event (table 0003) → `Encounter.status`, per the IG's Event[EncounterStatus] map,
/// plus the cancels of never-happened encounters (A27 cancel pending admit, A38 cancel
/// pre-admit) which like A11 mean the encounter did not take place.
pub fn event_encounter_status(trigger: &str) -> Option<&'static str> {
    Some(match trigger {
        "A01" | "A02" | "A06" | "A07" | "A12" | "A13" | "A15" | "A16" | "A21" | "A22" | "A25" | "A26" | "A32"
        | "A33" => "in-progress",
        "A03" => "finished",
        "A04" | "A05" | "A14" => "planned",
        "A11" | "A27" | "A38" => "entered-in-error",
        _ => return None,
    })
}

/// HL7 table 0085 ObservationResultStatus → `Observation.status`.
pub fn observation_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "C" => "corrected",
        "D" | "W" => "entered-in-error",
        "F" | "U" | "V" => "final",
        "P" | "R" | "S" => "preliminary",
        "I" | "O" => "registered",
        "X" | "N" => "cancelled",
        "A" | "B" => "amended",
        _ => return None,
    })
}

/// HL7 table 0123 ResultStatus → `DiagnosticReport.status`.
pub fn report_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "O" | "I" | "S" => "registered",
        "P" => "preliminary",
        "C" => "corrected",
        "R" | "A" | "N" | "M" => "partial",
        "F" => "final",
        "X" => "cancelled",
        _ => return None,
    })
}

/// HL7 table 0078 abnormal flags → v3 ObservationInterpretation (code, display).
pub fn interpretation(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "L" => ("L", "Low"),
        "H" => ("H", "High"),
        "LL" => ("LL", "Critical low"),
        "HH" => ("HH", "Critical high"),
        "LU" => ("LU", "Significantly low"),
        "HU" => ("HU", "Significantly high"),
        "<" => ("<", "Off scale low"),
        ">" => (">", "Off scale high"),
        "N" => ("N", "Normal"),
        "A" => ("A", "Abnormal"),
        "AA" => ("AA", "Critical abnormal"),
        "U" => ("U", "Significant change up"),
        "D" => ("D", "Significant change down"),
        "B" => ("B", "Better"),
        "W" => ("W", "Worse"),
        "S" => ("S", "Susceptible"),
        "R" => ("R", "Resistant"),
        "I" => ("I", "Intermediate"),
        "MS" => ("MS", "moderately susceptible"),
        "VS" => ("VS", "very susceptible"),
        "POS" => ("POS", "Positive"),
        "NEG" => ("NEG", "Negative"),
        "IND" => ("IND", "Indeterminate"),
        "DET" => ("DET", "Detected"),
        "ND" => ("ND", "Not detected"),
        "CAR" => ("CAR", "Carrier"),
        "IE" => ("IE", "Insufficient evidence"),
        "NS" => ("NS", "Non-susceptible"),
        "RR" => ("RR", "Reactive"),
        "NR" => ("NR", "Non-reactive"),
        "WR" => ("WR", "Weakly reactive"),
        "E" => ("E", "Equivocal"),
        "EX" => ("EX", "outside threshold"),
        "EXP" => ("EXP", "Expected"),
        "UNE" => ("UNE", "Unexpected"),
        "NCL" => ("NCL", "No CLSI defined breakpoint"),
        "SDD" => ("SDD", "Susceptible-dose dependent"),
        "SYN-R" => ("SYN-R", "Synergy - resistant"),
        "SYN-S" => ("SYN-S", "Synergy - susceptible"),
        _ => return None,
    })
}

/// Order control (table 0119) and order status (0038) → `ServiceRequest.status`.
/// Order status is more precise and wins when present.
pub fn order_status(control: Option<&str>, status: Option<&str>) -> &'static str {
    let by_status = status.and_then(|s| {
        Some(match s {
            "A" | "IP" | "SC" => "active",
            "CA" | "DC" => "revoked",
            "CM" => "completed",
            "ER" => "entered-in-error",
            "HD" => "on-hold",
            "RP" => "revoked",
            _ => return None,
        })
    });
    if let Some(s) = by_status {
        return s;
    }
    match control.unwrap_or("") {
        "NW" | "SN" | "XO" | "XX" | "RL" | "OK" | "SC" | "RE" | "NA" | "PA" | "CH" | "FU" => "active",
        "CA" | "OC" | "CR" | "DC" | "OD" | "DR" | "RP" | "RU" => "revoked",
        "HD" | "OH" | "HR" => "on-hold",
        "OE" => "entered-in-error",
        _ => "unknown",
    }
}

/// Whether an order status (0038) / order control (0119) code is one [`order_status`] maps.
pub fn order_codes_known(control: Option<&str>, status: Option<&str>) -> (bool, bool) {
    let c = control.is_none_or(|c| order_status(Some(c), None) != "unknown");
    let s = status.is_none_or(|s| matches!(s, "A" | "IP" | "SC" | "CA" | "DC" | "CM" | "ER" | "HD" | "RP"));
    (c, s)
}

/// Table 0203 identifier types known to the v2-0203 FHIR code system.
pub fn identifier_type_known(code: &str) -> bool {
    matches!(
        code,
        "MR" | "PI"
            | "PT"
            | "SS"
            | "DL"
            | "PPN"
            | "NI"
            | "NH"
            | "PN"
            | "PRN"
            | "AN"
            | "VN"
            | "EN"
            | "BRN"
            | "MA"
            | "MC"
            | "MD"
            | "NPI"
            | "DN"
            | "LN"
            | "TAX"
            | "SB"
            | "PE"
            | "PCN"
            | "U"
            | "FILL"
            | "PLAC"
            | "ACSN"
            | "RRI"
            | "XX"
            | "NE"
            | "EI"
            | "DR"
            | "WC"
            | "SR"
            | "UPIN"
            | "HC"
            | "JHN"
            | "CZ"
            | "RI"
            | "AM"
            | "BA"
            | "CY"
            | "DDS"
            | "DEA"
            | "DFN"
            | "DI"
            | "DO"
            | "DP"
            | "DPM"
            | "DS"
            | "EMR"
            | "GI"
            | "GL"
            | "GN"
            | "LR"
            | "MB"
            | "MCD"
            | "MCN"
            | "MCR"
            | "MCT"
            | "MI"
            | "NCT"
            | "NII"
            | "NIIP"
            | "NP"
            | "NBSNR"
            | "OD"
            | "PEN"
            | "PNT"
            | "RN"
            | "RPH"
            | "RR"
            | "TN"
            | "UPN"
            | "VS"
            | "WP"
            | "ANON"
            | "BC"
            | "BCT"
            | "CC"
            | "DNS"
            | "ESN"
            | "FI"
            | "HV"
            | "IND"
            | "MRT"
            | "PHC"
            | "PRC"
            | "QA"
            | "SID"
            | "SN"
            | "SP"
            | "TPR"
            | "APRN"
    )
}

/// Table 0201 telecommunication use → `ContactPoint.use` (and implied system).
pub fn telecom_use(code: &str) -> Option<&'static str> {
    Some(match code {
        "PRN" | "ORN" | "VHN" => "home",
        "WPN" => "work",
        "PRS" => "mobile",
        "EMR" | "NET" | "BPN" | "ASN" => return None,
        _ => return None,
    })
}

/// Table 0202 telecommunication equipment → `ContactPoint.system`.
pub fn telecom_system(code: &str) -> Option<&'static str> {
    Some(match code {
        "PH" | "CP" | "SAT" | "TDD" | "TTY" => "phone",
        "FX" => "fax",
        "Internet" | "X.400" => "email",
        "BP" => "pager",
        "MD" => "other",
        _ => return None,
    })
}

/// Table 0190 address type → `Address.use` / `Address.type`.
pub fn address_use(code: &str) -> (Option<&'static str>, Option<&'static str>) {
    match code {
        "H" | "P" => (Some("home"), None),
        "B" | "O" => (Some("work"), None),
        "C" => (Some("temp"), None),
        "BA" => (Some("old"), None),
        "M" => (None, Some("postal")),
        "SH" => (None, Some("physical")),
        _ => (None, None),
    }
}

/// Table 0200 name type → `HumanName.use`.
pub fn name_use(code: &str) -> Option<&'static str> {
    Some(match code {
        "L" | "D" | "U" => "usual",
        "A" | "S" | "P" | "I" | "N" | "K" => match code {
            "A" | "P" => "nickname",
            "S" | "K" => "anonymous",
            _ => "usual",
        },
        "M" | "B" | "BAD" => "maiden",
        "C" | "R" => "official",
        "NB" => "old",
        "T" => "temp",
        _ => return None,
    })
}

/// Table 0127 allergen type → `AllergyIntolerance.category` and `.type`.
pub fn allergen_type(code: &str) -> (Option<&'static str>, Option<&'static str>) {
    match code {
        "DA" => (Some("medication"), Some("allergy")),
        "FA" => (Some("food"), Some("allergy")),
        "EA" => (Some("environment"), Some("allergy")),
        "MA" => (None, Some("allergy")),
        "MC" => (Some("medication"), None),
        "AA" => (Some("biologic"), Some("allergy")),
        "PA" => (Some("environment"), Some("allergy")),
        "DI" => (Some("medication"), Some("intolerance")),
        "FI" => (Some("food"), Some("intolerance")),
        "EI" => (Some("environment"), Some("intolerance")),
        "MI" => (None, Some("intolerance")),
        "LA" => (Some("environment"), Some("allergy")),
        "PL" => (Some("environment"), Some("allergy")),
        _ => (None, None),
    }
}

/// Table 0128 allergy severity → `AllergyIntolerance.criticality` and reaction severity.
pub fn allergy_severity(code: &str) -> (Option<&'static str>, Option<&'static str>) {
    match code {
        "SV" => (Some("high"), Some("severe")),
        "MO" => (Some("low"), Some("moderate")),
        "MI" => (Some("low"), Some("mild")),
        "U" => (Some("unable-to-assess"), None),
        _ => (None, None),
    }
}

/// Table 0322 completion status → `Immunization.status`.
pub fn completion_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "CP" | "PA" => "completed",
        "RE" | "NA" => "not-done",
        _ => return None,
    })
}

/// Table 0278 filler status → `Appointment.status`.
pub fn appointment_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "Booked" | "Confirmed" => "booked",
        "Cancelled" | "Deleted" => "cancelled",
        "Complete" => "fulfilled",
        "Dc" => "cancelled",
        "Noshow" => "noshow",
        "Overbook" => "booked",
        "Pending" | "Waitlist" => "pending",
        "Started" => "arrived",
        "Blocked" => "booked",
        _ => return None,
    })
}

/// Codes of the HL7 tables this mapping emits as `v2-nnnn` codings, so a sender's local code
/// is never presented as an HL7 table code. `None`: the table's content is not listed here
/// (the code is trusted as sent).
pub fn table_codes(table: &str) -> Option<&'static [&'static str]> {
    Some(match table {
        "0001" => &["F", "M", "O", "U", "A", "N"],
        "0002" => &["A", "B", "C", "D", "E", "G", "I", "M", "N", "O", "P", "R", "S", "T", "U", "W"],
        "0004" => &["E", "I", "O", "P", "R", "B", "C", "N", "U"],
        "0007" => &["A", "C", "E", "L", "N", "R", "U"],
        "0023" => &["1", "2", "3", "4", "5", "6", "7", "8", "9"],
        "0052" => &["A", "W", "F"],
        "0063" => &[
            "ASC", "BRO", "CGV", "CHD", "DEP", "DOM", "EMC", "EME", "EMR", "EXF", "FCH", "FND", "FTH", "GCH", "GRD",
            "GRP", "LIF", "MGR", "MTH", "NCH", "NON", "OAD", "OTH", "OWN", "PAR", "SCH", "SEL", "SIB", "SIS", "SPO",
            "TRA", "UNK", "WRD",
        ],
        "0069" => &["CAR", "MED", "PUL", "SUR", "URO"],
        "0074" => &[
            "AU", "BG", "BLB", "CG", "CUS", "CTH", "CT", "CH", "CP", "EC", "EN", "GE", "HM", "ICU", "IMM", "LAB", "MB",
            "MCB", "MYC", "NMS", "NMR", "NRS", "OUS", "OT", "OTH", "OSL", "PAR", "PAT", "PHR", "PT", "PHY", "PF",
            "RAD", "RX", "RUS", "RC", "RT", "SR", "SP", "TX", "URN", "VUS", "VR", "XRC",
        ],
        "0092" => &["R"],
        "0112" => &[
            "01", "02", "03", "04", "05", "06", "07", "08", "09", "20", "21", "22", "23", "24", "25", "26", "27", "28",
            "29", "30", "31", "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42",
        ],
        "0131" => &["BP", "C", "CP", "E", "EP", "F", "I", "N", "O", "PR", "S", "U"],
        "0162" => &[
            "AP", "B", "DT", "EP", "ET", "GTT", "GU", "IA", "IB", "IC", "ICV", "ID", "IH", "IHA", "IM", "IMR", "IN",
            "IO", "IP", "IS", "IT", "IU", "IV", "MM", "MTH", "NG", "NP", "NS", "NT", "OP", "OT", "OTH", "PF", "PO",
            "PR", "RM", "SC", "SD", "SL", "TD", "TL", "TP", "TRA", "UR", "VG", "VM", "WND",
        ],
        "0163" => &[
            "BE", "BN", "BU", "CT", "LA", "LAC", "LACF", "LD", "LE", "LEJ", "LF", "LG", "LH", "LIJ", "LLAQ", "LLFA",
            "LMFA", "LN", "LPC", "LSC", "LT", "LUA", "LUAQ", "LUFA", "LVG", "LVL", "NB", "OD", "OS", "OU", "PA",
            "PERIN", "RA", "RAC", "RACF", "RD", "RE", "REJ", "RF", "RG", "RH", "RIJ", "RLAQ", "RLFA", "RMFA", "RN",
            "RPC", "RSC", "RT", "RUA", "RUAQ", "RUFA", "RVG", "RVL",
        ],
        "0270" => &["AR", "CD", "CN", "DI", "DS", "ED", "HP", "OP", "PC", "PH", "PN", "PR", "SP", "TS"],
        "0272" => &["V", "R", "U"],
        "0276" => &["CHECKUP", "EMERGENCY", "FOLLOWUP", "ROUTINE", "WALKIN"],
        "0277" => &["Complete", "Normal", "Tentative"],
        "0493" => &["AUT", "CFU", "CLOT", "CON", "COOL", "FROZ", "HEM", "LIVE", "ROOM", "SNR"],
        "0443" => &["AD", "AT", "CP", "FHCP", "PP", "RP", "RT"],
        "0912" => &["AD", "AP", "AT", "CP", "DP", "EP", "OP", "PH", "PP", "RCT", "RO", "RP", "TR", "VP"],
        _ => return None,
    })
}

/// Whether `code` may be written in the `v2-<table>` code system.
pub fn in_table(table: &str, code: &str) -> bool {
    table_codes(table).is_none_or(|codes| codes.contains(&code))
}

/// A language code (ISO 639-1/-2 as v2 senders write it, optionally with a region) as a
/// BCP 47 tag, the only form FHIR's language value set accepts; `None` when it is not one.
pub fn bcp47(code: &str) -> Option<String> {
    let mut parts = code.split(['-', '_']);
    let lang = parts.next()?.to_ascii_lowercase();
    let lang = match lang.as_str() {
        l if l.len() == 2 && l.bytes().all(|b| b.is_ascii_lowercase()) => l.to_string(),
        "eng" => "en".into(),
        "spa" => "es".into(),
        "fre" | "fra" => "fr".into(),
        "ger" | "deu" => "de".into(),
        "ita" => "it".into(),
        "por" => "pt".into(),
        "chi" | "zho" => "zh".into(),
        "rus" => "ru".into(),
        "jpn" => "ja".into(),
        "kor" => "ko".into(),
        "vie" => "vi".into(),
        "ara" => "ar".into(),
        "hin" => "hi".into(),
        "pol" => "pl".into(),
        "dut" | "nld" => "nl".into(),
        "tur" => "tr".into(),
        "gre" | "ell" => "el".into(),
        "heb" => "he".into(),
        _ => return None,
    };
    const KNOWN: &[&str] = &[
        "ar", "bn", "cs", "da", "de", "el", "en", "es", "fi", "fr", "fy", "hi", "hr", "it", "ja", "ko", "nl", "no",
        "pa", "pl", "pt", "ru", "sr", "sv", "te", "zh", "tr", "vi", "he",
    ];
    if !KNOWN.contains(&lang.as_str()) {
        return None;
    }
    match parts.next() {
        None => Some(lang),
        Some(region)
            if region.len() == 2 && region.bytes().all(|b| b.is_ascii_alphabetic()) && parts.next().is_none() =>
        {
            let r = region.to_ascii_uppercase();
            Some(format!("{lang}-{}", if r == "UK" { "GB" } else { &r }))
        }
        _ => None,
    }
}

/// The v2 coding system name (CWE-3) → FHIR system URI for systems with a known URI.
pub fn coding_system(name: &str) -> Option<canonical::model::Text> {
    let fixed = match name {
        "LN" | "LNC" | "LOINC" => "http://loinc.org",
        "SCT" | "SNM" | "SNOMED" | "SNOMEDCT" | "SNM3" => "http://snomed.info/sct",
        "I10" | "ICD10" | "ICD-10" => "http://hl7.org/fhir/sid/icd-10",
        "I10C" | "ICD10CM" | "ICD-10-CM" => "http://hl7.org/fhir/sid/icd-10-cm",
        "I9" | "I9C" | "ICD9" | "ICD9CM" => "http://hl7.org/fhir/sid/icd-9-cm",
        "I10P" => "http://www.cms.gov/Medicare/Coding/ICD10",
        "CVX" => "http://hl7.org/fhir/sid/cvx",
        "MVX" => "http://terminology.hl7.org/CodeSystem/MVX",
        "NDC" => "http://hl7.org/fhir/sid/ndc",
        "RXNORM" | "RxNorm" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "UCUM" | "ANS+" => "http://unitsofmeasure.org",
        "C4" | "CPT" | "CPT4" => "http://www.ama-assn.org/go/cpt",
        "HCPCS" | "HCPC" => "urn:oid:2.16.840.1.113883.6.285",
        "NCIT" => "http://ncimeta.nci.nih.gov",
        "SNM3X" => "http://snomed.info/sct",
        "HL70396" => "http://terminology.hl7.org/CodeSystem/v2-0396",
        "NDFRT" => "http://hl7.org/fhir/ndfrt",
        "UML" | "UMLS" => "http://www.nlm.nih.gov/research/umls",
        "ISO3166_1" | "ISO3166-1" => "urn:iso:std:iso:3166",
        "ISO+" => "http://hl7.org/fhir/sid/iso-units",
        "NUCCPID" | "NUCC" => "http://nucc.org/provider-taxonomy",
        "CDCREC" => "urn:oid:2.16.840.1.113883.6.238",
        "PHINQUESTION" => "urn:oid:2.16.840.1.114222.4.5.232",
        "HSLOC" => "https://www.cdc.gov/nhsn/cdaportal/terminology/codesystem/hsloc.html",
        _ => {
            // HL7nnnn (also HL7 table names written as "HL7 nnnn").
            let t = name.strip_prefix("HL7").map(str::trim_start)?;
            if t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()) {
                return Some(v2_table(t).into());
            }
            return None;
        }
    };
    Some(fixed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_from_the_ig() {
        assert_eq!(administrative_sex("F"), Some("female"));
        assert_eq!(administrative_sex("A"), Some("other"));
        assert_eq!(administrative_sex("X"), None);
        assert_eq!(patient_class("I").unwrap().1, "IMP");
        assert_eq!(patient_class("O").unwrap().1, "AMB");
        assert_eq!(event_encounter_status("A03"), Some("finished"));
        assert_eq!(event_encounter_status("A11"), Some("entered-in-error"));
        assert_eq!(event_encounter_status("A13"), Some("in-progress"));
        assert_eq!(observation_status("W"), Some("entered-in-error"));
        assert_eq!(report_status("F"), Some("final"));
        assert_eq!(interpretation("HH").unwrap().0, "HH");
        assert_eq!(coding_system("LN").unwrap(), "http://loinc.org");
        assert_eq!(coding_system("HL70078").unwrap(), "http://terminology.hl7.org/CodeSystem/v2-0078");
        assert_eq!(coding_system("99LOCAL"), None);
        assert_eq!(order_status(Some("NW"), None), "active");
        assert_eq!(order_status(Some("NW"), Some("CM")), "completed");
    }
}
