//! A stream's audio: one input chain, teed to every HLS rendition's muxer.
//!
//! AAC-LC at 22.05 kHz or more is passed through untouched (`aacparse`); anything else (MP3,
//! Opus, HE-AAC, PCM…) is decoded once and encoded once to AAC-LC, 48 kHz stereo, shared by
//! every rendition.
//!
//! Each rendition's `hlssink2` takes its audio pad when it is made, so the audio tee must
//! exist by then: a source that knows it carries audio before its video caps arrive says so
//! with [`expect`] (RTMP from its first tags, RTSP from its SDP, files as their demuxer
//! exposes the track). Audio that shows up after the renditions were made is discarded and
//! the status says why. An offloaded stream's segmenter takes it like a rendition does. The
//! tee allows unlinked pads, so an output that takes no audio never stalls on it.

use super::*;

/// AAC bitrate of encoded audio, bits per second.
const AAC_BITRATE: i32 = 128_000;
/// The lowest AAC sample rate passed through; lower ones are resampled.
const MIN_PASSTHROUGH_RATE: i32 = 22_050;

/// What the stream's audio is, as the status shows it.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, utoipa::ToSchema)]
pub struct AudioInfo {
    /// The input's codec (`aac`, `mp3`, `opus`, …).
    pub codec: String,
    pub rate: u32,
    pub channels: u32,
    /// AAC passed through untouched; otherwise decoded and encoded to AAC once.
    pub passthrough: bool,
    /// Why the input's audio is not in the output, when it is not.
    pub ignored: Option<String>,
    /// The input's audio bitrate.
    pub kbps: f64,
    /// The loudest channel's RMS level over the last half second, dBFS (when watched).
    pub level_db: Option<f64>,
    /// Below the silence level for longer than `media.silence_seconds`.
    pub silent: bool,
}

const TEE: &str = "audio-tee";

/// The stream will carry audio: makes the tee the renditions take it from (once).
pub(crate) fn expect(b: &Builder, pipeline: &gst::Pipeline) -> Result<(), BuildError> {
    if pipeline.by_name(TEE).is_some() {
        return Ok(());
    }
    let tee = make("tee", TEE)?;
    tee.set_property("allow-not-linked", true);
    add_linked(pipeline, &[&tee])?;
    if let Some(pad) = tee.static_pad("sink") {
        b.counters.tap_audio(&pad);
    }
    note(b, |_| {});
    level_branch(b, pipeline, &tee)
}

/// `queue ! avdec_aac ! audioconvert ! level ! fakesink` off the audio tee: the level
/// element posts each half second's RMS per channel on the bus, where the runner watches
/// for silence. Leaky, so a slow decode never holds the audio back.
fn level_branch(
    b: &Builder,
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
) -> Result<(), BuildError> {
    if !b.ctx.watch_silence {
        return Ok(());
    }
    let queue = live_queue(b, pipeline, "audio-level-queue", true)?;
    queue.set_property_from_str("leaky", "downstream");
    let decode = make("avdec_aac", "audio-level-decode")?;
    let convert = make("audioconvert", "audio-level-convert")?;
    let level = make("level", LEVEL)?;
    level.set_property("interval", 500_000_000u64);
    level.set_property("post-messages", true);
    let sink = make("fakesink", "audio-level-sink")?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    add_linked(pipeline, &[&queue, &decode, &convert, &level, &sink])?;
    tee.link(&queue)
        .map_err(|e| BuildError::Link(format!("audio tee → level: {e}")))?;
    Ok(())
}

/// The level element's name: its bus messages carry the stream's audio level.
pub const LEVEL: &str = "audio-level";

/// The loudest channel's RMS in a level message, dBFS (digital silence is very negative).
pub fn loudest_rms(st: &gst::StructureRef) -> Option<f64> {
    let rms = st.get::<gst::glib::ValueArray>("rms").ok()?;
    rms.iter()
        .filter_map(|v| v.get::<f64>().ok())
        .map(|db| if db.is_finite() { db } else { -200.0 })
        .reduce(f64::max)
}

/// Whether the renditions take audio.
pub(crate) fn expected(pipeline: &gst::Pipeline) -> bool {
    pipeline.by_name(TEE).is_some()
}

/// Links the audio tee to a rendition's `hlssink2` through a queue of its own.
pub(crate) fn link_rendition(
    b: &Builder,
    pipeline: &gst::Pipeline,
    sink: &gst::Element,
    n: &str,
) -> Result<(), BuildError> {
    link_sink(b, pipeline, sink, "audio", n)
}

/// Links the audio tee, when the stream has one, to `sink`'s request pad `pad` through a
/// queue of its own named after `n`.
pub(crate) fn link_sink(
    b: &Builder,
    pipeline: &gst::Pipeline,
    sink: &gst::Element,
    pad: &str,
    n: &str,
) -> Result<(), BuildError> {
    let Some(tee) = pipeline.by_name(TEE) else {
        return Ok(());
    };
    let queue = live_queue(b, pipeline, &format!("{n}-audio-queue"), true)?;
    add_linked(pipeline, &[&queue])?;
    let audio = sink
        .request_pad_simple(pad)
        .ok_or_else(|| BuildError::Link(format!("{n}: {} has no audio pad", sink.name())))?;
    queue
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("queue has no src pad".into()))?
        .link(&audio)
        .map_err(|e| BuildError::Link(format!("{n} audio → {}: {e:?}", sink.name())))?;
    tee.link(&queue)
        .map_err(|e| BuildError::Link(format!("audio tee → {n}: {e}")))?;
    Ok(())
}

/// The stream's audio as Opus, for WebRTC viewers: `queue ! avdec_aac ! audioconvert !
/// audioresample ! opusenc ! fakesink` off the audio tee, made when the first viewer that
/// takes audio arrives (one encode for all of them), its packets handed to the Opus taps.
/// False when the stream has no audio.
pub fn ensure_opus(counters: &Arc<Counters>) -> bool {
    let Some(pipeline) = counters
        .pipeline
        .lock()
        .ok()
        .and_then(|p| p.as_ref().and_then(|p| p.upgrade()))
    else {
        return false;
    };
    let Some(tee) = pipeline.by_name(TEE) else {
        return false;
    };
    if pipeline.by_name("audio-opus-encode").is_some() {
        return true;
    }
    let made = (|| -> Result<(), BuildError> {
        let queue = make("queue", "audio-opus-queue")?;
        queue.set_property_from_str("leaky", "downstream");
        let decode = make("avdec_aac", "audio-opus-decode")?;
        let convert = make("audioconvert", "audio-opus-convert")?;
        let resample = make("audioresample", "audio-opus-resample")?;
        let encode = make("opusenc", "audio-opus-encode")?;
        let sink = make("fakesink", "audio-opus-sink")?;
        sink.set_property("sync", false);
        sink.set_property("async", false);
        add_linked(
            &pipeline,
            &[&queue, &decode, &convert, &resample, &encode, &sink],
        )?;
        if let Some(pad) = encode.static_pad("src") {
            counters.tap_opus(&pad);
        }
        tee.link(&queue)
            .map_err(|e| BuildError::Link(format!("audio tee → opus: {e}")))
    })();
    if let Err(e) = &made {
        tracing::warn!("no Opus audio for WebRTC viewers: {e}");
    }
    made.is_ok()
}

fn note(b: &Builder, f: impl FnOnce(&mut AudioInfo)) {
    if let Ok(mut a) = b.counters.audio.lock() {
        f(a.get_or_insert_with(AudioInfo::default));
    }
}

/// The codec of audio caps, and whether it is AAC-LC that can pass through.
fn describe(caps: &gst::CapsRef) -> (String, u32, u32, bool) {
    let Some(s) = caps.structure(0) else {
        return ("unknown".into(), 0, 0, false);
    };
    let rate = s.get::<i32>("rate").unwrap_or(0);
    let channels = s.get::<i32>("channels").unwrap_or(0);
    let version = s.get::<i32>("mpegversion").unwrap_or(0);
    let codec = match s.name().as_str() {
        "audio/mpeg" if version == 1 => "mp3".to_string(),
        "audio/mpeg" => "aac".to_string(),
        "audio/x-opus" => "opus".to_string(),
        "audio/x-raw" => "pcm".to_string(),
        other => other
            .trim_start_matches("audio/x-")
            .trim_start_matches("audio/")
            .to_string(),
    };
    // The AudioSpecificConfig's first five bits are the object type: 2 is AAC-LC (HE-AAC
    // is 5 or 29). Without one (ADTS) the stream is taken as LC, as nearly all are.
    let lc = s
        .get::<gst::Buffer>("codec_data")
        .ok()
        .and_then(|b| {
            b.map_readable()
                .ok()
                .and_then(|m| m.first().map(|x| x >> 3))
        })
        .is_none_or(|object| object == 2);
    let passthrough = codec == "aac" && lc && (rate == 0 || rate >= MIN_PASSTHROUGH_RATE);
    (
        codec,
        rate.max(0) as u32,
        channels.max(0) as u32,
        passthrough,
    )
}

/// Takes a source's audio pad: into the tee when the renditions take audio, else discarded
/// (and the status says why).
pub(crate) fn attach_input(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
) -> Result<(), BuildError> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let (codec, rate, channels, passthrough) = describe(&caps);
    let Some(tee) = pipeline.by_name(TEE) else {
        note(b, |a| {
            a.codec = codec;
            a.ignored =
                Some("the audio track appeared after the video renditions were made".into());
        });
        return discard(pipeline, pad, "audio");
    };
    if tee.static_pad("sink").is_some_and(|p| p.is_linked()) {
        // A second audio track: only the first one is used.
        return discard(pipeline, pad, "audio");
    }
    note(b, |a| {
        a.codec = codec;
        a.rate = rate;
        a.channels = channels;
        a.passthrough = passthrough;
        a.ignored = None;
    });
    let entry = if passthrough {
        let parse = make("aacparse", "audio-parse")?;
        add_linked(pipeline, &[&parse])?;
        link(&[&parse, &tee])?;
        parse
    } else {
        encode_input(b, pipeline, &tee)?
    };
    let sink = entry
        .static_pad("sink")
        .ok_or_else(|| BuildError::Link("audio input has no sink pad".into()))?;
    let counters = b.counters.clone();
    sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            counters
                .audio_bytes
                .fetch_add(buf.size() as u64, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
    pad.link(&sink)
        .map_err(|e| BuildError::Link(format!("source audio → {}: {e:?}", entry.name())))?;
    Ok(())
}

/// `queue ! decodebin` → `audioconvert ! audioresample ! caps ! avenc_aac ! aacparse ! tee`;
/// returns the queue (the chain's way in).
fn encode_input(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
) -> Result<gst::Element, BuildError> {
    let queue = live_queue(b, pipeline, "audio-decode-queue", true)?;
    let decode = make("decodebin", "audio-decode")?;
    let convert = make("audioconvert", "audio-convert")?;
    let resample = make("audioresample", "audio-resample")?;
    let caps = make("capsfilter", "audio-raw-caps")?;
    caps.set_property(
        "caps",
        gst::Caps::builder("audio/x-raw")
            .field("rate", 48_000i32)
            .field("channels", 2i32)
            .build(),
    );
    let encode = make("avenc_aac", "audio-encode")?;
    encode.set_property("bitrate", AAC_BITRATE);
    let parse = make("aacparse", "audio-parse")?;
    add_linked(pipeline, &[&queue, &decode])?;
    add_linked(pipeline, &[&convert, &resample, &caps, &encode, &parse])?;
    link(&[&parse, tee])?;
    let convert_sink = convert
        .static_pad("sink")
        .ok_or_else(|| BuildError::Link("audioconvert has no sink pad".into()))?;
    let weak = pipeline.downgrade();
    decode.connect_pad_added(move |_d, pad| {
        let raw = pad
            .current_caps()
            .unwrap_or_else(|| pad.query_caps(None))
            .structure(0)
            .is_some_and(|s| s.name() == "audio/x-raw");
        if raw
            && !convert_sink.is_linked()
            && let Err(e) = pad.link(&convert_sink)
            && let Some(p) = weak.upgrade()
        {
            post_error(&p, &format!("audio decoder → audioconvert: {e:?}"));
        }
    });
    Ok(queue)
}

/// `mp4a.40.2` when the renditions carry audio (always AAC-LC: passed through only when LC).
pub(crate) fn codecs(pipeline: &gst::Pipeline) -> Option<&'static str> {
    expected(pipeline).then_some("mp4a.40.2")
}
