//! What the room asks of its mixer. The room decides which mixes and transcodes exist; the mixer
//! decides, frame by frame, which speakers are in them.

use crate::{CodecSpec, ParticipantId, SlotKey, TrackKey};
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
}

/// The room-facing side of the mixer driver, beside its `Driver` side.
pub trait MixerControl {
    fn configure(&mut self, now: Instant, plan: &MixPlan);
    fn take_stats(&mut self) -> MixerStats;
}
