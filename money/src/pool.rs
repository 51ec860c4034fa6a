//! The transcoder pool's arithmetic for the reward call, as go-livepeer does it: what a call
//! mints, and where the account lands in the stake-sorted pool (the position hints).

use alloy::primitives::{Address, U256};

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
}
