//! Typed configuration: defaults ← TOML file ← environment (`LPE_…`) ← command-line flags.
//!
//! Every layer is merged into one TOML table before a single typed deserialisation, so an
//! error always names the key it concerns (`hls.segment_seconds`), whatever layer set it.
//! The defaults alone form a valid configuration: the node runs with nothing set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lpe_core::role::NetworkRole;
use serde::{Deserialize, Serialize};

/// A configuration that cannot be used. The node refuses to start (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {message}")]
pub struct ConfigError {
    /// The dotted key (`http.listen`) or the file the error concerns.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the database, HLS output and other state live.
    pub data_dir: PathBuf,
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter directive).
    pub log_level: String,
    pub http: HttpConfig,
    pub rtmp: RtmpConfig,
    pub hls: HlsConfig,
    pub media: MediaConfig,
    pub recording: RecordingConfig,
    pub pm: PmConfig,
    pub net: NetConfig,
    pub mqtt: MqttConfig,
    pub ai: AiConfig,
    pub hardware: HardwareConfig,
}

/// The box's own hardware; each part is optional, looked for again while absent, and shown
/// in the device view as found or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareConfig {
    /// The status LED (LED class): its name, or its function (`status` finds
    /// `pwr:green:status`); empty: none.
    pub status_led: String,
    /// The reset/pair button: the name of its input device (`gpio-keys`); empty: none.
    pub button: String,
    /// The button's key code on that device (`KEY_*` in `linux/input-event-codes.h`, as
    /// `evtest` shows it: 148 is `KEY_PROG1`); 0: any key on the device.
    pub button_key: u16,
    /// LM75-style I2C temperature sensors, comma-separated `<adapter>@<address>`: the
    /// adapter by device node (`/dev/i2c-1`) or by name; empty: none.
    pub i2c_temperature_sensors: String,
}

impl HardwareConfig {
    pub fn i2c_sensors(&self) -> Result<Vec<lpe_drivers::lm75::SensorSpec>, String> {
        self.i2c_temperature_sensors
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect()
    }
}

/// On-device inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiConfig {
    /// `libonnxruntime.so` to load; empty: `ORT_DYLIB_PATH`, beside the binary (`../lib`),
    /// the system's library directories, or a source checkout's `target/pyenv`.
    pub onnxruntime_path: String,
    /// Threads each inference session uses; 0: all cores but one (left to the media engine).
    pub intra_threads: u32,
    /// Object snapshots kept (`<data_dir>/snapshots`), the oldest deleted first.
    pub snapshots_kept: u32,
    /// And at most this many megabytes of them.
    pub snapshots_megabytes: u32,
}

/// The orchestrator's port on the Livepeer network: gRPC and HTTP on one listener, served
/// while `pm.role` earns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub listen: SocketAddr,
    /// What gateways are told to call, `https://host:port` (TLS, self-signed) or
    /// `http://host:port` (plain, HTTP/2 without TLS); empty: `https://` the listen address
    /// (127.0.0.1 when that is unspecified) and port.
    pub service_uri: String,
    /// Transcoding sessions at once; a gateway asking for one more is told
    /// `OrchestratorCapped`.
    pub max_sessions: u32,
    /// The largest segment accepted, megabytes.
    pub max_segment_megabytes: u32,
    /// Make a new TLS certificate at start instead of the one in `<data_dir>/net/`.
    pub new_certificate: bool,
    /// File with the secret remote transcoders present to attach to this orchestrator; empty:
    /// the LPE_NET_TRANSCODER_SECRET environment variable; neither: none may attach.
    pub transcoder_secret_file: String,
    /// `host:port` of an orchestrator this node transcodes for (the transcoder role); empty:
    /// none.
    pub orchestrator_addr: String,
    /// File with that orchestrator's secret; empty: the LPE_NET_ORCHESTRATOR_SECRET
    /// environment variable.
    pub orchestrator_secret_file: String,
    /// SHA-256 of that orchestrator's certificate (hex); empty: pinned on first use and kept
    /// in `<data_dir>/net/orchestrator.pin`.
    pub orchestrator_fingerprint: String,
    /// Sessions taken at once as a transcoder; 0: from the encoder probe.
    pub transcoder_capacity: u32,
    /// Orchestrators an offloaded stream may use, `https://host:port` (as a gateway).
    pub orchestrators: Vec<String>,
    /// The most this gateway pays, wei per `max_price_pixels_per_unit` pixels; 0: any price.
    pub max_price_per_unit: u64,
    pub max_price_pixels_per_unit: u64,
    /// A node in the signer role that signs and pays for this gateway, `http://host:port`;
    /// empty: this node's own key.
    pub remote_signer_url: String,
    /// File with the bearer token of the signer role: what a signer requires and a gateway
    /// presents; empty: the LPE_NET_SIGNER_TOKEN environment variable.
    pub signer_token_file: String,
}

/// A secret from `file` (trimmed), else from the environment variable `env`; empty is none.
pub fn secret(file: &str, env: &str) -> Result<Option<String>, String> {
    let value = if file.is_empty() {
        std::env::var(env).unwrap_or_default()
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?
    };
    let value = value.trim().to_string();
    Ok((!value.is_empty()).then_some(value))
}

/// MQTT fleet control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker, `mqtt://host:1883` or `mqtts://host:8883`; empty turns MQTT off.
    pub url: String,
    /// Topics live under `<prefix>/<device_id>/`.
    pub prefix: String,
    /// Empty: an id made at first start and kept in the database.
    pub device_id: String,
    pub username: String,
    /// File with the broker password; empty: the LPE_MQTT_PASSWORD environment variable.
    pub password_file: String,
    /// PEM file of the CA that signed the broker's certificate (mqtts); empty: the system's.
    pub ca_file: String,
    /// PEM client certificate and key for brokers that want one.
    pub client_cert: String,
    pub client_key: String,
    /// Seconds between telemetry messages.
    pub telemetry_seconds: u32,
    /// Events kept while the broker is away; the oldest are dropped beyond this.
    pub offline_queue: u32,
    /// Publish Home Assistant discovery configs (`homeassistant/…`).
    pub homeassistant: bool,
    /// `auto` (MQTT 5, falling back to 3.1.1 when the broker refuses 5) or `3.1.1`.
    pub protocol: String,
}

impl Config {
    /// The role picked at first-boot setup applies when the configuration leaves `pm.role`
    /// off and names a chain to use; the configuration wins otherwise.
    pub fn adopt_setup_role(&mut self, store: &lpe_store::Store) {
        let Ok(device) = crate::auth::Auth::device(store) else {
            return;
        };
        if !self.pm.role.is_off() || device.role.is_off() {
            return;
        }
        if self.pm.eth_url.is_empty() {
            tracing::warn!(
                "the role chosen at setup ({}) needs pm.eth_url (and a wallet); payments stay off",
                device.role
            );
            return;
        }
        tracing::info!("payments role {} (chosen at setup)", device.role);
        self.pm.role = device.role;
    }

    /// What the media engine is told.
    pub fn media_engine(&self) -> lpe_media::MediaConfig {
        lpe_media::MediaConfig {
            hls_root: self.data_dir.join("hls"),
            segment_seconds: self.hls.segment_seconds,
            max_segments: self.hls.max_segments,
            max_bytes_per_stream: u64::from(self.hls.max_megabytes_per_stream) * 1_000_000,
            x264_preset: self.media.x264_preset.clone(),
            x264_tune: self.media.x264_tune.clone(),
            silence: (self.media.silence_seconds > 0).then(|| lpe_media::Silence {
                after: std::time::Duration::from_secs(u64::from(self.media.silence_seconds)),
                below_db: f64::from(self.media.silence_db),
            }),
            recordings_root: self.recordings_dir(),
            part: (self.hls.part_milliseconds > 0)
                .then(|| std::time::Duration::from_millis(u64::from(self.hls.part_milliseconds))),
            retention: lpe_media::recording::Retention {
                max_age_days: self.recording.max_age_days,
                max_disk_percent: u8::try_from(self.recording.max_disk_percent).unwrap_or(100),
                max_bytes: self.recording.max_megabytes.saturating_mul(1_000_000),
                min_free_bytes: self.recording.min_free_megabytes.saturating_mul(1_000_000),
            },
        }
    }

    /// Where recordings are written.
    pub fn recordings_dir(&self) -> PathBuf {
        if self.recording.dir.is_empty() {
            self.data_dir.join("recordings")
        } else {
            PathBuf::from(&self.recording.dir)
        }
    }
}

impl PmConfig {
    /// Earns tickets (orchestrator or both).
    pub fn earns(&self) -> bool {
        self.role.earns()
    }
}

/// Livepeer payments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PmConfig {
    /// `off`, `gateway` (fund deposit/reserve, pay), `orchestrator` (earn tickets) or `both`;
    /// all but `off` need a keystore and `eth_url`. `off` here defers to the role chosen at
    /// first-boot setup, when `eth_url` is set.
    pub role: NetworkRole,
    /// JSON-RPC endpoint of the chain (Arbitrum One in production).
    pub eth_url: String,
    /// The Livepeer Controller; every other contract is resolved from it.
    pub controller: String,
    /// Expected value per ticket, wei.
    pub ticket_ev: String,
    /// Cap on a ticket's face value, wei; 0 means none.
    pub max_face_value: String,
    /// Price per `pixels_per_unit` pixels, wei.
    pub price_per_unit: i64,
    pub pixels_per_unit: i64,
    /// Prices for given gateways, `"0x…" = [price_per_unit, pixels_per_unit]`.
    #[serde(default)]
    pub price_per_gateway: std::collections::BTreeMap<String, [i64; 2]>,
    /// File with the keystore password; empty: the LPE_WALLET_PASSWORD environment variable.
    pub password_file: String,
    /// How often the redemption queue looks for due tickets, milliseconds.
    pub redeem_poll_ms: u32,
    /// How often the block watcher polls for a new block, milliseconds.
    pub block_poll_ms: u32,
    /// As an orchestrator, call reward once per round while the account is an active
    /// transcoder (tried at start, then each `reward_poll_ms` until done for the round).
    pub reward: bool,
    /// How often the reward call looks at the chain, milliseconds.
    pub reward_poll_ms: u32,
    /// The most one reward call may cost, wei.
    pub reward_max_fee: String,
    /// What one LPT is worth in wei; when set (non-zero), a reward call that would cost more
    /// than what it mints is worth is not sent.
    pub lpt_price: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The web UI's built files; empty: `../share/livepeer-edge/ui` beside the binary, else
    /// `web-ui/dist` under the working directory.
    pub ui_dir: String,
    /// Serve HTTPS: `<data_dir>/tls/cert.pem` and `key.pem`, made (self-signed) at first start
    /// when absent.
    pub tls: bool,
    /// Simultaneous HTTP connections; more are closed at once.
    pub max_connections: u32,
    /// Simultaneous HTTP connections from one IP address.
    pub max_connections_per_address: u32,
    /// Seconds a connection may take to send a request's headers, and may sit idle between
    /// requests.
    pub header_timeout_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpConfig {
    pub listen: SocketAddr,
    /// Host shown in push URLs (`rtmp://<public_host>:<port>/live/<key>`); empty: the
    /// listen address, or the HTTP request's host.
    pub public_host: String,
    /// Simultaneous RTMP connections accepted; more are closed at once.
    pub max_connections: u32,
    /// Simultaneous RTMP connections accepted from one IP address.
    pub max_connections_per_address: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsConfig {
    /// Target segment duration in seconds; encoders place a keyframe at each boundary.
    pub segment_seconds: u32,
    /// Segments kept on disk per rendition (the ring).
    pub max_segments: u32,
    /// Upper bound for the segments of one stream, all renditions together, in megabytes.
    /// The ring shrinks (never below 3 segments) so that the ladder's bitrates fit.
    pub max_megabytes_per_stream: u32,
    /// Low-latency HLS (`/llhls/<stream>/index.m3u8`): the part duration in milliseconds,
    /// 100 to 2000 and less than a segment; 0 turns it off.
    pub part_milliseconds: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Create a test-pattern stream on first start when no camera is found.
    pub demo_stream: bool,
    /// x264 speed preset for software encoding.
    pub x264_preset: String,
    /// x264 tune (`zerolatency` keeps latency and memory low for live streams; empty: none).
    pub x264_tune: String,
    /// Encoders tried, best first; an encoder counts only when a test encode succeeds.
    pub encoder_candidates: Vec<String>,
    /// Streams the node will run at once.
    pub max_streams: u32,
    /// Seconds of audio below `silence_db` before a stream's audio counts as silent (an
    /// event; a muted mixer is a venue's most common failure). 0: not watched.
    pub silence_seconds: u32,
    /// The level (RMS, dBFS) below which audio counts as silence.
    pub silence_db: i32,
}

/// Where recordings go and how long they stay (streams choose whether they are recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// The recordings directory, which may be on another disk; empty: `<data_dir>/recordings`.
    pub dir: String,
    /// Recordings older than this are deleted; 0: kept until space is needed.
    pub max_age_days: u32,
    /// The share of their filesystem recordings may fill, in percent.
    pub max_disk_percent: u32,
    /// A size budget for all recordings, in megabytes; 0: only the share applies.
    pub max_megabytes: u64,
    /// Free space always kept on the recordings' filesystem: below it the oldest
    /// recordings are deleted at once, and with none left recording pauses.
    pub min_free_megabytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            log_level: "info".into(),
            http: HttpConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                ui_dir: String::new(),
                tls: false,
                max_connections: 256,
                max_connections_per_address: 64,
                header_timeout_seconds: 20,
            },
            rtmp: RtmpConfig {
                listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
                public_host: String::new(),
                max_connections: 64,
                max_connections_per_address: 8,
            },
            hls: HlsConfig {
                segment_seconds: 2,
                max_segments: 8,
                max_megabytes_per_stream: 256,
                part_milliseconds: 500,
            },
            media: MediaConfig {
                demo_stream: true,
                x264_preset: "veryfast".into(),
                x264_tune: "zerolatency".into(),
                encoder_candidates: lpe_media::encoder::DEFAULT_CANDIDATES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                max_streams: 16,
                silence_seconds: 10,
                silence_db: -50,
            },
            pm: PmConfig {
                role: NetworkRole::Off,
                eth_url: String::new(),
                controller: "0xD8E8328501E9645d16Cf49539efC04f734606ee4".into(),
                ticket_ev: "8000000000".into(),
                max_face_value: "0".into(),
                price_per_unit: 1,
                pixels_per_unit: 1,
                price_per_gateway: Default::default(),
                password_file: String::new(),
                redeem_poll_ms: 2000,
                block_poll_ms: 1000,
                reward: true,
                reward_poll_ms: 60_000,
                // 0.001 ETH: about twenty reward calls on Arbitrum One at its usual gas price.
                reward_max_fee: "1000000000000000".into(),
                lpt_price: "0".into(),
            },
            net: NetConfig {
                listen: SocketAddr::from(([0, 0, 0, 0], 8935)),
                service_uri: String::new(),
                max_sessions: 10,
                max_segment_megabytes: 32,
                new_certificate: false,
                transcoder_secret_file: String::new(),
                orchestrator_addr: String::new(),
                orchestrator_secret_file: String::new(),
                orchestrator_fingerprint: String::new(),
                transcoder_capacity: 0,
                orchestrators: Vec::new(),
                max_price_per_unit: 0,
                max_price_pixels_per_unit: 1,
                remote_signer_url: String::new(),
                signer_token_file: String::new(),
            },
            recording: RecordingConfig {
                dir: String::new(),
                max_age_days: 30,
                max_disk_percent: 80,
                max_megabytes: 0,
                min_free_megabytes: 1024,
            },
            ai: AiConfig {
                onnxruntime_path: String::new(),
                intra_threads: 0,
                snapshots_kept: 2000,
                snapshots_megabytes: 256,
            },
            hardware: HardwareConfig {
                status_led: "status".into(),
                button: "gpio-keys".into(),
                button_key: 0,
                i2c_temperature_sensors: String::new(),
            },
            mqtt: MqttConfig {
                url: String::new(),
                prefix: "livepeer-edge".into(),
                device_id: String::new(),
                username: String::new(),
                password_file: String::new(),
                ca_file: String::new(),
                client_cert: String::new(),
                client_key: String::new(),
                telemetry_seconds: 30,
                offline_queue: 1000,
                homeassistant: false,
                protocol: "auto".into(),
            },
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers in force.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub http_listen: Option<String>,
    pub rtmp_listen: Option<String>,
    pub log_level: Option<String>,
}

const X264_PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];
const X264_TUNES: &[&str] = &[
    "",
    "zerolatency",
    "film",
    "animation",
    "grain",
    "stillimage",
    "psnr",
    "ssim",
    "fastdecode",
];

impl Config {
    /// Loads the configuration from its four layers. `env` is the process environment (passed
    /// in so that tests do not touch global state).
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError::new("defaults", e.to_string()))?;

        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
            })?;
            let file_table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                ConfigError::new(
                    path.display().to_string(),
                    format!("not valid TOML: {}", e.to_string().trim()),
                )
            })?;
            merge(&mut table, file_table, "")?;
        }

        for (name, value) in env {
            let Some(rest) = name.strip_prefix("LPE_") else {
                continue;
            };
            let key = key_for_env(&table, rest).ok_or_else(|| {
                ConfigError::new(
                    name.clone(),
                    format!(
                        "unknown setting; environment keys are {}",
                        env_names(&table).join(", ")
                    ),
                )
            })?;
            set_from_str(&mut table, &key, value)?;
        }

        if let Some(d) = &flags.data_dir {
            set_value(
                &mut table,
                "data_dir",
                toml::Value::String(d.display().to_string()),
            );
        }
        for (key, v) in [
            ("http.listen", &flags.http_listen),
            ("rtmp.listen", &flags.rtmp_listen),
            ("log_level", &flags.log_level),
        ] {
            if let Some(v) = v {
                set_value(&mut table, key, toml::Value::String(v.clone()));
            }
        }

        let cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::new(e.path().to_string(), e.inner().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the ranges and choices that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn range(key: &str, v: u32, lo: u32, hi: u32) -> Result<(), ConfigError> {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    key,
                    format!("{v} is out of range; allowed: {lo} to {hi}"),
                ))
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::new("data_dir", "must not be empty"));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(ConfigError::new(
                "log_level",
                format!(
                    "'{}' is not a level; allowed: error, warn, info, debug, trace",
                    self.log_level
                ),
            ));
        }
        range("hls.segment_seconds", self.hls.segment_seconds, 1, 30)?;
        range("hls.max_segments", self.hls.max_segments, 3, 1000)?;
        range("ai.intra_threads", self.ai.intra_threads, 0, 64)?;
        range("ai.snapshots_kept", self.ai.snapshots_kept, 1, 1_000_000)?;
        self.hardware
            .i2c_sensors()
            .map_err(|m| ConfigError::new("hardware.i2c_temperature_sensors", m))?;
        range(
            "ai.snapshots_megabytes",
            self.ai.snapshots_megabytes,
            1,
            1_000_000,
        )?;
        if self.hls.part_milliseconds != 0 {
            let below_segment = (self.hls.segment_seconds * 1000).saturating_sub(1).max(100);
            range(
                "hls.part_milliseconds",
                self.hls.part_milliseconds,
                100,
                below_segment.min(2000),
            )?;
        }
        range(
            "hls.max_megabytes_per_stream",
            self.hls.max_megabytes_per_stream,
            1,
            1_000_000,
        )?;
        range(
            "http.max_connections",
            self.http.max_connections,
            1,
            100_000,
        )?;
        range(
            "http.max_connections_per_address",
            self.http.max_connections_per_address,
            1,
            100_000,
        )?;
        range(
            "http.header_timeout_seconds",
            self.http.header_timeout_seconds,
            1,
            3600,
        )?;
        range("rtmp.max_connections", self.rtmp.max_connections, 1, 10_000)?;
        range(
            "rtmp.max_connections_per_address",
            self.rtmp.max_connections_per_address,
            1,
            10_000,
        )?;
        range("media.max_streams", self.media.max_streams, 1, 256)?;
        range("media.silence_seconds", self.media.silence_seconds, 0, 3600)?;
        range(
            "recording.max_age_days",
            self.recording.max_age_days,
            0,
            36_500,
        )?;
        range(
            "recording.max_disk_percent",
            self.recording.max_disk_percent,
            1,
            95,
        )?;
        if !(-100..=0).contains(&self.media.silence_db) {
            return Err(ConfigError::new("media.silence_db", "allowed: -100 to 0"));
        }
        if !X264_PRESETS.contains(&self.media.x264_preset.as_str()) {
            return Err(ConfigError::new(
                "media.x264_preset",
                format!(
                    "'{}' is not an x264 preset; allowed: {}",
                    self.media.x264_preset,
                    X264_PRESETS.join(", ")
                ),
            ));
        }
        if !X264_TUNES.contains(&self.media.x264_tune.as_str()) {
            return Err(ConfigError::new(
                "media.x264_tune",
                format!(
                    "'{}' is not an x264 tune; allowed: {}",
                    self.media.x264_tune,
                    X264_TUNES[1..].join(", ")
                ),
            ));
        }
        self.validate_pm()?;
        self.validate_net()?;
        self.validate_mqtt()?;
        if self.media.encoder_candidates.is_empty() {
            return Err(ConfigError::new(
                "media.encoder_candidates",
                "must name at least one encoder (x264enc is the software fallback)",
            ));
        }
        for c in &self.media.encoder_candidates {
            if lpe_media::encoder::EncoderKind::from_element(c).is_none() {
                return Err(ConfigError::new(
                    "media.encoder_candidates",
                    format!(
                        "'{c}' is not a supported encoder; allowed: {}",
                        lpe_media::encoder::DEFAULT_CANDIDATES.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    fn validate_mqtt(&self) -> Result<(), ConfigError> {
        let m = &self.mqtt;
        if !m.url.is_empty() {
            BrokerAddress::parse(&m.url).map_err(|e| ConfigError::new("mqtt.url", e))?;
        }
        let topic_part = |key: &str, v: &str| -> Result<(), ConfigError> {
            if v.contains(['+', '#', '\0']) || v.starts_with('/') || v.ends_with('/') {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "'{v}' cannot be part of a topic ('+', '#', NUL or a leading/trailing '/')"
                    ),
                ));
            }
            Ok(())
        };
        if !["auto", "3.1.1"].contains(&m.protocol.as_str()) {
            return Err(ConfigError::new(
                "mqtt.protocol",
                format!("'{}' is not a protocol; allowed: auto, 3.1.1", m.protocol),
            ));
        }
        if m.prefix.is_empty() {
            return Err(ConfigError::new("mqtt.prefix", "must not be empty"));
        }
        topic_part("mqtt.prefix", &m.prefix)?;
        topic_part("mqtt.device_id", &m.device_id)?;
        if m.device_id.contains('/') {
            return Err(ConfigError::new("mqtt.device_id", "must not contain '/'"));
        }
        if m.client_cert.is_empty() != m.client_key.is_empty() {
            return Err(ConfigError::new(
                "mqtt.client_key",
                "client_cert and client_key go together",
            ));
        }
        if !(1..=86_400).contains(&m.telemetry_seconds) {
            return Err(ConfigError::new(
                "mqtt.telemetry_seconds",
                format!(
                    "{} is out of range; allowed: 1 to 86400",
                    m.telemetry_seconds
                ),
            ));
        }
        if !(1..=1_000_000).contains(&m.offline_queue) {
            return Err(ConfigError::new(
                "mqtt.offline_queue",
                format!("{} is out of range; allowed: 1 to 1000000", m.offline_queue),
            ));
        }
        Ok(())
    }

    fn validate_net(&self) -> Result<(), ConfigError> {
        let n = &self.net;
        if !(1..=1000).contains(&n.max_sessions) {
            return Err(ConfigError::new(
                "net.max_sessions",
                "must be between 1 and 1000",
            ));
        }
        if n.max_price_pixels_per_unit == 0 {
            return Err(ConfigError::new(
                "net.max_price_pixels_per_unit",
                "must be at least 1",
            ));
        }
        if !n.remote_signer_url.is_empty() {
            let bad = |m: &str| ConfigError::new("net.remote_signer_url", m);
            if n.orchestrators.is_empty() {
                return Err(bad(
                    "a gateway without a key reads no chain: list its orchestrators in net.orchestrators",
                ));
            }
            let u = url::Url::parse(&n.remote_signer_url).map_err(|e| bad(&e.to_string()))?;
            if !matches!(u.scheme(), "https" | "http") || u.host_str().is_none() {
                return Err(bad("must be http://host:port or https://host:port"));
            }
        }
        for o in &n.orchestrators {
            let bad = |m: &str| ConfigError::new("net.orchestrators", format!("{o}: {m}"));
            let u = url::Url::parse(o).map_err(|e| bad(&e.to_string()))?;
            if !matches!(u.scheme(), "https" | "http") || u.host_str().is_none() {
                return Err(bad("must be https://host:port or http://host:port"));
            }
            if u.path() != "/" || o.ends_with('/') {
                return Err(bad("must not have a path"));
            }
        }
        if !(1..=300).contains(&n.max_segment_megabytes) {
            return Err(ConfigError::new(
                "net.max_segment_megabytes",
                "must be between 1 and 300",
            ));
        }
        if !n.orchestrator_addr.is_empty() {
            let bad = |m: &str| ConfigError::new("net.orchestrator_addr", m);
            let (host, port) = n
                .orchestrator_addr
                .rsplit_once(':')
                .ok_or_else(|| bad("must be host:port"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad("must be host:port"));
            }
        }
        if !n.orchestrator_fingerprint.is_empty()
            && (n.orchestrator_fingerprint.len() != 64
                || !n
                    .orchestrator_fingerprint
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ConfigError::new(
                "net.orchestrator_fingerprint",
                "must be a SHA-256 in hex (64 characters)",
            ));
        }
        if n.transcoder_capacity > 1000 {
            return Err(ConfigError::new(
                "net.transcoder_capacity",
                "must be at most 1000",
            ));
        }
        if !n.service_uri.is_empty() {
            let bad = |m: &str| ConfigError::new("net.service_uri", m);
            let u = url::Url::parse(&n.service_uri).map_err(|e| bad(&e.to_string()))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(bad("must be http:// or https://"));
            }
            if u.host_str().is_none() || u.port().is_none() {
                return Err(bad("must name a host and a port (https://host:8935)"));
            }
            if u.path() != "/" || n.service_uri.ends_with('/') || u.query().is_some() {
                return Err(bad("must be scheme://host:port, without a path"));
            }
        }
        Ok(())
    }

    /// The URI gateways are given, without a trailing slash (they append `/segment`).
    /// A gateway whose remote signer holds the key: it needs neither a keystore nor the chain.
    pub fn keyless_gateway(&self) -> bool {
        self.pm.role == NetworkRole::Gateway && !self.net.remote_signer_url.is_empty()
    }

    pub fn service_uri(&self) -> String {
        if !self.net.service_uri.is_empty() {
            return self.net.service_uri.clone();
        }
        let ip = match self.net.listen.ip() {
            ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
            ip => ip,
        };
        format!("https://{}", SocketAddr::new(ip, self.net.listen.port()))
    }

    fn validate_pm(&self) -> Result<(), ConfigError> {
        let pm = &self.pm;
        let wei = |key: &str, v: &str| -> Result<(), ConfigError> {
            v.parse::<lpe_pm::U256>().map(|_| ()).map_err(|_| {
                ConfigError::new(
                    key,
                    format!("'{v}' is not an amount in wei (a decimal integer)"),
                )
            })
        };
        wei("pm.ticket_ev", &pm.ticket_ev)?;
        wei("pm.max_face_value", &pm.max_face_value)?;
        wei("pm.reward_max_fee", &pm.reward_max_fee)?;
        wei("pm.lpt_price", &pm.lpt_price)?;
        for (address, [ppu, ppx]) in &pm.price_per_gateway {
            let key = format!("pm.price_per_gateway.{address}");
            if address.parse::<lpe_pm::Address>().is_err() {
                return Err(ConfigError::new(key, "not an Ethereum address"));
            }
            if *ppx <= 0 || *ppu < 0 {
                return Err(ConfigError::new(
                    key,
                    "must be [price_per_unit >= 0, pixels_per_unit >= 1]",
                ));
            }
        }
        if pm.pixels_per_unit <= 0 {
            return Err(ConfigError::new("pm.pixels_per_unit", "must be at least 1"));
        }
        if pm.price_per_unit < 0 {
            return Err(ConfigError::new(
                "pm.price_per_unit",
                "must not be negative",
            ));
        }
        if pm.controller.parse::<lpe_pm::Address>().is_err() {
            return Err(ConfigError::new(
                "pm.controller",
                format!("'{}' is not an Ethereum address", pm.controller),
            ));
        }
        if !(100..=3_600_000).contains(&pm.redeem_poll_ms) {
            return Err(ConfigError::new(
                "pm.redeem_poll_ms",
                "allowed: 100 to 3600000",
            ));
        }
        if !(50..=60_000).contains(&pm.block_poll_ms) {
            return Err(ConfigError::new("pm.block_poll_ms", "allowed: 50 to 60000"));
        }
        if !(100..=3_600_000).contains(&pm.reward_poll_ms) {
            return Err(ConfigError::new(
                "pm.reward_poll_ms",
                "allowed: 100 to 3600000",
            ));
        }
        let http_url = pm.eth_url.starts_with("http://") || pm.eth_url.starts_with("https://");
        if !pm.role.is_off() && !self.keyless_gateway() && !http_url {
            return Err(ConfigError::new(
                "pm.eth_url",
                "a gateway, orchestrator or signer needs the chain's JSON-RPC URL (http:// or https://)",
            ));
        }
        Ok(())
    }
}

/// Deep-merges `overlay` into `base`; keys absent from `base` are reported as unknown.
/// Tables whose keys are the operator's (a map), not settings of their own.
const MAP_TABLES: &[&str] = &["pm.price_per_gateway"];

fn merge(base: &mut toml::Table, overlay: toml::Table, prefix: &str) -> Result<(), ConfigError> {
    for (k, v) in overlay {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (base.get_mut(&k), v) {
            (Some(slot), v @ toml::Value::Table(_)) if MAP_TABLES.contains(&key.as_str()) => {
                *slot = v
            }
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o, &key)?,
            (Some(slot), v) => *slot = v,
            (None, _) => {
                let known: Vec<&str> = base.keys().map(String::as_str).collect();
                return Err(ConfigError::new(
                    key,
                    format!("unknown key; allowed here: {}", known.join(", ")),
                ));
            }
        }
    }
    Ok(())
}

/// Every leaf key of the table, dotted.
fn leaf_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => leaf_keys(t, &key, out),
            _ => out.push(key),
        }
    }
}

fn env_name(key: &str) -> String {
    format!("LPE_{}", key.replace('.', "_").to_ascii_uppercase())
}

fn env_names(table: &toml::Table) -> Vec<String> {
    let mut keys = Vec::new();
    leaf_keys(table, "", &mut keys);
    keys.iter().map(|k| env_name(k)).collect()
}

fn key_for_env(table: &toml::Table, rest: &str) -> Option<String> {
    let mut keys = Vec::new();
    leaf_keys(table, "", &mut keys);
    keys.into_iter()
        .find(|k| k.replace('.', "_").eq_ignore_ascii_case(rest))
}

fn get_value<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let first = parts.next()?;
    let mut cur = table.get(first)?;
    for p in parts {
        cur = cur.as_table()?.get(p)?;
    }
    Some(cur)
}

fn set_value(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut cur = table;
    for p in parts {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(t) = entry else { return };
        cur = t;
    }
    cur.insert(last.to_string(), value);
}

/// Sets `key` from an environment string, typed after the default value of the key.
fn set_from_str(table: &mut toml::Table, key: &str, raw: &str) -> Result<(), ConfigError> {
    let bad =
        |what: &str| ConfigError::new(key, format!("{} = '{raw}' is not {what}", env_name(key)));
    let value = match get_value(table, key) {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?)
        }
        Some(toml::Value::Boolean(_)) => match raw.trim() {
            "1" | "true" | "yes" | "on" => toml::Value::Boolean(true),
            "0" | "false" | "no" | "off" => toml::Value::Boolean(false),
            _ => return Err(bad("a boolean (true/false)")),
        },
        Some(toml::Value::Array(_)) => toml::Value::Array(
            raw.split(',')
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_string()),
    };
    set_value(table, key, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, &env(&[]), &Overrides::default()).expect("defaults load");
        assert_eq!(c, Config::default());
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.rtmp.listen.port(), 1935);
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "log_level = \"debug\"\n[http]\nlisten = \"127.0.0.1:9000\"\n[hls]\nsegment_seconds = 4\n",
        )
        .expect("write");
        let e = env(&[
            ("LPE_HTTP_LISTEN", "127.0.0.1:9001"),
            ("LPE_HLS_MAX_SEGMENTS", "12"),
            ("PATH", "/bin"),
        ]);
        let flags = Overrides {
            http_listen: Some("127.0.0.1:9002".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&file), &e, &flags).expect("load");
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.hls.segment_seconds, 4);
        assert_eq!(c.hls.max_segments, 12);
        assert_eq!(c.http.listen.port(), 9002);
    }

    #[test]
    fn errors_name_the_key() {
        let e = env(&[("LPE_HLS_SEGMENT_SECONDS", "0")]);
        let err = Config::load(None, &e, &Overrides::default()).unwrap_err();
        assert_eq!(err.key, "hls.segment_seconds");
        assert!(err.to_string().contains("allowed: 1 to 30"), "{err}");

        let e = env(&[("LPE_HLS_SEGMENT_SECONDS", "two")]);
        let err = Config::load(None, &e, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("not an integer"), "{err}");

        let e = env(&[("LPE_NO_SUCH_THING", "1")]);
        let err = Config::load(None, &e, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("unknown setting"), "{err}");

        let flags = Overrides {
            http_listen: Some("not-an-address".into()),
            ..Default::default()
        };
        let err = Config::load(None, &env(&[]), &flags).unwrap_err();
        assert_eq!(err.key, "http.listen");

        let e = env(&[("LPE_PM_ROLE", "orchestrator")]);
        let err = Config::load(None, &e, &Overrides::default()).unwrap_err();
        assert_eq!(err.key, "pm.eth_url");
        let e = env(&[("LPE_PM_TICKET_EV", "lots")]);
        let err = Config::load(None, &e, &Overrides::default()).unwrap_err();
        assert_eq!(err.key, "pm.ticket_ev");

        let e = env(&[("LPE_MEDIA_X264_PRESET", "warp")]);
        let err = Config::load(None, &e, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("ultrafast"), "{err}");
    }

    #[test]
    fn gateway_prices_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        let load = |text: &str| {
            std::fs::write(&file, text).expect("write");
            Config::load(Some(&file), &env(&[]), &Overrides::default())
        };
        let ok = load(
            "[pm.price_per_gateway]\n\"0x96216849c49358B10257cb55b28eA603c874b05E\" = [3, 2]\n",
        )
        .expect("a gateway's price");
        assert_eq!(
            ok.pm
                .price_per_gateway
                .get("0x96216849c49358B10257cb55b28eA603c874b05E"),
            Some(&[3, 2])
        );
        let err = load("[pm.price_per_gateway]\n\"gw\" = [3, 1]\n").unwrap_err();
        assert_eq!(err.key, "pm.price_per_gateway.gw");
        let err = load(
            "[pm.price_per_gateway]\n\"0x96216849c49358B10257cb55b28eA603c874b05E\" = [3, 0]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("pixels_per_unit >= 1"), "{err}");
    }

    #[test]
    fn corrupt_and_unknown_file_content_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[http\nlisten = ").expect("write");
        let err = Config::load(Some(&file), &env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");

        std::fs::write(&file, "[hls]\nsegment_secs = 3\n").expect("write");
        let err = Config::load(Some(&file), &env(&[]), &Overrides::default()).unwrap_err();
        assert_eq!(err.key, "hls.segment_secs");
        assert!(err.message.contains("segment_seconds"), "{err}");

        std::fs::write(&file, "[hls]\nsegment_seconds = \"x\"\n").expect("write");
        let err = Config::load(Some(&file), &env(&[]), &Overrides::default()).unwrap_err();
        assert_eq!(err.key, "hls.segment_seconds");
    }
}

/// A broker from `mqtt.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerAddress {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!(
                "'{url}' is not a broker URL; use mqtt://host:1883 or mqtts://host:8883"
            ));
        };
        if rest.contains('@') {
            return Err(
                "put credentials in mqtt.username and mqtt.password_file, not in the URL".into(),
            );
        }
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("'{p}' is not a port"))?;
                (h.trim_start_matches('[').trim_end_matches(']'), port)
            }
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("'{url}' has no host"));
        }
        Ok(Self {
            tls,
            host: host.to_string(),
            port,
        })
    }
}
