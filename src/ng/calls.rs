//! What the ng side remembers of each call: its room, and the participant each tag is.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::SystemTime;
use switchboard_driver::{ParticipantId, RoomId};

pub struct Call {
    pub room: RoomId,
    /// The room was named by the proxy (`room=NAME`): other calls may share it, so deleting the
    /// call removes its legs, not the room.
    pub shared_room: bool,
    /// The caller's leg (the `from-tag`) and the callee's (the `to-tag` once `answer` names it).
    pub caller: (String, ParticipantId),
    pub callee: (Option<String>, ParticipantId),
    /// The bridge's answer to the caller, returned by `answer`.
    pub caller_answer: String,
    /// The bridge's offer toward the callee, returned again to a re-offer.
    pub callee_offer: String,
    pub created: SystemTime,
}

#[derive(Default)]
pub struct Calls {
    pub by_id: HashMap<String, Call>,
}

/// The room a call lives in when the proxy names none: `ng-` and the call-id where it is a valid
/// room id, else its readable part and a hash of the whole (call-ids hold `@` and can be long).
pub fn room_for(call_id: &str) -> Option<RoomId> {
    let direct = format!("ng-{call_id}");
    if let Some(id) = RoomId::new(&direct) {
        return Some(id);
    }
    let readable: String =
        call_id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')).take(40).collect();
    // A fixed-key hasher: the same call-id always gives the same room, on every node.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    call_id.hash(&mut h);
    RoomId::new(&format!("ng-{readable}-{:016x}", h.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_become_valid_distinct_rooms() {
        assert_eq!(room_for("abc123").unwrap().as_str(), "ng-abc123");
        let a = room_for("a1b2@10.0.0.1").unwrap();
        let b = room_for("a1b2_10.0.0.1").unwrap();
        assert_ne!(a, b, "two call-ids, one room");
        assert!(a.as_str().starts_with("ng-a1b210.0.0.1-"), "{a}");
        assert!(room_for(&"x".repeat(300)).is_some());
    }
}
