//! A participant as the room holds it: its driver, what it publishes and how its slots are served.

use super::forwarder::Forwarder;
use super::routing::{AudioPreference, Route, VideoPreference};
use serde::Serialize;
use std::time::Instant;
use switchboard_driver::{
    Codec, CodecSpec, Driver, MediaKind, ParticipantId, ParticipantKind, Pt, SlotInfo, SlotKey, TrackId, TrackKey,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParticipantState {
    New,
    Connecting,
    Connected,
    Closed,
}

/// Who publishes or receives media in a room: a participant (by its place in the room's slab),
/// or the room's MCU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Participant(usize),
    Mcu,
}

/// A receiving slot this room forwards into: a participant's slot, or one of the MCU's inputs.
/// `SlotRef` in a fan-out list points at one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRef {
    pub to: Endpoint,
    pub slot: SlotKey,
    /// Where the slot was in its owner's slot list when the fan-out was built: the MCU has a
    /// slot per input, and a search per packet would grow with the room.
    pub index: usize,
    /// The subscriber's payload type for the track's codec, resolved when the fan-out was built:
    /// looking it up per packet cost a cache miss per subscriber (the slot's codec list).
    pub pt: Option<Pt>,
}

/// Which way a participant's media may flow, from its token's grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MediaGrants {
    /// Without it, nothing the participant sends is routed to anyone.
    pub publish: bool,
    /// Without it, the participant's slots are served nothing.
    pub subscribe: bool,
}

impl Default for MediaGrants {
    fn default() -> Self {
        MediaGrants { publish: true, subscribe: true }
    }
}

pub struct PublishedTrack {
    pub key: TrackKey,
    pub id: TrackId,
    pub kind: MediaKind,
    pub codec: Codec,
    /// The codec as the publisher negotiated it, for the mixer's input caps.
    pub spec: CodecSpec,
    pub label: String,
    /// Muted by an admin: the track stays published but is routed to no one.
    pub muted: bool,
    /// Where each packet of this track goes. Rebuilt from the routes; read on every packet.
    pub fanout: Vec<SlotRef>,
}

pub struct Slot {
    pub info: SlotInfo,
    pub route: Option<Route>,
    /// The track the slot serves, as reported: the forwarded or transcoded track.
    pub source: Option<TrackId>,
    pub codec: Option<Codec>,
    /// The track actually fanned into the slot: `source` when forwarding, a mixer output otherwise.
    pub wired: Option<TrackId>,
    pub forwarder: Forwarder,
}

pub struct Participant {
    pub id: ParticipantId,
    pub kind: ParticipantKind,
    pub display_name: Option<String>,
    /// The token identity it joined with (`sub`); the API lets that identity act on it.
    pub identity: Option<String>,
    pub media: MediaGrants,
    pub audio: AudioPreference,
    pub video: VideoPreference,
    pub state: ParticipantState,
    pub driver: Box<dyn Driver>,
    /// Every call into the driver runs inside it, so whatever the driver logs names its room
    /// and participant. Made once at join: entering an existing span allocates nothing.
    pub span: tracing::Span,
    pub tracks: Vec<PublishedTrack>,
    pub slots: Vec<Slot>,
    pub last_received: Instant,
    /// Every datagram that arrived for the participant, taken or not: what its peer sent, as
    /// the ng protocol's `query` reports it.
    pub received: super::stats::Flow,
    pub next_timeout: Instant,
    /// See [`super::Room::is_mixer_paced`]; kept by `rebuild_fanout`.
    pub mixer_paced: bool,
}

impl Slot {
    pub fn new(info: SlotInfo) -> Slot {
        let rate = info.codecs.first().map(|c| c.clock_rate).unwrap_or(90_000);
        Slot { info, route: None, source: None, codec: None, wired: None, forwarder: Forwarder::new(rate) }
    }
}

/// Finds the slot `r` points at in `slots`, and the payload type to send there for `codec`.
/// The slot is where it was when the fan-out was built, unless the slots changed since.
pub fn resolve_slot(slots: &[Slot], r: &SlotRef, codec: Codec) -> (Option<usize>, Option<Pt>) {
    match slots.get(r.index) {
        Some(s) if s.info.key == r.slot => (Some(r.index), r.pt),
        _ => {
            let at = slots.iter().position(|s| s.info.key == r.slot);
            (at, at.and_then(|i| slots[i].info.pt_for(codec)))
        }
    }
}

impl Participant {
    pub fn slot_mut(&mut self, key: SlotKey) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.info.key == key)
    }

    /// `tracks` is kept sorted by key (`Room::sync_negotiated`).
    pub fn track_by_key(&self, key: TrackKey) -> Option<&PublishedTrack> {
        self.tracks.binary_search_by_key(&key, |t| t.key).ok().map(|i| &self.tracks[i])
    }

    pub fn track_by_key_mut(&mut self, key: TrackKey) -> Option<&mut PublishedTrack> {
        self.tracks.binary_search_by_key(&key, |t| t.key).ok().map(|i| &mut self.tracks[i])
    }

    pub fn track(&self, id: TrackId) -> Option<&PublishedTrack> {
        self.tracks.iter().find(|t| t.id == id)
    }
}
