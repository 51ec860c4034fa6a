//! Livepeer Edge: a node that ingests cameras and RTMP/RTSP feeds, encodes a ladder on the
//! best encoder the device has, and serves HLS — run through an HTTP API.
//!
//! The binary (`main.rs`) is thin glue over [`run`]; see `ARCHITECTURE.md` for the map.

use lpe_control as control;
use lpe_core::admission;
use lpe_media as media;
use lpe_node::{self as node, config, logs};
use lpe_store as store;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use config::Config;
use lpe_core::events::{EventBus, EventKind};
use lpe_core::role::NetworkRole;
use lpe_core::supervisor::{Restart, Supervisor};
pub use lpe_node::payments::account_signer;

mod systemd;

/// Why the node could not start (exit code 1; configuration errors exit earlier with 2).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {path} is not writable: {source}")]
    DataDirNotWritable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: store::StoreError,
    },
    #[error("{0}")]
    Media(String),
    #[error("cannot listen on {what} {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("HTTPS: {0}")]
    Tls(String),
    #[error("the Livepeer network: {0}")]
    Network(String),
    #[error("the AI plane: {0}")]
    Ai(String),
}

/// The data directory holds RTSP passwords, session and CSRF tokens and the keystore: only
/// the node's user may read it. Files made from now on are private through the process's
/// umask (set in `main`); this also closes up a directory and database made before that.
fn keep_private(data_dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: std::path::PathBuf, mode: u32| {
        if p.exists()
            && let Err(e) = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
        {
            tracing::warn!("cannot make {} private: {e}", p.display());
        }
    };
    set(data_dir.to_path_buf(), 0o700);
    for f in ["node.db", "node.db-wal", "node.db-shm"] {
        set(data_dir.join(f), 0o600);
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    Stopped,
    /// A restart was requested (API or fleet): the caller starts the node again.
    Restart,
}

/// Runs the node until SIGTERM or SIGINT (or a restart command), then stops every stream
/// gracefully (playlists are finalised) and returns.
pub async fn run(cfg: Config, logs: Arc<logs::LogControl>) -> Result<RunEnd, StartError> {
    let mut cfg = cfg;
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| StartError::DataDir {
        path: cfg.data_dir.display().to_string(),
        source,
    })?;
    check_writable(&cfg.data_dir).map_err(|source| StartError::DataDirNotWritable {
        path: cfg.data_dir.display().to_string(),
        source,
    })?;
    // A factory reset asked for before the restart (or cut short by a power cut) is done
    // before anything opens the directory.
    match node::reset::finish_pending(&cfg.data_dir) {
        Ok(true) => tracing::warn!("factory reset: the data directory was erased"),
        Ok(false) => {}
        Err(source) => {
            return Err(StartError::DataDir {
                path: cfg.data_dir.display().to_string(),
                source,
            });
        }
    }
    let db_path = cfg.data_dir.join("node.db");
    let store = store::Store::open(&db_path).map_err(|source| StartError::Store {
        path: db_path.display().to_string(),
        source,
    })?;
    keep_private(&cfg.data_dir);
    media::init().map_err(StartError::Media)?;
    cfg.adopt_setup_role(&store);

    let http = TcpListener::bind(cfg.http.listen)
        .await
        .map_err(|source| StartError::Listen {
            what: "HTTP",
            addr: cfg.http.listen,
            source,
        })?;
    let network = if cfg.pm.earns() || cfg.pm.role == NetworkRole::Signer {
        Some(
            TcpListener::bind(cfg.net.listen)
                .await
                .map_err(|source| StartError::Listen {
                    what: "Livepeer network",
                    addr: cfg.net.listen,
                    source,
                })?,
        )
    } else {
        None
    };
    let rtmp = TcpListener::bind(cfg.rtmp.listen)
        .await
        .map_err(|source| StartError::Listen {
            what: "RTMP",
            addr: cfg.rtmp.listen,
            source,
        })?;

    let candidates = cfg.media.encoder_candidates.clone();
    let probing = tokio::task::spawn_blocking(move || media::encoder::probe(&candidates));
    // ONNX Runtime is loaded while the encoders are probed: each takes a second or more on a
    // small box, and neither needs the other.
    let ai_cfg = cfg.clone();
    let loading_ai = tokio::task::spawn_blocking(move || node::ai::AiPlane::start(&ai_cfg));
    let inventory = probing
        .await
        .map_err(|e| StartError::Media(format!("encoder probe failed: {e}")))?;
    for e in &inventory.encoders {
        tracing::info!(
            encoder = %e.element,
            hardware = e.hardware,
            works = e.works,
            "encoder probe: {}",
            e.detail.as_deref().unwrap_or("ok")
        );
    }
    tracing::info!("streams encode with {}", inventory.preferred);

    let events = EventBus::new();
    let engine = media::MediaEngine::new(cfg.media_engine(), inventory, events.clone());
    let registry = engine.registry();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let ai = loading_ai
        .await
        .map_err(|e| StartError::Ai(format!("loading ONNX Runtime failed: {e}")))?;
    let node = node::Node::new(
        cfg.clone(),
        node::Planes {
            store: Arc::new(store),
            ai,
            media: engine,
        },
        events.clone(),
        logs,
        Supervisor::new(shutdown_rx.clone()),
        shutdown_tx.clone(),
    );
    let recorder = node.spawn_event_recorder();
    node.close_unfinished_commands().await;

    let subsystems = &node.subsystems;
    let rtmp = Arc::new(rtmp);
    let rtmp_limits = media::rtmp::ConnectionLimits {
        total: cfg.rtmp.max_connections,
        per_address: cfg.rtmp.max_connections_per_address,
    };
    let rtmp_events = events.clone();
    subsystems.spawn("rtmp", Restart::ALWAYS, move |stop| {
        let serving = media::rtmp::serve(
            Arc::clone(&rtmp),
            registry.clone(),
            rtmp_events.clone(),
            rtmp_limits,
            stop,
        );
        async move {
            serving.await;
            Ok(())
        }
    });
    let hardware = Arc::clone(&node);
    subsystems.spawn("hardware", Restart::ALWAYS, move |stop| {
        let driving = Arc::clone(&hardware.hardware).run(Arc::clone(&hardware), stop);
        async move {
            driving.await;
            Ok(())
        }
    });
    let counters = Arc::new(control::metrics::Counters::default());
    if !cfg.mqtt.url.is_empty() {
        let (node, counters) = (Arc::clone(&node), Arc::clone(&counters));
        subsystems.spawn("mqtt", Restart::ALWAYS, move |stop| {
            let bridge = control::mqtt::run(Arc::clone(&node), Arc::clone(&counters), stop);
            async move {
                bridge.await;
                Ok(())
            }
        });
    }
    let keeper = Arc::clone(&node);
    subsystems.spawn("retention", Restart::ALWAYS, move |mut stop| {
        let node = Arc::clone(&keeper);
        async move {
            tokio::select! {
                _ = node.keep_recordings() => {}
                _ = stop.changed() => {}
            }
            Ok(())
        }
    });
    let (device, data_dir) = (Arc::clone(&node.device), cfg.data_dir.clone());
    // Checked when the configuration was loaded.
    let i2c_sensors = cfg.hardware.i2c_sensors().unwrap_or_default();
    subsystems.spawn("device", Restart::ALWAYS, move |stop| {
        let sampling = Arc::clone(&device).run(data_dir.clone(), i2c_sensors.clone(), stop);
        async move {
            sampling.await;
            Ok(())
        }
    });
    if let Some(settings) = lpe_net::transcoder::settings(&node).map_err(StartError::Network)? {
        let (node, settings) = (Arc::clone(&node), Arc::new(settings));
        let restart = Restart::WithBackoff {
            max_backoff: std::time::Duration::from_secs(60),
        };
        subsystems.spawn("transcoder", restart, move |stop| {
            lpe_net::transcoder::run(Arc::clone(&node), Arc::clone(&settings), stop)
        });
    }
    if cfg.pm.role.pays() {
        let node = Arc::clone(&node);
        subsystems.spawn("gateway", node::payments::RESTART, move |stop| {
            lpe_net::gateway::run(Arc::clone(&node), stop)
        });
    }
    // A gateway that signs through a remote signer holds no key and needs no chain.
    if !cfg.pm.role.is_off() && !cfg.keyless_gateway() {
        let node = Arc::clone(&node);
        subsystems.spawn("payments", node::payments::RESTART, move |stop| {
            node::payments::run(Arc::clone(&node), stop)
        });
    }

    if let Err(e) = node.boot().await {
        tracing::error!("could not start the stored streams: {e}");
    }
    events.emit(
        None,
        EventKind::NodeStarted,
        format!(
            "livepeer-edge {} listening: http {}, rtmp {}",
            env!("CARGO_PKG_VERSION"),
            cfg.http.listen,
            cfg.rtmp.listen
        ),
    );

    let app = control::api::router(Arc::clone(&node), counters);
    give_back_start_up_memory();
    let mut rx = shutdown_rx.clone();
    let stop = async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let limits = lpe_http::Limits {
        connections: admission::ConnectionLimits {
            total: cfg.http.max_connections,
            per_address: cfg.http.max_connections_per_address,
        },
        header_timeout: std::time::Duration::from_secs(cfg.http.header_timeout_seconds.into()),
    };
    let orchestrating = match network {
        Some(tcp) if cfg.pm.role == NetworkRole::Signer => Some(
            lpe_net::signer::start(Arc::clone(&node), tcp, shutdown_rx.clone())
                .await
                .map_err(StartError::Network)?,
        ),
        Some(tcp) => Some(
            lpe_net::server::start(Arc::clone(&node), tcp, shutdown_rx.clone())
                .map_err(StartError::Network)?,
        ),
        None => None,
    };
    let served = if cfg.http.tls {
        let tls = lpe_http::tls::server_config(
            &cfg.data_dir.join("tls"),
            &lpe_http::tls::local_names(cfg.http.listen),
            false,
        )
        .map_err(StartError::Tls)?;
        let listener = lpe_http::TlsListener::new(http, tls).map_err(StartError::Serve)?;
        tokio::spawn(lpe_http::serve(listener, app, limits, stop))
    } else {
        tokio::spawn(lpe_http::serve(http, app, limits, stop))
    };
    systemd::ready(&format!("serving http {}", cfg.http.listen));
    node.hardware.set_ready();
    let heartbeats = systemd::watchdog_period().map(|period| {
        let node = Arc::clone(&node);
        tokio::spawn(systemd::keep_beating(period, move || {
            node.list()
                .map(|_| ())
                .map_err(|e| format!("the database cannot be read: {e}"))
        }))
    });
    // A slot is marked good (and an update into it succeeds) only once this node is healthy
    // in it: the store answers, HTTP answers, the streams running before the update run.
    let verdict = {
        let node = Arc::clone(&node);
        let (listen, tls) = (cfg.http.listen, cfg.http.tls);
        tokio::spawn(async move {
            let probe = Arc::clone(&node);
            node.updater
                .after_boot(move |must_run: Vec<String>| {
                    let node = Arc::clone(&probe);
                    async move {
                        let streams = node
                            .list()
                            .map_err(|e| format!("the database cannot be read: {e}"))?;
                        systemd::http_answers(listen, tls).await?;
                        let stopped: Vec<&str> = must_run
                            .iter()
                            .filter(|id| {
                                !streams.iter().any(|s| {
                                    &s.id == *id
                                        && s.status.state == node::views::StreamState::Running
                                })
                            })
                            .map(String::as_str)
                            .collect();
                        if stopped.is_empty() {
                            Ok(())
                        } else {
                            Err(format!("streams not running again: {}", stopped.join(", ")))
                        }
                    }
                })
                .await
        })
    };
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        let _ = shutdown_tx.send(true);
    });
    let result = served
        .await
        .map_err(|e| StartError::Serve(std::io::Error::other(e)))
        .map(|()| {
            if node.restart_requested() {
                RunEnd::Restart
            } else {
                RunEnd::Stopped
            }
        });
    // A restart execs the same process, which tells systemd it is ready again.
    if !node.restart_requested() {
        systemd::stopping();
    }
    if let Some(o) = orchestrating {
        let _ = o.await;
    }
    // The MQTT bridge says "offline" on its way out; every subsystem gets a moment.
    node.subsystems
        .stop(std::time::Duration::from_secs(2))
        .await;
    node.shutdown().await;
    signals.abort();
    verdict.abort();
    if let Some(h) = heartbeats {
        h.abort();
    }
    // The last events (the stop itself) reach the store before the task ends.
    node.flush_events().await;
    recorder.abort();
    tracing::info!("stopped");
    result
}

/// Start-up allocates and frees a lot that is never needed again (the encoder probe's test
/// encodes, the API document and the access policy read from it); glibc keeps freed heap
/// pages mapped until told otherwise, so a node that is idle from then on would carry them.
fn give_back_start_up_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages to the system; it takes the allocator's
    // own locks and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A read-only or full data directory is found at start, not at the first payment.
fn check_writable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let probe = dir.join(".write-probe");
    let mut f = std::fs::File::create(&probe)?;
    f.write_all(b"ok")?;
    f.sync_all()?;
    std::fs::remove_file(&probe)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!("SIGTERM received"),
                _ = i.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
