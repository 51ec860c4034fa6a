//! Winning tickets and their redemption.

use super::*;

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
        let conn = self.read()?;
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
        let conn = self.read()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {} FROM winning_tickets ORDER BY created_ms DESC, ticket_hash LIMIT ?1",
            Self::TICKET_COLUMNS
        ))?;
        let rows = stmt.query_map(params![limit], Self::ticket_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn ticket_counts(&self) -> Result<TicketCounts, StoreError> {
        let conn = self.read()?;
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

impl Writer {
    /// Records winning tickets and adds to the received counter in one transaction, durable
    /// (`synchronous=FULL`) when this returns. Recording a ticket twice is harmless.
    pub fn record_tickets(
        &mut self,
        received: u64,
        wins: &[WinningTicket],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let conn = self.conn()?;
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

    pub fn set_ticket_state(
        &mut self,
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
        &mut self,
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
        &mut self,
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
}
