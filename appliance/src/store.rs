//! The node's one SQLite database (WAL). Owns every table; other modules call these typed
//! functions and never write SQL of their own. Migrations are versioned in code through
//! `PRAGMA user_version`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::events::NodeEvent;
use crate::media::spec::StreamSpec;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored stream {id} is unreadable: {message}")]
    Corrupt { id: String, message: String },
    #[error("database lock poisoned")]
    Poisoned,
}

/// Each entry moves the schema one version forward; never edit a released entry.
const MIGRATIONS: &[&str] = &[
    // 1: streams, events, key/value metadata
    "CREATE TABLE streams (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
     );
     CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ms INTEGER NOT NULL,
        stream_id TEXT,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
     );
     CREATE INDEX events_ts ON events(ts_ms);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
];

/// Events kept in the database; older ones are pruned.
const EVENTS_KEPT: i64 = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct StoredStream {
    pub id: String,
    pub spec: StreamSpec,
    pub created_ms: u64,
    pub updated_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    pub ts_ms: u64,
    pub stream_id: Option<String>,
    pub kind: String,
    pub message: String,
}

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Durability before acknowledgement: a committed change survives power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            conn.execute_batch(&format!(
                "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// All streams in creation order. A row that does not parse is reported in the second
    /// value and skipped, so one damaged row never hides the others.
    pub fn list_streams(&self) -> Result<(Vec<StoredStream>, Vec<StoreError>), StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id, spec, created_ms, updated_ms FROM streams ORDER BY created_ms, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for row in rows {
            let (id, spec, c, u) = row?;
            match serde_json::from_str::<StreamSpec>(&spec) {
                Ok(spec) => ok.push(StoredStream {
                    id,
                    spec,
                    created_ms: c as u64,
                    updated_ms: u as u64,
                }),
                Err(e) => bad.push(StoreError::Corrupt {
                    id,
                    message: e.to_string(),
                }),
            }
        }
        Ok((ok, bad))
    }

    pub fn get_stream(&self, id: &str) -> Result<Option<StoredStream>, StoreError> {
        let conn = self.conn()?;
        let row = conn
            .query_row(
                "SELECT spec, created_ms, updated_ms FROM streams WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()?;
        let Some((spec, c, u)) = row else {
            return Ok(None);
        };
        let spec = serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
            id: id.to_string(),
            message: e.to_string(),
        })?;
        Ok(Some(StoredStream {
            id: id.to_string(),
            spec,
            created_ms: c as u64,
            updated_ms: u as u64,
        }))
    }

    pub fn insert_stream(
        &self,
        id: &str,
        spec: &StreamSpec,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(spec).map_err(|e| StoreError::Corrupt {
            id: id.to_string(),
            message: e.to_string(),
        })?;
        self.conn()?.execute(
            "INSERT INTO streams (id, spec, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)",
            params![id, json, now_ms as i64],
        )?;
        Ok(())
    }

    /// Replaces a stream's spec; false when there is no such stream.
    pub fn update_stream(
        &self,
        id: &str,
        spec: &StreamSpec,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(spec).map_err(|e| StoreError::Corrupt {
            id: id.to_string(),
            message: e.to_string(),
        })?;
        let n = self.conn()?.execute(
            "UPDATE streams SET spec = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, json, now_ms as i64],
        )?;
        Ok(n == 1)
    }

    pub fn delete_stream(&self, id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute("DELETE FROM streams WHERE id = ?1", params![id])?;
        Ok(n == 1)
    }

    pub fn insert_event(&self, e: &NodeEvent) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO events (ts_ms, stream_id, kind, message) VALUES (?1, ?2, ?3, ?4)",
            params![e.ts_ms as i64, e.stream_id, e.kind.as_str(), e.message],
        )?;
        let id = conn.last_insert_rowid();
        if id % 500 == 0 {
            conn.execute(
                "DELETE FROM events WHERE id <= ?1",
                params![id - EVENTS_KEPT],
            )?;
        }
        Ok(())
    }

    /// The newest events, newest first.
    pub fn recent_events(
        &self,
        stream_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id, ts_ms, stream_id, kind, message FROM events
             WHERE ?1 IS NULL OR stream_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![stream_id, limit], |r| {
            Ok(StoredEvent {
                id: r.get(0)?,
                ts_ms: r.get::<_, i64>(1)? as u64,
                stream_id: r.get(2)?,
                kind: r.get(3)?,
                message: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()?
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::spec::{SourceSpec, default_ladder};

    fn spec(name: &str) -> StreamSpec {
        StreamSpec {
            name: name.into(),
            source: SourceSpec::Rtmp {
                stream_key: "abcdefgh1234".into(),
            },
            ladder: default_ladder(),
            encoder: None,
            enabled: true,
        }
    }

    #[test]
    fn streams_survive_reopen_and_bad_rows_are_isolated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.db");
        {
            let s = Store::open(&path).expect("open");
            s.insert_stream("a", &spec("one"), 1).expect("insert");
            s.insert_stream("b", &spec("two"), 2).expect("insert");
            assert!(s.update_stream("a", &spec("uno"), 3).expect("update"));
            assert!(!s.update_stream("zz", &spec("x"), 3).expect("update"));
            s.set_meta("k", "v").expect("meta");
        }
        {
            let conn = Connection::open(&path).expect("raw open");
            conn.execute("UPDATE streams SET spec = '{broken' WHERE id = 'b'", [])
                .expect("corrupt a row");
        }
        let s = Store::open(&path).expect("reopen");
        let (ok, bad) = s.list_streams().expect("list");
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].spec.name, "uno");
        assert_eq!(bad.len(), 1);
        assert_eq!(s.get_meta("k").expect("meta").as_deref(), Some("v"));
        assert!(s.delete_stream("a").expect("delete"));
        assert!(s.get_stream("a").expect("get").is_none());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.db");
        std::fs::write(
            &path,
            b"this is not sqlite at all, just some text padding it out....",
        )
        .expect("write");
        assert!(Store::open(&path).is_err());
    }
}
