//! [`SqliteBackend`]: alert state that outlives a run (`rulehost eval --state PATH`), kept in an
//! embedded SQLite database.
//!
//! What is stored: every live window ([`crate::state::Window`]: counts, unique values,
//! frozen alert fields, first event's position), the counters that order later windows and
//! alerts, the last position applied of each tracked source (for files: how many lines are
//! already in the state, with the digest of the first line), and the alert sink (kind, where,
//! and its mark: a JSON-lines file's length) at the last checkpoint.
//!
//! Crash safety: each [`Checkpoint`] is one transaction, committed after the sink synced
//! the alerts written so far. A run killed between checkpoints leaves the state of the last
//! one: the next run recovers the sink through its kind ([`crate::sink::recover`]: a file is
//! cut back to the recorded length if it is that run's own output) and evaluates again from
//! the line after it. Alert ids depend only on (rule, dedup, window start), so the redone
//! alerts are the same records.
//!
//! Exclusivity: a writer holds an advisory lock on `PATH.lock` for its whole run, so a second
//! process fails with [`SqliteError::Busy`] (or waits, [`LockWait::Wait`]); SQLite's own locking
//! keeps readers such as `rulehost state` consistent meanwhile. Neither file is followed
//! through a symbolic link ([`SqliteError::Unsafe`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::backend::{
    BackendError, Checkpoint, Restored, StateBackend, StoredHeld, stored_position,
};
use super::lock::lock_file;
pub use super::lock::{LockWait, UnsafeFile};
use crate::alert::{AlertFields, Opener, OpenerEvent, WindowFields};
use crate::input::{Line, parse_line};
use crate::sink::{SinkMark, SinkTarget};
use crate::source::{Position, Recorded};
use crate::spec::Severity;
use crate::state::{AlertState, Counters, Namespace, Window, WindowKey};

/// The layout this rulehost writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value ANY
);
-- One row per live window; a window is deleted when it closes, so the table holds live
-- windows only.
CREATE TABLE IF NOT EXISTS windows (
    rule_id TEXT NOT NULL,
    namespace INTEGER NOT NULL,        -- 0 alert, 1 rule error
    dedup TEXT NOT NULL,
    seq INTEGER NOT NULL,              -- opening order
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    threshold INTEGER NOT NULL,
    first_file TEXT NOT NULL,
    first_line INTEGER NOT NULL,
    first_event_ms INTEGER NOT NULL,
    last_event_ms INTEGER NOT NULL,
    event_count INTEGER NOT NULL,
    uniques TEXT,                      -- JSON array of distinct values, NULL if not counted
    alert_seq INTEGER,                 -- set once the threshold was reached
    created_ms INTEGER,
    fields TEXT NOT NULL,              -- the alert fields frozen from the first match (JSON)
    PRIMARY KEY (rule_id, namespace, dedup)
) WITHOUT ROWID;
-- Lines of each input file already evaluated into this state.
CREATE TABLE IF NOT EXISTS inputs (
    path TEXT PRIMARY KEY,
    head TEXT NOT NULL,                -- digest of the first line: a new file at the same path differs
    lines INTEGER NOT NULL
);
";

/// Errors of the state database; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// Another process holds the state.
    #[error("state `{}` is in use by another rulehost run{}", path.display(), holder_text(*holder))]
    Busy {
        /// The database.
        path: PathBuf,
        /// The pid written by the process holding it, if readable.
        holder: Option<u32>,
    },
    /// `rulehost state` on a file that does not exist.
    #[error("no state at `{}`", path.display())]
    Missing {
        /// The database.
        path: PathBuf,
    },
    /// The database or its lock file is not a file rulehost may write safely.
    #[error("refusing to use `{}`: {reason}", path.display())]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: UnsafeFile,
    },
    /// Locking, syncing or truncating a file failed.
    #[error("failed to use `{}`", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// SQLite failed (not a database, disk full, ...).
    #[error("failed to use state `{}`", path.display())]
    Sql {
        /// The database.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// Written by a rulehost with another layout.
    #[error(
        "state `{}` has layout version {found}; this rulehost reads version {SCHEMA_VERSION}",
        path.display()
    )]
    Schema {
        /// The database.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// A stored window could not be read back.
    #[error("state `{}` holds an unreadable window of rule `{rule}`", path.display())]
    Corrupt {
        /// The database.
        path: PathBuf,
        /// The window's rule.
        rule: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn holder_text(holder: Option<u32>) -> String {
    holder
        .map(|pid| format!(" (pid {pid})"))
        .unwrap_or_default()
}

/// An open state database.
pub struct SqliteBackend {
    conn: Connection,
    path: PathBuf,
    /// Held for the store's lifetime by writers; `None` for readers.
    _lock: Option<File>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A window's fields as stored (the `fields` column): frozen, or (a window not alerted
/// yet) its first match, `{"opener": its JSON text, "title": ...}`.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Pending {
        /// The first match's JSON text.
        opener: String,
        /// The title it came with.
        title: Option<String>,
    },
    Frozen(StoredFields),
}

impl From<&WindowFields> for Stored {
    fn from(fields: &WindowFields) -> Self {
        match fields {
            WindowFields::Frozen(fields) => Stored::Frozen(StoredFields::from(fields)),
            WindowFields::Pending(opener) => Stored::Pending {
                opener: opener.event.text().into_owned(),
                title: opener.title.clone(),
            },
        }
    }
}

impl Stored {
    fn into_fields(self) -> Result<WindowFields, serde_json::Error> {
        Ok(match self {
            Stored::Frozen(fields) => WindowFields::Frozen(fields.into_fields()?),
            Stored::Pending { opener, title } => WindowFields::Pending(Opener {
                event: OpenerEvent::Line(opener.into_boxed_str()),
                title,
            }),
        })
    }
}

/// The alert fields as stored.
#[derive(Serialize, Deserialize)]
struct StoredFields {
    title: String,
    severity: String,
    alert_context: Value,
    description: String,
    reference: String,
    runbook: String,
    destinations: Vec<String>,
    suppressed: bool,
    error: Option<String>,
}

impl From<&AlertFields> for StoredFields {
    fn from(f: &AlertFields) -> Self {
        StoredFields {
            title: f.title.clone(),
            severity: f.severity.as_str().to_owned(),
            alert_context: f.alert_context.clone(),
            description: f.description.clone(),
            reference: f.reference.clone(),
            runbook: f.runbook.clone(),
            destinations: f.destinations.clone(),
            suppressed: f.suppressed,
            error: f.error.clone(),
        }
    }
}

impl StoredFields {
    fn into_fields(self) -> Result<AlertFields, serde_json::Error> {
        let severity = Severity::parse(&self.severity).ok_or_else(|| {
            <serde_json::Error as serde::de::Error>::custom(format!(
                "invalid severity `{}`",
                self.severity
            ))
        })?;
        Ok(AlertFields {
            title: self.title,
            severity,
            alert_context: self.alert_context,
            description: self.description,
            reference: self.reference,
            runbook: self.runbook,
            destinations: self.destinations,
            suppressed: self.suppressed,
            error: self.error,
        })
    }
}

/// One rule's part of a [`StateSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSummary {
    /// `RuleID`.
    pub rule_id: String,
    /// Live windows (alerts and rule errors).
    pub windows: u64,
    /// Live windows that reached their threshold: alerts written when they close.
    pub pending_alerts: u64,
    /// Start of the oldest live window, epoch ms.
    pub oldest_window_ms: i64,
    /// End of the window that closes last, epoch ms.
    pub last_end_ms: i64,
}

/// What `rulehost state` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateSummary {
    /// The newest event time evaluated, epoch ms.
    pub watermark_ms: Option<i64>,
    /// Per rule with live windows, by RuleID.
    pub rules: Vec<RuleSummary>,
    /// Input files tracked.
    pub inputs: u64,
    /// Lines of them evaluated.
    pub input_lines: u64,
    /// Whether the last run stopped before its end (it is resumed by the next).
    pub interrupted: bool,
}

impl SqliteBackend {
    /// Opens (creating if needed) the state at `path` for a run that changes it, holding
    /// `PATH.lock` until dropped. Neither `path` nor `PATH.lock` may be a symbolic link
    /// ([`SqliteError::Unsafe`]): a link planted in the state's folder would make the run write
    /// (or truncate) the file it points to.
    pub fn open(path: &Path, wait: LockWait) -> Result<Self, SqliteError> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(SqliteError::Unsafe {
                path: path.to_owned(),
                reason: UnsafeFile::Symlink,
            });
        }
        let lock = lock_file(path, wait)?;
        // NOFOLLOW: a link put there since the check above is refused by SQLite too.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .map_err(|source| sql(path, source))?;
        let store = SqliteBackend {
            conn,
            path: path.to_owned(),
            _lock: Some(lock),
        };
        store.prepare()?;
        Ok(store)
    }

    /// Like [`SqliteBackend::open`], for a state that must exist already (`rulehost state
    /// --clear`): a missing file is [`SqliteError::Missing`], not a new empty state.
    pub fn open_existing(path: &Path, wait: LockWait) -> Result<Self, SqliteError> {
        ensure_exists(path)?;
        Self::open(path, wait)
    }

    /// Opens an existing state to read it, without taking the lock: SQLite shows the last
    /// committed checkpoint even while a run is writing.
    pub fn open_read_only(path: &Path) -> Result<Self, SqliteError> {
        ensure_exists(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| sql(path, source))?;
        let store = SqliteBackend {
            conn,
            path: path.to_owned(),
            _lock: None,
        };
        store.check_schema()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, source: rusqlite::Error) -> SqliteError {
        sql(&self.path, source)
    }

    fn prepare(&self) -> Result<(), SqliteError> {
        // A killed run must leave the last checkpoint intact: WAL commits are atomic, and
        // `synchronous=FULL` makes each commit durable before the next alerts are written.
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| self.sql(e))?;
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| self.sql(e))?;
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| self.sql(e))?;
        self.conn.execute_batch(SCHEMA).map_err(|e| self.sql(e))?;
        self.conn
            .execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?1)",
                params![SCHEMA_VERSION],
            )
            .map_err(|e| self.sql(e))?;
        self.check_schema()
    }

    fn check_schema(&self) -> Result<(), SqliteError> {
        let found: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.sql(e))?;
        match found {
            Some(SCHEMA_VERSION) => Ok(()),
            Some(found) => Err(SqliteError::Schema {
                path: self.path.clone(),
                found,
            }),
            None => Err(SqliteError::Schema {
                path: self.path.clone(),
                found: 0,
            }),
        }
    }

    fn meta<T: rusqlite::types::FromSql>(&self, key: &str) -> Result<Option<T>, SqliteError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// The windows of `rule_ids` (index `i` becomes `WindowKey::rule == i`) and the counters.
    pub fn restore(&self, rule_ids: &[String]) -> Result<Restored, SqliteError> {
        let index: HashMap<&str, usize> = rule_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT rule_id, namespace, dedup, seq, start_ms, end_ms, threshold, first_file,
                        first_line, first_event_ms, last_event_ms, event_count, uniques,
                        alert_seq, created_ms, fields
                 FROM windows",
            )
            .map_err(|e| self.sql(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.sql(e))?;
        let mut windows = Vec::new();
        let mut other: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(row) = rows.next().map_err(|e| self.sql(e))? {
            let rule_id: String = row.get(0).map_err(|e| self.sql(e))?;
            let Some(&rule) = index.get(rule_id.as_str()) else {
                *other.entry(rule_id).or_default() += 1;
                continue;
            };
            let (window, key) = read_window(row, rule).map_err(|e| match e {
                ReadError::Sql(e) => self.sql(e),
                ReadError::Json(source) => SqliteError::Corrupt {
                    path: self.path.clone(),
                    rule: rule_id.clone(),
                    source,
                },
            })?;
            windows.push((key, window));
        }
        let counters = Counters {
            watermark: self.meta("watermark")?,
            next_seq: self.meta::<i64>("next_seq")?.unwrap_or(0) as u64,
            next_alert: self.meta::<i64>("next_alert")?.unwrap_or(0) as u64,
        };
        let held = match self.meta::<String>("held_line")? {
            Some(json) => Some(
                serde_json::from_str::<StoredHeld>(&json)
                    .map_err(|source| SqliteError::Corrupt {
                        path: self.path.clone(),
                        rule: "(held line)".to_owned(),
                        source,
                    })?
                    .into(),
            ),
            None => None,
        };
        Ok(Restored {
            state: AlertState::restore(windows, counters),
            other_rules: other.into_iter().collect(),
            held,
        })
    }

    /// What the state recorded of the source `key`: its identity then (a file's first-line
    /// digest) and the offset of its last line applied (a file's lines evaluated).
    pub fn progress(&self, key: &str) -> Result<Option<Recorded>, SqliteError> {
        self.conn
            .query_row(
                "SELECT head, lines FROM inputs WHERE path = ?1",
                [key],
                |r| {
                    Ok(Recorded {
                        identity: r.get(0)?,
                        offset: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// The sink and its committed mark, when the last run stopped before its end: anything
    /// it wrote past that mark was not committed and will be written again. The target is
    /// whatever the database says: only its sink kind may act on it, and a JSON-lines file
    /// is cut only if it is the file this run writes. (States of rulehost 0.1 name no kind:
    /// theirs is a JSON-lines file.)
    pub fn interrupted(&self) -> Result<Option<SinkTarget>, SqliteError> {
        if self.meta::<String>("run")?.as_deref() != Some("running") {
            return Ok(None);
        }
        let kind: Option<String> = self.meta("output_kind")?;
        let path: Option<String> = self.meta("output_path")?;
        let len: Option<i64> = self.meta("output_len")?;
        Ok(path.zip(len).map(|(target, mark)| SinkTarget {
            kind: kind.unwrap_or_else(|| "jsonl".to_owned()),
            target,
            mark: SinkMark(mark as u64),
        }))
    }

    /// Records that a run starts, writing alerts to `sink` (its kind, where, and its mark
    /// now) or to a stream (`None`).
    pub fn begin_run(&mut self, sink: Option<&SinkTarget>) -> Result<(), SqliteError> {
        let tx = self.conn.transaction().map_err(|e| sql(&self.path, e))?;
        set_meta(&tx, "run", "running").map_err(|e| sql(&self.path, e))?;
        match sink {
            Some(sink) => set_meta(&tx, "output_path", sink.target.as_str())
                .and_then(|()| set_meta(&tx, "output_len", sink.mark.0 as i64))
                .and_then(|()| set_meta(&tx, "output_kind", sink.kind.as_str())),
            None => tx
                .execute(
                    "DELETE FROM meta WHERE key IN ('output_path', 'output_len', 'output_kind')",
                    [],
                )
                .map(drop),
        }
        .map_err(|e| sql(&self.path, e))?;
        tx.commit().map_err(|e| sql(&self.path, e))
    }

    /// Writes the windows that changed, the counters, the sources' progress, the sink's mark
    /// and the held line, in one transaction.
    pub fn commit(&mut self, checkpoint: Checkpoint<'_>) -> Result<(), SqliteError> {
        let Checkpoint {
            windows,
            counters,
            progress,
            sink,
            held,
            finished,
        } = checkpoint;
        let path = self.path.clone();
        let err = |e| sql(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut upsert = tx
                .prepare(
                    "INSERT OR REPLACE INTO windows (rule_id, namespace, dedup, seq, start_ms,
                        end_ms, threshold, first_file, first_line, first_event_ms,
                        last_event_ms, event_count, uniques, alert_seq, created_ms, fields)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                )
                .map_err(err)?;
            let mut delete = tx
                .prepare("DELETE FROM windows WHERE rule_id = ?1 AND namespace = ?2 AND dedup = ?3")
                .map_err(err)?;
            for change in windows {
                let (rule_id, key) = (change.rule_id, change.key);
                let namespace = namespace_code(key.namespace);
                match change.window {
                    None => {
                        delete
                            .execute(params![rule_id, namespace, key.dedup])
                            .map_err(err)?;
                    }
                    Some(w) => {
                        let uniques = w.uniques.as_ref().map(|set| {
                            let mut values: Vec<&String> = set.iter().collect();
                            values.sort();
                            serde_json::to_string(&values).expect("strings serialize")
                        });
                        let fields = serde_json::to_string(&Stored::from(&w.fields))
                            .expect("alert fields serialize");
                        upsert
                            .execute(params![
                                rule_id,
                                namespace,
                                key.dedup,
                                w.seq as i64,
                                w.start_ms,
                                w.end_ms,
                                w.threshold as i64,
                                &*w.first_location.source,
                                w.first_location.offset as i64,
                                w.first_event_ms,
                                w.last_event_ms,
                                w.event_count as i64,
                                uniques,
                                w.alert_seq.map(|s| s as i64),
                                w.created_ms,
                                fields,
                            ])
                            .map_err(err)?;
                    }
                }
            }
            let mut input = tx
                .prepare("INSERT OR REPLACE INTO inputs (path, head, lines) VALUES (?1, ?2, ?3)")
                .map_err(err)?;
            for (source, offset) in progress {
                input
                    .execute(params![source.key, source.identity, offset as i64])
                    .map_err(err)?;
            }
        }
        if let Some(w) = counters.watermark {
            set_meta(&tx, "watermark", w).map_err(err)?;
        }
        set_meta(&tx, "next_seq", counters.next_seq as i64).map_err(err)?;
        set_meta(&tx, "next_alert", counters.next_alert as i64).map_err(err)?;
        set_meta(&tx, "output_len", sink.0 as i64).map_err(err)?;
        match held {
            Some(held) => set_meta(
                &tx,
                "held_line",
                serde_json::to_string(&StoredHeld::from(held)).expect("a held line serializes"),
            ),
            None => tx
                .execute("DELETE FROM meta WHERE key = 'held_line'", [])
                .map(drop),
        }
        .map_err(err)?;
        if finished {
            set_meta(&tx, "run", "finished").map_err(err)?;
        }
        tx.commit().map_err(err)?;
        if finished {
            // Fold the write-ahead log back into the database so the file alone is the state.
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(|e| self.sql(e))?;
        }
        Ok(())
    }

    /// Rules, live windows and inputs, for `rulehost state`.
    pub fn summary(&self) -> Result<StateSummary, SqliteError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT rule_id, COUNT(*), COUNT(alert_seq), MIN(start_ms), MAX(end_ms)
                 FROM windows GROUP BY rule_id ORDER BY rule_id",
            )
            .map_err(|e| self.sql(e))?;
        let rules = stmt
            .query_map([], |r| {
                Ok(RuleSummary {
                    rule_id: r.get(0)?,
                    windows: r.get::<_, i64>(1)? as u64,
                    pending_alerts: r.get::<_, i64>(2)? as u64,
                    oldest_window_ms: r.get(3)?,
                    last_end_ms: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sql(e))?;
        let (inputs, input_lines) = self
            .conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(lines), 0) FROM inputs",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.sql(e))?;
        Ok(StateSummary {
            watermark_ms: self.meta("watermark")?,
            rules,
            inputs,
            input_lines,
            interrupted: self.meta::<String>("run")?.as_deref() == Some("running"),
        })
    }

    /// Deletes every window of `rule_id`; returns how many there were.
    pub fn clear_rule(&mut self, rule_id: &str) -> Result<u64, SqliteError> {
        let n = self
            .conn
            .execute("DELETE FROM windows WHERE rule_id = ?1", [rule_id])
            .map_err(|e| self.sql(e))?;
        Ok(n as u64)
    }
}

fn ensure_exists(path: &Path) -> Result<(), SqliteError> {
    if path.exists() {
        Ok(())
    } else {
        Err(SqliteError::Missing {
            path: path.to_owned(),
        })
    }
}

fn sql(path: &Path, source: rusqlite::Error) -> SqliteError {
    SqliteError::Sql {
        path: path.to_owned(),
        source,
    }
}

fn set_meta(conn: &Connection, key: &str, value: impl rusqlite::ToSql) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        params![key, value],
    )
    .map(drop)
}

fn namespace_code(namespace: Namespace) -> i64 {
    match namespace {
        Namespace::Alert => 0,
        Namespace::Error => 1,
    }
}

enum ReadError {
    Sql(rusqlite::Error),
    Json(serde_json::Error),
}

fn read_window(
    row: &rusqlite::Row<'_>,
    rule: usize,
) -> Result<(Window<Position, WindowFields>, WindowKey), ReadError> {
    let get_i64 = |i| row.get::<_, i64>(i).map_err(ReadError::Sql);
    let namespace = match get_i64(1)? {
        0 => Namespace::Alert,
        _ => Namespace::Error,
    };
    let key = WindowKey {
        rule,
        namespace,
        dedup: row.get(2).map_err(ReadError::Sql)?,
    };
    let uniques: Option<String> = row.get(12).map_err(ReadError::Sql)?;
    let uniques = uniques
        .map(|text| serde_json::from_str::<HashSet<String, foldhash::fast::RandomState>>(&text))
        .transpose()
        .map_err(ReadError::Json)?;
    let fields: String = row.get(15).map_err(ReadError::Sql)?;
    let fields = serde_json::from_str::<Stored>(&fields)
        .and_then(Stored::into_fields)
        .map_err(ReadError::Json)?;
    let file: String = row.get(7).map_err(ReadError::Sql)?;
    let window = Window {
        start_ms: get_i64(4)?,
        end_ms: get_i64(5)?,
        threshold: get_i64(6)? as u64,
        fields,
        first_location: stored_position(&file, get_i64(8)? as u64),
        first_event_ms: get_i64(9)?,
        last_event_ms: get_i64(10)?,
        event_count: get_i64(11)? as u64,
        uniques,
        alert_seq: row
            .get::<_, Option<i64>>(13)
            .map_err(ReadError::Sql)?
            .map(|s| s as u64),
        created_ms: row.get(14).map_err(ReadError::Sql)?,
        seq: get_i64(3)? as u64,
    };
    let invalid =
        |what: &str| ReadError::Json(<serde_json::Error as serde::de::Error>::custom(what));
    if let WindowFields::Pending(opener) = &window.fields {
        if window.alerted() {
            return Err(invalid("a window that alerted has no alert fields"));
        }
        // Its fields are frozen from it when the window alerts, in a later run.
        let text = opener.event.text();
        if !matches!(parse_line(text.as_bytes()), Line::Event(_)) {
            return Err(invalid("a window's first match is not a JSON object"));
        }
    }
    Ok((window, key))
}

impl StateBackend for SqliteBackend {
    fn restore(&mut self, rule_ids: &[String]) -> Result<Restored, BackendError> {
        SqliteBackend::restore(self, rule_ids).map_err(BackendError::new)
    }

    fn progress(&self, key: &str) -> Result<Option<Recorded>, BackendError> {
        SqliteBackend::progress(self, key).map_err(BackendError::new)
    }

    fn interrupted(&self) -> Result<Option<SinkTarget>, BackendError> {
        SqliteBackend::interrupted(self).map_err(BackendError::new)
    }

    fn begin_run(&mut self, sink: Option<&SinkTarget>) -> Result<(), BackendError> {
        SqliteBackend::begin_run(self, sink).map_err(BackendError::new)
    }

    fn commit(&mut self, checkpoint: Checkpoint<'_>) -> Result<(), BackendError> {
        SqliteBackend::commit(self, checkpoint).map_err(BackendError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceKey;
    use crate::state::backend::{HeldLine, WindowChange};

    fn checkpoint<'a>(
        progress: Vec<(&'a SourceKey, u64)>,
        held: Option<&'a HeldLine>,
        finished: bool,
    ) -> Checkpoint<'a> {
        Checkpoint {
            windows: Vec::new(),
            counters: Counters::default(),
            progress,
            sink: SinkMark(42),
            held,
            finished,
        }
    }

    #[test]
    fn fields_are_stored_frozen_or_as_the_first_match() {
        let pending = WindowFields::Pending(Opener {
            event: OpenerEvent::Line(r#"{"a":1}"#.into()),
            title: Some("t".to_owned()),
        });
        let text = serde_json::to_string(&Stored::from(&pending)).unwrap();
        assert_eq!(text, r#"{"opener":"{\"a\":1}","title":"t"}"#);
        match serde_json::from_str::<Stored>(&text).unwrap().into_fields() {
            Ok(WindowFields::Pending(opener)) => {
                assert_eq!(opener.event.text(), r#"{"a":1}"#);
                assert_eq!(opener.title.as_deref(), Some("t"));
            }
            other => panic!("{other:?}"),
        }
        // Frozen fields, as every earlier version stored them.
        let frozen = r#"{"title":"t","severity":"HIGH","alert_context":{"k":1},"description":"",
            "reference":"","runbook":"","destinations":[],"suppressed":false,"error":null}"#;
        match serde_json::from_str::<Stored>(frozen)
            .unwrap()
            .into_fields()
        {
            Ok(WindowFields::Frozen(fields)) => {
                assert_eq!(
                    (fields.title.as_str(), fields.severity),
                    ("t", Severity::High)
                );
                assert_eq!(fields.alert_context, serde_json::json!({"k": 1}));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_window_kept_until_it_alerts_is_restored_with_its_first_match_or_refused() {
        let key = WindowKey {
            rule: 0,
            namespace: Namespace::Alert,
            dedup: "d".to_owned(),
        };
        let commit_and_restore = |opener: &str, alerted: bool| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            let mut state: AlertState<Position, WindowFields> = AlertState::default();
            let hit = |time_ms| crate::state::Hit {
                time_ms,
                location: Position::new("a.jsonl", 1),
                unique: None,
            };
            let fields = WindowFields::Pending(Opener {
                event: OpenerEvent::Line(opener.into()),
                title: None,
            });
            state
                .open(key.clone(), hit(0), 60_000, 2, false, fields)
                .unwrap();
            if alerted {
                // What no run writes: a window that alerted without frozen fields.
                state.add(&key, hit(1)).unwrap();
            }
            let mut backend = SqliteBackend::open(&path, LockWait::Fail).unwrap();
            backend.begin_run(None).unwrap();
            let mut checkpoint = checkpoint(Vec::new(), None, false);
            checkpoint.windows = vec![WindowChange {
                rule_id: "Rule.A",
                key: &key,
                window: state.live(&key),
            }];
            backend.commit(checkpoint).unwrap();
            drop(backend);
            SqliteBackend::open_read_only(&path)
                .unwrap()
                .restore(&["Rule.A".to_owned()])
                .map(|restored| restored.state.live(&key).map(|w| w.fields.clone()))
        };
        match commit_and_restore(r#"{"a": 1}"#, false) {
            Ok(Some(WindowFields::Pending(opener))) => {
                assert_eq!(opener.event.text(), r#"{"a": 1}"#)
            }
            other => panic!("{other:?}"),
        }
        assert!(commit_and_restore("[1]", false).is_err());
        assert!(commit_and_restore(r#"{"a": 1}"#, true).is_err());
    }

    #[test]
    fn a_checkpoint_records_positions_the_sink_and_the_held_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut backend = SqliteBackend::open(&path, LockWait::Fail).unwrap();
        let sink = SinkTarget {
            kind: "jsonl".to_owned(),
            target: "/alerts.jsonl".to_owned(),
            mark: SinkMark(10),
        };
        backend.begin_run(Some(&sink)).unwrap();
        let source = SourceKey {
            key: "/logs/a.jsonl".to_owned(),
            identity: "head".to_owned(),
        };
        let held = HeldLine {
            position: Position::new("<stdin>", 3),
            text: "{}".to_owned(),
        };
        backend
            .commit(checkpoint(vec![(&source, 7)], Some(&held), false))
            .unwrap();
        drop(backend);

        let reader = SqliteBackend::open_read_only(&path).unwrap();
        assert_eq!(
            reader.interrupted().unwrap(),
            Some(SinkTarget {
                mark: SinkMark(42),
                ..sink
            })
        );
        assert_eq!(
            reader.progress("/logs/a.jsonl").unwrap(),
            Some(Recorded {
                identity: "head".to_owned(),
                offset: 7
            })
        );
        assert_eq!(reader.restore(&[]).unwrap().held, Some(held));
    }

    #[test]
    fn a_state_of_rulehost_0_1_names_stdin_and_its_sink_as_it_did() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let backend = SqliteBackend::open(&path, LockWait::Fail).unwrap();
        // What 0.1 wrote: stdin as `-`, no sink kind.
        for (key, value) in [
            ("held_line", r#"{"file":"-","line":4,"text":"{}"}"#),
            ("run", "running"),
            ("output_path", "/alerts.jsonl"),
        ] {
            set_meta(&backend.conn, key, value).unwrap();
        }
        set_meta(&backend.conn, "output_len", 5).unwrap();
        let held = backend.restore(&[]).unwrap().held.unwrap();
        assert_eq!(held.position.to_string(), "<stdin>:4");
        assert_eq!(backend.interrupted().unwrap().unwrap().kind, "jsonl");
    }
}
