//! A room: the single owner of its participants, its MCU, their tracks and the routing table.
//! This file is the room's surface: who joins and leaves, what arrives, what is reported.
//!
//! Sans-IO: every call takes `now` and a [`Network`] to send through. The runtime calls
//! `handle_receive` per datagram and `handle_timeout` when `poll_timeout` says so, and drains
//! `take_events` / `take_closed` after each call.

mod drive;
mod kernel;
mod tracks;

pub use kernel::KernelPath;
mod wiring;

use super::events::{LeaveReason, RoomEvent};
use super::fanout::Network;
use super::mcu::RoomMcu;
use super::mixing::{MixKeys, MixerSettings};
use super::participant::{Endpoint, MediaGrants, Participant, ParticipantState};
use super::routing::{AudioPreference, VideoPreference};
use super::stats::{RoomGauges, RoomStats};
use super::view::{ParticipantView, RoomView};
use drive::panic_message;
use rustc_hash::FxHashMap;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_driver::{
    Driver, DriverEvent, MixerStats, NegotiationError, ParticipantId, ParticipantKind, RoomId, SdpInput, TrackId,
    TrackKey, WriteError,
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
    #[error("the participant publishes no such track")]
    TrackNotFound,
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
    pub identity: Option<String>,
    pub media: MediaGrants,
    pub audio: AudioPreference,
    pub video: VideoPreference,
    pub driver: Box<dyn Driver>,
}

pub struct Room {
    id: RoomId,
    cfg: RoomConfig,
    slab: Vec<Option<Participant>>,
    /// Participant ids are random numbers the bridge draws, so no sender can aim at collisions.
    index: FxHashMap<ParticipantId, usize>,
    /// Who publishes a track, for keyframe requests and routing.
    track_owner: HashMap<TrackId, (Endpoint, TrackKey)>,
    /// The last track id handed out.
    next_track: u64,
    awaiting_answer: HashMap<ParticipantId, bool>,
    speakers: Vec<ParticipantId>,
    events: Vec<RoomEvent>,
    closed: Vec<ParticipantId>,
    deferred: VecDeque<(Endpoint, DriverEvent)>,
    stats: RoomStats,
    earliest: Instant,
    empty_since: Option<Instant>,
    /// The room's MCU, while some route needs one.
    mcu: Option<RoomMcu>,
    mix_keys: MixKeys,
    /// The MCU's gauges (mixes, encoders, decoders...) as of the last `take_stats`.
    mcu_gauges: MixerStats,
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
            next_track: 0,
            awaiting_answer: HashMap::new(),
            speakers: Vec::new(),
            events: Vec::new(),
            closed: Vec::new(),
            deferred: VecDeque::new(),
            stats: RoomStats::default(),
            earliest: now + cfg.empty_timeout,
            empty_since: Some(now),
            mcu: None,
            mix_keys: MixKeys::default(),
            mcu_gauges: MixerStats::default(),
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
        let Joining { id, kind, display_name, identity, media, audio, video, mut driver } = joining;
        let span = tracing::info_span!("participant", room = %self.id, participant = %id, kind = kind.as_str());
        // Parsing untrusted SDP must not take the media thread down with it.
        let entered = span.enter();
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
            tracing::warn!(why, "driver panicked on the SDP of a join");
            NegotiationError::BadSdp(format!("the SDP could not be processed ({why})"))
        })??;
        drop(entered);
        let p = Participant {
            id,
            kind,
            display_name: display_name.clone(),
            identity: identity.clone(),
            media,
            audio,
            video,
            state: ParticipantState::Connecting,
            driver,
            span,
            tracks: Vec::new(),
            slots: Vec::new(),
            last_received: now,
            received: Default::default(),
            next_timeout: now,
            mixer_paced: false,
        };
        let idx = self.place(p);
        self.index.insert(id, idx);
        self.awaiting_answer.insert(id, awaiting);
        self.empty_since = None;
        self.events.push(RoomEvent::ParticipantJoined { participant_id: id, kind, display_name, identity });
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

    /// Does this shared-socket datagram belong to participant `id`? One driver's answer: the
    /// runtime finds the candidate by the ICE ufrag the datagram names.
    pub fn accepts(&self, id: ParticipantId, src: SocketAddr, dst: SocketAddr, data: &[u8]) -> bool {
        let p = self.slot_of(id).and_then(|i| self.slab.get(i)).and_then(Option::as_ref);
        p.is_some_and(|p| p.driver.accepts(src, dst, data))
    }

    /// The local ICE ufrag of participant `id`, for a driver on the shared socket.
    pub fn ice_ufrag(&self, id: ParticipantId) -> Option<String> {
        self.slab.get(self.slot_of(id)?)?.as_ref()?.driver.ice_ufrag()
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
            p.received.add(data.len());
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

    /// When the room's mixer is due to run its next 20 ms tick, while it has mixes to make: the
    /// runtime compares it with when it really calls `handle_timeout` (tick lateness).
    pub fn mixer_tick_due(&self) -> Option<Instant> {
        self.mcu.as_ref().filter(|m| !m.outputs.is_empty()).map(|m| m.next_timeout)
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
        if self.mcu.as_ref().is_some_and(|m| m.next_timeout <= now) {
            self.with_mcu(now, net, |m| m.handle_timeout(now));
        }
        let inactive: Vec<ParticipantId> = self
            .slab
            .iter()
            .flatten()
            .filter(|p| now.saturating_duration_since(p.last_received) >= self.cfg.inactivity_timeout)
            .map(|p| p.id)
            .collect();
        for id in inactive {
            self.leave(now, id, LeaveReason::Inactive, net);
        }
        let mut earliest = self.empty_since.map(|t| t + self.cfg.empty_timeout).unwrap_or(now + Duration::from_secs(1));
        for p in self.slab.iter().flatten() {
            earliest = earliest.min(p.next_timeout).min(p.last_received + self.cfg.inactivity_timeout);
        }
        if let Some(m) = &self.mcu {
            earliest = earliest.min(m.next_timeout);
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
        if let Some(m) = &mut self.mcu {
            // Added to, not replaced: an MCU removed since the last take left its counts.
            self.stats.mixer.absorb(m.mcu.take_stats());
        }
        // Gauges outlive the counters they arrive with.
        self.mcu_gauges = if self.mcu.is_some() { self.stats.mixer } else { MixerStats::default() };
        std::mem::take(&mut self.stats)
    }

    pub fn gauges(&self) -> RoomGauges {
        let m = &self.mcu_gauges;
        let mut g = RoomGauges {
            mixers: self.mcu.is_some() as u64,
            mixes: m.mixes,
            encoders: m.encoders,
            decoders: m.decoders,
            jitter_target_ms: m.jitter_target_ms,
            fec_encoders: m.fec_encoders,
            video_encoders: m.video_encoders,
            ..RoomGauges::default()
        };
        for p in self.slab.iter().flatten() {
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
        let mut participants: Vec<ParticipantView> =
            self.slab.iter().flatten().map(|p| ParticipantView::of(&self.id, p, |t| self.publisher_of(t))).collect();
        participants.sort_by_key(|p| p.id);
        RoomView { id: self.id.clone(), max_participants: self.cfg.max_participants, participants: Some(participants) }
    }

    pub fn participant_view(&self, id: ParticipantId) -> Option<ParticipantView> {
        let p = self.slab.get(self.slot_of(id)?)?.as_ref()?;
        Some(ParticipantView::of(&self.id, p, |t| self.publisher_of(t)))
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

    /// The room's own track ids: unique within the room, which is all an event or a view names.
    fn next_track(&mut self) -> TrackId {
        self.next_track += 1;
        TrackId(self.next_track)
    }
}
