//! Every route the router holds is checked for access, by walking the daemon's own route list
//! (`switchboard routes`): a new route cannot skip the token check without this test failing.
//! Each token route gets no token (401), an expired token (401), a token for another room (403)
//! and the right grant (2xx). The open routes are an explicit list and answer with no token.

use std::process::Command;

use switchboard_integration_tests::*;

/// The routes that need no token: health, and the demo page's static files.
const OPEN: &[&str] = &["GET /healthz", "GET /readyz", "GET /demo", "GET /sdk/switchboard.js"];

struct Route {
    method: String,
    path: String,
    open: bool,
}

fn routes() -> Vec<Route> {
    let out = Command::new(daemon_bin()).arg("routes").output().expect("run switchboard routes");
    assert!(out.status.success(), "switchboard routes: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let routes: Vec<Route> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "route line {l:?}");
            Route { method: f[0].into(), path: f[1].into(), open: f[2] == "open" }
        })
        .collect();
    assert!(routes.len() >= 14, "too few routes: {text}");
    routes
}

fn expired(room: &str) -> String {
    let now = unix_now() as u64;
    sign(&json!({"sub": "late", "room": room, "grants": ["admin", "publish", "subscribe"], "exp": now - 3600}))
}

/// The request a route gets, with what it needs already in place: the concrete path, the body,
/// the room the path names, and the token that has just the right grant.
struct Call {
    path: String,
    body: Option<Value>,
    /// An SDP body (WHIP, WHEP) instead of JSON.
    sdp: Option<String>,
    room: String,
    right: String,
    /// What the right grant gets: 2xx, except PATCH on a WHIP/WHEP session, which the bridge
    /// answers 405 (no trickle ICE) to whoever may reach it.
    expect_405: bool,
}

/// One participant of room `r1` with a published track, for the participant routes.
struct Fixture {
    participant: String,
    track: String,
    _phone: std::net::UdpSocket,
}

fn room_fixture(d: &Daemon) -> Fixture {
    d.create_room("r1");
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let v = d.join("r1", &pcmu_dtmf_offer(phone.local_addr().unwrap().port()));
    let participant = v["id"].as_str().unwrap().to_string();
    let track = v["tracks"][0]["id"].as_str().unwrap_or_else(|| panic!("no track in {v}")).to_string();
    Fixture { participant, track, _phone: phone }
}

/// A fresh participant in `r1`, for a route that removes one.
fn another_participant(d: &Daemon, phone: &std::net::UdpSocket) -> String {
    d.join("r1", &pcmu_dtmf_offer(phone.local_addr().unwrap().port()))["id"].as_str().unwrap().to_string()
}

fn call_for(d: &Daemon, f: &Fixture, r: &Route, n: usize, spare: &std::net::UdpSocket) -> Call {
    let admin_of = |room: &str| token(room, "admin", &["admin"]);
    let sub = |path: &str, id: &str| {
        path.replace("{room}", "r1").replace("{id}", id).replace("{participant}", id).replace("{track}", &f.track)
    };
    let p = &f.participant;
    let key = format!("{} {}", r.method, r.path);
    let mut sdp = None;
    let (path, body, room, right) = match key.as_str() {
        "POST /whip/{room}" => {
            sdp = Some(fixture("webrtcbin_offer.sdp"));
            (sub(&r.path, p), None, "r1".into(), token("r1", "obs", &["publish"]))
        }
        "POST /whep/{room}" => {
            sdp = Some(fixture("webrtcbin_recvonly_offer.sdp"));
            (sub(&r.path, p), None, "r1".into(), token("r1", "player", &["subscribe"]))
        }
        "DELETE /whip/{room}/{id}" | "DELETE /whep/{room}/{id}" => {
            let q = another_participant(d, spare);
            (sub(&r.path, &q), None, "r1".into(), admin_of("r1"))
        }
        "PATCH /whip/{room}/{id}" | "PATCH /whep/{room}/{id}" => (sub(&r.path, p), None, "r1".into(), admin_of("r1")),
        "POST /v1/rooms" => {
            let room = format!("made-{n}");
            ("/v1/rooms".into(), Some(json!({"id": room})), room.clone(), admin_of(&room))
        }
        "GET /v1/rooms" | "GET /metrics" | "GET /v1/nodes" => (r.path.clone(), None, "*".into(), admin_of("*")),
        "POST /v1/debug/stall" => (r.path.clone(), Some(json!({"ms": 1})), "*".into(), admin_of("*")),
        "GET /v1/rooms/{room}" | "GET /v1/rooms/{room}/events" => {
            (sub(&r.path, p), None, "r1".into(), token("r1", "viewer", &["subscribe"]))
        }
        "DELETE /v1/rooms/{room}" => {
            let room = format!("doomed-{n}");
            d.create_room(&room);
            (format!("/v1/rooms/{room}"), None, room.clone(), admin_of(&room))
        }
        "POST /v1/rooms/{room}/participants" => (
            sub(&r.path, p),
            Some(json!({"sdp": pcmu_dtmf_offer(spare.local_addr().unwrap().port())})),
            "r1".into(),
            token("r1", "caller", &["publish", "subscribe"]),
        ),
        "GET /v1/rooms/{room}/participants/{id}" => {
            (sub(&r.path, p), None, "r1".into(), token("r1", "viewer", &["subscribe"]))
        }
        "PATCH /v1/rooms/{room}/participants/{id}" => (
            sub(&r.path, p),
            Some(json!({"sdp": pcmu_dtmf_offer(spare.local_addr().unwrap().port())})),
            "r1".into(),
            admin_of("r1"),
        ),
        "DELETE /v1/rooms/{room}/participants/{id}" => {
            let q = another_participant(d, spare);
            (sub(&r.path, &q), None, "r1".into(), admin_of("r1"))
        }
        "POST /v1/rooms/{room}/participants/{id}/dtmf" => {
            (sub(&r.path, p), Some(json!({"digits": "1"})), "r1".into(), admin_of("r1"))
        }
        // The fixture's phone publishes a track, so a recording of r1 has something to take.
        "POST /v1/rooms/{room}/egress" => (
            sub(&r.path, p),
            Some(json!({"kind": "tracks", "outputs": [{"type": "file"}]})),
            "r1".into(),
            admin_of("r1"),
        ),
        "GET /v1/rooms/{room}/egress" => (sub(&r.path, p), None, "r1".into(), admin_of("r1")),
        "GET /v1/rooms/{room}/egress/{id}" | "DELETE /v1/rooms/{room}/egress/{id}" => {
            let (status, e) =
                d.post_json("/v1/rooms/r1/egress", &json!({"kind": "tracks", "outputs": [{"type": "file"}]}));
            assert_eq!(status, 201, "{e}");
            (sub(&r.path, e["id"].as_str().unwrap()), None, "r1".into(), admin_of("r1"))
        }
        "PATCH /v1/rooms/{room}/participants/{id}/tracks/{track}" => {
            (sub(&r.path, p), Some(json!({"muted": false})), "r1".into(), admin_of("r1"))
        }
        other => panic!(
            "route {other} is not covered by this test: add how to call it with the right grant \
             (every token route must be walked)"
        ),
    };
    let expect_405 = r.method == "PATCH" && (r.path.starts_with("/whip/") || r.path.starts_with("/whep/"));
    Call { path, body, sdp, room, right, expect_405 }
}

/// The status of `method path` with `token` (or none), read with a raw request so an event
/// stream's error answer is read the same way as any other.
fn status_of(d: &Daemon, method: &str, call: &Call, token: Option<&str>) -> (u16, String) {
    let mut headers = vec![token.map(|t| format!("Authorization: Bearer {t}"))];
    let mut body = call.body.as_ref().map(|b| b.to_string()).unwrap_or_default();
    if call.body.is_some() {
        headers.push(Some("Content-Type: application/json".into()));
    }
    if let Some(sdp) = &call.sdp {
        body = sdp.clone();
        headers.push(Some("Content-Type: application/sdp".into()));
    }
    let r = raw_http_with(&d.base_url, method, &call.path, &headers, body.as_bytes());
    (r.status, r.body)
}

#[test]
fn every_route_needs_a_token_and_the_right_grant() {
    let d = Daemon::start_with(|c| {
        c.set("debug", "stall_hook", true);
    });
    let f = room_fixture(&d);
    let spare = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let routes = routes();
    let open: Vec<String> = routes.iter().filter(|r| r.open).map(|r| format!("{} {}", r.method, r.path)).collect();
    for o in &open {
        assert!(OPEN.contains(&o.as_str()), "{o} is open, and only {OPEN:?} may be");
    }
    let mut walked = 0;
    for (n, r) in routes.iter().enumerate().filter(|(_, r)| !r.open) {
        let call = call_for(&d, &f, r, n, &spare);
        let what = format!("{} {}", r.method, r.path);
        let (s, b) = status_of(&d, &r.method, &call, None);
        assert_eq!(s, 401, "{what} with no token: {b}");
        assert!(b.contains("\"unauthorized\""), "{what}: {b}");
        let (s, b) = status_of(&d, &r.method, &call, Some(&expired(&call.room)));
        assert_eq!(s, 401, "{what} with an expired token: {b}");
        assert!(b.contains("expired"), "{what}: the message should say why: {b}");
        let elsewhere = token("elsewhere", "admin", &["admin", "publish", "subscribe"]);
        let (s, b) = status_of(&d, &r.method, &call, Some(&elsewhere));
        assert_eq!(s, 403, "{what} with a token for another room: {b}");
        assert!(b.contains("\"forbidden\""), "{what}: {b}");
        if r.path.ends_with("/events") {
            let sse = SseClient::connect_as(&d.base_url, &call.path, &call.right);
            assert_eq!(sse.status, 200, "{what} with the right grant");
        } else if call.expect_405 {
            let (s, b) = status_of(&d, &r.method, &call, Some(&call.right));
            assert_eq!(s, 405, "{what} with the right grant: {b}");
        } else {
            let (s, b) = status_of(&d, &r.method, &call, Some(&call.right));
            assert!((200..300).contains(&s), "{what} with the right grant: {s} {b}");
        }
        walked += 1;
    }
    assert!(walked >= 12, "walked only {walked} token routes");
    // The open routes answer without a token.
    for o in &open {
        let (method, path) = o.split_once(' ').unwrap();
        let r = raw_http_with(&d.base_url, method, path, &[], b"");
        assert!((200..300).contains(&r.status), "{o} with no token: {} {}", r.status, r.body);
    }
    // Every refusal was counted, by reason.
    let (_, m) = d.get_text("/metrics");
    assert!(metric_value(&m, "switchboard_auth_failures_total", &[("reason", "missing")]).unwrap_or(0.0) >= 12.0);
    assert!(metric_value(&m, "switchboard_auth_failures_total", &[("reason", "expired")]).unwrap_or(0.0) >= 12.0);
}
