//! What the room asks of its mixer. The room decides which mixes and transcodes exist; the mixer
//! decides, frame by frame, which speakers are in them.

use crate::{CodecSpec, KeyframeKind, Output, ParticipantId, RtpMeta, SlotKey, TrackKey, WriteError};
use std::time::Instant;

/// The mixer's whole job, restated by the room whenever routing changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MixPlan {
    /// Tracks the mixer receives, each on its own input slot.
    pub inputs: Vec<MixInput>,
    /// Streams the mixer produces, each as its own track.
    pub outputs: Vec<MixOutput>,
    /// How many of the loudest speakers a mix carries.
    pub speakers: usize,
    /// Minimum (and initial) playout delay of each input's adaptive jitter buffer.
    pub jitter_buffer_ms: u32,
    /// Maximum playout delay the jitter buffers may grow to (at least `jitter_buffer_ms`).
    pub jitter_buffer_max_ms: u32,
    /// The composite picture, when a video output asks for one.
    pub video: VideoSettings,
}

/// The composite picture the video outputs carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Target bitrate of each composite encoder.
    pub kbps: u32,
}

impl Default for VideoSettings {
    fn default() -> VideoSettings {
        VideoSettings { width: 640, height: 360, fps: 15, kbps: 800 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixInput {
    pub slot: SlotKey,
    pub codec: CodecSpec,
    pub publisher: ParticipantId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixOutput {
    pub track: TrackKey,
    pub codec: CodecSpec,
    pub ptime_ms: u16,
    pub kind: MixOutputKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MixOutputKind {
    /// The mix of the loudest speakers, less `minus` (the subscriber's own input) while that input
    /// is one of them. Outputs that end up with the same content share one encoder.
    Mix { minus: Option<SlotKey> },
    /// One input re-encoded. Outputs of the same input and codec share one encoder.
    Transcode { input: SlotKey },
    /// Every video input tiled into one picture. Outputs of the same codec share one encoder.
    Composite,
}

/// Counters the mixer keeps for metrics, taken (and reset) by the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MixerStats {
    /// Packets that arrived after their playout time.
    pub late: u64,
    /// Packets that never arrived.
    pub lost: u64,
    /// Frames the decoder concealed.
    pub concealed: u64,
    /// Packets taken from an input's jitter buffer without decoding: the input was not mixed
    /// and its sender reported its level (RFC 6464).
    pub undecoded: u64,
    /// Decoder or encoder failures; the failing stage is rebuilt.
    pub errors: u64,
    /// Time spent mixing and coding, in nanoseconds.
    pub processing_ns: u64,
    /// Mix ticks run.
    pub ticks: u64,
    /// Gauges at the moment of taking.
    pub mixes: u64,
    pub encoders: u64,
    pub decoders: u64,
    /// The largest playout delay the inputs' jitter buffers currently aim for, in ms.
    pub jitter_target_ms: u64,
    /// Encoders adding in-band FEC because their receivers report loss.
    pub fec_encoders: u64,
    /// Video encoders running for composites and video transcodes.
    pub video_encoders: u64,
}

impl MixerStats {
    /// Adds `newer`'s counters to these and takes its gauges.
    pub fn absorb(&mut self, newer: MixerStats) {
        self.late += newer.late;
        self.lost += newer.lost;
        self.concealed += newer.concealed;
        self.undecoded += newer.undecoded;
        self.errors += newer.errors;
        self.processing_ns += newer.processing_ns;
        self.ticks += newer.ticks;
        self.mixes = newer.mixes;
        self.encoders = newer.encoders;
        self.decoders = newer.decoders;
        self.jitter_target_ms = newer.jitter_target_ms;
        self.fec_encoders = newer.fec_encoders;
        self.video_encoders = newer.video_encoders;
    }
}

/// The room's MCU: it takes tracks in on the plan's input slots and publishes the plan's outputs
/// as tracks. It is not a participant: it has no SDP, no socket, no peer and no kind; its inputs
/// and outputs are whatever the last [`MixPlan`] said.
///
/// Call order: `configure` whenever routing changes, then any number of `write_media` /
/// `handle_timeout` / `request_keyframe` / `receiver_loss`, each followed by `poll` until it
/// returns the next deadline. `close` ends it.
pub trait Mcu: Send {
    /// Restates the MCU's whole job. Inputs and outputs not in `plan` are dropped.
    fn configure(&mut self, now: Instant, plan: &MixPlan);

    /// One packet of the track on input `input`, already rewritten to the input's codec numbering.
    fn write_media(&mut self, now: Instant, input: SlotKey, meta: &RtpMeta, payload: &[u8]) -> Result<(), WriteError>;

    /// Runs the mix ticks that are due.
    fn handle_timeout(&mut self, now: Instant);

    /// The receiver of `output` asks for a keyframe: the encoder of that output makes one.
    fn request_keyframe(&mut self, output: TrackKey, kind: KeyframeKind);

    /// The receiver of `output` reports losing `fraction` (0 to 1) of what it is sent (RTCP
    /// receiver reports). The MCU may protect that output's stream against it.
    fn receiver_loss(&mut self, now: Instant, output: TrackKey, fraction: f32);

    /// Drains mixed packets (`Output::media`, keyed by output track) and events: `ActiveSpeakers`
    /// and `KeyframeRequest` name input slots, `Disconnected` says the MCU broke. Returns when to
    /// call `handle_timeout` next.
    fn poll(&mut self, now: Instant, out: &mut dyn Output) -> Instant;

    /// Counters since the last take, and gauges as they stand.
    fn take_stats(&mut self) -> MixerStats;

    /// Stops every pipeline. `poll` still drains what closing produced.
    fn close(&mut self, now: Instant);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorbing_adds_counters_and_takes_gauges() {
        let removed =
            MixerStats { late: 2, lost: 3, concealed: 4, undecoded: 5, ticks: 50, mixes: 1, ..Default::default() };
        let mut total = MixerStats::default();
        total.absorb(removed);
        let current = MixerStats { late: 1, undecoded: 7, ticks: 10, mixes: 2, encoders: 3, ..Default::default() };
        total.absorb(current);
        assert_eq!((total.late, total.lost, total.concealed, total.undecoded, total.ticks), (3, 3, 4, 12, 60));
        assert_eq!((total.mixes, total.encoders), (2, 3), "gauges are the latest mixer's");
    }
}
