//! The node's one SQLite database (WAL). Owns every table; other modules call these typed
//! functions and never write SQL of their own. Migrations are versioned in code through
//! `PRAGMA user_version`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use lpe_core::events::NodeEvent;
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
    // 2: winning tickets and their redemption
    "CREATE TABLE winning_tickets (
        ticket_hash TEXT PRIMARY KEY,
        recipient TEXT NOT NULL,
        sender TEXT NOT NULL,
        face_value TEXT NOT NULL,
        win_prob TEXT NOT NULL,
        sender_nonce INTEGER NOT NULL,
        recipient_rand_hash TEXT NOT NULL,
        creation_round INTEGER NOT NULL,
        creation_round_block_hash TEXT NOT NULL,
        sig BLOB NOT NULL,
        recipient_rand TEXT NOT NULL,
        params_expiration_block TEXT NOT NULL,
        state TEXT NOT NULL,
        tx_hash TEXT,
        amount TEXT,
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
     );
     CREATE INDEX winning_tickets_state ON winning_tickets(state);
     CREATE TABLE ticket_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // 3: the block a redemption was sent at, where crash recovery looks for its transaction
    "ALTER TABLE winning_tickets ADD COLUMN submitted_block INTEGER;",
    // 4: operators, their sessions and API tokens (secrets stored only as hashes), and the
    // results of fleet commands by request id
    "CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created_ms INTEGER NOT NULL
     );
     CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
     );
     CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        last_used_ms INTEGER
     );
     CREATE TABLE command_results (
        request_id TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        result TEXT NOT NULL,
        created_ms INTEGER NOT NULL
     );
     CREATE INDEX command_results_created ON command_results(created_ms);",
    // 5: fleet-command results in one b-tree keyed by request id: a claim and a result are
    // each one page write on the command path (pruning scans, off that path)
    "CREATE TABLE command_results_by_id (
        request_id TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        result TEXT NOT NULL,
        created_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO command_results_by_id SELECT request_id, command, result, created_ms
        FROM command_results;
     DROP TABLE command_results;
     ALTER TABLE command_results_by_id RENAME TO command_results;",
    // 6: API tokens belong to a user and die with it; tokens made before owners existed go
    // to the first admin
    "ALTER TABLE api_tokens ADD COLUMN owner TEXT REFERENCES users(name) ON DELETE CASCADE;
     UPDATE api_tokens SET owner =
        (SELECT name FROM users WHERE role = 'admin' ORDER BY created_ms, name LIMIT 1);",
    // 7: a ticket that must wait (a transient revert, gas, an inactive recipient) is not
    // looked at again before its next attempt
    "ALTER TABLE winning_tickets ADD COLUMN next_attempt_ms INTEGER NOT NULL DEFAULT 0;",
];

/// Events kept in the database; older ones are pruned.
const EVENTS_KEPT: i64 = 10_000;
/// Fleet-command results kept for deduplication by request id; older ones are pruned.
const COMMANDS_KEPT: i64 = 10_000;
/// Command results are pruned on the first claim after opening and every this many after.
const PRUNE_COMMANDS_EVERY: u32 = 1000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredStream {
    pub id: String,
    pub spec: StreamSpec,
    pub created_ms: u64,
    pub updated_ms: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub id: i64,
    pub ts_ms: u64,
    pub stream_id: Option<String>,
    pub kind: String,
    pub message: String,
}

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

    /// Appends events to the log in one transaction (journal durability, see
    /// [`Store::journal`]).
    pub fn insert_events(&self, events: &[NodeEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.journal(|conn| {
            let tx = conn.unchecked_transaction()?;
            let (mut last, mut prune) = (0, false);
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO events (ts_ms, stream_id, kind, message) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for e in events {
                    insert.execute(params![
                        e.ts_ms as i64,
                        e.stream_id,
                        e.kind.as_str(),
                        e.message
                    ])?;
                    last = tx.last_insert_rowid();
                    // Pruning when an id reaches a multiple of 500 keeps it off most writes.
                    prune |= last % 500 == 0;
                }
            }
            if prune {
                tx.execute(
                    "DELETE FROM events WHERE id <= ?1",
                    params![last - EVENTS_KEPT],
                )?;
            }
            tx.commit()
        })
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

    pub fn delete_meta(&self, key: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM meta WHERE key = ?1", params![key])?;
        Ok(())
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

/// Where a winning ticket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    /// Recorded; waiting for its params to expire, then for redemption.
    Pending,
    /// A redemption transaction was sent (recorded before sending, so a crash is noticed).
    Submitted,
    Redeemed,
    /// Refused for good by the contract (used, not a winner, a bad signature).
    Failed,
    /// Past its validity period: the contract will never accept it.
    Expired,
}

impl TicketState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Submitted => "submitted",
            Self::Redeemed => "redeemed",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "submitted" => Self::Submitted,
            "redeemed" => Self::Redeemed,
            "failed" => Self::Failed,
            "expired" => Self::Expired,
            _ => Self::Pending,
        }
    }
}

/// A winning ticket with everything needed to redeem it.
#[derive(Debug, Clone, PartialEq)]
pub struct WinningTicket {
    pub ticket: lpe_pm::ticket::Ticket,
    pub sig: Vec<u8>,
    pub recipient_rand: lpe_pm::U256,
    pub params_expiration_block: lpe_pm::U256,
}

/// A stored winning ticket and its redemption state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TicketRecord {
    pub ticket_hash: String,
    pub sender: String,
    pub face_value: String,
    pub sender_nonce: u32,
    pub state: TicketState,
    pub tx_hash: Option<String>,
    pub amount: Option<String>,
    pub reason: Option<String>,
    pub attempts: u32,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The chain's block when the redemption was last sent.
    pub submitted_block: Option<u64>,
    #[serde(skip)]
    pub winning: Option<WinningTicket>,
}

/// Ticket counters for the UI and telemetry.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TicketCounts {
    pub received: u64,
    pub won: u64,
    pub redeemed: u64,
    pub failed: u64,
    pub expired: u64,
    pub pending: u64,
    /// Wei the broker transferred for redeemed tickets (decimal): what arrived, which can
    /// be less than their face value.
    pub earned: String,
}

fn u256(s: &str) -> lpe_pm::U256 {
    s.parse().unwrap_or_default()
}

impl Store {
    /// Records winning tickets and adds to the received counter in one transaction, durable
    /// (`synchronous=FULL`) when this returns. Recording a ticket twice is harmless.
    pub fn record_tickets(
        &self,
        received: u64,
        wins: &[WinningTicket],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let mut inserted = 0u64;
        for w in wins {
            let t = &w.ticket;
            inserted += tx.execute(
                "INSERT OR IGNORE INTO winning_tickets (ticket_hash, recipient, sender, face_value,
                   win_prob, sender_nonce, recipient_rand_hash, creation_round,
                   creation_round_block_hash, sig, recipient_rand, params_expiration_block,
                   state, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'pending', ?13, ?13)",
                params![
                    format!("{:#x}", t.hash()),
                    t.recipient.to_string(),
                    t.sender.to_string(),
                    t.face_value.to_string(),
                    t.win_prob.to_string(),
                    t.sender_nonce,
                    format!("{:#x}", t.recipient_rand_hash),
                    t.expiration.creation_round,
                    format!("{:#x}", t.expiration.creation_round_block_hash),
                    w.sig,
                    w.recipient_rand.to_string(),
                    w.params_expiration_block.to_string(),
                    now_ms as i64,
                ],
            )? as u64;
        }
        for (name, n) in [("received", received), ("won", inserted)] {
            tx.execute(
                "INSERT INTO ticket_counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                params![name, n as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn ticket_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TicketRecord> {
        let hash: String = r.get(0)?;
        let recipient: String = r.get(1)?;
        let sender: String = r.get(2)?;
        let face_value: String = r.get(3)?;
        let win_prob: String = r.get(4)?;
        let nonce: i64 = r.get(5)?;
        let rrh: String = r.get(6)?;
        let round: i64 = r.get(7)?;
        let block_hash: String = r.get(8)?;
        let sig: Vec<u8> = r.get(9)?;
        let rand: String = r.get(10)?;
        let exp: String = r.get(11)?;
        let winning = (|| {
            Some(WinningTicket {
                ticket: lpe_pm::ticket::Ticket {
                    recipient: recipient.parse().ok()?,
                    sender: sender.parse().ok()?,
                    face_value: u256(&face_value),
                    win_prob: u256(&win_prob),
                    sender_nonce: u32::try_from(nonce).ok()?,
                    recipient_rand_hash: rrh.parse().ok()?,
                    expiration: lpe_pm::ticket::ExpirationParams {
                        creation_round: round,
                        creation_round_block_hash: block_hash.parse().ok()?,
                    },
                },
                sig,
                recipient_rand: u256(&rand),
                params_expiration_block: u256(&exp),
            })
        })();
        Ok(TicketRecord {
            ticket_hash: hash,
            sender,
            face_value,
            sender_nonce: u32::try_from(nonce).unwrap_or(0),
            state: TicketState::parse(&r.get::<_, String>(12)?),
            tx_hash: r.get(13)?,
            amount: r.get(14)?,
            reason: r.get(15)?,
            attempts: u32::try_from(r.get::<_, i64>(16)?).unwrap_or(0),
            created_ms: r.get::<_, i64>(17)? as u64,
            updated_ms: r.get::<_, i64>(18)? as u64,
            submitted_block: r
                .get::<_, Option<i64>>(19)?
                .and_then(|b| u64::try_from(b).ok()),
            winning,
        })
    }

    const TICKET_COLUMNS: &'static str = "ticket_hash, recipient, sender, face_value, win_prob,
        sender_nonce, recipient_rand_hash, creation_round, creation_round_block_hash, sig,
        recipient_rand, params_expiration_block, state, tx_hash, amount, reason, attempts,
        created_ms, updated_ms, submitted_block";

    /// Tickets still to redeem (pending or submitted), oldest first.
    /// Tickets not yet redeemed whose next attempt is due at `now_ms`.
    pub fn unredeemed_tickets(&self, now_ms: u64) -> Result<Vec<TicketRecord>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {} FROM winning_tickets WHERE state IN ('pending', 'submitted')
               AND next_attempt_ms <= ?1
             ORDER BY created_ms, ticket_hash",
            Self::TICKET_COLUMNS
        ))?;
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![now], Self::ticket_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest tickets (the redemption queue as the UI shows it).
    pub fn recent_tickets(&self, limit: u32) -> Result<Vec<TicketRecord>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {} FROM winning_tickets ORDER BY created_ms DESC, ticket_hash LIMIT ?1",
            Self::TICKET_COLUMNS
        ))?;
        let rows = stmt.query_map(params![limit], Self::ticket_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_ticket_state(
        &self,
        ticket_hash: &str,
        state: TicketState,
        tx_hash: Option<&str>,
        amount: Option<&str>,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE winning_tickets SET state = ?2, tx_hash = COALESCE(?3, tx_hash),
               amount = COALESCE(?4, amount), reason = ?5, updated_ms = ?6,
               attempts = attempts + (CASE WHEN ?2 = 'submitted' THEN 1 ELSE 0 END)
             WHERE ticket_hash = ?1",
            params![
                ticket_hash,
                state.as_str(),
                tx_hash,
                amount,
                reason,
                now_ms as i64
            ],
        )?;
        Ok(())
    }

    /// Records that a redemption is about to be sent at chain block `block`.
    /// Leaves a ticket pending with the reason it waits, not to be looked at before
    /// `next_attempt_ms`.
    pub fn defer_ticket(
        &self,
        ticket_hash: &str,
        reason: &str,
        now_ms: u64,
        next_attempt_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE winning_tickets SET state = 'pending', reason = ?2, updated_ms = ?3,
               next_attempt_ms = ?4
             WHERE ticket_hash = ?1",
            params![ticket_hash, reason, now_ms as i64, next_attempt_ms as i64],
        )?;
        Ok(())
    }

    pub fn mark_submitted(
        &self,
        ticket_hash: &str,
        block: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE winning_tickets SET state = 'submitted', reason = NULL, updated_ms = ?2,
               attempts = attempts + 1, submitted_block = ?3
             WHERE ticket_hash = ?1",
            params![ticket_hash, now_ms as i64, block as i64],
        )?;
        Ok(())
    }

    pub fn ticket_counts(&self) -> Result<TicketCounts, StoreError> {
        let conn = self.conn()?;
        let counter = |name: &str| -> Result<u64, StoreError> {
            Ok(conn
                .query_row(
                    "SELECT value FROM ticket_counters WHERE name = ?1",
                    params![name],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
                .unwrap_or(0) as u64)
        };
        let state = |s: &str| -> Result<u64, StoreError> {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM winning_tickets WHERE state = ?1",
                params![s],
                |r| r.get::<_, i64>(0),
            )? as u64)
        };
        let mut earned = lpe_pm::U256::ZERO;
        let mut st = conn.prepare("SELECT amount FROM winning_tickets WHERE state = 'redeemed'")?;
        for amount in st.query_map([], |r| r.get::<_, Option<String>>(0))? {
            earned = earned.saturating_add(u256(&amount?.unwrap_or_default()));
        }
        Ok(TicketCounts {
            earned: earned.to_string(),
            received: counter("received")?,
            won: counter("won")?,
            redeemed: state("redeemed")?,
            failed: state("failed")?,
            expired: state("expired")?,
            pending: state("pending")? + state("submitted")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lpe_core::spec::{SourceSpec, default_ladder};

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

    fn event(i: u64) -> NodeEvent {
        NodeEvent {
            ts_ms: i,
            stream_id: None,
            kind: lpe_core::events::EventKind::SettingsChanged,
            message: format!("event {i}"),
        }
    }

    #[test]
    fn journal_writes_leave_full_durability_for_everything_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("node.db")).expect("store");
        let synchronous = |s: &Store| -> i64 {
            s.conn()
                .expect("conn")
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .expect("pragma")
        };
        let left_by_journal = |s: &Store| -> i64 {
            s.conn
                .lock()
                .expect("lock")
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .expect("pragma")
        };
        assert_eq!(synchronous(&s), 2, "FULL");
        let batch: Vec<NodeEvent> = (1..=1200).map(event).collect();
        s.insert_events(&batch).expect("events");
        assert!(s.claim_command("r1", "log_level", "{}", 1).expect("claim"));
        s.set_command_result("r1", "{}").expect("result");
        assert_eq!(left_by_journal(&s), 1, "journal writes run at NORMAL");
        assert_eq!(synchronous(&s), 2, "FULL again for everything else");
        // A failing journal write leaves nothing relaxed for others either.
        let failed = s.journal(|c| c.execute("INSERT INTO no_such_table VALUES (1)", []));
        assert!(failed.is_err());
        assert_eq!(synchronous(&s), 2);
        // A durable write after journal writes commits at FULL.
        s.journal(|c| c.execute("DELETE FROM meta WHERE key = 'none'", []))
            .expect("journal");
        s.set_meta("k", "v").expect("meta");
        assert_eq!(left_by_journal(&s), 2);
        // One batch, in order.
        let newest = s.recent_events(None, 2).expect("recent");
        assert_eq!(newest[0].message, "event 1200");
        assert_eq!(newest[1].message, "event 1199");
    }

    #[test]
    fn the_checkpointer_copies_the_wal_into_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.db");
        let s = Store::open(&path).expect("store");
        let before = std::fs::metadata(&path).expect("db").len();
        let batch: Vec<NodeEvent> = (1..=2000).map(event).collect();
        s.insert_events(&batch).expect("events");
        // The writer never checkpoints itself; the checkpointer thread does, within a period.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::metadata(&path).expect("db").len() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint within 5 s"
            );
            std::thread::sleep(CHECKPOINT_EVERY / 5);
        }
        drop(s);
        let reopened = Store::open(&path).expect("reopen");
        assert_eq!(reopened.recent_events(None, 1).expect("recent").len(), 1);
    }

    #[test]
    fn commands_are_claimed_once_and_unfinished_ones_fail_at_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("node.db")).expect("store");
        assert!(
            s.claim_command("r1", "x", r#"{"state":"accepted"}"#, 1)
                .expect("claim")
        );
        assert!(
            !s.claim_command("r1", "x", r#"{"state":"accepted"}"#, 2)
                .expect("again")
        );
        assert!(
            s.claim_command("r2", "x", r#"{"state":"accepted"}"#, 3)
                .expect("claim")
        );
        s.set_command_result("r2", r#"{"state":"succeeded"}"#)
            .expect("finish");
        assert_eq!(s.fail_unfinished_commands("cut short").expect("fail"), 1);
        let r1: serde_json::Value =
            serde_json::from_str(&s.command_result("r1").expect("get").expect("r1")).expect("json");
        assert_eq!(r1["state"], "failed");
        assert_eq!(r1["reason"], "cut short");
        let r2 = s.command_result("r2").expect("get").expect("r2");
        assert!(r2.contains("succeeded"));
    }

    #[test]
    fn command_results_are_pruned_to_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.db");
        let total = COMMANDS_KEPT + i64::from(PRUNE_COMMANDS_EVERY) + 5;
        {
            // Fill below the claim path (one transaction), as years of commands would.
            let s = Store::open(&path).expect("store");
            let mut conn = s.conn().expect("conn");
            let tx = conn.transaction().expect("tx");
            for i in 0..total {
                tx.execute(
                    "INSERT INTO command_results VALUES (?1, 'x', '{}', ?2)",
                    params![format!("old-{i}"), i],
                )
                .expect("insert");
            }
            tx.commit().expect("commit");
        }
        let count = |s: &Store| -> i64 {
            s.conn()
                .expect("conn")
                .query_row("SELECT count(*) FROM command_results", [], |r| r.get(0))
                .expect("count")
        };
        // The first claim after opening prunes; the following ones do not, until the next
        // period.
        let s = Store::open(&path).expect("reopen");
        assert!(
            s.claim_command("new-0", "x", "{}", total as u64)
                .expect("claim")
        );
        assert_eq!(count(&s), COMMANDS_KEPT + 1);
        assert!(s.command_result("old-0").expect("get").is_none());
        let newest_old = format!("old-{}", total - 1);
        assert!(s.command_result(&newest_old).expect("get").is_some());
        for i in 1..PRUNE_COMMANDS_EVERY {
            let id = format!("new-{i}");
            assert!(
                s.claim_command(&id, "x", "{}", (total + i64::from(i)) as u64)
                    .expect("claim")
            );
        }
        assert_eq!(count(&s), COMMANDS_KEPT + i64::from(PRUNE_COMMANDS_EVERY));
        // A repeat is not a claim and does not count.
        assert!(!s.claim_command("new-1", "x", "{}", 0).expect("repeat"));
        assert!(
            s.claim_command("last", "x", "{}", u64::MAX >> 1)
                .expect("claim")
        );
        assert_eq!(count(&s), COMMANDS_KEPT + 1);
        let oldest_kept_before = format!("old-{}", total - COMMANDS_KEPT);
        assert!(
            s.command_result(&oldest_kept_before)
                .expect("get")
                .is_none()
        );
        assert!(s.command_result("new-0").expect("get").is_some());
        assert!(s.command_result("last").expect("get").is_some());
    }

    #[test]
    fn command_results_survive_the_move_to_one_btree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.db");
        {
            // A database at schema 4, with a command result in it.
            let conn = Connection::open(&path).expect("open");
            for (i, sql) in MIGRATIONS.iter().take(4).enumerate() {
                conn.execute_batch(&format!(
                    "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
                    i + 1
                ))
                .expect("migrate");
            }
            conn.execute(
                "INSERT INTO command_results VALUES ('r1', 'log_level', '{\"state\":\"succeeded\"}', 7)",
                [],
            )
            .expect("insert");
        }
        let s = Store::open(&path).expect("open at the current schema");
        assert_eq!(
            s.command_result("r1").expect("get").as_deref(),
            Some(r#"{"state":"succeeded"}"#)
        );
        assert!(!s.claim_command("r1", "log_level", "{}", 8).expect("repeat"));
        let without_rowid: String = s
            .conn()
            .expect("conn")
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'command_results'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert!(without_rowid.contains("WITHOUT ROWID"), "{without_rowid}");
    }

    #[test]
    fn winning_tickets_are_recorded_once_and_move_through_states() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.db");
        let w = WinningTicket {
            ticket: lpe_pm::ticket::Ticket {
                recipient: lpe_pm::Address::repeat_byte(1),
                sender: lpe_pm::Address::repeat_byte(2),
                face_value: lpe_pm::U256::from(10u64).pow(lpe_pm::U256::from(20u8)),
                win_prob: lpe_pm::U256::MAX,
                sender_nonce: 7,
                recipient_rand_hash: lpe_pm::B256::repeat_byte(3),
                expiration: lpe_pm::ticket::ExpirationParams {
                    creation_round: 9,
                    creation_round_block_hash: lpe_pm::B256::repeat_byte(4),
                },
            },
            sig: vec![5; 65],
            recipient_rand: lpe_pm::U256::from(99u8),
            params_expiration_block: lpe_pm::U256::from(140u8),
        };
        {
            let s = Store::open(&path).expect("open");
            s.record_tickets(5, std::slice::from_ref(&w), 1)
                .expect("record");
            s.record_tickets(1, std::slice::from_ref(&w), 2)
                .expect("record again");
        }
        let s = Store::open(&path).expect("reopen");
        let pending = s.unredeemed_tickets(u64::MAX).expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].winning.as_ref(), Some(&w));
        let hash = pending[0].ticket_hash.clone();
        s.set_ticket_state(&hash, TicketState::Submitted, None, None, None, 3)
            .expect("state");
        s.set_ticket_state(
            &hash,
            TicketState::Redeemed,
            Some("0xabc"),
            Some("100"),
            None,
            4,
        )
        .expect("state");
        assert!(s.unredeemed_tickets(u64::MAX).expect("pending").is_empty());
        let counts = s.ticket_counts().expect("counts");
        assert_eq!(
            counts,
            TicketCounts {
                received: 6,
                won: 1,
                redeemed: 1,
                failed: 0,
                expired: 0,
                pending: 0,
                earned: "100".into(),
            }
        );
        let recent = s.recent_tickets(10).expect("recent");
        assert_eq!(recent[0].tx_hash.as_deref(), Some("0xabc"));
        assert_eq!(recent[0].attempts, 1);
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

/// An operator account. The hash is argon2id in PHC form.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub name: String,
    pub password_hash: String,
    pub role: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user: String,
    pub role: String,
    pub csrf: String,
    pub expires_ms: u64,
}

/// An API token as listed: never the token itself, which exists only in the creator's hands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_ms: u64,
    pub last_used_ms: Option<u64>,
    /// The user the token acts for; it stops working when that user is removed.
    pub owner: String,
}

impl Store {
    pub fn user_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn()?
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))?
            .max(0) as u64)
    }

    pub fn admin_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn()?
            .query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| {
                r.get::<_, i64>(0)
            })?
            .max(0) as u64)
    }

    pub fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT name, password_hash, role, created_ms FROM users WHERE name = ?1",
                params![name],
                user_row,
            )
            .optional()?)
    }

    pub fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.conn()?;
        let mut st = conn.prepare(
            "SELECT name, password_hash, role, created_ms FROM users ORDER BY created_ms, name",
        )?;
        let rows = st.query_map([], user_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Inserts a user; `false` when the name is taken.
    pub fn insert_user(&self, u: &UserRecord) -> Result<bool, StoreError> {
        let n = self.conn()?.execute(
            "INSERT OR IGNORE INTO users (name, password_hash, role, created_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![u.name, u.password_hash, u.role, u.created_ms as i64],
        )?;
        Ok(n == 1)
    }

    /// Sets a password and ends the user's sessions; with `revoke_tokens`, their API tokens
    /// too.
    pub fn set_password(
        &self,
        name: &str,
        hash: &str,
        revoke_tokens: bool,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE users SET password_hash = ?2 WHERE name = ?1",
            params![name, hash],
        )?;
        tx.execute("DELETE FROM sessions WHERE user = ?1", params![name])?;
        if revoke_tokens {
            tx.execute("DELETE FROM api_tokens WHERE owner = ?1", params![name])?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    pub fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute("DELETE FROM users WHERE name = ?1", params![name])?;
        Ok(n == 1)
    }

    pub fn insert_session(
        &self,
        id_hash: &str,
        user: &str,
        csrf: &str,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.execute(
            "DELETE FROM sessions WHERE expires_ms < ?1",
            params![now_ms as i64],
        )?;
        conn.execute(
            "INSERT INTO sessions (id_hash, user, csrf, created_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id_hash, user, csrf, now_ms as i64, expires_ms as i64],
        )?;
        Ok(())
    }

    /// The live session with this id hash, with its user's current role.
    pub fn get_session(
        &self,
        id_hash: &str,
        now_ms: u64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT s.user, u.role, s.csrf, s.expires_ms FROM sessions s
                 JOIN users u ON u.name = s.user
                 WHERE s.id_hash = ?1 AND s.expires_ms >= ?2",
                params![id_hash, now_ms as i64],
                |r| {
                    Ok(SessionRecord {
                        user: r.get(0)?,
                        role: r.get(1)?,
                        csrf: r.get(2)?,
                        expires_ms: r.get::<_, i64>(3)? as u64,
                    })
                },
            )
            .optional()?)
    }

    pub fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM sessions WHERE id_hash = ?1", params![id_hash])?;
        Ok(())
    }

    pub fn insert_token(&self, t: &TokenRecord, token_hash: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO api_tokens (id, name, role, token_hash, created_ms, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                t.id,
                t.name,
                t.role,
                token_hash,
                t.created_ms as i64,
                t.owner
            ],
        )?;
        Ok(())
    }

    /// The token with this hash, marking it used — at most once a minute, so a busy script
    /// does not cost a disk write per request.
    pub fn use_token(
        &self,
        token_hash: &str,
        now_ms: u64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let conn = self.conn()?;
        let found = conn
            .query_row(
                "SELECT t.id, t.name, t.role, t.created_ms, t.last_used_ms, t.owner
                 FROM api_tokens t JOIN users u ON u.name = t.owner
                 WHERE t.token_hash = ?1",
                params![token_hash],
                token_row,
            )
            .optional()?;
        let stale = |t: &&TokenRecord| {
            t.last_used_ms
                .is_none_or(|u| now_ms.saturating_sub(u) >= 60_000)
        };
        if let Some(t) = found.as_ref().filter(stale) {
            conn.execute(
                "UPDATE api_tokens SET last_used_ms = ?2 WHERE id = ?1",
                params![t.id, now_ms as i64],
            )?;
        }
        Ok(found)
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let conn = self.conn()?;
        let mut st = conn.prepare(
            "SELECT id, name, role, created_ms, last_used_ms, owner FROM api_tokens
             ORDER BY created_ms",
        )?;
        let rows = st.query_map([], token_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn delete_token(&self, id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute("DELETE FROM api_tokens WHERE id = ?1", params![id])?;
        Ok(n == 1)
    }

    /// The stored result of a fleet command, by request id.
    pub fn command_result(&self, request_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT result FROM command_results WHERE request_id = ?1",
                params![request_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records a command's first result under its request id; `false` when the id is known
    /// (the command was seen before and must not run again). Journal durability (see
    /// [`Store::journal`]): a request id survives a crash of the node; after a power loss a
    /// fleet's retry of one of the last commands may run it again.
    pub fn claim_command(
        &self,
        request_id: &str,
        command: &str,
        result: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.journal(|conn| {
            let n = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO command_results
                     (request_id, command, result, created_ms) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![request_id, command, result, now_ms as i64])?;
            // Keep the newest results; pruning (a scan of the table, a few milliseconds) on
            // one claim in a thousand keeps the cost off the others.
            if n == 1
                && self
                    .claims
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .is_multiple_of(PRUNE_COMMANDS_EVERY)
            {
                conn.execute(
                    "DELETE FROM command_results WHERE created_ms < (
                        SELECT created_ms FROM command_results
                        ORDER BY created_ms DESC LIMIT 1 OFFSET ?1)",
                    params![COMMANDS_KEPT],
                )?;
            }
            Ok(n == 1)
        })
    }

    /// Marks commands that were accepted but never finished (the node stopped in between) as
    /// failed with `reason`; returns how many.
    pub fn fail_unfinished_commands(&self, reason: &str) -> Result<usize, StoreError> {
        Ok(self.conn()?.execute(
            "UPDATE command_results
             SET result = json_set(result, '$.state', 'failed', '$.reason', ?1)
             WHERE json_valid(result)
               AND json_extract(result, '$.state') IN ('accepted', 'in_progress')",
            params![reason],
        )?)
    }

    /// Records the result of a claimed command.
    pub fn set_command_result(&self, request_id: &str, result: &str) -> Result<(), StoreError> {
        self.journal(|conn| {
            conn.prepare_cached("UPDATE command_results SET result = ?2 WHERE request_id = ?1")?
                .execute(params![request_id, result])
        })?;
        Ok(())
    }
}

/// A `users` row selected as (name, password_hash, role, created_ms).
fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: r.get(0)?,
        password_hash: r.get(1)?,
        role: r.get(2)?,
        created_ms: r.get::<_, i64>(3)? as u64,
    })
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        created_ms: r.get::<_, i64>(3)? as u64,
        last_used_ms: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
        owner: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
    })
}
