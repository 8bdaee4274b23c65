//! Rerouting: the RoutingPolicy's decisions turned into wiring. Every receiving slot, a
//! participant's or one of the MCU's inputs, ends up `wired` to the one track it is fed from, and
//! the fan-out lists the packet path reads are rebuilt from those wires alone.

use super::super::events::RoomEvent;
use super::super::fanout::Network;
use super::super::mcu::RoomMcu;
use super::super::mixing::{self, Demand, Source};
use super::super::participant::{Endpoint, Slot, SlotRef};
use super::super::routing::{self, Assignment, PolicySlot, PolicySubscriber, PolicyTrack, Route};
use super::Room;
use std::time::Instant;
use switchboard_driver::{KeyframeKind, MediaKind, MixPlan, ParticipantId, SlotKey, TrackId};

impl Room {
    /// Re-runs the RoutingPolicy for every subscriber, sets the MCU to what the routes need,
    /// reports what changed and rebuilds the fan-out lists the packet path reads.
    pub(super) fn reroute(&mut self, now: Instant, net: &mut dyn Network) {
        let (tracks, sources) = self.published();
        let mut decided = Vec::new();
        let mut demands = Vec::new();
        for (idx, p) in self.slab.iter().enumerate() {
            let Some(p) = p.as_ref() else { continue };
            let sub = PolicySubscriber {
                id: p.id,
                kind: p.kind,
                audio: p.audio,
                video: p.video,
                // Without the subscribe grant the policy sees no slots: each is served nothing.
                slots: p
                    .slots
                    .iter()
                    .filter(|_| p.media.subscribe)
                    .map(|s| PolicySlot {
                        key: s.info.key,
                        kind: s.info.kind,
                        codecs: s.info.codecs.iter().map(|c| c.codec).collect(),
                        current: s.source,
                    })
                    .collect(),
            };
            let assignments = routing::assign(&sub, &tracks, &self.speakers);
            let own_audio = p.tracks.iter().find(|t| t.kind == MediaKind::Audio).map(|t| t.id);
            for a in assignments.iter().filter(|a| a.route != Route::Forward) {
                let Some(slot) = p.slots.iter().find(|s| s.info.key == a.slot) else { continue };
                if let Some(codec) = slot.info.codecs.iter().find(|c| c.codec == a.codec) {
                    demands.push(Demand {
                        subscriber: p.id,
                        slot: a.slot,
                        route: a.route,
                        track: a.track,
                        codec: codec.clone(),
                        ptime_ms: slot.info.ptime_ms.unwrap_or(20),
                        own_audio,
                    });
                }
            }
            decided.push((idx, assignments));
        }
        let plan = mixing::plan(&mut self.mix_keys, &demands, &sources, &self.cfg.mixer);
        self.apply_mix_plan(now, &plan);
        let mut keyframes = Vec::new();
        for (idx, assignments) in decided {
            let Some(p) = self.slab[idx].as_mut() else { continue };
            let pid = p.id;
            for slot in &mut p.slots {
                let a = assignments.iter().find(|a| a.slot == slot.info.key);
                let wired = a.and_then(|a| wire(a, pid, slot.info.key, &self.mix_keys, self.mcu.as_ref()));
                let Some(change) = apply(slot, a, wired, &tracks) else { continue };
                if change.switched {
                    self.stats.route_switches += 1;
                }
                if let Some(from) = change.keyframe_from {
                    keyframes.push(from);
                }
                if let Some(pair) = change.transcode {
                    self.stats.transcodes.push(pair);
                }
                self.events.push(RoomEvent::RouteChanged {
                    participant_id: pid,
                    slot: slot.info.label.clone(),
                    route: slot.route,
                    track_id: slot.source,
                    publisher_id: slot.source.and_then(|t| tracks.iter().find(|x| x.id == t)).map(|t| t.publisher),
                    codec: slot.codec,
                });
            }
        }
        self.rebuild_fanout();
        for track in keyframes {
            self.request_keyframe(now, track, KeyframeKind::Pli, net);
        }
    }

    /// Every participant's published track, for the policy and the mix plan, sorted by id.
    fn published(&self) -> (Vec<PolicyTrack>, Vec<Source>) {
        let mut tracks = Vec::new();
        let mut sources = Vec::new();
        for p in self.slab.iter().flatten().filter(|p| p.media.publish) {
            for t in p.tracks.iter().filter(|t| !t.muted) {
                tracks.push(PolicyTrack { id: t.id, publisher: p.id, kind: t.kind, codec: t.codec });
                sources.push(Source { track: t.id, publisher: p.id, codec: t.spec.clone() });
            }
        }
        tracks.sort_by_key(|t| t.id);
        sources.sort_by_key(|s| s.track);
        (tracks, sources)
    }

    /// Creates, reconfigures or removes the MCU for `plan`, and wires its inputs.
    fn apply_mix_plan(&mut self, now: Instant, plan: &MixPlan) {
        if plan.outputs.is_empty() {
            if let Some(mut m) = self.mcu.take() {
                self.stats.mixer.absorb(m.mcu.take_stats());
                self.forget_mcu(m.outputs.iter().map(|t| t.id));
                // Speakers come from the MCU; without it the old order would linger.
                self.speakers.clear();
            }
            return;
        }
        if self.mcu.is_none() {
            let Some(factory) = self.cfg.mixer.factory.clone() else { return };
            let span = tracing::info_span!("mcu", room = %self.id);
            self.mcu = Some(RoomMcu::new(factory(now), now, span));
        }
        let Some(mut m) = self.mcu.take() else { return };
        {
            let _entered = m.span.enter();
            m.mcu.configure(now, plan);
        }
        m.next_timeout = now;
        self.earliest = now;
        let changes = m.follow(plan, || self.next_track());
        for id in changes.removed {
            self.track_owner.remove(&id);
        }
        for (id, key) in changes.added {
            self.track_owner.insert(id, (Endpoint::Mcu, key));
        }
        let keys = &self.mix_keys;
        m.wire_inputs(|slot| keys.input_track(slot));
        self.mcu = Some(m);
    }

    /// The MCU's loudest inputs changed: their publishers become the room's active speakers.
    pub(super) fn speakers_changed(&mut self, now: Instant, slots: &[SlotKey], net: &mut dyn Network) {
        let Some(m) = &self.mcu else { return };
        let speakers: Vec<ParticipantId> = slots
            .iter()
            .filter_map(|k| m.inputs.iter().find(|s| s.info.key == *k).and_then(|s| s.wired))
            .filter_map(|t| self.publisher_of(t))
            .collect();
        if speakers == self.speakers {
            return;
        }
        if let Some(top) = speakers.first().filter(|t| self.speakers.first() != Some(*t)) {
            self.events.push(RoomEvent::ActiveSpeaker { participant_id: *top });
        }
        self.speakers = speakers;
        self.reroute(now, net);
    }

    /// Rebuilds every track's fan-out list from the slots' wires, and who is mixer-paced.
    fn rebuild_fanout(&mut self) {
        let mut wires = Vec::new();
        for (idx, p) in self.slab.iter().enumerate() {
            if let Some(p) = p {
                self.collect_wires(Endpoint::Participant(idx), &p.slots, &mut wires);
            }
        }
        if let Some(m) = &self.mcu {
            self.collect_wires(Endpoint::Mcu, &m.inputs, &mut wires);
        }
        for t in self.slab.iter_mut().flatten().flat_map(|p| p.tracks.iter_mut()) {
            t.fanout.clear();
        }
        for t in self.mcu.iter_mut().flat_map(|m| m.outputs.iter_mut()) {
            t.fanout.clear();
        }
        for (track, slot_ref) in wires {
            let list = match self.track_owner.get(&track) {
                Some(&(Endpoint::Participant(owner), key)) => {
                    self.slab[owner].as_mut().and_then(|p| p.track_by_key_mut(key)).map(|t| &mut t.fanout)
                }
                Some(&(Endpoint::Mcu, key)) => self.mcu.as_mut().and_then(|m| m.output_mut(key)).map(|t| &mut t.fanout),
                None => None,
            };
            if let Some(list) = list {
                list.push(slot_ref);
            }
        }
        let has_mcu = self.mcu.is_some();
        let mut changed = false;
        for p in self.slab.iter_mut().flatten() {
            let mut wires = p.tracks.iter().flat_map(|t| &t.fanout).peekable();
            let paced = has_mcu && wires.peek().is_some() && wires.all(|w| w.to == Endpoint::Mcu);
            changed |= paced != p.mixer_paced;
            p.mixer_paced = paced;
        }
        if changed {
            self.pacing_epoch += 1;
        }
    }

    /// One fan-out entry for each active, wired slot of `to`.
    fn collect_wires(&self, to: Endpoint, slots: &[Slot], wires: &mut Vec<(TrackId, SlotRef)>) {
        for (index, s) in slots.iter().enumerate() {
            let Some(track) = s.wired.filter(|_| s.info.active) else { continue };
            let codec = match self.track_owner.get(&track) {
                Some(&(Endpoint::Participant(owner), key)) => {
                    self.slab[owner].as_ref().and_then(|p| p.track_by_key(key)).map(|t| t.codec)
                }
                Some(&(Endpoint::Mcu, key)) => self.mcu.as_ref().and_then(|m| m.output(key)).map(|t| t.codec),
                None => None,
            };
            let pt = codec.and_then(|c| s.info.pt_for(c));
            wires.push((track, SlotRef { to, slot: s.info.key, index, pt }));
        }
    }
}

/// The one track a subscriber's slot is fed from for its assignment: the publisher's track
/// when forwarded, the MCU's output for the slot otherwise.
fn wire(
    a: &Assignment,
    subscriber: ParticipantId,
    slot: SlotKey,
    keys: &mixing::MixKeys,
    mcu: Option<&RoomMcu>,
) -> Option<TrackId> {
    match a.route {
        Route::Forward => a.track,
        Route::Mix | Route::Transcode | Route::Composite => {
            let key = keys.output(subscriber, slot)?;
            mcu?.output(key).map(|t| t.id)
        }
    }
}

/// What applying an assignment to a slot changed, for the room's stats, events and keyframes.
struct Change {
    /// The slot had a route before: this is a switch, not a first assignment.
    switched: bool,
    /// A video slot whose picture must start on a keyframe from this track.
    keyframe_from: Option<TrackId>,
    /// A transcode began: (from, to) codecs.
    transcode: Option<(switchboard_driver::Codec, switchboard_driver::Codec)>,
}

/// Sets the slot's wire, route, source and codec from `a`. `None` when the reported route,
/// source and codec stay as they were (the wire may still have moved, to a new MCU output).
fn apply(slot: &mut Slot, a: Option<&Assignment>, wired: Option<TrackId>, tracks: &[PolicyTrack]) -> Option<Change> {
    let (route, source, codec) = (a.map(|a| a.route), a.and_then(|a| a.track), a.map(|a| a.codec));
    slot.wired = wired;
    if (route, source, codec) == (slot.route, slot.source, slot.codec) {
        return None;
    }
    let mut change = Change { switched: slot.route.is_some(), keyframe_from: None, transcode: None };
    if let Some(c) = codec {
        slot.forwarder.set_clock_rate(c.clock_rate());
    }
    if slot.info.kind == MediaKind::Video && (route, source) != (slot.route, slot.source) {
        // The picture starts on a keyframe: from the publisher of a forwarded track, from the
        // MCU's encoder (`wired`) for a composite or a transcode.
        change.keyframe_from = if route == Some(Route::Forward) { source } else { wired };
    }
    if route == Some(Route::Transcode) && slot.route != Some(Route::Transcode) {
        if let (Some(from), Some(to)) = (tracks.iter().find(|t| Some(t.id) == source), codec) {
            change.transcode = Some((from.codec, to));
        }
    }
    slot.route = route;
    slot.source = source;
    slot.codec = codec;
    Some(change)
}
