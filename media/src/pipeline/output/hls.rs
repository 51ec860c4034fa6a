//! The HLS ladder: a scale and encode branch per rendition, the passthrough rendition, the
//! sinks and the master playlist.

use super::*;

pub(crate) fn rendition_counters(
    b: &Builder,
    r: &ResolvedRendition,
    encoder: &str,
) -> Arc<RenditionCounters> {
    let c = Arc::new(RenditionCounters {
        name: r.spec.name.clone(),
        width: r.width,
        height: r.height,
        encoder: encoder.to_string(),
        passthrough: r.passthrough,
        frames: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    if let Ok(mut v) = b.counters.renditions.lock() {
        v.push(c.clone());
    }
    c
}

pub(crate) fn count_output(pad: &gst::Pad, c: Arc<RenditionCounters>) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            c.frames.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(buf.size() as u64, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
}

pub(crate) fn passthrough_branch(
    b: &Builder,
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    r: &ResolvedRendition,
) -> Result<(), BuildError> {
    let n = &r.spec.name;
    let queue = live_queue(b, pipeline, &format!("{n}-queue"), true)?;
    let sink = hls_sink(b, pipeline, r)?;
    add_linked(pipeline, &[&queue])?;
    tee.link(&queue)
        .map_err(|e| BuildError::Link(format!("h264 tee → {n}: {e}")))?;
    let qsrc = queue
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("queue has no src pad".into()))?;
    count_output(&qsrc, rendition_counters(b, r, "passthrough"));
    b.counters.tap_video(&qsrc, n);
    link_to_hls(&queue, &sink, n)
}

pub(crate) fn hls_sink(
    b: &Builder,
    pipeline: &gst::Pipeline,
    r: &ResolvedRendition,
) -> Result<gst::Element, BuildError> {
    let n = &r.spec.name;
    let dir = b.ctx.hls_dir.join(n);
    std::fs::create_dir_all(&dir)
        .map_err(|e| BuildError::Source(format!("cannot create {}: {e}", dir.display())))?;
    crate::hls::remove_stale_segments(&dir);
    let ring = crate::hls::ring_size(
        &b.spec.ladder,
        b.ctx.segment_seconds,
        b.ctx.max_segments,
        b.ctx.max_bytes,
    );
    let sink = make("hlssink2", &format!("{n}-hls"))?;
    sink.set_property(
        "location",
        dir.join(format!("seg-{}-%05d.ts", b.ctx.run_id))
            .display()
            .to_string(),
    );
    sink.set_property(
        "playlist-location",
        dir.join("index.m3u8").display().to_string(),
    );
    sink.set_property("target-duration", b.ctx.segment_seconds);
    sink.set_property("max-files", ring);
    sink.set_property("playlist-length", ring.saturating_sub(1).max(2));
    // The sink joins a pipeline that is already playing. Without this its preroll would make
    // the pipeline lose its state and pause the live source, while an element that holds a
    // frame back (videorate) waits for the next one: a deadlock.
    sink.set_property("async-handling", true);
    // Encoders place a keyframe every segment by their GOP; asking for extra keyframes at
    // wall-clock boundaries would split segments off-phase with the GOP.
    sink.set_property("send-keyframe-requests", false);
    pipeline
        .add(&sink)
        .map_err(|e| BuildError::Link(e.to_string()))?;
    // The video pad before the audio is linked. splitmuxsink takes its first pad as the
    // reference until a video pad exists: audio arriving first would set the fragment's start,
    // and the first keyframe, stamped before it (a live source's usual A/V offset), would then
    // fail the run ("Timestamping error on input streams"). `link_to_hls` links this pad.
    sink.request_pad_simple("video")
        .ok_or_else(|| BuildError::Link(format!("{n}: hlssink2 has no video pad")))?;
    super::audio::link_rendition(b, pipeline, &sink, n)?;
    sink.sync_state_with_parent()
        .map_err(|_| BuildError::Link(format!("{n}-hls cannot start")))?;
    Ok(sink)
}

pub(crate) fn link_to_hls(
    from: &gst::Element,
    sink: &gst::Element,
    n: &str,
) -> Result<(), BuildError> {
    let src = from
        .static_pad("src")
        .ok_or_else(|| BuildError::Link(format!("{n}: no src pad")))?;
    let video = sink
        .static_pad("video")
        .ok_or_else(|| BuildError::Link(format!("{n}: hlssink2 has no video pad")))?;
    src.link(&video)
        .map_err(|e| BuildError::Link(format!("{n} → hlssink2: {e:?}")))?;
    Ok(())
}

/// Adds the encoded renditions, largest first. Each one is scaled from the smallest already
/// scaled rendition that is larger than it (a cascade: 1080p → 720p → 480p, 360p) rather than
/// from the source, which saves most of the scaling work of the lower rungs.
pub(crate) fn encode_all(
    b: &Builder,
    pipeline: &gst::Pipeline,
    source_tee: &gst::Element,
    renditions: &[ResolvedRendition],
) -> Result<(), BuildError> {
    let mut order: Vec<&ResolvedRendition> = renditions.iter().filter(|r| !r.passthrough).collect();
    order.sort_by_key(|r| std::cmp::Reverse(r.height));
    let mut scaled: Vec<(&ResolvedRendition, gst::Element)> = Vec::new();
    for r in order {
        let parent = scaled
            .iter()
            .rev()
            .find(|(p, _)| super::super::can_scale_from(p, r))
            .map(|(_, tee)| tee.clone())
            .unwrap_or_else(|| source_tee.clone());
        let tee = encode_branch(b, pipeline, &parent, r)?;
        scaled.push((r, tee));
    }
    Ok(())
}

/// One encoded rendition: `queue ! videoscale ! [videorate] ! videoconvert ! caps ! tee`
/// (the scaled frames, also fed to smaller renditions) then `queue ! encoder ! h264parse !
/// hlssink2`. Returns the tee of scaled frames.
pub(crate) fn encode_branch(
    b: &Builder,
    pipeline: &gst::Pipeline,
    upstream: &gst::Element,
    r: &ResolvedRendition,
) -> Result<gst::Element, BuildError> {
    let n = &r.spec.name;
    let (encoded, format) =
        encode_chain(&b.ctx.encoder, r, &b.ctx.x264_preset, &b.ctx.x264_tune, n)?;
    let mut scaling: Vec<gst::Element> =
        vec![live_queue(b, pipeline, &format!("{n}-queue"), false)?];
    scaling.extend(scale_chain(r, format, n)?);
    let scaled_tee = make("tee", &format!("{n}-scaled"))?;
    scaling.push(scaled_tee.clone());

    let mut encoding: Vec<gst::Element> =
        vec![live_queue(b, pipeline, &format!("{n}-enc-queue"), false)?];
    encoding.extend(encoded);
    let parse = encoding
        .last()
        .cloned()
        .ok_or_else(|| BuildError::Link(format!("{n}: empty encoder chain")))?;

    let sink = hls_sink(b, pipeline, r)?;
    add_linked(pipeline, &encoding.iter().collect::<Vec<_>>())?;
    link_to_hls(&parse, &sink, n)?;
    let psrc = parse
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("h264parse has no src pad".into()))?;
    count_output(&psrc, rendition_counters(b, r, &b.ctx.encoder));
    b.counters.tap_video(&psrc, n);
    add_linked(pipeline, &scaling.iter().collect::<Vec<_>>())?;
    scaled_tee
        .link(&encoding[0])
        .map_err(|e| BuildError::Link(format!("{n} scaled → encoder: {e}")))?;
    upstream
        .link(&scaling[0])
        .map_err(|e| BuildError::Link(format!("→ {n}: {e}")))?;
    Ok(scaled_tee)
}

pub(crate) fn write_master(
    b: &Builder,
    pipeline: &gst::Pipeline,
    renditions: &[ResolvedRendition],
    skipped: &[(String, String)],
) {
    for (name, why) in skipped {
        tracing::info!(rendition = %name, "rendition skipped: {why}");
    }
    let audio = super::audio::codecs(pipeline);
    if let Err(e) = crate::hls::write_master(&b.ctx.hls_dir, renditions, audio) {
        tracing::warn!("cannot write master playlist: {e}");
    }
}
