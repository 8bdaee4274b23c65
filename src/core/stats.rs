//! Plain counters the core bumps on the packet path. No atomics, no labels: the runtime takes them
//! now and then and `metrics.rs` turns them into Prometheus records.

use super::routing::Route;
use switchboard_driver::{Codec, DropReason, MixerStats, ParticipantKind};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub packets: u64,
    pub bytes: u64,
}

impl Flow {
    pub fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoomStats {
    /// Indexed by `kind_index`.
    pub received: [Flow; 3],
    pub sent: [Flow; 3],
    /// Indexed by the position in `DropReason::ALL`.
    pub dropped: [u64; DropReason::ALL.len()],
    pub route_switches: u64,
    pub keyframe_requests: u64,
    pub dtmf_events: u64,
    pub mixer: MixerStats,
    /// Transcode outputs started, by (from, to) codec.
    pub transcodes: Vec<(Codec, Codec)>,
}

impl RoomStats {
    pub fn drop(&mut self, reason: DropReason) {
        // DropReason::ALL lists every variant, so the position always exists.
        let i = DropReason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.dropped[i] += 1;
    }
}

pub fn kind_index(kind: ParticipantKind) -> usize {
    match kind {
        ParticipantKind::Webrtc => 0,
        ParticipantKind::Rtp => 1,
        ParticipantKind::Srtp => 2,
    }
}

pub fn route_index(route: Route) -> usize {
    match route {
        Route::Forward => 0,
        Route::Transcode => 1,
        Route::Mix => 2,
        Route::Composite => 3,
    }
}

/// Gauges a room reports about itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoomGauges {
    pub participants: [u64; 3],
    pub tracks: u64,
    pub subscriptions: [u64; 4],
    pub mixers: u64,
    pub mixes: u64,
    pub encoders: u64,
    pub decoders: u64,
    /// The largest jitter-buffer target of the room's mixer inputs, in ms (a maximum, not a sum).
    pub jitter_target_ms: u64,
    /// Mixer encoders adding in-band FEC for receivers that report loss.
    pub fec_encoders: u64,
    /// Video encoders of composites and video transcodes.
    pub video_encoders: u64,
}
