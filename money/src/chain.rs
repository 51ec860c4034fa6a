//! The chain: alloy bindings for the Livepeer contracts, resolved from the Controller by the
//! keccak of their names. The only module that speaks JSON-RPC.
//!
//! Reverts come back as values carrying the contract's exact revert string, so callers can
//! tell a non-retryable failure ("ticket is used") from a transient one (RPC down).

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use lpe_pm::params::SenderInfo;
use lpe_pm::ticket::{ExpirationParams, Ticket};

sol! {
    #[sol(rpc)]
    contract IController {
        function getContract(bytes32 _id) external view returns (address);
    }

    #[sol(rpc)]
    contract IRoundsManager {
        function currentRound() external view returns (uint256);
        function lastInitializedRound() external view returns (uint256);
        function currentRoundInitialized() external view returns (bool);
        function blockHashForRound(uint256 _round) external view returns (bytes32);
        function initializeRound() external;
    }

    #[sol(rpc)]
    contract IBondingManager {
        function getTranscoderPoolSize() external view returns (uint256);
        function isActiveTranscoder(address _transcoder) external view returns (bool);
        function getFirstTranscoderInPool() external view returns (address);
        function getNextTranscoderInPool(address _transcoder) external view returns (address);
        function getTranscoder(address _transcoder) external view returns (uint256 lastRewardRound, uint256 rewardCut, uint256 feeShare, uint256 lastActiveStakeUpdateRound, uint256 activationRound, uint256 deactivationRound, uint256 activeCumulativeRewards, uint256 cumulativeRewards, uint256 cumulativeFees, uint256 lastFeeRound);
        function transcoderTotalStake(address _transcoder) external view returns (uint256);
        function getTotalBonded() external view returns (uint256);
        function getTranscoderPoolMaxSize() external view returns (uint256);
        function getTranscoderEarningsPoolForRound(address _transcoder, uint256 _round) external view returns (uint256 totalStake, uint256 transcoderRewardCut, uint256 transcoderFeeShare, uint256 cumulativeRewardFactor, uint256 cumulativeFeeFactor);
        function rewardWithHint(address _newPosPrev, address _newPosNext) external;
        event Reward(address indexed transcoder, uint256 amount);
    }

    #[sol(rpc)]
    contract IMinter {
        function currentMintableTokens() external view returns (uint256);
    }

    #[sol(rpc)]
    contract IServiceRegistry {
        function setServiceURI(string calldata _serviceURI) external;
        function getServiceURI(address _addr) external view returns (string memory);
    }

    #[sol(rpc)]
    contract ITicketBroker {
        struct Ticket {
            address recipient;
            address sender;
            uint256 faceValue;
            uint256 winProb;
            uint256 senderNonce;
            bytes32 recipientRandHash;
            bytes auxData;
        }
        struct Sender {
            uint256 deposit;
            uint256 withdrawRound;
        }
        struct ReserveInfo {
            uint256 fundsRemaining;
            uint256 claimedInCurrentRound;
        }
        event WinningTicketRedeemed(address indexed sender, address indexed recipient, uint256 faceValue, uint256 winProb, uint256 senderNonce, uint256 recipientRand, bytes auxData);
        event WinningTicketTransfer(address indexed sender, address indexed recipient, uint256 amount);

        function fundDepositAndReserve(uint256 _depositAmount, uint256 _reserveAmount) external payable;
        function redeemWinningTicket(Ticket memory _ticket, bytes memory _sig, uint256 _recipientRand) external;
        function unlock() external;
        function cancelUnlock() external;
        function withdraw() external;
        function getSenderInfo(address _sender) external view returns (Sender memory sender, ReserveInfo memory reserve);
        function usedTickets(bytes32 _hash) external view returns (bool);
        function claimableReserve(address _reserveHolder, address _claimant) external view returns (uint256);
        function getTicketHash(Ticket memory _ticket) external pure returns (bytes32);
        function ticketValidityPeriod() external view returns (uint256);
    }
}

/// Where the account stands for this round's reward call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardRound {
    pub current_round: U256,
    pub initialized: bool,
    pub last_reward_round: U256,
    pub active: bool,
}

/// What a reward call would mint and where the account lands in the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardCall {
    /// go-livepeer's estimate: mintable × the account's active stake / total bonded.
    pub estimated_reward: U256,
    pub prev: Address,
    pub next: Address,
    /// Gas the call is estimated to use, with the margin every transaction gets.
    pub gas: u64,
    /// Wei per gas now.
    pub gas_price: U256,
}

impl RewardCall {
    /// The most the call can cost, wei.
    pub fn fee(&self) -> U256 {
        U256::from(self.gas).saturating_mul(self.gas_price)
    }
}

/// A reward call that was mined, with what the BondingManager minted for the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewarded {
    pub mined: Mined,
    pub minted: U256,
    /// Wei the transaction cost (gas used × effective gas price).
    pub fee: U256,
}

/// The most pool entries read for an orchestrator's status.
const POOL_LIMIT: usize = 1000;

/// This account as an orchestrator on chain (`livepeer-edge orchestrator status`, the API).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct OrchestratorStatus {
    pub address: String,
    /// What this node serves (`net.service_uri`).
    pub service_uri: String,
    /// What the ServiceRegistry holds for the account (empty: nothing published).
    pub published_service_uri: String,
    pub published_matches: bool,
    /// The price gateways are quoted (the node's own, not on chain): wei per
    /// `pixels_per_unit` pixels.
    pub price_per_unit: i64,
    pub pixels_per_unit: i64,
    /// In the BondingManager's transcoder pool.
    pub in_pool: bool,
    /// Active this round.
    pub active: bool,
    pub pool_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The contract refused: the exact revert string. Not worth retrying.
    #[error("reverted: {0}")]
    Reverted(String),
    /// The node could not be reached or answered oddly: retry with backoff.
    #[error("chain unavailable: {0}")]
    Unavailable(String),
    #[error("{0} is not registered in the Controller")]
    Unresolved(&'static str),
    #[error("no account configured to send transactions")]
    NoSigner,
}

fn classify(e: alloy::contract::Error) -> ChainError {
    if let Some(data) = e.as_revert_data()
        && let Some(reason) = alloy::sol_types::decode_revert_reason(&data)
    {
        // decode_revert_reason renders Error(string) as "revert: <reason>".
        let reason = reason
            .strip_prefix("revert: ")
            .unwrap_or(&reason)
            .to_string();
        return ChainError::Reverted(reason);
    }
    let text = e.to_string();
    if text.contains("revert") || text.contains("execution reverted") {
        ChainError::Reverted(text)
    } else {
        ChainError::Unavailable(text)
    }
}

fn unavailable(e: impl std::fmt::Display) -> ChainError {
    ChainError::Unavailable(e.to_string())
}

/// Gas limit headroom over `eth_estimateGas`, in percent: a redemption's gas use varies with
/// state that can change between the estimate and the block (go-livepeer adds a margin too).
const GAS_MARGIN_PERCENT: u64 = 20;

/// The reverts of `redeemWinningTicket` that no retry can change: the ticket itself is bad,
/// used or too old. Anything else (a paused system, an uninitialized round, an unregistered
/// transcoder, an unlocked or empty sender) may pass later and is retried.
pub fn revert_is_permanent(reason: &str) -> bool {
    const PERMANENT: &[&str] = &[
        "ticket is used",
        "ticket is expired",
        "ticket did not win",
        "recipientRand does not match recipientRandHash",
        "invalid signature over ticket hash",
        "INVALID_SIGNATURE_LENGTH",
        "ECDSA:",
        "ticket recipient is null address",
        "ticket sender is null address",
        "invalid length for ticket auxData",
        "ticket creationRoundBlockHash invalid for creationRound",
        "ticket creationRound does not have a block hash",
        // Mined and reverted: go-livepeer does not retry these either.
        "transaction failed",
    ];
    PERMANENT.iter().any(|p| reason.contains(p))
}

/// A redemption that was mined: its transaction and what the broker actually transferred
/// (`WinningTicketTransfer`; zero when the sender had nothing left to pay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    pub mined: Mined,
    pub paid: U256,
}

/// A transaction that made it into a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mined {
    pub tx_hash: B256,
    pub block: u64,
}

/// A connection to the chain with the Livepeer contracts resolved.
#[derive(Clone)]
pub struct ChainClient {
    provider: DynProvider,
    from: Option<Address>,
    pub controller: Address,
    pub ticket_broker: Address,
    pub rounds_manager: Address,
    pub bonding_manager: Address,
}

fn mined(receipt: &alloy::rpc::types::TransactionReceipt) -> Mined {
    Mined {
        tx_hash: receipt.transaction_hash,
        block: receipt.block_number.unwrap_or(0),
    }
}

impl std::fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClient")
            .field("from", &self.from)
            .field("controller", &self.controller)
            .field("ticket_broker", &self.ticket_broker)
            .finish_non_exhaustive()
    }
}

impl ChainClient {
    /// Connects to `rpc_url` and resolves the contracts from the Controller. With `signer`
    /// the client can send transactions from that account.
    pub async fn connect(
        rpc_url: &str,
        controller: Address,
        signer: Option<PrivateKeySigner>,
    ) -> Result<Self, ChainError> {
        let url = rpc_url.parse().map_err(unavailable)?;
        let from = signer.as_ref().map(|s| s.address());
        let provider = match signer {
            Some(s) => ProviderBuilder::new()
                .wallet(EthereumWallet::from(s))
                .connect_http(url)
                .erased(),
            None => ProviderBuilder::new().connect_http(url).erased(),
        };
        let c = IController::new(controller, &provider);
        let resolve = async |name: &'static str| -> Result<Address, ChainError> {
            let a = c
                .getContract(keccak256(name.as_bytes()))
                .call()
                .await
                .map_err(classify)?;
            if a == Address::ZERO {
                Err(ChainError::Unresolved(name))
            } else {
                Ok(a)
            }
        };
        let ticket_broker = resolve("TicketBroker").await?;
        let rounds_manager = resolve("RoundsManager").await?;
        let bonding_manager = resolve("BondingManager").await?;
        Ok(Self {
            provider,
            from,
            controller,
            ticket_broker,
            rounds_manager,
            bonding_manager,
        })
    }

    pub fn account(&self) -> Option<Address> {
        self.from
    }

    /// The latest block: its number, and the L1 block number params expire against — the
    /// block's `l1BlockNumber` on Arbitrum, its own number on an L1 chain.
    pub async fn latest_block(&self) -> Result<(u64, U256), ChainError> {
        let block: serde_json::Value = self
            .provider
            .raw_request("eth_getBlockByNumber".into(), ("latest", false))
            .await
            .map_err(unavailable)?;
        let hex = |key: &str| -> Option<U256> {
            let v = block.get(key)?.as_str()?;
            U256::from_str_radix(v.trim_start_matches("0x"), 16).ok()
        };
        let number = hex("number")
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| ChainError::Unavailable("block without a number".into()))?;
        let l1 = hex("l1BlockNumber").unwrap_or(U256::from(number));
        Ok((number, l1))
    }

    /// Every address a TicketBroker event in `from..=to` names first (the sender or reserve
    /// holder whose deposit, reserve or unlock state the event changed).
    pub async fn broker_event_senders(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<Address>, ChainError> {
        use alloy::rpc::types::Filter;
        let filter = Filter::new()
            .address(self.ticket_broker)
            .from_block(from)
            .to_block(to);
        let logs = self.provider.get_logs(&filter).await.map_err(unavailable)?;
        Ok(logs
            .iter()
            .filter_map(|l| l.topics().get(1).map(|t| Address::from_word(*t)))
            .collect())
    }

    pub async fn block_number(&self) -> Result<u64, ChainError> {
        self.provider.get_block_number().await.map_err(unavailable)
    }

    pub async fn gas_price(&self) -> Result<U256, ChainError> {
        self.provider
            .get_gas_price()
            .await
            .map(U256::from)
            .map_err(unavailable)
    }

    pub async fn balance(&self, who: Address) -> Result<U256, ChainError> {
        self.provider.get_balance(who).await.map_err(unavailable)
    }

    pub async fn current_round(&self) -> Result<U256, ChainError> {
        IRoundsManager::new(self.rounds_manager, &self.provider)
            .currentRound()
            .call()
            .await
            .map_err(classify)
    }

    pub async fn last_initialized_round(&self) -> Result<U256, ChainError> {
        IRoundsManager::new(self.rounds_manager, &self.provider)
            .lastInitializedRound()
            .call()
            .await
            .map_err(classify)
    }

    pub async fn block_hash_for_round(&self, round: U256) -> Result<B256, ChainError> {
        IRoundsManager::new(self.rounds_manager, &self.provider)
            .blockHashForRound(round)
            .call()
            .await
            .map_err(classify)
    }

    /// Round and block hash to put in new tickets: the last initialized round, or — when its
    /// hash is zero — the round before it (go-livepeer's workaround).
    pub async fn expiration_params(&self) -> Result<ExpirationParams, ChainError> {
        let mut round = self.last_initialized_round().await?;
        let mut hash = self.block_hash_for_round(round).await?;
        if hash == B256::ZERO && round > U256::ZERO {
            round -= U256::from(1u8);
            hash = self.block_hash_for_round(round).await?;
        }
        Ok(ExpirationParams {
            creation_round: i64::try_from(round).unwrap_or(i64::MAX),
            creation_round_block_hash: hash,
        })
    }

    pub async fn sender_info(&self, sender: Address) -> Result<SenderInfo, ChainError> {
        let r = ITicketBroker::new(self.ticket_broker, &self.provider)
            .getSenderInfo(sender)
            .call()
            .await
            .map_err(classify)?;
        Ok(SenderInfo {
            deposit: r.sender.deposit,
            withdraw_round: r.sender.withdrawRound,
            reserve: r.reserve.fundsRemaining,
        })
    }

    pub async fn claimable_reserve(
        &self,
        holder: Address,
        claimant: Address,
    ) -> Result<U256, ChainError> {
        ITicketBroker::new(self.ticket_broker, &self.provider)
            .claimableReserve(holder, claimant)
            .call()
            .await
            .map_err(classify)
    }

    pub async fn pool_size(&self) -> Result<U256, ChainError> {
        IBondingManager::new(self.bonding_manager, &self.provider)
            .getTranscoderPoolSize()
            .call()
            .await
            .map_err(classify)
    }

    pub async fn is_used(&self, ticket_hash: B256) -> Result<bool, ChainError> {
        ITicketBroker::new(self.ticket_broker, &self.provider)
            .usedTickets(ticket_hash)
            .call()
            .await
            .map_err(classify)
    }

    /// `redeemWinningTicket`: simulated first (so a revert comes back with its reason and
    /// costs no gas), then sent and followed to its receipt.
    pub async fn redeem(
        &self,
        t: &Ticket,
        sig: &[u8],
        recipient_rand: U256,
    ) -> Result<Redemption, ChainError> {
        let broker = ITicketBroker::new(self.ticket_broker, &self.provider);
        let call = broker.redeemWinningTicket(
            ITicketBroker::Ticket {
                recipient: t.recipient,
                sender: t.sender,
                faceValue: t.face_value,
                winProb: t.win_prob,
                senderNonce: U256::from(t.sender_nonce),
                recipientRandHash: t.recipient_rand_hash,
                auxData: Bytes::from(t.expiration.aux_data()),
            },
            Bytes::copy_from_slice(sig),
            recipient_rand,
        );
        let receipt = self.transact_receipt(call).await?;
        Ok(Redemption {
            paid: self.transferred(&receipt, t.sender, t.recipient),
            mined: mined(&receipt),
        })
    }

    /// What `WinningTicketTransfer` events in `receipt` paid `recipient` from `sender`.
    fn transferred(
        &self,
        receipt: &alloy::rpc::types::TransactionReceipt,
        sender: Address,
        recipient: Address,
    ) -> U256 {
        use alloy::sol_types::SolEvent;
        receipt
            .inner
            .logs()
            .iter()
            .filter(|l| l.address() == self.ticket_broker)
            .filter_map(|l| ITicketBroker::WinningTicketTransfer::decode_log(&l.inner).ok())
            .filter(|e| e.sender == sender && e.recipient == recipient)
            .fold(U256::ZERO, |sum, e| sum.saturating_add(e.amount))
    }

    /// What the transaction `tx` paid `recipient` from `sender` (for a redemption sent before
    /// a crash and found mined afterwards).
    pub async fn transferred_in(
        &self,
        tx: B256,
        sender: Address,
        recipient: Address,
    ) -> Result<U256, ChainError> {
        let receipt = self
            .provider
            .get_transaction_receipt(tx)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ChainError::Unavailable(format!("no receipt for {tx:#x}")))?;
        Ok(self.transferred(&receipt, sender, recipient))
    }

    pub async fn ticket_validity_period(&self) -> Result<U256, ChainError> {
        ITicketBroker::new(self.ticket_broker, &self.provider)
            .ticketValidityPeriod()
            .call()
            .await
            .map_err(classify)
    }

    pub async fn is_active_transcoder(&self, who: Address) -> Result<bool, ChainError> {
        IBondingManager::new(self.bonding_manager, &self.provider)
            .isActiveTranscoder(who)
            .call()
            .await
            .map_err(classify)
    }

    /// The account's standing for this round's reward: the round (read on chain, not from an
    /// event cache), whether it is initialized, the account's last reward round and activity.
    pub async fn reward_round(&self) -> Result<RewardRound, ChainError> {
        let me = self.from.ok_or(ChainError::NoSigner)?;
        let rounds = IRoundsManager::new(self.rounds_manager, &self.provider);
        let bonding = IBondingManager::new(self.bonding_manager, &self.provider);
        Ok(RewardRound {
            current_round: rounds.currentRound().call().await.map_err(classify)?,
            initialized: rounds
                .currentRoundInitialized()
                .call()
                .await
                .map_err(classify)?,
            last_reward_round: bonding
                .getTranscoder(me)
                .call()
                .await
                .map_err(classify)?
                .lastRewardRound,
            active: self.is_active_transcoder(me).await?,
        })
    }

    /// Prepares `rewardWithHint` as go-livepeer's `client.Reward` does: the estimated reward,
    /// the pool hints for the account's stake after it (see [`crate::pool::hints`]), and
    /// the gas the call would use (a revert, e.g. "caller must be an active transcoder",
    /// comes back here, before anything is spent). `None` when the call would mint nothing
    /// (nothing bonded, or nothing mintable).
    pub async fn prepare_reward(&self) -> Result<Option<RewardCall>, ChainError> {
        let me = self.from.ok_or(ChainError::NoSigner)?;
        let bonding = IBondingManager::new(self.bonding_manager, &self.provider);
        let transcoder = bonding.getTranscoder(me).call().await.map_err(classify)?;
        let active_stake = bonding
            .getTranscoderEarningsPoolForRound(me, transcoder.lastActiveStakeUpdateRound)
            .call()
            .await
            .map_err(classify)?
            .totalStake;
        let minter = self.resolve("Minter").await?;
        let mintable = IMinter::new(minter, &self.provider)
            .currentMintableTokens()
            .call()
            .await
            .map_err(classify)?;
        let total_bonded = bonding.getTotalBonded().call().await.map_err(classify)?;
        let estimated_reward =
            match crate::pool::estimated_reward(mintable, active_stake, total_bonded) {
                Some(r) if !r.is_zero() => r,
                _ => return Ok(None),
            };
        let pool = self
            .walk_pool(POOL_LIMIT, |a| {
                let bonding = bonding.clone();
                async move {
                    bonding
                        .transcoderTotalStake(a)
                        .call()
                        .await
                        .map_err(classify)
                }
            })
            .await?;
        let max_size = bonding
            .getTranscoderPoolMaxSize()
            .call()
            .await
            .map_err(classify)?;
        let own_stake = pool
            .iter()
            .find(|(a, _)| *a == me)
            .map(|(_, s)| *s)
            .unwrap_or_default();
        let (prev, next) = crate::pool::hints(
            &pool,
            me,
            own_stake.saturating_add(estimated_reward),
            usize::try_from(max_size).unwrap_or(usize::MAX),
        );
        let call = bonding.rewardWithHint(prev, next);
        call.call_raw().await.map_err(classify)?;
        let estimate = call.estimate_gas().await.map_err(classify)?;
        Ok(Some(RewardCall {
            estimated_reward,
            prev,
            next,
            gas: estimate.saturating_add(estimate * GAS_MARGIN_PERCENT / 100),
            gas_price: self.gas_price().await?,
        }))
    }

    /// Sends a prepared `rewardWithHint` and follows it to its receipt; what was minted comes
    /// from the BondingManager's `Reward` event.
    pub async fn reward(&self, call: &RewardCall) -> Result<Rewarded, ChainError> {
        use alloy::sol_types::SolEvent;
        let me = self.from.ok_or(ChainError::NoSigner)?;
        let bonding = IBondingManager::new(self.bonding_manager, &self.provider);
        let receipt = self
            .transact_receipt(bonding.rewardWithHint(call.prev, call.next))
            .await?;
        let minted = receipt
            .inner
            .logs()
            .iter()
            .filter(|l| l.address() == self.bonding_manager)
            .filter_map(|l| IBondingManager::Reward::decode_log(&l.inner).ok())
            .filter(|e| e.transcoder == me)
            .fold(U256::ZERO, |sum, e| sum.saturating_add(e.amount));
        Ok(Rewarded {
            mined: mined(&receipt),
            minted,
            fee: U256::from(receipt.gas_used)
                .saturating_mul(U256::from(receipt.effective_gas_price)),
        })
    }

    /// Simulates a call (a revert comes back with its reason and costs no gas), then sends it
    /// and follows it to its receipt.
    async fn transact<D: alloy::contract::CallDecoder>(
        &self,
        call: alloy::contract::CallBuilder<&&DynProvider, D>,
    ) -> Result<Mined, ChainError> {
        Ok(mined(&self.transact_receipt(call).await?))
    }

    async fn transact_receipt<D: alloy::contract::CallDecoder>(
        &self,
        call: alloy::contract::CallBuilder<&&DynProvider, D>,
    ) -> Result<alloy::rpc::types::TransactionReceipt, ChainError> {
        self.from.ok_or(ChainError::NoSigner)?;
        call.call_raw().await.map_err(classify)?;
        let estimate = call.estimate_gas().await.map_err(classify)?;
        let call = call.gas(estimate.saturating_add(estimate * GAS_MARGIN_PERCENT / 100));
        let pending = call.send().await.map_err(classify)?;
        let receipt = pending.get_receipt().await.map_err(unavailable)?;
        if !receipt.status() {
            return Err(ChainError::Reverted("transaction failed".into()));
        }
        Ok(receipt)
    }

    /// Funds deposit and reserve in one transaction (the sender's own account).
    pub async fn fund_deposit_and_reserve(
        &self,
        deposit: U256,
        reserve: U256,
    ) -> Result<Mined, ChainError> {
        let broker = ITicketBroker::new(self.ticket_broker, &self.provider);
        self.transact(
            broker
                .fundDepositAndReserve(deposit, reserve)
                .value(deposit.saturating_add(reserve)),
        )
        .await
    }

    /// A contract looked up when needed (the ServiceRegistry only for discovery and
    /// registration, the Minter only for the reward call).
    async fn resolve(&self, name: &'static str) -> Result<Address, ChainError> {
        let a = IController::new(self.controller, &self.provider)
            .getContract(keccak256(name.as_bytes()))
            .call()
            .await
            .map_err(classify)?;
        if a == Address::ZERO {
            Err(ChainError::Unresolved(name))
        } else {
            Ok(a)
        }
    }

    async fn service_registry(&self) -> Result<Address, ChainError> {
        self.resolve("ServiceRegistry").await
    }

    /// The BondingManager's transcoder pool walked from its first entry (at most `limit`,
    /// stopping at a repeat), with what `read` says of each member.
    async fn walk_pool<T, F: Future<Output = Result<T, ChainError>>>(
        &self,
        limit: usize,
        read: impl Fn(Address) -> F,
    ) -> Result<Vec<(Address, T)>, ChainError> {
        let bonding = IBondingManager::new(self.bonding_manager, &self.provider);
        let mut pool: Vec<(Address, T)> = Vec::new();
        let mut next = bonding
            .getFirstTranscoderInPool()
            .call()
            .await
            .map_err(classify)?;
        while next != Address::ZERO && pool.len() < limit {
            if pool.iter().any(|(a, _)| *a == next) {
                break;
            }
            pool.push((next, read(next).await?));
            next = bonding
                .getNextTranscoderInPool(next)
                .call()
                .await
                .map_err(classify)?;
        }
        Ok(pool)
    }

    /// The transcoder pool as go-livepeer's on-chain discovery reads it: the BondingManager's
    /// list walked from its first entry (at most `limit`, stopping at a repeat), each with the
    /// service URI it published (empty when none).
    pub async fn orchestrator_pool(
        &self,
        limit: usize,
    ) -> Result<Vec<(Address, String)>, ChainError> {
        let registry = IServiceRegistry::new(self.service_registry().await?, &self.provider);
        self.walk_pool(limit, |a| {
            let registry = registry.clone();
            async move { registry.getServiceURI(a).call().await.map_err(classify) }
        })
        .await
    }

    /// The account as an orchestrator on chain, beside the service URI it should publish and
    /// the price it quotes (`(price_per_unit, pixels_per_unit)`).
    pub async fn orchestrator_status(
        &self,
        service_uri: &str,
        price: (i64, i64),
    ) -> Result<OrchestratorStatus, ChainError> {
        let address = self
            .from
            .ok_or_else(|| ChainError::Unavailable("no account".into()))?;
        let registry = IServiceRegistry::new(self.service_registry().await?, &self.provider);
        let published = registry
            .getServiceURI(address)
            .call()
            .await
            .map_err(classify)?;
        let active = self.is_active_transcoder(address).await?;
        let pool = self.orchestrator_pool(POOL_LIMIT).await?;
        Ok(OrchestratorStatus {
            address: address.to_string(),
            published_matches: published == service_uri,
            service_uri: service_uri.to_string(),
            published_service_uri: published,
            price_per_unit: price.0,
            pixels_per_unit: price.1,
            in_pool: pool.iter().any(|(a, _)| *a == address),
            active,
            pool_size: pool.len(),
        })
    }

    /// Publishes this account's service URI (what gateways that discover on chain call).
    pub async fn set_service_uri(&self, uri: &str) -> Result<Mined, ChainError> {
        let registry = IServiceRegistry::new(self.service_registry().await?, &self.provider);
        self.transact(registry.setServiceURI(uri.to_string())).await
    }

    pub async fn unlock(&self) -> Result<Mined, ChainError> {
        let broker = ITicketBroker::new(self.ticket_broker, &self.provider);
        self.transact(broker.unlock()).await
    }

    pub async fn cancel_unlock(&self) -> Result<Mined, ChainError> {
        let broker = ITicketBroker::new(self.ticket_broker, &self.provider);
        self.transact(broker.cancelUnlock()).await
    }

    pub async fn withdraw(&self) -> Result<Mined, ChainError> {
        let broker = ITicketBroker::new(self.ticket_broker, &self.provider);
        self.transact(broker.withdraw()).await
    }

    /// `WinningTicketRedeemed` events for a recipient since a block: (sender, faceValue,
    /// senderNonce, transaction hash).
    pub async fn redeemed_events(
        &self,
        recipient: Address,
        from_block: u64,
    ) -> Result<Vec<(Address, U256, U256, B256)>, ChainError> {
        use alloy::rpc::types::Filter;
        use alloy::sol_types::SolEvent;
        let filter = Filter::new()
            .address(self.ticket_broker)
            .event_signature(ITicketBroker::WinningTicketRedeemed::SIGNATURE_HASH)
            .topic2(recipient.into_word())
            .from_block(from_block);
        let logs = self.provider.get_logs(&filter).await.map_err(unavailable)?;
        let mut out = Vec::new();
        for log in logs {
            if let Ok(ev) = ITicketBroker::WinningTicketRedeemed::decode_log(&log.inner) {
                out.push((
                    ev.sender,
                    ev.faceValue,
                    ev.senderNonce,
                    log.transaction_hash.unwrap_or_default(),
                ));
            }
        }
        Ok(out)
    }
}
