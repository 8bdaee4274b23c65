//! Two headless Chromium clients (peers/chromium_peer.mjs) in one room, each publishing its
//! fake microphone and camera and receiving the other's through the bridge.

use std::time::Duration;

use switchboard_integration_tests::*;

const PEER: &str = "chromium_peer.mjs";

#[track_caller]
fn assert_received_audio_and_video(name: &str, out: &PeerOutput) {
    let j = out.expect_ok();
    assert_eq!(j["connection_state"], "connected", "{name}: {}", out.describe());
    let audio = &j["inbound"]["audio"];
    let video = &j["inbound"]["video"];
    let a_pkts = audio["packetsReceived"].as_u64().unwrap_or(0);
    let v_pkts = video["packetsReceived"].as_u64().unwrap_or(0);
    let frames = video["framesDecoded"].as_u64().unwrap_or(0);
    assert!(a_pkts > 0, "{name}: no audio packets received: {}", out.describe());
    assert!(v_pkts > 0, "{name}: no video packets received: {}", out.describe());
    assert!(frames > 0, "{name}: no video frames decoded: {}", out.describe());
    // A few seconds of 20 ms audio and 30 fps video: well above a trickle.
    assert!(a_pkts >= 50, "{name}: only {a_pkts} audio packets: {}", out.describe());
    assert!(frames >= 30, "{name}: only {frames} video frames decoded: {}", out.describe());
    let samples = audio["totalSamplesReceived"].as_u64().unwrap_or(0);
    assert!(samples > 0, "{name}: audio packets were not decoded: {}", out.describe());
}

#[test]
fn two_chromium_clients_exchange_audio_and_video() {
    require_chromium();
    let d = Daemon::start();
    let sse = d.create_and_follow("call");
    let a = d.join_peer(PEER, "call", "alice", &["--duration", "10"], Duration::from_secs(50));
    let b = d.join_peer(PEER, "call", "bob", &["--duration", "10"], Duration::from_secs(50));

    // Both are in the room at the same time.
    let both = poll_until(Duration::from_secs(20), || {
        let (s, v) = d.get_json("/v1/rooms/call");
        (s == 200 && participant_ids(&v).len() == 2).then_some(v)
    });
    let a_out = a.wait();
    let b_out = b.wait();
    let room = both.unwrap_or_else(|| {
        panic!(
            "the two clients were never in the room together\nalice: {}\nbob: {}",
            a_out.describe(),
            b_out.describe()
        )
    });

    assert_received_audio_and_video("alice", &a_out);
    assert_received_audio_and_video("bob", &b_out);

    let a_id = a_out.json["participant_id"].as_str().unwrap().to_string();
    let b_id = b_out.json["participant_id"].as_str().unwrap().to_string();
    assert_ne!(a_id, b_id);
    let mut want = vec![a_id.clone(), b_id.clone()];
    want.sort();
    assert_eq!(participant_ids(&room), want, "room view: {room}");
    // Both joined and both left, as events.
    for id in [&a_id, &b_id] {
        sse.wait_for_participant_event("participant_joined", id, Duration::from_secs(2));
        sse.wait_for_participant_event("participant_left", id, Duration::from_secs(2));
    }
}
