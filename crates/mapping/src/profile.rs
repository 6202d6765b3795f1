//! Sender profiles: what differs between senders, as data. Onboarding a new lab is a TOML
//! file, not code.
//!
//! ```toml
//! name = "acme-lab"
//! application = "ACMELAB"        # matches MSH-3.1 (optional)
//! facility = "ACME"              # matches MSH-4.1 (optional)
//! time_zone = "America/Chicago"  # IANA zone for times without an offset
//! ignore_fields = ["PID-2"]      # fields deliberately not carried (reported as ignored)
//!
//! [identifier_systems]           # assigning authority (CX-4.1 / HD) -> Identifier.system
//! ACME = "urn:oid:2.16.840.1.113883.3.999.1"
//!
//! [code_systems]                 # local v2 coding system name -> FHIR system URI
//! "99ACME" = "http://acme.example/fhir/CodeSystem/lab"
//!
//! [[z_segments]]                 # Z-segment field -> extension on a resource
//! segment = "ZPI"
//! field = 2
//! target = "Patient"
//! url = "http://acme.example/fhir/StructureDefinition/pet-name"
//! ```
//!
//! A message matches the profile with the most specific match (application and facility,
//! then application, then facility).

use crate::time::{TimeError, ZoneRule, ZoneSource};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A Z-segment field carried as an extension.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ZSegmentRule {
    pub segment: String,
    pub field: usize,
    /// Resource type the extension goes on: Patient, Encounter, Observation, ServiceRequest,
    /// DiagnosticReport, MedicationRequest (the nearest one of that type before the segment).
    pub target: String,
    pub url: String,
}

/// One sender's profile as written in TOML.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub name: String,
    pub application: Option<String>,
    pub facility: Option<String>,
    pub time_zone: Option<String>,
    #[serde(default)]
    pub ignore_fields: Vec<String>,
    #[serde(default)]
    pub identifier_systems: HashMap<String, String>,
    #[serde(default)]
    pub code_systems: HashMap<String, String>,
    #[serde(default)]
    pub z_segments: Vec<ZSegmentRule>,
}

/// A loaded, checked profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub file: ProfileFile,
    pub zone: Option<ZoneRule>,
    /// `ignore_fields` parsed to (segment, field).
    pub ignored: Vec<(String, usize)>,
}

/// Why profiles could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Toml { path: PathBuf, source: toml::de::Error },
    #[error("{path}: {source}")]
    Zone { path: PathBuf, source: TimeError },
    #[error("{path}: ignore_fields entry {entry:?} is not SEG-n (e.g. PID-2)")]
    BadField { path: PathBuf, entry: String },
    #[error("{path}: profile {name:?} matches nothing (set application and/or facility)")]
    NoMatch { path: PathBuf, name: String },
    #[error("profiles {a:?} and {b:?} match the same sender")]
    Duplicate { a: String, b: String },
}

impl Profile {
    /// Parses and checks one profile.
    pub fn from_toml(text: &str, path: &Path) -> Result<Profile, ProfileError> {
        let file: ProfileFile =
            toml::from_str(text).map_err(|source| ProfileError::Toml { path: path.into(), source })?;
        if file.application.is_none() && file.facility.is_none() {
            return Err(ProfileError::NoMatch { path: path.into(), name: file.name });
        }
        let zone = file
            .time_zone
            .as_deref()
            .map(|z| ZoneRule::named(z, ZoneSource::Profile))
            .transpose()
            .map_err(|source| ProfileError::Zone { path: path.into(), source })?;
        let mut ignored = Vec::new();
        for entry in &file.ignore_fields {
            let parsed = entry
                .split_once('-')
                .and_then(|(s, f)| Some((s.to_string(), f.parse::<usize>().ok().filter(|&n| n > 0)?)))
                .filter(|(s, _)| s.len() == 3);
            match parsed {
                Some(p) => ignored.push(p),
                None => return Err(ProfileError::BadField { path: path.into(), entry: entry.clone() }),
            }
        }
        Ok(Profile { file, zone, ignored })
    }

    fn specificity(&self, app: Option<&str>, fac: Option<&str>) -> Option<u8> {
        let m = |want: &Option<String>, got: Option<&str>| match want {
            None => Some(0),
            Some(w) => (Some(w.as_str()) == got).then_some(1),
        };
        let a = m(&self.file.application, app)?;
        let f = m(&self.file.facility, fac)?;
        Some(a * 2 + f)
    }

    /// System URI for an assigning authority or local coding system named by the sender.
    pub fn identifier_system(&self, authority: &str) -> Option<&str> {
        self.file.identifier_systems.get(authority).map(String::as_str)
    }

    pub fn code_system(&self, name: &str) -> Option<&str> {
        self.file.code_systems.get(name).map(String::as_str)
    }

    pub fn is_ignored(&self, segment: &str, field: usize) -> bool {
        self.ignored.iter().any(|(s, f)| s == segment && *f == field)
    }
}

/// All profiles, plus the zone used when none names one.
#[derive(Debug, Clone)]
pub struct Profiles {
    profiles: Vec<Profile>,
    fallback_zone: ZoneRule,
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles { profiles: Vec::new(), fallback_zone: ZoneRule::utc_fallback() }
    }
}

impl Profiles {
    /// Profiles from a list (checked for two profiles matching the same sender).
    pub fn new(profiles: Vec<Profile>) -> Result<Profiles, ProfileError> {
        for (i, a) in profiles.iter().enumerate() {
            for b in &profiles[i + 1..] {
                if a.file.application == b.file.application && a.file.facility == b.file.facility {
                    return Err(ProfileError::Duplicate { a: a.file.name.clone(), b: b.file.name.clone() });
                }
            }
        }
        Ok(Profiles { profiles, ..Default::default() })
    }

    /// Loads every `*.toml` file in `dir` (sorted by name, so loading is reproducible).
    pub fn load_dir(dir: &Path) -> Result<Profiles, ProfileError> {
        let io = |source| ProfileError::Io { path: dir.into(), source };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        let mut out = Vec::new();
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|source| ProfileError::Io { path: p.clone(), source })?;
            out.push(Profile::from_toml(&text, &p)?);
        }
        Profiles::new(out)
    }

    /// Sets the zone used for senders whose profile names none (default UTC, reported).
    pub fn with_fallback_zone(mut self, iana: &str) -> Result<Profiles, TimeError> {
        self.fallback_zone = ZoneRule::named(iana, ZoneSource::Fallback)?;
        Ok(self)
    }

    /// The best-matching profile for a sender (MSH-3.1, MSH-4.1).
    pub fn find(&self, application: Option<&str>, facility: Option<&str>) -> Option<&Profile> {
        self.profiles
            .iter()
            .filter_map(|p| Some((p.specificity(application, facility)?, p)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, p)| p)
    }

    /// The zone for a sender: its profile's, else the fallback.
    pub fn zone_for<'a>(&'a self, profile: Option<&'a Profile>) -> &'a ZoneRule {
        profile.and_then(|p| p.zone.as_ref()).unwrap_or(&self.fallback_zone)
    }

    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> Result<Profile, ProfileError> {
        Profile::from_toml(t, Path::new("test.toml"))
    }

    #[test]
    fn loads_and_matches_most_specific() {
        let a = p("name='a'\napplication='LAB'\ntime_zone='Europe/Berlin'\n[identifier_systems]\nHOSP='urn:oid:1.2'\n")
            .unwrap();
        let b = p("name='b'\napplication='LAB'\nfacility='EAST'\nignore_fields=['PID-2']\n[[z_segments]]\nsegment='ZPI'\nfield=1\ntarget='Patient'\nurl='http://x/y'\n").unwrap();
        let ps = Profiles::new(vec![a, b]).unwrap();
        assert_eq!(ps.find(Some("LAB"), Some("EAST")).unwrap().file.name, "b");
        assert_eq!(ps.find(Some("LAB"), Some("WEST")).unwrap().file.name, "a");
        assert!(ps.find(Some("RIS"), None).is_none());
        let a = ps.find(Some("LAB"), None).unwrap();
        assert_eq!(a.identifier_system("HOSP"), Some("urn:oid:1.2"));
        assert_eq!(ps.zone_for(Some(a)).source, ZoneSource::Profile);
        assert_eq!(ps.zone_for(None).source, ZoneSource::Fallback);
        assert!(ps.find(Some("LAB"), Some("EAST")).unwrap().is_ignored("PID", 2));
    }

    #[test]
    fn rejects_bad_profiles() {
        assert!(matches!(p("name='x'\napplication='A'\ntime_zone='Nowhere/Land'"), Err(ProfileError::Zone { .. })));
        assert!(matches!(p("name='x'"), Err(ProfileError::NoMatch { .. })));
        assert!(matches!(p("name='x'\napplication='A'\nignore_fields=['PID']"), Err(ProfileError::BadField { .. })));
        assert!(matches!(p("name='x'\napplication='A'\ntypo=1"), Err(ProfileError::Toml { .. })));
        let a = p("name='a'\napplication='A'").unwrap();
        assert!(matches!(Profiles::new(vec![a.clone(), a]), Err(ProfileError::Duplicate { .. })));
    }
}
