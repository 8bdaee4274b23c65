//! What the ng side remembers of each call: its room, and the participant each tag is.
//!
//! A call's room can end without the proxy: every leg left (inactivity, `DELETE` of a
//! participant) or the room was deleted through the HTTP API. The table then forgets the call the
//! next time a command looks at it (`list` looks at every call; `offer`, `answer` and `query` at
//! theirs), rather than hearing each room's end: ng commands are rare next to media, and a look
//! costs one command to the media worker that the proxy's command needed anyway.

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

impl Call {
    /// Whether the call still has a leg, told by `present(room, participant)`. One leg gone (a
    /// timed-out callee) leaves the call to the proxy's `delete`, which then removes the room.
    pub fn has_a_leg(&self, present: impl Fn(&RoomId, ParticipantId) -> bool) -> bool {
        present(&self.room, self.caller.1) || present(&self.room, self.callee.1)
    }
}

#[derive(Default)]
pub struct Calls {
    pub by_id: HashMap<String, Call>,
}

impl Calls {
    /// Forgets the calls with no leg left (see [`Call::has_a_leg`]); returns their call-ids.
    pub fn forget_ended(&mut self, present: impl Fn(&RoomId, ParticipantId) -> bool) -> Vec<String> {
        let ended: Vec<String> =
            self.by_id.iter().filter(|(_, c)| !c.has_a_leg(&present)).map(|(id, _)| id.clone()).collect();
        for id in &ended {
            self.by_id.remove(id);
        }
        ended
    }
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

    fn call(room: &str, caller: u64, callee: u64) -> Call {
        Call {
            room: RoomId::new(room).unwrap(),
            shared_room: false,
            caller: ("from".into(), ParticipantId(caller)),
            callee: (None, ParticipantId(callee)),
            caller_answer: String::new(),
            callee_offer: String::new(),
            created: SystemTime::now(),
        }
    }

    #[test]
    fn a_call_is_forgotten_once_no_leg_is_left_in_its_room() {
        let mut calls = Calls::default();
        calls.by_id.insert("both".into(), call("r1", 1, 2));
        calls.by_id.insert("callee-left".into(), call("r2", 3, 4));
        calls.by_id.insert("all-left".into(), call("r3", 5, 6));
        calls.by_id.insert("room-gone".into(), call("r4", 7, 8));
        // What the media workers hold: r3 is empty, r4 is gone, a conference room holds 9.
        let rooms: HashMap<&str, Vec<u64>> =
            HashMap::from([("r1", vec![1, 2]), ("r2", vec![3]), ("r3", vec![]), ("conf", vec![9])]);
        let present = |room: &RoomId, p: ParticipantId| {
            rooms.get(room.as_str()).is_some_and(|ps| ps.iter().any(|&x| ParticipantId(x) == p))
        };
        let mut ended = calls.forget_ended(present);
        ended.sort();
        assert_eq!(ended, vec!["all-left", "room-gone"]);
        let mut kept: Vec<&String> = calls.by_id.keys().collect();
        kept.sort();
        assert_eq!(kept, vec!["both", "callee-left"]);
        assert!(calls.forget_ended(present).is_empty(), "a second look forgets nothing more");
    }

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
