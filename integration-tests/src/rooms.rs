//! Rooms and their participants as the tests drive them through the API: create and follow a
//! room, join it (directly or with a peer), wait until everyone is in, and check its errors.

use std::borrow::BorrowMut;
use std::time::Duration;

use serde_json::{json, Value};

use crate::clock::poll_until;
use crate::daemon::Daemon;
use crate::peers::{spawn_peer, PeerHandle};
use crate::sse::SseClient;

/// How long a test usually waits for its peers to join (see [`Daemon::wait_for_participants`]):
/// they start GStreamer or Chromium first, which takes seconds on a loaded machine.
pub const JOIN_WAIT: Duration = Duration::from_secs(30);

impl Daemon {
    /// Join `room` with an SDP offer; panics unless the answer is 201 with an `sdp`.
    pub fn join(&self, room: &str, offer: &str) -> Value {
        let (s, v) = self.post_json(&format!("/v1/rooms/{room}/participants"), &json!({ "sdp": offer }));
        assert_eq!(s, 201, "join {room}: expected 201, got {s} {v}");
        assert!(v["sdp"].is_string(), "join {room}: response has no sdp: {v}");
        v
    }

    /// Follow `/v1/rooms/{room}/events`.
    pub fn events(&self, room: &str) -> SseClient {
        SseClient::connect(&self.base_url, &format!("/v1/rooms/{room}/events"))
    }

    /// Create `room` (`POST /v1/rooms`); panics unless the answer is 201.
    pub fn create_room(&self, room: &str) {
        let (s, v) = self.post_json("/v1/rooms", &json!({ "id": room }));
        assert_eq!(s, 201, "create room {room}: expected 201, got {s} {v}");
    }

    /// Create `room` and follow its events from the start ([`Daemon::events`]); panics unless
    /// the room was created (201) and the event stream answered 200.
    pub fn create_and_follow(&self, room: &str) -> SseClient {
        self.create_room(room);
        let sse = self.events(room);
        assert_eq!(sse.status, 200, "GET /v1/rooms/{room}/events");
        sse
    }

    /// One participant's view (`GET /v1/rooms/{room}/participants/{id}`); panics unless it is 200.
    pub fn participant(&self, room: &str, id: &str) -> Value {
        let (s, v) = self.get_json(&format!("/v1/rooms/{room}/participants/{id}"));
        assert_eq!(s, 200, "GET participant {id}: {v}");
        v
    }

    /// The ids of `room`'s participants, sorted; panics unless `GET /v1/rooms/{room}` is 200.
    pub fn participants_of(&self, room: &str) -> Vec<String> {
        let (s, v) = self.get_json(&format!("/v1/rooms/{room}"));
        assert_eq!(s, 200, "GET room {room}: {v}");
        participant_ids(&v)
    }

    /// Starts peer `script` (see [`spawn_peer`]) joining `room` of this daemon as `name`
    /// (`--api`, `--room`, `--display-name`), with the `extra` arguments after those.
    pub fn join_peer(
        &self,
        script: &str,
        room: &str,
        name: &str,
        extra: &[impl AsRef<str>],
        timeout: Duration,
    ) -> PeerHandle {
        let mut args = vec!["--api", &self.base_url, "--room", room, "--display-name", name];
        args.extend(extra.iter().map(AsRef::as_ref));
        spawn_peer(script, &args, timeout)
    }

    /// The one among `ids` (participants of `room`) whose display name is `name`.
    pub fn participant_named(&self, room: &str, ids: &[String], name: &str) -> String {
        ids.iter()
            .find(|id| self.participant(room, id)["display_name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no participant named {name} among {ids:?}"))
    }

    /// Waits up to `timeout` until `room` lists exactly `n` participants and returns their ids,
    /// sorted. Fails at once, with that peer's own report, if one of `peers` exits first (it
    /// could not join).
    pub fn wait_for_participants(
        &self,
        room: &str,
        n: usize,
        peers: &mut [impl BorrowMut<Option<PeerHandle>>],
        timeout: Duration,
    ) -> Vec<String> {
        let got = poll_until(timeout, || {
            let (s, v) = self.get_json(&format!("/v1/rooms/{room}"));
            if s == 200 && participant_ids(&v).len() == n {
                return Some(Ok(participant_ids(&v)));
            }
            peers.iter_mut().position(|p| p.borrow_mut().as_mut().is_some_and(PeerHandle::finished)).map(Err)
        });
        match got {
            Some(Ok(ids)) => ids,
            Some(Err(i)) => {
                let out = peers[i].borrow_mut().take().unwrap().wait();
                panic!("peer #{i} ({}) ended before room {room} had {n} participants: {}", out.script, out.describe())
            }
            None => panic!("room {room} never had {n} participants: {:?}", self.get_json(&format!("/v1/rooms/{room}"))),
        }
    }
}

/// The ids of a room's participants (`GET /v1/rooms/{room}`), sorted.
pub fn participant_ids(room: &Value) -> Vec<String> {
    let mut ids: Vec<String> = room["participants"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Asserts an API error: `status` and `{"error": {"code": code, "message": <non-empty>}}`.
#[track_caller]
pub fn assert_api_error(got: &(u16, Value), status: u16, code: &str) {
    let (s, v) = got;
    assert_eq!(*s, status, "expected {status} {code}, got {s} {v}");
    assert_eq!(v["error"]["code"], json!(code), "expected error code {code:?} in {v}");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(!msg.trim().is_empty(), "error {code} has no message: {v}");
}
