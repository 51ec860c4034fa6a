//! The encoder probe: which H.264 encoders exist on this device *and work*.
//!
//! An element that is registered is not enough (the nvcodec and VA plugins register elements
//! on machines without the hardware, or fail only when a session opens), so every candidate
//! runs a short test encode before it counts.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Serialize;

use super::spec::{H264Profile, ResolvedRendition};

/// Candidates, best first: Jetson V4L2, NVENC, VA-API, V4L2 M2M, then x264.
pub const DEFAULT_CANDIDATES: &[&str] = &[
    "nvv4l2h264enc",
    "nvh264enc",
    "nvautogpuh264enc",
    "vah264enc",
    "vaapih264enc",
    "v4l2h264enc",
    "x264enc",
];

/// The software encoder every device falls back to.
pub const SOFTWARE: &str = "x264enc";

/// The encoder families the node knows how to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EncoderKind {
    JetsonV4l2,
    Nvenc,
    Va,
    Vaapi,
    V4l2M2m,
    X264,
}

impl EncoderKind {
    pub fn from_element(name: &str) -> Option<Self> {
        Some(match name {
            "nvv4l2h264enc" => Self::JetsonV4l2,
            "nvh264enc" | "nvautogpuh264enc" => Self::Nvenc,
            "vah264enc" => Self::Va,
            "vaapih264enc" => Self::Vaapi,
            "v4l2h264enc" => Self::V4l2M2m,
            "x264enc" => Self::X264,
            _ => return None,
        })
    }

    pub fn is_hardware(self) -> bool {
        self != Self::X264
    }

    /// Raw format the encoder is fed with.
    fn input_format(self) -> &'static str {
        match self {
            Self::X264 => "I420",
            _ => "NV12",
        }
    }
}

/// The outcome of probing one candidate.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EncoderReport {
    pub element: String,
    pub hardware: bool,
    /// Registered with GStreamer.
    pub present: bool,
    /// A test encode through it succeeded.
    pub works: bool,
    /// Why it does not work, when it does not.
    pub detail: Option<String>,
}

/// What the probe found, in candidate order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EncoderInventory {
    pub encoders: Vec<EncoderReport>,
    /// The encoder streams use unless they override it.
    pub preferred: String,
}

impl EncoderInventory {
    /// Whether a hardware encoder was found and works.
    pub fn has_hardware(&self) -> bool {
        self.encoders.iter().any(|e| e.works && e.hardware)
    }

    pub fn works(&self, element: &str) -> bool {
        self.encoders
            .iter()
            .any(|e| e.element == element && e.works)
    }

    pub fn working(&self) -> Vec<String> {
        self.encoders
            .iter()
            .filter(|e| e.works)
            .map(|e| e.element.clone())
            .collect()
    }
}

/// Probes each candidate with a short test encode. Runs in a blocking context (it waits on
/// GStreamer buses); takes well under a second per present encoder.
pub fn probe(candidates: &[String]) -> EncoderInventory {
    let mut encoders = Vec::new();
    for name in candidates {
        let hardware = EncoderKind::from_element(name).is_some_and(|k| k.is_hardware());
        let present = gst::ElementFactory::find(name).is_some();
        let (works, detail) = if present {
            match test_encode(name) {
                Ok(()) => (true, None),
                Err(e) => (false, Some(e)),
            }
        } else {
            (false, Some("not installed".to_string()))
        };
        encoders.push(EncoderReport {
            element: name.clone(),
            hardware,
            present,
            works,
            detail,
        });
    }
    let preferred = encoders
        .iter()
        .find(|e| e.works)
        .map(|e| e.element.clone())
        .unwrap_or_else(|| SOFTWARE.to_string());
    EncoderInventory {
        encoders,
        preferred,
    }
}

fn test_encode(name: &str) -> Result<(), String> {
    let kind = EncoderKind::from_element(name).ok_or("unknown encoder family")?;
    let pipeline = gst::Pipeline::with_name(&format!("probe-{name}"));
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|_| format!("{factory} is missing"))
    };
    let src = gst::ElementFactory::make("videotestsrc")
        .property("num-buffers", 10i32)
        .build()
        .map_err(|_| "videotestsrc is missing")?;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", kind.input_format())
        .field("width", 320i32)
        .field("height", 240i32)
        .field("framerate", gst::Fraction::new(30, 1))
        .build();
    let filter = gst::ElementFactory::make("capsfilter")
        .property("caps", &caps)
        .build()
        .map_err(|_| "capsfilter is missing")?;
    let mut chain = vec![src, filter];
    if kind == EncoderKind::JetsonV4l2 {
        chain.push(make("nvvidconv")?);
    }
    let enc = make(name)?;
    configure(&enc, kind, 500, 30, H264Profile::Main, "ultrafast", "");
    chain.push(enc);
    chain.push(make("h264parse")?);
    chain.push(make("fakesink")?);
    pipeline
        .add_many(&chain)
        .map_err(|e| format!("cannot build test pipeline: {e}"))?;
    gst::Element::link_many(&chain).map_err(|e| format!("cannot link: {e}"))?;
    let result = run_to_eos(&pipeline, Duration::from_secs(10));
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn run_to_eos(pipeline: &gst::Pipeline, timeout: Duration) -> Result<(), String> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "refused to start".to_string())?;
    let bus = pipeline.bus().ok_or("pipeline has no bus")?;
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    match msg {
        Some(m) => match m.view() {
            gst::MessageView::Eos(_) => Ok(()),
            gst::MessageView::Error(e) => Err(e.error().to_string()),
            _ => Err("unexpected message".into()),
        },
        None => Err(format!("no output within {} s", timeout.as_secs())),
    }
}

/// Sets bitrate, keyframe interval and speed on an encoder of the given family, each in the
/// unit that family expects.
pub fn configure(
    enc: &gst::Element,
    kind: EncoderKind,
    bitrate_kbps: u32,
    gop_frames: u32,
    profile: H264Profile,
    x264_preset: &str,
    x264_tune: &str,
) {
    let set = |name: &str, v: gst::glib::Value| set_checked(enc, name, v);
    match kind {
        EncoderKind::X264 => {
            set("bitrate", bitrate_kbps.to_value());
            set("key-int-max", gop_frames.to_value());
            if enc.find_property("speed-preset").is_some() {
                enc.set_property_from_str("speed-preset", x264_preset);
            }
            if !x264_tune.is_empty() && enc.find_property("tune").is_some() {
                enc.set_property_from_str("tune", x264_tune);
            }
            if profile == H264Profile::Baseline {
                set("bframes", 0u32.to_value());
                set("cabac", false.to_value());
            }
            // No keyframes at scene cuts: every rendition then cuts its segments on the same
            // frames (players switch renditions at segment boundaries), and the encoder skips
            // the scene-change analysis it would spend on every frame.
            set("option-string", "scenecut=0".to_value());
        }
        EncoderKind::JetsonV4l2 => {
            set("bitrate", bitrate_kbps.saturating_mul(1000).to_value());
            set("iframeinterval", gop_frames.to_value());
            set("idrinterval", gop_frames.to_value());
            set("insert-sps-pps", true.to_value());
        }
        EncoderKind::Nvenc => {
            set("bitrate", bitrate_kbps.to_value());
            set("gop-size", (gop_frames as i32).to_value());
        }
        EncoderKind::Va => {
            set("bitrate", bitrate_kbps.to_value());
            set("key-int-max", gop_frames.to_value());
        }
        EncoderKind::Vaapi => {
            set("bitrate", bitrate_kbps.to_value());
            set("keyframe-period", gop_frames.to_value());
        }
        EncoderKind::V4l2M2m => {
            let controls = gst::Structure::builder("controls")
                .field("video_bitrate", (bitrate_kbps.saturating_mul(1000)) as i32)
                .field("h264_i_frame_period", gop_frames as i32)
                .build();
            set("extra-controls", controls.to_value());
        }
    }
}

/// Sets a property only when the element has it and the value converts to its type: encoders
/// of one family differ between plugin versions, and a missing knob must not abort the stream.
fn set_checked(enc: &gst::Element, name: &str, v: gst::glib::Value) {
    if let Some(pspec) = enc.find_property(name)
        && let Ok(v) = v.transform_with_type(pspec.value_type())
    {
        enc.set_property_from_value(name, &v);
    }
}

/// The element chain (converter, encoder) for one rendition on the given encoder.
pub fn encoder_chain(
    element: &str,
    r: &ResolvedRendition,
    x264_preset: &str,
    x264_tune: &str,
    name_prefix: &str,
) -> Result<(Vec<gst::Element>, &'static str), String> {
    let kind = EncoderKind::from_element(element)
        .ok_or_else(|| format!("unsupported encoder {element}"))?;
    let mut chain = Vec::new();
    if kind == EncoderKind::JetsonV4l2 {
        chain.push(
            gst::ElementFactory::make("nvvidconv")
                .name(format!("{name_prefix}-nvconv"))
                .build()
                .map_err(|_| "nvvidconv is missing".to_string())?,
        );
    }
    let enc = gst::ElementFactory::make(element)
        .name(format!("{name_prefix}-enc"))
        .build()
        .map_err(|_| format!("{element} is missing"))?;
    configure(
        &enc,
        kind,
        r.spec.bitrate_kbps,
        r.gop_frames,
        r.spec.profile,
        x264_preset,
        x264_tune,
    );
    chain.push(enc);
    Ok((chain, kind.input_format()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keyframes only every GOP, even on content that is all scene changes (snow), so that
    /// every rendition of a ladder cuts its segments on the same frames.
    #[test]
    fn x264_keyframes_follow_the_gop_only() {
        use gstreamer_app as gst_app;
        gst::init().expect("gstreamer");
        let pipeline = gst::parse::launch(
            "videotestsrc pattern=snow num-buffers=90 ! video/x-raw,width=320,height=240,framerate=30/1 \
             ! x264enc name=enc ! appsink name=out sync=false",
        )
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
        let enc = pipeline.by_name("enc").expect("enc");
        configure(
            &enc,
            EncoderKind::X264,
            500,
            30,
            H264Profile::High,
            "veryfast",
            "zerolatency",
        );
        let sink = pipeline
            .by_name("out")
            .expect("out")
            .downcast::<gst_app::AppSink>()
            .expect("appsink");
        pipeline.set_state(gst::State::Playing).expect("play");
        let mut keyframes = 0;
        let mut frames = 0;
        while let Ok(sample) = sink.pull_sample() {
            frames += 1;
            if let Some(b) = sample.buffer()
                && !b.flags().contains(gst::BufferFlags::DELTA_UNIT)
            {
                keyframes += 1;
            }
        }
        pipeline.set_state(gst::State::Null).expect("stop");
        assert_eq!(frames, 90);
        assert_eq!(keyframes, 3, "keyframes outside the GOP");
    }

    #[test]
    fn software_encoder_is_found_and_works() {
        gst::init().expect("gstreamer");
        let inv = probe(&[
            "nvh264enc".to_string(),
            "vah264enc".to_string(),
            "x264enc".to_string(),
        ]);
        assert_eq!(inv.preferred, "x264enc");
        assert!(inv.works("x264enc"));
        let nv = &inv.encoders[0];
        assert!(!nv.works);
        assert!(nv.detail.is_some());
    }
}
