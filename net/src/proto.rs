//! go-livepeer's `net/lp_rpc.proto` messages that the orchestrator side reads and writes, with
//! their field numbers (proto3). The payment messages (`Payment`, `TicketParams`, `PriceInfo`,
//! …) are `lpe_pm::wire`'s.

use std::collections::BTreeMap;

pub use lpe_pm::wire::{Payment, PriceInfo, TicketExpirationParams, TicketParams};
use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct OrchestratorRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub address: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub sig: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    pub capabilities: Option<Capabilities>,
    #[prost(bool, tag = "4")]
    pub ignore_capacity_check: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct Capabilities {
    #[prost(uint64, repeated, tag = "1")]
    pub bitstring: Vec<u64>,
    #[prost(uint64, repeated, tag = "2")]
    pub mandatories: Vec<u64>,
    #[prost(btree_map = "uint32, uint32", tag = "3")]
    pub capacities: BTreeMap<u32, u32>,
    #[prost(string, tag = "4")]
    pub version: String,
    #[prost(message, optional, tag = "5")]
    pub constraints: Option<Constraints>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Constraints {
    #[prost(string, tag = "1")]
    pub min_version: String,
    #[prost(btree_map = "uint32, message", tag = "2")]
    pub per_capability: BTreeMap<u32, CapabilityConstraints>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CapabilityConstraints {
    #[prost(btree_map = "string, message", tag = "1")]
    pub models: BTreeMap<String, ModelConstraint>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ModelConstraint {
    #[prost(bool, tag = "1")]
    pub warm: bool,
    #[prost(uint32, tag = "2")]
    pub capacity: u32,
    #[prost(string, tag = "3")]
    pub runner_version: String,
    #[prost(uint32, tag = "4")]
    pub capacity_in_use: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct AuthToken {
    #[prost(bytes = "vec", tag = "1")]
    pub token: Vec<u8>,
    #[prost(string, tag = "2")]
    pub session_id: String,
    #[prost(int64, tag = "3")]
    pub expiration: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct HardwareInformation {
    #[prost(string, tag = "1")]
    pub pipeline: String,
    #[prost(string, tag = "2")]
    pub model_id: String,
    #[prost(btree_map = "string, message", tag = "3")]
    pub gpu_info: BTreeMap<String, GpuComputeInfo>,
}

#[derive(Clone, PartialEq, Message)]
pub struct GpuComputeInfo {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(uint32, tag = "4")]
    pub major: u32,
    #[prost(uint32, tag = "5")]
    pub minor: u32,
    #[prost(int64, tag = "6")]
    pub memory_free: i64,
    #[prost(int64, tag = "7")]
    pub memory_total: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct OrchestratorInfo {
    #[prost(string, tag = "1")]
    pub transcoder: String,
    #[prost(message, optional, tag = "2")]
    pub ticket_params: Option<TicketParams>,
    #[prost(message, optional, tag = "3")]
    pub price_info: Option<PriceInfo>,
    #[prost(bytes = "vec", tag = "4")]
    pub address: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub capabilities: Option<Capabilities>,
    #[prost(message, optional, tag = "6")]
    pub auth_token: Option<AuthToken>,
    #[prost(message, repeated, tag = "7")]
    pub hardware: Vec<HardwareInformation>,
    #[prost(message, repeated, tag = "33")]
    pub capabilities_prices: Vec<PriceInfo>,
    #[prost(string, repeated, tag = "34")]
    pub nodes: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct VideoProfile {
    #[prost(string, tag = "16")]
    pub name: String,
    #[prost(int32, tag = "17")]
    pub width: i32,
    #[prost(int32, tag = "18")]
    pub height: i32,
    #[prost(int32, tag = "19")]
    pub bitrate: i32,
    #[prost(uint32, tag = "20")]
    pub fps: u32,
    /// 0 MPEGTS, 1 MP4.
    #[prost(int32, tag = "21")]
    pub format: i32,
    #[prost(uint32, tag = "22")]
    pub fps_den: u32,
    /// 0 encoder default, 1 baseline, 2 main, 3 high, 4 constrained high.
    #[prost(int32, tag = "23")]
    pub profile: i32,
    /// Milliseconds; negative values are markers passed through.
    #[prost(int32, tag = "24")]
    pub gop: i32,
    /// 0 H264, 1 H265, 2 VP8, 3 VP9.
    #[prost(int32, tag = "25")]
    pub encoder: i32,
    #[prost(int32, tag = "26")]
    pub color_depth: i32,
    #[prost(int32, tag = "27")]
    pub chroma_format: i32,
    #[prost(uint32, tag = "28")]
    pub quality: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct SegParameters {
    #[prost(uint64, tag = "1")]
    pub from: u64,
    #[prost(uint64, tag = "2")]
    pub to: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct SegData {
    #[prost(bytes = "vec", tag = "1")]
    pub manifest_id: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub seq: i64,
    #[prost(bytes = "vec", tag = "3")]
    pub hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub profiles: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub sig: Vec<u8>,
    #[prost(int32, tag = "6")]
    pub duration: i32,
    #[prost(message, optional, tag = "7")]
    pub capabilities: Option<Capabilities>,
    #[prost(message, optional, tag = "8")]
    pub auth_token: Option<AuthToken>,
    #[prost(bool, tag = "10")]
    pub calc_perceptual_hash: bool,
    #[prost(message, repeated, tag = "33")]
    pub full_profiles: Vec<VideoProfile>,
    #[prost(message, repeated, tag = "34")]
    pub full_profiles2: Vec<VideoProfile>,
    #[prost(message, repeated, tag = "35")]
    pub full_profiles3: Vec<VideoProfile>,
    #[prost(message, optional, tag = "37")]
    pub segment_parameters: Option<SegParameters>,
    #[prost(bool, tag = "38")]
    pub force_session_reinit: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct TranscodedSegmentData {
    #[prost(string, tag = "1")]
    pub url: String,
    #[prost(int64, tag = "2")]
    pub pixels: i64,
    #[prost(string, tag = "3")]
    pub perceptual_hash_url: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct TranscodeData {
    #[prost(message, repeated, tag = "1")]
    pub segments: Vec<TranscodedSegmentData>,
    #[prost(bytes = "vec", tag = "2")]
    pub sig: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum TranscodeOutcome {
    #[prost(string, tag = "2")]
    Error(String),
    #[prost(message, tag = "3")]
    Data(TranscodeData),
}

#[derive(Clone, PartialEq, Message)]
pub struct TranscodeResult {
    #[prost(int64, tag = "1")]
    pub seq: i64,
    #[prost(oneof = "TranscodeOutcome", tags = "2, 3")]
    pub result: Option<TranscodeOutcome>,
    #[prost(message, optional, tag = "16")]
    pub info: Option<OrchestratorInfo>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PaymentResult {
    #[prost(message, optional, tag = "16")]
    pub info: Option<OrchestratorInfo>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EndTranscodingSessionRequest {
    #[prost(message, optional, tag = "1")]
    pub auth_token: Option<AuthToken>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EndTranscodingSessionResponse {}

#[derive(Clone, PartialEq, Message)]
pub struct PingPong {
    #[prost(bytes = "vec", tag = "1")]
    pub value: Vec<u8>,
}

/// Capability ids of go-livepeer's `core/capabilities.go` that a transcoding job uses.
pub mod capability {
    pub const H264: u32 = 0;
    pub const MPEGTS: u32 = 1;
    pub const MP4: u32 = 2;
    pub const FRACTIONAL_FRAMERATES: u32 = 3;
    pub const STORAGE_DIRECT: u32 = 4;
    pub const STORAGE_S3: u32 = 5;
    pub const STORAGE_GCS: u32 = 6;
    pub const PROFILE_H264_BASELINE: u32 = 7;
    pub const PROFILE_H264_MAIN: u32 = 8;
    pub const PROFILE_H264_HIGH: u32 = 9;
    pub const PROFILE_H264_CONSTRAINED_HIGH: u32 = 10;
    pub const GOP: u32 = 11;
    pub const AUTH_TOKEN: u32 = 12;
    pub const MPEG7_SIGNATURE: u32 = 14;
    pub const SEGMENT_SLICING: u32 = 26;

    /// What this node can do for a transcoding job (`core/capabilities.go` ids): H.264 in,
    /// MPEG-TS out, fractional frame rates, the four H.264 profiles, GOP, auth tokens.
    pub const TRANSCODING: &[u32] = &[
        H264,
        MPEGTS,
        FRACTIONAL_FRAMERATES,
        PROFILE_H264_BASELINE,
        PROFILE_H264_MAIN,
        PROFILE_H264_HIGH,
        PROFILE_H264_CONSTRAINED_HIGH,
        GOP,
        AUTH_TOKEN,
    ];
}

impl Capabilities {
    pub fn from_ids(ids: &[u32]) -> Self {
        let mut bitstring = Vec::new();
        for &c in ids {
            let word = (c / 64) as usize;
            if bitstring.len() <= word {
                bitstring.resize(word + 1, 0);
            }
            bitstring[word] |= 1u64 << (c % 64);
        }
        Capabilities {
            bitstring,
            ..Default::default()
        }
    }

    /// Every capability of `self` is in `offered` (go-livepeer's bitstring subset test).
    pub fn subset_of(&self, offered: &Capabilities) -> bool {
        self.bitstring.iter().enumerate().all(|(i, &w)| {
            let o = offered.bitstring.get(i).copied().unwrap_or(0);
            w & !o == 0
        })
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct RegisterRequest {
    #[prost(string, tag = "1")]
    pub secret: String,
    #[prost(int64, tag = "2")]
    pub capacity: i64,
    #[prost(message, optional, tag = "3")]
    pub capabilities: Option<Capabilities>,
}

/// A task from an orchestrator to a remote transcoder; an empty `url` with a session id in
/// `seg_data.auth_token` ends that session.
#[derive(Clone, PartialEq, Message)]
pub struct NotifySegment {
    #[prost(string, tag = "1")]
    pub url: String,
    #[prost(message, optional, tag = "3")]
    pub seg_data: Option<SegData>,
    #[prost(int64, tag = "16")]
    pub task_id: i64,
    #[prost(bytes = "vec", tag = "17")]
    pub profiles: Vec<u8>,
    #[prost(string, tag = "18")]
    pub orch_id: String,
}
