//! Turns the routes that need the MCU into the mixer's plan, with keys that stay stable while a
//! subscriber keeps its route, so its slot keeps one source and one continuous stream.

use super::routing::Route;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use switchboard_driver::{
    CodecSpec, Mcu, MediaKind, MixInput, MixOutput, MixOutputKind, MixPlan, ParticipantId, SlotKey, TrackId, TrackKey,
    VideoSettings,
};

/// Builds the room's MCU when a route first needs one. The core never names GStreamer.
pub type MixerFactory = Arc<dyn Fn(Instant) -> Box<dyn Mcu> + Send + Sync>;

#[derive(Clone)]
pub struct MixerSettings {
    /// `None`: mix and transcode routes are decided and reported, but carry no media.
    pub factory: Option<MixerFactory>,
    pub speakers: usize,
    /// Minimum (initial) and maximum playout delay of the mixer's adaptive jitter buffers.
    pub jitter_buffer_ms: u32,
    pub jitter_buffer_max_ms: u32,
    pub video: VideoSettings,
}

impl std::fmt::Debug for MixerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixerSettings")
            .field("factory", &self.factory.is_some())
            .field("speakers", &self.speakers)
            .field("jitter_buffer_ms", &self.jitter_buffer_ms)
            .field("jitter_buffer_max_ms", &self.jitter_buffer_max_ms)
            .field("video", &self.video)
            .finish()
    }
}

/// A subscriber slot the MCU must serve.
#[derive(Debug, Clone)]
pub struct Demand {
    pub subscriber: ParticipantId,
    pub slot: SlotKey,
    pub route: Route,
    /// The transcoded track.
    pub track: Option<TrackId>,
    /// The codec the slot receives, with the subscriber's numbering.
    pub codec: CodecSpec,
    pub ptime_ms: u16,
    /// The subscriber's own audio track, which its mix must leave out.
    pub own_audio: Option<TrackId>,
}

/// A track that may be mixed (audio) or composited (video).
#[derive(Debug, Clone)]
pub struct Source {
    pub track: TrackId,
    pub publisher: ParticipantId,
    pub codec: CodecSpec,
}

#[derive(Debug, Default)]
pub struct MixKeys {
    inputs: HashMap<TrackId, SlotKey>,
    outputs: HashMap<(ParticipantId, SlotKey), TrackKey>,
    next: u16,
}

impl MixKeys {
    fn key(&mut self) -> u16 {
        self.next = self.next.wrapping_add(1);
        self.next
    }

    pub fn output(&self, subscriber: ParticipantId, slot: SlotKey) -> Option<TrackKey> {
        self.outputs.get(&(subscriber, slot)).copied()
    }

    pub fn input_track(&self, slot: SlotKey) -> Option<TrackId> {
        self.inputs.iter().find(|(_, s)| **s == slot).map(|(t, _)| *t)
    }
}

/// The plan for `demands`. Every audio source is an input once anything is mixed, since any of
/// them may become a loudest speaker, and every video source once anything is composited;
/// transcodes add only their own source.
pub fn plan(keys: &mut MixKeys, demands: &[Demand], sources: &[Source], settings: &MixerSettings) -> MixPlan {
    let mixing = demands.iter().any(|d| d.route == Route::Mix);
    let compositing = demands.iter().any(|d| d.route == Route::Composite);
    let wanted: Vec<&Source> = sources
        .iter()
        .filter(|s| match s.codec.codec.kind() {
            MediaKind::Audio => mixing,
            MediaKind::Video => compositing,
        } || demands.iter().any(|d| d.route == Route::Transcode && d.track == Some(s.track)))
        .collect();
    keys.inputs.retain(|t, _| wanted.iter().any(|s| s.track == *t));
    keys.outputs.retain(|k, _| demands.iter().any(|d| (d.subscriber, d.slot) == *k));
    let mut inputs = Vec::with_capacity(wanted.len());
    for s in wanted {
        let slot = match keys.inputs.get(&s.track) {
            Some(k) => *k,
            None => {
                let k = SlotKey(keys.key());
                keys.inputs.insert(s.track, k);
                k
            }
        };
        inputs.push(MixInput { slot, codec: s.codec.clone(), publisher: s.publisher });
    }
    let mut outputs = Vec::with_capacity(demands.len());
    for d in demands {
        let kind = match (d.route, d.track) {
            (Route::Mix, _) => MixOutputKind::Mix { minus: d.own_audio.and_then(|t| keys.inputs.get(&t).copied()) },
            (Route::Composite, _) => MixOutputKind::Composite,
            (Route::Transcode, Some(t)) => match keys.inputs.get(&t) {
                Some(input) => MixOutputKind::Transcode { input: *input },
                None => continue,
            },
            _ => continue,
        };
        let track = match keys.outputs.get(&(d.subscriber, d.slot)) {
            Some(k) => *k,
            None => {
                let k = TrackKey(keys.key());
                keys.outputs.insert((d.subscriber, d.slot), k);
                k
            }
        };
        outputs.push(MixOutput { track, codec: d.codec.clone(), ptime_ms: d.ptime_ms, kind });
    }
    inputs.sort_by_key(|i| i.slot);
    outputs.sort_by_key(|o| o.track);
    MixPlan {
        inputs,
        outputs,
        speakers: settings.speakers,
        jitter_buffer_ms: settings.jitter_buffer_ms,
        jitter_buffer_max_ms: settings.jitter_buffer_max_ms,
        video: settings.video,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_driver::{Codec, Pt};

    fn spec(c: Codec) -> CodecSpec {
        CodecSpec { codec: c, pt: Pt(0), clock_rate: c.clock_rate(), channels: 1, fmtp: String::new() }
    }
    fn settings() -> MixerSettings {
        MixerSettings {
            factory: None,
            speakers: 3,
            jitter_buffer_ms: 40,
            jitter_buffer_max_ms: 200,
            video: VideoSettings::default(),
        }
    }
    fn mix_demand(sub: u64, own: u64) -> Demand {
        Demand {
            subscriber: ParticipantId(sub),
            slot: SlotKey(0),
            route: Route::Mix,
            track: None,
            codec: spec(Codec::Pcmu),
            ptime_ms: 20,
            own_audio: Some(TrackId(own)),
        }
    }
    fn source(t: u64, p: u64) -> Source {
        Source { track: TrackId(t), publisher: ParticipantId(p), codec: spec(Codec::Pcmu) }
    }

    #[test]
    fn mix_takes_every_source_and_leaves_each_subscriber_out_of_its_own() {
        let mut keys = MixKeys::default();
        let sources = [source(10, 1), source(11, 2), source(12, 3)];
        let demands = [mix_demand(1, 10), mix_demand(2, 11), mix_demand(3, 12)];
        let p = plan(&mut keys, &demands, &sources, &settings());
        assert_eq!(p.inputs.len(), 3);
        assert_eq!(p.outputs.len(), 3);
        let in10 = keys.inputs[&TrackId(10)];
        let out1 = keys.output(ParticipantId(1), SlotKey(0)).unwrap();
        let o = p.outputs.iter().find(|o| o.track == out1).unwrap();
        assert_eq!(o.kind, MixOutputKind::Mix { minus: Some(in10) });
    }

    #[test]
    fn keys_are_stable_across_replans() {
        let mut keys = MixKeys::default();
        let sources = [source(10, 1), source(11, 2), source(12, 3)];
        let demands = [mix_demand(1, 10), mix_demand(2, 11), mix_demand(3, 12)];
        let a = plan(&mut keys, &demands, &sources, &settings());
        let b = plan(&mut keys, &demands[..2], &sources, &settings());
        assert_eq!(a.outputs[0].track, b.outputs[0].track);
        assert_eq!(b.outputs.len(), 2);
    }

    #[test]
    fn transcode_takes_only_its_source() {
        let mut keys = MixKeys::default();
        let sources = [source(10, 1), source(11, 2)];
        let d = Demand { route: Route::Transcode, track: Some(TrackId(11)), own_audio: None, ..mix_demand(1, 10) };
        let p = plan(&mut keys, &[d], &sources, &settings());
        assert_eq!(p.inputs.len(), 1);
        assert_eq!(p.outputs[0].kind, MixOutputKind::Transcode { input: keys.inputs[&TrackId(11)] });
    }

    #[test]
    fn nothing_to_mix_is_an_empty_plan() {
        let mut keys = MixKeys::default();
        let p = plan(&mut keys, &[], &[source(10, 1)], &settings());
        assert!(p.inputs.is_empty() && p.outputs.is_empty());
    }
}
