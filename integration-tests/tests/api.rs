//! The HTTP API, version 1 (design.md "HTTP API, version 1"), against the real daemon.
//!
//! Every route and every documented error case, with canned offers captured once from real
//! peers (tests/fixtures/). No media flows here; see webrtc_*.rs for that.

use std::time::Duration;

use switchboard_integration_tests::*;

const SSE_WAIT: Duration = Duration::from_secs(5);

fn chromium_offer() -> String {
    fixture("chromium_offer.sdp")
}

fn room_participants(d: &Daemon, room: &str) -> Vec<String> {
    let (s, v) = d.get_json(&format!("/v1/rooms/{room}"));
    assert_eq!(s, 200, "GET /v1/rooms/{room}: {s} {v}");
    assert!(v["participants"].is_array(), "room view has no participants array: {v}");
    participant_ids(&v)
}

/// GET, DELETE and PATCH (with a valid offer) of a participant's `path` each answer 404 `code`.
#[track_caller]
fn assert_participant_404(d: &Daemon, path: &str, code: &str) {
    assert_api_error(&d.get_json(path), 404, code);
    assert_api_error(&d.delete(path), 404, code);
    assert_api_error(&d.patch_json(path, &json!({"sdp": chromium_offer()})), 404, code);
}

#[test]
fn healthz_and_metrics() {
    let d = Daemon::start();
    let (s, _) = d.get_text("/healthz");
    assert_eq!(s, 200);
    let (s, text) = d.get_text("/metrics");
    assert_eq!(s, 200, "GET /metrics: {text}");
    assert!(text.contains("switchboard_"), "metrics have no switchboard_ series:\n{text}");
    // Prometheus text format: every non-comment line is `name{labels} value`.
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "not a sample line: {line:?}"
        );
    }
}

#[test]
fn room_create_list_get_delete() {
    let d = Daemon::start();

    let (s, alpha) = d.post_json("/v1/rooms", &json!({"id": "alpha"}));
    assert_eq!(s, 201, "create alpha: {alpha}");
    assert_eq!(alpha["id"], "alpha");

    // Without an id the bridge picks one, different each time.
    let (s, r1) = d.post_json("/v1/rooms", &json!({}));
    assert_eq!(s, 201, "create without id: {r1}");
    let (s, r2) = d.post_json("/v1/rooms", &json!({}));
    assert_eq!(s, 201, "create without id: {r2}");
    let (id1, id2) = (r1["id"].as_str().unwrap_or(""), r2["id"].as_str().unwrap_or(""));
    assert!(!id1.is_empty() && !id2.is_empty() && id1 != id2 && id1 != "alpha", "generated ids {id1:?} {id2:?}");

    assert_api_error(&d.post_json("/v1/rooms", &json!({"id": "alpha"})), 409, "room_exists");

    let (s, list) = d.get_json("/v1/rooms");
    assert_eq!(s, 200, "list: {list}");
    let mut ids: Vec<&str> =
        list["rooms"].as_array().expect("rooms array").iter().filter_map(|r| r["id"].as_str()).collect();
    ids.sort();
    let mut want = vec!["alpha", id1, id2];
    want.sort();
    assert_eq!(ids, want, "GET /v1/rooms lists exactly the created rooms: {list}");

    let (s, got) = d.get_json("/v1/rooms/alpha");
    assert_eq!(s, 200, "get alpha: {got}");
    assert_eq!(got["id"], "alpha");
    assert_eq!(got["participants"], json!([]), "a new room has no participants: {got}");

    let (s, body) = d.delete("/v1/rooms/alpha");
    assert_eq!(s, 204, "delete alpha: {body}");
    assert_api_error(&d.get_json("/v1/rooms/alpha"), 404, "room_not_found");
    assert_api_error(&d.delete("/v1/rooms/alpha"), 404, "room_not_found");
    let (_, list) = d.get_json("/v1/rooms");
    assert!(!list["rooms"].as_array().unwrap().iter().any(|r| r["id"] == "alpha"), "deleted room still listed: {list}");
    // The id is free again.
    assert_eq!(d.post_json("/v1/rooms", &json!({"id": "alpha"})).0, 201);
}

#[test]
fn participant_join_get_patch_leave() {
    let d = Daemon::start();
    let offer = chromium_offer();

    // Rooms are created on first join (auto_create = true).
    assert_api_error(&d.get_json("/v1/rooms/r1"), 404, "room_not_found");
    let (s, p) = d.post_json("/v1/rooms/r1/participants", &json!({"sdp": offer, "display_name": "alice"}));
    assert_eq!(s, 201, "join: {p}");
    let pid = p["id"].as_str().expect("participant id").to_string();
    assert!(!pid.is_empty());
    assert_eq!(p["room_id"], "r1");
    assert_eq!(p["kind"], "webrtc", "kind comes from UDP/TLS/RTP/SAVPF: {p}");
    assert_eq!(p["display_name"], "alice");
    assert!(["new", "connecting", "connected"].contains(&p["state"].as_str().unwrap_or("")), "state: {p}");
    let answer = p["sdp"].as_str().expect("answer sdp");
    assert_webrtc_answer(&offer, answer, d.webrtc_port());

    // Chromium offered sendrecv audio (opus first) and video (vp8 first): two published tracks.
    let tracks = p["tracks"].as_array().expect("tracks array");
    let mut kinds: Vec<&str> = tracks.iter().filter_map(|t| t["kind"].as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["audio", "video"], "tracks: {p}");
    for t in tracks {
        assert!(t["id"].as_str().is_some_and(|x| !x.is_empty()), "track without id: {t}");
        let codec = t["codec"].as_str().unwrap_or("");
        match t["kind"].as_str() {
            Some("audio") => assert_eq!(codec, "opus", "audio track codec: {t}"),
            _ => assert!(["vp8", "vp9", "h264", "av1"].contains(&codec), "video track codec: {t}"),
        }
    }
    // Alone in the room: slots exist but have no publisher yet.
    let subs = p["subscriptions"].as_array().expect("subscriptions array");
    for sub in subs {
        assert!(sub["slot"].is_string() || sub["slot"].is_number(), "slot: {sub}");
        assert!(sub["publisher_id"].is_null(), "nobody else is in the room, yet {sub}");
    }

    // GET the participant and the room.
    let (s, g) = d.get_json(&format!("/v1/rooms/r1/participants/{pid}"));
    assert_eq!(s, 200, "get participant: {g}");
    assert_eq!(g["id"], pid.as_str());
    assert_eq!(g["room_id"], "r1");
    assert_eq!(g["kind"], "webrtc");
    assert_eq!(g["tracks"].as_array().map(Vec::len), Some(2), "{g}");
    assert_eq!(room_participants(&d, "r1"), vec![pid.clone()]);

    // PATCH with a re-offer (same session, version bumped) gets a new answer.
    let reoffer = offer.replacen(" 2 IN IP4 ", " 3 IN IP4 ", 1);
    assert_ne!(reoffer, offer, "fixture's o= line changed: update the version bump");
    let (s, pa) = d.patch_json(&format!("/v1/rooms/r1/participants/{pid}"), &json!({"sdp": reoffer}));
    assert_eq!(s, 200, "patch: {pa}");
    let answer2 = pa["sdp"].as_str().expect("PATCH with an offer answers with sdp");
    assert_webrtc_answer(&reoffer, answer2, d.webrtc_port());

    // A re-offer that gives payload type 96 a new meaning is refused with the reason, and the
    // participant is left as it was: str0m would have panicked on it, or answered the old one.
    let moved =
        reoffer.replacen(" 3 IN IP4 ", " 4 IN IP4 ", 1).replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 H264/90000");
    let (s, e) = d.patch_json(&format!("/v1/rooms/r1/participants/{pid}"), &json!({"sdp": moved}));
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("bad_sdp")), "{e}");
    let why = e["error"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("payload type 96 was VP8/90000"), "{why}");
    let (s, g2) = d.get_json(&format!("/v1/rooms/r1/participants/{pid}"));
    assert_eq!(s, 200, "the participant stays: {g2}");
    assert_eq!(g2["tracks"], g["tracks"], "tracks unchanged");
    assert_eq!(g2["subscriptions"], g["subscriptions"], "slots unchanged");

    // The same browser as a pure viewer: its recvonly m-lines are answered without TWCC or
    // abs-send-time (the bridge estimates no bandwidth), which assert_webrtc_answer checks.
    let viewer = offer.replace("a=sendrecv", "a=recvonly");
    assert!(viewer.contains("transport-wide-cc"), "the fixture offers TWCC");
    let (s, v) = d.post_json("/v1/rooms/r1/participants", &json!({"sdp": viewer}));
    assert_eq!(s, 201, "viewer join: {v}");
    let viewer_answer = v["sdp"].as_str().expect("answer sdp");
    assert_webrtc_answer(&viewer, viewer_answer, d.webrtc_port());
    assert!(!viewer_answer.contains("transport-wide-cc"), "{viewer_answer}");
    let (s, _) = d.delete(&format!("/v1/rooms/r1/participants/{}", v["id"].as_str().unwrap()));
    assert_eq!(s, 204);
    assert_eq!(room_participants(&d, "r1"), vec![pid.clone()], "a re-offer is not a new participant");

    // Leave.
    let (s, body) = d.delete(&format!("/v1/rooms/r1/participants/{pid}"));
    assert_eq!(s, 204, "leave: {body}");
    assert_api_error(&d.get_json(&format!("/v1/rooms/r1/participants/{pid}")), 404, "participant_not_found");
    assert_api_error(&d.delete(&format!("/v1/rooms/r1/participants/{pid}")), 404, "participant_not_found");
    // empty_timeout_secs = 60: the room itself is still there, empty.
    assert_eq!(room_participants(&d, "r1"), Vec::<String>::new());
}

#[test]
fn subscriptions_name_the_publisher() {
    let d = Daemon::start();
    // A Chromium participant (sendrecv audio + video) and then a webrtcbin publisher (sendonly opus).
    let c = d.join("room", &chromium_offer());
    let cid = c["id"].as_str().unwrap().to_string();
    let pub_offer = fixture("webrtcbin_offer.sdp");
    let w = d.join("room", &pub_offer);
    let wid = w["id"].as_str().unwrap().to_string();
    assert_webrtc_answer(&pub_offer, w["sdp"].as_str().unwrap(), d.webrtc_port());
    let w_audio: Vec<&Value> = w["tracks"].as_array().unwrap().iter().filter(|t| t["kind"] == "audio").collect();
    assert_eq!(w_audio.len(), 1, "webrtcbin publishes one audio track: {w}");
    assert_eq!(w_audio[0]["codec"], "opus");
    let w_track = w_audio[0]["id"].clone();
    // A sendonly publisher has no slot to receive on.
    assert_eq!(w["subscriptions"], json!([]), "sendonly participant got subscriptions: {w}");

    // Chromium's audio slot now forwards the webrtcbin track (same codec: no transcode).
    let (s, cv) = d.get_json(&format!("/v1/rooms/room/participants/{cid}"));
    assert_eq!(s, 200);
    let subs = cv["subscriptions"].as_array().expect("subscriptions");
    let from_w: Vec<&Value> = subs.iter().filter(|s| s["publisher_id"] == wid.as_str()).collect();
    assert_eq!(from_w.len(), 1, "exactly one of chromium's slots carries the webrtcbin track: {cv}");
    assert_eq!(from_w[0]["track_id"], w_track, "{cv}");
    assert_eq!(from_w[0]["route"], "forward", "{cv}");
    assert_eq!(from_w[0]["codec"], "opus", "{cv}");
    assert!(subs.iter().all(|s| s["publisher_id"] != cid.as_str()), "a participant never subscribes to itself: {cv}");

    // A recvonly webrtcbin subscriber joins last: its one slot gets an audio publisher
    // (there are two; it has one slot, so either forwarded or a mix).
    let sub_offer = fixture("webrtcbin_recvonly_offer.sdp");
    let r = d.join("room", &sub_offer);
    assert_webrtc_answer(&sub_offer, r["sdp"].as_str().unwrap(), d.webrtc_port());
    assert_eq!(r["tracks"], json!([]), "a recvonly participant publishes nothing: {r}");
    let rs = r["subscriptions"].as_array().expect("subscriptions");
    assert_eq!(rs.len(), 1, "one slot for one recvonly m-line: {r}");
    assert!(["forward", "mix", "transcode"].contains(&rs[0]["route"].as_str().unwrap_or("")), "{r}");
    assert_eq!(room_participants(&d, "room").len(), 3);
}

#[test]
fn malformed_sdp_is_400_and_changes_nothing() {
    let d = Daemon::start();
    let first = d.join("r", &chromium_offer());
    let before = room_participants(&d, "r");
    assert_eq!(before, vec![first["id"].as_str().unwrap().to_string()]);

    for bad in ["this is not sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio banana\r\n"] {
        let got = d.post_json("/v1/rooms/r/participants", &json!({"sdp": bad}));
        assert_api_error(&got, 400, "bad_sdp");
        assert_eq!(room_participants(&d, "r"), before, "a rejected join must not leave a participant behind");
    }
    // A malformed SDP into a room that does not exist yet does not create it either.
    let got = d.post_json("/v1/rooms/fresh/participants", &json!({"sdp": "garbage"}));
    assert_api_error(&got, 400, "bad_sdp");
    assert_api_error(&d.get_json("/v1/rooms/fresh"), 404, "room_not_found");
    // PATCH with a malformed SDP: 400, the participant is still there.
    let pid = first["id"].as_str().unwrap();
    let got = d.patch_json(&format!("/v1/rooms/r/participants/{pid}"), &json!({"sdp": "garbage"}));
    assert_api_error(&got, 400, "bad_sdp");
    assert_eq!(room_participants(&d, "r"), before);
    assert_eq!(d.get_json(&format!("/v1/rooms/r/participants/{pid}")).0, 200);
}

#[test]
fn unknown_room_is_404() {
    let d = Daemon::start();
    // A well-formed participant id, so only the room is unknown.
    let someone = "0123456789abcdef";
    assert_api_error(&d.get_json("/v1/rooms/nope"), 404, "room_not_found");
    assert_api_error(&d.delete("/v1/rooms/nope"), 404, "room_not_found");
    assert_participant_404(&d, &format!("/v1/rooms/nope/participants/{someone}"), "room_not_found");
    // A participant id that does exist, asked for through a room that does not.
    let p = d.join("real", &chromium_offer());
    let pid = p["id"].as_str().unwrap();
    assert_api_error(&d.get_json(&format!("/v1/rooms/nope/participants/{pid}")), 404, "room_not_found");
}

#[test]
fn join_unknown_room_without_auto_create_is_404() {
    let d = Daemon::start_with(|c| {
        c.set("rooms", "auto_create", false);
    });
    let got = d.post_json("/v1/rooms/nope/participants", &json!({"sdp": chromium_offer()}));
    assert_api_error(&got, 404, "room_not_found");
    assert_api_error(&d.get_json("/v1/rooms/nope"), 404, "room_not_found");
    // Once created, joining works.
    assert_eq!(d.post_json("/v1/rooms", &json!({"id": "nope"})).0, 201);
    d.join("nope", &chromium_offer());
}

#[test]
fn unknown_participant_is_404() {
    let d = Daemon::start();
    assert_eq!(d.post_json("/v1/rooms", &json!({"id": "r"})).0, 201);
    // Well-formed but unknown, and not even well-formed: both are simply not found.
    for ghost in ["0123456789abcdef", "ghost"] {
        assert_participant_404(&d, &format!("/v1/rooms/r/participants/{ghost}"), "participant_not_found");
    }
    // A participant of another room is not found through this one.
    let other = d.join("other", &chromium_offer());
    let oid = other["id"].as_str().unwrap();
    assert_api_error(&d.get_json(&format!("/v1/rooms/r/participants/{oid}")), 404, "participant_not_found");
}

#[test]
fn duplicate_room_is_409() {
    let d = Daemon::start();
    assert_eq!(d.post_json("/v1/rooms", &json!({"id": "dup"})).0, 201);
    assert_api_error(&d.post_json("/v1/rooms", &json!({"id": "dup"})), 409, "room_exists");
    // A room made by a join is just as taken.
    d.join("joined", &chromium_offer());
    assert_api_error(&d.post_json("/v1/rooms", &json!({"id": "joined"})), 409, "room_exists");
    assert_eq!(room_participants(&d, "joined").len(), 1, "the 409 did not reset the room");
}

#[test]
fn oversized_body_is_413() {
    let d = Daemon::start();
    d.join("r", &chromium_offer());
    let before = room_participants(&d, "r");
    // A 2 MB JSON body: a real offer padded with a long attribute.
    let padded = format!("{}a=x-padding:{}\r\n", chromium_offer(), "x".repeat(2 * 1024 * 1024));
    let body = serde_json::to_vec(&json!({"sdp": padded})).unwrap();
    assert!(body.len() > 2_000_000);
    let r = d.raw("POST", "/v1/rooms/r/participants", Some("application/json"), &body);
    assert_api_error(&(r.status, r.json()), 413, "body_too_large");
    assert_eq!(room_participants(&d, "r"), before);
    // The daemon is still fine afterwards.
    assert_eq!(d.get_text("/healthz").0, 200);
}

#[test]
fn malformed_json_is_a_400_with_an_error_body() {
    let d = Daemon::start();
    let r = d.raw("POST", "/v1/rooms", Some("application/json"), b"{\"id\": ");
    let v = r.json();
    assert_eq!(r.status, 400, "truncated JSON: {} {v}", r.status);
    assert!(v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "error body shape: {v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "error body shape: {v}");
}

#[test]
fn events_for_a_join_and_a_leave() {
    let d = Daemon::start();
    assert_eq!(d.post_json("/v1/rooms", &json!({"id": "ev"})).0, 201);
    let sse = d.events("ev");
    assert_eq!(sse.status, 200, "GET /v1/rooms/ev/events");
    assert!(sse.content_type.starts_with("text/event-stream"), "content-type {:?}", sse.content_type);

    let p = d.join("ev", &chromium_offer());
    let pid = p["id"].as_str().unwrap().to_string();
    let joined =
        sse.wait_for_matching("participant_joined", |v| event_participant_id(v).as_deref() == Some(&pid), SSE_WAIT);
    assert_eq!(event_participant_id(&joined).as_deref(), Some(pid.as_str()));

    assert_eq!(d.delete(&format!("/v1/rooms/ev/participants/{pid}")).0, 204);
    sse.wait_for_matching("participant_left", |v| event_participant_id(v).as_deref() == Some(&pid), SSE_WAIT);

    let seq: Vec<String> = sse
        .events()
        .into_iter()
        .filter(|e| e.event.starts_with("participant_") && event_participant_id(&e.data).as_deref() == Some(&pid))
        .map(|e| e.event)
        .collect();
    assert_eq!(seq, ["participant_joined", "participant_left"], "all events: {:?}", sse.names());

    // The offer published audio and video: both tracks were announced, and withdrawn on leave.
    let track_ids: Vec<String> =
        p["tracks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(track_ids.len(), 2);
    for tid in &track_ids {
        let is_this = |v: &Value| v["track_id"] == tid.as_str() && event_participant_id(v).as_deref() == Some(&pid);
        sse.wait_for_matching("track_published", is_this, SSE_WAIT);
        sse.wait_for_matching("track_unpublished", is_this, SSE_WAIT);
    }
}

#[test]
fn events_of_another_room_are_not_delivered() {
    let d = Daemon::start();
    assert_eq!(d.post_json("/v1/rooms", &json!({"id": "a"})).0, 201);
    let sse = d.events("a");
    assert_eq!(sse.status, 200);
    let other = d.join("b", &chromium_offer());
    let mine = d.join("a", &chromium_offer());
    let mine_id = mine["id"].as_str().unwrap().to_string();
    sse.wait_for_matching("participant_joined", |v| event_participant_id(v).as_deref() == Some(&mine_id), SSE_WAIT);
    let oid = other["id"].as_str().unwrap().to_string();
    assert!(
        !sse.events().iter().any(|e| event_participant_id(&e.data).as_deref() == Some(&oid)),
        "room a's stream carried room b's participant: {:?}",
        sse.events()
    );
}
