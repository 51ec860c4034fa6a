//! The money plane of an orchestrator: issuing ticket params, receiving payments (winning
//! tickets committed to SQLite before the payment is acknowledged), and the redemption queue
//! that redeems them once their params have expired — surviving restarts and crashes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lpe_pm::balance::Balances;
use lpe_pm::params::{RecipientPolicy, TicketParams};
use lpe_pm::recipient::{Recipient, TicketContext, price_from_info};
use lpe_pm::sig::SigningKey;
use lpe_pm::wire::{Payment, decode_payment};
use lpe_pm::{Address, BigRational, U256};
use serde::Serialize;
use tokio::sync::watch;

use crate::chain::{ChainClient, ChainError, revert_is_permanent};
use crate::watcher::BlockWatcher;
use lpe_core::events::{EventBus, EventKind, now_ms};

use lpe_store::{Store, StoreError, TicketState, WinningTicket};

/// Gas one redemption costs on Arbitrum (go-livepeer's value).
pub const REDEEM_GAS: u64 = 1_200_000;
/// How far back to look for the transaction of a ticket sent just before a crash, when the
/// block it was sent at is not on record (tickets submitted by an older version).
const RECOVERY_LOOKBACK_BLOCKS: u64 = 100_000;

/// Why a payment was refused.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The header could not be decoded or had the wrong shape.
    #[error("{0}")]
    Malformed(String),
    /// A ticket was refused (go-livepeer's message); `fatal` as go-livepeer classes it.
    #[error("{message}")]
    Rejected { message: String, fatal: bool },
    /// The winning tickets could not be made durable: nothing was accepted.
    #[error("cannot record the payment: {0}")]
    Storage(#[from] StoreError),
    #[error("chain unavailable: {0}")]
    Chain(String),
}

/// What a good payment earned.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PaymentReceipt {
    #[schema(value_type = String)]
    pub sender: Address,
    pub tickets: usize,
    pub won: usize,
    /// Credit added, wei (exact: `n` or `n/d`).
    pub credited: String,
    /// The sender's balance after this payment, wei (exact).
    pub balance: String,
}

/// This node's prices: wei per `pixels_per_unit` pixels, by default and for given gateways.
#[derive(Debug, Clone, Default)]
pub struct Prices {
    pub default: (i64, i64),
    pub per_gateway: std::collections::HashMap<Address, (i64, i64)>,
}

impl Prices {
    /// The price `sender` pays: its own, else the default.
    pub fn for_sender(&self, sender: Address) -> (i64, i64) {
        self.per_gateway
            .get(&sender)
            .copied()
            .unwrap_or(self.default)
    }
}

/// The orchestrator side of payments.
pub struct Orchestrator {
    watcher: Arc<BlockWatcher>,
    key: SigningKey,
    recipient: Mutex<Recipient>,
    /// Credit per (sender, session): tickets received minus work done, wei, exact.
    balances: Mutex<Balances>,
    ticket_ev: BigRational,
    prices: Prices,
}

impl Orchestrator {
    /// `key` is the account's: it receives the tickets and signs what this node answers.
    /// `secret` keys the recipientRand derivation; it must be fresh randomness.
    pub fn new(
        watcher: Arc<BlockWatcher>,
        key: SigningKey,
        secret: [u8; 32],
        policy: RecipientPolicy,
        prices: Prices,
    ) -> Self {
        let address = lpe_pm::sig::address_of(key.verifying_key());
        let ticket_ev = BigRational::from_integer(lpe_pm::to_bigint(policy.ev));
        Self {
            watcher,
            key,
            recipient: Mutex::new(Recipient::new(address, secret, policy)),
            balances: Mutex::new(Balances::default()),
            ticket_ev,
            prices,
        }
    }

    /// `personal_sign` of `msg` with the account's key.
    pub fn sign(&self, msg: &[u8]) -> [u8; 65] {
        lpe_pm::sig::sign(&self.key, msg)
    }

    /// This node's price for `sender`: wei per `pixels_per_unit` pixels.
    pub fn price_for(&self, sender: Address) -> (i64, i64) {
        self.prices.for_sender(sender)
    }

    /// The expected value of one ticket of this node's params.
    pub fn ticket_ev(&self) -> &BigRational {
        &self.ticket_ev
    }

    /// What `sender` has left to spend in `session`.
    pub fn balance(&self, sender: Address, session: &str) -> BigRational {
        self.balances
            .lock()
            .map(|b| b.balance(sender, session))
            .unwrap_or_default()
    }

    /// Charges `pixels` of work at this node's own price (never at a price the sender
    /// claims) and returns the balance left.
    pub fn debit(&self, sender: Address, session: &str, pixels: u64) -> BigRational {
        let (ppu, ppx) = self.price_for(sender);
        let Some(price) = price_from_info(ppu, ppx) else {
            return self.balance(sender, session);
        };
        let fee = price * BigRational::from_integer(pixels.into());
        match self.balances.lock() {
            Ok(mut b) => {
                b.debit(sender, session, &fee);
                b.balance(sender, session)
            }
            Err(_) => BigRational::from_integer(0.into()),
        }
    }

    /// Forgets a session's balance (the session ended).
    pub fn forget(&self, sender: Address, session: &str) {
        if let Ok(mut b) = self.balances.lock() {
            b.remove(sender, session);
        }
    }

    pub fn chain(&self) -> &ChainClient {
        self.watcher.chain()
    }

    pub fn watcher(&self) -> &BlockWatcher {
        &self.watcher
    }

    /// Params for `sender` at this node's price, bound to the chain's current round.
    pub async fn ticket_params(
        &self,
        sender: Address,
    ) -> Result<(TicketParams, (i64, i64)), PaymentError> {
        let (ppu, ppx) = self.price_for(sender);
        let price = price_from_info(ppu, ppx)
            .ok_or_else(|| PaymentError::Malformed("pixels per unit is 0".into()))?;
        let chain_err = |e: ChainError| PaymentError::Chain(e.to_string());
        let head = self.watcher.head().map_err(chain_err)?;
        let info = self.watcher.sender_info(sender).await.map_err(chain_err)?;
        let claimable = self
            .watcher
            .claimable_reserve(sender, self.address())
            .await
            .map_err(chain_err)?;
        let max_float = claimable.saturating_add(info.deposit);
        let seed = U256::from_be_bytes(rand_bytes());
        let r = self
            .recipient
            .lock()
            .map_err(|_| PaymentError::Chain("state poisoned".into()))?;
        let params = r
            .ticket_params(
                sender,
                &price,
                head.gas_price,
                max_float,
                head.l1_block,
                head.expiration,
                seed,
            )
            .map_err(|e| PaymentError::Rejected {
                message: e.to_string(),
                fatal: true,
            })?;
        Ok((params, (ppu, ppx)))
    }

    pub fn address(&self) -> Address {
        lpe_pm::sig::address_of(self.key.verifying_key())
    }

    /// Receives a payment for `session`: every ticket is checked in go-livepeer's order;
    /// winners are committed to the store **before** this returns Ok, and only then is the
    /// sender credited. A storage failure refuses the whole payment. A payment without
    /// tickets credits nothing, whatever price it claims.
    pub async fn receive(
        &self,
        store: &Store,
        payment: &Payment,
        session: &str,
    ) -> Result<PaymentReceipt, PaymentError> {
        let decoded =
            decode_payment(payment).map_err(|e| PaymentError::Malformed(e.to_string()))?;
        let Some(params) = decoded.params.clone() else {
            return Ok(PaymentReceipt {
                sender: decoded.sender,
                tickets: 0,
                won: 0,
                credited: "0".into(),
                balance: lpe_pm::rational_string(&self.balance(decoded.sender, session)),
            });
        };
        let price = decoded
            .price
            .clone()
            .ok_or_else(|| PaymentError::Malformed("missing expected_price".into()))?;
        let chain_err = |e: ChainError| PaymentError::Chain(e.to_string());
        // No RPC here: the head and the sender's state come from the block watcher.
        let head = self.watcher.head().map_err(chain_err)?;
        let l1 = head.l1_block;
        let ctx = TicketContext {
            seed: params.seed,
            expiration_block: params.expiration_block,
            price,
        };
        // What costs nothing is checked before the sender is looked up: a payment whose first
        // ticket was not made from this node's params is refused without touching the chain
        // or the sender cache (the same check refuses it below).
        let made_here = match decoded.tickets.first() {
            Some((t, _)) => self
                .recipient
                .lock()
                .map_err(|_| PaymentError::Chain("state poisoned".into()))?
                .made_from_our_params(t, &ctx),
            None => false,
        };
        let sender_check = if made_here {
            let info = self
                .watcher
                .sender_info(decoded.sender)
                .await
                .map_err(chain_err)?;
            if !info.withdraw_round.is_zero()
                && info.withdraw_round
                    <= head.last_initialized_round.saturating_add(U256::from(1u8))
            {
                Err(format!("sender {} is set to unlock soon", decoded.sender))
            } else {
                Ok(())
            }
        } else {
            Ok(())
        };
        let mut wins = Vec::new();
        // Tickets taken: a refused ticket (a replay, a bad signature) is not counted.
        let mut accepted = 0u64;
        let mut credited = BigRational::from_integer(0.into());
        let mut refusal = None;
        {
            let mut r = self
                .recipient
                .lock()
                .map_err(|_| PaymentError::Chain("state poisoned".into()))?;
            let outcomes = r.receive_payment(&decoded.tickets, &ctx, sender_check, l1);
            for ((ticket, sig), outcome) in decoded.tickets.iter().zip(outcomes) {
                match outcome {
                    Ok(got) => {
                        if got.won {
                            wins.push(WinningTicket {
                                ticket: ticket.clone(),
                                sig: sig.clone(),
                                recipient_rand: got.recipient_rand,
                                params_expiration_block: params.expiration_block,
                            });
                        }
                        credited += ticket.ev();
                        accepted += 1;
                    }
                    Err(e) => {
                        // A winner refused only for crediting (expired params) is still owed.
                        if e.won {
                            let rand = r.recipient_rand(
                                ticket.sender,
                                ticket.face_value,
                                ticket.win_prob,
                                &ctx,
                                &ticket.expiration,
                            );
                            wins.push(WinningTicket {
                                ticket: ticket.clone(),
                                sig: sig.clone(),
                                recipient_rand: rand,
                                params_expiration_block: params.expiration_block,
                            });
                        }
                        refusal = Some(PaymentError::Rejected {
                            message: e.message,
                            fatal: e.fatal,
                        });
                        break;
                    }
                }
            }
        }
        // Durability before acknowledgement.
        let won = wins.len();
        store
            .write(move |w| w.record_tickets(accepted, &wins, now_ms()))
            .await?;
        if let Some(e) = refusal {
            return Err(e);
        }
        let balance = {
            let mut b = self
                .balances
                .lock()
                .map_err(|_| PaymentError::Chain("state poisoned".into()))?;
            b.credit(decoded.sender, session, &credited);
            b.balance(decoded.sender, session)
        };
        Ok(PaymentReceipt {
            sender: decoded.sender,
            tickets: decoded.tickets.len(),
            won,
            credited: lpe_pm::rational_string(&credited),
            balance: lpe_pm::rational_string(&balance),
        })
    }
}

/// 32 bytes from the OS's CSPRNG.
pub fn rand_bytes() -> [u8; 32] {
    use rand08::RngCore;
    let mut b = [0u8; 32];
    rand08::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// Redeems recorded winning tickets until `shutdown`: waits for each ticket's params to expire,
/// checks it is unused and worth the gas, records `submitted` before sending, and records the
/// outcome (redeemed with tx hash and amount, or failed with the contract's revert string).
/// Transient failures are retried with backoff; a restart resumes where it stopped.
pub async fn run_redemptions(
    store: Arc<Store>,
    events: EventBus,
    watcher: Arc<BlockWatcher>,
    mut shutdown: watch::Receiver<bool>,
    poll: Duration,
) {
    let mut backoff = poll;
    let mut validity = None;
    loop {
        let result = async {
            let period = match validity {
                Some(v) => v,
                None => *validity.insert(watcher.chain().ticket_validity_period().await?),
            };
            redeem_due(&store, &watcher, &events, period, Waits::from_poll(poll)).await
        }
        .await;
        let wait = match result {
            Ok(()) => {
                backoff = poll;
                poll
            }
            Err(e) => {
                tracing::warn!("redemption queue: {e}; retrying in {} s", backoff.as_secs());
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                w
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// How long a ticket that must wait is left alone, in multiples of the queue's poll interval
/// (2 s by default: a minute, and at most an hour).
#[derive(Clone, Copy)]
struct Waits {
    /// Gas, funds, an inactive recipient; and the first retry after a transient revert.
    base_ms: u64,
    /// Transient reverts double the wait each time, up to this.
    max_ms: u64,
}

impl Waits {
    fn from_poll(poll: Duration) -> Self {
        let poll = poll.as_millis() as u64;
        Self {
            base_ms: poll * 30,
            max_ms: poll * 1800,
        }
    }

    /// The wait after the `previous`-th failed submission.
    fn retry_ms(self, previous: u32) -> u64 {
        (self.base_ms << previous.min(10)).min(self.max_ms)
    }
}

/// One pass over the tickets that are due. `validity` is the broker's ticketValidityPeriod in
/// rounds: a ticket created in round r is redeemable while r + validity > the current round.
async fn redeem_due(
    store: &Store,
    watcher: &BlockWatcher,
    events: &EventBus,
    validity: U256,
    waits: Waits,
) -> Result<(), ChainError> {
    let tickets = store
        .unredeemed_tickets(now_ms())
        .map_err(|e| ChainError::Unavailable(e.to_string()))?;
    if tickets.is_empty() {
        return Ok(());
    }
    let chain = watcher.chain();
    let head = watcher.head()?;
    let l1 = head.l1_block;
    let tx_cost = head.gas_price.saturating_mul(U256::from(REDEEM_GAS));
    let logged = |r: Result<(), StoreError>| {
        if let Err(e) = r {
            tracing::error!("cannot record ticket state: {e}");
        }
    };
    let set = |hash: &str, state, tx: Option<&str>, amount: Option<&str>, reason: Option<&str>| {
        let hash = hash.to_string();
        let [tx, amount, reason] = [tx, amount, reason].map(|v| v.map(str::to_string));
        let write = store.write(move |w| {
            let (tx, amount, reason) = (tx.as_deref(), amount.as_deref(), reason.as_deref());
            w.set_ticket_state(&hash, state, tx, amount, reason, now_ms())
        });
        async move { logged(write.await) }
    };
    let defer = |hash: &str, reason: &str, wait_ms: u64| {
        let (hash, reason) = (hash.to_string(), reason.to_string());
        let now = now_ms();
        let write = store.write(move |w| w.defer_ticket(&hash, &reason, now, now + wait_ms));
        async move { logged(write.await) }
    };
    let mut active: Option<bool> = None;
    for rec in tickets {
        let Some(w) = rec.winning.clone() else {
            set(
                &rec.ticket_hash,
                TicketState::Failed,
                None,
                None,
                Some("unreadable ticket record"),
            )
            .await;
            continue;
        };
        // A revealed recipientRand must never be usable with live params.
        if w.params_expiration_block > l1 {
            continue;
        }
        let creation = U256::from(w.ticket.expiration.creation_round.max(0) as u64);
        let expired = creation.saturating_add(validity) <= head.last_initialized_round;
        if expired && rec.state == TicketState::Pending {
            set(
                &rec.ticket_hash,
                TicketState::Expired,
                None,
                None,
                Some(&format!(
                    "created in round {creation}, redeemable for {validity} rounds; round {} now",
                    head.last_initialized_round
                )),
            )
            .await;
            continue;
        }
        let hash = w.ticket.hash();
        if chain.is_used(hash).await? {
            if rec.state == TicketState::Submitted {
                // Sent before a crash and mined: find the transaction and what it paid.
                let since = match rec.submitted_block {
                    Some(b) => b,
                    None => head.block.saturating_sub(RECOVERY_LOOKBACK_BLOCKS),
                };
                let events_found = chain.redeemed_events(w.ticket.recipient, since).await?;
                let tx = events_found
                    .iter()
                    .find(|e| e.0 == w.ticket.sender && e.2 == U256::from(w.ticket.sender_nonce))
                    .map(|e| e.3);
                let paid = match tx {
                    Some(tx) => Some(
                        chain
                            .transferred_in(tx, w.ticket.sender, w.ticket.recipient)
                            .await?
                            .to_string(),
                    ),
                    None => None,
                };
                set(
                    &rec.ticket_hash,
                    TicketState::Redeemed,
                    tx.map(|t| format!("{t:#x}")).as_deref(),
                    paid.as_deref(),
                    None,
                )
                .await;
            } else {
                set(
                    &rec.ticket_hash,
                    TicketState::Failed,
                    None,
                    None,
                    Some("ticket is used"),
                )
                .await;
            }
            continue;
        }
        if expired {
            // Submitted, not mined, and now too old: the contract will refuse it.
            set(
                &rec.ticket_hash,
                TicketState::Expired,
                None,
                None,
                Some("past the ticket validity period before its redemption was mined"),
            )
            .await;
            continue;
        }
        if w.ticket.face_value <= tx_cost {
            defer(
                &rec.ticket_hash,
                "face value does not cover the gas cost; waiting for cheaper gas",
                waits.base_ms,
            )
            .await;
            continue;
        }
        let info = chain.sender_info(w.ticket.sender).await?;
        let claimable = chain
            .claimable_reserve(w.ticket.sender, w.ticket.recipient)
            .await?;
        if info.deposit.saturating_add(claimable) <= tx_cost {
            defer(
                &rec.ticket_hash,
                "sender funds do not cover the gas cost",
                waits.base_ms,
            )
            .await;
            continue;
        }
        // Fees are only credited to an active transcoder; an inactive one waits (go-livepeer
        // does the same), asked once per pass.
        let is_active = match active {
            Some(a) => a,
            None => *active.insert(chain.is_active_transcoder(w.ticket.recipient).await?),
        };
        if !is_active {
            defer(
                &rec.ticket_hash,
                "this node is not an active transcoder this round; waiting",
                waits.base_ms,
            )
            .await;
            continue;
        }
        let (hash, block) = (rec.ticket_hash.clone(), head.block);
        let submitted = store.write(move |w| w.mark_submitted(&hash, block, now_ms()));
        if let Err(e) = submitted.await {
            // Without the record a crash mid-send could not be reconciled: do not send.
            tracing::error!("cannot record ticket state: {e}");
            continue;
        }
        match chain.redeem(&w.ticket, &w.sig, w.recipient_rand).await {
            Ok(r) => {
                let tx = format!("{:#x}", r.mined.tx_hash);
                set(
                    &rec.ticket_hash,
                    TicketState::Redeemed,
                    Some(&tx),
                    Some(&r.paid.to_string()),
                    None,
                )
                .await;
                events.emit(
                    None,
                    EventKind::TicketRedeemed,
                    format!(
                        "ticket {} redeemed in {tx}: {} wei paid of {} face value",
                        rec.ticket_hash, r.paid, w.ticket.face_value
                    ),
                );
            }
            Err(ChainError::Reverted(reason)) if revert_is_permanent(&reason) => {
                set(
                    &rec.ticket_hash,
                    TicketState::Failed,
                    None,
                    None,
                    Some(&reason),
                )
                .await;
                events.emit(
                    None,
                    EventKind::TicketFailed,
                    format!("ticket {} failed: {reason}", rec.ticket_hash),
                );
            }
            Err(ChainError::Reverted(reason)) => {
                defer(
                    &rec.ticket_hash,
                    &format!("will retry: {reason}"),
                    waits.retry_ms(rec.attempts),
                )
                .await;
            }
            Err(e) => {
                set(
                    &rec.ticket_hash,
                    TicketState::Submitted,
                    None,
                    None,
                    Some(&e.to_string()),
                )
                .await;
                return Err(e);
            }
        }
    }
    Ok(())
}
