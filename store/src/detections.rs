//! Objects the AI plane followed: one row per object, written when it starts and updated as
//! it moves, gets a better snapshot and ends. Journal durability: a detection lost to a
//! power cut costs no money.

use super::*;

/// Rows kept; older ones are pruned.
const DETECTIONS_KEPT: i64 = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DetectionRecord {
    pub id: String,
    pub stream_id: String,
    pub label: String,
    /// The best score it was seen with.
    pub score: f32,
    /// Where it was last seen, `[x1, y1, x2, y2]` normalised to the picture.
    pub bbox: [f32; 4],
    /// The zones it was last in.
    pub zones: Vec<String>,
    pub started_ms: u64,
    pub updated_ms: u64,
    pub ended_ms: Option<u64>,
    /// Whether a snapshot was kept (retention may have removed it since).
    pub snapshot: bool,
}

/// Which detections to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct DetectionQuery<'a> {
    pub stream_id: Option<&'a str>,
    pub label: Option<&'a str>,
    /// Started at or after (milliseconds since the Unix epoch).
    pub since_ms: Option<u64>,
    pub limit: u32,
}

fn record(r: &rusqlite::Row) -> rusqlite::Result<DetectionRecord> {
    let zones: String = r.get(8)?;
    Ok(DetectionRecord {
        id: r.get(0)?,
        stream_id: r.get(1)?,
        label: r.get(2)?,
        score: r.get::<_, f64>(3)? as f32,
        bbox: [
            r.get::<_, f64>(4)? as f32,
            r.get::<_, f64>(5)? as f32,
            r.get::<_, f64>(6)? as f32,
            r.get::<_, f64>(7)? as f32,
        ],
        zones: serde_json::from_str(&zones).unwrap_or_default(),
        started_ms: r.get::<_, i64>(9)? as u64,
        updated_ms: r.get::<_, i64>(10)? as u64,
        ended_ms: r.get::<_, Option<i64>>(11)?.map(|v| v as u64),
        snapshot: r.get(12)?,
    })
}

const COLUMNS: &str = "id, stream_id, label, score, x1, y1, x2, y2, zones, started_ms, \
                       updated_ms, ended_ms, snapshot";

impl Store {
    pub fn detections(&self, q: &DetectionQuery) -> Result<Vec<DetectionRecord>, StoreError> {
        let conn = self.read()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM detections
             WHERE (?1 IS NULL OR stream_id = ?1) AND (?2 IS NULL OR label = ?2)
               AND (?3 IS NULL OR started_ms >= ?3)
             ORDER BY started_ms DESC, id LIMIT ?4"
        ))?;
        let rows = stmt.query_map(
            params![q.stream_id, q.label, q.since_ms.map(|v| v as i64), q.limit],
            record,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn detection(&self, id: &str) -> Result<Option<DetectionRecord>, StoreError> {
        let conn = self.read()?;
        Ok(conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM detections WHERE id = ?1"),
                params![id],
                record,
            )
            .optional()?)
    }
}

impl Writer {
    /// Writes a detection as it is now (inserted the first time).
    pub fn put_detection(&mut self, d: &DetectionRecord) -> Result<(), StoreError> {
        let zones = serde_json::to_string(&d.zones).unwrap_or_else(|_| "[]".into());
        self.journal(|conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO detections (id, stream_id, label, score, x1, y1, x2, y2, zones,
                        started_ms, updated_ms, ended_ms, snapshot)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                     ON CONFLICT(id) DO UPDATE SET score = ?4, x1 = ?5, y1 = ?6, x2 = ?7,
                        y2 = ?8, zones = ?9, updated_ms = ?11, ended_ms = ?12,
                        snapshot = ?13",
                )?
                .execute(params![
                    d.id,
                    d.stream_id,
                    d.label,
                    f64::from(d.score),
                    f64::from(d.bbox[0]),
                    f64::from(d.bbox[1]),
                    f64::from(d.bbox[2]),
                    f64::from(d.bbox[3]),
                    zones,
                    d.started_ms as i64,
                    d.updated_ms as i64,
                    d.ended_ms.map(|v| v as i64),
                    d.snapshot,
                ])?;
            // Pruning when the row count may have reached a multiple of 1000 keeps it off
            // most writes.
            if inserted > 0 && conn.last_insert_rowid() % 1000 == 0 {
                conn.execute(
                    "DELETE FROM detections WHERE rowid <= ?1",
                    params![conn.last_insert_rowid() - DETECTIONS_KEPT],
                )?;
            }
            Ok(())
        })
    }
}
