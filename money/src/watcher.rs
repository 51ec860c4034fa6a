//! The block watcher: one task polls the chain for new blocks and keeps what payments need —
//! the L1 block, the last initialized round and its block hash, the gas price — so that
//! receiving a payment makes no RPC call. Sender deposit/reserve/unlock state, and the reserve
//! this node may claim from each sender, are cached per sender and dropped when a
//! TicketBroker event names that sender (the claimable reserve also at each new round), so
//! the cache is never more than one poll behind the chain. The cache is bounded: the senders
//! used least recently are forgotten first.
//!
//! An RPC outage is retried with backoff and reported on the event bus (once when it starts,
//! once when it ends); the last head seen stays in use meanwhile.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use lpe_pm::params::SenderInfo;
use lpe_pm::ticket::ExpirationParams;
use serde::Serialize;
use tokio::sync::watch;

use crate::chain::{ChainClient, ChainError};
use lpe_core::events::{EventBus, EventKind, now_ms};

/// Beyond this many unseen blocks (after an outage) the sender cache is dropped whole rather
/// than reconciled from logs.
const MAX_LOG_SPAN: u64 = 10_000;
/// Senders whose state is kept.
const CACHED_SENDERS: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");

/// What is cached of one sender.
#[derive(Clone, Copy)]
struct SenderState {
    info: Option<SenderInfo>,
    /// The reserve this node may claim, and the round it was read in.
    claimable: Option<(U256, U256)>,
}

/// What the watcher last saw of the chain.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChainHead {
    pub block: u64,
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String)]
    pub l1_block: U256,
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String)]
    pub last_initialized_round: U256,
    #[serde(skip)]
    #[schema(ignore)]
    pub expiration: ExpirationParams,
    /// Wei per gas.
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String)]
    pub gas_price: U256,
    /// When this head was read, milliseconds since the Unix epoch.
    pub seen_ms: u64,
}

fn as_string<S: serde::Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// The current head as the API shows it, with whether the watcher can reach the chain.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HeadView {
    pub reachable: bool,
    pub head: Option<ChainHead>,
}

pub struct BlockWatcher {
    chain: ChainClient,
    head: watch::Sender<Option<ChainHead>>,
    senders: Mutex<lru::LruCache<Address, SenderState>>,
    /// Bumped whenever cached sender state is dropped, so a lookup that raced with the drop
    /// does not put stale state back.
    invalidations: AtomicU64,
    reachable: AtomicBool,
}

impl BlockWatcher {
    pub fn new(chain: ChainClient) -> Self {
        Self {
            chain,
            head: watch::Sender::new(None),
            senders: Mutex::new(lru::LruCache::new(CACHED_SENDERS)),
            invalidations: AtomicU64::new(0),
            reachable: AtomicBool::new(true),
        }
    }

    pub fn chain(&self) -> &ChainClient {
        &self.chain
    }

    /// The last head seen; an error until the first poll succeeded.
    pub fn head(&self) -> Result<ChainHead, ChainError> {
        self.head
            .borrow()
            .clone()
            .ok_or_else(|| ChainError::Unavailable("no block seen yet".into()))
    }

    /// Whether the last poll reached the chain.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Waits until a head is known (the first successful poll).
    pub async fn ready(&self) {
        let mut rx = self.head.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }

    /// A sender's deposit, reserve and withdraw round: from the cache, or read once and cached
    /// until a TicketBroker event names the sender.
    pub async fn sender_info(&self, sender: Address) -> Result<SenderInfo, ChainError> {
        if let Some(info) = self.lock_senders().get(&sender).and_then(|s| s.info) {
            return Ok(info);
        }
        let generation = self.invalidations.load(Ordering::Acquire);
        let info = self.chain.sender_info(sender).await?;
        self.remember(sender, generation, |s| s.info = Some(info));
        Ok(info)
    }

    /// The reserve `claimant` may claim from `sender` in the current round: from the cache, or
    /// read once per round and cached until a TicketBroker event names the sender.
    pub async fn claimable_reserve(
        &self,
        sender: Address,
        claimant: Address,
    ) -> Result<U256, ChainError> {
        let round = self.head()?.last_initialized_round;
        let cached = self.lock_senders().get(&sender).and_then(|s| s.claimable);
        if let Some((amount, at)) = cached
            && at == round
        {
            return Ok(amount);
        }
        let generation = self.invalidations.load(Ordering::Acquire);
        let amount = self.chain.claimable_reserve(sender, claimant).await?;
        self.remember(sender, generation, |s| s.claimable = Some((amount, round)));
        Ok(amount)
    }

    /// Caches what was read, unless the sender's state was dropped while it was being read.
    fn remember(&self, sender: Address, generation: u64, set: impl FnOnce(&mut SenderState)) {
        let mut cache = self.lock_senders();
        if self.invalidations.load(Ordering::Acquire) != generation {
            return;
        }
        let state = cache.get_or_insert_mut(sender, || SenderState {
            info: None,
            claimable: None,
        });
        set(state);
    }

    /// How many senders are cached.
    pub fn cached_senders(&self) -> usize {
        self.lock_senders().len()
    }

    fn lock_senders(&self) -> std::sync::MutexGuard<'_, lru::LruCache<Address, SenderState>> {
        // The map holds plain data; a panic elsewhere cannot leave it half-updated.
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget_senders(&self, which: Option<&[Address]>) {
        let mut cache = self.lock_senders();
        match which {
            Some(list) => list.iter().for_each(|a| {
                cache.pop(a);
            }),
            None => cache.clear(),
        }
        self.invalidations.fetch_add(1, Ordering::AcqRel);
    }

    /// Reads the chain once: a new head when the block moved, `None` when it did not.
    pub async fn poll(&self) -> Result<Option<ChainHead>, ChainError> {
        let (block, l1_block) = self.chain.latest_block().await?;
        let last = self.head.borrow().clone();
        if last.as_ref().is_some_and(|h| h.block == block) {
            return Ok(None);
        }
        let last_initialized_round = self.chain.last_initialized_round().await?;
        let expiration = match &last {
            Some(h) if h.last_initialized_round == last_initialized_round => h.expiration,
            _ => self.chain.expiration_params().await?,
        };
        let gas_price = self.chain.gas_price().await?;
        match &last {
            Some(h) if block > h.block && block - h.block <= MAX_LOG_SPAN => {
                let changed = self.chain.broker_event_senders(h.block + 1, block).await?;
                if !changed.is_empty() {
                    self.forget_senders(Some(&changed));
                }
            }
            // First poll, a reorg below our head, or a long outage: start the cache afresh.
            _ => self.forget_senders(None),
        }
        let head = ChainHead {
            block,
            l1_block,
            last_initialized_round,
            expiration,
            gas_price,
            seen_ms: now_ms(),
        };
        self.head.send_replace(Some(head.clone()));
        Ok(Some(head))
    }

    /// Polls every `interval` until `shutdown`; an outage backs off up to 30 s and is reported.
    pub async fn run(
        &self,
        interval: Duration,
        events: EventBus,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = interval;
        loop {
            let wait = match self.poll().await {
                Ok(_) => {
                    if !self.reachable.swap(true, Ordering::Relaxed) {
                        events.emit(None, EventKind::ChainRecovered, "chain reachable again");
                    }
                    backoff = interval;
                    interval
                }
                Err(e) => {
                    if self.reachable.swap(false, Ordering::Relaxed) {
                        events.emit(
                            None,
                            EventKind::ChainUnavailable,
                            format!("block watcher: {e}; using the last head seen"),
                        );
                    }
                    let w = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    w
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    pub fn view(&self) -> HeadView {
        HeadView {
            reachable: self.reachable(),
            head: self.head.borrow().clone(),
        }
    }
}
