//! WebRTC preview (WHEP): a viewer receives one of the stream's renditions as it is
//! encoded — no encode per viewer — through a `webrtcbin` of its own.
//!
//! `answer` takes the browser's SDP offer, picks its H.264 payload (packetization mode 1,
//! High, Main or Constrained Baseline, in that order), builds `appsrc ! h264parse !
//! rtph264pay ! webrtcbin` with that payload type (the profile is left to the stream: a
//! browser's decoder takes any of the three whatever the offer's `profile-level-id`), and returns the answer once ICE
//! gathering is complete (no trickle: one request, one answer). The session is then fed by a
//! [`Tap`] like a restream destination, starting at the next keyframe; it ends when the
//! viewer leaves (DELETE, or its connection fails), when the stream's run ends, or when its
//! queue overflows for long (a viewer that cannot keep up is dropped, never waited for).

use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use tokio::sync::{mpsc, oneshot, watch};

use crate::tap::{self, Packet, Tap};

/// WebRTC viewers the node serves at once, all streams together.
pub const MAX_VIEWERS: usize = 16;
/// How long gathering may take before the answer goes with what it has.
const GATHERING: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum WhepError {
    #[error("the offer is not SDP: {0}")]
    BadOffer(String),
    #[error("the offer has no H.264 video with packetization-mode=1")]
    NoH264,
    #[error("the stream is not running")]
    NotRunning,
    #[error("the stream has no rendition {0}")]
    NoRendition(String),
    #[error("{MAX_VIEWERS} WebRTC viewers are watching already")]
    Full,
    #[error("WebRTC failed: {0}")]
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    #[error("the offer is not usable: {0}")]
    BadOffer(String),
    #[error("no stream takes this key")]
    UnknownKey,
    #[error("the stream already has a publisher")]
    Busy,
    #[error("WebRTC failed: {0}")]
    Failed(String),
}

/// The H.264 payload type of the offer's first video section the node can send: mode 1,
/// preferring High, then Main, then Constrained Baseline.
pub fn h264_payload(offer: &gst_sdp::SDPMessageRef) -> Option<u8> {
    let video = offer.medias().find(|m| m.media() == Some("video"))?;
    let mut found: Vec<(u8, u8, String)> = Vec::new();
    for attr in video.attributes() {
        if attr.key() != "fmtp" {
            continue;
        }
        let Some((pt, params)) = attr.value().and_then(|v| v.split_once(' ')) else {
            continue;
        };
        let Ok(pt) = pt.parse::<u8>() else { continue };
        let is_h264 = video.attributes().any(|a| {
            a.key() == "rtpmap"
                && a.value().is_some_and(|v| {
                    v.split_once(' ').is_some_and(|(p, c)| {
                        p == pt.to_string() && c.to_ascii_uppercase().starts_with("H264/")
                    })
                })
        });
        let param = |k: &str| {
            params
                .split(';')
                .find_map(|p| p.trim().strip_prefix(k)?.strip_prefix('='))
        };
        if !is_h264 || param("packetization-mode") != Some("1") {
            continue;
        }
        let profile = param("profile-level-id")
            .unwrap_or("42e01f")
            .to_ascii_lowercase();
        let rank = match profile.get(..2) {
            Some("64") => 0,
            Some("4d") => 1,
            _ if profile.starts_with("42e0") => 2,
            _ => 3,
        };
        found.push((rank, pt, profile));
    }
    found.sort();
    found.into_iter().next().map(|(_, pt, _)| pt)
}

/// Whether an offer sends audio (a WHIP publisher's microphone).
pub fn offers_audio(offer: &str) -> bool {
    gst_sdp::SDPMessage::parse_buffer(offer.as_bytes())
        .is_ok_and(|sdp| sdp.medias().any(|m| m.media() == Some("audio")))
}

/// A WHIP publisher's session on a run's pipeline: negotiates its offer on the `source`
/// webrtcbin once the pipeline plays and sends the answer; then, when the publisher leaves
/// (DELETE) or its connection fails, ends the run with EOS. Aborted with the run, which
/// drops the guard and frees the key.
pub async fn publish(pipeline: gst::Pipeline, w: crate::rtmp::WhipPublish) {
    let crate::rtmp::WhipPublish {
        offer,
        answer,
        mut leave,
        guard: _guard,
    } = w;
    let end = |why: &str| {
        tracing::info!("WHIP publisher: {why}");
        let _ = pipeline.send_event(gst::event::Eos::new());
    };
    let Some(webrtc) = pipeline.by_name("source") else {
        let _ = answer.send(Err("the stream has no WebRTC input".into()));
        return;
    };
    for _ in 0..50 {
        if pipeline.current_state() == gst::State::Playing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sdp = match gst_sdp::SDPMessage::parse_buffer(offer.as_bytes()) {
        Ok(sdp) => sdp,
        Err(e) => {
            let _ = answer.send(Err(format!("the offer is not SDP: {e}")));
            return end("bad offer");
        }
    };
    // H.264 when the publisher offers it, so it is passed through like an RTMP push instead
    // of decoded: left to itself webrtcbin answers with the offer's first codec (a browser's
    // VP8).
    if let Some(pt) = h264_payload(&sdp) {
        let caps = rtp_caps("video", "H264", pt, 90_000).build();
        webrtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
            "add-transceiver",
            &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps],
        );
    }
    match negotiate(&webrtc, sdp).await {
        Ok(text) => {
            let _ = answer.send(Ok(text));
        }
        Err(e) => {
            let _ = answer.send(Err(e.to_string()));
            return end("negotiation failed");
        }
    }
    let mut lost = connection_lost(&webrtc);
    tokio::select! {
        _ = leave.changed() => end("left"),
        _ = lost.wait_for(|l| *l) => end("connection lost"),
    }
}

/// Turns true when the peer connection fails or closes.
fn connection_lost(webrtc: &gst::Element) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    webrtc.connect_notify(Some("connection-state"), move |w, _| {
        let state = w.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state");
        if matches!(
            state,
            gst_webrtc::WebRTCPeerConnectionState::Failed
                | gst_webrtc::WebRTCPeerConnectionState::Closed
        ) {
            let _ = tx.send(true);
        }
    });
    rx
}

/// The Opus payload type of the offer's first audio section.
pub fn opus_payload(offer: &gst_sdp::SDPMessageRef) -> Option<u8> {
    let audio = offer.medias().find(|m| m.media() == Some("audio"))?;
    audio.attributes().find_map(|a| {
        let (pt, codec) = a.value()?.split_once(' ')?;
        (a.key() == "rtpmap" && codec.to_ascii_lowercase().starts_with("opus/48000"))
            .then(|| pt.parse().ok())
            .flatten()
    })
}

/// A negotiated viewer, ready to be fed. Its tap goes to the stream's pipeline, which holds
/// the only reference: when the run ends the tap goes with it and the session sees its queue
/// close.
pub struct Session {
    pub tap: Option<Arc<Tap>>,
    rx: mpsc::Receiver<Packet>,
    pipeline: gst::Pipeline,
    video: gst_app::AppSrc,
    /// The stream's Opus audio, when it has audio and the viewer takes it.
    audio: Option<gst_app::AppSrc>,
    webrtc: gst::Element,
}

/// Builds a viewer's pipeline for `offer` and returns it with the SDP answer; with `audio`
/// (the stream has audio, encoded to Opus) and an offer that takes Opus, sound goes too.
pub async fn answer(
    offer: &str,
    rendition: String,
    audio: bool,
) -> Result<(Session, String), WhepError> {
    let sdp = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes())
        .map_err(|e| WhepError::BadOffer(e.to_string()))?;
    let pt = h264_payload(&sdp).ok_or(WhepError::NoH264)?;
    let failed = |e: String| WhepError::Failed(e);
    let pipeline = gst::Pipeline::with_name("whep");
    let video = pushed_live("video", 4 * 1024 * 1024, None);
    let parse = tap::make("h264parse", "video-parse").map_err(failed)?;
    parse.set_property("config-interval", -1i32);
    let pay = tap::make("rtph264pay", "video-pay").map_err(failed)?;
    pay.set_property("pt", u32::from(pt));
    pay.set_property("config-interval", -1i32);
    pay.set_property_from_str("aggregate-mode", "zero-latency");
    let caps = tap::make("capsfilter", "video-rtp-caps").map_err(failed)?;
    caps.set_property(
        "caps",
        rtp_caps("video", "H264", pt, 90_000)
            .field("packetization-mode", "1")
            .build(),
    );
    let webrtc = tap::make("webrtcbin", "webrtc").map_err(failed)?;
    webrtc.set_property_from_str("bundle-policy", "max-bundle");
    pipeline
        .add_many([video.upcast_ref(), &parse, &pay, &caps, &webrtc])
        .map_err(|e| failed(e.to_string()))?;
    gst::Element::link_many([video.upcast_ref(), &parse, &pay, &caps])
        .map_err(|e| failed(e.to_string()))?;
    let sink = webrtc
        .request_pad_simple("sink_%u")
        .ok_or_else(|| failed("webrtcbin gives no sink pad".into()))?;
    caps.static_pad("src")
        .ok_or_else(|| failed("no src pad".into()))?
        .link(&sink)
        .map_err(|e| failed(format!("{e:?}")))?;
    // A viewer that asks for sound gets an audio branch even when the stream has none: a
    // transceiver without a linked pad holds webrtcbin's whole bundle back, the picture
    // too. That branch is then never fed, and the viewer's audio track stays muted.
    let audio = match opus_payload(&sdp) {
        Some(pt) => Some(opus_branch(&pipeline, &webrtc, pt).map_err(failed)?).filter(|_| audio),
        None => None,
    };
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| failed(e.to_string()))?;

    let negotiated = negotiate(&webrtc, sdp).await;
    let text = match negotiated {
        Ok(t) => t,
        Err(e) => {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(e);
        }
    };
    let (tap, rx) = Tap::with_opus(rendition, false, audio.is_some());
    Ok((
        Session {
            tap: Some(tap),
            rx,
            pipeline,
            video,
            audio,
            webrtc,
        },
        text,
    ))
}

/// RTP caps as webrtcbin matches them to an m-line.
fn rtp_caps(
    media: &str,
    encoding: &str,
    pt: u8,
    clock_rate: i32,
) -> gst::caps::Builder<gst::caps::NoFeature> {
    gst::Caps::builder("application/x-rtp")
        .field("media", media)
        .field("encoding-name", encoding)
        .field("payload", i32::from(pt))
        .field("clock-rate", clock_rate)
}

/// A live `appsrc` stamped with the pipeline's running time as buffers are pushed, dropping
/// the oldest when `max_bytes` are queued (a viewer that cannot keep up loses frames alone).
fn pushed_live(name: &str, max_bytes: u64, caps: Option<&gst::Caps>) -> gst_app::AppSrc {
    let mut b = gst_app::AppSrc::builder()
        .name(name)
        .is_live(true)
        .format(gst::Format::Time)
        .do_timestamp(true)
        .max_bytes(max_bytes)
        .block(false);
    if let Some(caps) = caps {
        b = b.caps(caps);
    }
    let src = b.build();
    src.set_property_from_str("leaky-type", "downstream");
    src
}

/// `appsrc ! rtpopuspay ! caps ! webrtcbin`: the stream's Opus packets to the viewer.
fn opus_branch(
    pipeline: &gst::Pipeline,
    webrtc: &gst::Element,
    pt: u8,
) -> Result<gst_app::AppSrc, String> {
    let opus = gst::Caps::builder("audio/x-opus")
        .field("channel-mapping-family", 0i32)
        .build();
    let src = pushed_live("audio", 256 * 1024, Some(&opus));
    let pay = tap::make("rtpopuspay", "audio-pay")?;
    pay.set_property("pt", u32::from(pt));
    let caps = tap::make("capsfilter", "audio-rtp-caps")?;
    caps.set_property("caps", rtp_caps("audio", "OPUS", pt, 48_000).build());
    pipeline
        .add_many([src.upcast_ref(), &pay, &caps])
        .map_err(|e| e.to_string())?;
    gst::Element::link_many([src.upcast_ref(), &pay, &caps]).map_err(|e| e.to_string())?;
    let sink = webrtc
        .request_pad_simple("sink_%u")
        .ok_or("webrtcbin gives no audio pad")?;
    caps.static_pad("src")
        .ok_or("no src pad")?
        .link(&sink)
        .map_err(|e| format!("audio → webrtcbin: {e:?}"))?;
    Ok(src)
}

/// Offer in, answer out, gathering complete.
async fn negotiate(webrtc: &gst::Element, offer: gst_sdp::SDPMessage) -> Result<String, WhepError> {
    let failed = |e: &str| WhepError::Failed(e.to_string());
    let desc = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, offer);
    webrtc.emit_by_name::<()>("set-remote-description", &[&desc, &None::<gst::Promise>]);
    let (tx, rx) = oneshot::channel();
    let promise = gst::Promise::with_change_func(move |reply| {
        let answer = reply
            .ok()
            .flatten()
            .and_then(|s| s.get::<gst_webrtc::WebRTCSessionDescription>("answer").ok());
        let _ = tx.send(answer);
    });
    webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &promise]);
    let answer = tokio::time::timeout(GATHERING, rx)
        .await
        .map_err(|_| failed("no answer in time"))?
        .map_err(|_| failed("no answer"))?
        .ok_or_else(|| failed("the offer cannot be answered"))?;
    let (done_tx, mut done_rx) = watch::channel(false);
    webrtc.connect_notify(Some("ice-gathering-state"), move |w, _| {
        let state = w.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
        if state == gst_webrtc::WebRTCICEGatheringState::Complete {
            let _ = done_tx.send(true);
        }
    });
    webrtc.emit_by_name::<()>("set-local-description", &[&answer, &None::<gst::Promise>]);
    let complete = webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
        == gst_webrtc::WebRTCICEGatheringState::Complete;
    if !complete {
        let _ = tokio::time::timeout(GATHERING, done_rx.wait_for(|d| *d)).await;
    }
    let local = webrtc
        .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
        .ok_or_else(|| failed("no local description"))?;
    local
        .sdp()
        .as_text()
        .map_err(|e| WhepError::Failed(e.to_string()))
}

impl Session {
    /// Feeds the viewer from the next keyframe until `stop`, the stream's end, or its
    /// connection failing.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let Some(bus) = self.pipeline.bus() else {
            return;
        };
        use futures::StreamExt;
        let mut messages = bus.stream();
        let mut lost = connection_lost(&self.webrtc);
        loop {
            tokio::select! {
                p = self.rx.recv() => match p {
                    None => break,
                    Some(Packet::Video(caps, mut b)) => {
                        if self.video.caps().as_ref() != Some(&caps) {
                            self.video.set_caps(Some(&caps));
                        }
                        {
                            // Stamped with the pipeline's running time as it is pushed.
                            let m = b.make_mut();
                            m.set_pts(gst::ClockTime::NONE);
                            m.set_dts(gst::ClockTime::NONE);
                        }
                        if self.video.push_buffer(b).is_err() {
                            break;
                        }
                    }
                    Some(Packet::Audio(caps, mut b)) => {
                        if let Some(audio) = &self.audio {
                            if audio.caps().as_ref() != Some(&caps) {
                                audio.set_caps(Some(&caps));
                            }
                            {
                                let m = b.make_mut();
                                m.set_pts(gst::ClockTime::NONE);
                                m.set_dts(gst::ClockTime::NONE);
                            }
                            if audio.push_buffer(b).is_err() {
                                break;
                            }
                        }
                    }
                },
                m = messages.next() => match m.as_ref().map(|m| m.view()) {
                    Some(gst::MessageView::Error(e)) => {
                        tracing::warn!("WebRTC viewer: {} ({:?})", e.error(), e.debug());
                        break;
                    }
                    None | Some(gst::MessageView::Eos(_)) => break,
                    _ => {}
                },
                _ = lost.wait_for(|l| *l) => break,
                _ = stop.changed() => break,
            }
        }
        let pipeline = self.pipeline;
        let _ = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_h264_payload_of_an_offer_is_chosen() {
        crate::init().expect("gstreamer");
        let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 102 104 108 116\r\nc=IN IP4 0.0.0.0\r\n\
            a=rtpmap:96 VP8/90000\r\n\
            a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
            a=rtpmap:104 H264/90000\r\na=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=64001f\r\n\
            a=rtpmap:108 H264/90000\r\na=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
            a=rtpmap:116 H264/90000\r\na=fmtp:116 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f\r\n";
        let sdp = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes()).expect("sdp");
        assert_eq!(h264_payload(&sdp), Some(116));
        let vp8_only = offer
            .lines()
            .filter(|l| !l.contains("H264") && !l.contains("fmtp"))
            .collect::<Vec<_>>()
            .join("\r\n");
        let sdp = gst_sdp::SDPMessage::parse_buffer(vp8_only.as_bytes()).expect("sdp");
        assert_eq!(h264_payload(&sdp), None);
    }
}
