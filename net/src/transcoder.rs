//! This node as a remote transcoder of an orchestrator (a go-livepeer one, or another node):
//! `RegisterTranscoder`, then for each `NotifySegment` the input fetched from the
//! orchestrator, transcoded with the node's media engine, and the renditions posted to
//! `/transcodeResults` with their exact pixel counts (`livepeer-wire-workers.md` W1.2–W1.5).
//!
//! Unlike go-livepeer's transcoder, which accepts any certificate (W1.8 S1), this one pins the
//! orchestrator's certificate: the configured SHA-256 fingerprint, else the one seen on first
//! use (kept in the data directory).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lpe_node::Node;
use lpe_node::transcoding::TranscoderStats;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;

use crate::proto::{Capabilities, NotifySegment, RegisterRequest, SegData};
use crate::request;

/// go-livepeer's download timeout for a task's input.
const DOWNLOAD: Duration = Duration::from_secs(4);
/// How long posting a result may take.
const UPLOAD: Duration = Duration::from_secs(30);

pub struct Settings {
    /// `host:port` of the orchestrator.
    pub orchestrator: String,
    pub secret: String,
    /// Sessions this node takes at once.
    pub capacity: i64,
    /// SHA-256 of the orchestrator's certificate (hex); empty: pinned on first use.
    pub fingerprint: String,
    /// Where the fingerprint seen first is kept.
    pub pin_file: PathBuf,
    pub max_segment_bytes: usize,
}

/// Accepts exactly one certificate: the pinned one, or (none pinned yet) the first one seen,
/// which is then kept in `pin_file`.
fn tls_config(s: &Settings, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
    let pinned = if s.fingerprint.is_empty() {
        std::fs::read_to_string(&s.pin_file)
            .ok()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
    } else {
        Some(s.fingerprint.clone())
    };
    let expected = Mutex::new(pinned);
    let pin_file = s.pin_file.clone();
    crate::tls_client::config(
        move |cert| {
            let seen = hex::encode(Sha256::digest(cert.as_ref()));
            let mut expected = expected
                .lock()
                .map_err(|_| rustls::Error::General("pin poisoned".into()))?;
            match expected.as_deref() {
                Some(pin) if pin.eq_ignore_ascii_case(&seen) => Ok(()),
                Some(pin) => Err(rustls::Error::General(format!(
                    "the orchestrator's certificate {seen} is not the pinned {pin}"
                ))),
                None => {
                    tracing::info!(fingerprint = %seen, "orchestrator certificate pinned on first use");
                    if let Some(dir) = pin_file.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    let _ = std::fs::write(&pin_file, &seen);
                    *expected = Some(seen);
                    Ok(())
                }
            }
        },
        alpn,
    )
}

/// Attaches to the orchestrator and works its tasks until the stream ends (an error, for the
/// supervisor to retry with backoff) or `shutdown`; what it does shows in the node's
/// transcoder view.
pub async fn run(
    node: Arc<Node>,
    settings: Arc<Settings>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let stats = node.transcoder_stats();
    let served = serve(node, Arc::clone(&settings), Arc::clone(&stats), shutdown).await;
    if let Err(e) = &served {
        stats.detached(&settings.orchestrator, e);
    }
    served
}

async fn serve(
    node: Arc<Node>,
    settings: Arc<Settings>,
    stats: Arc<TranscoderStats>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let uri = format!("https://{}", settings.orchestrator);
    let channel = crate::tls_client::channel(
        &uri,
        tls_config(&settings, &[b"h2"])?,
        Duration::from_secs(3),
        // Keeps a NAT mapping alive on a quiet stream.
        Some(Duration::from_secs(30)),
    )
    .await?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(&settings, &[b"h2", b"http/1.1"])?)
        .build()
        .map_err(|e| e.to_string())?;
    let mut capabilities = Capabilities::from_ids(crate::proto::capability::TRANSCODING);
    capabilities.capacities = crate::proto::capability::TRANSCODING
        .iter()
        .map(|&c| (c, 1))
        .collect();
    capabilities.version = env!("CARGO_PKG_VERSION").to_string();
    capabilities.constraints = Some(Default::default());
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let mut tasks = grpc
        .server_streaming(
            tonic::Request::new(RegisterRequest {
                secret: settings.secret.clone(),
                capacity: settings.capacity,
                capabilities: Some(capabilities),
            }),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/net.Transcoder/RegisterTranscoder",
            ),
            tonic_prost::ProstCodec::<RegisterRequest, NotifySegment>::default(),
        )
        .await
        .map_err(|e| format!("the orchestrator refused this transcoder: {}", e.message()))?
        .into_inner();
    tracing::info!(orchestrator = %settings.orchestrator, capacity = settings.capacity, "transcoding for an orchestrator");
    stats.attached(&settings.orchestrator, settings.capacity);
    let mut working = tokio::task::JoinSet::new();
    let ended = loop {
        tokio::select! {
            _ = shutdown.changed() => break Ok(()),
            next = tasks.message() => match next {
                Ok(Some(task)) => {
                    if task.url.is_empty() {
                        // A session ended: nothing is kept per session here.
                        continue;
                    }
                    let (node, settings, stats, http) =
                        (Arc::clone(&node), Arc::clone(&settings), Arc::clone(&stats), http.clone());
                    working.spawn(async move { work(node, settings, stats, http, task).await });
                }
                Ok(None) => break Err("the orchestrator closed the task stream".to_string()),
                Err(e) => break Err(format!("the task stream failed: {}", e.message())),
            },
            Some(_) = working.join_next(), if !working.is_empty() => {}
        }
    };
    // Uploads in flight finish before a reconnect (they do not need the stream).
    while working.join_next().await.is_some() {}
    ended
}

/// One task: fetch, transcode, post the result (or the error).
async fn work(
    node: Arc<Node>,
    settings: Arc<Settings>,
    stats: Arc<TranscoderStats>,
    http: reqwest::Client,
    task: NotifySegment,
) {
    let _in_flight = stats.task();
    let outcome = transcode(&node, &settings, &http, task.seg_data.as_ref(), &task.url).await;
    let (content_type, body, pixels, decoded) = match &outcome {
        Ok(done) => {
            let renditions = &done.renditions;
            let boundary = hex::encode(rand::random::<[u8; 10]>());
            let mut body = Vec::new();
            for (i, r) in renditions.iter().enumerate() {
                let lead = if i == 0 { "" } else { "\r\n" };
                body.extend_from_slice(
                    format!(
                        "{lead}--{boundary}\r\nContent-Length: {}\r\nContent-Type: video/mp2t\r\nPixels: {}\r\n\r\n",
                        r.data.len(),
                        r.pixels
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(&r.data);
            }
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let pixels: u64 = renditions.iter().map(|r| r.pixels).sum();
            (
                format!("multipart/mixed; boundary={boundary}"),
                Bytes::from(body),
                pixels,
                done.decoded_pixels,
            )
        }
        Err(e) => (
            "livepeer/transcoding-error".to_string(),
            Bytes::from(e.clone()),
            0,
            0,
        ),
    };
    match &outcome {
        Ok(_) => stats.done(pixels),
        Err(e) => {
            stats.failed(&format!("task {}: {e}", task.task_id));
            tracing::warn!(task = task.task_id, "transcoding task failed: {e}");
        }
    }
    let sent = http
        .post(format!(
            "https://{}/transcodeResults",
            settings.orchestrator
        ))
        .header("Authorization", crate::remote::RESULTS_AUTHORIZATION)
        .header("Credentials", &settings.secret)
        .header("Content-Type", content_type)
        .header("TaskId", task.task_id.to_string())
        // The input's decoded pixels (the renditions' are in their parts).
        .header("Pixels", decoded.to_string())
        .timeout(UPLOAD)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            stats.failed(&format!(
                "task {}: the result was refused ({})",
                task.task_id,
                r.status()
            ));
            tracing::warn!(task = task.task_id, status = %r.status(), "result refused");
        }
        Err(e) => {
            stats.failed(&format!(
                "task {}: cannot post the result: {e}",
                task.task_id
            ));
            tracing::warn!(task = task.task_id, "cannot post the result: {e}");
        }
    }
}

async fn transcode(
    node: &Node,
    settings: &Settings,
    http: &reqwest::Client,
    seg: Option<&SegData>,
    url: &str,
) -> Result<lpe_node::views::Transcoded, String> {
    let seg = seg.ok_or("empty seg data")?;
    let wire = if !seg.full_profiles3.is_empty() {
        &seg.full_profiles3
    } else if !seg.full_profiles2.is_empty() {
        &seg.full_profiles2
    } else {
        &seg.full_profiles
    };
    if wire.len() > request::MAX_PROFILES {
        return Err("too many profiles".into());
    }
    let profiles = wire
        .iter()
        .map(request::output_profile)
        .collect::<Result<Vec<_>, _>>()?;
    if !url.starts_with("https://") && !url.starts_with("http://") {
        return Err("only HTTP(S) inputs are fetched".into());
    }
    let data = download(http, url, settings.max_segment_bytes).await?;
    let transcoder = node.segment_transcoder();
    let done = tokio::task::spawn_blocking(move || transcoder.transcode(&data, &profiles))
        .await
        .map_err(|_| "transcoding failed".to_string())?
        .map_err(|e| e.to_string())?;
    if done.renditions.len() != wire.len() {
        return Err("segment / profile mismatch".into());
    }
    Ok(done)
}

async fn download(http: &reqwest::Client, url: &str, max: usize) -> Result<Vec<u8>, String> {
    let fetch = async {
        let mut res = http.get(url).send().await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(res.status().to_string());
        }
        let mut data = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
            if data.len() + chunk.len() > max {
                return Err("input bigger than max buffer size".to_string());
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    };
    tokio::time::timeout(DOWNLOAD, fetch)
        .await
        .map_err(|_| "the input took too long to download".to_string())?
}

/// The transcoder role's settings from the node's configuration; `None` when no
/// orchestrator is configured. A configured orchestrator without a secret is an error.
pub fn settings(node: &Node) -> Result<Option<Settings>, String> {
    let n = &node.cfg.net;
    if n.orchestrator_addr.is_empty() {
        return Ok(None);
    }
    let secret = lpe_node::config::secret(&n.orchestrator_secret_file, crate::ORCHESTRATOR_SECRET_ENV)?
        .ok_or("net.orchestrator_addr is set but no secret is (net.orchestrator_secret_file or LPE_NET_ORCHESTRATOR_SECRET)")?;
    let capacity = match n.transcoder_capacity {
        0 if node.encoders().has_hardware() => 4,
        0 => std::thread::available_parallelism()
            .map(|c| (c.get() / 2).max(1))
            .unwrap_or(1),
        c => c as usize,
    };
    Ok(Some(Settings {
        orchestrator: n.orchestrator_addr.clone(),
        secret,
        capacity: capacity as i64,
        fingerprint: n.orchestrator_fingerprint.clone(),
        pin_file: node.cfg.data_dir.join("net/orchestrator.pin"),
        max_segment_bytes: (n.max_segment_megabytes as usize) << 20,
    }))
}
