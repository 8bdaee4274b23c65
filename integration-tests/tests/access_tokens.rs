//! Tokens as an attacker makes them, and what each kind of token may do.
//!
//! Hostile tokens all get 401 and never a 5xx. A participant token acts only on its own
//! participants; without `publish` nothing it sends reaches anyone, without `subscribe` it
//! receives nothing; an admin mutes a track and the room says so. The shipped dev key never
//! listens beyond loopback.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use switchboard_integration_tests::*;

fn b64json(v: &Value) -> String {
    B64.encode(v.to_string())
}

/// A token whose header and claims are exactly these, signed HMAC-SHA256 with the test secret
/// whatever the header claims: the algorithm-confusion attack.
fn forged(header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64json(header), b64json(claims));
    let key = jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
    format!("{input}.{sig}")
}

fn claims_admin() -> Value {
    json!({"sub": "mallory", "room": "*", "grants": ["admin"], "exp": unix_now() as u64 + 3600})
}

#[test]
fn hostile_tokens_get_401_and_never_a_5xx() {
    let d = Daemon::start();
    let good_claims = claims_admin();
    let other_key = {
        let h = jsonwebtoken::Header {
            kid: Some(TEST_KID.into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        };
        jsonwebtoken::encode(&h, &good_claims, &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-entirely"))
            .unwrap()
    };
    let no_exp = sign(&json!({"sub": "mallory", "room": "*", "grants": ["admin"]}));
    let alg_none =
        format!("{}.{}.", b64json(&json!({"alg": "none", "typ": "JWT", "kid": TEST_KID})), b64json(&good_claims));
    let rs256 = forged(&json!({"alg": "RS256", "typ": "JWT", "kid": TEST_KID}), &good_claims);
    let hs512 = forged(&json!({"alg": "HS512", "typ": "JWT", "kid": TEST_KID}), &good_claims);
    let no_kid = forged(&json!({"alg": "HS256", "typ": "JWT"}), &good_claims);
    let unknown_kid = forged(&json!({"alg": "HS256", "typ": "JWT", "kid": "nobody"}), &good_claims);
    let not_yet = sign(&json!({"sub": "m", "room": "*", "grants": ["admin"], "exp": unix_now() as u64 + 7200,
        "nbf": unix_now() as u64 + 3600}));
    let exp_string = sign(&json!({"sub": "m", "room": "*", "grants": ["admin"], "exp": "tomorrow"}));
    let bad_room = sign(&json!({"sub": "m", "room": "../etc", "grants": ["admin"], "exp": unix_now() as u64 + 60}));
    let huge = format!("{}.{}.{}", "a".repeat(50_000), "b".repeat(50_000), "c".repeat(2_400));
    let cases: Vec<(&str, String)> = vec![
        ("wrong signature", other_key),
        ("alg none", alg_none),
        ("RS256 signed with the secret (algorithm confusion)", rs256),
        ("HS512", hs512),
        ("no exp", no_exp),
        ("exp not a number", exp_string),
        ("no kid", no_kid),
        ("unknown kid", unknown_kid),
        ("nbf in the future", not_yet),
        ("room not a room id", bad_room),
        ("garbage base64", "%%%.@@@.!!!".into()),
        ("one part", "eyJhbGciOiJIUzI1NiJ9".into()),
        ("100 KiB", huge),
    ];
    for (what, tok) in &cases {
        for path in ["/v1/rooms", "/metrics"] {
            let r = raw_http_with(&d.base_url, "GET", path, &[Some(format!("Authorization: Bearer {tok}"))], b"");
            assert_eq!(r.status, 401, "{what} on {path}: {} {}", r.status, &r.body[..r.body.len().min(300)]);
            assert!(r.body.contains("\"unauthorized\""), "{what}: {}", r.body);
            assert!(!r.body.contains(TEST_SECRET), "{what}: the answer echoes the secret");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
        }
    }
    for scheme in ["Basic dXNlcjpwYXNz", "Bearer", "Token abc", ""] {
        let r = raw_http_with(&d.base_url, "GET", "/v1/rooms", &[Some(format!("Authorization: {scheme}"))], b"");
        assert_eq!(r.status, 401, "Authorization: {scheme}: {}", r.body);
    }
    // The daemon is unharmed, and no secret reached its log.
    assert_eq!(d.get_json("/v1/rooms").0, 200);
    assert!(!d.log().contains(TEST_SECRET), "the log holds the secret");
}

#[test]
fn a_body_that_is_not_json_is_refused_whatever_it_holds() {
    let d = Daemon::start();
    let r = d.raw("POST", "/v1/rooms", Some("text/plain"), br#"{"id": "csrf"}"#);
    assert_eq!(r.status, 415, "{}", r.body);
    assert!(r.body.contains("unsupported_media_type"), "{}", r.body);
    let r = d.raw("POST", "/v1/rooms", Some("application/x-www-form-urlencoded"), b"id=csrf");
    assert_eq!(r.status, 415, "{}", r.body);
    assert_eq!(d.get_json("/v1/rooms/csrf").0, 404, "a refused body created the room");
    let r = d.raw("POST", "/v1/rooms", Some("application/json; charset=utf-8"), br#"{"id": "fine"}"#);
    assert_eq!(r.status, 201, "{}", r.body);
}

/// A phone leg made by hand: a UDP socket named in its offer, and the bridge's port from the answer.
struct Leg {
    sock: UdpSocket,
    id: String,
    bridge: u16,
}

fn join_leg(d: &Daemon, room: &str, tok: &str) -> Leg {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let body = json!({"sdp": pcmu_offer(sock.local_addr().unwrap().port())});
    let (s, v) = d.call_as(Some(tok), "POST", &format!("/v1/rooms/{room}/participants"), Some(&body));
    assert_eq!(s, 201, "join: {v}");
    let bridge = Sdp::parse(v["sdp"].as_str().unwrap()).media[0].port;
    Leg { sock, id: v["id"].as_str().unwrap().to_string(), bridge }
}

/// Sends 1.5 s of PCMU (a packet every 20 ms) from each leg to the bridge, and counts the RTP
/// each leg receives.
fn exchange(legs: &[&Leg]) -> Vec<usize> {
    let mut got = vec![0; legs.len()];
    let mut buf = [0u8; 1500];
    let start = Instant::now();
    let mut seq: u16 = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        for (i, l) in legs.iter().enumerate() {
            let mut pkt = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            pkt[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            pkt[8..12].copy_from_slice(&(0x1000 + i as u32).to_be_bytes());
            pkt.extend_from_slice(&[0x55; 160]);
            l.sock.send_to(&pkt, ("127.0.0.1", l.bridge)).unwrap();
        }
        seq = seq.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(20));
        for (i, l) in legs.iter().enumerate() {
            while let Ok((n, _)) = l.sock.recv_from(&mut buf) {
                // RTP only: RTCP (payload types 200-204) is not the other leg's media.
                if n > 12 && !(200..=204).contains(&buf[1]) {
                    got[i] += 1;
                }
            }
        }
    }
    got
}

#[test]
fn grants_decide_who_is_routed_and_who_may_act() {
    let d = Daemon::start();
    d.create_room("g");
    let listener = join_leg(&d, "g", &token("g", "listener", &["subscribe"]));
    let talker = join_leg(&d, "g", &token("g", "talker", &["publish"]));
    let full = join_leg(&d, "g", &token("g", "full", &["publish", "subscribe"]));
    let view = d.participant("g", &listener.id);
    assert_eq!((view["identity"].as_str(), view["can_publish"].as_bool()), (Some("listener"), Some(false)), "{view}");
    let got = exchange(&[&listener, &talker, &full]);
    // The listener hears the two publishers; the talker (no subscribe) hears nothing; `full`
    // hears the talker but never the listener (no publish).
    assert!(got[0] > 20, "the subscribe-only leg received {} packets", got[0]);
    assert_eq!(got[1], 0, "the publish-only leg received media");
    assert!(got[2] > 20, "the full leg received {} packets: {}", got[2], d.participant("g", &full.id));
    let full_view = d.participant("g", &full.id);
    let sources: Vec<&str> =
        full_view["subscriptions"].as_array().unwrap().iter().filter_map(|s| s["publisher_id"].as_str()).collect();
    assert!(!sources.contains(&listener.id.as_str()), "the subscribe-only leg is routed: {full_view}");

    // A participant token acts on its own participants only; an admin on any.
    let talker_tok = token("g", "talker", &["publish"]);
    let path = |id: &str| format!("/v1/rooms/g/participants/{id}");
    let (s, v) = d.call_as(Some(&talker_tok), "DELETE", &path(&listener.id), None);
    assert_api_error(&(s, v), 403, "forbidden");
    let (s, v) =
        d.call_as(Some(&talker_tok), "POST", &format!("{}/dtmf", path(&full.id)), Some(&json!({"digits": "1"})));
    assert_api_error(&(s, v), 403, "forbidden");
    let (s, v) = d.call_as(Some(&talker_tok), "GET", "/v1/rooms", None);
    assert_api_error(&(s, v), 403, "forbidden");
    let (s, v) = d.call_as(Some(&talker_tok), "DELETE", "/v1/rooms/g", None);
    assert_api_error(&(s, v), 403, "forbidden");
    let (s, v) = d.call_as(Some(&talker_tok), "DELETE", &path(&talker.id), None);
    assert_eq!(s, 204, "deleting its own participant: {v}");
    let admin = token("g", "ops", &["admin"]);
    let (s, v) = d.call_as(Some(&admin), "DELETE", &path(&listener.id), None);
    assert_eq!(s, 204, "an admin kicks anyone: {v}");
    assert_eq!(d.participants_of("g"), vec![full.id.clone()]);
}

#[test]
fn an_admin_mutes_a_track_and_the_room_says_so() {
    let d = Daemon::start();
    let sse = d.create_and_follow("m");
    let a = join_leg(&d, "m", admin_token());
    let b = join_leg(&d, "m", admin_token());
    let track = d.participant("m", &a.id)["tracks"][0]["id"].as_str().unwrap().to_string();
    let tpath = format!("/v1/rooms/m/participants/{}/tracks/{track}", a.id);
    let before = exchange(&[&a, &b]);
    assert!(before[1] > 20, "b heard a before the mute: {before:?}");
    // Only an admin mutes.
    let (s, v) =
        d.call_as(Some(&token("m", "x", &["publish", "subscribe"])), "PATCH", &tpath, Some(&json!({"muted": true})));
    assert_api_error(&(s, v), 403, "forbidden");
    let (s, v) = d.patch_json(&tpath, &json!({"muted": true}));
    assert_eq!((s, v["muted"].as_bool()), (200, Some(true)), "{v}");
    let ev = sse.wait_for("track_muted", Duration::from_secs(5));
    assert_eq!(ev["participant_id"].as_str(), Some(a.id.as_str()), "{ev}");
    let muted = exchange(&[&a, &b]);
    assert!(muted[1] < 3, "b still hears a muted track: {muted:?}");
    assert!(muted[0] > 20, "muting a's track stopped what a hears: {muted:?}");
    let (s, v) = d.patch_json(&tpath, &json!({"muted": false}));
    assert_eq!((s, v["muted"].as_bool()), (200, Some(false)), "{v}");
    sse.wait_for("track_unmuted", Duration::from_secs(5));
    let after = exchange(&[&a, &b]);
    assert!(after[1] > 20, "b does not hear a after the unmute: {after:?}");
    let (s, v) = d.patch_json(&format!("/v1/rooms/m/participants/{}/tracks/t999", a.id), &json!({"muted": true}));
    assert_api_error(&(s, v), 404, "track_not_found");
}

#[test]
fn the_dev_key_never_listens_beyond_loopback() {
    let dev = "switchboard-dev-secret-change-me-before-listening-beyond-loopback";
    let err = match Daemon::try_start_with(|c| {
        c.set("http", "listen", "0.0.0.0:0");
        c.set("auth.keys", "devkey", dev);
    }) {
        Ok(_) => panic!("the daemon started with the dev key on 0.0.0.0"),
        Err(e) => e,
    };
    assert!(err.contains("exited during start-up"), "{err}");
    assert!(err.contains("auth.keys.devkey"), "the error should name the key: {err}");
    // The harness shows the config it wrote (which holds the secret) before the daemon's log.
    let log = err.split_once("log:").map(|(_, l)| l).unwrap_or(&err);
    assert!(!log.contains(dev), "the daemon's log prints the secret: {log}");
}

#[test]
fn metrics_need_an_admin_token_unless_on_their_own_address() {
    let block = reserve_ports();
    let port = block.http;
    let d = Daemon::start_with(|c| {
        c.set("metrics", "listen", format!("127.0.0.1:{port}"));
    });
    let (s, _) = d.call_as(None, "GET", "/metrics", None);
    assert_eq!(s, 401);
    let (s, _) = d.call_as(Some(&token("*", "gw", &["publish", "subscribe"])), "GET", "/metrics", None);
    assert_eq!(s, 403);
    let r = raw_http_with(&format!("http://127.0.0.1:{port}"), "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("switchboard_rooms"), "{}", &r.body[..r.body.len().min(300)]);
    let r = raw_http_with(&format!("http://127.0.0.1:{port}"), "GET", "/v1/rooms", &[], b"");
    assert_eq!(r.status, 404, "the metrics address serves only /metrics");
}
