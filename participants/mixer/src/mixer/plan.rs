//! Applying a [`MixPlan`]: the audio inputs and outputs the plan names are kept or made, the rest
//! dropped, and the video part is handed to the compositor.

use super::input::Input;
use super::tick::OutputState;
use super::{Mixer, TICK};
use crate::codec::Decoder;
use crate::compositor::{CanvasKey, VideoOutput};
use crate::jitter::JitterBuffer;
use std::time::{Duration, Instant};
use switchboard_driver::{Codec, CodecSpec, MediaKind, MixOutputKind, MixPlan, Pt, SlotKey};

impl Mixer {
    /// Restates the mixer's whole job (see `Mcu::configure`). An input or output that the plan
    /// keeps keeps its state: its jitter buffer and decoder, or its sequence numbers.
    pub(super) fn apply_plan(&mut self, now: Instant, plan: &MixPlan) {
        if *plan == self.plan {
            return;
        }
        let jitter_min = Duration::from_millis(plan.jitter_buffer_ms as u64);
        let jitter_max = Duration::from_millis(plan.jitter_buffer_max_ms as u64);
        let audio_inputs = || plan.inputs.iter().filter(|p| p.codec.codec.kind() == MediaKind::Audio);
        let audio_outputs = || plan.outputs.iter().filter(|o| o.codec.codec.kind() == MediaKind::Audio);
        self.inputs.retain(|i| audio_inputs().any(|p| p.slot == i.slot && p.codec == i.codec));
        for p in audio_inputs() {
            if self.inputs.iter().any(|i| i.slot == p.slot) {
                continue;
            }
            let decoder = match Decoder::new(p.codec.codec) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "mixer input cannot be decoded");
                    self.stats.errors += 1;
                    None
                }
            };
            let jitter = JitterBuffer::new(jitter_min, jitter_max, TICK);
            self.inputs.push(Input::new(p.slot, p.codec.clone(), jitter, decoder));
        }
        for o in audio_outputs() {
            match self.outputs.iter_mut().find(|x| x.track == o.track) {
                Some(x) => x.update(&o.codec, o.ptime_ms, o.kind),
                None => self.outputs.push(OutputState::new(o.track, o.codec.clone(), o.ptime_ms, o.kind)),
            }
        }
        self.outputs.retain(|x| audio_outputs().any(|o| o.track == x.track));
        let video_inputs: Vec<(SlotKey, CodecSpec)> = plan
            .inputs
            .iter()
            .filter(|p| p.codec.codec.kind() == MediaKind::Video)
            .map(|p| (p.slot, p.codec.clone()))
            .collect();
        let video_outputs: Vec<VideoOutput> = plan
            .outputs
            .iter()
            .filter(|o| o.codec.codec.kind() == MediaKind::Video)
            .filter_map(|o| {
                let canvas = match o.kind {
                    MixOutputKind::Composite => CanvasKey::Composite,
                    MixOutputKind::Transcode { input } => CanvasKey::Transcode(input),
                    MixOutputKind::Mix { .. } => return None,
                };
                Some(VideoOutput { track: o.track, codec: o.codec.clone(), canvas })
            })
            .collect();
        self.video.configure(now, &video_inputs, &video_outputs, plan.video);
        for input in &mut self.inputs {
            input.transcoded =
                self.outputs.iter().any(|o| matches!(o.kind, MixOutputKind::Transcode { input: s } if s == input.slot));
        }
        // Sorted by slot, so a packet finds its input by binary search: a linear one per packet
        // made a big room's input cost grow with the room.
        self.inputs.sort_by_key(|i| i.slot);
        self.selector.set_k(plan.speakers);
        self.plan = plan.clone();
        if self.next_tick < now {
            self.next_tick = now + TICK;
        }
    }
}

/// Builds a codec spec for tests and plans.
pub fn spec(codec: Codec, pt: u8) -> CodecSpec {
    CodecSpec { codec, pt: Pt(pt), clock_rate: codec.clock_rate(), channels: 1, fmtp: String::new() }
}
