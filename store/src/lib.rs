//! The node's one SQLite database (WAL). Owns every table; other modules call these typed
//! functions and never write SQL of their own. Migrations are versioned in code through
//! `PRAGMA user_version`. One module per table family: `streams`, `meta`, `journal` (the
//! event log and the command journal), `tickets`, `auth` (users, sessions, API tokens), `detections` (objects the AI plane followed).

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
    #[error("cannot start a database thread: {0}")]
    Thread(String),
    /// The writer thread is gone (the store is being dropped).
    #[error("the database is closed")]
    Closed,
}

mod auth;
mod detections;
mod journal;
mod meta;
mod migrations;
mod streams;
#[cfg(test)]
mod tests;
mod tickets;

pub use auth::{SessionRecord, TokenRecord, UserRecord};
pub use detections::{DetectionQuery, DetectionRecord};
pub use journal::{EventFilter, StoredEvent};
pub use streams::StoredStream;
pub use tickets::{TicketCounts, TicketRecord, TicketState, WinningTicket};

use migrations::MIGRATIONS;

/// The database. Reads run on the caller's thread through a connection of their own (WAL
/// lets them proceed while a write commits); every write runs on the store's writer thread
/// ([`Store::write`]), so no async worker ever waits for a commit's fsync. The write methods
/// exist only on [`Writer`], which only that thread holds: the compiler keeps writes there.
pub struct Store {
    reader: Mutex<Connection>,
    jobs: std::sync::mpsc::Sender<Job>,
    /// Dropping it stops the checkpointer.
    _checkpointer: std::sync::mpsc::Sender<()>,
}

type Job = Box<dyn FnOnce(&mut Writer) + Send>;

/// The writing connection, held by the writer thread alone.
pub struct Writer {
    conn: Connection,
    /// A journal write left the connection at `synchronous=NORMAL`.
    relaxed: bool,
    /// Command claims since opening, to prune results now and then.
    claims: u32,
}

/// How often the checkpointer copies the WAL back into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// SQLite's `integrity_check` and `foreign_key_check` of the database at `path`, opened
/// read-only beside a running node (WAL lets both read): the problems found, none when it is
/// sound. Nothing is migrated or written.
pub fn check(path: &Path) -> Result<Vec<String>, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mut problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    problems.retain(|p| p != "ok");
    let dangling = conn
        .prepare("PRAGMA foreign_key_check")?
        .query_map([], |r| {
            Ok(format!(
                "{} row {} refers to a missing {}",
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?.unwrap_or_default(),
                r.get::<_, String>(2)?
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    problems.extend(dangling);
    Ok(problems)
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Self::init(Connection::open(path)?)?;
        let reader = Connection::open(path)?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        reader.pragma_update(None, "foreign_keys", "ON")?;
        Ok(Self {
            reader: Mutex::new(reader),
            jobs: Self::spawn_writer(Writer {
                conn,
                relaxed: false,
                claims: 0,
            })?,
            _checkpointer: Self::spawn_checkpointer(path)?,
        })
    }

    /// Runs `write` on the writer thread and returns its result. Writes run one at a time,
    /// in the order they were asked for.
    pub async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Writer) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |w| {
                let _ = tx.send(write(w));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`Store::write`] for threads outside the async runtime (the tests, the AI plane's
    /// detector threads): blocks the calling thread until the write is done. Never call it
    /// from an async task.
    pub fn write_blocking<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Writer) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs
            .send(Box::new(move |w| {
                let _ = tx.send(write(w));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    fn spawn_writer(mut writer: Writer) -> Result<std::sync::mpsc::Sender<Job>, StoreError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                // Ends when the store (every sender) is dropped.
                while let Ok(job) = queue.recv() {
                    job(&mut writer);
                }
            })
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        Ok(jobs)
    }

    /// The reading connection.
    fn read(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.reader.lock().map_err(|_| StoreError::Poisoned)
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
            .map_err(|e| StoreError::Thread(e.to_string()))?;
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
}

impl Writer {
    /// The connection at `synchronous=FULL`, whatever the last journal write left.
    fn conn(&mut self) -> Result<&mut Connection, StoreError> {
        if self.relaxed {
            self.conn
                .prepare_cached("PRAGMA synchronous = FULL")?
                .execute([])?;
            self.relaxed = false;
        }
        Ok(&mut self.conn)
    }

    /// Runs a write to the node's journal (the event log and fleet-command bookkeeping) with
    /// `synchronous=NORMAL`: the commit reaches the WAL without an fsync, so it survives a
    /// crash of the process but not of the machine until the next checkpoint or the next
    /// `FULL` commit, which syncs the WAL with everything before it. Money, users and
    /// configuration never go through here.
    ///
    /// The connection stays at `NORMAL` after a journal write and is set back to `FULL` by
    /// [`Writer::conn`], the only other way to it, so back-to-back journal writes (a
    /// command's claim and result, event batches) switch nothing.
    fn journal<T>(
        &mut self,
        write: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        if !self.relaxed {
            self.conn
                .prepare_cached("PRAGMA synchronous = NORMAL")?
                .execute([])?;
            self.relaxed = true;
        }
        Ok(write(&self.conn)?)
    }
}
