//! The ways into a stream's pipeline, up to the raw tee: the sources, H.264 parsed and
//! decoded once (its passthrough rendition branches off before the decoder), anything else
//! decoded once.

use super::*;

/// A live raw-audio source (a microphone, a test tone) into the stream's audio: `src !
/// audioconvert ! audioresample`, then encoded to AAC once like any audio that is not AAC.
fn live_audio(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    src: &gst::Element,
) -> Result<(), BuildError> {
    super::audio::expect(b, pipeline)?;
    let convert = make("audioconvert", "audio-source-convert")?;
    let resample = make("audioresample", "audio-source-resample")?;
    pipeline
        .add_many([src, &convert, &resample])
        .map_err(|e| BuildError::Link(e.to_string()))?;
    link(&[src, &convert, &resample])?;
    let pad = resample
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("audioresample has no src pad".into()))?;
    super::audio::attach_input(b, pipeline, &pad)
}

/// Adds the source elements for `spec` (and, for sources whose caps are known before media
/// flows, the branches behind them); returns the appsrc an RTMP publisher feeds.
pub(crate) fn attach(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    spec: &StreamSpec,
    input: Input,
) -> Result<Option<gst_app::AppSrc>, BuildError> {
    let mut appsrc = None;
    match (&spec.source, input) {
        (
            SourceSpec::Test {
                width,
                height,
                fps,
                pattern,
                tone,
            },
            _,
        ) => {
            if *tone {
                let src = make("audiotestsrc", "audio-source")?;
                src.set_property("is-live", true);
                src.set_property("freq", 1000.0f64);
                // −20 dBFS: the usual alignment tone.
                src.set_property("volume", 0.1f64);
                live_audio(b, pipeline, &src)?;
            }
            let src = gst::ElementFactory::make("videotestsrc")
                .name("source")
                .property("is-live", true)
                .build()
                .map_err(|_| BuildError::MissingElement("videotestsrc".into()))?;
            src.set_property_from_str("pattern", pattern.gst_nick());
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", *width as i32)
                .field("height", *height as i32)
                .field("framerate", gst::Fraction::new(*fps as i32, 1))
                .build();
            let filter = make("capsfilter", "source-caps")?;
            filter.set_property("caps", &caps);
            pipeline
                .add_many([&src, &filter])
                .map_err(|e| BuildError::Link(e.to_string()))?;
            link(&[&src, &filter])?;
            let mut last = filter;
            // A running clock makes a frozen preview obvious; optional (needs pango).
            if let Ok(clock) = make("clockoverlay", "source-clock") {
                clock.set_property_from_str("halignment", "right");
                clock.set_property_from_str("valignment", "bottom");
                pipeline
                    .add(&clock)
                    .map_err(|e| BuildError::Link(e.to_string()))?;
                link(&[&last, &clock])?;
                last = clock;
            }
            let pad = last
                .static_pad("src")
                .ok_or_else(|| BuildError::Link("test source has no src pad".into()))?;
            attach_raw(b, pipeline, &pad, "raw")?;
        }
        (
            SourceSpec::V4l2 {
                device,
                width,
                height,
                fps,
                audio_device,
            },
            _,
        ) => {
            if let Some(mic) = audio_device {
                let src = make("alsasrc", "audio-source")?;
                src.set_property("device", mic);
                // Timestamps from the pipeline's clock, like v4l2src's: audio and video on
                // one clock stay in sync whatever each device's own clock drifts to.
                src.set_property_from_str("slave-method", "re-timestamp");
                live_audio(b, pipeline, &src)?;
            }
            let info = lpe_drivers::camera::probe(Path::new(device))
                .map_err(|e| BuildError::Source(e.to_string()))?;
            let n =
                lpe_drivers::camera::negotiate(&info, *width, *height, *fps).ok_or_else(|| {
                    BuildError::Source(format!(
                        "camera {device} offers no H.264, MJPEG or YUYV format"
                    ))
                })?;
            let src = make("v4l2src", "source")?;
            src.set_property("device", device);
            let rate = gst::Fraction::new(n.fps_num as i32, n.fps_den.max(1) as i32);
            let caps_name = match n.format {
                lpe_drivers::camera::PixelFormat::H264 => "video/x-h264",
                lpe_drivers::camera::PixelFormat::Mjpeg => "image/jpeg",
                lpe_drivers::camera::PixelFormat::Yuyv => "video/x-raw",
            };
            let mut caps = gst::Caps::builder(caps_name)
                .field("width", n.width as i32)
                .field("height", n.height as i32)
                .field("framerate", rate);
            if n.format == lpe_drivers::camera::PixelFormat::Yuyv {
                caps = caps.field("format", "YUY2");
            }
            let filter = make("capsfilter", "source-caps")?;
            filter.set_property("caps", caps.build());
            pipeline
                .add_many([&src, &filter])
                .map_err(|e| BuildError::Link(e.to_string()))?;
            link(&[&src, &filter])?;
            let pad = filter
                .static_pad("src")
                .ok_or_else(|| BuildError::Link("camera has no src pad".into()))?;
            match n.format {
                lpe_drivers::camera::PixelFormat::H264 => attach_h264(b, pipeline, &pad)?,
                lpe_drivers::camera::PixelFormat::Mjpeg => {
                    let dec = make("jpegdec", "source-jpegdec")?;
                    pipeline
                        .add(&dec)
                        .map_err(|e| BuildError::Link(e.to_string()))?;
                    link(&[&filter, &dec])?;
                    let pad = dec
                        .static_pad("src")
                        .ok_or_else(|| BuildError::Link("jpegdec has no src pad".into()))?;
                    attach_raw(b, pipeline, &pad, "raw")?;
                }
                lpe_drivers::camera::PixelFormat::Yuyv => attach_raw(b, pipeline, &pad, "raw")?,
            }
        }
        (SourceSpec::Rtmp { .. }, Input::Flv { audio }) => {
            if audio {
                super::audio::expect(b, pipeline)?;
            }
            let caps = gst::Caps::builder("video/x-flv").build();
            let src = gst_app::AppSrc::builder()
                .name("source")
                .caps(&caps)
                .is_live(true)
                .format(gst::Format::Bytes)
                .max_bytes(16 * 1024 * 1024)
                .block(false)
                .build();
            let demux = make("flvdemux", "source-demux")?;
            pipeline
                .add_many([src.upcast_ref::<gst::Element>(), &demux])
                .map_err(|e| BuildError::Link(e.to_string()))?;
            link(&[src.upcast_ref(), &demux])?;
            let bb = b.clone();
            demux.connect_pad_added(move |_demux, pad| {
                let Some(pipeline) = bb.pipeline() else {
                    return;
                };
                let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
                let is_video = caps
                    .structure(0)
                    .is_some_and(|s| s.name().starts_with("video/"));
                let result = if is_video {
                    attach_h264(&bb, &pipeline, pad)
                } else {
                    super::audio::attach_input(&bb, &pipeline, pad)
                };
                if let Err(e) = result {
                    post_error(&pipeline, &e.to_string());
                }
            });
            appsrc = Some(src);
        }
        (SourceSpec::Rtmp { .. }, Input::Whip { audio }) => {
            // A WHIP publisher: RTP from the browser or encoder, through a webrtcbin the
            // runner negotiates once the pipeline plays.
            if audio {
                super::audio::expect(b, pipeline)?;
            }
            let webrtc = make("webrtcbin", "source")?;
            webrtc.set_property_from_str("bundle-policy", "max-bundle");
            pipeline
                .add(&webrtc)
                .map_err(|e| BuildError::Link(e.to_string()))?;
            let bb = b.clone();
            webrtc.connect_pad_added(move |_w, pad| {
                if pad.direction() == gst::PadDirection::Src {
                    on_rtp_pad(&bb, pad);
                }
            });
        }
        (SourceSpec::Rtmp { .. }, Input::None) => {
            return Err(BuildError::Source("RTMP source without a publisher".into()));
        }
        (
            SourceSpec::Rtsp {
                url,
                username,
                password,
                transport,
                latency_ms,
            },
            _,
        ) => {
            let src = make("rtspsrc", "source")?;
            src.set_property("location", url);
            src.set_property("latency", *latency_ms);
            src.set_property_from_str(
                "protocols",
                match transport {
                    RtspTransport::Tcp => "tcp",
                    RtspTransport::Udp => "udp",
                },
            );
            // Give up on a server that never answers instead of waiting forever.
            src.set_property("tcp-timeout", 5_000_000u64);
            src.set_property("timeout", 5_000_000u64);
            src.set_property("retry", 2u32);
            if let Some(u) = username {
                src.set_property("user-id", u);
            }
            if let Some(p) = password {
                src.set_property("user-pw", p);
            }
            pipeline
                .add(&src)
                .map_err(|e| BuildError::Link(e.to_string()))?;
            // The SDP's streams are offered before any pad exists: an audio one means the
            // renditions take audio.
            let bb = b.clone();
            src.connect("select-stream", false, move |args| {
                let is_audio = args
                    .get(2)
                    .and_then(|v| v.get::<gst::Caps>().ok())
                    .and_then(|c| {
                        c.structure(0)
                            .and_then(|s| s.get::<&str>("media").ok().map(|m| m == "audio"))
                    })
                    .unwrap_or(false);
                if is_audio && let Some(pipeline) = bb.pipeline() {
                    let _ = super::audio::expect(&bb, &pipeline);
                }
                Some(true.to_value())
            });
            let bb = b.clone();
            src.connect_pad_added(move |_src, pad| on_rtp_pad(&bb, pad));
        }
        (
            SourceSpec::Srt {
                mode,
                port,
                url,
                passphrase,
                stream_id,
                latency_ms,
            },
            _,
        ) => {
            let src = make("srtsrc", "source")?;
            let uri = match mode {
                SrtMode::Listener => format!("srt://:{}?mode=listener", port.unwrap_or(0)),
                SrtMode::Caller => format!("{}?mode=caller", url.as_deref().unwrap_or("")),
            };
            src.set_property("uri", &uri);
            src.set_property("latency", *latency_ms as i32);
            if let Some(p) = passphrase {
                src.set_property("passphrase", p);
            }
            match (mode, stream_id) {
                (SrtMode::Caller, Some(id)) => src.set_property("streamid", id),
                // The stream id is the listener's key: a caller presenting another is refused
                // before any of its data is read.
                (SrtMode::Listener, Some(id)) => {
                    src.set_property("authentication", true);
                    let expected = id.clone();
                    src.connect("caller-connecting", false, move |args| {
                        let given = args.get(2).and_then(|v| v.get::<String>().ok());
                        let ok =
                            given.is_some_and(|g| lpe_core::secret::same_secret(&g, &expected));
                        if !ok {
                            tracing::warn!("SRT caller refused: wrong stream id");
                        }
                        Some(ok.to_value())
                    });
                }
                _ => {}
            }
            let parse = make("parsebin", "source-parse")?;
            pipeline
                .add_many([&src, &parse])
                .map_err(|e| BuildError::Link(e.to_string()))?;
            link(&[&src, &parse])?;
            let bb = b.clone();
            parse.connect_pad_added(move |_p, pad| demuxed(&bb, pad, "srt"));
        }
        (SourceSpec::Uri { uri }, _) => {
            let uri = if uri.starts_with('/') {
                gst::glib::filename_to_uri(uri, None)
                    .map_err(|e| BuildError::Source(format!("{uri}: {e}")))?
                    .to_string()
            } else {
                uri.clone()
            };
            let src = make("urisourcebin", "source")?;
            src.set_property("uri", &uri);
            let parse = make("parsebin", "source-parse")?;
            pipeline
                .add_many([&src, &parse])
                .map_err(|e| BuildError::Link(e.to_string()))?;
            let parse_weak = parse.downgrade();
            src.connect_pad_added(move |_src, pad| {
                if let Some(parse) = parse_weak.upgrade()
                    && let Some(sink) = parse.static_pad("sink")
                    && !sink.is_linked()
                {
                    let _ = pad.link(&sink);
                }
            });
            let bb = b.clone();
            parse.connect_pad_added(move |_p, pad| demuxed(&bb, pad, "file"));
        }
    }
    Ok(appsrc)
}

/// One elementary stream out of a demuxer (a file, an SRT MPEG-TS): H.264 to the parser and
/// its passthrough, other video decoded, audio to the audio input.
fn demuxed(b: &Arc<Builder>, pad: &gst::Pad, what: &str) {
    let Some(pipeline) = b.pipeline() else {
        return;
    };
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let name = caps
        .structure(0)
        .map(|s| s.name().to_string())
        .unwrap_or_default();
    let result = if name == "video/x-h264" {
        attach_h264(b, &pipeline, pad)
    } else if name.starts_with("video/") || name.starts_with("image/") {
        decode_any(b, &pipeline, pad, what)
    } else if name.starts_with("audio/") {
        // The demuxer exposes its tracks before media flows, so this comes before the
        // video's caps make the renditions.
        super::audio::expect(b, &pipeline)
            .and_then(|()| super::audio::attach_input(b, &pipeline, pad))
    } else {
        discard(&pipeline, pad, "other")
    };
    if let Err(e) = result {
        post_error(&pipeline, &e.to_string());
    }
}

/// An RTP pad of an RTSP camera or a WHIP publisher: H.264 depayloaded and passed on as
/// is, other video decoded, audio depayloaded into the audio input.
fn on_rtp_pad(b: &Arc<Builder>, pad: &gst::Pad) {
    let Some(pipeline) = b.pipeline() else {
        return;
    };
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let Some(s) = caps.structure(0) else { return };
    let media = s.get::<&str>("media").unwrap_or("");
    let encoding = s.get::<&str>("encoding-name").unwrap_or("");
    let result = if media == "audio" {
        depay_audio(b, &pipeline, pad)
    } else if media != "video" {
        discard(&pipeline, pad, "rtp")
    } else if encoding.eq_ignore_ascii_case("H264") {
        depay_h264(b, &pipeline, pad)
    } else {
        decode_any(b, &pipeline, pad, "rtp")
    };
    if let Err(e) = result {
        post_error(&pipeline, &e.to_string());
    }
}

pub(crate) fn depay_h264(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
) -> Result<(), BuildError> {
    let depay = make("rtph264depay", &unique(pipeline, "source-depay"))?;
    // Start at a keyframe and ask the sender for one when packets are lost: a WebRTC
    // publisher sends one only when asked (RTCP PLI), and a lost first one would otherwise
    // leave the stream without pictures.
    depay.set_property("wait-for-keyframe", true);
    depay.set_property("request-keyframe", true);
    add_linked(pipeline, &[&depay])?;
    let sink = depay
        .static_pad("sink")
        .ok_or_else(|| BuildError::Link("depay has no sink pad".into()))?;
    pad.link(&sink)
        .map_err(|e| BuildError::Link(format!("rtsp → depay: {e:?}")))?;
    let src = depay
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("depay has no src pad".into()))?;
    attach_h264(b, pipeline, &src)
}

/// RTP audio from an RTSP camera: depayloaded and parsed (`parsebin` picks the depayloader
/// for the SDP's encoding) into the audio input.
pub(crate) fn depay_audio(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
) -> Result<(), BuildError> {
    if !super::audio::expected(pipeline) || pipeline.by_name("source-audio-parse").is_some() {
        return super::audio::attach_input(b, pipeline, pad);
    }
    let parse = make("parsebin", "source-audio-parse")?;
    add_linked(pipeline, &[&parse])?;
    let bb = b.clone();
    parse.connect_pad_added(move |_p, pad| {
        let Some(pipeline) = bb.pipeline() else {
            return;
        };
        if let Err(e) = super::audio::attach_input(&bb, &pipeline, pad) {
            post_error(&pipeline, &e.to_string());
        }
    });
    let sink = parse
        .static_pad("sink")
        .ok_or_else(|| BuildError::Link("parsebin has no sink pad".into()))?;
    pad.link(&sink)
        .map_err(|e| BuildError::Link(format!("rtsp audio → parsebin: {e:?}")))?;
    Ok(())
}

/// Decodes anything that is not H.264 (H.265, MJPEG, VP8…); every rendition is then encoded.
pub(crate) fn decode_any(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    what: &str,
) -> Result<(), BuildError> {
    let dec = make(
        "decodebin",
        &unique(pipeline, &format!("source-decode-{what}")),
    )?;
    add_linked(pipeline, &[&dec])?;
    let bb = b.clone();
    dec.connect_pad_added(move |_d, pad| {
        let Some(pipeline) = bb.pipeline() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let raw = caps.structure(0).is_some_and(|s| s.name() == "video/x-raw");
        let result = if raw {
            attach_raw(&bb, &pipeline, pad, "raw")
        } else {
            discard(&pipeline, pad, "decoded")
        };
        if let Err(e) = result {
            post_error(&pipeline, &e.to_string());
        }
    });
    let sink = dec
        .static_pad("sink")
        .ok_or_else(|| BuildError::Link("decodebin has no sink pad".into()))?;
    pad.link(&sink)
        .map_err(|e| BuildError::Link(format!("→ decodebin: {e:?}")))?;
    Ok(())
}

/// Source-side H.264: parsed to Annex B access units and teed to the passthrough rendition
/// and to the decoder feeding the scaled renditions.
pub(crate) fn attach_h264(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
) -> Result<(), BuildError> {
    if pipeline.by_name("h264-tee").is_some() {
        // A second video track: only the first one is used.
        return discard(pipeline, pad, "video");
    }
    let parse = make("h264parse", "h264-parse")?;
    parse.set_property("config-interval", -1i32);
    let filter = make("capsfilter", "h264-caps")?;
    filter.set_property(
        "caps",
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build(),
    );
    let tee = make("tee", "h264-tee")?;
    add_linked(pipeline, &[&parse, &filter, &tee])?;
    let sink = parse
        .static_pad("sink")
        .ok_or_else(|| BuildError::Link("h264parse has no sink pad".into()))?;
    pad.link(&sink)
        .map_err(|e| BuildError::Link(format!("source → h264parse: {e:?}")))?;

    let out = filter
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("capsfilter has no src pad".into()))?;
    let counters = b.counters.clone();
    out.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            counters.in_frames.fetch_add(1, Ordering::Relaxed);
            counters
                .in_bytes
                .fetch_add(buf.size() as u64, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
    let bb = b.clone();
    on_first_caps(&out, move |caps| {
        let Some(pipeline) = bb.pipeline() else {
            return;
        };
        if let Err(e) = setup_h264_branches(&bb, &pipeline, caps) {
            post_error(&pipeline, &e.to_string());
        }
    });
    Ok(())
}

pub(crate) fn setup_h264_branches(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    caps: &gst::CapsRef,
) -> Result<(), BuildError> {
    let (w, h, fps) = caps_geometry(caps);
    set_source(b, w, h, fps, "h264");
    let (resolved, skipped) = resolve(b, w, h, fps, true);
    let tee = pipeline
        .by_name("h264-tee")
        .ok_or_else(|| BuildError::Link("h264 tee is gone".into()))?;
    if !b.ctx.offload {
        for r in resolved.iter().filter(|r| r.passthrough) {
            output::passthrough_branch(b, pipeline, &tee, r)?;
        }
    }
    let encoded: Vec<ResolvedRendition> = resolved
        .iter()
        .filter(|r| !r.passthrough)
        .cloned()
        .collect();
    // Decode once for the encoded renditions and the snapshot.
    let queue = live_queue(b, pipeline, "decode-queue", true)?;
    if b.ctx.offload {
        // Nothing is encoded here: only the snapshot needs pictures, and a keyframe per
        // segment is enough for it (decoding every 1080p frame would cost a gateway more
        // than the rest of its work on the stream).
        if let Some(pad) = queue.static_pad("sink") {
            pad.add_probe(gst::PadProbeType::BUFFER, |_, info| match info.buffer() {
                Some(buf) if buf.flags().contains(gst::BufferFlags::DELTA_UNIT) => {
                    gst::PadProbeReturn::Drop
                }
                _ => gst::PadProbeReturn::Ok,
            });
        }
    }
    let dec = make("avdec_h264", "decode")?;
    add_linked(pipeline, &[&queue, &dec])?;
    tee.link(&queue)
        .map_err(|e| BuildError::Link(format!("h264 tee → decoder: {e}")))?;
    let raw_tee = make("tee", "raw-tee")?;
    add_linked(pipeline, &[&raw_tee])?;
    link(&[&dec, &raw_tee])?;
    let mut all = resolved.clone();
    all.sort_by_key(|r| std::cmp::Reverse(r.height));
    if b.ctx.offload {
        return output::segmenter::attach_h264(b, pipeline, &tee, &raw_tee, &all, &skipped);
    }
    output::attach(b, pipeline, &raw_tee, &encoded, &all, &skipped)
}

/// Raw video from a camera, a test pattern or a decoder: every rendition is encoded.
pub(crate) fn attach_raw(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    name: &str,
) -> Result<(), BuildError> {
    if pipeline.by_name("raw-tee").is_some() {
        return discard(pipeline, pad, "video");
    }
    let tee = make("tee", &format!("{name}-tee"))?;
    add_linked(pipeline, &[&tee])?;
    let sink = tee
        .static_pad("sink")
        .ok_or_else(|| BuildError::Link("tee has no sink pad".into()))?;
    let counters = b.counters.clone();
    sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if info.buffer().is_some() {
            counters.in_frames.fetch_add(1, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
    let bb = b.clone();
    on_first_caps(&sink, move |caps| {
        let Some(pipeline) = bb.pipeline() else {
            return;
        };
        if let Err(e) = setup_raw_branches(&bb, &pipeline, caps) {
            post_error(&pipeline, &e.to_string());
        }
    });
    pad.link(&sink)
        .map_err(|e| BuildError::Link(format!("source → tee: {e:?}")))?;
    Ok(())
}

pub(crate) fn setup_raw_branches(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    caps: &gst::CapsRef,
) -> Result<(), BuildError> {
    let (w, h, fps) = caps_geometry(caps);
    let codec = caps
        .structure(0)
        .and_then(|s| s.get::<&str>("format").ok())
        .unwrap_or("raw")
        .to_ascii_lowercase();
    set_source(b, w, h, fps, &format!("raw/{codec}"));
    let (resolved, skipped) = resolve(b, w, h, fps, false);
    let tee = pipeline
        .by_name("raw-tee")
        .ok_or_else(|| BuildError::Link("raw tee is gone".into()))?;
    if b.ctx.offload {
        let mut all = resolved.clone();
        all.sort_by_key(|r| std::cmp::Reverse(r.height));
        return output::segmenter::attach_raw(b, pipeline, &tee, &all, &skipped);
    }
    output::attach(b, pipeline, &tee, &resolved, &resolved, &skipped)
}
