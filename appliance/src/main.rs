//! `livepeer-edge`: command-line glue over the `livepeer_edge` library.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use lpe_node::config::{Config, Overrides};

#[derive(Parser)]
#[command(name = "livepeer-edge", version, about = "Livepeer Edge node")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the node (HTTP API, RTMP ingest, streams).
    Run(ConfigArgs),
    /// Print the effective configuration (defaults ← file ← LPE_* environment ← flags).
    Config(ConfigArgs),
    /// Probe the H.264 encoders and print what works, as JSON.
    Encoders(ConfigArgs),
    /// List the V4L2 cameras found, as JSON.
    Cameras,
    /// Check the database (SQLite's integrity and foreign-key checks) beside a running node:
    /// prints `ok`, or each problem and fails.
    CheckStore(ConfigArgs),
    /// Print the HTTP API's OpenAPI document (what `/api/openapi.json` serves).
    Openapi,
    /// Run a model on a packed RGB image and print its detections and timings, as JSON: a
    /// model tried by hand, and the inference benchmark.
    Detect(DetectArgs),
    /// A detector process: the node starts one per model a stream runs, and talks to it
    /// over its stdin and stdout (`lpe_ai::worker`).
    #[command(hide = true)]
    AiWorker {
        /// What to open, as JSON (`lpe_ai::worker::WorkerSpec`).
        spec: String,
    },
    /// Livepeer payment tickets.
    #[command(subcommand)]
    Ticket(TicketCmd),
    /// Gateway funds on the TicketBroker: info, fund, unlock, cancel-unlock, withdraw.
    Pm {
        #[command(subcommand)]
        command: PmCmd,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// The orchestrator on chain: status (published service URI, pool, active) and register
    /// (publish net.service_uri, or the URI given, in the ServiceRegistry).
    Orchestrator {
        #[command(subcommand)]
        command: OrchestratorCmd,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// The node's Ethereum account (a V3 keystore in <data_dir>/keystore).
    Wallet {
        #[command(subcommand)]
        command: WalletCmd,
        #[command(flatten)]
        config: ConfigArgs,
        /// File whose first line is the keystore password (else LPE_WALLET_PASSWORD).
        #[arg(long, value_name = "FILE", global = true)]
        password_file: Option<PathBuf>,
    },
}

#[derive(Args)]
struct DetectArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The .onnx file.
    #[arg(long)]
    model: PathBuf,
    /// `yolo` or `centerface`.
    #[arg(long, default_value = "centerface")]
    kind: String,
    /// The model's input size (multiples of 32).
    #[arg(long, default_value_t = 640)]
    width: u32,
    #[arg(long, default_value_t = 384)]
    height: u32,
    /// Class names, comma-separated (YOLO).
    #[arg(long, default_value = "")]
    labels: String,
    #[arg(long, default_value_t = 0.5)]
    min_score: f32,
    /// The image: packed RGB, `image_width` × `image_height` × 3 bytes.
    #[arg(long)]
    image: PathBuf,
    #[arg(long)]
    image_width: u32,
    #[arg(long)]
    image_height: u32,
    /// Runs (the first, a warm-up, is not timed).
    #[arg(long, default_value_t = 1)]
    runs: u32,
}

#[derive(Subcommand)]
enum OrchestratorCmd {
    /// Print the account's published service URI, price, pool membership and activity (JSON).
    Status,
    /// Publish the service URI gateways discovering on chain call.
    Register {
        /// Default: net.service_uri as the node serves it.
        #[arg(long, value_name = "URI")]
        service_uri: Option<String>,
    },
}

#[derive(Subcommand)]
enum PmCmd {
    /// Print the account's balance, deposit, reserve and withdraw round (JSON).
    Info,
    /// Fund the gateway's deposit and reserve (amounts in wei).
    Fund {
        #[arg(long, value_name = "WEI")]
        deposit: String,
        #[arg(long, value_name = "WEI")]
        reserve: String,
    },
    /// Start unlocking deposit and reserve (withdrawable after the unlock period).
    Unlock,
    /// Cancel an unlock in progress.
    CancelUnlock,
    /// Withdraw deposit and reserve after the unlock period.
    Withdraw,
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("livepeer-edge: {e}");
    ExitCode::FAILURE
}

/// Runs `f` with the chain client of the node's account: the offline commands that read or
/// write the chain, no node running.
fn with_chain(
    cfg: &Config,
    f: impl AsyncFnOnce(lpe_money::chain::ChainClient) -> ExitCode,
) -> ExitCode {
    use lpe_money::chain::ChainClient;
    if cfg.pm.eth_url.is_empty() {
        return fail(&"set pm.eth_url (LPE_PM_ETH_URL) to the chain's JSON-RPC URL");
    }
    let signer = match livepeer_edge::account_signer(cfg) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let controller = cfg.pm.controller.parse().unwrap_or_default();
    rt.block_on(async {
        match ChainClient::connect(&cfg.pm.eth_url, controller, Some(signer)).await {
            Ok(chain) => f(chain).await,
            Err(e) => fail(&e),
        }
    })
}

/// Sends a funding or registration transaction and prints where it was mined.
async fn send_funding(
    funding: lpe_node::Funding,
    chain: &lpe_money::chain::ChainClient,
) -> ExitCode {
    // The node's own funding command, carried out here: no node needs to run.
    match funding.send(chain).await {
        Ok((_, m)) => print_json(
            &serde_json::json!({"tx_hash": format!("{:#x}", m.tx_hash), "block": m.block}),
        ),
        Err(e) => fail(&e),
    }
}

fn orchestrator_command(cmd: OrchestratorCmd, cfg: &Config) -> ExitCode {
    let service_uri = cfg.service_uri();
    let price = (cfg.pm.price_per_unit, cfg.pm.pixels_per_unit);
    with_chain(cfg, async move |chain| match cmd {
        OrchestratorCmd::Status => match chain.orchestrator_status(&service_uri, price).await {
            Ok(status) => print_json(&status),
            Err(e) => fail(&e),
        },
        OrchestratorCmd::Register { service_uri: uri } => {
            let uri = uri.unwrap_or(service_uri);
            send_funding(lpe_node::Funding::ServiceUri(uri), &chain).await
        }
    })
}

fn pm_command(cmd: PmCmd, cfg: &Config) -> ExitCode {
    use lpe_node::Funding;
    with_chain(cfg, async move |chain| {
        let wei = |v: &str| {
            v.parse::<lpe_pm::U256>()
                .map_err(|_| format!("'{v}' is not an amount in wei"))
        };
        let funding = match cmd {
            PmCmd::Info => {
                let Some(addr) = chain.account() else {
                    return fail(&"no account");
                };
                let (balance, info) =
                    match (chain.balance(addr).await, chain.sender_info(addr).await) {
                        (Ok(b), Ok(i)) => (b, i),
                        (Err(e), _) | (_, Err(e)) => return fail(&e),
                    };
                return print_json(&serde_json::json!({
                    "address": addr.to_string(),
                    "balance": balance.to_string(),
                    "deposit": info.deposit.to_string(),
                    "reserve": info.reserve.to_string(),
                    "withdraw_round": info.withdraw_round.to_string(),
                }));
            }
            PmCmd::Fund { deposit, reserve } => match (wei(&deposit), wei(&reserve)) {
                (Ok(deposit), Ok(reserve)) => Funding::DepositAndReserve { deposit, reserve },
                (Err(e), _) | (_, Err(e)) => return fail(&e),
            },
            PmCmd::Unlock => Funding::Unlock,
            PmCmd::CancelUnlock => Funding::CancelUnlock,
            PmCmd::Withdraw => Funding::Withdraw,
        };
        send_funding(funding, &chain).await
    })
}

#[derive(Subcommand)]
enum WalletCmd {
    /// Create a new account.
    New,
    /// Import a raw private key (hex, in a file) or a keystore file from geth/go-livepeer.
    Import {
        /// File holding the private key as hex.
        #[arg(long, value_name = "FILE", conflicts_with = "keystore_file")]
        private_key_file: Option<PathBuf>,
        /// A V3 keystore JSON file (opened with the same password).
        #[arg(long, value_name = "FILE")]
        keystore_file: Option<PathBuf>,
    },
    /// Print the keystore JSON (encrypted) for backup or for geth/go-livepeer.
    Export,
    /// Print the account address.
    Address,
}

fn wallet(cmd: WalletCmd, cfg: &Config, password_file: Option<&std::path::Path>) -> ExitCode {
    use lpe_money::wallet::{Keystore, PASSWORD_ENV, WalletError, password};
    let ks = Keystore::new(cfg.data_dir.join("keystore"));
    let pw = || password(password_file, std::env::var(PASSWORD_ENV).ok());
    let result: Result<String, WalletError> = match cmd {
        WalletCmd::New => pw()
            .and_then(|p| ks.create(&p))
            .map(|(a, path)| format!("{a}\n{}", path.display())),
        WalletCmd::Import {
            private_key_file,
            keystore_file,
        } => match (private_key_file, keystore_file) {
            (Some(f), None) => std::fs::read_to_string(&f)
                .map_err(|source| WalletError::Io {
                    path: f.display().to_string(),
                    source,
                })
                .and_then(|text| {
                    hex::decode(text.trim().trim_start_matches("0x"))
                        .map_err(|_| WalletError::BadKey)
                })
                .and_then(|secret| pw().and_then(|p| ks.import_key(&secret, &p)))
                .map(|(a, path)| format!("{a}\n{}", path.display())),
            (None, Some(f)) => pw()
                .and_then(|p| ks.import_keystore(&f, &p))
                .map(|(a, path)| format!("{a}\n{}", path.display())),
            _ => {
                eprintln!("livepeer-edge: give --private-key-file or --keystore-file");
                return ExitCode::from(2);
            }
        },
        WalletCmd::Export => ks.export(),
        WalletCmd::Address => ks.address().map(|a| a.to_string()),
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("livepeer-edge: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Subcommand)]
enum TicketCmd {
    /// Decode a `Livepeer-Payment` header (base64) and check every ticket in it; prints JSON.
    Inspect {
        /// The header value (standard base64 of a protobuf Payment); `-` reads it from stdin.
        header: String,
        /// The recipient's random value (hex, 0x optional) to run the win test.
        #[arg(long, value_name = "HEX")]
        recipient_rand: Option<String>,
    },
}

fn ticket_inspect(header: &str, rand: Option<&str>) -> ExitCode {
    let rand = match rand.map(|r| {
        let digits = r.trim().trim_start_matches("0x");
        lpe_pm::U256::from_str_radix(digits, 16)
    }) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            eprintln!("livepeer-edge: --recipient-rand is not a 256-bit hex number: {e}");
            return ExitCode::FAILURE;
        }
    };
    let header = if header == "-" {
        let mut text = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
            eprintln!("livepeer-edge: cannot read the header from stdin: {e}");
            return ExitCode::FAILURE;
        }
        text
    } else {
        header.to_string()
    };
    match lpe_pm::inspect::inspect(&header, rand) {
        Ok(report) => print_json(&report),
        Err(e) => {
            eprintln!("livepeer-edge: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Args)]
struct ConfigArgs {
    /// TOML configuration file (also LPE_CONFIG).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Where the database and HLS output live (default ./data).
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// HTTP listen address (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR", global = true)]
    http_listen: Option<String>,
    /// RTMP listen address (default 0.0.0.0:1935).
    #[arg(long, value_name = "ADDR", global = true)]
    rtmp_listen: Option<String>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", global = true)]
    log_level: Option<String>,
}

fn load(args: ConfigArgs) -> Result<Config, ExitCode> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    let file = args
        .config
        .or_else(|| env.remove("LPE_CONFIG").map(PathBuf::from));
    env.remove("LPE_CONFIG");
    // Secrets, not settings: read where they are used, never part of the configuration.
    env.remove(lpe_money::wallet::PASSWORD_ENV);
    env.remove(lpe_control::mqtt::PASSWORD_ENV);
    env.remove(lpe_net::TRANSCODER_SECRET_ENV);
    env.remove(lpe_net::ORCHESTRATOR_SECRET_ENV);
    env.remove(lpe_net::signer::TOKEN_ENV);
    let flags = Overrides {
        data_dir: args.data_dir,
        http_listen: args.http_listen,
        rtmp_listen: args.rtmp_listen,
        log_level: args.log_level,
    };
    Config::load(file.as_deref(), &env, &flags).map_err(|e| {
        eprintln!("livepeer-edge: {e}");
        ExitCode::from(2)
    })
}

/// Replaces this process with a fresh copy of itself (same arguments, same pid), so a
/// restart works with or without a service manager.
fn restart_self() -> ExitCode {
    use std::os::unix::process::CommandExt;
    tracing::info!("restarting");
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let exe = std::env::current_exe().unwrap_or_else(|_| "livepeer-edge".into());
    let err = std::process::Command::new(exe).args(args).exec();
    eprintln!("livepeer-edge: cannot restart: {err}");
    ExitCode::FAILURE
}

/// `detect`: timings of the session's run alone and of the whole detection (letterbox,
/// run, decoding, suppression), medians over the timed runs.
fn detect(args: DetectArgs) -> ExitCode {
    let fail = |e: String| {
        eprintln!("livepeer-edge: {e}");
        ExitCode::FAILURE
    };
    let cfg = match load(args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match lpe_ai::runtime::Runtime::load(
        std::path::Path::new(&cfg.ai.onnxruntime_path),
        cfg.ai.intra_threads as usize,
    ) {
        Ok(rt) => rt,
        Err(report) => return fail(report.error.unwrap_or_default()),
    };
    let kind = match args.kind.as_str() {
        "yolo" => lpe_ai::session::ModelKind::Yolo,
        "centerface" => lpe_ai::session::ModelKind::Centerface,
        other => return fail(format!("--kind {other}: yolo or centerface")),
    };
    let descriptor = lpe_ai::session::Descriptor {
        name: args.model.display().to_string(),
        kind,
        width: args.width,
        height: args.height,
        labels: args
            .labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        min_score: args.min_score,
        nms_iou: if kind == lpe_ai::session::ModelKind::Centerface {
            0.3
        } else {
            0.45
        },
        layout: None,
    };
    let mut detector = match lpe_ai::session::Detector::open(&rt, &args.model, descriptor) {
        Ok(d) => d,
        Err(e) => return fail(e.to_string()),
    };
    let rgb = match std::fs::read(&args.image) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", args.image.display())),
    };
    let Some(frame) = lpe_ai::detect::Frame::packed(args.image_width, args.image_height, &rgb)
    else {
        return fail("the image is smaller than its width × height × 3".into());
    };
    let mut inference = Vec::new();
    let mut total = Vec::new();
    let mut detections = Vec::new();
    for i in 0..args.runs.max(1) + 1 {
        let started = std::time::Instant::now();
        match detector.detect(&frame) {
            Ok(d) => detections = d,
            Err(e) => return fail(e.to_string()),
        }
        if i > 0 {
            total.push(started.elapsed().as_secs_f64() * 1000.0);
            inference.push(detector.last_inference.as_secs_f64() * 1000.0);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (inference_ms, total_ms) = (median(&mut inference), median(&mut total));
    print_json(&serde_json::json!({
        "provider": detector.provider,
        "threads": rt.report.intra_threads,
        "runs": args.runs.max(1),
        "inference_ms_p50": inference_ms,
        "total_ms_p50": total_ms,
        "overhead_percent": (total_ms - inference_ms) / inference_ms * 100.0,
        "detections": detections,
    }))
}

fn print_json<T: serde::Serialize>(v: &T) -> ExitCode {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("livepeer-edge: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Makes glibc give large freed blocks back to the system. Its default threshold for serving
/// an allocation with its own mapping rises to the size of any such block freed, so after a
/// burst of password hashes (19 MiB each) those blocks would stay in the heap for good; a
/// fixed threshold keeps them mapped and returned on free.
fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Raises the soft limit on open files to the hard one: every connection, pipeline and
/// segment is a descriptor, and the usual soft limit of 1024 is reached long before the
/// node's own connection caps.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct passed, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> ExitCode {
    // Everything the node writes (database, keystore, keys, recordings) is its own: files
    // 0600, directories 0700.
    // SAFETY: umask only sets the process's file-mode mask.
    unsafe {
        libc::umask(0o077);
    }
    raise_open_file_limit();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(args) => {
            return_freed_memory();
            let cfg = match load(args) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let logs = lpe_node::logs::LogControl::init(&cfg.log_level);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("livepeer-edge: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(livepeer_edge::run(cfg, logs)) {
                Ok(livepeer_edge::RunEnd::Stopped) => ExitCode::SUCCESS,
                Ok(livepeer_edge::RunEnd::Restart) => {
                    drop(rt);
                    restart_self()
                }
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("livepeer-edge: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Config(args) => match load(args) {
            Ok(cfg) => match toml::to_string_pretty(&cfg) {
                Ok(s) => {
                    print!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("livepeer-edge: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(code) => code,
        },
        Cmd::Encoders(args) => {
            let cfg = match load(args) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Err(e) = lpe_media::init() {
                eprintln!("livepeer-edge: {e}");
                return ExitCode::FAILURE;
            }
            print_json(&lpe_media::encoder::probe(&cfg.media.encoder_candidates))
        }
        Cmd::Cameras => print_json(&lpe_drivers::camera::discover()),
        Cmd::CheckStore(args) => {
            let cfg = match load(args) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match lpe_store::check(&cfg.data_dir.join("node.db")) {
                Ok(problems) if problems.is_empty() => {
                    println!("ok");
                    ExitCode::SUCCESS
                }
                Ok(problems) => {
                    for p in problems {
                        println!("{p}");
                    }
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("livepeer-edge: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Detect(args) => detect(args),
        Cmd::AiWorker { spec } => match lpe_ai::worker::main(&spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("livepeer-edge ai-worker: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Openapi => match lpe_control::api::openapi().to_pretty_json() {
            Ok(doc) => {
                println!("{doc}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("livepeer-edge: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Pm { command, config } => match load(config) {
            Ok(cfg) => pm_command(command, &cfg),
            Err(code) => code,
        },
        Cmd::Orchestrator { command, config } => match load(config) {
            Ok(cfg) => orchestrator_command(command, &cfg),
            Err(code) => code,
        },
        Cmd::Wallet {
            command,
            config,
            password_file,
        } => match load(config) {
            Ok(cfg) => wallet(command, &cfg, password_file.as_deref()),
            Err(code) => code,
        },
        Cmd::Ticket(TicketCmd::Inspect {
            header,
            recipient_rand,
        }) => ticket_inspect(&header, recipient_rand.as_deref()),
    }
}
