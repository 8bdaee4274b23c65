//! The video MCU, between GStreamer webrtcbin peers (peers/webrtcbin_peer.py): publishers send a
//! solid red and a solid blue picture (VP8, 320×240), and subscribers decode what the bridge
//! sends them and report the picture's size and colours.
//!
//! - A subscriber that asks for `"video": "composite"` gets one picture with both publishers
//!   side by side (the bridge's composite is 640×360: each 320×240 input is letterboxed into a
//!   320×360 tile).
//! - A subscriber that offers only H.264, where the publishers send VP8, gets the composite too,
//!   encoded in H.264: it shares no codec with them.

use std::time::Duration;

use switchboard_integration_tests::*;

const PEER: &str = "webrtcbin_peer.py";
const RED: &str = "0xffff0000";
const BLUE: &str = "0xff0000ff";
const JOIN: Duration = Duration::from_secs(15);

fn rgb(sub: &Value, point: &str) -> (u64, u64, u64) {
    let p = &sub["video_pixels"][point];
    let c = |i: usize| p[i].as_u64().unwrap_or_else(|| panic!("no colour at {point}: {sub}"));
    (c(0), c(1), c(2))
}

#[track_caller]
fn assert_colour(sub: &PeerOutput, point: &str, want: &str) {
    let (r, g, b) = rgb(&sub.json, point);
    let ok = match want {
        "red" => r > 180 && g < 70 && b < 70,
        "blue" => b > 180 && r < 70 && g < 70,
        "black" => r < 40 && g < 40 && b < 40,
        _ => unreachable!(),
    };
    assert!(ok, "at {point} the picture is ({r}, {g}, {b}), not {want}: {}", sub.describe());
}

#[track_caller]
fn assert_composite_slot(sub: &PeerOutput, codec: &str) {
    let subs = sub.json["join"]["subscriptions"].as_array().cloned().unwrap_or_default();
    let video: Vec<&Value> = subs.iter().filter(|s| s["kind"] == "video").collect();
    assert_eq!(video.len(), 1, "one video slot: {}", sub.describe());
    assert_eq!(video[0]["route"], "composite", "{}", sub.describe());
    assert_eq!(video[0]["codec"], codec, "{}", sub.describe());
}

#[test]
fn a_composite_subscriber_sees_both_publishers_side_by_side() {
    require_gstreamer();
    let d = Daemon::start();
    let sse = d.create_and_follow("grid");
    let mut red = Some(d.join_peer(PEER, "grid", "red", &["--publish-video", RED, "--duration", "20"], JOIN * 4));
    d.wait_for_participants("grid", 1, &mut [&mut red], JOIN);
    let mut blue = Some(d.join_peer(PEER, "grid", "blue", &["--publish-video", BLUE, "--duration", "18"], JOIN * 4));
    d.wait_for_participants("grid", 2, &mut [&mut red, &mut blue], JOIN);

    let args = ["--receive-video", "--video-pref", "composite", "--duration", "7"];
    let mut viewer = Some(d.join_peer(PEER, "grid", "viewer", &args, JOIN * 4));
    d.wait_for_participants("grid", 3, &mut [&mut viewer], JOIN);
    // While the viewer watches: one composite, one VP8 encoder, and the metrics say so.
    std::thread::sleep(Duration::from_secs(4));
    let (_, metrics) = d.get_text("/metrics");
    let sub = viewer.take().unwrap().wait();
    let j = sub.expect_ok();
    assert_composite_slot(&sub, "vp8");
    assert_eq!(metric_value(&metrics, "switchboard_subscriptions", &[("route", "composite")]), Some(1.0), "{metrics}");
    assert_eq!(metric_value(&metrics, "switchboard_mixer_stages", &[("stage", "video_encoders")]), Some(1.0));

    // 15 pictures a second for most of 7 s.
    let frames = j["video_frames"].as_u64().unwrap_or(0);
    assert!(frames >= 45, "only {frames} pictures decoded: {}", sub.describe());
    assert_eq!((j["video_width"].as_u64(), j["video_height"].as_u64()), (Some(640), Some(360)), "{}", sub.describe());
    // Publication order: red joined first, so it is the left tile.
    assert_colour(&sub, "0.25,0.5", "red");
    assert_colour(&sub, "0.75,0.5", "blue");
    assert_colour(&sub, "0.25,0.04", "black");

    let viewer_id = j["participant_id"].as_str().unwrap().to_string();
    let ev = sse.wait_for_event_matching(
        "route_changed",
        |e| e["participant_id"] == viewer_id.as_str() && e["route"] == "composite",
        Duration::from_secs(2),
    );
    assert!(ev.data["publisher_id"].is_null(), "a composite has no single publisher: {:?}", ev.data);
    for p in [red, blue] {
        let out = p.unwrap().wait();
        let pj = out.expect_ok();
        assert!(pj["sent_rtp_packets"].as_u64().unwrap_or(0) > 100, "publisher sent too little: {}", out.describe());
    }
}

#[test]
fn a_subscriber_without_the_publishers_codec_gets_the_composite_in_its_own() {
    require_gstreamer();
    let d = Daemon::start();
    let mut red = Some(d.join_peer(PEER, "h264", "red", &["--publish-video", RED, "--duration", "16"], JOIN * 4));
    d.wait_for_participants("h264", 1, &mut [&mut red], JOIN);

    // No preference given: the policy picks the composite because the viewer takes no VP8.
    let args = ["--receive-video", "--video-codec", "h264", "--duration", "7"];
    let sub = d.join_peer(PEER, "h264", "viewer", &args, JOIN * 4).wait();
    let j = sub.expect_ok();
    assert_composite_slot(&sub, "h264");
    let frames = j["video_frames"].as_u64().unwrap_or(0);
    assert!(frames >= 45, "only {frames} H.264 pictures decoded: {}", sub.describe());
    assert_eq!((j["video_width"].as_u64(), j["video_height"].as_u64()), (Some(640), Some(360)), "{}", sub.describe());
    // One input fills the picture's height, pillarboxed.
    assert_colour(&sub, "0.5,0.5", "red");
    assert_colour(&sub, "0.04,0.5", "black");
    red.unwrap().wait().expect_ok();
}

#[test]
fn a_browser_viewer_decodes_the_composite() {
    require_gstreamer();
    require_chromium();
    let d = Daemon::start();
    let mut red = Some(d.join_peer(PEER, "web", "red", &["--publish-video", RED, "--duration", "25"], JOIN * 4));
    d.wait_for_participants("web", 1, &mut [&mut red], JOIN);
    let mut blue = Some(d.join_peer(PEER, "web", "blue", &["--publish-video", BLUE, "--duration", "24"], JOIN * 4));
    d.wait_for_participants("web", 2, &mut [&mut red, &mut blue], JOIN);

    let args = ["--recvonly", "--video-pref", "composite", "--duration", "8"];
    let viewer = d.join_peer("chromium_peer.mjs", "web", "browser", &args, JOIN * 4).wait();
    let j = viewer.expect_ok();
    let subs = j["join"]["subscriptions"].as_array().cloned().unwrap_or_default();
    let video: Vec<&Value> = subs.iter().filter(|s| s["kind"] == "video").collect();
    assert_eq!(video.len(), 1, "{}", viewer.describe());
    assert_eq!(video[0]["route"], "composite", "{}", viewer.describe());
    let v = &j["inbound"]["video"];
    let frames = v["framesDecoded"].as_u64().unwrap_or(0);
    // 15 pictures a second for most of 8 s.
    assert!(frames >= 60, "Chromium decoded only {frames} composite pictures: {}", viewer.describe());
    let stream = &v["streams"][0];
    assert_eq!(
        (stream["frameWidth"].as_u64(), stream["frameHeight"].as_u64()),
        (Some(640), Some(360)),
        "the composite's size: {}",
        viewer.describe()
    );
    for p in [red, blue] {
        p.unwrap().wait().expect_ok();
    }
}
