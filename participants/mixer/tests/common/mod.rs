//! Plans, packet metadata and measurements shared by the mixer's integration tests.
// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::time::Instant;
use switchboard_driver::testing::Collector;
use switchboard_driver::*;
use switchboard_mixer::{spec, Mixer};

/// A mixer started at `t0` and configured with a plan of `inputs` and `outputs` in `codec` (with
/// payload type `pt`): three speakers, jitter buffers from `jitter_buffer_ms` up to 200 ms.
pub fn configured_mixer(
    t0: Instant,
    codec: Codec,
    pt: u8,
    inputs: u16,
    outputs: Vec<MixOutput>,
    jitter_buffer_ms: u32,
) -> Mixer {
    let mut m = Mixer::new(t0);
    let plan = MixPlan {
        inputs: (0..inputs)
            .map(|i| MixInput { slot: SlotKey(i), codec: spec(codec, pt), publisher: ParticipantId(i as u64 + 1) })
            .collect(),
        outputs,
        speakers: 3,
        jitter_buffer_ms,
        jitter_buffer_max_ms: 200,
        video: VideoSettings::default(),
    };
    m.configure(t0, &plan);
    m
}

/// A 20 ms mix output on `track`, less `minus`.
pub fn mix_output(track: u16, codec: Codec, pt: u8, minus: Option<SlotKey>) -> MixOutput {
    MixOutput { track: TrackKey(track), codec: spec(codec, pt), ptime_ms: 20, kind: MixOutputKind::Mix { minus } }
}

/// Metadata of an RTP packet without marker or audio level.
pub fn meta(pt: u8, seq: u64, timestamp: u32, ssrc: u32) -> RtpMeta {
    RtpMeta { pt: Pt(pt), seq: SeqNo(seq), timestamp, marker: false, ssrc: Ssrc(ssrc), audio_level: None }
}

/// Power of `hz` in PCM at `rate` (Goertzel).
pub fn goertzel(pcm: &[i16], hz: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in pcm {
        let s = *x as f64 + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2
}

/// The payloads of every packet the mixer put out since the last take, in order, whatever their
/// track; the collector keeps its events.
pub fn take_payloads(out: &mut Collector) -> Vec<Vec<u8>> {
    std::mem::take(&mut out.media).into_iter().map(|(_, _, payload)| payload).collect()
}
