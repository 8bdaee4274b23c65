//! A room: the single owner of its participants, their tracks and the routing table.
//!
//! Sans-IO: every call takes `now` and a [`Network`] to send through. The runtime calls
//! `handle_receive` per datagram and `handle_timeout` when `poll_timeout` says so, and drains
//! `take_events` / `take_closed` after each call.

use super::events::{LeaveReason, RoomEvent};
use super::fanout::{Fanout, Network};
use super::forwarder::Forwarder;
use super::mixing::{self, Demand, MixKeys, MixerSettings, Source};
use super::participant::{Participant, ParticipantState, PublishedTrack, Slot, SlotRef};
use super::routing::{self, AudioPreference, PolicySlot, PolicySubscriber, PolicyTrack, Route, VideoPreference};
use super::stats::{RoomGauges, RoomStats};
use super::view::{ParticipantView, RoomView};
use rustc_hash::FxHashMap;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard_driver::{
    Driver, DriverEvent, DropReason, KeyframeKind, MediaKind, NegotiationError, ParticipantId, ParticipantKind, RoomId,
    SdpInput, TrackId, TrackKey, WriteError,
};

#[derive(Debug, Clone)]
pub struct RoomConfig {
    pub max_participants: usize,
    pub inactivity_timeout: Duration,
    pub empty_timeout: Duration,
    pub mixer: MixerSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("room is full ({0} participants)")]
    Full(usize),
    #[error("participant not found")]
    ParticipantNotFound,
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Who joins, before the room has a place for them.
pub struct Joining {
    pub id: ParticipantId,
    pub kind: ParticipantKind,
    pub display_name: Option<String>,
    pub audio: AudioPreference,
    pub video: VideoPreference,
    pub driver: Box<dyn Driver>,
}

/// Unique across the process so a track id in an event never means two things.
static NEXT_TRACK: AtomicU64 = AtomicU64::new(1);

pub struct Room {
    id: RoomId,
    cfg: RoomConfig,
    slab: Vec<Option<Participant>>,
    /// Participant ids are random numbers the bridge draws, so no sender can aim at collisions.
    index: FxHashMap<ParticipantId, usize>,
    /// Which participant publishes a track, for keyframe requests and routing.
    track_owner: HashMap<TrackId, (usize, TrackKey)>,
    awaiting_answer: HashMap<ParticipantId, bool>,
    speakers: Vec<ParticipantId>,
    events: Vec<RoomEvent>,
    closed: Vec<ParticipantId>,
    deferred: VecDeque<(usize, DriverEvent)>,
    stats: RoomStats,
    earliest: Instant,
    empty_since: Option<Instant>,
    /// The mixer's place in the slab, while one exists.
    mixer: Option<usize>,
    mix_keys: MixKeys,
    /// Mixes, encoders and decoders as of the last `take_stats`.
    mixer_gauges: [u64; 6],
    /// Bumped whenever some participant's [`Room::is_mixer_paced`] answer changes.
    pacing_epoch: u64,
    /// During `handle_receive`: the receiving participant, and how many of the drops its driver
    /// reported say the datagram was not its peer's.
    receiving: Option<(usize, u32)>,
}

impl Room {
    pub fn new(id: RoomId, cfg: RoomConfig, now: Instant) -> Room {
        Room {
            id,
            slab: Vec::new(),
            index: FxHashMap::default(),
            track_owner: HashMap::new(),
            awaiting_answer: HashMap::new(),
            speakers: Vec::new(),
            events: Vec::new(),
            closed: Vec::new(),
            deferred: VecDeque::new(),
            stats: RoomStats::default(),
            earliest: now + cfg.empty_timeout,
            empty_since: Some(now),
            mixer: None,
            mix_keys: MixKeys::default(),
            mixer_gauges: [0; 6],
            pacing_epoch: 0,
            receiving: None,
            cfg,
        }
    }

    pub fn id(&self) -> &RoomId {
        &self.id
    }

    pub fn max_participants(&self) -> usize {
        self.cfg.max_participants
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn slot_of(&self, id: ParticipantId) -> Option<usize> {
        self.index.get(&id).copied()
    }

    /// Adds a participant. With `sdp`, it is the client's offer and the answer is returned;
    /// without, the driver's offer is returned and `renegotiate` takes the answer. On error the
    /// room is unchanged.
    pub fn join(
        &mut self,
        now: Instant,
        joining: Joining,
        sdp: Option<&str>,
        net: &mut dyn Network,
    ) -> Result<String, RoomError> {
        if self.index.len() >= self.cfg.max_participants {
            return Err(RoomError::Full(self.cfg.max_participants));
        }
        let Joining { id, kind, display_name, audio, video, mut driver } = joining;
        // Parsing untrusted SDP must not take the media thread down with it.
        let negotiated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match sdp {
            Some(offer) => {
                // Only an offer-handling driver returns an answer; `None` would be a driver bug.
                let answer = driver
                    .negotiate(now, SdpInput::Offer(offer))?
                    .ok_or_else(|| NegotiationError::UnexpectedState("driver produced no answer to an offer".into()))?;
                Ok::<_, NegotiationError>((answer, false))
            }
            None => Ok((driver.create_offer(now)?, true)),
        }));
        let (local_sdp, awaiting): (String, bool) = negotiated.map_err(|payload| {
            let why = panic_message(payload.as_ref());
            tracing::warn!(room = %self.id, participant = %id, why, "driver panicked on the SDP of a join");
            NegotiationError::BadSdp(format!("the SDP could not be processed ({why})"))
        })??;
        let p = Participant {
            id,
            kind,
            display_name: display_name.clone(),
            audio,
            video,
            state: ParticipantState::Connecting,
            internal: false,
            driver,
            tracks: Vec::new(),
            slots: Vec::new(),
            last_received: now,
            next_timeout: now,
            mixer_paced: false,
        };
        let idx = self.place(p);
        self.index.insert(id, idx);
        self.awaiting_answer.insert(id, awaiting);
        self.empty_since = None;
        self.events.push(RoomEvent::ParticipantJoined { participant_id: id, kind, display_name });
        self.sync_negotiated(idx);
        self.reroute(now, net);
        self.with_driver(idx, now, net, |_| ());
        Ok(local_sdp)
    }

    /// Applies new SDP from the participant: an offer (returns the answer) or the answer to the
    /// bridge's own offer (returns `None`).
    pub fn renegotiate(
        &mut self,
        now: Instant,
        id: ParticipantId,
        sdp: &str,
        net: &mut dyn Network,
    ) -> Result<Option<String>, RoomError> {
        let idx = self.slot_of(id).ok_or(RoomError::ParticipantNotFound)?;
        let awaiting = self.awaiting_answer.get(&id).copied().unwrap_or(false);
        let input = if awaiting { SdpInput::Answer(sdp) } else { SdpInput::Offer(sdp) };
        // The participant was found above, so no result means its driver panicked and is gone.
        let answer = self.with_driver(idx, now, net, |d| d.negotiate(now, input)).ok_or_else(|| {
            NegotiationError::BadSdp("the SDP could not be processed, and the participant was removed".into())
        })??;
        self.awaiting_answer.insert(id, false);
        self.sync_negotiated(idx);
        self.reroute(now, net);
        Ok(answer)
    }

    pub fn leave(&mut self, now: Instant, id: ParticipantId, reason: LeaveReason, net: &mut dyn Network) -> bool {
        let Some(idx) = self.slot_of(id) else {
            return false;
        };
        // Closed first, so the Disconnected the driver reports while closing is not taken for a
        // transport failure and this leave is not entered twice.
        match self.slab[idx].as_mut() {
            Some(p) if p.state != ParticipantState::Closed => p.state = ParticipantState::Closed,
            _ => return false,
        }
        self.with_driver(idx, now, net, |d| d.close(now));
        // A driver that panicked while closing is already gone.
        if let Some(p) = self.slab[idx].take() {
            self.forget(now, p, reason, net);
        }
        true
    }

    /// Everything a departure changes once the participant is out of the slab.
    fn forget(&mut self, now: Instant, p: Participant, reason: LeaveReason, net: &mut dyn Network) {
        if p.internal {
            // The mixer failed: the next re-route builds a new one.
            self.mixer = None;
            for t in &p.tracks {
                self.track_owner.remove(&t.id);
            }
            self.reroute(now, net);
            return;
        }
        let id = p.id;
        self.index.remove(&id);
        self.awaiting_answer.remove(&id);
        self.speakers.retain(|s| *s != id);
        for t in &p.tracks {
            self.track_owner.remove(&t.id);
            self.events.push(RoomEvent::TrackUnpublished { participant_id: id, track_id: t.id });
        }
        self.events.push(RoomEvent::ParticipantLeft { participant_id: id, reason });
        self.closed.push(id);
        if self.index.is_empty() {
            self.empty_since = Some(now);
            self.earliest = self.earliest.min(now + self.cfg.empty_timeout);
        }
        self.reroute(now, net);
    }

    pub fn send_dtmf(
        &mut self,
        now: Instant,
        id: ParticipantId,
        digits: &str,
        duration_ms: u32,
        net: &mut dyn Network,
    ) -> Result<(), RoomError> {
        let idx = self.slot_of(id).ok_or(RoomError::ParticipantNotFound)?;
        Ok(self
            .with_driver(idx, now, net, |d| d.send_dtmf(now, digits, duration_ms))
            .ok_or(RoomError::ParticipantNotFound)??)
    }

    /// Does this shared-socket datagram belong to participant `idx`?
    pub fn accepts(&self, idx: usize, src: SocketAddr, dst: SocketAddr, data: &[u8]) -> bool {
        matches!(self.slab.get(idx), Some(Some(p)) if p.driver.accepts(src, dst, data))
    }

    /// Finds the participant a shared-socket datagram belongs to. Linear, so callers cache the
    /// answer by source address.
    pub fn find_acceptor(&self, src: SocketAddr, dst: SocketAddr, data: &[u8]) -> Option<ParticipantId> {
        self.slab.iter().flatten().find(|p| p.driver.accepts(src, dst, data)).map(|p| p.id)
    }

    /// The packet path entry: one datagram for participant `id`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        id: ParticipantId,
        src: SocketAddr,
        dst: SocketAddr,
        data: &[u8],
        net: &mut dyn Network,
    ) {
        let Some(idx) = self.slot_of(id) else {
            return;
        };
        if let Some(Some(p)) = self.slab.get_mut(idx) {
            self.stats.received[p.kind].add(data.len());
        }
        self.receiving = Some((idx, 0));
        self.with_driver(idx, now, net, |d| d.handle_receive(now, src, dst, data));
        // Only a datagram the driver took keeps the participant alive: garbage or a stranger's
        // packets sent to a dead leg's port must not hold it open.
        if let Some((_, 0)) = self.receiving.take() {
            if let Some(Some(p)) = self.slab.get_mut(idx) {
                p.last_received = now;
            }
        }
    }

    pub fn poll_timeout(&self) -> Instant {
        self.earliest
    }

    /// Whether everything participant `id` publishes goes to the room's mixer and nowhere else.
    /// The mixer takes its input only at its tick, and the tick is among the room's deadlines,
    /// so the runtime may hold such a participant's datagrams until the room's next deadline and
    /// hand them over then, each with its own arrival time: the mix is the same, and the worker
    /// is woken once per tick instead of once per packet.
    pub fn is_mixer_paced(&self, id: ParticipantId) -> bool {
        self.slot_of(id).and_then(|i| self.slab[i].as_ref()).is_some_and(|p| p.mixer_paced)
    }

    /// Changes whenever some participant's [`Room::is_mixer_paced`] answer does, so the runtime
    /// asks again only then.
    pub fn pacing_epoch(&self) -> u64 {
        self.pacing_epoch
    }

    pub fn handle_timeout(&mut self, now: Instant, net: &mut dyn Network) {
        if now < self.earliest {
            return;
        }
        for idx in 0..self.slab.len() {
            if matches!(&self.slab[idx], Some(p) if p.next_timeout <= now) {
                self.with_driver(idx, now, net, |d| d.handle_timeout(now));
            }
        }
        let inactive: Vec<ParticipantId> = self
            .slab
            .iter()
            .flatten()
            .filter(|p| !p.internal && now.saturating_duration_since(p.last_received) >= self.cfg.inactivity_timeout)
            .map(|p| p.id)
            .collect();
        for id in inactive {
            self.leave(now, id, LeaveReason::Inactive, net);
        }
        let mut earliest = self.empty_since.map(|t| t + self.cfg.empty_timeout).unwrap_or(now + Duration::from_secs(1));
        for p in self.slab.iter().flatten() {
            earliest = earliest.min(p.next_timeout);
            if !p.internal {
                earliest = earliest.min(p.last_received + self.cfg.inactivity_timeout);
            }
        }
        self.earliest = earliest.max(now + Duration::from_millis(1)).min(now + Duration::from_secs(1));
    }

    /// True once the room has been empty for its timeout.
    pub fn is_expired(&self, now: Instant) -> bool {
        matches!(self.empty_since, Some(t) if now >= t + self.cfg.empty_timeout)
    }

    /// Closes everyone, as on shutdown or `DELETE` of the room.
    pub fn close_all(&mut self, now: Instant, reason: LeaveReason, net: &mut dyn Network) {
        let ids: Vec<ParticipantId> = self.index.keys().copied().collect();
        for id in ids {
            self.leave(now, id, reason, net);
        }
    }

    /// Whether `take_events` or `take_closed` has anything, so the runtime can skip both cheaply.
    pub fn has_news(&self) -> bool {
        !self.events.is_empty() || !self.closed.is_empty()
    }

    pub fn take_events(&mut self) -> std::vec::Drain<'_, RoomEvent> {
        self.events.drain(..)
    }

    /// Participants that left since the last call, so the runtime can free their sockets.
    pub fn take_closed(&mut self) -> std::vec::Drain<'_, ParticipantId> {
        self.closed.drain(..)
    }

    pub fn take_stats(&mut self) -> RoomStats {
        if let Some(m) = self.mixer.and_then(|i| self.slab.get_mut(i)).and_then(Option::as_mut) {
            if let Some(ctl) = m.driver.as_mixer() {
                // Added to, not replaced: a mixer removed since the last take left its counts.
                self.stats.mixer.absorb(ctl.take_stats());
            }
        }
        // Gauges outlive the counters they arrive with.
        let m = &self.stats.mixer;
        self.mixer_gauges = [m.mixes, m.encoders, m.decoders, m.jitter_target_ms, m.fec_encoders, m.video_encoders];
        if self.mixer.is_none() {
            self.mixer_gauges = [0; 6];
        }
        std::mem::take(&mut self.stats)
    }

    pub fn gauges(&self) -> RoomGauges {
        let mut g = RoomGauges {
            mixers: self.mixer.is_some() as u64,
            mixes: self.mixer_gauges[0],
            encoders: self.mixer_gauges[1],
            decoders: self.mixer_gauges[2],
            jitter_target_ms: self.mixer_gauges[3],
            fec_encoders: self.mixer_gauges[4],
            video_encoders: self.mixer_gauges[5],
            ..RoomGauges::default()
        };
        for p in self.slab.iter().flatten().filter(|p| !p.internal) {
            g.participants[p.kind] += 1;
            g.tracks += p.tracks.len() as u64;
            for s in &p.slots {
                if let Some(r) = s.route {
                    g.subscriptions[r] += 1;
                }
            }
        }
        g
    }

    pub fn view(&self) -> RoomView {
        let mut participants: Vec<ParticipantView> = self
            .slab
            .iter()
            .flatten()
            .filter(|p| !p.internal)
            .map(|p| ParticipantView::of(&self.id, p, &self.track_owner, &self.slab))
            .collect();
        participants.sort_by_key(|p| p.id);
        RoomView { id: self.id.clone(), max_participants: self.cfg.max_participants, participants: Some(participants) }
    }

    pub fn participant_view(&self, id: ParticipantId) -> Option<ParticipantView> {
        let p = self.slab.get(self.slot_of(id)?)?.as_ref()?;
        Some(ParticipantView::of(&self.id, p, &self.track_owner, &self.slab))
    }

    fn place(&mut self, p: Participant) -> usize {
        let idx = match self.slab.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.slab.push(None);
                self.slab.len() - 1
            }
        };
        self.slab[idx] = Some(p);
        idx
    }

    /// Runs `f` on one driver with the participant taken out of the slab, drains its output
    /// through the fan-out, puts it back and handles what it reported.
    fn with_driver<R>(
        &mut self,
        idx: usize,
        now: Instant,
        net: &mut dyn Network,
        f: impl FnOnce(&mut dyn Driver) -> R,
    ) -> Option<R> {
        let mut p = self.slab.get_mut(idx).and_then(Option::take)?;
        // A driver that panics takes down only its own participant: the room, and every other
        // participant in it, carry on.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let r = f(p.driver.as_mut());
            let mut out = Fanout {
                now,
                me: idx,
                kind: p.kind,
                tracks: &p.tracks,
                others: &mut self.slab,
                net: &mut *net,
                stats: &mut self.stats,
                deferred: &mut self.deferred,
                earliest: &mut self.earliest,
            };
            let next = p.driver.poll(now, &mut out);
            (r, next)
        }));
        match outcome {
            Ok((r, next)) => {
                p.next_timeout = next;
                self.earliest = self.earliest.min(next);
                self.slab[idx] = Some(p);
                self.handle_deferred(now, net);
                Some(r)
            }
            Err(payload) => {
                let why = panic_message(payload.as_ref());
                tracing::error!(room = %self.id, participant = %p.id, why, "driver panicked; participant removed");
                self.forget(now, p, LeaveReason::TransportFailed, net);
                self.handle_deferred(now, net);
                None
            }
        }
    }

    fn handle_deferred(&mut self, now: Instant, net: &mut dyn Network) {
        while let Some((idx, event)) = self.deferred.pop_front() {
            let Some(Some(p)) = self.slab.get_mut(idx) else {
                continue;
            };
            let id = p.id;
            match event {
                DriverEvent::Connected => {
                    if p.state != ParticipantState::Closed {
                        p.state = ParticipantState::Connected;
                    }
                }
                DriverEvent::Disconnected { .. } if p.internal => {
                    // The mixer broke inside a fan-out: drop it; the re-route builds a new one.
                    if let Some(m) = self.slab[idx].take() {
                        self.forget(now, m, LeaveReason::TransportFailed, net);
                    }
                }
                DriverEvent::Disconnected { .. } if p.state != ParticipantState::Closed => {
                    self.leave(now, id, LeaveReason::TransportFailed, net);
                }
                DriverEvent::Disconnected { .. } => {}
                DriverEvent::KeyframeRequest { slot, kind } => {
                    self.stats.keyframe_requests += 1;
                    // What the slot receives: the publisher's track when forwarded, the MCU's
                    // output (whose encoder makes the keyframe) for a composite or a transcode.
                    let source = p.slots.iter().find(|s| s.info.key == slot).and_then(|s| s.wired.or(s.source));
                    if let Some(track) = source {
                        self.request_keyframe(now, track, kind, net);
                    }
                }
                DriverEvent::Dtmf { digit, duration_ms } => {
                    self.stats.dtmf_events += 1;
                    self.events.push(RoomEvent::Dtmf { participant_id: id, digit, duration_ms });
                    self.relay_dtmf(now, idx, digit, duration_ms, net);
                }
                DriverEvent::Dropped { reason } => {
                    self.stats.drop(reason);
                    // A wrong payload type or an unrouted track still came from the peer.
                    let not_the_peer = matches!(
                        reason,
                        DropReason::Malformed | DropReason::UnknownSource | DropReason::SrtpAuth | DropReason::Replay
                    );
                    if let Some((at, drops)) = &mut self.receiving {
                        *drops += u32::from(*at == idx && not_the_peer);
                    }
                }
                DriverEvent::ActiveSpeakers { slots } => self.speakers_changed(now, idx, &slots, net),
                DriverEvent::ReceiverLoss { slot, fraction } => {
                    // Only a mix or transcode can do something about it (Opus FEC); a forwarded
                    // stream's sender hears of loss from its own receivers' reports.
                    let wired = p.slots.iter().find(|s| s.info.key == slot).and_then(|s| s.wired);
                    let output = wired.and_then(|t| self.track_owner.get(&t)).filter(|(o, _)| Some(*o) == self.mixer);
                    if let Some(&(mixer, track)) = output {
                        if let Some(ctl) = self.slab[mixer].as_mut().and_then(|m| m.driver.as_mixer()) {
                            ctl.receiver_loss(now, track, fraction);
                        }
                    }
                }
            }
        }
    }

    /// Digits go on to every other participant that negotiated telephone-event, regenerated as
    /// fresh RFC 4733 events by its own driver.
    fn relay_dtmf(&mut self, now: Instant, from: usize, digit: char, duration_ms: u32, net: &mut dyn Network) {
        let mut buf = [0u8; 4];
        let digits: &str = digit.encode_utf8(&mut buf);
        for idx in 0..self.slab.len() {
            let wants = idx != from
                && matches!(&self.slab[idx], Some(p) if p.slots.iter().any(|s| s.info.active && s.info.telephone_event.is_some()));
            if wants {
                // A leg that cannot take the digit only misses it; the room carries on.
                let _ = self.with_driver(idx, now, net, |d| d.send_dtmf(now, digits, duration_ms));
            }
        }
    }

    fn request_keyframe(&mut self, now: Instant, track: TrackId, kind: KeyframeKind, net: &mut dyn Network) {
        if let Some(&(owner, key)) = self.track_owner.get(&track) {
            self.with_driver(owner, now, net, |d| d.request_keyframe(key, kind));
        }
    }

    /// Brings the participant's tracks and slots in line with what its driver negotiated.
    fn sync_negotiated(&mut self, idx: usize) {
        let Some(Some(p)) = self.slab.get_mut(idx) else {
            return;
        };
        let neg = p.driver.negotiated().clone();
        let pid = p.id;
        let internal = p.internal;
        let mut events = Vec::new();
        p.tracks.retain(|t| {
            let keep = neg.tracks.iter().any(|n| n.key == t.key && n.kind == t.kind);
            if !keep {
                self.track_owner.remove(&t.id);
                events.push(RoomEvent::TrackUnpublished { participant_id: pid, track_id: t.id });
            }
            keep
        });
        for n in &neg.tracks {
            match p.tracks.iter_mut().find(|t| t.key == n.key) {
                Some(t) => {
                    t.codec = n.codec.codec;
                    t.spec = n.codec.clone();
                }
                None => {
                    let id = TrackId(NEXT_TRACK.fetch_add(1, Ordering::Relaxed));
                    self.track_owner.insert(id, (idx, n.key));
                    events.push(RoomEvent::TrackPublished {
                        participant_id: pid,
                        track_id: id,
                        kind: n.kind,
                        codec: n.codec.codec,
                    });
                    p.tracks.push(PublishedTrack {
                        key: n.key,
                        id,
                        kind: n.kind,
                        codec: n.codec.codec,
                        spec: n.codec.clone(),
                        label: n.label.clone(),
                        fanout: Vec::new(),
                    });
                }
            }
        }
        // Sorted by key: the packet path finds a track by binary search (a mixer publishes one
        // output per listener).
        p.tracks.sort_by_key(|t| t.key);
        p.slots.retain(|s| neg.slots.iter().any(|n| n.key == s.info.key));
        for n in &neg.slots {
            match p.slots.iter_mut().find(|s| s.info.key == n.key) {
                Some(s) => {
                    if s.info.active && !n.active {
                        s.forwarder.pause();
                    }
                    s.info = n.clone();
                }
                None => {
                    let rate = n.codecs.first().map(|c| c.clock_rate).unwrap_or(90_000);
                    p.slots.push(Slot {
                        info: n.clone(),
                        route: None,
                        source: None,
                        codec: None,
                        wired: None,
                        forwarder: Forwarder::new(rate),
                    });
                }
            }
        }
        if !internal {
            self.events.extend(events);
        }
    }

    /// Re-runs the RoutingPolicy for every subscriber, sets the mixer to what the routes need,
    /// reports what changed and rebuilds the fan-out lists the packet path reads.
    fn reroute(&mut self, now: Instant, net: &mut dyn Network) {
        let mut tracks: Vec<PolicyTrack> = Vec::new();
        let mut sources: Vec<Source> = Vec::new();
        for p in self.slab.iter().flatten().filter(|p| !p.internal) {
            for t in &p.tracks {
                tracks.push(PolicyTrack { id: t.id, publisher: p.id, kind: t.kind, codec: t.codec });
                sources.push(Source { track: t.id, publisher: p.id, codec: t.spec.clone() });
            }
        }
        tracks.sort_by_key(|t| t.id);
        sources.sort_by_key(|s| s.track);
        let mut decided = Vec::new();
        let mut demands = Vec::new();
        for (idx, p) in self.slab.iter().enumerate() {
            let Some(p) = p.as_ref().filter(|p| !p.internal) else { continue };
            let sub = PolicySubscriber {
                id: p.id,
                kind: p.kind,
                audio: p.audio,
                video: p.video,
                slots: p
                    .slots
                    .iter()
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
            for a in &assignments {
                let Some(slot) = p.slots.iter().find(|s| s.info.key == a.slot) else { continue };
                let needs_mcu = matches!(a.route, Route::Mix | Route::Transcode | Route::Composite);
                if let (true, Some(codec)) = (needs_mcu, slot.info.codecs.iter().find(|c| c.codec == a.codec)) {
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
        let mixed_tracks = self.apply_mix_plan(now, &plan);
        let mut keyframes = Vec::new();
        for (idx, assignments) in decided {
            let Some(p) = self.slab[idx].as_mut() else { continue };
            for slot in &mut p.slots {
                let a = assignments.iter().find(|a| a.slot == slot.info.key);
                let (route, source, codec) = (a.map(|a| a.route), a.and_then(|a| a.track), a.map(|a| a.codec));
                slot.wired = match route {
                    Some(Route::Forward) => source,
                    Some(Route::Mix | Route::Transcode | Route::Composite) => self
                        .mix_keys
                        .output(p.id, slot.info.key)
                        .and_then(|k| mixed_tracks.iter().find(|(key, _)| *key == k))
                        .map(|(_, id)| *id),
                    _ => None,
                };
                if (route, source, codec) == (slot.route, slot.source, slot.codec) {
                    continue;
                }
                if slot.route.is_some() {
                    self.stats.route_switches += 1;
                }
                if let Some(c) = codec {
                    slot.forwarder.set_clock_rate(c.clock_rate());
                }
                if slot.info.kind == MediaKind::Video {
                    // The picture starts on a keyframe: from the publisher of a forwarded track,
                    // from the MCU's encoder (`wired`) for a composite or a transcode.
                    let from = if route == Some(Route::Forward) { source } else { slot.wired };
                    if from.is_some() && (route, source) != (slot.route, slot.source) {
                        keyframes.push(from);
                    }
                }
                if route == Some(Route::Transcode) && slot.route != Some(Route::Transcode) {
                    if let (Some(from), Some(to)) = (tracks.iter().find(|t| Some(t.id) == source), codec) {
                        self.stats.transcodes.push((from.codec, to));
                    }
                }
                slot.route = route;
                slot.source = source;
                slot.codec = codec;
                self.events.push(RoomEvent::RouteChanged {
                    participant_id: p.id,
                    slot: slot.info.label.clone(),
                    route,
                    track_id: source,
                    publisher_id: source.and_then(|t| tracks.iter().find(|x| x.id == t)).map(|t| t.publisher),
                    codec,
                });
            }
        }
        self.rebuild_fanout();
        for track in keyframes.into_iter().flatten() {
            self.request_keyframe(now, track, KeyframeKind::Pli, net);
        }
    }

    /// Creates, reconfigures or removes the mixer for `plan`. Returns its output tracks.
    fn apply_mix_plan(&mut self, now: Instant, plan: &switchboard_driver::MixPlan) -> Vec<(TrackKey, TrackId)> {
        if plan.outputs.is_empty() {
            if let Some(mut p) = self.mixer.take().and_then(|i| self.slab[i].take()) {
                if let Some(ctl) = p.driver.as_mixer() {
                    self.stats.mixer.absorb(ctl.take_stats());
                }
                for t in &p.tracks {
                    self.track_owner.remove(&t.id);
                }
                // Speakers come from the mixer; without it the old order would linger.
                self.speakers.clear();
            }
            return Vec::new();
        }
        let idx = match self.mixer {
            Some(i) => i,
            None => {
                let Some(factory) = self.cfg.mixer.factory.clone() else {
                    return Vec::new();
                };
                let p = Participant {
                    id: ParticipantId(0),
                    kind: ParticipantKind::Rtp,
                    display_name: None,
                    audio: AudioPreference::Auto,
                    video: VideoPreference::Auto,
                    state: ParticipantState::Connected,
                    internal: true,
                    driver: factory(now),
                    tracks: Vec::new(),
                    slots: Vec::new(),
                    last_received: now,
                    next_timeout: now,
                    mixer_paced: false,
                };
                let i = self.place(p);
                self.mixer = Some(i);
                i
            }
        };
        if let Some(p) = self.slab[idx].as_mut() {
            if let Some(ctl) = p.driver.as_mixer() {
                ctl.configure(now, plan);
            }
            p.next_timeout = now;
            self.earliest = now;
        }
        self.sync_negotiated(idx);
        let keys = &self.mix_keys;
        let Some(p) = self.slab[idx].as_mut() else { return Vec::new() };
        for slot in &mut p.slots {
            slot.wired = keys.input_track(slot.info.key);
            slot.source = slot.wired;
            slot.route = Some(Route::Forward);
        }
        p.tracks.iter().map(|t| (t.key, t.id)).collect()
    }

    /// The mixer's loudest inputs changed: they become the room's active speakers.
    fn speakers_changed(
        &mut self,
        now: Instant,
        mixer: usize,
        slots: &[switchboard_driver::SlotKey],
        net: &mut dyn Network,
    ) {
        let Some(Some(m)) = self.slab.get(mixer) else { return };
        let speakers: Vec<ParticipantId> = slots
            .iter()
            .filter_map(|k| m.slots.iter().find(|s| s.info.key == *k).and_then(|s| s.wired))
            .filter_map(|t| self.track_owner.get(&t))
            .filter_map(|(owner, _)| self.slab.get(*owner).and_then(|p| p.as_ref()).map(|p| p.id))
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

    fn rebuild_fanout(&mut self) {
        let mut wires = Vec::new();
        for (idx, p) in self.slab.iter().enumerate() {
            for (index, s) in p.iter().flat_map(|p| p.slots.iter().enumerate()) {
                if let Some(track) = s.wired.filter(|_| s.info.active) {
                    let codec = self
                        .track_owner
                        .get(&track)
                        .and_then(|&(owner, key)| self.slab[owner].as_ref()?.track_by_key(key))
                        .map(|t| t.codec);
                    let pt = codec.and_then(|c| s.info.pt_for(c));
                    wires.push((track, SlotRef { participant: idx, slot: s.info.key, index, pt }));
                }
            }
        }
        for p in self.slab.iter_mut().flatten() {
            for t in &mut p.tracks {
                t.fanout.clear();
            }
        }
        for (track, slot_ref) in wires {
            if let Some(&(owner, key)) = self.track_owner.get(&track) {
                if let Some(t) = self.slab[owner].as_mut().and_then(|p| p.track_by_key_mut(key)) {
                    t.fanout.push(slot_ref);
                }
            }
        }
        let mixer = self.mixer;
        let mut changed = false;
        for p in self.slab.iter_mut().flatten() {
            let mut wires = p.tracks.iter().flat_map(|t| &t.fanout).peekable();
            let paced =
                mixer.is_some() && !p.internal && wires.peek().is_some() && wires.all(|w| Some(w.participant) == mixer);
            changed |= paced != p.mixer_paced;
            p.mixer_paced = paced;
        }
        if changed {
            self.pacing_epoch += 1;
        }
    }
}

/// What a caught panic said, for the log and for the error that reports it.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s,
        (_, Some(s)) => s,
        _ => "no message",
    }
}
