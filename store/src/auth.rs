//! Operators, their sessions and API tokens (secrets only as hashes).

use super::*;

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
            .read()?
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))?
            .max(0) as u64)
    }

    pub fn admin_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .read()?
            .query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| {
                r.get::<_, i64>(0)
            })?
            .max(0) as u64)
    }

    pub fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .read()?
            .query_row(
                "SELECT name, password_hash, role, created_ms FROM users WHERE name = ?1",
                params![name],
                user_row,
            )
            .optional()?)
    }

    pub fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.read()?;
        let mut st = conn.prepare(
            "SELECT name, password_hash, role, created_ms FROM users ORDER BY created_ms, name",
        )?;
        let rows = st.query_map([], user_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The live session with this id hash, with its user's current role.
    pub fn get_session(
        &self,
        id_hash: &str,
        now_ms: u64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .read()?
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

    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let conn = self.read()?;
        let mut st = conn.prepare(
            "SELECT id, name, role, created_ms, last_used_ms, owner FROM api_tokens
             ORDER BY created_ms",
        )?;
        let rows = st.query_map([], token_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Writer {
    /// Inserts a user; `false` when the name is taken.
    pub fn insert_user(&mut self, u: &UserRecord) -> Result<bool, StoreError> {
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
        &mut self,
        name: &str,
        hash: &str,
        revoke_tokens: bool,
    ) -> Result<bool, StoreError> {
        let conn = self.conn()?;
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

    pub fn delete_user(&mut self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute("DELETE FROM users WHERE name = ?1", params![name])?;
        Ok(n == 1)
    }

    pub fn insert_session(
        &mut self,
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

    pub fn delete_session(&mut self, id_hash: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM sessions WHERE id_hash = ?1", params![id_hash])?;
        Ok(())
    }

    pub fn insert_token(&mut self, t: &TokenRecord, token_hash: &str) -> Result<(), StoreError> {
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
        &mut self,
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

    pub fn delete_token(&mut self, id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute("DELETE FROM api_tokens WHERE id = ?1", params![id])?;
        Ok(n == 1)
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
