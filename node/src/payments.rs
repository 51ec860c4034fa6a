//! Payments as a subsystem of the node: unlock the account, reach the chain, and — as an
//! orchestrator — watch the chain, take payments, run the redemption queue and call reward
//! each round.

use std::sync::Arc;

use lpe_core::supervisor::Restart;
use lpe_money::{chain, payments, wallet, watcher};
use tokio::sync::watch;

use crate::Node;
use crate::config::Config;

/// The node's account as a transaction signer, unlocked with the configured password.
pub fn account_signer(
    cfg: &Config,
) -> Result<alloy::signers::local::PrivateKeySigner, wallet::WalletError> {
    let pm = &cfg.pm;
    let file = (!pm.password_file.is_empty()).then(|| std::path::PathBuf::from(&pm.password_file));
    let keystore = wallet::Keystore::new(cfg.data_dir.join("keystore"));
    let key = wallet::password(file.as_deref(), std::env::var(wallet::PASSWORD_ENV).ok())
        .and_then(|p| keystore.unlock(&p))?;
    alloy::signers::local::PrivateKeySigner::from_slice(&key.to_bytes())
        .map_err(|_| wallet::WalletError::BadKey)
}

/// The account's signing key, unlocked off the async threads (the keystore's key derivation
/// takes about a second of CPU): for the gateway and the signer role.
pub async fn unlock_account(cfg: &Config) -> Result<lpe_pm::sig::SigningKey, String> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || account_signer(&cfg))
        .await
        .map_err(|e| e.to_string())?
        .map(|s| s.credential().clone())
        .map_err(|e| format!("cannot unlock the account: {e}"))
}

/// Payments retry slowly: a wrong password or a missing keystore stays wrong until the
/// operator fixes it, and each attempt runs the keystore's key derivation.
pub const RESTART: Restart = Restart::WithBackoff {
    max_backoff: std::time::Duration::from_secs(300),
};

/// Unlocks the account, connects to the chain (retrying with backoff while it is down), then —
/// as an orchestrator — accepts payments and runs the redemption queue until shutdown.
pub async fn run(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) -> Result<(), String> {
    let pm = node.cfg.pm.clone();
    let signer = account_signer(&node.cfg)
        .map_err(|e| format!("payments disabled: cannot unlock the account: {e}"))?;
    let address = signer.address();
    let controller = pm.controller.parse().unwrap_or_default();
    let mut wait = std::time::Duration::from_secs(1);
    let chain = loop {
        match chain::ChainClient::connect(&pm.eth_url, controller, Some(signer.clone())).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(
                    "chain not reachable ({e}); retrying in {} s",
                    wait.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
            }
        }
    };
    tracing::info!(%address, broker = %chain.ticket_broker, role = %pm.role, "payments ready");
    let _ = node.chain.set(chain.clone());
    if !pm.earns() {
        return Ok(());
    }
    let watcher = Arc::new(watcher::BlockWatcher::new(chain));
    let watching = {
        let (w, events, stop) = (Arc::clone(&watcher), node.events.clone(), shutdown.clone());
        let every = std::time::Duration::from_millis(u64::from(pm.block_poll_ms));
        tokio::spawn(async move { w.run(every, events, stop).await })
    };
    tokio::select! {
        _ = watcher.ready() => {}
        _ = shutdown.changed() => return Ok(()),
    }
    let policy = lpe_pm::params::RecipientPolicy {
        ev: pm.ticket_ev.parse().unwrap_or_default(),
        redeem_gas: lpe_pm::U256::from(payments::REDEEM_GAS),
        tx_cost_multiplier: lpe_pm::U256::from(100u8),
        max_face_value: pm.max_face_value.parse().unwrap_or_default(),
    };
    let orchestrator = payments::Orchestrator::new(
        Arc::clone(&watcher),
        signer.credential().clone(),
        payments::rand_bytes(),
        policy,
        payments::Prices {
            default: (pm.price_per_unit, pm.pixels_per_unit),
            per_gateway: pm
                .price_per_gateway
                .iter()
                .filter_map(|(a, p)| Some((a.parse().ok()?, (p[0], p[1]))))
                .collect(),
        },
    );
    let _ = node.orchestrator.set(Arc::new(orchestrator));
    let rewarding = pm.reward.then(|| {
        let (tx, rx) = watch::channel(lpe_money::reward::RewardStatus::default());
        let _ = node.reward.set(rx);
        let policy = lpe_money::reward::RewardPolicy {
            max_fee: pm.reward_max_fee.parse().unwrap_or_default(),
            lpt_price: pm.lpt_price.parse().unwrap_or_default(),
        };
        let every = std::time::Duration::from_millis(u64::from(pm.reward_poll_ms));
        tokio::spawn(lpe_money::reward::run(
            watcher.chain().clone(),
            policy,
            node.events.clone(),
            tx,
            every,
            shutdown.clone(),
        ))
    });
    payments::run_redemptions(
        Arc::clone(&node.store),
        node.events.clone(),
        watcher,
        shutdown,
        std::time::Duration::from_millis(u64::from(pm.redeem_poll_ms)),
    )
    .await;
    watching.abort();
    if let Some(r) = rewarding {
        r.abort();
    }
    Ok(())
}
