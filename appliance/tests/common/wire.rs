//! A go-livepeer gateway's side of the wire, for tests: GetOrchestrator on the node's network
//! port, a ticket session on the params it issued, and `POST /payment` with the empty-segment
//! credentials go-livepeer sends (`livepeer-wire.md` §2.6.1).
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k256::ecdsa::SigningKey;
use lpe_net::client;
use lpe_net::proto::{
    AuthToken, Capabilities, OrchestratorInfo, PaymentResult, PriceInfo, SegData, capability,
};
use lpe_pm::recipient::price_from_info;
use lpe_pm::sender::{Sender, TicketBatch};
use lpe_pm::wire::{encode_payment_header, params_from_wire, payment_for_batch};
use prost::Message;

/// The gateway account's key (hardhat's account 1).
pub fn gateway_key() -> SigningKey {
    SigningKey::from_slice(&hex::decode(super::evm::GATEWAY).expect("hex")).expect("key")
}

/// The gateway account with 1 ETH of deposit and 1 ETH of reserve.
pub async fn funded_gateway(w: &super::evm::World) -> lpe_money::chain::ChainClient {
    funded_gateway_with(w, 1).await
}

/// The gateway account with `eth` ETH of deposit and as much reserve.
pub async fn funded_gateway_with(w: &super::evm::World, eth: u64) -> lpe_money::chain::ChainClient {
    let eth = lpe_pm::U256::from(eth) * lpe_pm::U256::from(10u64).pow(lpe_pm::U256::from(18u8));
    let c = lpe_money::chain::ChainClient::connect(
        &w.node.url,
        w.controller,
        Some(super::evm::key(super::evm::GATEWAY)),
    )
    .await
    .expect("gateway");
    c.fund_deposit_and_reserve(eth, eth).await.expect("fund");
    c
}

/// The keystore password of the test nodes.
pub const PASSWORD: &str = "pw-for-tests";

/// A node on `w`'s chain in `role`, holding the account of `key` (hex), with `env` on top of
/// the payment settings; its data in the returned directory.
pub fn payment_node(
    w: &super::evm::World,
    key: &str,
    role: &str,
    env: &[(&str, &str)],
) -> (tempfile::TempDir, super::NodeProc) {
    let dir = tempfile::tempdir().expect("tempdir");
    super::evm::import_key(dir.path(), key, PASSWORD);
    let node = super::evm::start_payment_node_with(
        dir.path(),
        &w.node.url,
        &w.controller.to_string(),
        role,
        PASSWORD,
        &[],
        env,
    );
    (dir, node)
}

/// A local EVM, the gateway funded, and an orchestrator node (the orchestrator account's key,
/// its data in the returned directory) with `env` on top of the payment settings.
pub async fn orchestrator(
    env: &[(&str, &str)],
) -> (super::evm::World, tempfile::TempDir, super::NodeProc) {
    let w = super::evm::world(10_000).await;
    funded_gateway(&w).await;
    let (dir, node) = payment_node(&w, super::evm::ORCHESTRATOR, "orchestrator", env);
    (w, dir, node)
}

/// A real 2 s H.264 MPEG-TS segment of `size` (`640x360`) at 30 fps, x264 at `preset` with a
/// keyframe every `gop` frames.
pub fn ts_segment(dir: &std::path::Path, size: &str, preset: &str, gop: u32) -> Vec<u8> {
    let out = dir.join(format!("{size}.ts"));
    let st = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=30"))
        .args(["-t", "2", "-c:v", "libx264", "-preset", preset])
        .args([
            "-g",
            &gop.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-f",
            "mpegts",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    std::fs::read(out).expect("segment")
}

/// Frames, width and height of an MPEG-TS file, by decoding it (as a gateway's check does).
pub fn decoded(bytes: &[u8], dir: &std::path::Path) -> (u64, u64, u64) {
    let f = dir.join("rendition.ts");
    std::fs::write(&f, bytes).expect("write");
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height,nb_read_frames"])
        .args(["-of", "csv=p=0"])
        .arg(&f)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    assert_eq!(v.len(), 3, "ffprobe said {text:?}");
    (v[2], v[0], v[1])
}

/// What a go-livepeer gateway asks for a plain H.264 → MPEG-TS job.
pub fn transcoding_caps() -> Capabilities {
    Capabilities {
        constraints: Some(Default::default()),
        ..Capabilities::from_ids(&[capability::H264, capability::MPEGTS, capability::AUTH_TOKEN])
    }
}

pub struct WireGateway {
    pub uri: String,
    pub key: SigningKey,
    pub info: OrchestratorInfo,
    pub token: AuthToken,
    pub price: PriceInfo,
    pub sender: Sender,
    /// The ticket session on the params of `info`.
    pub session: String,
}

impl WireGateway {
    /// Asks the node at `uri` for its info and starts a ticket session on it.
    pub async fn open(uri: &str, key: SigningKey) -> Result<Self, String> {
        let ch = client::connect(uri).await?;
        let info = client::get_orchestrator(
            ch,
            client::orchestrator_request(&key, Some(transcoding_caps())),
        )
        .await
        .map_err(|e| e.message().to_string())?;
        let token = info.auth_token.clone().ok_or("no auth token")?;
        let price = info.price_info.clone().ok_or("no price")?;
        let params = params_from_wire(info.ticket_params.as_ref().ok_or("no ticket params")?)
            .map_err(|e| e.to_string())?;
        let mut sender = Sender::new(key.clone());
        let session = sender.start_session(
            params,
            price_from_info(price.price_per_unit, price.pixels_per_unit).ok_or("zero price")?,
        );
        Ok(Self {
            uri: uri.to_string(),
            key,
            info,
            token,
            price,
            sender,
            session,
        })
    }

    pub fn params(&self) -> lpe_pm::params::TicketParams {
        params_from_wire(self.info.ticket_params.as_ref().expect("params")).expect("params")
    }

    pub fn batch(&mut self, n: u32) -> TicketBatch {
        self.sender.create_batch(&self.session, n).expect("batch")
    }

    pub fn header(&self, batch: &TicketBatch) -> String {
        encode_payment_header(&payment_for_batch(batch, &self.price))
    }

    /// `Livepeer-Segment` for a payment without work: the empty segment, this session's token.
    pub fn empty_segment(&self) -> String {
        let mut seg = SegData {
            manifest_id: self.token.session_id.clone().into_bytes(),
            seq: 0,
            hash: lpe_pm::keccak256(b"").to_vec(),
            capabilities: Some(transcoding_caps()),
            auth_token: Some(self.token.clone()),
            ..Default::default()
        };
        let digest = lpe_net::creds::segment_digest(&seg, &[]);
        seg.sig = lpe_pm::sig::sign(&self.key, digest.as_slice()).to_vec();
        STANDARD.encode(seg.encode_to_vec())
    }

    /// `POST /payment` with `payment` as the header: the status and the body (go-livepeer's
    /// text on a refusal).
    pub fn pay_header(&self, payment: &str) -> (u16, Vec<u8>) {
        // Bounded: a node that vanishes mid-answer (a VM's power cut) never says so.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(20)))
            .http_status_as_error(false)
            .build()
            .into();
        let res = agent
            .post(&format!("{}/payment", self.uri))
            .header("Livepeer-Segment", &self.empty_segment())
            .header("Livepeer-Payment", payment)
            .send_empty();
        match res {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_vec().unwrap_or_default(),
            ),
            Err(e) => (0, e.to_string().into_bytes()),
        }
    }

    /// Pays `batch`; the refreshed info on success, the status and text otherwise.
    pub fn pay(&self, batch: &TicketBatch) -> Result<OrchestratorInfo, (u16, String)> {
        let (st, body) = self.pay_header(&self.header(batch));
        if st != 200 {
            return Err((st, String::from_utf8_lossy(&body).into_owned()));
        }
        PaymentResult::decode(body.as_slice())
            .ok()
            .and_then(|r| r.info)
            .ok_or((st, "no PaymentResult".into()))
    }
}

/// An RTMP stream on `node` with `ladder`, offloaded or not, and an ffmpeg push of `size` into
/// it for `seconds`: the stream's id and the push (killed on drop).
pub fn pushed_stream(
    node: &super::NodeProc,
    name: &str,
    offload: bool,
    ladder: serde_json::Value,
    size: &str,
    seconds: u32,
) -> (String, super::FfmpegPush) {
    let s = node.create(serde_json::json!({
        "name": name,
        "source": {"kind": "rtmp"},
        "offload": offload,
        "ladder": ladder,
    }));
    let id = s["id"].as_str().expect("id").to_string();
    let key = s["stream_key"].as_str().expect("key");
    let push = super::FfmpegPush::start(&node.rtmp_url(key), size, seconds);
    (id, push)
}
