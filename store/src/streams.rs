//! Streams, stored as their JSON spec.

use super::*;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredStream {
    pub id: String,
    pub spec: StreamSpec,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl Store {
    /// All streams in creation order. A row that does not parse is reported in the second
    /// value and skipped, so one damaged row never hides the others.
    pub fn list_streams(&self) -> Result<(Vec<StoredStream>, Vec<StoreError>), StoreError> {
        let conn = self.read()?;
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
        let conn = self.read()?;
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
}

impl Writer {
    pub fn insert_stream(
        &mut self,
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
        &mut self,
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

    pub fn delete_stream(&mut self, id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute("DELETE FROM streams WHERE id = ?1", params![id])?;
        Ok(n == 1)
    }
}
