//! A real local EVM for tests: hardhat 2 (npm) on a loopback port, with this project's
//! Solidity contracts (`chain-tests/`) deployed and wired through the Controller.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, U256, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolValue;

sol! {
    #[sol(rpc)]
    contract Controller {
        function setContractInfo(bytes32 _id, address _addr) external;
        function setPaused(bool _paused) external;
    }
    #[sol(rpc)]
    contract RoundsManager { function initializeRound() external; function currentRound() external view returns (uint256); }
    #[sol(rpc)]
    contract BondingManager {
        function setTicketBroker(address _broker) external;
        function register(address _transcoder) external;
        function setActive(address _transcoder, bool _active) external;
        function fees(address _transcoder) external view returns (uint256);
        function setStake(address _transcoder, uint256 _stake) external;
        function setPoolMaxSize(uint256 _size) external;
        function transcoderTotalStake(address _transcoder) external view returns (uint256);
        function lastRewardHintsExact() external view returns (bool);
    }
    #[sol(rpc)]
    contract Minter { function setCurrentMintableTokens(uint256 _amount) external; }
}

/// Hardhat's well-known development keys (accounts 0, 1, 2).
pub const DEPLOYER: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub const GATEWAY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
pub const ORCHESTRATOR: &str = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

pub fn chain_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../chain-tests")
}

pub struct Hardhat {
    child: Child,
    pub port: u16,
    pub url: String,
}

impl Hardhat {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        // npx starts hardhat as a child of its own: the pair gets a process group, and the
        // whole group is killed on drop.
        let child = Command::new("npx")
            .process_group(0)
            .args([
                "hardhat",
                "node",
                "--hostname",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .current_dir(chain_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("npx hardhat node (run scripts/test.sh to install it)");
        Self {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Hardhat {
    fn drop(&mut self) {
        super::kill_group(&mut self.child);
    }
}

pub fn key(hex_key: &str) -> PrivateKeySigner {
    hex_key.parse().expect("key")
}

pub fn bytecode(name: &str) -> Vec<u8> {
    let path = chain_dir().join("build").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).expect("compiled contract (node compile.js)");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    hex::decode(
        v["bytecode"]
            .as_str()
            .expect("bytecode")
            .trim_start_matches("0x"),
    )
    .expect("hex")
}

pub async fn deploy(p: &DynProvider, name: &str, args: Vec<u8>) -> Address {
    let mut code = bytecode(name);
    code.extend(args);
    let tx = TransactionRequest::default().with_deploy_code(code);
    let receipt = p
        .send_transaction(tx)
        .await
        .expect("deploy")
        .get_receipt()
        .await
        .expect("receipt");
    receipt.contract_address.expect("contract address")
}

/// Puts a registered transcoder in or out of the active set.
pub async fn set_active(w: &World, transcoder: Address, active: bool) {
    BondingManager::new(w.bonding, &w.admin)
        .setActive(transcoder, active)
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("setActive");
}

/// Pauses or unpauses the whole protocol (the Controller owner's switch).
pub async fn set_paused(w: &World, paused: bool) {
    Controller::new(w.controller, &w.admin)
        .setPaused(paused)
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("setPaused");
}

pub async fn mine(p: &DynProvider, blocks: u64) {
    let _: serde_json::Value = p
        .raw_request("hardhat_mine".into(), (format!("{blocks:#x}"),))
        .await
        .expect("hardhat_mine");
}

pub struct World {
    pub node: Hardhat,
    pub admin: DynProvider,
    pub controller: Address,
    pub rounds: Address,
    pub bonding: Address,
    pub minter: Address,
    pub round_length: u64,
}

/// Deploys the contracts with rounds of `round_length` blocks and initializes a round.
pub async fn world(round_length: u64) -> World {
    let node = Hardhat::start();
    let admin = ProviderBuilder::new()
        .wallet(EthereumWallet::from(key(DEPLOYER)))
        .connect_http(node.url.parse().expect("url"))
        .erased();
    let deadline = Instant::now() + Duration::from_secs(60);
    while admin.get_block_number().await.is_err() {
        assert!(Instant::now() < deadline, "hardhat did not start");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let controller = deploy(&admin, "Controller", Vec::new()).await;
    let rounds = deploy(
        &admin,
        "RoundsManager",
        U256::from(round_length).abi_encode(),
    )
    .await;
    let bonding = deploy(&admin, "BondingManager", controller.abi_encode()).await;
    let minter = deploy(&admin, "Minter", Vec::new()).await;
    let registry = deploy(&admin, "ServiceRegistry", Vec::new()).await;
    let broker = deploy(
        &admin,
        "TicketBroker",
        (controller, U256::from(2u8), U256::from(2u8)).abi_encode_params(),
    )
    .await;
    let c = Controller::new(controller, &admin);
    for (name, addr) in [
        ("TicketBroker", broker),
        ("RoundsManager", rounds),
        ("BondingManager", bonding),
        ("ServiceRegistry", registry),
        ("Minter", minter),
    ] {
        c.setContractInfo(keccak256(name), addr)
            .send()
            .await
            .expect("send")
            .get_receipt()
            .await
            .expect("register contract");
    }
    let b = BondingManager::new(bonding, &admin);
    b.setTicketBroker(broker)
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt");
    b.register(key(ORCHESTRATOR).address())
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt");
    let w = World {
        node,
        admin,
        controller,
        rounds,
        bonding,
        minter,
        round_length,
    };
    next_round(&w).await;
    w
}

/// Moves to the start of the next round and initializes it, so the round has room for the
/// transactions that follow (each one mines a block).
pub async fn next_round(w: &World) {
    let b = w.admin.get_block_number().await.expect("block number");
    let to_mine = w.round_length - 1 - (b % w.round_length);
    if to_mine > 0 {
        mine(&w.admin, to_mine).await;
    }
    initialize_round(w).await;
}

/// Initializes the current round.
pub async fn initialize_round(w: &World) {
    RoundsManager::new(w.rounds, &w.admin)
        .initializeRound()
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("initializeRound");
}

/// Imports a private key into `<data_dir>/keystore` with the CLI.
pub fn import_key(data_dir: &std::path::Path, hex_key: &str, password: &str) {
    let key_file = data_dir.join(".import.key");
    std::fs::create_dir_all(data_dir).expect("data dir");
    std::fs::write(&key_file, hex_key).expect("key");
    let out = Command::new(env!("CARGO_BIN_EXE_livepeer-edge"))
        .args(["wallet", "import", "--private-key-file"])
        .arg(&key_file)
        .arg("--data-dir")
        .arg(data_dir)
        .env("LPE_WALLET_PASSWORD", password)
        .output()
        .expect("import");
    let _ = std::fs::remove_file(&key_file);
    super::succeeded(out, "wallet import");
}

/// The environment that points a node at this chain in a payments role.
pub fn pm_env<'a>(
    url: &'a str,
    controller: &'a str,
    role: &'a str,
    password: &'a str,
) -> Vec<(&'a str, &'a str)> {
    // 0.01 ETH: faceValue == EV, so every ticket wins.
    let ev = "10000000000000000";
    vec![
        ("LPE_PM_ROLE", role),
        ("LPE_PM_ETH_URL", url),
        ("LPE_PM_CONTROLLER", controller),
        ("LPE_PM_TICKET_EV", ev),
        ("LPE_PM_MAX_FACE_VALUE", ev),
        ("LPE_PM_REDEEM_POLL_MS", "300"),
        ("LPE_PM_BLOCK_POLL_MS", "100"),
        ("LPE_WALLET_PASSWORD", password),
    ]
}

/// Starts a node in a payments role and waits until its chain connection is up.
pub fn start_payment_node(
    dir: &std::path::Path,
    url: &str,
    controller: &str,
    role: &str,
    password: &str,
) -> super::NodeProc {
    start_payment_node_wrapped(dir, url, controller, role, password, &[])
}

/// [`start_payment_node`] through a wrapper command (see `NodeProc::start_wrapped`).
pub fn start_payment_node_wrapped(
    dir: &std::path::Path,
    url: &str,
    controller: &str,
    role: &str,
    password: &str,
    wrapper: &[&str],
) -> super::NodeProc {
    start_payment_node_with(dir, url, controller, role, password, wrapper, &[])
}

/// [`start_payment_node_wrapped`] with more environment.
pub fn start_payment_node_with(
    dir: &std::path::Path,
    url: &str,
    controller: &str,
    role: &str,
    password: &str,
    wrapper: &[&str],
    extra: &[(&str, &str)],
) -> super::NodeProc {
    let mut env = pm_env(url, controller, role, password);
    env.extend_from_slice(extra);
    let node = super::NodeProc::start_wrapped(dir, &env, wrapper);
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.get("/api/pm/wallet").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "payments never became ready: {} {:?}",
            node.log(),
            node.get("/api/pm/wallet")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    if role == "orchestrator" {
        // The chain head is shown once the orchestrator takes payments.
        while node.get("/api/pm/chain").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "orchestrator never became ready: {}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    node
}

/// An orchestrator node in `dir` holding the orchestrator account's key, on the chain at
/// `url`.
pub fn start_orchestrator(
    dir: &std::path::Path,
    url: &str,
    controller: Address,
    password: &str,
) -> super::NodeProc {
    import_key(dir, ORCHESTRATOR, password);
    start_payment_node(dir, url, &controller.to_string(), "orchestrator", password)
}

/// The gateway account's ticket sender.
pub fn gateway_sender() -> lpe_pm::sender::Sender {
    lpe_pm::sender::Sender::new(
        k256::ecdsa::SigningKey::from_slice(&hex::decode(GATEWAY).expect("hex")).expect("key"),
    )
}
