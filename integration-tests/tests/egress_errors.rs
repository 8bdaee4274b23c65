//! What an egress cannot do is said, never a 5xx: a request it cannot carry out is a 400 naming
//! why, a limit is a 429, and an output that fails once started (a directory it cannot write)
//! is `egress_failed` with the reason, while the room's call goes on. An egress whose room is
//! deleted ends with its files finalised.

use std::time::Duration;

use switchboard_integration_tests::*;

const WAIT: Duration = Duration::from_secs(15);

fn phone_room(d: &Daemon, room: &str) -> std::net::UdpSocket {
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    d.join(room, &pcmu_offer(phone.local_addr().unwrap().port()));
    phone
}

#[test]
fn requests_it_cannot_carry_out_are_400_naming_why() {
    let d = Daemon::start();
    d.create_room("empty");
    let post = |room: &str, body: Value| d.post_json(&format!("/v1/rooms/{room}/egress"), &body);
    let file = json!([{"type": "file"}]);
    let r = post("empty", json!({"kind": "tracks", "outputs": file}));
    assert_api_error(&r, 400, "bad_request");
    assert!(r.1["error"]["message"].as_str().unwrap().contains("no published track"), "{}", r.1);
    let _phone = phone_room(&d, "empty");
    for (body, says) in [
        (json!({"kind": "tracks", "outputs": [{"type": "ftp"}]}), "unknown output type"),
        (
            json!({"kind": "composite", "outputs": [{"type": "whip", "url": "http://127.0.0.1/whip/b"}]}),
            "not built yet",
        ),
        (json!({"kind": "tracks", "outputs": [{"type": "hls"}]}), "composite"),
        (json!({"kind": "composite", "outputs": [{"type": "rtmp", "url": "http://127.0.0.1/live/x"}]}), "rtmp://"),
        (json!({"kind": "composite", "outputs": [{"type": "rtmp"}]}), "needs a url"),
        (json!({"kind": "composite", "outputs": [{"type": "s3", "bucket": "missing"}]}), "not built yet"),
        (json!({"kind": "video-wall", "outputs": file}), "unknown kind"),
        (json!({"kind": "tracks", "outputs": []}), "at least one"),
        (json!({"kind": "composite", "outputs": [{"type": "file", "format": "avi"}]}), "mp4 or webm"),
    ] {
        let r = post("empty", body.clone());
        assert_api_error(&r, 400, "bad_request");
        assert!(r.1["error"]["message"].as_str().unwrap().contains(says), "{body} -> {}", r.1);
    }
    let r = post("nowhere", json!({"kind": "tracks", "outputs": file}));
    assert_api_error(&r, 404, "room_not_found");
    assert_api_error(&d.get_json("/v1/rooms/empty/egress/0123456789abcdef"), 404, "egress_not_found");
    assert_api_error(&d.delete("/v1/rooms/empty/egress/0123456789abcdef"), 404, "egress_not_found");
    let (status, list) = d.get_json("/v1/rooms/empty/egress");
    assert_eq!((status, list), (200, json!([])));
}

#[test]
fn an_output_that_cannot_write_fails_with_the_reason_and_the_call_goes_on() {
    require_gstreamer();
    // A regular file where the directory should be: nothing can be created under it.
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let d = Daemon::start_with(|c| {
        c.set("egress", "dir", blocker.to_str().unwrap());
    });
    let sse = d.create_and_follow("call");
    let _phone = phone_room(&d, "call");
    let (status, e) = d.post_json("/v1/rooms/call/egress", &json!({"kind": "tracks", "outputs": [{"type": "file"}]}));
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["state"], "failed", "{e}");
    assert!(e["error"].as_str().unwrap().contains("cannot be used"), "{e}");
    let ev = sse.wait_for("egress_failed", WAIT);
    assert_eq!(ev["egress_id"], e["id"], "{ev}");
    assert!(ev["reason"].as_str().unwrap().contains("cannot be used"), "{ev}");
    // The reason names the directory, never more than the operator configured.
    assert_eq!(d.participants_of("call").len(), 1, "the phone is still in the call");
}

#[test]
fn an_unreachable_rtmp_url_fails_the_egress_with_the_reason() {
    require_gstreamer();
    let d = Daemon::start();
    let sse = d.create_and_follow("nowhere");
    let _phone = phone_room(&d, "nowhere");
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("rtmp://127.0.0.1:{port}/live/hidden-key");
    let body = json!({"kind": "composite", "outputs": [{"type": "rtmp", "url": url}]});
    let (status, e) = d.post_json("/v1/rooms/nowhere/egress", &body);
    assert_eq!(status, 201, "{e}");
    let failed = if e["state"] == "failed" { e.clone() } else { sse.wait_for("egress_failed", WAIT) };
    let reason = failed["error"].as_str().or(failed["reason"].as_str()).unwrap_or_default();
    assert!(!reason.is_empty() && !reason.contains("hidden-key"), "{failed}");
    assert!(!d.log().contains("hidden-key"), "the stream key is in the log");
    assert_eq!(d.participants_of("nowhere").len(), 1, "the phone is still in the room");
}

#[test]
fn limits_are_429_and_a_deleted_room_ends_its_egress() {
    require_gstreamer();
    let rx = WebhookReceiver::start();
    let d = Daemon::start_with(|c| {
        c.set("egress", "max_per_room", 1);
        c.add_table("webhooks", json!({"url": rx.url("/hooks"), "key": TEST_KID}));
    });
    let sse = d.create_and_follow("busy");
    let _phone = phone_room(&d, "busy");
    let body = json!({"kind": "tracks", "outputs": [{"type": "file"}]});
    let (status, first) = d.post_json("/v1/rooms/busy/egress", &body);
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["state"], "active", "{first}");
    let r = d.post_json("/v1/rooms/busy/egress", &body);
    assert_api_error(&r, 429, "egress_limit");
    assert!(r.1["error"]["message"].as_str().unwrap().contains("egress.max_per_room"), "{}", r.1);

    let (status, _) = d.delete("/v1/rooms/busy");
    assert_eq!(status, 204);
    let path = format!("/v1/rooms/busy/egress/{}", first["id"].as_str().unwrap());
    let ended = poll_until(WAIT, || {
        let v = d.get_json(&path).1;
        (v["state"] == "complete").then_some(v)
    })
    .unwrap_or_else(|| panic!("the egress of a deleted room did not end: {}", d.get_json(&path).1));
    assert!(ended["ended_at"].as_u64().is_some(), "{ended}");
    drop(sse);
    // The room is gone, so its end reaches the webhooks alone, after its start.
    let posts = rx.wait_until(WAIT, "egress_ended", |p| p.iter().any(|p| p.event() == "egress_ended"));
    let names: Vec<&str> = posts.iter().map(|p| p.event()).filter(|e| e.starts_with("egress_")).collect();
    assert_eq!(names, ["egress_started", "egress_ended"], "{names:?}");
    let end = posts.iter().find(|p| p.event() == "egress_ended").unwrap();
    assert_eq!(end.json["room"], "busy", "{}", end.json);
    assert!(end.json.to_string().contains("room_finished"), "{}", end.json);
}

#[test]
fn stopping_the_daemon_finalises_the_recordings_first() {
    require_gstreamer();
    require_ffprobe();
    let rx = WebhookReceiver::start();
    let mut d = Daemon::start_with(|c| {
        c.add_table("webhooks", json!({"url": rx.url("/hooks"), "key": TEST_KID}));
    });
    d.create_room("late");
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let joined = d.join("late", &pcmu_offer(phone.local_addr().unwrap().port()));
    // The phone's track is recorded in WAV: send it PCMU from the phone's socket.
    let port = joined["sdp"].as_str().unwrap().lines().find_map(|l| l.strip_prefix("m=audio ")).unwrap();
    let port: u16 = port.split(' ').next().unwrap().parse().unwrap();
    let (status, e) = d.post_json("/v1/rooms/late/egress", &json!({"kind": "tracks", "outputs": [{"type": "file"}]}));
    assert_eq!(status, 201, "{e}");
    let path = format!("/v1/rooms/late/egress/{}", e["id"].as_str().unwrap());
    for seq in 0..150u16 {
        phone.send_to(&pcmu_packet(seq, 0x1234), ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let file = d.get_json(&path).1["outputs"][0]["files"][0]["path"].as_str().map(String::from);
    let file = file.unwrap_or_else(|| panic!("no file started: {}", d.get_json(&path).1));
    d.terminate();
    assert!(d.wait_exit(WAIT).is_some_and(|s| s.success()), "the daemon did not stop cleanly");
    let posts = rx.posts();
    let end = posts.iter().find(|p| p.event() == "egress_ended").expect("egress_ended was sent");
    assert!(end.json.to_string().contains("shutdown"), "{}", end.json);
    let secs = media_duration(std::path::Path::new(&file));
    assert!(secs > 1.5, "the WAV lasts {secs} s");
}

#[test]
fn an_egress_left_alone_in_its_room_ends() {
    require_gstreamer();
    let d = Daemon::start();
    let sse = d.create_and_follow("alone");
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let joined = d.join("alone", &pcmu_offer(phone.local_addr().unwrap().port()));
    let body = json!({"kind": "tracks", "outputs": [{"type": "file"}]});
    let (status, e) = d.post_json("/v1/rooms/alone/egress", &body);
    assert_eq!(status, 201, "{e}");
    let (status, _) = d.delete(&format!("/v1/rooms/alone/participants/{}", joined["id"].as_str().unwrap()));
    assert_eq!(status, 204);
    let ended = sse.wait_for("egress_ended", WAIT);
    assert_eq!(ended["egress_id"], e["id"], "{ended}");
    assert_eq!(ended["reason"], "room_empty", "{ended}");
    // Its subscriber has left too, so the room can empty and be removed as usual.
    poll_until(WAIT, || d.participants_of("alone").is_empty().then_some(())).expect("the egress's subscriber left");
}
