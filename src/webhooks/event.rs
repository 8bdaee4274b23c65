//! What a webhook carries: which room events, and the exact body of each POST.

use crate::core::RoomEvent;
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_driver::RoomId;

/// One room event on its way to the receivers. The media thread makes it (a clone of the event
/// and a clock read); the body is written on the delivery task, so serializing costs that
/// thread nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct HookEvent {
    pub room: RoomId,
    pub event: RoomEvent,
    /// The same for every receiver and every attempt, so a receiver can drop a repeat.
    pub id: u64,
    pub created_at: SystemTime,
}

#[derive(Serialize)]
struct Body<'a> {
    event: &'static str,
    room: &'a str,
    id: String,
    created_at: f64,
    /// The event's fields, as on the room's SSE stream.
    #[serde(flatten)]
    fields: &'a RoomEvent,
}

impl HookEvent {
    pub fn new(room: RoomId, event: RoomEvent, now: SystemTime) -> HookEvent {
        HookEvent { room, event, id: rand::random(), created_at: now }
    }

    pub fn name(&self) -> &'static str {
        self.event.name()
    }

    /// The id as the body spells it.
    pub fn id_text(&self) -> String {
        format!("ev_{:016x}", self.id)
    }

    /// The POST body: `{"event", "room", "id", "created_at", ...the event's fields}`.
    pub fn body(&self) -> Vec<u8> {
        let created_at = self.created_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let body = Body {
            event: self.event.name(),
            room: self.room.as_str(),
            id: self.id_text(),
            created_at: (created_at * 1000.0).round() / 1000.0,
            fields: &self.event,
        };
        // Plain data with string keys and finite numbers: serializing it cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// Whether a receiver gets this event. Webhooks carry the room's life and its members'; the
/// routing decisions (`route_changed`, `active_speaker`) change many times a second in a busy
/// room and stay on SSE. Digits only go where `dtmf = true`: they can be PINs.
pub fn wanted(ev: &RoomEvent, dtmf: bool) -> bool {
    match ev {
        RoomEvent::RoomStarted { .. }
        | RoomEvent::RoomFinished { .. }
        | RoomEvent::ParticipantJoined { .. }
        | RoomEvent::ParticipantLeft { .. }
        | RoomEvent::TrackPublished { .. }
        | RoomEvent::TrackUnpublished { .. }
        | RoomEvent::TrackMuted { .. }
        | RoomEvent::TrackUnmuted { .. }
        | RoomEvent::RoomLost { .. }
        | RoomEvent::EgressStarted { .. }
        | RoomEvent::EgressUpdated { .. }
        | RoomEvent::EgressEnded { .. }
        | RoomEvent::EgressFailed { .. } => true,
        RoomEvent::Dtmf { .. } => dtmf,
        RoomEvent::RouteChanged { .. } | RoomEvent::ActiveSpeaker { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::events::LeaveReason;
    use serde_json::{json, Value};
    use std::time::Duration;
    use switchboard_driver::{ParticipantId, ParticipantKind};

    fn at(secs: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(secs)
    }

    #[test]
    fn the_body_is_the_envelope_and_the_events_fields() {
        let ev = RoomEvent::ParticipantJoined {
            participant_id: ParticipantId(0x7d31),
            kind: ParticipantKind::Rtp,
            display_name: Some("desk".into()),
            identity: Some("alice".into()),
        };
        let h =
            HookEvent { id: 0xabc, ..HookEvent::new(RoomId::new("demo").unwrap(), ev.clone(), at(1_800_000_000.25)) };
        let body: Value = serde_json::from_slice(&h.body()).unwrap();
        let mut want = json!({
            "event": "participant_joined",
            "room": "demo",
            "id": "ev_0000000000000abc",
            "created_at": 1_800_000_000.25,
        });
        // The rest is exactly what SSE sends as the event's data.
        for (k, v) in serde_json::to_value(&ev).unwrap().as_object().unwrap() {
            want[k] = v.clone();
        }
        assert_eq!(body, want);
        assert_eq!(body["identity"], "alice");
    }

    #[test]
    fn ids_differ_between_events() {
        let room = RoomId::new("r").unwrap();
        let ev = RoomEvent::ParticipantLeft { participant_id: ParticipantId(1), reason: LeaveReason::Requested };
        let a = HookEvent::new(room.clone(), ev.clone(), at(1.0));
        let b = HookEvent::new(room, ev, at(1.0));
        assert_ne!(a.id_text(), b.id_text());
    }

    #[test]
    fn digits_only_with_dtmf_and_routing_never() {
        let p = ParticipantId(5);
        let digit = RoomEvent::Dtmf { participant_id: p, digit: '7', duration_ms: 100 };
        assert!(!wanted(&digit, false));
        assert!(wanted(&digit, true));
        assert!(!wanted(&RoomEvent::ActiveSpeaker { participant_id: p }, true));
        assert!(wanted(&RoomEvent::RoomStarted { max_participants: 4 }, false));
        assert!(wanted(&RoomEvent::ParticipantLeft { participant_id: p, reason: LeaveReason::Inactive }, false));
    }
}
