//! The snapshot tap: a JPEG of the stream's picture, about once a second.

use super::*;

/// At most one JPEG a second, scaled to 640 wide, kept as the appsink's last sample.
pub(crate) fn snapshot_branch(
    b: &Builder,
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
) -> Result<(), BuildError> {
    let queue = make("queue", "snapshot-queue")?;
    queue.set_property_from_str("leaky", "downstream");
    queue.set_property("max-size-buffers", 1u32);
    if let Some(pad) = queue.static_pad("src") {
        thin_by_time(&pad, gst::ClockTime::SECOND, |_| {});
    }
    let scale = make("videoscale", "snapshot-scale")?;
    let convert = make("videoconvert", "snapshot-convert")?;
    let filter = make("capsfilter", "snapshot-caps")?;
    filter.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", 640i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    );
    let enc = make("jpegenc", "snapshot-enc")?;
    enc.set_property("quality", 80i32);
    // A fakesink keeping its last sample, not an appsink: an appsink nobody pulls from holds
    // back its end-of-stream, and the pipeline would never report that a file ended.
    let sink = make("fakesink", "snapshot-sink")?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    sink.set_property("enable-last-sample", true);
    add_linked(pipeline, &[&queue, &scale, &convert, &filter, &enc, &sink])?;
    tee.link(&queue)
        .map_err(|e| BuildError::Link(format!("tee → snapshot: {e}")))?;
    if let Ok(mut s) = b.counters.snapshot.lock() {
        *s = Some(sink);
    }
    Ok(())
}
