//! An offloaded stream's outputs: the source cut into MPEG-TS segments by `splitmuxsink`
//! (the H.264 passthrough, or one local encode of the top rendition for raw sources) with the
//! stream's AAC beside it, the snapshot tap, and the plan the segment worker follows. The
//! worker, not a sink, writes the rendition playlists; orchestrators copy the audio into each
//! rendition, as go-livepeer's do.
//!
//! The rendition made here (the passthrough, or the top encode) is tapped like any local
//! rendition, so restream destinations and the recorder take it; the network's renditions
//! exist only as the worker's files.

use super::*;

/// The segmenter's name; its fragment messages on the bus carry the closed files.
pub(crate) const SEGMENTER: &str = "offload-segmenter";

/// Where the segmenter writes, under the stream's HLS directory (the worker removes each file
/// once read).
pub(crate) fn segment_dir(hls_dir: &Path) -> PathBuf {
    hls_dir.join(".offload")
}

fn segmenter(b: &Builder, pipeline: &gst::Pipeline) -> Result<gst::Element, BuildError> {
    let dir = segment_dir(&b.ctx.hls_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| BuildError::Source(format!("cannot create {}: {e}", dir.display())))?;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let sink = make("splitmuxsink", SEGMENTER)?;
    sink.set_property(
        "location",
        dir.join(format!("src-{}-%05d.ts", b.ctx.run_id))
            .display()
            .to_string(),
    );
    sink.set_property(
        "max-size-time",
        u64::from(b.ctx.segment_seconds) * gst::ClockTime::SECOND.nseconds(),
    );
    // Cut at the source's own keyframes: asking for more would cost a passthrough nothing but
    // would change an encoder's GOP.
    sink.set_property("send-keyframe-requests", false);
    sink.set_property("muxer", make("mpegtsmux", "offload-mux")?);
    // Joins a playing pipeline (see `hls_sink`).
    sink.set_property("async-handling", true);
    pipeline
        .add(&sink)
        .map_err(|e| BuildError::Link(e.to_string()))?;
    sink.sync_state_with_parent()
        .map_err(|_| BuildError::Link(format!("{SEGMENTER} cannot start")))?;
    Ok(sink)
}

fn link_to_segmenter(
    b: &Builder,
    pipeline: &gst::Pipeline,
    from: &gst::Element,
    sink: &gst::Element,
) -> Result<(), BuildError> {
    let src = from
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("segmenter input has no src pad".into()))?;
    let video = sink
        .request_pad_simple("video")
        .ok_or_else(|| BuildError::Link("splitmuxsink has no video pad".into()))?;
    src.link(&video)
        .map_err(|e| BuildError::Link(format!("→ {SEGMENTER}: {e:?}")))?;
    // The audio after the video: the muxer's first stream carries the PCR, and a demuxer
    // drops what comes before the first PCR (audio first would cost each segment its opening
    // keyframe).
    super::audio::link_sink(b, pipeline, sink, "audio_%u", "offload")
}

/// H.264 sources: the parsed source is the segment, and it is the passthrough rendition.
pub(crate) fn attach_h264(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    h264_tee: &gst::Element,
    raw_tee: &gst::Element,
    playlist: &[ResolvedRendition],
    skipped: &[(String, String)],
) -> Result<(), BuildError> {
    let queue = live_queue(b, pipeline, "offload-queue", true)?;
    let sink = segmenter(b, pipeline)?;
    add_linked(pipeline, &[&queue])?;
    h264_tee
        .link(&queue)
        .map_err(|e| BuildError::Link(format!("h264 tee → segmenter: {e}")))?;
    let qsrc = queue
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("queue has no src pad".into()))?;
    let counters = playlist
        .iter()
        .map(|r| {
            let c = hls::rendition_counters(
                b,
                r,
                if r.passthrough {
                    "passthrough"
                } else {
                    NETWORK_ENCODER
                },
            );
            if r.passthrough {
                hls::count_output(&qsrc, c.clone());
                b.counters.tap_video(&qsrc, &r.spec.name);
            }
            c
        })
        .collect();
    link_to_segmenter(b, pipeline, &queue, &sink)?;
    set_ladder(b, playlist, |r| r.passthrough, counters);
    snapshot::snapshot_branch(b, pipeline, raw_tee)?;
    hls::write_master(b, pipeline, playlist, skipped);
    Ok(())
}

/// Raw sources: the top rendition is encoded here and is the segment.
pub(crate) fn attach_raw(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    raw_tee: &gst::Element,
    playlist: &[ResolvedRendition],
    skipped: &[(String, String)],
) -> Result<(), BuildError> {
    let Some(top) = playlist.first() else {
        return Err(BuildError::Source("the ladder is empty".into()));
    };
    let n = &top.spec.name;
    let (encoded, format) =
        encode_chain(&b.ctx.encoder, top, &b.ctx.x264_preset, &b.ctx.x264_tune, n)?;
    let mut chain = vec![live_queue(b, pipeline, &format!("{n}-queue"), false)?];
    chain.extend(scale_chain(top, format, n)?);
    chain.extend(encoded);
    let parse = chain
        .last()
        .cloned()
        .ok_or_else(|| BuildError::Link(format!("{n}: empty encoder chain")))?;
    let sink = segmenter(b, pipeline)?;
    add_linked(pipeline, &chain.iter().collect::<Vec<_>>())?;
    let psrc = parse
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("h264parse has no src pad".into()))?;
    let counters = playlist
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i == 0 {
                let c = hls::rendition_counters(b, r, &b.ctx.encoder);
                hls::count_output(&psrc, c.clone());
                b.counters.tap_video(&psrc, n);
                c
            } else {
                hls::rendition_counters(b, r, NETWORK_ENCODER)
            }
        })
        .collect();
    link_to_segmenter(b, pipeline, &parse, &sink)?;
    raw_tee
        .link(&chain[0])
        .map_err(|e| BuildError::Link(format!("→ {n}: {e}")))?;
    set_ladder(b, playlist, |r| r.spec.name == *n, counters);
    snapshot::snapshot_branch(b, pipeline, raw_tee)?;
    hls::write_master(b, pipeline, playlist, skipped);
    Ok(())
}

/// Hands the worker its plan, and points what takes the stream's largest rendition (a
/// destination or recorder naming none) at the one made here; those naming a rendition the
/// network makes are told they get nothing.
fn set_ladder(
    b: &Builder,
    playlist: &[ResolvedRendition],
    is_source: impl Fn(&ResolvedRendition) -> bool,
    counters: Vec<Arc<RenditionCounters>>,
) {
    let local = playlist
        .iter()
        .find(|r| is_source(r))
        .map(|r| r.spec.name.clone());
    if let Ok(mut top) = b.counters.top_rendition.lock() {
        top.clone_from(&local);
    }
    let why = match &local {
        Some(name) => format!(
            "an offloaded stream's other renditions are made by the network: only {name} can be taken here"
        ),
        None => "an offloaded stream without a passthrough rendition has none made here".into(),
    };
    let elsewhere = |rendition: &str| match &local {
        Some(name) => !rendition.is_empty() && rendition != name,
        None => true,
    };
    if let Ok(all) = b.counters.restream_status.lock() {
        for s in all.iter() {
            if let Ok(mut s) = s.lock()
                && elsewhere(&s.rendition)
            {
                s.last_error = Some(why.clone());
            }
        }
    }
    if let Some(s) = b
        .counters
        .recording_status
        .lock()
        .ok()
        .and_then(|s| s.clone())
        && let Ok(mut s) = s.lock()
        && elsewhere(&s.rendition)
    {
        s.last_error = Some(why);
    }
    let ladder = OffloadLadder {
        renditions: playlist.iter().map(|r| (r.clone(), is_source(r))).collect(),
        counters,
    };
    if let Ok(mut l) = b.counters.offload_ladder.lock() {
        *l = Some(Arc::new(ladder));
    }
}
