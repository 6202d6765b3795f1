//! The materialised view: current FHIR resources in an embedded SQLite file, with the search
//! indexes the API needs.
//!
//! One writer (the consumer) and any number of readers (gRPC calls) work at once because the
//! database runs in WAL mode: readers see the last committed state and never block the writer.
//! The writer connection sits behind a mutex; readers come from a small pool of read-only
//! connections. Every call is synchronous: async callers run it with `spawn_blocking`.
//!
//! Upserts are idempotent per (resource_type, id): a version with a newer `occurred_at`
//! replaces the stored one, an equal or older one is ignored, so replaying a topic is harmless.
//! A newer version whose content is the stored one (master data — a Patient, Practitioner or
//! Location — comes again with every message that names it) only records its time in
//! `repeats`, a small table, instead of rewriting the resource's row, a random page each (the
//! load harness's store writes 6 % less; docs/benchmarks.md, run 14).
//! After each committed change the store announces it on a broadcast channel ([`Change`]),
//! which is what `WatchPatient` streams.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canonical::current::FhirResource;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};
use tokio::sync::broadcast;

use crate::index::{self, Extracted};

/// Sort value of a resource without an effective time (sorts last in newest-first lists).
pub const NO_TIME: i64 = i64::MIN;

/// Store failures. None of them carries resource content (messages may be logged).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the store directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot sync the store file {path} to disk: {source}")]
    Sync {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove the store file {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("resource {resource_type}/{id} has fhir_json that is not a JSON object: {detail}")]
    BadJson { resource_type: String, id: String, detail: String },
}

/// A resource as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    pub tenant: String,
    pub patient_id: Option<String>,
    /// Microseconds since the epoch, from the record that produced this content (a later
    /// version with the same content does not move it).
    pub occurred_at: i64,
    /// The FHIR JSON exactly as received.
    pub json: String,
    /// When the store last changed its content (RFC 3339).
    pub last_updated: String,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Inserted,
    Updated,
    /// A newer version with the stored content (same JSON, tenant and patient): its time is
    /// recorded, so an older version arriving later is still ignored; nothing else changed,
    /// and no change is announced.
    Repeated,
    /// The stored version is as new or newer; nothing changed.
    Ignored,
}

/// One write of a batch ([`Store::apply`]).
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    Upsert(&'a FhirResource),
    /// A tombstone: type compared case-insensitively.
    Delete {
        resource_type: &'a str,
        id: &'a str,
    },
}

/// What one write of a batch did.
#[derive(Debug)]
pub enum Applied {
    Upsert(Upsert),
    /// Whether the resource existed.
    Deleted(bool),
    /// Not stored: its JSON is unusable (the rest of the batch is unaffected).
    Refused(StoreError),
}

enum Prepared<'a> {
    Upsert(&'a FhirResource, Extracted, Option<String>),
    Delete(&'a str, &'a str),
    Refused(StoreError),
}

/// A committed change, as announced to watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub resource: StoredResource,
}

/// A page request: at most `size` rows after `after` (the sort key of the last row seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageReq {
    pub size: usize,
    pub after: Option<Cursor>,
}

/// Position in a listing: (sort time, id). Patient searches sort by id only (time 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub time: i64,
    pub id: String,
}

/// A page of results and where the next one starts, if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageOf {
    pub rows: Vec<StoredResource>,
    pub next: Option<Cursor>,
}

/// Patient search criteria; each given one must match (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientSearch {
    /// Case-insensitive prefix of a family or given name.
    pub name: Option<String>,
    /// YYYY, YYYY-MM or YYYY-MM-DD prefix of birthDate.
    pub birth_date: Option<String>,
    /// (system, value); empty system matches any.
    pub identifier: Option<(String, String)>,
}

/// A code filter: `system|code` or a bare code (any system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeFilter {
    pub system: Option<String>,
    pub code: String,
}

impl CodeFilter {
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once('|') {
            Some((sys, code)) if !code.is_empty() => {
                Some(Self { system: (!sys.is_empty()).then(|| sys.to_string()), code: code.to_string() })
            }
            Some(_) => None,
            None if !s.is_empty() => Some(Self { system: None, code: s.to_string() }),
            None => None,
        }
    }
}

/// Filters of a per-patient listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Any of these codes (empty: all).
    pub codes: Vec<CodeFilter>,
    /// Inclusive lower bound on the effective time (µs).
    pub from: Option<i64>,
    /// Exclusive upper bound on the effective time (µs).
    pub to_exclusive: Option<i64>,
}

/// The index tables are WITHOUT ROWID: their rows are only their key, so the primary key
/// B-tree is the table and an entry costs two B-tree inserts (key, lookup index), not three.
/// A store created before keeps its rowid tables (same queries, same results) until rebuilt.
/// The patient index is made in [`Store::open`], after an older store has gained `codes`.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS resources (
    resource_type   TEXT NOT NULL,
    id              TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    patient_id      TEXT,
    occurred_at     INTEGER NOT NULL,
    source_event_id TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    json            TEXT NOT NULL,
    last_updated    TEXT NOT NULL,
    effective       INTEGER NOT NULL,
    birth_date      TEXT,
    index_key       TEXT,
    codes           TEXT,
    PRIMARY KEY (resource_type, id)
);
DROP INDEX IF EXISTS resources_by_patient;
CREATE TABLE IF NOT EXISTS patient_identifiers (
    patient_id TEXT NOT NULL,
    system     TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (patient_id, system, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identifiers_by_value ON patient_identifiers (value, system);
CREATE TABLE IF NOT EXISTS patient_names (
    patient_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    PRIMARY KEY (patient_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS names_by_name ON patient_names (name);
CREATE TABLE IF NOT EXISTS repeats (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    occurred_at   INTEGER NOT NULL,
    PRIMARY KEY (resource_type, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// The patient index. Patient first: one message's resources are about one patient, so their
/// entries share a leaf (type first put each type of a message on its own random leaf: a page
/// write each). It carries each resource's codes ([`codes_text`]), so a code search reads
/// only the patient's entries, and a resource costs one index entry on that leaf instead of
/// one more entry per code on another (the code rows' table it replaces was a random page
/// write per message; see docs/benchmarks.md).
const PATIENT_INDEX: &str =
    "CREATE INDEX resources_of_patient ON resources (patient_id, resource_type, effective, id, codes);";

/// Moves an older store's code rows (table `codes`, in any of its layouts: each has
/// resource_type, id, system and code) into `resources.codes`, and drops the table.
const MOVE_CODES: &str = "
BEGIN;
UPDATE resources SET codes = g.codes
FROM (SELECT resource_type, id, char(30) || group_concat(system || char(31) || code, char(30)) || char(30) AS codes
      FROM codes GROUP BY resource_type, id) AS g
WHERE resources.resource_type = g.resource_type AND resources.id = g.id;
DROP TABLE codes;
COMMIT;
";

/// A resource's codes as one text for `resources.codes`: each (system, code) as
/// RS system US code, then a closing RS (ASCII record and unit separators, which FHIR strings
/// cannot hold). `RS system US code RS` then finds a system and code, `US code RS` a code in
/// any system, with no false match across entries. A code or system holding either separator
/// (invalid FHIR) is left out, so it is not searchable. NULL when there are none.
fn codes_text(x: &Extracted) -> Option<String> {
    let mut t = String::new();
    for (system, code) in &x.codes {
        if [system, code].iter().any(|s| s.contains(['\x1e', '\x1f'])) {
            continue;
        }
        t.push('\x1e');
        t.push_str(system);
        t.push('\x1f');
        t.push_str(code);
    }
    (!t.is_empty()).then(|| {
        t.push('\x1e');
        t
    })
}

/// What `codes_text` holds for a resource matching `c`.
fn code_needle(c: &CodeFilter) -> String {
    match &c.system {
        Some(system) => format!("\x1e{system}\x1f{}\x1e", c.code),
        None => format!("\x1f{}\x1e", c.code),
    }
}

/// The writer's statements.
#[derive(Clone, Copy)]
enum Sql {
    Insert,
    Select,
    Update,
    UpdateContent,
    InsertIdentifier,
    InsertName,
    DeleteIdentifiers,
    DeleteNames,
    FindForDelete,
    Delete,
    Repeat,
    DeleteRepeat,
}

const WRITES: [&str; 12] = [
    "INSERT INTO resources (resource_type, id, tenant, patient_id, occurred_at, source_event_id, event_type, json, last_updated, effective, birth_date, codes, index_key)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT (resource_type, id) DO NOTHING",
    // The newest version seen (stored or repeated), and whether ?3..?5 repeat the stored one.
    "SELECT max(r.occurred_at, coalesce(p.occurred_at, r.occurred_at)), r.index_key, r.patient_id, r.effective,
            r.json = ?3 AND r.tenant = ?4 AND r.patient_id IS ?5, p.occurred_at IS NOT NULL
     FROM resources r LEFT JOIN repeats p ON p.resource_type = r.resource_type AND p.id = r.id
     WHERE r.resource_type = ?1 AND r.id = ?2",
    "UPDATE resources SET tenant = ?3, patient_id = ?4, occurred_at = ?5, source_event_id = ?6, event_type = ?7,
        json = ?8, last_updated = ?9, effective = ?10, birth_date = ?11, codes = ?12, index_key = ?13
     WHERE resource_type = ?1 AND id = ?2",
    // Update without patient_id, effective and codes (unchanged; they are indexed). ?4, ?10
    // and ?12 are bound and unused, so both updates take the same parameters.
    "UPDATE resources SET tenant = ?3, occurred_at = ?5, source_event_id = ?6, event_type = ?7,
        json = ?8, last_updated = ?9, birth_date = ?11, index_key = ?13
     WHERE resource_type = ?1 AND id = ?2",
    "INSERT OR IGNORE INTO patient_identifiers (patient_id, system, value) VALUES (?1, ?2, ?3)",
    "INSERT OR IGNORE INTO patient_names (patient_id, name) VALUES (?1, ?2)",
    "DELETE FROM patient_identifiers WHERE patient_id = ?1",
    "DELETE FROM patient_names WHERE patient_id = ?1",
    "SELECT resource_type FROM resources WHERE lower(resource_type) = lower(?1) AND id = ?2",
    "DELETE FROM resources WHERE resource_type = ?1 AND id = ?2",
    "INSERT INTO repeats (resource_type, id, occurred_at) VALUES (?1, ?2, ?3)
     ON CONFLICT (resource_type, id) DO UPDATE SET occurred_at = excluded.occurred_at",
    "DELETE FROM repeats WHERE resource_type = ?1 AND id = ?2",
];

/// The statements of one write transaction, each taken from the connection's cache the first
/// time the batch needs it and then kept: a cache lookup hashes the SQL text, per row that
/// was a measurable part of an upsert.
struct Batch<'t> {
    tx: &'t rusqlite::Transaction<'t>,
    prepared: [Option<rusqlite::CachedStatement<'t>>; WRITES.len()],
}

impl<'t> Batch<'t> {
    fn new(tx: &'t rusqlite::Transaction<'t>) -> Self {
        Self { tx, prepared: Default::default() }
    }

    fn st(&mut self, s: Sql) -> rusqlite::Result<&mut rusqlite::CachedStatement<'t>> {
        let slot = &mut self.prepared[s as usize];
        if slot.is_none() {
            *slot = Some(self.tx.prepare_cached(WRITES[s as usize])?);
        }
        Ok(slot.as_mut().expect("prepared just above"))
    }
}

/// What the index tables hold for a resource (codes; a Patient's identifiers and names), as
/// one unambiguous string: each entry is its byte length, ':' and its bytes, each list opened
/// by its tag. Kept in `resources.index_key` so a new version whose index entries are the same
/// (most updates) leaves the index tables untouched. NULL (a store from before this column)
/// never equals a key, so such rows are re-indexed on their next update.
fn index_key(x: &Extracted) -> String {
    use std::fmt::Write as _;
    let mut k = String::new();
    let mut put = |s: &str| {
        let _ = write!(k, "{}:{s}", s.len());
    };
    for (system, code) in &x.codes {
        put("c");
        put(system);
        put(code);
    }
    for (system, value) in &x.identifiers {
        put("i");
        put(system);
        put(value);
    }
    for name in &x.names {
        put("n");
        put(name);
    }
    k
}

const COLUMNS: &str = "resource_type, id, tenant, patient_id, occurred_at, json, last_updated";

/// Readers kept open between calls; more are opened under load and closed afterwards.
const IDLE_READERS: usize = 4;

/// The writer's page cache. Large enough to keep the B-tree interior pages and the latest
/// leaves the batches touch (a smaller one re-reads them from the OS on every batch), small
/// next to the service's 100 MB budget.
const WRITER_CACHE_KIB: i64 = 8 * 1024;

/// WAL pages after which the writer checkpoints by itself (SQLite's default is 1,000). The
/// materialiser checkpoints from its own connection after each sync ([`Store::checkpoint_behind`]),
/// so the writer only gets here when those fall behind (a reader holding an old snapshot).
const WAL_CHECKPOINT_PAGES: i64 = 100_000;

/// Each reader's page cache (SQLite's default is about the same).
const READER_CACHE_KIB: i64 = 2 * 1024;

/// All of SQLite's heap in the process, in bytes (advisory: SQLite frees cache pages to stay
/// under it). Writer and idle readers fit in about half of it.
const SOFT_HEAP_LIMIT: i64 = 32 * 1024 * 1024;

/// The SQLite store.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    /// Checkpoints beside the writer ([`Store::checkpoint_behind`]).
    checkpointer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    changes: broadcast::Sender<Arc<Change>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

fn row_to_resource(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredResource> {
    Ok(StoredResource {
        resource_type: r.get(0)?,
        id: r.get(1)?,
        tenant: r.get(2)?,
        patient_id: r.get(3)?,
        occurred_at: r.get(4)?,
        json: r.get(5)?,
        last_updated: r.get(6)?,
    })
}

impl Store {
    /// The database file inside `data_dir`.
    pub fn file_in(data_dir: &Path) -> PathBuf {
        data_dir.join("query.sqlite")
    }

    /// Removes the database file in `data_dir` (and its WAL files), for a rebuild.
    pub fn remove(data_dir: &Path) -> Result<(), StoreError> {
        let db = Self::file_in(data_dir);
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", db.display()));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Remove { path: p, source }),
            }
        }
        Ok(())
    }

    /// Opens (creating if needed) the store in `data_dir`. `watch_capacity` bounds how far a
    /// watcher may fall behind before it is told it lagged.
    pub fn open(data_dir: &Path, watch_capacity: usize) -> Result<Self, StoreError> {
        Self::open_with_cache(data_dir, watch_capacity, WRITER_CACHE_KIB)
    }

    fn open_with_cache(data_dir: &Path, watch_capacity: usize, writer_cache_kib: i64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Dir { path: data_dir.into(), source })?;
        let path = Self::file_in(data_dir);
        let sql = |source| StoreError::Sqlite { path: path.clone(), source };
        let writer = Connection::open(&path).map_err(sql)?;
        writer.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        // WAL: readers do not block the writer.
        //
        // synchronous=NORMAL: a commit is not synced, so a power cut may lose the last
        // transactions. What keeps the view complete is that the materialiser commits offsets
        // to Kafka only after `sync` has made the transactions holding those records durable:
        // a lost transaction's records are read again. FULL (one fsync per batch) made the
        // store wait on the disk for most of its time under load.
        writer.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        writer.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
        // Checkpoints run beside the writer ([`Store::checkpoint_behind`]): one made by the
        // writer at commit copied ~40 MB into the file and synced it while every batch waited
        // (docs/benchmarks.md). Its own checkpoint is the backstop, at ~400 MB of WAL.
        writer.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES).map_err(sql)?;
        Self::limit_memory(&writer, writer_cache_kib).map_err(sql)?;
        writer.set_prepared_statement_cache_capacity(32);
        writer.execute_batch(SCHEMA).map_err(sql)?;
        // Stores made before `index_key` existed gain it (NULL: re-indexed on next update).
        let has_key: bool = writer
            .query_row("SELECT count(*) FROM pragma_table_info('resources') WHERE name = 'index_key'", [], |r| r.get(0))
            .map_err(sql)?;
        if !has_key {
            writer.execute_batch("ALTER TABLE resources ADD COLUMN index_key TEXT").map_err(sql)?;
        }
        // Stores made before `codes` existed gain it, from their code rows' table.
        let has_codes: bool = writer
            .query_row("SELECT count(*) FROM pragma_table_info('resources') WHERE name = 'codes'", [], |r| r.get(0))
            .map_err(sql)?;
        if !has_codes {
            writer.execute_batch("ALTER TABLE resources ADD COLUMN codes TEXT").map_err(sql)?;
        }
        let has_code_rows: bool = writer
            .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'codes'", [], |r| r.get(0))
            .map_err(sql)?;
        if has_code_rows {
            writer.execute_batch(MOVE_CODES).map_err(sql)?;
        }
        // The patient index, made again when an older store's lacks the codes.
        let index_has_codes: bool = writer
            .query_row("SELECT count(*) FROM pragma_index_info('resources_of_patient') WHERE name = 'codes'", [], |r| {
                r.get(0)
            })
            .map_err(sql)?;
        if !index_has_codes {
            writer
                .execute_batch(&format!("DROP INDEX IF EXISTS resources_of_patient; {PATIENT_INDEX}"))
                .map_err(sql)?;
        }
        let checkpointer = Connection::open(&path).map_err(sql)?;
        checkpointer.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        // NORMAL: a checkpoint syncs the WAL before it copies and the file after.
        checkpointer.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
        Self::limit_memory(&checkpointer, READER_CACHE_KIB).map_err(sql)?;
        let (changes, _) = broadcast::channel(watch_capacity.max(1));
        Ok(Self {
            path,
            writer: Mutex::new(writer),
            checkpointer: Mutex::new(checkpointer),
            readers: Mutex::new(Vec::new()),
            changes,
        })
    }

    /// What bounds a connection's memory: its page cache (`cache_kib`), no memory-mapped
    /// file (mapped pages would count in the service's RSS as the file grows), and the
    /// process-wide soft heap limit, which makes SQLite shrink its caches when many readers
    /// are open at once.
    fn limit_memory(c: &Connection, cache_kib: i64) -> rusqlite::Result<()> {
        // A negative cache_size is in KiB rather than pages.
        c.pragma_update(None, "cache_size", -cache_kib)?;
        c.pragma_update(None, "mmap_size", 0)?;
        // pragma_update does not accept a pragma that returns a row; this one returns the limit.
        c.query_row(&format!("PRAGMA soft_heap_limit = {SOFT_HEAP_LIMIT}"), [], |_| Ok(()))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Subscribes to changes committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// A value kept beside the data (e.g. the consumer group that fills this store).
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(|e| self.sql(e))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )
        .map(|_| ())
        .map_err(|e| self.sql(e))
    }

    /// Stores `r` unless the stored version is as new or newer; re-indexes on change and
    /// announces the change once it is committed.
    pub fn upsert(&self, r: &FhirResource) -> Result<Upsert, StoreError> {
        match self.apply(std::slice::from_ref(r).iter().map(Write::Upsert))?.pop() {
            Some(Applied::Upsert(u)) => Ok(u),
            Some(Applied::Refused(e)) => Err(e),
            _ => unreachable!("one upsert gives one upsert result"),
        }
    }

    /// Deletes a resource (a tombstone on a compacted topic). `resource_type` is compared
    /// case-insensitively, since topic names carry it in lower case. Returns whether it existed.
    pub fn delete(&self, resource_type: &str, id: &str) -> Result<bool, StoreError> {
        match self.apply([Write::Delete { resource_type, id }])?.pop() {
            Some(Applied::Deleted(d)) => Ok(d),
            _ => unreachable!("one delete gives one delete result"),
        }
    }

    /// Applies `writes` in order in one transaction (one durable sync for the lot, which is
    /// what makes a rebuild fast), then announces the changes. A resource whose JSON is
    /// unusable is refused on its own ([`Applied::Refused`]); a database failure fails the
    /// whole batch and nothing of it is stored.
    pub fn apply<'a>(&self, writes: impl IntoIterator<Item = Write<'a>>) -> Result<Vec<Applied>, StoreError> {
        // Parse and extract outside the writer lock.
        let prepared: Vec<Prepared<'a>> = writes
            .into_iter()
            .map(|w| match w {
                Write::Upsert(r) => match Self::prepare(r) {
                    Ok((x, patient_id)) => Prepared::Upsert(r, x, patient_id),
                    Err(e) => Prepared::Refused(e),
                },
                Write::Delete { resource_type, id } => Prepared::Delete(resource_type, id),
            })
            .collect();
        let last_updated = crate::time::now_rfc3339();
        let mut out = Vec::with_capacity(prepared.len());
        let mut changes = Vec::new();
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = w.transaction().map_err(|e| self.sql(e))?;
        {
            let mut b = Batch::new(&tx);
            for p in prepared {
                match p {
                    Prepared::Refused(e) => out.push(Applied::Refused(e)),
                    Prepared::Delete(t, id) => {
                        out.push(Applied::Deleted(Self::delete_in(&mut b, t, id).map_err(|e| self.sql(e))?))
                    }
                    Prepared::Upsert(r, x, patient_id) => {
                        let u = Self::upsert_in(&mut b, r, &x, patient_id.as_deref(), &last_updated)
                            .map_err(|e| self.sql(e))?;
                        if matches!(u, Upsert::Inserted | Upsert::Updated) {
                            changes.push((r, patient_id));
                        }
                        out.push(Applied::Upsert(u));
                    }
                }
            }
        }
        tx.commit().map_err(|e| self.sql(e))?;
        drop(w);
        for (r, patient_id) in changes {
            // Copied only for a watcher (one that subscribes later must not see this change
            // anyway); with none, announcing would copy every resource for nothing.
            if self.changes.receiver_count() == 0 {
                break;
            }
            let resource = StoredResource {
                resource_type: r.resource_type.clone(),
                id: r.id.clone(),
                tenant: r.tenant.clone(),
                patient_id,
                occurred_at: r.occurred_at,
                json: r.fhir_json.clone(),
                last_updated: last_updated.clone(),
            };
            // The last watcher may have gone meanwhile: fine, nobody is watching.
            let _ = self.changes.send(Arc::new(Change { resource }));
        }
        Ok(out)
    }

    /// The index entries and the patient of `r`, or why its JSON cannot be stored.
    fn prepare(r: &FhirResource) -> Result<(Extracted, Option<String>), StoreError> {
        let x = index::extract_json(&r.resource_type, &r.fhir_json).map_err(|e| StoreError::BadJson {
            resource_type: r.resource_type.clone(),
            id: r.id.clone(),
            detail: e.to_string(),
        })?;
        let patient_id = if r.resource_type == "Patient" {
            Some(r.id.clone())
        } else {
            r.patient_id.clone().filter(|p| !p.is_empty()).or(x.patient_ref.clone())
        };
        Ok((x, patient_id))
    }

    /// New resources (most records) cost one statement: the insert finds no row and writes
    /// it. Otherwise one lookup decides: an equal or newer version seen means nothing to
    /// write; a newer one with the stored content only records its time in `repeats`; a
    /// replaced one rewrites its index rows only when they differ from the stored version's
    /// (`index_key`), and the patient index entry only when patient or time moved.
    fn upsert_in(
        b: &mut Batch<'_>,
        r: &FhirResource,
        x: &Extracted,
        patient_id: Option<&str>,
        last_updated: &str,
    ) -> rusqlite::Result<Upsert> {
        let key = index_key(x);
        let effective = x.effective.unwrap_or(NO_TIME);
        let values = params![
            r.resource_type,
            r.id,
            r.tenant,
            patient_id,
            r.occurred_at,
            r.source_event_id,
            r.event_type,
            r.fhir_json,
            last_updated,
            effective,
            x.birth_date,
            codes_text(x),
            key,
        ];
        if b.st(Sql::Insert)?.execute(values)? == 1 {
            // Index rows never outlive their resource (delete_in removes them together),
            // so a new resource has none to remove.
            Self::insert_index(b, &r.resource_type, &r.id, x)?;
            return Ok(Upsert::Inserted);
        }
        type Seen = (i64, Option<String>, Option<String>, i64, bool, bool);
        let (at, old_key, old_patient, old_effective, same, repeated): Seen =
            b.st(Sql::Select)?.query_row(params![r.resource_type, r.id, r.fhir_json, r.tenant, patient_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
            })?;
        if at >= r.occurred_at {
            return Ok(Upsert::Ignored);
        }
        if same {
            b.st(Sql::Repeat)?.execute(params![r.resource_type, r.id, r.occurred_at])?;
            return Ok(Upsert::Repeated);
        }
        if repeated {
            b.st(Sql::DeleteRepeat)?.execute([&r.resource_type, &r.id])?;
        }
        // Setting an indexed column rewrites its index entry even to the same value. The same
        // index key means the same codes.
        let same_key = old_key.as_deref() == Some(key.as_str());
        let update = if old_patient.as_deref() == patient_id && old_effective == effective && same_key {
            Sql::UpdateContent
        } else {
            Sql::Update
        };
        b.st(update)?.execute(values)?;
        // Only a Patient has rows in the index tables; the helpers decide that.
        if !same_key {
            Self::delete_index(b, &r.resource_type, &r.id)?;
            Self::insert_index(b, &r.resource_type, &r.id, x)?;
        }
        Ok(Upsert::Updated)
    }

    fn delete_in(b: &mut Batch<'_>, resource_type: &str, id: &str) -> rusqlite::Result<bool> {
        let found: Option<String> =
            b.st(Sql::FindForDelete)?.query_row([resource_type, id], |r| r.get(0)).optional()?;
        let Some(rt) = found else { return Ok(false) };
        b.st(Sql::Delete)?.execute([&rt, id])?;
        b.st(Sql::DeleteRepeat)?.execute([&rt, id])?;
        Self::delete_index(b, &rt, id)?;
        Ok(true)
    }

    /// A Patient's identifier and name rows (codes live in the resource's own row).
    fn delete_index(b: &mut Batch<'_>, resource_type: &str, id: &str) -> rusqlite::Result<()> {
        if resource_type == "Patient" {
            b.st(Sql::DeleteIdentifiers)?.execute([id])?;
            b.st(Sql::DeleteNames)?.execute([id])?;
        }
        Ok(())
    }

    fn insert_index(b: &mut Batch<'_>, resource_type: &str, id: &str, x: &Extracted) -> rusqlite::Result<()> {
        if resource_type == "Patient" {
            for (system, value) in &x.identifiers {
                b.st(Sql::InsertIdentifier)?.execute([id, system, value])?;
            }
            for name in &x.names {
                b.st(Sql::InsertName)?.execute([id, name])?;
            }
        }
        Ok(())
    }

    /// Makes every transaction committed so far durable. With synchronous=NORMAL a commit
    /// only appends to the WAL; fsync of the WAL file covers what is still there, and what a
    /// checkpoint already moved into the main file was synced by that checkpoint. (A PASSIVE
    /// checkpoint is no substitute: it skips its WAL sync when a reader blocks it.)
    ///
    /// It does not hold the writer, so the materialiser keeps writing while the disk works.
    /// That is safe for what was committed before the call: SQLite overwrites WAL frames only
    /// after a checkpoint copied them into the main file and synced it.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let file = match std::fs::File::open(&wal) {
            Ok(f) => f,
            // No WAL (not written yet, or removed by a clean close): everything is in the file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::File::open(&self.path)
                .map_err(|source| StoreError::Sync { path: self.path.clone(), source })?,
            Err(source) => return Err(StoreError::Sync { path: wal.into(), source }),
        };
        file.sync_data().map_err(|source| StoreError::Sync { path: self.path.clone(), source })
    }

    /// Copies what the WAL holds into the main file and syncs it, beside the writer: batches
    /// keep committing meanwhile (a PASSIVE checkpoint takes no lock a writer waits for, and
    /// copies only frames no reader still needs). The writer starts the WAL over once a
    /// checkpoint has copied all of it. Returns the WAL's frames and how many are copied.
    pub fn checkpoint_behind(&self) -> Result<(i64, i64), StoreError> {
        let c = self.checkpointer.lock().unwrap_or_else(|p| p.into_inner());
        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?))).map_err(|e| self.sql(e))
    }

    /// Checkpoints the WAL into the main file (on shutdown, so the file alone is complete).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").map_err(|e| self.sql(e))
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| self.sql(e))?;
                c.busy_timeout(Duration::from_secs(10)).map_err(|e| self.sql(e))?;
                Self::limit_memory(&c, READER_CACHE_KIB).map_err(|e| self.sql(e))?;
                c
            }
        };
        let out = f(&conn).map_err(|e| self.sql(e));
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < IDLE_READERS {
            pool.push(conn);
        }
        out
    }

    /// One resource by type and id.
    pub fn get(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {COLUMNS} FROM resources WHERE resource_type = ?1 AND id = ?2"))?
                .query_row([resource_type, id], row_to_resource)
                .optional()
        })
    }

    /// Ids of the patients with identifier `value` (in `system`, or any system when empty).
    pub fn patients_by_identifier(&self, system: &str, value: &str) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT DISTINCT patient_id FROM patient_identifiers WHERE value = ?1 AND (?2 = '' OR system = ?2) ORDER BY patient_id LIMIT 100",
            )?;
            st.query_map([value, system], |r| r.get(0))?.collect()
        })
    }

    /// Patients matching every given criterion, by id. Name and identifier drive the lookup
    /// through their own indexes (IN rather than a per-patient EXISTS), so a search costs the
    /// matches, not the number of patients.
    pub fn search_patients(&self, s: &PatientSearch, page: &PageReq) -> Result<PageOf, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM resources r WHERE r.resource_type = 'Patient'");
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(name) = &s.name {
            let lo = name.trim().to_lowercase();
            // Every string with prefix `lo` sorts between `lo` and `lo` + the highest scalar.
            let hi = format!("{lo}\u{10FFFF}");
            sql.push_str(" AND r.id IN (SELECT n.patient_id FROM patient_names n WHERE n.name >= ? AND n.name < ?)");
            args.push(lo.into());
            args.push(hi.into());
        }
        if let Some(bd) = &s.birth_date {
            sql.push_str(" AND substr(r.birth_date, 1, ?) = ?");
            args.push((bd.len() as i64).into());
            args.push(bd.clone().into());
        }
        if let Some((system, value)) = &s.identifier {
            sql.push_str(" AND r.id IN (SELECT i.patient_id FROM patient_identifiers i WHERE i.value = ? AND (? = '' OR i.system = ?))");
            args.push(value.clone().into());
            args.push(system.clone().into());
            args.push(system.clone().into());
        }
        if let Some(after) = &page.after {
            sql.push_str(" AND r.id > ?");
            args.push(after.id.clone().into());
        }
        sql.push_str(" ORDER BY r.id LIMIT ?");
        args.push(((page.size + 1) as i64).into());
        let mut rows = self.read(|c| {
            c.prepare_cached(&sql)?
                .query_map(params_from_iter(args), row_to_resource)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(Self::paginate(&mut rows, page.size, |r| Cursor { time: 0, id: r.id.clone() }))
    }

    /// Resources of `resource_type` about `patient_id`, newest effective time first (those
    /// without one last), then by id descending.
    pub fn list_for_patient(
        &self,
        resource_type: &str,
        patient_id: &str,
        f: &ListFilter,
        page: &PageReq,
    ) -> Result<PageOf, StoreError> {
        let mut sql =
            format!("SELECT {COLUMNS}, r.effective FROM resources r WHERE r.resource_type = ? AND r.patient_id = ?");
        let mut args: Vec<SqlValue> = vec![resource_type.to_string().into(), patient_id.to_string().into()];
        if !f.codes.is_empty() {
            let alts = vec!["instr(r.codes, ?) > 0"; f.codes.len()];
            sql.push_str(&format!(" AND ({})", alts.join(" OR ")));
            args.extend(f.codes.iter().map(|c| code_needle(c).into()));
        }
        if f.from.is_some() || f.to_exclusive.is_some() {
            sql.push_str(" AND r.effective > ?");
            args.push(NO_TIME.into());
        }
        if let Some(from) = f.from {
            sql.push_str(" AND r.effective >= ?");
            args.push(from.into());
        }
        if let Some(to) = f.to_exclusive {
            sql.push_str(" AND r.effective < ?");
            args.push(to.into());
        }
        if let Some(after) = &page.after {
            sql.push_str(" AND (r.effective, r.id) < (?, ?)");
            args.push(after.time.into());
            args.push(after.id.clone().into());
        }
        sql.push_str(" ORDER BY r.effective DESC, r.id DESC LIMIT ?");
        args.push(((page.size + 1) as i64).into());
        let rows = self.read(|c| {
            c.prepare_cached(&sql)?
                .query_map(params_from_iter(args), |r| Ok((row_to_resource(r)?, r.get::<_, i64>(7)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let next = (rows.len() > page.size).then(|| {
            let (r, t) = &rows[page.size - 1];
            Cursor { time: *t, id: r.id.clone() }
        });
        Ok(PageOf { rows: rows.into_iter().take(page.size).map(|(r, _)| r).collect(), next })
    }

    fn paginate(rows: &mut Vec<StoredResource>, size: usize, cursor: impl Fn(&StoredResource) -> Cursor) -> PageOf {
        let next = (rows.len() > size).then(|| cursor(&rows[size - 1]));
        rows.truncate(size);
        PageOf { rows: std::mem::take(rows), next }
    }

    /// Number of stored resources (for start-up logs and tests).
    pub fn count(&self) -> Result<u64, StoreError> {
        self.read(|c| c.query_row("SELECT count(*) FROM resources", [], |r| r.get::<_, i64>(0)).map(|n| n as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn rec(
        rt: &str,
        id: &str,
        patient: Option<&str>,
        occurred_at: i64,
        json: serde_json::Value,
    ) -> FhirResource {
        FhirResource {
            id: id.into(),
            resource_type: rt.into(),
            tenant: "t1".into(),
            patient_id: patient.map(str::to_string),
            source_event_id: format!("ev-{occurred_at}"),
            event_type: "test".into(),
            occurred_at,
            fhir_json: json.to_string(),
        }
    }

    fn patient(id: &str, family: &str, given: &str, mrn: &str, birth: &str, at: i64) -> FhirResource {
        rec(
            "Patient",
            id,
            Some(id),
            at,
            json!({"resourceType": "Patient", "id": id, "identifier": [{"system": "urn:mrn", "value": mrn}],
                   "name": [{"family": family, "given": [given]}], "birthDate": birth}),
        )
    }

    fn obs(id: &str, patient: &str, code: &str, when: &str) -> FhirResource {
        rec(
            "Observation",
            id,
            None,
            1,
            json!({"resourceType": "Observation", "id": id, "subject": {"reference": format!("Patient/{patient}")},
                   "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "effectiveDateTime": when}),
        )
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 16).unwrap();
        (dir, s)
    }

    fn all(p: usize) -> PageReq {
        PageReq { size: p, after: None }
    }

    #[test]
    fn newer_wins_equal_and_older_are_ignored() {
        let (_d, s) = open();
        assert_eq!(s.upsert(&patient("p1", "Smith", "Ann", "M1", "1980", 10)).unwrap(), Upsert::Inserted);
        assert_eq!(s.upsert(&patient("p1", "Jones", "Ann", "M1", "1980", 10)).unwrap(), Upsert::Ignored);
        assert_eq!(s.upsert(&patient("p1", "Jones", "Ann", "M1", "1980", 5)).unwrap(), Upsert::Ignored);
        assert!(s.get("Patient", "p1").unwrap().unwrap().json.contains("Smith"));
        assert_eq!(s.upsert(&patient("p1", "Jones", "Ann", "M2", "1980", 11)).unwrap(), Upsert::Updated);
        let got = s.get("Patient", "p1").unwrap().unwrap();
        assert!(got.json.contains("Jones"));
        assert_eq!(got.occurred_at, 11);
        // Indexes follow the new version: the old name and identifier no longer match.
        let by_old = PatientSearch { name: Some("smi".into()), ..Default::default() };
        assert!(s.search_patients(&by_old, &all(10)).unwrap().rows.is_empty());
        assert!(s.patients_by_identifier("", "M1").unwrap().is_empty());
        assert_eq!(s.patients_by_identifier("urn:mrn", "M2").unwrap(), vec!["p1".to_string()]);
        assert_eq!(s.count().unwrap(), 1);
    }

    #[test]
    fn a_newer_version_with_the_stored_content_records_only_its_time() {
        let (_d, s) = open();
        let mut changes = s.subscribe();
        assert_eq!(s.upsert(&patient("p1", "Smith", "Ann", "M1", "1980", 10)).unwrap(), Upsert::Inserted);
        assert!(changes.try_recv().is_ok(), "an insert is announced");
        let stored = s.get("Patient", "p1").unwrap().unwrap();
        // Master data comes again with every message: the row stays as it was, no change is
        // announced, and nothing about the content moves.
        assert_eq!(s.upsert(&patient("p1", "Smith", "Ann", "M1", "1980", 20)).unwrap(), Upsert::Repeated);
        assert!(changes.try_recv().is_err(), "a repeat is not a change");
        assert_eq!(s.get("Patient", "p1").unwrap().unwrap(), stored);
        // Its time still counts: a different version older than the repeat is ignored ...
        assert_eq!(s.upsert(&patient("p1", "Jones", "Ann", "M1", "1980", 15)).unwrap(), Upsert::Ignored);
        assert_eq!(s.upsert(&patient("p1", "Smith", "Ann", "M1", "1980", 20)).unwrap(), Upsert::Ignored);
        assert!(s.get("Patient", "p1").unwrap().unwrap().json.contains("Smith"));
        // ... and a newer one replaces the content as before.
        assert_eq!(s.upsert(&patient("p1", "Jones", "Ann", "M1", "1980", 21)).unwrap(), Upsert::Updated);
        assert!(changes.try_recv().is_ok(), "an update is announced");
        let got = s.get("Patient", "p1").unwrap().unwrap();
        assert!(got.json.contains("Jones"));
        assert_eq!(got.occurred_at, 21);
        // The old repeat no longer holds anything back: the repeat of Jones at 25 is one, and
        // Smith at 22 — newer than Jones's content, older than its repeat — is ignored.
        assert_eq!(s.upsert(&patient("p1", "Jones", "Ann", "M1", "1980", 25)).unwrap(), Upsert::Repeated);
        assert_eq!(s.upsert(&patient("p1", "Smith", "Ann", "M1", "1980", 22)).unwrap(), Upsert::Ignored);
        assert_eq!(s.upsert(&patient("p1", "Smith", "Ann", "M1", "1980", 26)).unwrap(), Upsert::Updated);
    }

    #[test]
    fn the_same_json_for_another_patient_or_after_a_delete_is_written() {
        let (_d, s) = open();
        let mut o = obs("o1", "p1", "A", "2024-01-01");
        o.patient_id = Some("p1".into());
        o.occurred_at = 1;
        assert_eq!(s.upsert(&o).unwrap(), Upsert::Inserted);
        // The record's patient wins over the JSON's reference, so the same JSON can move.
        o.patient_id = Some("p2".into());
        o.occurred_at = 2;
        assert_eq!(s.upsert(&o).unwrap(), Upsert::Updated);
        assert_eq!(s.get("Observation", "o1").unwrap().unwrap().patient_id.as_deref(), Some("p2"));
        o.occurred_at = 3;
        assert_eq!(s.upsert(&o).unwrap(), Upsert::Repeated);
        // A delete forgets the repeat with the row: the same content at an older time is new.
        assert!(s.delete("Observation", "o1").unwrap());
        o.occurred_at = 2;
        assert_eq!(s.upsert(&o).unwrap(), Upsert::Inserted);
        o.occurred_at = 3;
        assert_eq!(s.upsert(&o).unwrap(), Upsert::Repeated);
    }

    #[test]
    fn a_checkpoint_beside_the_writer_moves_the_wal_into_the_file() {
        let (d, s) = open();
        for i in 0..200 {
            s.upsert(&obs(&format!("o{i}"), "p1", "A", "2024-01-01")).unwrap();
        }
        let file = || std::fs::metadata(d.path().join("query.sqlite")).unwrap().len();
        let before = file();
        let (frames, copied) = s.checkpoint_behind().unwrap();
        assert!(frames > 0 && copied == frames, "{frames} frames, {copied} copied");
        assert!(file() > before, "the file holds what the WAL held");
        // Behind a reader's open snapshot it copies what it may and says so; writes go on.
        let reader = Connection::open(d.path().join("query.sqlite")).unwrap();
        reader.execute_batch("BEGIN; SELECT count(*) FROM resources;").unwrap();
        s.upsert(&obs("late", "p1", "A", "2024-01-02")).unwrap();
        assert_eq!(s.get("Observation", "late").unwrap().unwrap().id, "late");
        reader.execute_batch("COMMIT").unwrap();
        let (frames, copied) = s.checkpoint_behind().unwrap();
        assert!(frames > 0 && copied == frames, "{frames} frames, {copied} copied");
        assert_eq!(s.count().unwrap(), 201);
    }

    #[test]
    fn replay_in_any_order_converges() {
        let versions: Vec<FhirResource> =
            (1..=5).map(|i| patient("p1", &format!("Fam{i}"), "G", "M", "1990", i)).collect();
        let orders: [&[usize]; 3] = [&[0, 1, 2, 3, 4], &[4, 3, 2, 1, 0], &[2, 4, 0, 4, 1, 3, 2]];
        for order in orders {
            let (_d, s) = open();
            for &i in order {
                s.upsert(&versions[i]).unwrap();
            }
            assert!(s.get("Patient", "p1").unwrap().unwrap().json.contains("Fam5"), "order {order:?}");
        }
    }

    #[test]
    fn json_is_returned_exactly_as_stored() {
        let (_d, s) = open();
        let mut r = patient("p1", "A", "B", "M", "2000", 1);
        r.fhir_json = "{ \"resourceType\" : \"Patient\",\n  \"id\":\"p1\" , \"x\": 1.50 }".into();
        s.upsert(&r).unwrap();
        assert_eq!(s.get("Patient", "p1").unwrap().unwrap().json, r.fhir_json);
    }

    #[test]
    fn refuses_json_that_is_not_an_object() {
        let (_d, s) = open();
        let mut r = patient("p1", "A", "B", "M", "2000", 1);
        r.fhir_json = "[1,2]".into();
        assert!(matches!(s.upsert(&r), Err(StoreError::BadJson { .. })));
        r.fhir_json = "{".into();
        let e = s.upsert(&r).unwrap_err();
        assert!(e.to_string().contains("Patient/p1"), "{e}");
        assert_eq!(s.count().unwrap(), 0);
    }

    #[test]
    fn patient_search_by_name_birth_date_identifier() {
        let (_d, s) = open();
        s.upsert(&patient("p1", "Smith", "Ann", "M1", "1980-02-03", 1)).unwrap();
        s.upsert(&patient("p2", "Smithers", "Bob", "M2", "1980-07-01", 1)).unwrap();
        s.upsert(&patient("p3", "Jones", "Annabel", "M3", "1991-02-03", 1)).unwrap();
        let ids = |q: PatientSearch| {
            s.search_patients(&q, &all(50)).unwrap().rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
        };
        assert_eq!(ids(PatientSearch { name: Some("SMITH".into()), ..Default::default() }), ["p1", "p2"]);
        assert_eq!(ids(PatientSearch { name: Some("ann".into()), ..Default::default() }), ["p1", "p3"]);
        assert_eq!(ids(PatientSearch { name: Some("smithx".into()), ..Default::default() }), Vec::<String>::new());
        assert_eq!(ids(PatientSearch { birth_date: Some("1980".into()), ..Default::default() }), ["p1", "p2"]);
        assert_eq!(ids(PatientSearch { birth_date: Some("1980-02".into()), ..Default::default() }), ["p1"]);
        assert_eq!(
            ids(PatientSearch { name: Some("ann".into()), birth_date: Some("1991".into()), ..Default::default() }),
            ["p3"]
        );
        assert_eq!(ids(PatientSearch { identifier: Some((String::new(), "M2".into())), ..Default::default() }), ["p2"]);
        assert_eq!(
            ids(PatientSearch { identifier: Some(("urn:other".into(), "M2".into())), ..Default::default() }),
            Vec::<String>::new()
        );
    }

    #[test]
    fn patient_search_pages_by_id() {
        let (_d, s) = open();
        for i in 0..7 {
            s.upsert(&patient(&format!("p{i}"), "Same", "X", &format!("M{i}"), "2000", 1)).unwrap();
        }
        let q = PatientSearch { name: Some("same".into()), ..Default::default() };
        let mut seen = Vec::new();
        let mut page = PageReq { size: 3, after: None };
        loop {
            let got = s.search_patients(&q, &page).unwrap();
            assert!(got.rows.len() <= 3);
            seen.extend(got.rows.iter().map(|r| r.id.clone()));
            match got.next {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
        // An exact multiple of the page size ends without an empty extra page.
        let got = s.search_patients(&q, &PageReq { size: 7, after: None }).unwrap();
        assert_eq!((got.rows.len(), got.next), (7, None));
    }

    #[test]
    fn observations_by_code_range_and_pages_newest_first() {
        let (_d, s) = open();
        s.upsert(&obs("o1", "p1", "A", "2024-01-10T08:00:00Z")).unwrap();
        s.upsert(&obs("o2", "p1", "B", "2024-02-10T08:00:00Z")).unwrap();
        s.upsert(&obs("o3", "p1", "A", "2024-03-10T08:00:00+02:00")).unwrap();
        s.upsert(&obs("o4", "p1", "A", "2024-03-10T08:00:00Z")).unwrap();
        s.upsert(&obs("o5", "p2", "A", "2024-03-10T08:00:00Z")).unwrap();
        let mut untimed = obs("o6", "p1", "A", "x");
        untimed.fhir_json = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}, "code": {"coding": [{"code": "A"}]}}).to_string();
        s.upsert(&untimed).unwrap();
        let ids = |f: ListFilter| {
            s.list_for_patient("Observation", "p1", &f, &all(50))
                .unwrap()
                .rows
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(ListFilter::default()), ["o4", "o3", "o2", "o1", "o6"]);
        let a = CodeFilter::parse("http://loinc.org|A").unwrap();
        // o6's coding has no system, so it matches a bare code only.
        assert_eq!(ids(ListFilter { codes: vec![a.clone()], ..Default::default() }), ["o4", "o3", "o1"]);
        assert_eq!(
            ids(ListFilter { codes: vec![CodeFilter::parse("A").unwrap()], ..Default::default() }),
            ["o4", "o3", "o1", "o6"]
        );
        let wrong_system = CodeFilter::parse("urn:x|A").unwrap();
        assert_eq!(ids(ListFilter { codes: vec![wrong_system], ..Default::default() }), Vec::<String>::new());
        let b = CodeFilter::parse("B").unwrap();
        assert_eq!(ids(ListFilter { codes: vec![a.clone(), b], ..Default::default() }), ["o4", "o3", "o2", "o1"]);
        let march = ListFilter {
            from: Some(crate::time::parse_start("2024-03").unwrap()),
            to_exclusive: Some(crate::time::parse_end_exclusive("2024-03").unwrap()),
            ..Default::default()
        };
        assert_eq!(ids(march), ["o4", "o3"]);
        let until_feb = ListFilter {
            to_exclusive: Some(crate::time::parse_end_exclusive("2024-02-10").unwrap()),
            ..Default::default()
        };
        assert_eq!(ids(until_feb), ["o2", "o1"]);
        // Paging walks the same order without gaps or repeats.
        let mut page = PageReq { size: 2, after: None };
        let mut seen = Vec::new();
        loop {
            let got = s.list_for_patient("Observation", "p1", &ListFilter::default(), &page).unwrap();
            seen.extend(got.rows.into_iter().map(|r| r.id));
            match got.next {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, ["o4", "o3", "o2", "o1", "o6"]);
    }

    #[test]
    fn record_patient_id_wins_over_the_json_reference() {
        let (_d, s) = open();
        let mut o = obs("o1", "from-json", "A", "2024-01-01");
        o.patient_id = Some("from-record".into());
        s.upsert(&o).unwrap();
        assert_eq!(
            s.list_for_patient("Observation", "from-record", &ListFilter::default(), &all(5)).unwrap().rows.len(),
            1
        );
        assert!(
            s.list_for_patient("Observation", "from-json", &ListFilter::default(), &all(5)).unwrap().rows.is_empty()
        );
    }

    #[test]
    fn code_filter_parsing() {
        assert_eq!(CodeFilter::parse("s|c"), Some(CodeFilter { system: Some("s".into()), code: "c".into() }));
        assert_eq!(CodeFilter::parse("|c"), Some(CodeFilter { system: None, code: "c".into() }));
        assert_eq!(CodeFilter::parse("c"), Some(CodeFilter { system: None, code: "c".into() }));
        assert_eq!(CodeFilter::parse("s|"), None);
        assert_eq!(CodeFilter::parse(""), None);
    }

    #[test]
    fn a_batch_applies_in_order_refuses_bad_json_alone_and_announces_after_commit() {
        let (_d, s) = open();
        let mut rx = s.subscribe();
        let v1 = patient("p1", "One", "A", "M1", "1980", 1);
        let v2 = patient("p1", "Two", "A", "M1", "1980", 2);
        let mut bad = patient("p2", "Bad", "B", "M2", "1980", 1);
        bad.fhir_json = "not json".into();
        let o = obs("o1", "p1", "A", "2024");
        let got = s
            .apply([
                Write::Upsert(&v1),
                Write::Upsert(&bad),
                Write::Upsert(&v2),
                Write::Upsert(&v1),
                Write::Upsert(&o),
                Write::Delete { resource_type: "observation", id: "o1" },
            ])
            .unwrap();
        let kinds: Vec<String> = got
            .iter()
            .map(|a| match a {
                Applied::Upsert(u) => format!("{u:?}"),
                Applied::Deleted(d) => format!("Deleted({d})"),
                Applied::Refused(_) => "Refused".into(),
            })
            .collect();
        assert_eq!(kinds, ["Inserted", "Refused", "Updated", "Ignored", "Inserted", "Deleted(true)"]);
        assert!(s.get("Patient", "p1").unwrap().unwrap().json.contains("Two"));
        assert!(s.get("Patient", "p2").unwrap().is_none());
        assert!(s.get("Observation", "o1").unwrap().is_none());
        let announced: Vec<(String, i64)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|c| (c.resource.id.clone(), c.resource.occurred_at))
            .collect();
        assert_eq!(announced, [("p1".to_string(), 1), ("p1".to_string(), 2), ("o1".to_string(), 1)]);
    }

    #[test]
    fn tombstone_deletes_and_unindexes() {
        let (_d, s) = open();
        s.upsert(&patient("p1", "Smith", "Ann", "M1", "1980", 1)).unwrap();
        assert!(s.delete("patient", "p1").unwrap());
        assert!(!s.delete("patient", "p1").unwrap());
        assert!(s.get("Patient", "p1").unwrap().is_none());
        assert!(s.patients_by_identifier("", "M1").unwrap().is_empty());
    }

    #[test]
    fn survives_reopen_and_remove_empties() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 4).unwrap();
            s.upsert(&patient("p1", "Smith", "Ann", "M1", "1980", 1)).unwrap();
            s.set_meta("group", "g1").unwrap();
            s.checkpoint().unwrap();
        }
        let s = Store::open(dir.path(), 4).unwrap();
        assert_eq!(s.count().unwrap(), 1);
        assert_eq!(s.meta("group").unwrap().as_deref(), Some("g1"));
        drop(s);
        Store::remove(dir.path()).unwrap();
        let s = Store::open(dir.path(), 4).unwrap();
        assert_eq!(s.count().unwrap(), 0);
        assert_eq!(s.meta("group").unwrap(), None);
    }

    #[test]
    fn readers_answer_while_the_writer_writes() {
        let (_d, s) = open();
        let s = Arc::new(s);
        s.upsert(&patient("p0", "Smith", "Ann", "M0", "1980", 1)).unwrap();
        let w = {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    s.upsert(&obs(&format!("o{i}"), "p0", "A", "2024-01-01T00:00:00Z")).unwrap();
                }
            })
        };
        let mut last = 0;
        let mut reads = 0;
        while !w.is_finished() || reads == 0 {
            let n = s.list_for_patient("Observation", "p0", &ListFilter::default(), &all(1000)).unwrap().rows.len();
            assert!(n >= last, "a reader saw the count go back from {last} to {n}");
            last = n;
            reads += 1;
        }
        w.join().unwrap();
        assert_eq!(
            s.list_for_patient("Observation", "p0", &ListFilter::default(), &all(1000)).unwrap().rows.len(),
            300
        );
    }

    fn ids_with_code(s: &Store, patient: &str, code: &str) -> Vec<String> {
        let f = ListFilter { codes: vec![CodeFilter::parse(code).unwrap()], ..Default::default() };
        s.list_for_patient("Observation", patient, &f, &all(50)).unwrap().rows.into_iter().map(|r| r.id).collect()
    }

    #[test]
    fn codes_follow_their_resource_to_another_patient_and_out_on_delete() {
        let (_d, s) = open();
        let mut o = obs("o1", "p1", "A", "2024-01-01");
        o.occurred_at = 1;
        s.upsert(&o).unwrap();
        // Same codes (same index key), other patient: the codes move with it.
        let mut moved = obs("o1", "p2", "A", "2024-01-01");
        moved.occurred_at = 2;
        assert_eq!(s.upsert(&moved).unwrap(), Upsert::Updated);
        assert!(ids_with_code(&s, "p1", "A").is_empty());
        assert_eq!(ids_with_code(&s, "p2", "A"), ["o1"]);
        s.apply([Write::Delete { resource_type: "Observation", id: "o1" }]).unwrap();
        assert_eq!(s.count().unwrap(), 0);
        assert!(ids_with_code(&s, "p2", "A").is_empty());
    }

    #[test]
    fn a_code_matches_only_a_whole_code_of_one_entry() {
        let (_d, s) = open();
        let mut o = obs("o1", "p1", "2345-7", "2024-01-01");
        o.fhir_json = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}, {"system": "urn:lab", "code": "GLU"},
                                {"system": "urn:bad\u{1f}", "code": "X"}, {"code": "NOSYS"}]}})
        .to_string();
        s.upsert(&o).unwrap();
        for hit in ["2345-7", "http://loinc.org|2345-7", "GLU", "urn:lab|GLU", "NOSYS"] {
            assert_eq!(ids_with_code(&s, "p1", hit), ["o1"], "{hit}");
        }
        // Parts of a code or system, a code under another entry's system, the system alone,
        // and the entry whose system holds a separator (left out of the index).
        for miss in [
            "345-7",
            "2345",
            "GL",
            "LU",
            "http://loinc.org|GLU",
            "urn:lab|2345-7",
            "http://loinc.org",
            "X",
            "urn:bad|X",
        ] {
            assert!(ids_with_code(&s, "p1", miss).is_empty(), "{miss}");
        }
    }

    #[test]
    fn an_update_rewrites_the_index_only_when_its_entries_changed_and_then_exactly() {
        let (_d, s) = open();
        let mut o = obs("o1", "p1", "A", "2024-01-01");
        o.occurred_at = 1;
        s.upsert(&o).unwrap();
        // Same index entries, other content: still found by its code, content replaced.
        let mut same = obs("o1", "p1", "A", "2024-02-01");
        same.occurred_at = 2;
        assert_eq!(s.upsert(&same).unwrap(), Upsert::Updated);
        assert_eq!(ids_with_code(&s, "p1", "A"), ["o1"]);
        assert!(s.get("Observation", "o1").unwrap().unwrap().json.contains("2024-02-01"));
        // Other code: the old one no longer matches, the new one does.
        let mut other = obs("o1", "p1", "B", "2024-02-01");
        other.occurred_at = 3;
        assert_eq!(s.upsert(&other).unwrap(), Upsert::Updated);
        assert!(ids_with_code(&s, "p1", "A").is_empty());
        assert_eq!(ids_with_code(&s, "p1", "B"), ["o1"]);
        // A patient whose names stay and whose identifier changes.
        s.upsert(&patient("p1", "Smith", "Ann", "M1", "1980", 1)).unwrap();
        s.upsert(&patient("p1", "Smith", "Ann", "M2", "1980", 2)).unwrap();
        assert!(s.patients_by_identifier("", "M1").unwrap().is_empty());
        assert_eq!(s.patients_by_identifier("", "M2").unwrap(), ["p1"]);
        let by_name = PatientSearch { name: Some("smith".into()), ..Default::default() };
        assert_eq!(s.search_patients(&by_name, &all(5)).unwrap().rows.len(), 1);
    }

    #[test]
    fn an_update_moves_the_patient_and_time_entries_only_when_they_changed() {
        let (_d, s) = open();
        let range = |month: &str| ListFilter {
            from: Some(crate::time::parse_start(month).unwrap()),
            to_exclusive: Some(crate::time::parse_end_exclusive(month).unwrap()),
            ..Default::default()
        };
        let ids = |p: &str, f: ListFilter| -> Vec<String> {
            s.list_for_patient("Observation", p, &f, &all(5)).unwrap().rows.into_iter().map(|r| r.id).collect()
        };
        let mut o = obs("o1", "p1", "A", "2024-01-05");
        o.occurred_at = 1;
        s.upsert(&o).unwrap();
        // Content only: still listed for p1 in January, with the new content.
        let mut v2 = obs("o1", "p1", "A", "2024-01-05");
        v2.fhir_json = v2.fhir_json.replacen('{', "{\"status\":\"amended\",", 1);
        v2.occurred_at = 2;
        assert_eq!(s.upsert(&v2).unwrap(), Upsert::Updated);
        assert_eq!(ids("p1", range("2024-01")), ["o1"]);
        assert!(s.get("Observation", "o1").unwrap().unwrap().json.contains("amended"));
        // Another time: found in March, not in January.
        let mut v3 = obs("o1", "p1", "A", "2024-03-05");
        v3.occurred_at = 3;
        s.upsert(&v3).unwrap();
        assert!(ids("p1", range("2024-01")).is_empty());
        assert_eq!(ids("p1", range("2024-03")), ["o1"]);
        // Another patient: gone from p1, listed for p2.
        let mut v4 = obs("o1", "p2", "A", "2024-03-05");
        v4.occurred_at = 4;
        s.upsert(&v4).unwrap();
        assert!(ids("p1", ListFilter::default()).is_empty());
        assert_eq!(ids("p2", range("2024-03")), ["o1"]);
        assert_eq!(s.get("Observation", "o1").unwrap().unwrap().patient_id.as_deref(), Some("p2"));
    }

    #[test]
    fn index_keys_are_unambiguous() {
        let x = |codes: &[(&str, &str)]| Extracted {
            codes: codes.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            ..Default::default()
        };
        assert_ne!(index_key(&x(&[("ab", "c")])), index_key(&x(&[("a", "bc")])));
        assert_ne!(index_key(&x(&[("a", "b"), ("c", "d")])), index_key(&x(&[("c", "d"), ("a", "b")])));
        let names = Extracted { names: vec!["1:c".into()], ..Default::default() };
        assert_ne!(index_key(&names), index_key(&x(&[])));
        assert_ne!(index_key(&x(&[("", "")])), index_key(&x(&[])));
    }

    /// The store's tables before this version, with code rows in a table of their own keyed
    /// by `codes_key`, and the patient index on `patient_index`.
    fn old_layout(with_index_key: bool, codes_key: &str, patient_index: &str) -> String {
        format!(
            "CREATE TABLE resources (resource_type TEXT NOT NULL, id TEXT NOT NULL, tenant TEXT NOT NULL,
                 patient_id TEXT, occurred_at INTEGER NOT NULL, source_event_id TEXT NOT NULL,
                 event_type TEXT NOT NULL, json TEXT NOT NULL, last_updated TEXT NOT NULL,
                 effective INTEGER NOT NULL, birth_date TEXT, {} PRIMARY KEY (resource_type, id));
             CREATE INDEX {patient_index};
             CREATE TABLE codes (resource_type TEXT NOT NULL, {} id TEXT NOT NULL, system TEXT NOT NULL,
                 code TEXT NOT NULL, PRIMARY KEY ({codes_key})) WITHOUT ROWID;",
            if with_index_key { "index_key TEXT," } else { "" },
            if codes_key.contains("patient_id") { "patient_id TEXT NOT NULL," } else { "" },
        )
    }

    /// The first column of every row `sql` returns, on the writer.
    fn names(s: &Store, sql: &str) -> Vec<String> {
        let w = s.writer.lock().unwrap();
        w.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    fn patient_index_columns(s: &Store) -> Vec<String> {
        names(s, "SELECT name FROM pragma_index_info('resources_of_patient') ORDER BY seqno")
    }

    fn tables(s: &Store) -> Vec<String> {
        names(s, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
    }

    #[test]
    fn a_store_from_before_index_key_gains_it_and_reindexes_on_update() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The first layout: no index_key, code rows keyed by resource.
            let c = Connection::open(Store::file_in(dir.path())).unwrap();
            c.execute_batch(&old_layout(
                false,
                "resource_type, id, system, code",
                "resources_by_patient ON resources (resource_type, patient_id, effective, id)",
            ))
            .unwrap();
            c.execute_batch(
                "INSERT INTO resources VALUES ('Observation', 'o1', 't1', 'p1', 1, 'e', 't', '{}', 'x', 0, NULL);
                 INSERT INTO codes VALUES ('Observation', 'o1', 'http://loinc.org', 'A');",
            )
            .unwrap();
        }
        let s = Store::open(dir.path(), 4).unwrap();
        assert_eq!(ids_with_code(&s, "p1", "A"), ["o1"]);
        assert_eq!(ids_with_code(&s, "p1", "http://loinc.org|A"), ["o1"]);
        let mut o = obs("o1", "p1", "B", "2024-01-01");
        o.occurred_at = 2;
        assert_eq!(s.upsert(&o).unwrap(), Upsert::Updated);
        assert!(ids_with_code(&s, "p1", "A").is_empty());
        assert_eq!(ids_with_code(&s, "p1", "B"), ["o1"]);
    }

    #[test]
    fn an_older_stores_code_rows_move_into_the_patient_index_and_answer_the_same() {
        for (codes_key, patient_index) in [
            // Code rows and patient index keyed by type first.
            (
                "resource_type, patient_id, id, system, code",
                "resources_by_patient ON resources (resource_type, patient_id, effective, id)",
            ),
            // The layout just before: both keyed by patient first.
            (
                "patient_id, resource_type, id, system, code",
                "resources_of_patient ON resources (patient_id, resource_type, effective, id)",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            {
                let c = Connection::open(Store::file_in(dir.path())).unwrap();
                c.execute_batch(&old_layout(true, codes_key, patient_index)).unwrap();
                c.execute_batch(
                    "INSERT INTO resources VALUES ('Observation', 'o1', 't1', 'p1', 1, 'e', 't', '{}', 'x', 5, NULL, NULL);
                     INSERT INTO resources VALUES ('Observation', 'o3', 't1', 'p1', 1, 'e', 't', '{}', 'x', 4, NULL, NULL);
                     INSERT INTO codes VALUES ('Observation', 'p1', 'o1', 'http://loinc.org', 'A');
                     INSERT INTO codes VALUES ('Observation', 'p1', 'o1', 'urn:lab', 'GLU');",
                )
                .unwrap();
            }
            let s = Store::open(dir.path(), 4).unwrap();
            assert_eq!(ids_with_code(&s, "p1", "A"), ["o1"], "{codes_key}");
            assert_eq!(ids_with_code(&s, "p1", "urn:lab|GLU"), ["o1"], "{codes_key}");
            assert!(ids_with_code(&s, "p1", "urn:lab|A").is_empty(), "{codes_key}");
            assert_eq!(patient_index_columns(&s), ["patient_id", "resource_type", "effective", "id", "codes"]);
            assert!(!tables(&s).contains(&"codes".to_string()), "{:?}", tables(&s));
            // Written and read through the new layout as well.
            s.upsert(&obs("o2", "p1", "A", "2024-01-02")).unwrap();
            let mut found = ids_with_code(&s, "p1", "A");
            found.sort();
            assert_eq!(found, ["o1", "o2"]);
            drop(s);
            // Opening again changes nothing.
            let s = Store::open(dir.path(), 4).unwrap();
            assert_eq!(ids_with_code(&s, "p1", "urn:lab|GLU"), ["o1"]);
            assert_eq!(patient_index_columns(&s), ["patient_id", "resource_type", "effective", "id", "codes"]);
        }
    }

    #[test]
    fn the_writer_page_cache_stays_bounded_and_nothing_is_memory_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let kib = 256;
        let s = Store::open_with_cache(dir.path(), 4, kib).unwrap();
        // About 3 MB of resources, far more than the cache holds.
        let pad = "x".repeat(1000);
        for b in 0..6 {
            let batch: Vec<FhirResource> = (0..500)
                .map(|i| {
                    let mut o = obs(&format!("o{b}-{i}"), "p1", "A", "2024-01-01");
                    o.fhir_json = o.fhir_json.replacen('{', &format!("{{\"note\":\"{pad}\","), 1);
                    o
                })
                .collect();
            s.apply(batch.iter().map(Write::Upsert)).unwrap();
        }
        assert_eq!(s.count().unwrap(), 3000);
        let w = s.writer.lock().unwrap();
        let (mut used, mut high) = (0, 0);
        // SAFETY: the handle is the open writer connection, held locked for the call.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                w.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
                &mut used,
                &mut high,
                0,
            )
        };
        assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
        // Page headers and SQLite's bookkeeping come on top of the page bytes, hence the margin.
        assert!(used > 0 && (used as i64) < kib * 1024 * 5 / 4, "page cache holds {used} bytes, limit {kib} KiB");
        let mmap: i64 = w.query_row("PRAGMA mmap_size", [], |r| r.get(0)).unwrap();
        assert_eq!(mmap, 0);
    }

    #[test]
    fn changes_are_announced_after_commit_only_when_something_changed() {
        let (_d, s) = open();
        let mut rx = s.subscribe();
        s.upsert(&patient("p1", "Smith", "Ann", "M1", "1980", 2)).unwrap();
        s.upsert(&patient("p1", "Smith", "Ann", "M1", "1980", 1)).unwrap();
        s.upsert(&obs("o1", "p1", "A", "2024")).unwrap();
        let a = rx.try_recv().unwrap();
        assert_eq!((a.resource.resource_type.as_str(), a.resource.patient_id.as_deref()), ("Patient", Some("p1")));
        let b = rx.try_recv().unwrap();
        assert_eq!((b.resource.id.as_str(), b.resource.patient_id.as_deref()), ("o1", Some("p1")));
        assert!(rx.try_recv().is_err(), "the ignored older version must not be announced");
    }
}
