//! The schema contract check behind `make schemas-check`.
//!
//! `schemas/*.avsc` are the contracts between services. A change is only safe if consumers
//! on the new schema can still read every record already written with an older one (BACKWARD
//! compatibility), because topics keep old records. This module compares the working-tree
//! files with every committed version of them in git history.

use std::path::{Path, PathBuf};
use std::process::Command;

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

/// One `.avsc` file of the working tree.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    /// Path relative to the workspace root, e.g. `schemas/RawMessage.avsc`.
    pub rel_path: String,
    pub path: PathBuf,
    pub text: String,
}

/// Every `schemas/*.avsc`, sorted by name.
pub fn schema_files(root: &Path) -> std::io::Result<Vec<SchemaFile>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root.join("schemas"))? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "avsc") {
            let name = path.file_name().expect("file has a name").to_string_lossy().to_string();
            out.push(SchemaFile { rel_path: format!("schemas/{name}"), text: std::fs::read_to_string(&path)?, path });
        }
    }
    out.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(out)
}

/// Parses one schema, with the reason when it does not parse.
pub fn parse(text: &str) -> Result<Schema, String> {
    Schema::parse_str(text).map_err(|e| e.to_string())
}

/// `Ok` when a reader using `new` can read data written with `old` (BACKWARD).
pub fn check_backward(old: &str, new: &str) -> Result<(), String> {
    let old = parse(old).map_err(|e| format!("old version does not parse: {e}"))?;
    let new = parse(new).map_err(|e| format!("new version does not parse: {e}"))?;
    SchemaCompatibility::can_read(&old, &new).map(|_| ()).map_err(|e| e.to_string())
}

/// What git knows about previous versions of a file.
#[derive(Debug)]
pub enum History {
    /// (commit, text) for every commit that touched the file, newest first.
    Versions(Vec<(String, String)>),
    /// History cannot be read (no git, not a repository, shallow clone): why.
    Unavailable(String),
}

fn git(root: &Path, args: &[&str]) -> Result<String, String> {
    let out =
        Command::new("git").arg("-C").arg(root).args(args).output().map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Every committed version of `rel_path`.
pub fn committed_versions(root: &Path, rel_path: &str) -> History {
    let revs = match git(root, &["log", "--format=%H", "--", rel_path]) {
        Ok(s) => s,
        Err(e) => return History::Unavailable(e),
    };
    let mut out = Vec::new();
    for rev in revs.lines().filter(|l| !l.is_empty()) {
        // A commit that deleted the file has no blob to read; skip it.
        if let Ok(text) = git(root, &["show", &format!("{rev}:{rel_path}")]) {
            out.push((rev.to_string(), text));
        }
    }
    if out.is_empty() && git(root, &["rev-parse", "--is-shallow-repository"]).is_ok_and(|s| s.trim() == "true") {
        return History::Unavailable("shallow clone: no earlier commit of this file is available".into());
    }
    History::Versions(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str =
        r#"{"type":"record","name":"T","namespace":"org.arteria.test","fields":[{"name":"a","type":"string"}]}"#;

    #[test]
    fn adding_an_optional_field_is_backward_compatible() {
        let v2 = r#"{"type":"record","name":"T","namespace":"org.arteria.test","fields":[
            {"name":"a","type":"string"},{"name":"b","type":["null","string"],"default":null}]}"#;
        assert_eq!(check_backward(V1, v2), Ok(()));
    }

    #[test]
    fn a_required_field_without_default_is_refused() {
        let v2 = r#"{"type":"record","name":"T","namespace":"org.arteria.test","fields":[
            {"name":"a","type":"string"},{"name":"b","type":"string"}]}"#;
        let err = check_backward(V1, v2).unwrap_err();
        assert!(err.contains('b'), "{err}");
    }

    #[test]
    fn a_type_change_is_refused() {
        let v2 = r#"{"type":"record","name":"T","namespace":"org.arteria.test","fields":[{"name":"a","type":"long"}]}"#;
        assert!(check_backward(V1, v2).is_err());
    }

    #[test]
    fn unparsable_text_is_reported() {
        assert!(check_backward(V1, "{not json").unwrap_err().contains("new version does not parse"));
    }
}
