//! What a stream is: its source, its ladder and its encoder choice, with validation that names
//! the offending field so the API can answer with a field-level message.

use serde::{Deserialize, Serialize};

mod analysis;
pub use analysis::{AnalysisSpec, PrivacySpec, Zone};

/// A field-level validation failure (`ladder[2].bitrate_kbps`: must be at least 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A JSON merge patch (RFC 7386) of a stream spec.
pub type SpecPatch = serde_json::Map<String, serde_json::Value>;

/// A stream as the operator defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    pub name: String,
    pub source: SourceSpec,
    /// The renditions to produce; absent means the default ladder.
    #[serde(default = "default_ladder")]
    #[schema(default = default_ladder, min_items = 1, max_items = 8)]
    pub ladder: Vec<RenditionSpec>,
    /// Encoder element to use instead of the best one found by the probe.
    #[serde(default)]
    pub encoder: Option<String>,
    /// Whether the node runs the stream (persisted: a stopped stream stays stopped).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Have the ladder transcoded by an orchestrator on the Livepeer network (paid with
    /// tickets), encoding locally whenever none is available.
    #[serde(default)]
    pub offload: bool,
    /// Where the stream is sent on (YouTube, Facebook, a CDN's RTMP ingest).
    #[serde(default)]
    #[schema(max_items = 8)]
    pub restream: Vec<RestreamTarget>,
    /// Whether the stream is recorded to disk, and which rendition.
    #[serde(default)]
    pub recording: RecordingSpec,
    /// Object detection on the stream's pictures.
    #[serde(default)]
    pub ai: AnalysisSpec,
    /// What the stream's outputs may show.
    #[serde(default)]
    pub privacy: PrivacySpec,
}

/// What a stream records: one rendition (with the stream's audio) as fragmented MP4 files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingSpec {
    #[serde(default)]
    pub mode: RecordingMode,
    /// The rendition recorded; absent: the largest one (the source itself when the ladder
    /// passes it through).
    #[serde(default)]
    pub rendition: Option<String>,
    /// `events` mode: seconds kept from before an object appears.
    #[serde(default = "default_pre_roll")]
    #[schema(default = 5, maximum = 30)]
    pub pre_roll_seconds: u32,
    /// `events` mode: seconds recorded after the last object is gone.
    #[serde(default = "default_post_roll")]
    #[schema(default = 10, maximum = 300)]
    pub post_roll_seconds: u32,
    /// `events` mode: the labels that start a recording; empty: any object the stream's
    /// detector reports.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub labels: Vec<String>,
}

fn default_pre_roll() -> u32 {
    5
}

fn default_post_roll() -> u32 {
    10
}

impl Default for RecordingSpec {
    fn default() -> Self {
        Self {
            mode: RecordingMode::Off,
            rendition: None,
            pre_roll_seconds: default_pre_roll(),
            post_roll_seconds: default_post_roll(),
            labels: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordingMode {
    #[default]
    Off,
    /// Everything the stream sends, while it runs.
    Continuous,
    /// While the stream's detector sees an object (in a zone, when there are zones), with
    /// the seconds before it (pre-roll) and after it (post-roll).
    Events,
}

/// An RTMP(S) destination a stream is sent on to, from one of its renditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestreamTarget {
    /// What the operator calls it; unique within the stream.
    pub name: String,
    /// The ingest server with its application: `rtmp://a.rtmp.youtube.com/live2`,
    /// `rtmps://live-api-s.facebook.com:443/rtmp`.
    pub server: String,
    /// The stream key, appended to the server. A secret: views never show it, and an edit
    /// that leaves it out keeps the stored one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// The rendition sent (with the stream's audio); absent: the largest one.
    #[serde(default)]
    pub rendition: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// `hw:…` or `plughw:…` with a card (and device) of letters, digits, `_`, `,`, `=`.
fn is_alsa_device(d: &str) -> bool {
    let rest = d.strip_prefix("plughw:").or_else(|| d.strip_prefix("hw:"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && r.len() <= 64
            && r.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | '=' | '-'))
    })
}

/// Destinations a stream may have.
pub const MAX_RESTREAMS: usize = 8;

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
}

/// Where a stream's pictures come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// A generated test pattern.
    Test {
        #[serde(default = "w1280")]
        width: u32,
        #[serde(default = "h720")]
        height: u32,
        #[serde(default = "fps30")]
        fps: u32,
        #[serde(default)]
        pattern: TestPattern,
        /// Bars and tone: a 1 kHz tone at −20 dBFS beside the pattern, to check a chain's
        /// audio end to end.
        #[serde(default)]
        tone: bool,
    },
    /// A V4L2 camera, with a microphone when `audio_device` names one.
    V4l2 {
        device: String,
        #[serde(default = "w1280")]
        width: u32,
        #[serde(default = "h720")]
        height: u32,
        #[serde(default = "fps30")]
        fps: u32,
        /// An ALSA capture device, `hw:CARD=<id>,DEV=<n>` as `/api/microphones` lists them
        /// (a USB camera's own microphone is matched to it there).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audio_device: Option<String>,
    },
    /// RTMP push to `rtmp://<host>:1935/live/<stream_key>`.
    Rtmp {
        /// Generated when absent.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        stream_key: String,
    },
    /// RTSP pull from an IP camera.
    Rtsp {
        url: String,
        #[serde(default)]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        #[serde(default)]
        transport: RtspTransport,
        #[serde(default = "latency200")]
        latency_ms: u32,
    },
    /// SRT: an encoder (OBS, ffmpeg, a hardware encoder) calls the node on `port`
    /// (`listener`), or the node calls `url` (`caller`). MPEG-TS with H.264 (or anything
    /// decodable) and audio.
    Srt {
        #[serde(default)]
        mode: SrtMode,
        /// Listener: the UDP port the node listens on (all addresses).
        #[serde(default)]
        port: Option<u16>,
        /// Caller: `srt://host:port`.
        #[serde(default)]
        url: Option<String>,
        /// AES passphrase, 10 to 79 characters; absent: unencrypted. A secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase: Option<String>,
        /// The SRT stream id. Listener: a caller must present exactly this one (the stream's
        /// key); caller: sent to the server. A secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream_id: Option<String>,
        #[serde(default = "latency200")]
        latency_ms: u32,
    },
    /// A file path or a URL GStreamer can read (file://, http(s)://). Restarts at the end.
    Uri { uri: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SrtMode {
    #[default]
    Listener,
    Caller,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestPattern {
    #[default]
    Smpte,
    Ball,
    Snow,
    Black,
}

impl TestPattern {
    pub fn gst_nick(self) -> &'static str {
        match self {
            Self::Smpte => "smpte",
            Self::Ball => "ball",
            Self::Snow => "snow",
            Self::Black => "black",
        }
    }
}

fn w1280() -> u32 {
    1280
}
fn h720() -> u32 {
    720
}
fn fps30() -> u32 {
    30
}
fn latency200() -> u32 {
    200
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum H264Profile {
    Baseline,
    Main,
    #[default]
    High,
}

impl H264Profile {
    pub fn caps_name(self) -> &'static str {
        match self {
            Self::Baseline => "constrained-baseline",
            Self::Main => "main",
            Self::High => "high",
        }
    }

    /// The `avc1.PPCCLL` prefix (profile and constraint bytes) for HLS CODECS attributes.
    pub fn rfc6381(self) -> &'static str {
        match self {
            Self::Baseline => "avc1.42e0",
            Self::Main => "avc1.4d40",
            Self::High => "avc1.6400",
        }
    }
}

/// One rung of the ladder. A rendition without a height is the *source* rendition: it keeps
/// the source size and, when the source is already H.264 and no fps is forced, it is passed
/// through untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenditionSpec {
    /// 1 to 32 of A-Z, a-z, 0-9, '-' and '_'; unique in the ladder.
    #[schema(min_length = 1, max_length = 32, pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub name: String,
    /// Output height, even; absent: the source's height (the source rendition).
    #[serde(default)]
    #[schema(minimum = 16, maximum = 7680)]
    pub height: Option<u32>,
    /// Output width, even; absent: from the height and the source's aspect ratio.
    #[serde(default)]
    #[schema(minimum = 16, maximum = 7680)]
    pub width: Option<u32>,
    /// Output frame rate; absent: the source's.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 120)]
    pub fps: Option<u32>,
    #[schema(minimum = 1, maximum = 100000)]
    pub bitrate_kbps: u32,
    /// Frames between keyframes; absent: one keyframe per HLS segment.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub gop_frames: Option<u32>,
    #[serde(default)]
    pub profile: H264Profile,
}

impl RenditionSpec {
    pub fn is_source(&self) -> bool {
        self.height.is_none() && self.width.is_none()
    }
}

/// The default ladder: source, 720p, 480p, 360p.
pub fn default_ladder() -> Vec<RenditionSpec> {
    let r = |name: &str, height: Option<u32>, kbps: u32| RenditionSpec {
        name: name.into(),
        height,
        width: None,
        fps: None,
        bitrate_kbps: kbps,
        gop_frames: None,
        profile: H264Profile::High,
    };
    vec![
        r("source", None, 6000),
        r("720p", Some(720), 3000),
        r("480p", Some(480), 1200),
        r("360p", Some(360), 700),
    ]
}

const MAX_DIM: u32 = 7680;

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Splits `user:password@` out of a URL: the URL without it, and the decoded user name and
/// password. `None` when the URL carries no credentials (or is no URL).
pub fn split_credentials(raw: &str) -> Option<(String, Option<String>, Option<String>)> {
    let mut url = url::Url::parse(raw).ok()?;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = (!url.username().is_empty()).then(|| decode(url.username()));
    let pass = url.password().map(decode);
    url.set_username("").ok()?;
    url.set_password(None).ok()?;
    Some((url.to_string(), user, pass))
}

pub fn is_stream_key(s: &str) -> bool {
    (8..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl StreamSpec {
    /// Reads a spec from JSON with the failing field named (`ladder[1].height`; `body` when
    /// the whole value is wrong): the one decoding every transport uses.
    pub fn from_json(value: serde_json::Value) -> Result<Self, SpecError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            SpecError::new(
                if path == "." {
                    "body".to_string()
                } else {
                    path
                },
                e.inner().to_string(),
            )
        })
    }

    /// This spec with a JSON merge patch (RFC 7386) applied, secrets included: the spec a
    /// PATCH asks for.
    pub fn patched(&self, patch: SpecPatch) -> Result<Self, SpecError> {
        let mut value =
            serde_json::to_value(self).map_err(|e| SpecError::new("body", e.to_string()))?;
        merge_patch(&mut value, serde_json::Value::Object(patch));
        Self::from_json(value)
    }

    /// Fits the default ladder to a source of declared size: rungs taller than the source
    /// are left out (an explicit ladder is kept as given, and validated).
    pub fn fit_default_ladder(&mut self) {
        if let Some((_, h)) = self.declared_source_size()
            && self.ladder == default_ladder()
        {
            self.ladder.retain(|r| r.height.is_none_or(|rh| rh < h));
        }
    }

    /// The source's size when it is declared (test pattern, camera); `None` when only the
    /// incoming media will tell (RTMP, RTSP, files).
    pub fn declared_source_size(&self) -> Option<(u32, u32)> {
        match &self.source {
            SourceSpec::Test { width, height, .. } | SourceSpec::V4l2 { width, height, .. } => {
                Some((*width, *height))
            }
            _ => None,
        }
    }

    /// Checks everything that can be checked without running the stream.
    pub fn validate(&self) -> Result<(), SpecError> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(SpecError::new("name", "must be 1 to 100 characters"));
        }
        self.validate_source()?;
        self.validate_ladder()?;
        self.validate_restream()?;
        self.ai.validate()?;
        if self.privacy.blur_faces && self.offload {
            return Err(SpecError::new(
                "privacy.blur_faces",
                "an offloaded stream is transcoded elsewhere; privacy mode needs the node's own encode",
            ));
        }
        if self.recording.mode == RecordingMode::Events && self.ai.model.is_none() {
            return Err(SpecError::new(
                "recording.mode",
                "recording on events needs an object detector (ai.model)",
            ));
        }
        if self.recording.pre_roll_seconds > 30 {
            return Err(SpecError::new("recording.pre_roll_seconds", "at most 30"));
        }
        if self.recording.post_roll_seconds > 300 {
            return Err(SpecError::new("recording.post_roll_seconds", "at most 300"));
        }
        if self.recording.labels.len() > 100 || self.recording.labels.iter().any(|l| l.len() > 64) {
            return Err(SpecError::new(
                "recording.labels",
                "at most 100 labels of at most 64 characters",
            ));
        }
        if let Some(r) = &self.recording.rendition
            && !self.ladder.iter().any(|l| &l.name == r)
        {
            return Err(SpecError::new(
                "recording.rendition",
                "is not a rendition of the ladder",
            ));
        }
        Ok(())
    }

    fn validate_restream(&self) -> Result<(), SpecError> {
        if self.restream.len() > MAX_RESTREAMS {
            return Err(SpecError::new(
                "restream",
                format!("at most {MAX_RESTREAMS} destinations"),
            ));
        }
        for (i, t) in self.restream.iter().enumerate() {
            let field = |f: &str| format!("restream[{i}].{f}");
            let name = t.name.trim();
            if name.is_empty() || name.len() > 50 {
                return Err(SpecError::new(field("name"), "must be 1 to 50 characters"));
            }
            if self.restream[..i].iter().any(|o| o.name.trim() == name) {
                return Err(SpecError::new(
                    field("name"),
                    "another destination has this name",
                ));
            }
            let rest = t
                .server
                .strip_prefix("rtmp://")
                .or_else(|| t.server.strip_prefix("rtmps://"));
            let host_ok = rest.is_some_and(|r| {
                let host = r.split('/').next().unwrap_or("");
                !host.is_empty() && r.len() > host.len() + 1
            });
            if !host_ok
                || t.server.len() > 512
                || t.server
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(SpecError::new(
                    field("server"),
                    "must be rtmp:// or rtmps:// with a host and an application, e.g. rtmp://a.rtmp.youtube.com/live2",
                ));
            }
            if t.key.len() > 512 || t.key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(SpecError::new(
                    field("key"),
                    "must be at most 512 characters without spaces",
                ));
            }
            if let Some(r) = &t.rendition
                && !self.ladder.iter().any(|l| &l.name == r)
            {
                return Err(SpecError::new(
                    field("rendition"),
                    format!("the ladder has no rendition '{r}'"),
                ));
            }
        }
        Ok(())
    }

    fn validate_source(&self) -> Result<(), SpecError> {
        let size = |w: u32, h: u32, fps: u32| -> Result<(), SpecError> {
            if !(16..=MAX_DIM).contains(&w) || !w.is_multiple_of(2) {
                return Err(SpecError::new(
                    "source.width",
                    format!("{w} is not allowed; use an even number from 16 to {MAX_DIM}"),
                ));
            }
            if !(16..=MAX_DIM).contains(&h) || !h.is_multiple_of(2) {
                return Err(SpecError::new(
                    "source.height",
                    format!("{h} is not allowed; use an even number from 16 to {MAX_DIM}"),
                ));
            }
            if !(1..=120).contains(&fps) {
                return Err(SpecError::new(
                    "source.fps",
                    format!("{fps} is not allowed; use 1 to 120"),
                ));
            }
            Ok(())
        };
        match &self.source {
            SourceSpec::Test {
                width, height, fps, ..
            } => size(*width, *height, *fps),
            SourceSpec::V4l2 {
                device,
                width,
                height,
                fps,
                audio_device,
            } => {
                if !device.starts_with("/dev/") {
                    return Err(SpecError::new(
                        "source.device",
                        "must be a device path such as /dev/video0",
                    ));
                }
                if audio_device.as_deref().is_some_and(|d| !is_alsa_device(d)) {
                    return Err(SpecError::new(
                        "source.audio_device",
                        "must be an ALSA capture device such as hw:CARD=C920,DEV=0",
                    ));
                }
                size(*width, *height, *fps)
            }
            SourceSpec::Rtmp { stream_key } => {
                if !stream_key.is_empty() && !is_stream_key(stream_key) {
                    return Err(SpecError::new(
                        "source.stream_key",
                        "must be 8 to 64 characters of A-Z, a-z, 0-9, '-' and '_'",
                    ));
                }
                Ok(())
            }
            SourceSpec::Rtsp {
                url, latency_ms, ..
            } => {
                if !(url.starts_with("rtsp://") || url.starts_with("rtsps://")) {
                    return Err(SpecError::new(
                        "source.url",
                        "must start with rtsp:// or rtsps://",
                    ));
                }
                if *latency_ms > 10_000 {
                    return Err(SpecError::new("source.latency_ms", "must be at most 10000"));
                }
                Ok(())
            }
            SourceSpec::Srt {
                mode,
                port,
                url,
                passphrase,
                stream_id,
                latency_ms,
            } => {
                match mode {
                    SrtMode::Listener if !port.is_some_and(|p| p >= 1024) => {
                        return Err(SpecError::new(
                            "source.port",
                            "a listener needs a UDP port from 1024 to 65535",
                        ));
                    }
                    SrtMode::Caller
                        if !url.as_deref().is_some_and(|u| {
                            u.strip_prefix("srt://").is_some_and(|r| {
                                r.rsplit_once(':').is_some_and(|(h, p)| {
                                    !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)
                                })
                            }) && !u.contains(['?', ' '])
                        }) =>
                    {
                        return Err(SpecError::new(
                            "source.url",
                            "a caller needs srt://host:port (options are fields of their own)",
                        ));
                    }
                    _ => {}
                }
                if passphrase
                    .as_deref()
                    .is_some_and(|p| !(10..=79).contains(&p.len()))
                {
                    return Err(SpecError::new(
                        "source.passphrase",
                        "must be 10 to 79 characters",
                    ));
                }
                if stream_id.as_deref().is_some_and(|s| {
                    s.is_empty() || s.len() > 512 || s.chars().any(|c| c.is_control())
                }) {
                    return Err(SpecError::new(
                        "source.stream_id",
                        "must be 1 to 512 printable characters",
                    ));
                }
                if *latency_ms > 10_000 {
                    return Err(SpecError::new("source.latency_ms", "must be at most 10000"));
                }
                Ok(())
            }
            SourceSpec::Uri { uri } => {
                let ok = uri.starts_with('/')
                    || ["file://", "http://", "https://"]
                        .iter()
                        .any(|p| uri.starts_with(p));
                if ok {
                    Ok(())
                } else {
                    Err(SpecError::new(
                        "source.uri",
                        "must be an absolute file path or a file://, http:// or https:// URL",
                    ))
                }
            }
        }
    }

    fn validate_ladder(&self) -> Result<(), SpecError> {
        if self.ladder.is_empty() {
            return Err(SpecError::new("ladder", "must have at least one rendition"));
        }
        if self.ladder.len() > 8 {
            return Err(SpecError::new("ladder", "at most 8 renditions"));
        }
        let source = self.declared_source_size();
        for (i, r) in self.ladder.iter().enumerate() {
            let f = |name: &str| format!("ladder[{i}].{name}");
            if !is_name(&r.name) {
                return Err(SpecError::new(
                    f("name"),
                    "must be 1 to 32 characters of A-Z, a-z, 0-9, '-' and '_'",
                ));
            }
            if self.ladder[..i].iter().any(|o| o.name == r.name) {
                return Err(SpecError::new(
                    f("name"),
                    format!("'{}' is used twice", r.name),
                ));
            }
            if r.width.is_some() && r.height.is_none() {
                return Err(SpecError::new(
                    f("height"),
                    "is required when width is given",
                ));
            }
            for (key, v) in [("height", r.height), ("width", r.width)] {
                if let Some(v) = v {
                    if !(16..=MAX_DIM).contains(&v) {
                        return Err(SpecError::new(
                            f(key),
                            format!("{v} is out of range; allowed: 16 to {MAX_DIM}"),
                        ));
                    }
                    if !v.is_multiple_of(2) {
                        return Err(SpecError::new(
                            f(key),
                            format!("{v} is odd; H.264 in 4:2:0 needs even sizes"),
                        ));
                    }
                }
            }
            if let (Some((sw, sh)), Some(h)) = (source, r.height) {
                let w = r.width.unwrap_or(0);
                if h > sh || w > sw {
                    let size = match r.width {
                        Some(w) => format!("{w}x{h}"),
                        None => format!("{h}p"),
                    };
                    return Err(SpecError::new(
                        f("height"),
                        format!(
                            "{size} is larger than the source ({sw}x{sh}); renditions never exceed the source"
                        ),
                    ));
                }
            }
            if let Some(fps) = r.fps
                && !(1..=120).contains(&fps)
            {
                return Err(SpecError::new(
                    f("fps"),
                    format!("{fps} is not allowed; use 1 to 120"),
                ));
            }
            if !(1..=100_000).contains(&r.bitrate_kbps) {
                return Err(SpecError::new(
                    f("bitrate_kbps"),
                    format!("{} is not allowed; use 1 to 100000", r.bitrate_kbps),
                ));
            }
            if let Some(g) = r.gop_frames
                && !(1..=1000).contains(&g)
            {
                return Err(SpecError::new(
                    f("gop_frames"),
                    format!("{g} is not allowed; use 1 to 1000"),
                ));
            }
        }
        if self.ladder.iter().filter(|r| r.is_source()).count() > 1 {
            return Err(SpecError::new(
                "ladder",
                "at most one source rendition (one without a height)",
            ));
        }
        Ok(())
    }
}

/// A rendition resolved against the actual source: concrete size and rate.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRendition {
    pub spec: RenditionSpec,
    pub width: u32,
    pub height: u32,
    /// Frames per second as num/den.
    pub fps: (i32, i32),
    /// Pass the source's H.264 through untouched.
    pub passthrough: bool,
    pub gop_frames: u32,
}

fn even(v: u64) -> u32 {
    let v = v.max(2);
    u32::try_from(v - v % 2).unwrap_or(u32::MAX - 1)
}

/// Resolves the ladder against the source's size and rate. Renditions larger than the source,
/// and scaled renditions the same height as the source rendition, are dropped (returned as the
/// second value with the reason) so sizes never exceed the source.
pub fn resolve_ladder(
    ladder: &[RenditionSpec],
    src_w: u32,
    src_h: u32,
    src_fps: (i32, i32),
    src_is_h264: bool,
    segment_seconds: u32,
) -> (Vec<ResolvedRendition>, Vec<(String, String)>) {
    let has_source = ladder.iter().any(|r| r.is_source());
    let fps = if src_fps.0 > 0 && src_fps.1 > 0 {
        src_fps
    } else {
        (30, 1)
    };
    let mut out = Vec::new();
    let mut dropped = Vec::new();
    for r in ladder {
        if r.is_source() {
            let out_fps = r.fps.map(|f| (f as i32, 1)).unwrap_or(fps);
            let gop = r
                .gop_frames
                .unwrap_or_else(|| gop_for(out_fps, segment_seconds));
            out.push(ResolvedRendition {
                spec: r.clone(),
                width: src_w,
                height: src_h,
                fps: out_fps,
                passthrough: src_is_h264 && r.fps.is_none(),
                gop_frames: gop,
            });
            continue;
        }
        let h = r.height.unwrap_or(src_h);
        let w = match r.width {
            Some(w) => w,
            None => even(u64::from(h) * u64::from(src_w) / u64::from(src_h.max(1))),
        };
        if h > src_h || w > src_w {
            dropped.push((
                r.name.clone(),
                format!("{w}x{h} is larger than the source {src_w}x{src_h}"),
            ));
            continue;
        }
        if has_source && h == src_h {
            dropped.push((
                r.name.clone(),
                format!("same size as the source rendition ({src_w}x{src_h})"),
            ));
            continue;
        }
        let out_fps = match r.fps {
            // Never raise the rate above the source's: that would only duplicate frames.
            Some(f) if f64::from(f) < f64::from(fps.0) / f64::from(fps.1) => (f as i32, 1),
            _ => fps,
        };
        let gop = r
            .gop_frames
            .unwrap_or_else(|| gop_for(out_fps, segment_seconds));
        out.push(ResolvedRendition {
            spec: r.clone(),
            width: w,
            height: h,
            fps: out_fps,
            passthrough: false,
            gop_frames: gop,
        });
    }
    (out, dropped)
}

fn gop_for(fps: (i32, i32), segment_seconds: u32) -> u32 {
    let per_sec = (f64::from(fps.0) / f64::from(fps.1.max(1)))
        .round()
        .max(1.0);
    ((per_sec * f64::from(segment_seconds)) as u32).clamp(1, 1000)
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut serde_json::Value, patch: serde_json::Value) {
    match patch {
        serde_json::Value::Object(p) => {
            if !target.is_object() {
                *target = serde_json::Value::Object(Default::default());
            }
            if let serde_json::Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(&k);
                    } else {
                        merge_patch(t.entry(k).or_insert(serde_json::Value::Null), v);
                    }
                }
            }
        }
        other => *target = other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ladder: Vec<RenditionSpec>) -> StreamSpec {
        StreamSpec {
            name: "cam".into(),
            source: SourceSpec::Test {
                width: 1280,
                height: 720,
                fps: 30,
                pattern: TestPattern::Smpte,
                tone: false,
            },
            ladder,
            encoder: None,
            enabled: true,
            offload: false,
            restream: Vec::new(),
            recording: RecordingSpec::default(),
            ai: Default::default(),
            privacy: Default::default(),
        }
    }

    fn rung(h: Option<u32>) -> RenditionSpec {
        RenditionSpec {
            name: format!("r{}", h.unwrap_or(0)),
            height: h,
            width: None,
            fps: None,
            bitrate_kbps: 1000,
            gop_frames: None,
            profile: H264Profile::Main,
        }
    }

    #[test]
    fn default_ladder_is_valid() {
        spec(default_ladder()).validate().expect("valid");
    }

    #[test]
    fn bad_ladders_name_the_field() {
        let mut r = rung(Some(361));
        let e = spec(vec![r.clone()]).validate().unwrap_err();
        assert_eq!(e.field, "ladder[0].height");
        assert!(e.message.contains("odd"));

        r.height = Some(360);
        r.fps = Some(0);
        let e = spec(vec![r.clone()]).validate().unwrap_err();
        assert_eq!(e.field, "ladder[0].fps");

        r.fps = None;
        r.bitrate_kbps = 0;
        let e = spec(vec![rung(None), r.clone()]).validate().unwrap_err();
        assert_eq!(e.field, "ladder[1].bitrate_kbps");

        let e = spec(vec![rung(Some(1080))]).validate().unwrap_err();
        assert_eq!(e.field, "ladder[0].height");
        assert!(e.message.contains("larger than the source"));

        let e = spec(vec![]).validate().unwrap_err();
        assert_eq!(e.field, "ladder");
    }

    #[test]
    fn resolve_drops_renditions_larger_than_the_source() {
        let (out, dropped) = resolve_ladder(&default_ladder(), 1280, 720, (30, 1), true, 2);
        let names: Vec<_> = out.iter().map(|r| r.spec.name.as_str()).collect();
        assert_eq!(names, ["source", "480p", "360p"]);
        assert!(out[0].passthrough);
        assert_eq!((out[1].width, out[1].height), (852, 480));
        assert_eq!(out[1].gop_frames, 60);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].0, "720p");
    }

    #[test]
    fn resolve_encodes_the_source_rendition_when_not_h264() {
        let (out, _) = resolve_ladder(&default_ladder(), 1920, 1080, (25, 1), false, 2);
        assert_eq!(out.len(), 4);
        assert!(!out[0].passthrough);
        assert_eq!(out[0].gop_frames, 50);
        assert_eq!((out[1].width, out[1].height), (1280, 720));
        assert_eq!((out[3].width, out[3].height), (640, 360));
    }

    #[test]
    fn microphones_and_the_recorded_rendition_are_checked() {
        let field = |s: StreamSpec| s.validate().err().map(|e| e.field);
        let camera = |mic: Option<&str>| {
            let mut s = spec(vec![rung(Some(360))]);
            s.source = SourceSpec::V4l2 {
                device: "/dev/video0".into(),
                width: 1280,
                height: 720,
                fps: 30,
                audio_device: mic.map(str::to_string),
            };
            s
        };
        assert_eq!(field(camera(None)), None);
        assert_eq!(field(camera(Some("hw:CARD=C920,DEV=0"))), None);
        assert_eq!(field(camera(Some("plughw:1,0"))), None);
        for bad in ["default", "hw:", "hw:CARD=a b", "hw:x;rm", "pulse"] {
            assert_eq!(
                field(camera(Some(bad))).as_deref(),
                Some("source.audio_device"),
                "{bad}"
            );
        }
        let mut s = spec(vec![rung(Some(360))]);
        s.recording = RecordingSpec {
            mode: RecordingMode::Continuous,
            rendition: Some("r360".into()),
            ..Default::default()
        };
        assert_eq!(field(s.clone()), None);
        s.recording.rendition = Some("r720".into());
        assert_eq!(field(s.clone()).as_deref(), Some("recording.rendition"));
        // Recording on events needs a detector to say when.
        s.recording = RecordingSpec {
            mode: RecordingMode::Events,
            ..Default::default()
        };
        assert_eq!(field(s.clone()).as_deref(), Some("recording.mode"));
        s.ai.model = Some("centerface".into());
        assert_eq!(field(s.clone()), None);
        s.recording.pre_roll_seconds = 31;
        assert_eq!(field(s).as_deref(), Some("recording.pre_roll_seconds"));
        // Absent from a stored spec: not recorded.
        let old: StreamSpec =
            serde_json::from_value(serde_json::json!({"name": "a", "source": {"kind": "rtmp"}}))
                .expect("spec");
        assert_eq!(old.recording.mode, RecordingMode::Off);
    }

    #[test]
    fn restream_destinations_are_checked() {
        let target = |name: &str, server: &str| RestreamTarget {
            name: name.into(),
            server: server.into(),
            key: "abcd-1234".into(),
            rendition: None,
            enabled: true,
        };
        let with = |targets: Vec<RestreamTarget>| {
            let mut s = spec(vec![rung(None)]);
            s.restream = targets;
            s.validate()
        };
        assert!(with(vec![target("YouTube", "rtmp://a.rtmp.youtube.com/live2")]).is_ok());
        assert!(
            with(vec![target(
                "FB",
                "rtmps://live-api-s.facebook.com:443/rtmp"
            )])
            .is_ok()
        );
        let field = |r: Result<(), SpecError>| r.expect_err("refused").field;
        assert_eq!(
            field(with(vec![target("x", "http://h/app")])),
            "restream[0].server"
        );
        assert_eq!(
            field(with(vec![target("x", "rtmp://host")])),
            "restream[0].server"
        );
        assert_eq!(
            field(with(vec![target("x", "rtmp:///app")])),
            "restream[0].server"
        );
        assert_eq!(
            field(with(vec![
                target("a", "rtmp://h/app"),
                target("a", "rtmp://h/b")
            ])),
            "restream[1].name"
        );
        let mut spaced = target("a", "rtmp://h/app");
        spaced.key = "a b".into();
        assert_eq!(field(with(vec![spaced])), "restream[0].key");
        let mut unknown = target("a", "rtmp://h/app");
        unknown.rendition = Some("4k".into());
        assert_eq!(field(with(vec![unknown])), "restream[0].rendition");
        assert_eq!(
            field(with(
                (0..9)
                    .map(|i| target(&i.to_string(), "rtmp://h/app"))
                    .collect()
            )),
            "restream"
        );
    }

    #[test]
    fn credentials_are_split_out_of_urls() {
        let (url, user, pass) =
            split_credentials("rtsp://admin:p%40ss:w@10.0.0.9:554/stream1").expect("split");
        assert_eq!(url, "rtsp://10.0.0.9:554/stream1");
        assert_eq!(user.as_deref(), Some("admin"));
        assert_eq!(pass.as_deref(), Some("p@ss:w"));
        assert!(split_credentials("rtsp://10.0.0.9/stream").is_none());
        assert!(split_credentials("not a url").is_none());
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = serde_json::json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(
            &mut t,
            serde_json::json!({"b": {"c": null, "e": 4}, "f": 5}),
        );
        assert_eq!(
            t,
            serde_json::json!({"a": 1, "b": {"d": 3, "e": 4}, "f": 5})
        );
    }

    /// The limits the OpenAPI document states (and the UI checks) are the ones `validate`
    /// enforces: each one is accepted at the bound and refused past it.
    #[test]
    fn the_schema_states_the_limits_validate_enforces() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(RenditionSpec::schema()).expect("schema");
        let bound = |field: &str, which: &str| -> u32 {
            let v = &schema["properties"][field][which];
            v.as_u64()
                .or_else(|| v.as_f64().map(|f| f as u64))
                .unwrap_or_else(|| panic!("{field}.{which} missing from {schema}"))
                as u32
        };
        let with = |f: &dyn Fn(&mut RenditionSpec)| {
            let mut spec = StreamSpec {
                name: "s".into(),
                source: SourceSpec::Rtmp {
                    stream_key: String::new(),
                },
                ladder: vec![RenditionSpec {
                    name: "r".into(),
                    height: Some(360),
                    width: None,
                    fps: None,
                    bitrate_kbps: 700,
                    gop_frames: None,
                    profile: H264Profile::High,
                }],
                encoder: None,
                enabled: true,
                offload: false,
                restream: Vec::new(),
                recording: RecordingSpec::default(),
                ai: Default::default(),
                privacy: Default::default(),
            };
            f(&mut spec.ladder[0]);
            spec.validate()
        };
        for field in ["height", "width", "fps", "bitrate_kbps", "gop_frames"] {
            let (lo, hi) = (bound(field, "minimum"), bound(field, "maximum"));
            // Sizes must be even: step by two past the bounds.
            let step = if matches!(field, "height" | "width") {
                2
            } else {
                1
            };
            let set = |r: &mut RenditionSpec, v: u32| match field {
                "height" => r.height = Some(v),
                "width" => {
                    r.height = Some(16);
                    r.width = Some(v)
                }
                "fps" => r.fps = Some(v),
                "bitrate_kbps" => r.bitrate_kbps = v,
                _ => r.gop_frames = Some(v),
            };
            assert!(with(&|r| set(r, lo)).is_ok(), "{field} = {lo}");
            assert!(with(&|r| set(r, hi)).is_ok(), "{field} = {hi}");
            assert!(with(&|r| set(r, lo - step)).is_err(), "{field} below {lo}");
            assert!(with(&|r| set(r, hi + step)).is_err(), "{field} above {hi}");
        }
    }
}
