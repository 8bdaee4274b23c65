//! What a room tells the outside world. Each becomes one SSE event; the names are the API contract.

use super::routing::Route;
use serde::Serialize;
use switchboard_driver::{Codec, MediaKind, ParticipantId, ParticipantKind, TrackId};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RoomEvent {
    ParticipantJoined {
        participant_id: ParticipantId,
        kind: ParticipantKind,
        display_name: Option<String>,
        identity: Option<String>,
    },
    ParticipantLeft {
        participant_id: ParticipantId,
        reason: LeaveReason,
    },
    TrackPublished {
        participant_id: ParticipantId,
        track_id: TrackId,
        kind: MediaKind,
        codec: Codec,
    },
    TrackUnpublished {
        participant_id: ParticipantId,
        track_id: TrackId,
    },
    TrackMuted {
        participant_id: ParticipantId,
        track_id: TrackId,
    },
    TrackUnmuted {
        participant_id: ParticipantId,
        track_id: TrackId,
    },
    RouteChanged {
        participant_id: ParticipantId,
        slot: String,
        route: Option<Route>,
        track_id: Option<TrackId>,
        publisher_id: Option<ParticipantId>,
        codec: Option<Codec>,
    },
    Dtmf {
        participant_id: ParticipantId,
        digit: char,
        duration_ms: u32,
    },
    ActiveSpeaker {
        participant_id: ParticipantId,
    },
}

impl RoomEvent {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            RoomEvent::ParticipantJoined { .. } => "participant_joined",
            RoomEvent::ParticipantLeft { .. } => "participant_left",
            RoomEvent::TrackPublished { .. } => "track_published",
            RoomEvent::TrackUnpublished { .. } => "track_unpublished",
            RoomEvent::TrackMuted { .. } => "track_muted",
            RoomEvent::TrackUnmuted { .. } => "track_unmuted",
            RoomEvent::RouteChanged { .. } => "route_changed",
            RoomEvent::Dtmf { .. } => "dtmf",
            RoomEvent::ActiveSpeaker { .. } => "active_speaker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// `DELETE` on the participant or its room.
    Requested,
    /// No packet within the inactivity timeout.
    Inactive,
    /// ICE or DTLS failed, or the peer closed.
    TransportFailed,
    /// The daemon is shutting down.
    Shutdown,
}
