//! Egress: a room's media written out by GStreamer, away from the media workers.
//!
//! The bridge's egress is a subscriber like any other: a `webrtcbin` in this process makes a
//! receive-only offer, the daemon joins it to the room through its ordinary join path, and each
//! stream the room sends it is written by its own GStreamer branch (`branch.rs`). The daemon
//! knows nothing of GStreamer; this crate knows nothing of rooms. See docs/egress.md.

mod branch;
mod recorder;

pub use branch::{Container, OutputStats};
pub use recorder::{Layout, Recorder, Rtmp, Spec};

use std::sync::OnceLock;

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("GStreamer is not available: {0}")]
    Init(String),
    #[error("GStreamer element {0} is missing (install the GStreamer plugin that has it)")]
    MissingElement(&'static str),
    #[error("the egress pipeline could not be built: {0}")]
    Pipeline(String),
    #[error("WebRTC negotiation failed: {0}")]
    Negotiation(String),
    #[error("the output directory {0} cannot be used: {1}")]
    Directory(String, String),
}

/// Initialises GStreamer once; every later call returns the first call's result.
pub fn init() -> Result<(), EgressError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| gstreamer::init().map_err(|e| e.to_string())).clone().map_err(EgressError::Init)
}

/// The elements every egress may need, checked before a pipeline is built, so a missing plugin
/// is a clear refusal rather than a pipeline error mid-stream.
pub const ELEMENTS: [&str; 16] = [
    "webrtcbin",
    "rtpopusdepay",
    "opusparse",
    "oggmux",
    "rtpvp8depay",
    "matroskamux",
    "rtph264depay",
    "h264parse",
    "mp4mux",
    "rtppcmudepay",
    "rtppcmadepay",
    "wavenc",
    "opusdec",
    "avenc_aac",
    "flvmux",
    "rtmp2sink",
];

/// The first of [`ELEMENTS`] that GStreamer cannot make, if any.
pub fn missing_element() -> Option<&'static str> {
    ELEMENTS.into_iter().find(|e| gstreamer::ElementFactory::find(e).is_none())
}
