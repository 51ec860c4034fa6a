//! The node's one SQLite database (WAL). Owns every table; other modules call these typed
//! functions and never write SQL of their own. Migrations are versioned in code through
//! `PRAGMA user_version`. One module per table family: `streams`, `meta`, `journal` (the
//! event log and the command journal), `tickets`, `auth` (users, sessions, API tokens).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use lpe_core::spec::StreamSpec;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored stream {id} is unreadable: {message}")]
    Corrupt { id: String, message: String },
    #[error("database lock poisoned")]
    Poisoned,
    #[error("cannot start the WAL checkpointer: {0}")]
    Checkpointer(String),
}

mod auth;
mod journal;
mod meta;
mod migrations;
mod streams;
#[cfg(test)]
mod tests;
mod tickets;

pub use auth::{SessionRecord, TokenRecord, UserRecord};
pub use journal::StoredEvent;
pub use streams::StoredStream;
pub use tickets::{TicketCounts, TicketRecord, TicketState, WinningTicket};

use migrations::MIGRATIONS;

pub struct Store {
    conn: Mutex<Writer>,
    /// Command claims since opening, to prune results now and then.
    claims: std::sync::atomic::AtomicU32,
    /// Dropping it stops the checkpointer.
    _checkpointer: std::sync::mpsc::Sender<()>,
}

/// The writing connection, and whether a journal write left it at `synchronous=NORMAL`.
struct Writer {
    conn: Connection,
    relaxed: bool,
}

impl std::ops::Deref for Writer {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// How often the checkpointer copies the WAL back into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Self::init(Connection::open(path)?)?;
        Ok(Self {
            conn: Mutex::new(Writer {
                conn,
                relaxed: false,
            }),
            claims: Default::default(),
            _checkpointer: Self::spawn_checkpointer(path)?,
        })
    }

    /// Checkpoints the WAL from a thread of its own, so no write waits for one: SQLite's
    /// automatic checkpoint would run inside whichever commit crosses the threshold and
    /// hold the connection for milliseconds of fsync. A passive checkpoint never blocks
    /// writers; the thread ends when the store is dropped.
    fn spawn_checkpointer(path: &Path) -> Result<std::sync::mpsc::Sender<()>, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(1))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!("WAL checkpoint failed: {e}");
                    }
                }
            })
            .map_err(|e| StoreError::Checkpointer(e.to_string()))?;
        Ok(stop)
    }

    fn init(conn: Connection) -> Result<Connection, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Durability before acknowledgement: a committed change survives power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Checkpoints happen off the write path (`spawn_checkpointer`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            conn.execute_batch(&format!(
                "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))?;
        }
        Ok(conn)
    }

    /// The connection at `synchronous=FULL`, whatever the last journal write left.
    fn conn(&self) -> Result<MutexGuard<'_, Writer>, StoreError> {
        let mut w = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        if w.relaxed {
            w.conn
                .prepare_cached("PRAGMA synchronous = FULL")?
                .execute([])?;
            w.relaxed = false;
        }
        Ok(w)
    }

    /// Runs a write to the node's journal (the event log and fleet-command bookkeeping) with
    /// `synchronous=NORMAL`: the commit reaches the WAL without an fsync, so it survives a
    /// crash of the process but not of the machine until the next checkpoint or the next
    /// `FULL` commit, which syncs the WAL with everything before it. Money, users and
    /// configuration never go through here.
    ///
    /// The connection stays at `NORMAL` after a journal write and is set back to `FULL` by
    /// [`Store::conn`], the only other way to it, so back-to-back journal writes (a command's
    /// claim and result, event batches) switch nothing.
    fn journal<T>(
        &self,
        write: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut w = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        if !w.relaxed {
            w.conn
                .prepare_cached("PRAGMA synchronous = NORMAL")?
                .execute([])?;
            w.relaxed = true;
        }
        Ok(write(&w.conn)?)
    }
}
