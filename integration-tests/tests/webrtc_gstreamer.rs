//! Audio through the bridge between two GStreamer webrtcbin peers (peers/webrtcbin_peer.py).
//!
//! The publisher sends a 440 Hz sine as Opus; the subscriber decodes what it receives and
//! reports the dominant frequency. Both peers do their own signalling through the HTTP API.

use std::time::Duration;

use switchboard_integration_tests::*;

const PEER: &str = "webrtcbin_peer.py";

/// How long a peer may take to join (it starts GStreamer first).
const JOIN: Duration = Duration::from_secs(15);

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
    let sse = d.create_and_follow("tone");
    let pub_args = ["--publish-tone", "440", "--duration", "14"];
    let mut publisher = Some(d.join_peer(PEER, "tone", "publisher", &pub_args, Duration::from_secs(45)));
    let pub_id = d.wait_for_participants("tone", 1, &mut [&mut publisher], JOIN).remove(0);
    let sub_args = ["--receive", "4", "--duration", "7"];
    let sub = d.join_peer(PEER, "tone", "subscriber", &sub_args, Duration::from_secs(40)).wait();
    let p = publisher.unwrap().wait();
    let pj = p.expect_ok();
    assert_eq!(pj["participant_id"], pub_id.as_str());
    assert_eq!(pj["connection_state"], "connected", "publisher: {}", p.describe());
    assert!(pj["sent_rtp_packets"].as_u64().unwrap_or(0) > 300, "publisher sent too little: {}", p.describe());
    assert_heard_440(&sub);
    // The subscriber's RTCP receiver reports on that stream reached the quality histograms.
    let (_, metrics) = d.get_text("/metrics");
    let reports = metric_value(&metrics, "switchboard_receiver_jitter_seconds_count", &[("kind", "webrtc")]);
    assert!(reports.is_some_and(|n| n >= 1.0), "no receiver report from the webrtc subscriber: {reports:?}");

    // The subscriber's one slot was served from the publisher's audio track.
    let sj = &sub.json;
    let subs = sj["join"]["subscriptions"].as_array().cloned().unwrap_or_default();
    assert_eq!(subs.len(), 1, "one recvonly m-line, one slot: {sj}");
    assert_eq!(subs[0]["publisher_id"], pub_id.as_str(), "slot source: {sj}");
    assert_eq!(subs[0]["route"], "forward", "same codec, one publisher: forward. {sj}");
    // Both joined and both left, as events.
    let sub_id = sj["participant_id"].as_str().unwrap().to_string();
    for id in [&pub_id, &sub_id] {
        sse.wait_for_participant_event("participant_joined", id, Duration::from_secs(2));
        sse.wait_for_participant_event("participant_left", id, Duration::from_secs(2));
    }
}

#[test]
fn subscriber_first_slot_is_filled_without_renegotiation() {
    require_gstreamer();
    let d = Daemon::start();
    // The subscriber offers one recvonly audio m-line into an empty room and never renegotiates
    // (the peer has no code path that sends a second offer).
    let sub_args = ["--receive", "4", "--duration", "11"];
    let mut subscriber = Some(d.join_peer(PEER, "late", "early-subscriber", &sub_args, Duration::from_secs(45)));
    let sub_id = d.wait_for_participants("late", 1, &mut [&mut subscriber], JOIN).remove(0);
    let before = d.participant("late", &sub_id);
    let slots = before["subscriptions"].as_array().cloned().unwrap_or_default();
    assert_eq!(slots.len(), 1, "the recvonly m-line is one slot: {before}");
    assert!(slots[0]["publisher_id"].is_null(), "no publisher yet, slot should be empty: {before}");

    // A second with the slot empty and the subscriber connected: whatever the bridge sent into
    // the slot before a publisher existed would arrive now.
    std::thread::sleep(Duration::from_secs(1));
    let publisher_started = unix_now();
    let pub_args = ["--publish-tone", "440", "--duration", "12"];
    let mut publisher = Some(d.join_peer(PEER, "late", "late-publisher", &pub_args, Duration::from_secs(45)));
    let ids = d.wait_for_participants("late", 2, &mut [&mut publisher], JOIN);
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
    // Media started only once the publisher existed. Both clocks are the same host's wall clock.
    let first = sub.json["first_rtp_unix_s"].as_f64().unwrap_or(0.0);
    assert!(
        first > publisher_started,
        "first RTP {:.3} s before the publisher was started: {}",
        publisher_started - first,
        sub.describe()
    );
}

/// libnice (webrtcbin's ICE agent) keeps a connection up with STUN binding *indications*, sent
/// rarely, and never sends the consent checks (binding requests) browsers send every few
/// seconds. An ICE-lite bridge, which only answers checks, took 15 s of silence for a dead peer
/// and dropped every webrtcbin publisher 15 s after it joined. The bridge now runs full ICE and
/// checks the pair itself.
#[test]
fn a_webrtcbin_publisher_stays_past_fifteen_seconds() {
    require_gstreamer();
    let d = Daemon::start();
    let pub_args = ["--publish-tone", "440", "--duration", "24"];
    let mut publisher = Some(d.join_peer(PEER, "long", "publisher", &pub_args, Duration::from_secs(60)));
    let pub_id = d.wait_for_participants("long", 1, &mut [&mut publisher], JOIN).remove(0);
    std::thread::sleep(Duration::from_secs(17));
    assert_eq!(d.participants_of("long"), std::slice::from_ref(&pub_id), "the publisher was dropped before 17 s");
    let sub_args = ["--receive", "3", "--duration", "4"];
    let sub = d.join_peer(PEER, "long", "subscriber", &sub_args, Duration::from_secs(40)).wait();
    assert_heard_440(&sub);
    let p = publisher.unwrap().wait();
    let pj = p.expect_ok();
    // 204: the publisher was still in the room when it left on its own, 24 s after joining.
    assert_eq!(pj["left_status"], 204, "the bridge had dropped the publisher: {}", p.describe());
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
