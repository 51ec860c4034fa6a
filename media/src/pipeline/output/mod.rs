//! Everything fed from the raw tee, attached once the source's caps are known. One
//! function for every source, so each output is wired the same way whatever came in.

use super::*;

mod hls;
pub(crate) mod segmenter;
mod snapshot;

pub(crate) use hls::passthrough_branch;

/// Attaches the outputs to `raw_tee`: the encoded renditions of the ladder with their HLS
/// sinks, the snapshot tap, and the master playlist listing `playlist` (encoded and
/// passthrough renditions).
pub(crate) fn attach(
    b: &Arc<Builder>,
    pipeline: &gst::Pipeline,
    raw_tee: &gst::Element,
    encoded: &[ResolvedRendition],
    playlist: &[ResolvedRendition],
    skipped: &[(String, String)],
) -> Result<(), BuildError> {
    hls::encode_all(b, pipeline, raw_tee, encoded)?;
    snapshot::snapshot_branch(b, pipeline, raw_tee)?;
    hls::write_master(b, pipeline, playlist, skipped);
    Ok(())
}
