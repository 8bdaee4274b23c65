//! Every limit, reached: each answers its documented JSON error (docs/api.md), and the node goes
//! on serving. Small limits are configured so that each is reached in a few requests.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

fn join(d: &Daemon, room: &str, phone: &UdpSocket) -> (u16, Value) {
    let body = json!({"sdp": pcmu_dtmf_offer(phone.local_addr().unwrap().port())});
    d.post_json(&format!("/v1/rooms/{room}/participants"), &body)
}

#[test]
fn rooms_participants_caps_and_listeners_have_their_errors() {
    let d = Daemon::start_with(|c| {
        c.set("node", "max_rooms", 2);
        c.set("node", "max_participants", 3);
        c.set("rooms", "max_participants_cap", 10);
        c.set("rooms", "max_participants", 5);
        c.set("rooms", "max_event_listeners", 2);
    });
    let phones: Vec<UdpSocket> = (0..4).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    // Rooms per node.
    d.create_room("a");
    d.create_room("b");
    assert_api_error(&d.post_json("/v1/rooms", &json!({"id": "c"})), 503, "node_full");
    // Auto-creating a room by joining is held to the same limit.
    assert_api_error(&join(&d, "c", &phones[0]), 503, "node_full");
    // A room's max_participants is capped.
    assert_api_error(&d.post_json("/v1/rooms", &json!({"id": "x", "max_participants": 11})), 400, "bad_request");
    // Participants per node, over all rooms.
    assert_eq!(join(&d, "a", &phones[0]).0, 201);
    assert_eq!(join(&d, "a", &phones[1]).0, 201);
    assert_eq!(join(&d, "b", &phones[2]).0, 201);
    let full = join(&d, "b", &phones[3]);
    assert_api_error(&full, 503, "node_full");
    assert!(full.1["error"]["message"].as_str().unwrap_or("").contains("node.max_participants"), "{}", full.1);
    // Event listeners per room.
    let s1 = d.events("a");
    let s2 = d.events("a");
    assert_eq!((s1.status, s2.status), (200, 200));
    let r = d.raw("GET", "/v1/rooms/a/events", None, b"");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("too_many_listeners"), "{}", r.body);
    drop(s1);
    // A listener that went away frees its place.
    let again = poll_until(Duration::from_secs(5), || {
        let s = d.events("a");
        (s.status == 200).then_some(s)
    });
    assert!(again.is_some(), "a closed listener's place was not given back");
    // And the node is still fine.
    assert_eq!(d.get_json("/v1/rooms").0, 200);
}

#[test]
fn a_media_thread_that_does_not_answer_is_busy_then_timeout() {
    let d = Daemon::start_with(|c| {
        c.set("debug", "stall_hook", true);
        c.set("http", "command_timeout_ms", 300);
    });
    assert_eq!(d.post_json("/v1/debug/stall", &json!({"ms": 1500})).0, 202);
    let start = Instant::now();
    let got = d.get_json("/v1/rooms");
    let took = start.elapsed();
    assert_api_error(&got, 503, "busy");
    assert!(took < Duration::from_millis(1200), "busy came after {took:?}, not at the command timeout");
    // Once the thread is back, so is the API.
    let ok = poll_until(Duration::from_secs(5), || (d.get_json("/v1/rooms").0 == 200).then_some(()));
    assert!(ok.is_some(), "the API did not come back after the stall");

    // A request timeout shorter than the command timeout answers 503 `timeout`.
    let d = Daemon::start_with(|c| {
        c.set("debug", "stall_hook", true);
        c.set("http", "command_timeout_ms", 5000);
        c.set("http", "request_timeout_secs", 1);
    });
    assert_eq!(d.post_json("/v1/debug/stall", &json!({"ms": 2500})).0, 202);
    assert_api_error(&d.get_json("/v1/rooms"), 503, "timeout");
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off_and_connections_are_capped() {
    let d = Daemon::start_with(|c| {
        c.set("http", "header_timeout_secs", 1);
        c.set("http", "max_connections", 3);
    });
    let host = d.base_url.trim_start_matches("http://").to_string();
    // Half a request head, then silence.
    let mut slow = TcpStream::connect(&host).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(start.elapsed() < Duration::from_secs(4), "the slow client was held {:?}", start.elapsed());

    // Three idle connections take every place; a fourth is not served until one closes.
    let idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&host).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = TcpStream::connect(&host).unwrap();
    fourth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    fourth.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut first = [0u8; 12];
    assert!(fourth.read(&mut first).is_err(), "a connection past http.max_connections was served");
    // The idle ones are cut off by the header timeout, and the fourth is then served.
    drop(idle);
    fourth.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = fourth.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "the waiting connection was not served: {answer:?}");
}

#[test]
fn a_leg_holds_a_bounded_dtmf_queue() {
    let d = Daemon::start();
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (s, v) = join(&d, "dt", &phone);
    assert_eq!(s, 201, "{v}");
    let path = format!("/v1/rooms/dt/participants/{}/dtmf", v["id"].as_str().unwrap());
    let digits = "1".repeat(64);
    assert_eq!(d.post_json(&path, &json!({"digits": digits})).0, 202);
    assert_eq!(d.post_json(&path, &json!({"digits": digits})).0, 202);
    // 128 digits are queued or playing; 64 more do not fit.
    let over = d.post_json(&path, &json!({"digits": digits}));
    assert_api_error(&over, 429, "dtmf_queue_full");
}

#[test]
fn running_out_of_file_descriptors_is_no_resources_not_no_ports() {
    // 256 descriptors and 500 port pairs: descriptors run out first. The range is above the
    // kernel's ephemeral ports and below every other test's block.
    let d = Daemon::start_with(|c| {
        c.set("node", "open_files", 256);
        c.set("rtp", "port_min", 61000);
        c.set("rtp", "port_max", 61999);
        c.set("rtp", "port_quarantine_secs", 0);
    });
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut joined = 0;
    let last = loop {
        let r = join(&d, &format!("fd{}", joined / 2), &phone);
        if r.0 != 201 {
            break r;
        }
        joined += 1;
        assert!(joined < 400, "256 descriptors held {joined} legs");
    };
    assert!(joined > 50, "only {joined} legs before running out");
    assert_api_error(&last, 503, "no_resources");
    // The API still answers, and leaving gives the descriptors back.
    assert_eq!(d.get_json("/v1/rooms").0, 200);
    assert_eq!(d.delete("/v1/rooms/fd0").0, 204);
    assert_eq!(join(&d, "fd0", &phone).0, 201, "a join after descriptors were freed");
}
