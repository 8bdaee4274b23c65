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
    pub identity: Option<String>,
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub state: ParticipantState,
    pub tracks: Vec<TrackView>,
    pub subscriptions: Vec<SubscriptionView>,
    /// Datagrams and bytes that arrived from the participant's side (RTP, RTCP, STUN, DTLS).
    pub received: ReceivedView,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReceivedView {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackView {
    pub id: TrackId,
    pub kind: MediaKind,
    pub codec: Codec,
    /// The mid or m-line index the track arrives on.
    pub mid: String,
    pub muted: bool,
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

impl TrackView {
    pub(super) fn of(t: &super::participant::PublishedTrack) -> TrackView {
        TrackView { id: t.id, kind: t.kind, codec: t.codec, mid: t.label.clone(), muted: t.muted }
    }
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
            identity: p.identity.clone(),
            can_publish: p.media.publish,
            can_subscribe: p.media.subscribe,
            state: p.state,
            tracks: p.tracks.iter().map(TrackView::of).collect(),
            received: ReceivedView { packets: p.received.packets, bytes: p.received.bytes },
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
