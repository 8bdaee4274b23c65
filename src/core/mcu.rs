//! The room's MCU as the room holds it: the mixer behind the [`Mcu`] trait, its input slots (fed by
//! the fan-out like any subscriber's slots) and its output tracks (fanned out like any publisher's
//! tracks). Both follow the room's mix plan. The MCU is not a participant: it has no id, no kind,
//! no SDP and no peer, and the room never reports it as one.

use super::participant::{PublishedTrack, Slot};
use super::routing::Route;
use std::time::Instant;
use switchboard_driver::{Mcu, MixPlan, SlotInfo, Ssrc, TrackId, TrackKey};

pub struct RoomMcu {
    pub mcu: Box<dyn Mcu>,
    /// One per plan input, in the plan's order (by key).
    pub inputs: Vec<Slot>,
    /// One per plan output, sorted by key: the packet path finds one by binary search.
    pub outputs: Vec<PublishedTrack>,
    pub next_timeout: Instant,
    pub span: tracing::Span,
}

/// What following a plan changed in the MCU's outputs, for the room's track index.
#[derive(Debug, Default)]
pub struct OutputChanges {
    pub added: Vec<(TrackId, TrackKey)>,
    pub removed: Vec<TrackId>,
}

impl RoomMcu {
    pub fn new(mcu: Box<dyn Mcu>, now: Instant, span: tracing::Span) -> RoomMcu {
        RoomMcu { mcu, inputs: Vec::new(), outputs: Vec::new(), next_timeout: now, span }
    }

    /// Brings the input slots and output tracks in line with `plan`. An input's wiring is left
    /// to the caller, which knows which track each input key stands for; a new output takes the
    /// id `next_track` gives it.
    pub fn follow(&mut self, plan: &MixPlan, mut next_track: impl FnMut() -> TrackId) -> OutputChanges {
        let mut changes = OutputChanges::default();
        self.inputs.retain(|s| plan.inputs.iter().any(|i| i.slot == s.info.key));
        for i in &plan.inputs {
            let info = SlotInfo {
                key: i.slot,
                kind: i.codec.codec.kind(),
                label: format!("in{}", i.slot.0),
                codecs: vec![i.codec.clone()],
                ssrc: Ssrc(0),
                telephone_event: None,
                active: true,
                ptime_ms: None,
            };
            match self.inputs.iter_mut().find(|s| s.info.key == i.slot) {
                Some(s) => s.info = info,
                None => self.inputs.push(Slot::new(info)),
            }
        }
        self.inputs.sort_by_key(|s| s.info.key);
        self.outputs.retain(|t| {
            let keep = plan.outputs.iter().any(|o| o.track == t.key && o.codec.codec.kind() == t.kind);
            if !keep {
                changes.removed.push(t.id);
            }
            keep
        });
        for o in &plan.outputs {
            match self.outputs.iter_mut().find(|t| t.key == o.track) {
                Some(t) => {
                    t.codec = o.codec.codec;
                    t.spec = o.codec.clone();
                }
                None => {
                    let id = next_track();
                    changes.added.push((id, o.track));
                    self.outputs.push(PublishedTrack {
                        key: o.track,
                        id,
                        kind: o.codec.codec.kind(),
                        codec: o.codec.codec,
                        spec: o.codec.clone(),
                        label: format!("mix{}", o.track.0),
                        muted: false,
                        fanout: Vec::new(),
                    });
                }
            }
        }
        self.outputs.sort_by_key(|t| t.key);
        changes
    }

    /// Each input forwards the track `track_of` says its key stands for.
    pub fn wire_inputs(&mut self, track_of: impl Fn(switchboard_driver::SlotKey) -> Option<TrackId>) {
        for slot in &mut self.inputs {
            slot.wired = track_of(slot.info.key);
            slot.source = slot.wired;
            slot.route = Some(Route::Forward);
        }
    }

    pub fn output(&self, key: TrackKey) -> Option<&PublishedTrack> {
        self.outputs.binary_search_by_key(&key, |t| t.key).ok().map(|i| &self.outputs[i])
    }

    pub fn output_mut(&mut self, key: TrackKey) -> Option<&mut PublishedTrack> {
        self.outputs.binary_search_by_key(&key, |t| t.key).ok().map(|i| &mut self.outputs[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_driver::{
        Codec, CodecSpec, KeyframeKind, MediaKind, MixInput, MixOutput, MixOutputKind, MixerStats, Output,
        ParticipantId, Pt, RtpMeta, SlotKey, WriteError,
    };

    struct Idle;
    impl Mcu for Idle {
        fn configure(&mut self, _: Instant, _: &MixPlan) {}
        fn write_media(&mut self, _: Instant, _: SlotKey, _: &RtpMeta, _: &[u8]) -> Result<(), WriteError> {
            Ok(())
        }
        fn handle_timeout(&mut self, _: Instant) {}
        fn request_keyframe(&mut self, _: TrackKey, _: KeyframeKind) {}
        fn receiver_loss(&mut self, _: Instant, _: TrackKey, _: f32) {}
        fn poll(&mut self, now: Instant, _: &mut dyn Output) -> Instant {
            now
        }
        fn take_stats(&mut self) -> MixerStats {
            MixerStats::default()
        }
        fn close(&mut self, _: Instant) {}
    }

    fn spec(codec: Codec, pt: u8) -> CodecSpec {
        CodecSpec { codec, pt: Pt(pt), clock_rate: codec.clock_rate(), channels: 1, fmtp: String::new() }
    }

    fn plan(outputs: &[(u16, Codec)]) -> MixPlan {
        MixPlan {
            inputs: vec![MixInput { slot: SlotKey(7), codec: spec(Codec::Vp8, 96), publisher: ParticipantId(1) }],
            outputs: outputs
                .iter()
                .map(|&(k, c)| MixOutput {
                    track: TrackKey(k),
                    codec: spec(c, 0),
                    ptime_ms: 20,
                    kind: MixOutputKind::Composite,
                })
                .collect(),
            ..MixPlan::default()
        }
    }

    #[test]
    fn inputs_and_outputs_follow_the_plan_and_keep_their_ids() {
        let now = Instant::now();
        let mut m = RoomMcu::new(Box::new(Idle), now, tracing::Span::none());
        let mut next = 0;
        let first = m.follow(&plan(&[(2, Codec::Vp8), (1, Codec::Pcmu)]), || {
            next += 1;
            TrackId(next)
        });
        assert_eq!(first.added.len(), 2);
        assert_eq!(m.inputs.len(), 1);
        assert_eq!(m.inputs[0].info.codecs[0].codec, Codec::Vp8);
        // Sorted by key for the packet path's binary search, each with the kind of its codec.
        assert_eq!(m.outputs.iter().map(|t| t.key.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(m.output(TrackKey(2)).map(|t| t.kind), Some(MediaKind::Video), "a composite is published as video");
        let kept = m.output(TrackKey(2)).map(|t| t.id);
        let second = m.follow(&plan(&[(2, Codec::Vp8)]), || TrackId(99));
        assert!(second.added.is_empty(), "a kept output is not published again");
        assert_eq!(second.removed.len(), 1);
        assert_eq!(m.output(TrackKey(2)).map(|t| t.id), kept, "a kept output keeps its track id");
    }
}
