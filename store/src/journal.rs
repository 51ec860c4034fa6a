//! The journal: the event log and the command journal (results by request id), written
//! with journal durability (see [`Store::journal`]).

use super::*;
use lpe_core::events::NodeEvent;

/// Events kept in the database; older ones are pruned.
const EVENTS_KEPT: i64 = 10_000;
/// Fleet-command results kept for deduplication by request id; older ones are pruned.
pub(crate) const COMMANDS_KEPT: i64 = 10_000;
/// Command results are pruned on the first claim after opening and every this many after.
pub(crate) const PRUNE_COMMANDS_EVERY: u32 = 1000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub id: i64,
    pub ts_ms: u64,
    pub stream_id: Option<String>,
    pub kind: String,
    pub message: String,
    /// When an operator acknowledged the alert (milliseconds since the Unix epoch).
    pub acknowledged_ms: Option<u64>,
    /// Who acknowledged it: the user (an API token's owner).
    pub acknowledged_by: Option<String>,
}

/// Which events [`Store::recent_events`] returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFilter<'a> {
    pub stream_id: Option<&'a str>,
    /// Only events of these kinds.
    pub kinds: Option<&'a [&'a str]>,
    /// Only events no one has acknowledged.
    pub unacknowledged: bool,
}

const EVENT_COLUMNS: &str = "id, ts_ms, stream_id, kind, message, acknowledged_ms, acknowledged_by";

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        id: r.get(0)?,
        ts_ms: r.get::<_, i64>(1)? as u64,
        stream_id: r.get(2)?,
        kind: r.get(3)?,
        message: r.get(4)?,
        acknowledged_ms: r.get::<_, Option<i64>>(5)?.map(|ms| ms as u64),
        acknowledged_by: r.get(6)?,
    })
}

fn event_by_id(conn: &rusqlite::Connection, id: i64) -> Result<Option<StoredEvent>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"))?
        .query_row(params![id], event_row)
        .optional()?)
}

impl Store {
    /// The newest events `filter` lets through, newest first.
    pub fn recent_events(
        &self,
        filter: &EventFilter<'_>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let kinds = filter
            .kinds
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let conn = self.read()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE (?1 IS NULL OR stream_id = ?1)
               AND (?2 IS NULL OR kind IN (SELECT value FROM json_each(?2)))
               AND (?3 = 0 OR acknowledged_ms IS NULL)
             ORDER BY id DESC LIMIT ?4"
        ))?;
        let rows = stmt.query_map(
            params![filter.stream_id, kinds, filter.unacknowledged, limit],
            event_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One event, by id.
    pub fn event(&self, id: i64) -> Result<Option<StoredEvent>, StoreError> {
        event_by_id(&*self.read()?, id)
    }

    /// The stored result of a fleet command, by request id.
    pub fn command_result(&self, request_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .read()?
            .query_row(
                "SELECT result FROM command_results WHERE request_id = ?1",
                params![request_id],
                |r| r.get(0),
            )
            .optional()?)
    }
}

impl Writer {
    /// Appends events to the log in one transaction (journal durability, see
    /// [`Store::journal`]).
    pub fn insert_events(&mut self, events: &[NodeEvent]) -> Result<(), StoreError> {
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

    /// Marks event `id` acknowledged by `by` at `now_ms`, unless it already was (the first
    /// acknowledgement stands); the event as it now is, or `None` when there is none.
    pub fn acknowledge_event(
        &mut self,
        id: i64,
        by: &str,
        now_ms: u64,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let conn = self.conn()?;
        conn.execute(
            "UPDATE events SET acknowledged_ms = ?2, acknowledged_by = ?3
             WHERE id = ?1 AND acknowledged_ms IS NULL",
            params![id, now_ms as i64, by],
        )?;
        event_by_id(conn, id)
    }

    /// Records a command's first result under its request id; `false` when the id is known
    /// (the command was seen before and must not run again). Journal durability (see
    /// [`Store::journal`]): a request id survives a crash of the node; after a power loss a
    /// fleet's retry of one of the last commands may run it again.
    pub fn claim_command(
        &mut self,
        request_id: &str,
        command: &str,
        result: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        // Keep the newest results; pruning (a scan of the table, a few milliseconds) on one
        // claim in a thousand keeps the cost off the others.
        let prune = self.claims.is_multiple_of(PRUNE_COMMANDS_EVERY);
        let claimed = self.journal(|conn| {
            let n = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO command_results
                     (request_id, command, result, created_ms) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![request_id, command, result, now_ms as i64])?;
            if n == 1 && prune {
                conn.execute(
                    "DELETE FROM command_results WHERE created_ms < (
                        SELECT created_ms FROM command_results
                        ORDER BY created_ms DESC LIMIT 1 OFFSET ?1)",
                    params![COMMANDS_KEPT],
                )?;
            }
            Ok(n == 1)
        })?;
        if claimed {
            self.claims = self.claims.wrapping_add(1);
        }
        Ok(claimed)
    }

    /// Marks commands that were accepted but never finished (the node stopped in between) as
    /// failed with `reason`; returns how many.
    pub fn fail_unfinished_commands(&mut self, reason: &str) -> Result<usize, StoreError> {
        Ok(self.conn()?.execute(
            "UPDATE command_results
             SET result = json_set(result, '$.state', 'failed', '$.reason', ?1)
             WHERE json_valid(result)
               AND json_extract(result, '$.state') IN ('accepted', 'in_progress')",
            params![reason],
        )?)
    }

    /// Records the result of a claimed command.
    pub fn set_command_result(&mut self, request_id: &str, result: &str) -> Result<(), StoreError> {
        self.journal(|conn| {
            conn.prepare_cached("UPDATE command_results SET result = ?2 WHERE request_id = ?1")?
                .execute(params![request_id, result])
        })?;
        Ok(())
    }
}
