//! Media workers (`media.workers = 2`): rooms are placed on both, each worker answers with its
//! own WebRTC port, calls on both carry media, the node's metrics and health cover both, and a
//! worker that stalls or panics is reported while the other one's rooms go on.
//!
//! The peers: GStreamer webrtcbin (peers/webrtcbin_peer.py) publishing a tone over WebRTC and
//! analysing what it receives, and phone legs (peers/rtp_leg.py) doing the same over plain RTP.
//! Each room has tones of its own, so audio that crossed from one room to the other would show.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

const WEBRTCBIN: &str = "webrtcbin_peer.py";

fn two_workers() -> Daemon {
    Daemon::start_with(|c| {
        c.set("media", "workers", 2);
        c.set("debug", "stall_hook", true);
    })
}

/// Creates `rooms` in order and checks that they alternate between the two workers, as
/// placement puts each new room on the worker with the fewest rooms and participants.
fn rooms_on_both(d: &Daemon, rooms: &[&str]) {
    for (i, room) in rooms.iter().enumerate() {
        let (s, v) = d.post_json("/v1/rooms", &json!({ "id": room }));
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["worker"], i % 2, "room {room} on the wrong worker: {v}");
        assert_eq!(d.worker_of(room), (i % 2) as u64);
    }
}

/// A phone leg in `room` sending `hz` as Opus until `stop` exists, saving what it hears.
fn phone(d: &Daemon, room: &str, hz: f32, dir: &Path) -> (Option<PeerHandle>, PathBuf, PathBuf) {
    let (audio, stop) = (dir.join(format!("{room}.s16le")), dir.join(format!("{room}.stop")));
    let args = [
        "--codec",
        "opus",
        "--tone",
        &hz.to_string(),
        "--duration",
        "40",
        "--stop-file",
        stop.to_str().unwrap(),
        "--save-audio",
        audio.to_str().unwrap(),
    ];
    (Some(d.join_peer(RTP_LEG, room, "phone", &args, Duration::from_secs(90))), audio, stop)
}

#[test]
fn a_webrtc_peer_and_a_phone_in_rooms_on_each_worker_hear_each_other() {
    require_gstreamer();
    require_rtp_leg();
    let d = two_workers();
    rooms_on_both(&d, &["one", "two"]);
    let dir = tempfile::tempdir().unwrap();
    // (room, the WebRTC peer's tone, the phone's tone)
    let calls = [("one", 440.0_f32, 660.0_f32), ("two", 880.0, 1100.0)];
    let mut phones: Vec<_> = calls.iter().map(|(room, _, hz)| phone(&d, room, *hz, dir.path())).collect();
    for ((room, _, _), (leg, _, _)) in calls.iter().zip(phones.iter_mut()) {
        d.wait_for_participants(room, 1, &mut [leg], JOIN_WAIT);
    }
    let browsers: Vec<PeerHandle> = calls
        .iter()
        .map(|(room, hz, _)| {
            let args = ["--publish-tone", &hz.to_string(), "--receive", "4", "--duration", "9"];
            d.join_peer(WEBRTCBIN, room, "browser", &args, Duration::from_secs(60))
        })
        .collect();
    let browsers: Vec<PeerOutput> = browsers.into_iter().map(PeerHandle::wait).collect();
    let legs: Vec<PeerOutput> = phones
        .iter_mut()
        .map(|(leg, _, stop)| {
            std::fs::write(stop, b"").unwrap();
            leg.take().unwrap().wait()
        })
        .collect();

    for (i, (room, browser_hz, phone_hz)) in calls.iter().enumerate() {
        // The WebRTC peer reached its worker's port (ICE with the answer's candidate), and
        // heard its own room's phone, forwarded: Opus on both sides, two parties.
        let b = &browsers[i];
        let j = b.expect_ok();
        assert_eq!(j["connection_state"], "connected", "{room}: {}", b.describe());
        let hz = j["dominant_hz"].as_f64().unwrap_or_else(|| panic!("{room}: nothing decoded: {}", b.describe()));
        assert!((hz - *phone_hz as f64).abs() <= 10.0, "{room}: the browser heard {hz:.1} Hz: {}", b.describe());
        assert!(j["rms"].as_f64().unwrap_or(0.0) > 0.05, "{room}: too quiet: {}", b.describe());
        let slot = &j["join"]["subscriptions"][0];
        assert_eq!(slot["publisher_id"], legs[i].json["participant_id"], "{room}: {}", j["join"]);
        assert_eq!(slot["route"], "forward", "{room}: {}", j["join"]);
        // And the phone heard its own room's browser.
        assert_leg_heard(&format!("the phone in {room}"), &legs[i], &phones[i].1, *browser_hz);
    }
}

/// A plain RTP offer from `port` that needs no peer behind it.

#[test]
fn answers_carry_each_workers_port_and_metrics_and_lists_cover_both() {
    let d = two_workers();
    rooms_on_both(&d, &["a", "b"]);
    let offer = fixture("webrtcbin_offer.sdp");
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for (room, worker) in [("a", 0), ("b", 1)] {
        let port = d.webrtc_port() + worker;
        assert_eq!(d.webrtc_port_of(room), port);
        let joined = d.join(room, &offer);
        assert_webrtc_answer(&offer, joined["sdp"].as_str().unwrap(), port);
        let leg = d.join(room, &pcmu_offer(phone.local_addr().unwrap().port()));
        // Each worker has its own slice of the leg range: worker 0 the lower half.
        let m = Sdp::parse(leg["sdp"].as_str().unwrap()).media.remove(0);
        let middle = d.ports.rtp_min + (d.ports.rtp_max - d.ports.rtp_min) / 2;
        assert_eq!(m.port < middle, worker == 0, "room {room}'s leg port {}, the range's middle {middle}", m.port);
    }

    // Every room, with its worker.
    let (s, list) = d.get_json("/v1/rooms");
    assert_eq!(s, 200);
    let placed: Vec<(String, u64)> = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["worker"].as_u64().unwrap()))
        .collect();
    assert_eq!(placed, [("a".to_string(), 0), ("b".to_string(), 1)], "{list}");

    // The gauges are the node's: both workers' rooms, summed (each worker reports every 500 ms).
    let want = [
        ("switchboard_rooms", vec![], 2.0),
        ("switchboard_participants", vec![("kind", "webrtc")], 2.0),
        ("switchboard_participants", vec![("kind", "rtp")], 2.0),
        ("switchboard_worker_rooms", vec![("worker", "0")], 1.0),
        ("switchboard_worker_rooms", vec![("worker", "1")], 1.0),
        ("switchboard_worker_participants", vec![("worker", "0")], 2.0),
        ("switchboard_worker_participants", vec![("worker", "1")], 2.0),
    ];
    let summed = poll_until(Duration::from_secs(3), || {
        let text = d.get_text("/metrics").1;
        want.iter().all(|(name, labels, v)| metric_value(&text, name, labels) == Some(*v)).then_some(text)
    });
    assert!(summed.is_some(), "expected {want:?} in\n{}", d.get_text("/metrics").1);
    let text = summed.unwrap();
    for w in ["0", "1"] {
        assert!(metric_value(&text, "switchboard_worker_cpu_seconds_total", &[("worker", w)]).is_some(), "{text}");
    }
}

#[test]
fn a_stalled_worker_fails_healthz_while_the_other_answers() {
    let d = two_workers();
    rooms_on_both(&d, &["calm", "stuck"]);
    let (s, v) = d.post_json("/v1/debug/stall", &json!({"ms": 4000, "worker": 1}));
    assert_eq!(s, 202, "{v}");
    let asked = Instant::now();
    let failed = poll_until(Duration::from_millis(3500), || {
        let got = d.get_json("/healthz");
        (got.0 == 503).then_some(got)
    });
    let got = failed.expect("/healthz did not notice worker 1's stall");
    assert_api_error(&got, 503, "media_stalled");
    assert!(got.1["error"]["message"].as_str().unwrap().contains("worker 1"), "{}", got.1);
    // Worker 0 is not held up by worker 1: its room answers at once.
    let t = Instant::now();
    assert_eq!(d.get_json("/v1/rooms/calm").0, 200);
    assert!(t.elapsed() < Duration::from_millis(500), "a room on worker 0 took {:?}", t.elapsed());
    assert!(asked.elapsed() < Duration::from_secs(4), "the stall ended before the checks (load?)");
    let ok = poll_until(Duration::from_secs(5), || (d.get_text("/healthz").0 == 200).then_some(()));
    assert!(ok.is_some(), "/healthz did not recover after the stall");
    assert_api_error(&d.post_json("/v1/debug/stall", &json!({"ms": 1, "worker": 2})), 400, "bad_request");
}

#[test]
fn a_worker_that_panics_closes_only_its_own_rooms() {
    require_rtp_leg();
    let d = two_workers();
    d.create_room("alive");
    let doomed_events = d.create_and_follow("doomed");
    let alive_events = d.events("alive");
    assert_eq!((d.worker_of("alive"), d.worker_of("doomed")), (0, 1));
    // On worker 1, a WebRTC participant and a phone leg (no peers needed behind them).
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let doomed: Vec<String> = [fixture("webrtcbin_offer.sdp"), pcmu_offer(phone.local_addr().unwrap().port())]
        .iter()
        .map(|offer| d.join("doomed", offer)["id"].as_str().unwrap().to_string())
        .collect();
    // On worker 0, a call between two phone legs that goes on across the failure.
    let dir = tempfile::tempdir().unwrap();
    let (files, mut legs) =
        spawn_tone_legs(&d, "alive", &[("low", 440.0), ("high", 660.0)], 0.5, 9.0, dir.path(), Duration::from_secs(60));
    let alive = d.wait_for_participants("alive", 2, &mut legs, JOIN_WAIT);
    std::thread::sleep(Duration::from_secs(2));

    let (s, v) = d.post_json("/v1/debug/stall", &json!({"worker": 1, "panic": true}));
    assert_eq!(s, 202, "{v}");
    // Each of worker 1's participants leaves with internal_error, then its room finishes.
    for id in &doomed {
        let left = doomed_events.wait_for_participant_event("participant_left", id, Duration::from_secs(5));
        assert_eq!(left.data["reason"], "internal_error", "{}", left.data);
    }
    let finished = doomed_events.wait_for("room_finished", Duration::from_secs(2));
    assert_eq!(finished["reason"], "internal_error", "{finished}");
    let health = d.get_json("/healthz");
    assert_api_error(&health, 503, "media_worker_failed");
    assert!(health.1["error"]["message"].as_str().unwrap().contains("worker 1"), "{}", health.1);
    assert_api_error(&d.get_json("/v1/rooms/doomed"), 404, "room_not_found");
    let text = d.get_text("/metrics").1;
    let counted = metric_value(&text, "switchboard_participants_left_total", &[("reason", "internal_error")]);
    assert_eq!(counted, Some(2.0), "{text}");

    // Worker 0's call goes on: both legs hear each other to the end, and nobody there left.
    let outs: Vec<PeerOutput> = legs.iter_mut().map(|l| l.take().unwrap().wait()).collect();
    assert_leg_heard("low", &outs[0], &files[0], 660.0);
    assert_leg_heard("high", &outs[1], &files[1], 440.0);
    for id in &alive {
        let left = alive_events.wait_for_participant_event("participant_left", id, Duration::from_secs(5));
        assert_eq!(left.data["reason"], "requested", "a leg of the live room left early: {}", left.data);
    }
    // A new join places the failed worker's room afresh on the one that runs.
    d.join("doomed", &pcmu_offer(phone.local_addr().unwrap().port()));
    assert_eq!(d.worker_of("doomed"), 0);
    let (s, list) = d.get_json("/v1/rooms");
    assert_eq!(s, 200, "listing skips the failed worker: {list}");
}
