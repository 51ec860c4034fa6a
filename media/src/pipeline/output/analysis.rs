//! The AI plane's branches: a frame tap per detector (sampled, scaled and converted to RGB
//! in GStreamer, handed over without queueing) and privacy mode's gate in front of every
//! output.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use gstreamer_video as gst_video;

use super::*;
use crate::analysis::{self, AnalysisFrame, FrameTap, PrivacyMask};

/// `width`×`height` fitted into `max_w`×`max_h` with the aspect ratio kept, even sizes.
fn fit(width: u32, height: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if width == 0 || height == 0 {
        return (max_w & !1, max_h & !1);
    }
    let s = (f64::from(max_w) / f64::from(width)).min(f64::from(max_h) / f64::from(height));
    let even = |v: f64, max: u32| ((v.round() as u32).max(2) & !1).min(max & !1);
    (
        even(f64::from(width) * s, max_w),
        even(f64::from(height) * s, max_h),
    )
}

/// `queue ! videoscale ! videoconvert ! RGB caps ! appsink` from `tee`, fed `tap.fps`
/// pictures a second chosen by their timestamps ([`thin_by_time`]), one at a time: a frame
/// arriving while the detector is busy is dropped.
pub(crate) fn frame_tap(
    b: &Builder,
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    tap: &FrameTap,
) -> Result<(), BuildError> {
    let n = format!("ai-{}", tap.name);
    let queue = make("queue", &unique(pipeline, &format!("{n}-queue")))?;
    queue.set_property_from_str("leaky", "downstream");
    queue.set_property("max-size-buffers", 1u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", 0u64);
    let captured: Arc<Mutex<VecDeque<(gst::ClockTime, Instant)>>> = Arc::default();
    let stats = tap.stats.clone();
    if let Some(pad) = queue.static_pad("sink") {
        let captured = captured.clone();
        let interval = gst::ClockTime::SECOND / u64::from(tap.fps.max(1));
        thin_by_time(&pad, interval, move |pts| {
            if let Ok(mut c) = captured.lock() {
                // Pictures the queue dropped leave their times behind; a few are enough.
                if c.len() >= 8 {
                    c.pop_front();
                }
                c.push_back((pts, Instant::now()));
            }
        });
    }
    // A picture waiting in the queue while the converter is busy is replaced: dropped.
    queue.connect("overrun", false, move |_| {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        None
    });
    let (sw, sh) = b
        .counters
        .source
        .lock()
        .ok()
        .and_then(|s| s.as_ref().map(|s| (s.width, s.height)))
        .unwrap_or((0, 0));
    let (w, h) = fit(sw, sh, tap.width, tap.height);
    let scale = make("videoscale", &unique(pipeline, &format!("{n}-scale")))?;
    let convert = make("videoconvert", &unique(pipeline, &format!("{n}-convert")))?;
    let filter = make("capsfilter", &unique(pipeline, &format!("{n}-caps")))?;
    filter.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .field("width", w as i32)
            .field("height", h as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    );
    let sink = gst_app::AppSink::builder()
        .name(unique(pipeline, &format!("{n}-sink")))
        .sync(false)
        .max_buffers(1)
        .drop(true)
        .build();
    sink.set_property("async", false);
    let frames = tap.frames.clone();
    let stats = tap.stats.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(buffer), Some(caps)) = (sample.buffer_owned(), sample.caps()) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Ok(info) = gst_video::VideoInfo::from_caps(caps) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let stride = buffer
                    .meta::<gst_video::VideoMeta>()
                    .map(|m| m.stride()[0])
                    .unwrap_or(info.stride()[0])
                    .max(0) as usize;
                let Some(pts) = buffer.pts() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let at = captured
                    .lock()
                    .ok()
                    .and_then(|mut c| {
                        let i = c.iter().position(|(p, _)| *p == pts)?;
                        let at = c[i].1;
                        c.drain(..=i);
                        Some(at)
                    })
                    .unwrap_or_else(Instant::now);
                let Ok(data) = buffer.into_mapped_buffer_readable() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let frame = AnalysisFrame::new(
                    Duration::from_nanos(pts.nseconds()),
                    at,
                    info.width(),
                    info.height(),
                    stride,
                    data,
                );
                if let Some(frame) = frame {
                    // A detector that is gone (its model failed) takes nothing: the video
                    // goes on.
                    if let Err(std::sync::mpsc::TrySendError::Full(_)) = frames.try_send(frame) {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let sink: gst::Element = sink.upcast();
    add_linked(pipeline, &[&queue, &scale, &convert, &filter, &sink])?;
    tee.link(&queue)
        .map_err(|e| BuildError::Link(format!("raw tee → {n}: {e}")))?;
    Ok(())
}

/// Privacy mode's gate: `queue ! videoconvert ! I420 caps ! tee` from the raw tee, where a
/// probe holds each picture until the mask covers it, then covers its faces (or blanks it).
/// Returns the tee every output hangs from.
pub(crate) fn privacy_gate(
    b: &Builder,
    pipeline: &gst::Pipeline,
    raw_tee: &gst::Element,
    mask: &Arc<PrivacyMask>,
) -> Result<gst::Element, BuildError> {
    let queue = make("queue", "privacy-queue")?;
    // Room for the pictures that arrive while one waits for the detector: the wait and a
    // second more. Live sources drop the oldest beyond that (the picture at the gate is
    // blanked by then anyway).
    queue.set_property("max-size-buffers", 0u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property(
        "max-size-time",
        (mask.wait + Duration::from_secs(1)).as_nanos() as u64,
    );
    if b.live {
        queue.set_property_from_str("leaky", "downstream");
        let counters = b.counters.clone();
        queue.connect("overrun", false, move |_| {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            None
        });
    }
    let convert = make("videoconvert", "privacy-convert")?;
    let filter = make("capsfilter", "privacy-caps")?;
    filter.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .build(),
    );
    let tee = make("tee", "privacy-tee")?;
    let src = filter
        .static_pad("src")
        .ok_or_else(|| BuildError::Link("privacy caps have no src pad".into()))?;
    let m = mask.clone();
    src.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(caps) = pad.current_caps() else {
            return gst::PadProbeReturn::Drop;
        };
        let Ok(vinfo) = gst_video::VideoInfo::from_caps(&caps) else {
            return gst::PadProbeReturn::Drop;
        };
        let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        let cover = match buffer.pts() {
            Some(pts) => m.cover(Duration::from_nanos(pts.nseconds())),
            None => analysis::Cover::Blank,
        };
        if cover == analysis::Cover::Regions(Vec::new()) {
            return gst::PadProbeReturn::Ok;
        }
        let buf = buffer.make_mut();
        match gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &vinfo) {
            Ok(mut frame) => {
                analysis::apply_i420(&mut frame, &cover);
                gst::PadProbeReturn::Ok
            }
            // A picture that cannot be written is not sent.
            Err(_) => gst::PadProbeReturn::Drop,
        }
    });
    add_linked(pipeline, &[&queue, &convert, &filter, &tee])?;
    raw_tee
        .link(&queue)
        .map_err(|e| BuildError::Link(format!("raw tee → privacy gate: {e}")))?;
    Ok(tee)
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn fit_keeps_the_aspect_and_even_sizes() {
        assert_eq!(fit(1920, 1080, 640, 384), (640, 360));
        assert_eq!(fit(512, 512, 640, 384), (384, 384));
        assert_eq!(fit(1280, 720, 640, 640), (640, 360));
        assert_eq!(fit(720, 1280, 640, 384), (216, 384));
        assert_eq!(fit(0, 0, 640, 384), (640, 384));
    }
}
