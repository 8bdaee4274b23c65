//! Audio through the bridge between two GStreamer webrtcbin peers (peers/webrtcbin_peer.py).
//!
//! The publisher sends a 440 Hz sine as Opus; the subscriber decodes what it receives and
//! reports the dominant frequency. Both peers do their own signalling through the HTTP API.

use std::time::Duration;

use switchboard_integration_tests::*;

const PEER: &str = "webrtcbin_peer.py";

fn api(d: &Daemon) -> String {
    d.base_url.clone()
}

/// Waits until `room` lists `n` participants; returns their ids. Fails at once, with the
/// peer's own report, if `peer` exits first (it could not join).
fn wait_participants(
    d: &Daemon,
    room: &str,
    n: usize,
    peer: &mut Option<PeerHandle>,
    timeout: Duration,
) -> Vec<String> {
    let ids = poll_until(timeout, || {
        let (s, v) = d.get_json(&format!("/v1/rooms/{room}"));
        if s == 200 && participant_ids(&v).len() == n {
            return Some(Some(participant_ids(&v)));
        }
        if peer.as_mut().is_some_and(PeerHandle::finished) {
            return Some(None);
        }
        None
    });
    match ids {
        Some(Some(ids)) => ids,
        Some(None) => {
            let out = peer.take().unwrap().wait();
            panic!("peer ended before room {room} had {n} participants: {}", out.describe())
        }
        None => panic!("room {room} never had {n} participants: {:?}", d.get_json(&format!("/v1/rooms/{room}"))),
    }
}

#[track_caller]
fn assert_heard_440(sub: &PeerOutput) {
    let j = sub.expect_ok();
    let packets = j["received_rtp_packets"].as_u64().unwrap_or(0);
    // 20 ms Opus frames: ~50 packets/s. The subscriber listens for several seconds.
    assert!(packets > 100, "subscriber got only {packets} RTP packets: {}", sub.describe());
    let hz = j["dominant_hz"].as_f64().unwrap_or_else(|| panic!("no audio decoded: {}", sub.describe()));
    assert!((hz - 440.0).abs() <= 10.0, "dominant frequency {hz:.1} Hz, expected 440 ± 10: {}", sub.describe());
    let rms = j["rms"].as_f64().unwrap_or(0.0);
    // The publisher's sine is at half scale (rms ≈ 0.35); silence or comfort noise is far below.
    assert!(rms > 0.05, "received audio is too quiet (rms {rms:.4}): {}", sub.describe());
    assert_eq!(j["connection_state"], "connected", "{}", sub.describe());
}

#[test]
fn publisher_first_then_subscriber_hears_440() {
    require_gstreamer();
    let d = Daemon::start();
    let api = api(&d);
    assert_eq!(d.post_json("/v1/rooms", &json!({"id": "tone"})).0, 201);
    let sse = d.events("tone");
    assert_eq!(sse.status, 200, "GET /v1/rooms/tone/events");
    let mut publisher = Some(spawn_peer(
        PEER,
        &["--api", &api, "--room", "tone", "--publish-tone", "440", "--duration", "14", "--display-name", "publisher"],
        Duration::from_secs(45),
    ));
    let pub_id = wait_participants(&d, "tone", 1, &mut publisher, Duration::from_secs(15)).remove(0);
    let sub = peer(
        PEER,
        &["--api", &api, "--room", "tone", "--receive", "4", "--duration", "7", "--display-name", "subscriber"],
        Duration::from_secs(40),
    );
    let p = publisher.unwrap().wait();
    let pj = p.expect_ok();
    assert_eq!(pj["participant_id"], pub_id.as_str());
    assert_eq!(pj["connection_state"], "connected", "publisher: {}", p.describe());
    assert!(pj["sent_rtp_packets"].as_u64().unwrap_or(0) > 300, "publisher sent too little: {}", p.describe());
    assert_heard_440(&sub);

    // The subscriber's one slot was served from the publisher's audio track.
    let sj = &sub.json;
    let subs = sj["join"]["subscriptions"].as_array().cloned().unwrap_or_default();
    assert_eq!(subs.len(), 1, "one recvonly m-line, one slot: {sj}");
    assert_eq!(subs[0]["publisher_id"], pub_id.as_str(), "slot source: {sj}");
    assert_eq!(subs[0]["route"], "forward", "same codec, one publisher: forward. {sj}");
    // Both joined and both left, as events.
    let sub_id = sj["participant_id"].as_str().unwrap().to_string();
    for id in [&pub_id, &sub_id] {
        sse.wait_for_matching(
            "participant_joined",
            |v| event_participant_id(v).as_deref() == Some(id.as_str()),
            Duration::from_secs(2),
        );
        sse.wait_for_matching(
            "participant_left",
            |v| event_participant_id(v).as_deref() == Some(id.as_str()),
            Duration::from_secs(2),
        );
    }
}

#[test]
fn subscriber_first_slot_is_filled_without_renegotiation() {
    require_gstreamer();
    let d = Daemon::start();
    let api = api(&d);
    // The subscriber offers one recvonly audio m-line into an empty room and never renegotiates
    // (the peer has no code path that sends a second offer).
    let mut subscriber = Some(spawn_peer(
        PEER,
        &["--api", &api, "--room", "late", "--receive", "4", "--duration", "11", "--display-name", "early-subscriber"],
        Duration::from_secs(45),
    ));
    let sub_id = wait_participants(&d, "late", 1, &mut subscriber, Duration::from_secs(15)).remove(0);
    let (s, before) = d.get_json(&format!("/v1/rooms/late/participants/{sub_id}"));
    assert_eq!(s, 200);
    let slots = before["subscriptions"].as_array().cloned().unwrap_or_default();
    assert_eq!(slots.len(), 1, "the recvonly m-line is one slot: {before}");
    assert!(slots[0]["publisher_id"].is_null(), "no publisher yet, slot should be empty: {before}");

    let mut publisher = Some(spawn_peer(
        PEER,
        &[
            "--api",
            &api,
            "--room",
            "late",
            "--publish-tone",
            "440",
            "--duration",
            "12",
            "--display-name",
            "late-publisher",
        ],
        Duration::from_secs(45),
    ));
    let ids = wait_participants(&d, "late", 2, &mut publisher, Duration::from_secs(15));
    let pub_id = ids.into_iter().find(|i| *i != sub_id).unwrap();

    // The API shows the slot now carrying the publisher's track, with no new offer from the subscriber.
    let filled = poll_until(Duration::from_secs(5), || {
        let (_, v) = d.get_json(&format!("/v1/rooms/late/participants/{sub_id}"));
        (v["subscriptions"][0]["publisher_id"] == pub_id.as_str()).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!("slot never got the publisher: {:?}", d.get_json(&format!("/v1/rooms/late/participants/{sub_id}")))
    });
    assert_eq!(filled["subscriptions"].as_array().unwrap().len(), 1, "still one slot: {filled}");
    assert_eq!(filled["subscriptions"][0]["slot"], slots[0]["slot"], "same slot: {filled}");

    let sub = subscriber.unwrap().wait();
    let p = publisher.unwrap().wait();
    p.expect_ok();
    assert_heard_440(&sub);
    assert_eq!(sub.json["renegotiations"], 0);
    assert_eq!(sub.json["incoming_streams"], 1, "one slot, one incoming stream: {}", sub.describe());
    // Media started only after the publisher joined, i.e. well after the subscriber's answer.
    let first = sub.json["first_rtp_after_s"].as_f64().unwrap_or(0.0);
    assert!(first > 1.0, "first RTP after {first} s: before any publisher existed? {}", sub.describe());
}
