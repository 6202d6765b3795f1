//! Typed errors for loading, storing and using terminologies.
//!
//! Every load error names the file and, for row problems, the 1-based line, so an
//! integration team can fix the release file or the local map without guessing.

use std::path::PathBuf;

/// One rejected input row: where it is and why it was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The file the row came from.
    pub file: PathBuf,
    /// 1-based line number of the row in that file (0 for JSON, where `reason` has the path).
    pub line: u64,
    /// What is wrong with the row.
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Line 0 means "no line" (JSON entries are named by their path in `reason`).
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
        }
    }
}

/// Errors of the terminology crate.
#[derive(Debug, thiserror::Error)]
pub enum TerminologyError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A malformed row under the `Refuse` policy: the whole load is refused.
    #[error("load refused: {0}")]
    MalformedRow(RowError),
    /// The file as a whole is not in the expected format (missing header column, bad JSON, ...).
    #[error("{file}: {reason}")]
    BadFile { file: PathBuf, reason: String },
    /// A store file (or embedded store bytes) is not a valid Arteria terminology store.
    #[error("terminology store {origin}: {reason}")]
    BadStore { origin: String, reason: String },
    /// A code system asked for is not loaded.
    #[error("code system not loaded: {0}")]
    UnknownSystem(String),
    /// A code asked for is not in the code system.
    #[error("code {code:?} is not in {system}")]
    UnknownCode { system: String, code: String },
    /// A value set asked for is not loaded.
    #[error("value set not loaded: {0}")]
    UnknownValueSet(String),
    /// A value set expansion would exceed the configured limit.
    #[error("value set {url} expands to more than {limit} concepts")]
    ExpansionTooLarge { url: String, limit: usize },
    /// A value set definition uses a feature this crate does not expand.
    #[error("value set {url}: {reason}")]
    UnsupportedValueSet { url: String, reason: String },
    /// A unit expression is not valid UCUM.
    #[error(transparent)]
    Ucum(#[from] crate::ucum::UcumError),
    /// The sender unit table (TOML) is malformed.
    #[error("unit table {origin}: {reason}")]
    BadUnitTable { origin: String, reason: String },
}

impl TerminologyError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TerminologyError::Io { path: path.into(), source }
    }
    pub(crate) fn bad_file(file: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        TerminologyError::BadFile { file: file.into(), reason: reason.into() }
    }
}

/// Result alias for this crate.
pub type Result<T, E = TerminologyError> = std::result::Result<T, E>;
