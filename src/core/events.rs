//! What a room tells the outside world. Each becomes one SSE event and, for the receivers that
//! want it, one webhook POST; the names are the API contract.

use super::routing::Route;
use serde::Serialize;
use switchboard_driver::{Codec, MediaKind, ParticipantId, ParticipantKind, TrackId};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RoomEvent {
    /// The worker made the room: by `POST /v1/rooms`, or by the first join (only once that join
    /// succeeded). Always the room's first event; no SSE listener can see it, webhooks do.
    RoomStarted {
        max_participants: usize,
    },
    /// The worker removed the room, or the daemon is stopping. Always the room's last event: its
    /// SSE streams end after it.
    RoomFinished {
        reason: FinishReason,
    },
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
    /// The node that held the room stopped answering (a cluster, `src/cluster/`), and another
    /// node released the room. Sent by that other node, with the participants the lost node
    /// last reported; the next join re-creates the room.
    RoomLost {
        node: String,
        participants: serde_json::Value,
    },
    /// An egress (a recording, `src/egress/`) joined the room and writes what it is sent.
    EgressStarted {
        egress_id: String,
        kind: String,
        participant_id: ParticipantId,
    },
    /// An egress's outputs changed: a stream arrived and its file was started.
    EgressUpdated {
        egress_id: String,
        state: String,
        files: Vec<String>,
    },
    /// An egress stopped and its files are finalised (`reason`: `requested`, `room_finished`,
    /// `participant_left`, `shutdown`).
    EgressEnded {
        egress_id: String,
        reason: String,
        files: Vec<String>,
    },
    /// An egress failed (its pipeline, its join or its directory); what it wrote stays.
    EgressFailed {
        egress_id: String,
        reason: String,
    },
}

impl RoomEvent {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            RoomEvent::RoomStarted { .. } => "room_started",
            RoomEvent::RoomFinished { .. } => "room_finished",
            RoomEvent::ParticipantJoined { .. } => "participant_joined",
            RoomEvent::ParticipantLeft { .. } => "participant_left",
            RoomEvent::TrackPublished { .. } => "track_published",
            RoomEvent::TrackUnpublished { .. } => "track_unpublished",
            RoomEvent::TrackMuted { .. } => "track_muted",
            RoomEvent::TrackUnmuted { .. } => "track_unmuted",
            RoomEvent::RouteChanged { .. } => "route_changed",
            RoomEvent::Dtmf { .. } => "dtmf",
            RoomEvent::ActiveSpeaker { .. } => "active_speaker",
            RoomEvent::RoomLost { .. } => "room_lost",
            RoomEvent::EgressStarted { .. } => "egress_started",
            RoomEvent::EgressUpdated { .. } => "egress_updated",
            RoomEvent::EgressEnded { .. } => "egress_ended",
            RoomEvent::EgressFailed { .. } => "egress_failed",
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
    /// The bridge failed around the participant (a bug outside any participant's own code took
    /// down the thread that carried it), not the participant itself.
    InternalError,
}

/// Why a room ended (`room_finished`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// `DELETE /v1/rooms/{room}`.
    Requested,
    /// Empty for `rooms.empty_timeout_secs`.
    Empty,
    /// The daemon is shutting down.
    Shutdown,
    /// The bridge failed around the room (see `LeaveReason::InternalError`).
    InternalError,
}
