//! Everything fed from the raw tee, attached once the source's caps are known. One
//! function for every source, so each output is wired the same way whatever came in.

use super::*;

mod analysis;
mod hls;
pub(crate) mod segmenter;
mod snapshot;

pub(crate) use hls::passthrough_branch;

/// Attaches the outputs to `raw_tee`: the encoded renditions of the ladder with their HLS
/// sinks, the snapshot tap, and the master playlist listing `playlist` (encoded and
/// passthrough renditions); and the AI plane's frame taps. In privacy mode the outputs hang
/// from the privacy gate instead (and the builder made no passthrough rendition).
pub(crate) fn attach(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    raw_tee: &gst::Element,
    encoded: &[ResolvedRendition],
    playlist: &[ResolvedRendition],
    skipped: &[(String, String)],
) -> Result<(), BuildError> {
    let outputs = match b.ctx.analysis.as_ref().and_then(|a| a.mask.as_ref()) {
        Some(mask) => analysis::privacy_gate(b, pipeline, raw_tee, mask)?,
        None => raw_tee.clone(),
    };
    for tap in b.ctx.analysis.iter().flat_map(|a| &a.taps) {
        analysis::frame_tap(b, pipeline, raw_tee, tap)?;
    }
    hls::encode_all(b, pipeline, &outputs, encoded)?;
    snapshot::snapshot_branch(b, pipeline, &outputs)?;
    hls::write_master(b, pipeline, playlist, skipped);
    Ok(())
}
