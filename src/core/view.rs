//! The API's picture of rooms and participants. Field names are the HTTP contract.

use super::participant::{Participant, ParticipantState};
use super::routing::Route;
use serde::Serialize;
use switchboard_driver::{Codec, MediaKind, ParticipantId, ParticipantKind, RoomId, TrackId};

#[derive(Debug, Clone, Serialize)]
pub struct RoomView {
    pub id: RoomId,
    pub max_participants: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<ParticipantView>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParticipantView {
    pub id: ParticipantId,
    pub room_id: RoomId,
    pub kind: ParticipantKind,
    pub display_name: Option<String>,
    pub state: ParticipantState,
    pub tracks: Vec<TrackView>,
    pub subscriptions: Vec<SubscriptionView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackView {
    pub id: TrackId,
    pub kind: MediaKind,
    pub codec: Codec,
    /// The mid or m-line index the track arrives on.
    pub mid: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionView {
    pub slot: String,
    pub kind: MediaKind,
    pub track_id: Option<TrackId>,
    pub publisher_id: Option<ParticipantId>,
    pub route: Option<Route>,
    pub codec: Option<Codec>,
    /// The slot's outbound SSRC, as declared in the answer.
    pub ssrc: u32,
}

impl ParticipantView {
    /// `publisher` names who publishes a track the participant receives.
    pub(super) fn of(
        room: &RoomId,
        p: &Participant,
        publisher: impl Fn(TrackId) -> Option<ParticipantId>,
    ) -> ParticipantView {
        ParticipantView {
            id: p.id,
            room_id: room.clone(),
            kind: p.kind,
            display_name: p.display_name.clone(),
            state: p.state,
            tracks: p
                .tracks
                .iter()
                .map(|t| TrackView { id: t.id, kind: t.kind, codec: t.codec, mid: t.label.clone() })
                .collect(),
            subscriptions: p
                .slots
                .iter()
                .map(|s| SubscriptionView {
                    slot: s.info.label.clone(),
                    kind: s.info.kind,
                    track_id: s.source,
                    publisher_id: s.source.and_then(&publisher),
                    route: s.route,
                    codec: s.codec,
                    ssrc: s.info.ssrc.0,
                })
                .collect(),
        }
    }
}
