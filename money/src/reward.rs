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

use alloy::primitives::{Address, U256};
use serde::Serialize;
use tokio::sync::watch;

use crate::chain::{ChainClient, ChainError, RewardCall};
use lpe_core::events::{EventBus, EventKind, now_ms};

/// go-livepeer's estimate of what a reward call mints for the account (`client.Reward`):
/// `mintable × active stake / total bonded`, rounded down. `None` when nothing is bonded
/// (go-livepeer's "no rewards to be minted"). It ignores the treasury's cut, so the chain
/// may mint a little less; the estimate only places the account in the pool and weighs the
/// fee.
pub fn estimated_reward(mintable: U256, active_stake: U256, total_bonded: U256) -> Option<U256> {
    if total_bonded.is_zero() {
        return None;
    }
    // U256 × U256 can overflow in theory (not with LPT's supply); saturate, then divide.
    Some(mintable.saturating_mul(active_stake) / total_bonded)
}

/// The `rewardWithHint` position hints: the account's neighbours (previous, next) in the
/// pool once its stake is `new_stake`; the zero address at either end. `pool` is the
/// BondingManager's list, largest stake first.
///
/// As go-livepeer's `simulateTranscoderPoolUpdate`: the account is taken out, put back with
/// its new stake after every member with at least as much (the sorted list keeps equal
/// stakes in order), and — when it was not a member of a full pool — the tail drops out; no
/// hints if the account is then not in the pool or alone in it. Unlike go-livepeer, a
/// member's update never evicts the tail: the contract only evicts to admit a newcomer, so
/// go-livepeer's hints for a member of a full pool can miss (they still work, at more gas).
pub fn hints(
    pool: &[(Address, U256)],
    me: Address,
    new_stake: U256,
    max_size: usize,
) -> (Address, Address) {
    let mut list: Vec<(Address, U256)> = pool.iter().filter(|(a, _)| *a != me).copied().collect();
    let was_member = list.len() < pool.len();
    let at = list
        .iter()
        .position(|(_, s)| *s < new_stake)
        .unwrap_or(list.len());
    list.insert(at, (me, new_stake));
    if !was_member && pool.len() >= max_size {
        list.pop();
    }
    match list.iter().position(|(a, _)| *a == me) {
        Some(i) if list.len() > 1 => {
            let prev = i.checked_sub(1).map_or(Address::ZERO, |p| list[p].0);
            let next = list.get(i + 1).map_or(Address::ZERO, |n| n.0);
            (prev, next)
        }
        _ => (Address::ZERO, Address::ZERO),
    }
}

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

    fn addr(tail: u16) -> Address {
        let mut b = [0u8; 20];
        b[18..].copy_from_slice(&tail.to_be_bytes());
        Address::from(b)
    }

    /// go-livepeer's `TestSimulateTranscoderPool` pool: aaa 5, bbb 4, ccc 3, ddd 2, eee 1.
    fn pool() -> Vec<(Address, U256)> {
        [(0xaaa, 5u8), (0xbbb, 4), (0xccc, 3), (0xddd, 2), (0xeee, 1)]
            .into_iter()
            .map(|(a, s)| (addr(a), U256::from(s)))
            .collect()
    }

    fn h(me: u16, stake: u8, max: usize) -> (Address, Address) {
        hints(&pool(), addr(me), U256::from(stake), max)
    }

    const Z: Address = Address::ZERO;
    const FULL: usize = 5;
    const ROOMY: usize = 100;

    #[test]
    fn hints_match_go_livepeer() {
        // A newcomer without the stake to enter a full pool.
        assert_eq!(h(0xfff, 1, FULL), (Z, Z));
        // A newcomer that evicts the tail of a full pool.
        assert_eq!(h(0xfff, 2, FULL), (addr(0xddd), Z));
        // Not full: last, first, second (equal stakes keep the member first).
        assert_eq!(h(0xfff, 1, ROOMY), (addr(0xeee), Z));
        assert_eq!(h(0xfff, 100, ROOMY), (Z, addr(0xaaa)));
        assert_eq!(h(0xfff, 5, ROOMY), (addr(0xaaa), addr(0xbbb)));
        // Members moving: stays last, up one, to the top, down to the tail.
        assert_eq!(h(0xeee, 2, ROOMY), (addr(0xddd), Z));
        assert_eq!(h(0xeee, 3, ROOMY), (addr(0xccc), addr(0xddd)));
        assert_eq!(h(0xccc, 6, ROOMY), (Z, addr(0xaaa)));
        assert_eq!(h(0xaaa, 1, ROOMY), (addr(0xeee), Z));
        assert_eq!(h(0xaaa, 0, ROOMY), (addr(0xeee), Z));
    }

    #[test]
    fn a_member_of_a_full_pool_evicts_no_one() {
        // go-livepeer gives no hints here (it drops the tail, which is the member itself);
        // the contract keeps a member whose stake falls, so its neighbour is eee.
        assert_eq!(h(0xaaa, 0, FULL), (addr(0xeee), Z));
        assert_eq!(h(0xeee, 2, FULL), (addr(0xddd), Z));
        assert_eq!(h(0xccc, 6, FULL), (Z, addr(0xaaa)));
    }

    #[test]
    fn alone_or_empty_gives_no_hints() {
        let me = addr(1);
        assert_eq!(hints(&[], me, U256::from(1u8), 10), (Z, Z));
        assert_eq!(
            hints(&[(me, U256::from(1u8))], me, U256::from(9u8), 10),
            (Z, Z)
        );
        assert_eq!(hints(&[], me, U256::from(1u8), 0), (Z, Z));
    }

    #[test]
    fn estimate_is_go_livepeers_rounded_down() {
        let u = |v: u64| U256::from(v);
        assert_eq!(estimated_reward(u(1000), u(3), u(7)), Some(u(428)));
        assert_eq!(estimated_reward(u(1000), u(0), u(7)), Some(u(0)));
        assert_eq!(estimated_reward(u(1000), u(3), u(0)), None);
        assert_eq!(
            estimated_reward(U256::MAX, U256::MAX, u(1)),
            Some(U256::MAX)
        );
    }

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
