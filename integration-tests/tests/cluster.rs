//! A cluster (`[cluster]`): three daemons on 127.0.0.2, .3 and .4 share one `redis-server` of
//! the test's own. A room is served by its owner whichever node a request enters; a killed
//! node's rooms are released and announced (`room_lost`) and re-created by the next join; a
//! draining node gets no new rooms; two nodes creating one room at once agree on its owner.
//!
//! The peers: phone legs (peers/rtp_leg.py) and GStreamer webrtcbin (peers/webrtcbin_peer.py),
//! each sending a tone and checking what it hears.

use std::path::Path;
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

/// A node of the cluster: its API on `127.0.0.<host>`, its media on the harness's loopback ports.
fn node(redis: &RedisServer, id: &str, host: u8, f: impl FnOnce(&mut Config)) -> Daemon {
    let url = redis.url();
    Daemon::start_with(|c| {
        let port =
            c.get("http", "listen").and_then(Value::as_str).and_then(|l| l.rsplit(':').next()?.parse::<u16>().ok());
        let port = port.expect("the harness sets http.listen");
        c.set("http", "listen", format!("127.0.0.{host}:{port}"));
        c.set("cluster", "redis_url", url);
        c.set("cluster", "node_id", id);
        c.set("cluster", "heartbeat_ms", 500);
        c.set("cluster", "node_ttl_ms", 2000);
        f(c);
    })
}

fn node_ids(d: &Daemon) -> Vec<String> {
    let (s, v) = d.get_json("/v1/nodes");
    assert_eq!(s, 200, "{v}");
    let mut ids: Vec<String> =
        v["nodes"].as_array().into_iter().flatten().filter_map(|n| n["id"].as_str().map(String::from)).collect();
    ids.sort();
    ids
}

fn wait_nodes(d: &Daemon, want: &[&str], within: Duration) {
    let got = poll_until(within, || (node_ids(d) == want).then_some(()));
    assert!(got.is_some(), "GET /v1/nodes on {}: {:?}, expected {want:?} within {within:?}", d.base_url, node_ids(d));
}

fn owner(d: &Daemon, room: &str) -> String {
    let (s, v) = d.get_json(&format!("/v1/rooms/{room}"));
    assert_eq!(s, 200, "GET /v1/rooms/{room} on {}: {v}", d.base_url);
    v["node"].as_str().unwrap_or_else(|| panic!("no node in {v}")).to_string()
}

/// A phone leg through `d` in `room`, sending `hz` in PCMU and saving what it hears to `audio`.
fn phone(d: &Daemon, room: &str, name: &str, hz: f32, seconds: f64, audio: &Path) -> PeerHandle {
    d.join_peer(RTP_LEG, room, name, &tone_leg_args(hz, 0.3, seconds, audio), Duration::from_secs(60))
}

#[test]
fn a_room_is_served_by_its_owner_whichever_node_a_party_enters() {
    require_rtp_leg();
    require_gstreamer();
    let redis = RedisServer::start();
    // Only c has capacity for new rooms, so r lands there whichever node is asked: the create
    // through a, the phone through b and the event stream through a are all proxied.
    let full = |c: &mut Config| {
        c.set("cluster", "capacity", 0);
    };
    let (a, b, c) = (node(&redis, "a", 2, full), node(&redis, "b", 3, full), node(&redis, "c", 4, |_| {}));
    for d in [&a, &b, &c] {
        wait_nodes(d, &["a", "b", "c"], Duration::from_secs(5));
    }
    let (s, v) = a.post_json("/v1/rooms", &json!({ "id": "r" }));
    assert_eq!(s, 201, "{v}");
    let home = v["node"].as_str().expect("the created room names its node").to_string();
    assert_eq!(home, "c", "{v}");
    // Every node tells the same owner, and lists the room once.
    for d in [&a, &b, &c] {
        assert_eq!(owner(d, "r"), home, "{}", d.base_url);
        let (_, list) = d.get_json("/v1/rooms");
        let rooms: Vec<&Value> = list["rooms"].as_array().into_iter().flatten().filter(|r| r["id"] == "r").collect();
        assert_eq!(rooms.len(), 1, "GET /v1/rooms on {}: {list}", d.base_url);
    }
    // A second create through another node is the same room, already there.
    let (s, v) = b.post_json("/v1/rooms", &json!({ "id": "r" }));
    assert_eq!(s, 409, "{v}");

    // The room's event stream through a node that does not hold it.
    let sse = SseClient::connect(&a.base_url, "/v1/rooms/r/events");
    let dir = tempfile::tempdir().unwrap();
    let (fb, fa) = (dir.path().join("b.s16le"), dir.path().join("a.s16le"));
    // Three parties: a phone through b (660 Hz), one through a (880 Hz), a browser through c
    // (440 Hz).
    let (mut leg_b, mut leg_a) =
        (Some(phone(&b, "r", "phone-b", 660.0, 16.0, &fb)), Some(phone(&a, "r", "phone-a", 880.0, 16.0, &fa)));
    b.wait_for_participants("r", 2, &mut [&mut leg_b, &mut leg_a], JOIN_WAIT);
    let browser = c.join_peer(
        "webrtcbin_peer.py",
        "r",
        "browser",
        &["--publish-tone", "440", "--receive", "4", "--duration", "9"],
        Duration::from_secs(60),
    );
    sse.wait_for_matching("participant_joined", |v| v["kind"] == "webrtc", Duration::from_secs(20));
    // All three are in the room, whichever node is asked.
    let (_, view) = a.get_json("/v1/rooms/r");
    let browser = browser.wait();
    let (leg_b, leg_a) = (leg_b.take().unwrap().wait(), leg_a.take().unwrap().wait());
    let kinds: Vec<&str> =
        view["participants"].as_array().into_iter().flatten().filter_map(|p| p["kind"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "rtp").count(), 2, "room r through node a: {view}");

    // The browser's one audio slot carries the two phones (a mix): it hears them, not itself.
    let j = browser.expect_ok();
    assert_eq!(j["connection_state"], "connected", "{}", browser.describe());
    let hz = j["dominant_hz"].as_f64().unwrap_or_else(|| panic!("the browser decoded nothing: {}", browser.describe()));
    assert!(
        (hz - 660.0).abs() <= 10.0 || (hz - 880.0).abs() <= 10.0,
        "the browser through node c heard {hz:.1} Hz: {}",
        browser.describe()
    );
    assert!(j["rms"].as_f64().unwrap_or(0.0) > 0.05, "the browser heard too little: {}", browser.describe());
    // Each phone, while the browser was in, hears the other two and not itself.
    let t = j["first_rtp_unix_s"].as_f64().unwrap_or_else(|| panic!("no first_rtp_unix_s: {}", browser.describe()));
    let window = (t + 2.0, t + 6.0);
    for (name, out, file, own, others) in
        [("phone-b", &leg_b, &fb, 660.0, [440.0, 880.0]), ("phone-a", &leg_a, &fa, 880.0, [440.0, 660.0])]
    {
        let (heard, rate) = leg_heard_all(out, file, window);
        let own_db = tone_level_db(&heard, rate, own);
        for hz in others {
            let db = tone_level_db(&heard, rate, hz);
            assert!(db > -25.0, "{name} does not hear {hz} Hz ({db:.1} dBFS): {}", out.describe());
            assert!(own_db < db - 20.0, "{name} hears itself: own {own_db:.1} dBFS against {hz} Hz at {db:.1}");
        }
    }
}

#[test]
fn a_killed_nodes_rooms_are_announced_lost_and_re_created_by_the_next_join() {
    require_rtp_leg();
    let redis = RedisServer::start();
    let rx = WebhookReceiver::start();
    let hook = |c: &mut Config| {
        c.add_table("webhooks", json!({ "url": rx.url("/in"), "key": TEST_KID }));
    };
    let mut nodes = vec![node(&redis, "a", 2, hook), node(&redis, "b", 3, hook), node(&redis, "c", 4, hook)];
    wait_nodes(&nodes[0], &["a", "b", "c"], Duration::from_secs(5));
    let (s, v) = nodes[0].post_json("/v1/rooms", &json!({ "id": "doomed" }));
    assert_eq!(s, 201, "{v}");
    let home = v["node"].as_str().unwrap().to_string();
    let (s, p) = nodes[1].post_json("/v1/rooms/doomed/participants", &json!({ "sdp": pcmu_offer(40_000) }));
    assert_eq!(s, 201, "{p}");
    let pid = p["id"].as_str().unwrap().to_string();
    // The owner's heartbeat carries the participant before it dies.
    std::thread::sleep(Duration::from_millis(800));

    let idx = ["a", "b", "c"].iter().position(|n| *n == home).unwrap();
    let mut dead = nodes.remove(idx);
    dead.kill_hard();
    let killed = Instant::now();
    let survivors: Vec<&str> = ["a", "b", "c"].into_iter().filter(|n| *n != home).collect();
    wait_nodes(&nodes[0], &survivors, Duration::from_secs(10));
    eprintln!("node {home} left GET /v1/nodes {:?} after the kill", killed.elapsed());

    let posts = rx.wait_until(Duration::from_secs(10), "room_lost", |p| p.iter().any(|p| p.event() == "room_lost"));
    let lost: Vec<&WebhookPost> = posts.iter().filter(|p| p.event() == "room_lost").collect();
    assert_eq!(lost.len(), 1, "room_lost once, from one survivor: {posts:?}");
    let body = &lost[0].json;
    assert_eq!((&body["room"], &body["node"]), (&json!("doomed"), &json!(home)), "{body}");
    assert_eq!(body["participants"][0]["id"], pid.as_str(), "the participants it had: {body}");
    // Until the next join the room is gone: 410 room_lost on every survivor.
    for d in &nodes {
        assert_api_error(&d.get_json("/v1/rooms/doomed"), 410, "room_lost");
    }

    // The next join re-creates it on a live node, and media flows again.
    let dir = tempfile::tempdir().unwrap();
    let (fa, fb) = (dir.path().join("x.s16le"), dir.path().join("y.s16le"));
    let mut x = Some(phone(&nodes[0], "doomed", "x", 440.0, 8.0, &fa));
    nodes[0].wait_for_participants("doomed", 1, &mut [&mut x], JOIN_WAIT);
    let new_home = owner(&nodes[1], "doomed");
    assert_ne!(new_home, home, "re-created on a live node");
    let y = phone(&nodes[1], "doomed", "y", 880.0, 8.0, &fb).wait();
    let x = x.take().unwrap().wait();
    assert_leg_heard("x", &x, &fa, 880.0);
    assert_leg_heard("y", &y, &fb, 440.0);
}

#[test]
fn a_draining_node_gets_no_new_rooms_and_exits_once_its_rooms_are_empty() {
    let redis = RedisServer::start();
    // b alone first, so its room is its own; then a and c.
    let mut b = node(&redis, "b", 3, |c| {
        c.set("node", "drain_timeout_secs", 60);
        c.set("media", "inactivity_timeout_secs", 120);
    });
    let (s, v) = b.post_json("/v1/rooms", &json!({ "id": "stay" }));
    assert_eq!((s, v["node"].as_str()), (201, Some("b")), "{v}");
    let (s, p) = b.post_json("/v1/rooms/stay/participants", &json!({ "sdp": pcmu_offer(40_002) }));
    assert_eq!(s, 201, "{p}");
    let (a, c) = (node(&redis, "a", 2, |_| {}), node(&redis, "c", 4, |_| {}));
    wait_nodes(&a, &["a", "b", "c"], Duration::from_secs(5));

    b.terminate();
    let draining = poll_until(Duration::from_secs(5), || {
        let (_, v) = a.get_json("/v1/nodes");
        v["nodes"].as_array()?.iter().find(|n| n["id"] == "b" && n["draining"] == true).map(|_| ())
    });
    assert!(draining.is_some(), "node b never showed as draining: {}", a.get_json("/v1/nodes").1);
    for i in 0..6 {
        let room = format!("new{i}");
        let (s, v) = b.post_json("/v1/rooms", &json!({ "id": room }));
        assert_eq!(s, 201, "a room created through the draining node: {v}");
        assert!(matches!(v["node"].as_str(), Some("a" | "c")), "{room} was placed on {}", v["node"]);
    }
    assert!(b.exited().is_none(), "node b left while its room still had a participant");
    let (s, _) = c.call_as(
        Some(admin_token()),
        "DELETE",
        &format!("/v1/rooms/stay/participants/{}", p["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(s, 204);
    let st = b.wait_exit(Duration::from_secs(10)).expect("node b exits once its room is empty");
    assert!(st.success(), "node b exited with {st}\n{}", b.log_tail(30));
    wait_nodes(&a, &["a", "c"], Duration::from_secs(3));
}

#[test]
fn two_nodes_creating_one_room_at_once_always_agree_on_its_owner() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis, "a", 2, |_| {}), node(&redis, "b", 3, |_| {}));
    wait_nodes(&a, &["a", "b"], Duration::from_secs(5));
    for i in 0..50 {
        let room = format!("race{i}");
        let body = json!({ "id": room });
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| a.post_json("/v1/rooms", &body));
            let tb = s.spawn(|| b.post_json("/v1/rooms", &body));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let mut statuses = [ra.0, rb.0];
        statuses.sort();
        assert_eq!(statuses, [201, 409], "{room}: one create wins, the other finds it made: {ra:?} {rb:?}");
        let (oa, ob) = (owner(&a, &room), owner(&b, &room));
        assert_eq!(oa, ob, "{room}: the nodes disagree");
    }
}

#[test]
fn a_join_its_full_owner_cannot_take_goes_to_a_part_of_the_room_on_another_node() {
    require_rtp_leg();
    let redis = RedisServer::start();
    let a = node(&redis, "a", 2, |c| {
        c.set("cluster", "capacity", 2);
    });
    let b = node(&redis, "b", 3, |_| {});
    wait_nodes(&a, &["a", "b"], Duration::from_secs(5));
    let (s, v) = a.post_json("/v1/rooms", &json!({ "id": "big" }));
    assert_eq!((s, v["node"].as_str()), (201, Some("a")), "{v}");
    let dir = tempfile::tempdir().unwrap();
    let file = |n: &str| dir.path().join(format!("{n}.s16le"));
    let spec = [("p1", 440.0_f32, 18.0), ("p2", 660.0, 18.0), ("p3", 880.0, 10.0)];
    let start = |d: &Daemon, (name, hz, secs): (&str, f32, f64)| {
        Some(d.join_peer(RTP_LEG, "big", name, &tone_leg_args(hz, 0.3, secs, &file(name)), Duration::from_secs(60)))
    };
    let (mut p1, mut p2) = (start(&a, spec[0]), start(&a, spec[1]));
    a.wait_for_participants("big", 2, &mut [&mut p1, &mut p2], JOIN_WAIT);
    // Node a's record says it is full before the third join.
    let full = poll_until(Duration::from_secs(5), || {
        let (_, v) = a.get_json("/v1/nodes");
        v["nodes"].as_array()?.iter().find(|n| n["id"] == "a" && n["participants"] == 2).map(|_| ())
    });
    assert!(full.is_some(), "{}", a.get_json("/v1/nodes").1);
    // The third joins through a, and lands on b, in a part of the room trunked to a.
    let p3 = start(&a, spec[2]).unwrap();
    let trunk = poll_until(Duration::from_secs(10), || {
        let (_, v) = a.get_json("/v1/rooms/big");
        v["participants"].as_array()?.iter().find(|p| p["display_name"] == "trunk to b").cloned()
    });
    let trunk =
        trunk.unwrap_or_else(|| panic!("no trunk from b in the owner's room: {}", a.get_json("/v1/rooms/big").1));
    assert_eq!(trunk["kind"], "srtp", "trunks are SDES-SRTP by default: {trunk}");
    let p3 = p3.wait();
    let outs = [p1.take().unwrap().wait(), p2.take().unwrap().wait(), p3];
    // On b: the part held p3 and the trunk; p3's leg talked to b's ports, not a's.
    let b_min = b.config.get("rtp", "port_min").and_then(Value::as_u64).unwrap();
    let b_max = b.config.get("rtp", "port_max").and_then(Value::as_u64).unwrap();
    let p3_port = outs[2].json["answer_sdp"]
        .as_str()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("m=audio ")?.split(' ').next()?.parse::<u64>().ok()));
    assert!(
        p3_port.is_some_and(|p| (b_min..=b_max).contains(&p)),
        "p3's answer port {p3_port:?} is not b's ({b_min}-{b_max}): {}",
        outs[2].json["answer_sdp"]
    );

    // Over the seconds p3 was in: each hears the other two, and not itself.
    let t3 = leg_joined_at(&outs[2]);
    let (from, to) = (t3 + 3.0, t3 + spec[2].2 - 1.0);
    for (i, (name, own, _)) in spec.iter().enumerate() {
        let (heard, rate) = leg_heard_all(&outs[i], &file(name), (from, to));
        let others: Vec<(f32, f32)> =
            spec.iter().filter(|s| s.0 != *name).map(|s| (s.1, tone_level_db(&heard, rate, s.1))).collect();
        let own_db = tone_level_db(&heard, rate, *own);
        eprintln!("{name} (sends {own} Hz) hears: own {own_db:.1} dBFS, others {others:?}");
        for (hz, db) in &others {
            assert!(*db > -25.0, "{name} does not hear {hz} Hz ({db:.1} dBFS): {}", outs[i].describe());
            assert!(own_db < db - 20.0, "{name} hears itself: own {own_db:.1} dBFS against {hz} Hz at {db:.1}");
        }
    }
}
