//! The reward call: an active orchestrator mints its share of the round's new LPT by calling
//! `BondingManager.rewardWithHint` once per round.
//!
//! go-livepeer calls it only when it sees a `NewRound` event, once: a node started after the
//! event, or whose one attempt failed, loses that round's reward. Here the service looks at
//! the chain at start and then every poll, and keeps trying while this round's reward is
//! still due. Before sending it checks what the call costs against two operator limits: a
//! ceiling in wei, and — when the operator gives an LPT price — the value of what it mints.
//! Everything is integer arithmetic on wei and LPT base units.

use std::time::Duration;

use alloy::primitives::U256;
use serde::Serialize;
use tokio::sync::watch;

use crate::chain::{ChainClient, ChainError, RewardCall};
use lpe_core::events::{EventBus, EventKind, now_ms};

/// The operator's limits on what a reward call may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardPolicy {
    /// The most one call may cost, wei.
    pub max_fee: U256,
    /// What one LPT (10¹⁸ base units) is worth in wei; zero: not compared.
    pub lpt_price: U256,
}

const LPT: u128 = 1_000_000_000_000_000_000;

impl RewardPolicy {
    /// Why a call with this fee and estimated reward is not worth sending, if it is not.
    pub fn refuse(&self, call: &RewardCall) -> Option<String> {
        let fee = call.fee();
        if fee > self.max_fee {
            return Some(format!(
                "the call would cost up to {fee} wei, above the {} wei allowed",
                self.max_fee
            ));
        }
        if !self.lpt_price.is_zero() {
            let value = call.estimated_reward.saturating_mul(self.lpt_price) / U256::from(LPT);
            if fee >= value {
                return Some(format!(
                    "the call would cost up to {fee} wei, more than the {value} wei the {} LPT units it mints are worth",
                    call.estimated_reward
                ));
            }
        }
        None
    }
}

/// Where the reward call stands this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RewardState {
    /// Not looked at the chain yet.
    Starting,
    /// The round is not initialized yet: nothing can be minted until it is.
    Waiting,
    /// The account is not an active transcoder this round.
    NotActive,
    /// Due, but not worth its fee now (see `detail`); looked at again each poll.
    Skipped,
    /// The last attempt failed (see `detail`); tried again next poll while the round lasts.
    Failed,
    /// Called for the current round.
    Done,
}

/// The reward call as the API, UI and MQTT show it. Amounts are decimal strings: wei for
/// fees, LPT base units (10⁻¹⁸ LPT) for rewards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RewardStatus {
    pub state: RewardState,
    /// Why, for `skipped` and `failed`.
    pub detail: String,
    pub current_round: Option<String>,
    pub last_reward_round: Option<String>,
    /// Attempts sent or prepared in the current round.
    pub attempts: u32,
    /// When the chain was last looked at, milliseconds since the Unix epoch.
    pub checked_ms: Option<u64>,
    pub estimated_reward: Option<String>,
    pub estimated_fee: Option<String>,
    /// The last call that was mined: its round, transaction, what it minted and cost.
    pub last_round: Option<String>,
    pub last_tx: Option<String>,
    pub last_minted: Option<String>,
    pub last_fee: Option<String>,
}

impl Default for RewardStatus {
    fn default() -> Self {
        Self {
            state: RewardState::Starting,
            detail: String::new(),
            current_round: None,
            last_reward_round: None,
            attempts: 0,
            checked_ms: None,
            estimated_reward: None,
            estimated_fee: None,
            last_round: None,
            last_tx: None,
            last_minted: None,
            last_fee: None,
        }
    }
}

/// Calls reward once per round while the account is active, until `shutdown`: at start,
/// then every `every`, retrying within the round after a failure.
pub async fn run(
    chain: ChainClient,
    policy: RewardPolicy,
    events: EventBus,
    status: watch::Sender<RewardStatus>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        check(&chain, &policy, &events, &status).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One look at the chain, and the call when it is due and worth it.
async fn check(
    chain: &ChainClient,
    policy: &RewardPolicy,
    events: &EventBus,
    status: &watch::Sender<RewardStatus>,
) {
    let before = status.borrow().clone();
    let mut next = before.clone();
    next.checked_ms = Some(now_ms());
    let round = match chain.reward_round().await {
        Ok(r) => r,
        Err(e) => {
            // The chain being unreachable is reported by the block watcher; the reward only
            // says why it could not look.
            next.state = RewardState::Failed;
            next.detail = e.to_string();
            status.send_replace(next);
            return;
        }
    };
    let current = round.current_round.to_string();
    if before.current_round.as_deref() != Some(current.as_str()) {
        next.attempts = 0;
        next.estimated_reward = None;
        next.estimated_fee = None;
    }
    next.current_round = Some(current.clone());
    next.last_reward_round = Some(round.last_reward_round.to_string());
    next.detail.clear();
    next.state = if round.last_reward_round >= round.current_round {
        RewardState::Done
    } else if !round.initialized {
        RewardState::Waiting
    } else if !round.active {
        RewardState::NotActive
    } else {
        next.attempts += 1;
        match call(chain, policy, &mut next).await {
            Ok(()) => {
                events.emit(
                    None,
                    EventKind::RewardCalled,
                    format!(
                        "reward for round {current}: {} LPT units minted in {} (fee {} wei)",
                        next.last_minted.as_deref().unwrap_or("0"),
                        next.last_tx.as_deref().unwrap_or("-"),
                        next.last_fee.as_deref().unwrap_or("0"),
                    ),
                );
                RewardState::Done
            }
            Err((state, detail)) => {
                // Once per round and reason: a retry every poll must not flood the log.
                if before.state != state
                    || before.detail != detail
                    || before.current_round != next.current_round
                {
                    let kind = match state {
                        RewardState::Skipped => EventKind::RewardSkipped,
                        _ => EventKind::RewardFailed,
                    };
                    events.emit(None, kind, format!("reward for round {current}: {detail}"));
                }
                next.detail = detail;
                state
            }
        }
    };
    status.send_replace(next);
}

/// Prepares, weighs and sends the call; records the estimate and, when mined, the outcome.
async fn call(
    chain: &ChainClient,
    policy: &RewardPolicy,
    status: &mut RewardStatus,
) -> Result<(), (RewardState, String)> {
    let failed = |e: ChainError| (RewardState::Failed, e.to_string());
    let Some(prepared) = chain.prepare_reward().await.map_err(failed)? else {
        return Err((
            RewardState::Skipped,
            "nothing to mint: no stake bonded, or nothing mintable this round".into(),
        ));
    };
    status.estimated_reward = Some(prepared.estimated_reward.to_string());
    status.estimated_fee = Some(prepared.fee().to_string());
    if let Some(why) = policy.refuse(&prepared) {
        return Err((RewardState::Skipped, why));
    }
    let done = chain.reward(&prepared).await.map_err(failed)?;
    status.last_round = status.current_round.clone();
    status.last_reward_round = status.current_round.clone();
    status.last_tx = Some(format!("{:#x}", done.mined.tx_hash));
    status.last_minted = Some(done.minted.to_string());
    status.last_fee = Some(done.fee.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::Address;

    const Z: Address = Address::ZERO;

    fn call(reward: u64, gas: u64, gas_price: u64) -> RewardCall {
        RewardCall {
            estimated_reward: U256::from(reward),
            prev: Z,
            next: Z,
            gas,
            gas_price: U256::from(gas_price),
        }
    }

    #[test]
    fn the_fee_is_weighed_against_the_ceiling_and_the_reward() {
        let ceiling = RewardPolicy {
            max_fee: U256::from(1_000_000u64),
            lpt_price: U256::ZERO,
        };
        assert_eq!(ceiling.refuse(&call(1, 1000, 1000)), None);
        assert!(ceiling.refuse(&call(1, 1000, 1001)).is_some());
        // One LPT = 10^15 wei: 2 × 10^6 base units (2 × 10^-12 LPT) are worth 2000 wei.
        let priced = RewardPolicy {
            max_fee: U256::MAX,
            lpt_price: U256::from(1_000_000_000_000_000u64),
        };
        assert_eq!(priced.refuse(&call(2_000_000, 1999, 1)), None);
        assert!(priced.refuse(&call(2_000_000, 2000, 1)).is_some());
    }
}
