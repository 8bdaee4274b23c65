//! Webhooks: the daemon POSTs room events to the receivers `[[webhooks]]` names, each signed with
//! a key of `[auth.keys]` (here the harness's `it`), in order, off the media path.
//!
//! The receiver (harness `WebhookReceiver`) is a plain HTTP server on loopback; each test checks
//! what a real receiver would: the JWT with the key its `kid` names, and the `sha256` claim
//! against the exact bytes received.

use std::collections::HashSet;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use switchboard_integration_tests::*;

const WAIT: Duration = Duration::from_secs(15);
/// The envelope every body has; the rest are the event's own fields.
const ENVELOPE: [&str; 4] = ["event", "room", "id", "created_at"];

/// What a receiver does with a POST: the token verifies with the key its `kid` names (HS256,
/// issuer `switchboard`, not expired), and its `sha256` is the digest of the body as received.
/// Returns the claims.
#[track_caller]
fn verify(post: &WebhookPost) -> Value {
    let token = post.bearer().unwrap_or_else(|| panic!("{}: no Bearer token: {:?}", post.event(), post.headers));
    let header = jsonwebtoken::decode_header(token).expect("a JWT header");
    assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::HS256, Some(TEST_KID)), "{}", post.event());
    let mut v = Validation::new(Algorithm::HS256);
    v.set_issuer(&["switchboard"]);
    v.set_required_spec_claims(&["exp", "iat", "iss"]);
    let claims = jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(TEST_SECRET.as_bytes()), &v)
        .unwrap_or_else(|e| panic!("{}: the signature does not verify with the test key: {e}", post.event()))
        .claims;
    assert_eq!(claims["sha256"], json!(digest(&post.body)), "{}: the token is for another body", post.event());
    let (iat, exp) = (claims["iat"].as_f64().unwrap(), claims["exp"].as_f64().unwrap());
    assert!((iat - unix_now()).abs() < 60.0, "iat {iat} is not now");
    assert!(exp > iat && exp - iat <= 600.0, "a signature valid for minutes, not {} s", exp - iat);
    claims
}

fn digest(body: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(body))
}

/// The event's own fields: the body without its envelope.
fn fields(post: &WebhookPost) -> Value {
    let mut v = post.json.clone();
    for k in ENVELOPE {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

fn count(posts: &[WebhookPost], event: &str) -> usize {
    posts.iter().filter(|p| p.event() == event).count()
}

#[test]
fn a_join_and_a_leave_reach_the_receiver_signed_and_in_order() {
    const ROOM: &str = "hooked";
    let rx = WebhookReceiver::start();
    let path = "/hooks/in?tenant=t1";
    let d = Daemon::start_with(|c| {
        c.add_table("webhooks", json!({"url": rx.url(path), "key": TEST_KID}));
    });
    let t0 = unix_now();
    // A join that fails creates no room, so no receiver hears of one (every POST below is
    // checked to be about ROOM).
    let (s, _) = d.post_json("/v1/rooms/ghost/participants", &json!({"sdp": "v=0\r\nnot an offer"}));
    assert_eq!(s, 400);
    let sse = d.create_and_follow(ROOM);
    let alice = token(ROOM, "alice", &["publish", "subscribe"]);
    let join = json!({"sdp": fixture("chromium_offer.sdp"), "display_name": "Alice"});
    let (s, p) = d.call_as(Some(&alice), "POST", &format!("/v1/rooms/{ROOM}/participants"), Some(&join));
    assert_eq!(s, 201, "join as alice: {p}");
    let pid = p["id"].as_str().unwrap().to_string();
    assert_eq!(d.delete(&format!("/v1/rooms/{ROOM}/participants/{pid}")).0, 204);
    rx.wait_until(WAIT, "participant_left", |p| count(p, "participant_left") == 1);
    assert_eq!(d.delete(&format!("/v1/rooms/{ROOM}")).0, 204);
    let posts = rx.wait_until(WAIT, "room_finished", |p| count(p, "room_finished") == 1);
    let t1 = unix_now();

    // Every POST: signed for its own body, JSON, to the configured path, about this room, with
    // an id of its own and a creation time within the test, in order.
    let mut ids = HashSet::new();
    let mut last_created = 0.0;
    for p in &posts {
        verify(p);
        assert_eq!((p.method.as_str(), p.path.as_str()), ("POST", path));
        assert_eq!(p.headers.get("content-type").map(String::as_str), Some("application/json"));
        assert_eq!(p.json["room"], ROOM, "{}", p.json);
        assert!(ids.insert(p.json["id"].as_str().unwrap().to_string()), "a repeated id: {}", p.json);
        let created = p.json["created_at"].as_f64().unwrap();
        assert!(created >= t0 - 1.0 && created <= t1 + 1.0 && created >= last_created, "created_at {created}");
        last_created = created;
    }
    // A token on one body does not vouch for another.
    let mut forged = posts[0].clone();
    forged.body.push(b' ');
    assert_ne!(digest(&forged.body), verify(&posts[0])["sha256"].as_str().unwrap());

    // The room's life and the participant's, in the order they happened; no routing events.
    let names: Vec<&str> = posts.iter().map(WebhookPost::event).collect();
    let life: Vec<&str> =
        names.iter().copied().filter(|n| n.starts_with("room_") || n.starts_with("participant_")).collect();
    assert_eq!(life, ["room_started", "participant_joined", "participant_left", "room_finished"], "{names:?}");
    assert_eq!((count(&posts, "track_published"), count(&posts, "track_unpublished")), (2, 2), "{names:?}");
    let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
    let last = |name: &str| names.iter().rposition(|n| *n == name).unwrap();
    assert!(at("participant_joined") < at("track_published"), "{names:?}");
    assert!(last("track_published") < at("track_unpublished"), "{names:?}");
    assert!(last("track_unpublished") < at("participant_left"), "{names:?}");
    assert!(!names.iter().any(|n| ["route_changed", "active_speaker", "dtmf"].contains(n)), "{names:?}");

    // The fields are the SSE event's data, the identity from alice's token included.
    let joined = &posts[at("participant_joined")];
    let (pj, pl) = (&joined.json, &posts[at("participant_left")].json);
    assert_eq!(
        (&pj["participant_id"], &pj["identity"], &pj["display_name"]),
        (&json!(pid), &json!("alice"), &json!("Alice"))
    );
    assert_eq!((&pl["participant_id"], &pl["reason"]), (&json!(pid), &json!("requested")));
    assert_eq!(posts[last("room_finished")].json["reason"], "requested");
    let on_sse = sse.wait_for_matching("participant_joined", |v| v["participant_id"] == pid.as_str(), WAIT);
    assert_eq!(fields(joined), on_sse);
    // The room's SSE stream ends with room_finished too.
    assert_eq!(sse.wait_for("room_finished", WAIT), json!({"reason": "requested"}));
}

#[test]
fn a_room_finishes_when_left_empty_and_when_the_daemon_stops() {
    let rx = WebhookReceiver::start();
    let mut d = Daemon::start_with(|c| {
        c.set("rooms", "empty_timeout_secs", 0);
        c.add_table("webhooks", json!({"url": rx.url("/in"), "key": TEST_KID}));
    });
    // An empty room goes at the next housekeeping (every 500 ms).
    d.create_room("brief");
    let finished = |room: &'static str| {
        move |p: &[WebhookPost]| p.iter().any(|p| p.event() == "room_finished" && p.json["room"] == room)
    };
    rx.wait_until(WAIT, "brief's room_finished", finished("brief"));
    // A room with someone in it lasts until the daemon stops, which still delivers its end.
    d.join("kept", &fixture("chromium_offer.sdp"));
    rx.wait_until(WAIT, "kept's participant_joined", |p| count(p, "participant_joined") == 1);
    d.stop();
    let posts = rx.wait_until(WAIT, "kept's room_finished", finished("kept"));
    let of = |room: &str| -> Vec<(String, Value)> {
        posts
            .iter()
            .filter(|p| p.json["room"] == room && !p.event().starts_with("track_"))
            .map(|p| (p.event().to_string(), p.json["reason"].clone()))
            .collect()
    };
    let none = Value::Null;
    assert_eq!(of("brief"), [("room_started".into(), none.clone()), ("room_finished".into(), json!("empty"))]);
    assert_eq!(
        of("kept"),
        [
            ("room_started".into(), none.clone()),
            ("participant_joined".into(), none),
            ("participant_left".into(), json!("shutdown")),
            ("room_finished".into(), json!("shutdown")),
        ]
    );
    for p in &posts {
        verify(p);
    }
}

#[test]
fn a_call_carries_on_while_the_receiver_is_down() {
    require_rtp_leg();
    const ROOM: &str = "nohook";
    const AMPLITUDE: f32 = 0.3;
    const DURATION_S: f64 = 10.0;
    // A queue of one: the first join brings room_started, participant_joined and
    // track_published at once, so at least one of them cannot wait and is dropped.
    let d = Daemon::start_with(|c| {
        c.add_table("webhooks", json!({"url": closed_port_url("/in"), "key": TEST_KID, "max_retries": 2, "queue": 1}));
    });
    let dir = tempfile::tempdir().unwrap();
    let spec = [("a", 440.0f32), ("b", 660.0), ("c", 880.0)];
    let (files, mut legs) =
        spawn_tone_legs(&d, ROOM, &spec, AMPLITUDE, DURATION_S, dir.path(), Duration::from_secs(50));
    d.wait_for_participants(ROOM, 3, &mut legs, JOIN_WAIT);
    let outs: Vec<PeerOutput> = legs.iter_mut().map(|l| l.take().unwrap().wait()).collect();
    for o in &outs {
        o.expect_ok();
    }

    // Each leg heard the other two, at their level, in every half second they were together.
    let together = legs_together(&outs, DURATION_S);
    let want_db = sine_dbfs(AMPLITUDE);
    for (i, (name, own_hz)) in spec.iter().enumerate() {
        assert_one_stream(name, &outs[i]);
        let (heard, rate) = leg_heard_all(&outs[i], &files[i], together);
        for (k, piece) in heard.chunks_exact(rate as usize / 2).enumerate() {
            for (_, hz) in spec.iter().filter(|(_, hz)| hz != own_hz) {
                let db = tone_level_db(piece, rate, *hz);
                assert!(
                    (db - want_db).abs() <= 3.0,
                    "{name}, 0.5 s piece #{k}: {hz} Hz at {db:.1} dBFS, sent at {want_db:.1}"
                );
            }
        }
    }

    // Meanwhile every attempt was refused: retried twice per event, given up, and what did
    // not fit the queue dropped. Nothing was delivered.
    let (_, metrics) = d.get_text("/metrics");
    let deliveries = |result| {
        metric_value(&metrics, "switchboard_webhook_deliveries_total", &[("result", result)])
            .unwrap_or_else(|| panic!("no {result} series"))
    };
    let (delivered, retried, failed) = (deliveries("delivered"), deliveries("retried"), deliveries("failed"));
    let dropped = metric_value(&metrics, "switchboard_webhook_dropped_total", &[]).unwrap();
    assert_eq!(delivered, 0.0);
    assert!(failed >= 1.0 && retried >= 2.0 * failed, "retried {retried}, failed {failed}");
    assert!(dropped >= 1.0, "dropped {dropped}");
    assert!(d.log().contains("webhook event given up"), "each event given up is logged");
}

#[test]
fn digits_go_only_to_the_receiver_that_opted_in() {
    require_rtp_leg();
    const ROOM: &str = "pins";
    let (plain, pins) = (WebhookReceiver::start(), WebhookReceiver::start());
    let d = Daemon::start_with(|c| {
        c.add_table("webhooks", json!({"url": plain.url("/plain"), "key": TEST_KID}));
        c.add_table("webhooks", json!({"url": pins.url("/pins"), "key": TEST_KID, "dtmf": true}));
    });
    let args =
        ["--tone", "440", "--duration", "4", "--dtmf-digits", "12#", "--dtmf-duration-ms", "120", "--dtmf-at", "1"];
    let mut leg = Some(d.join_peer(RTP_LEG, ROOM, "caller", &args, Duration::from_secs(45)));
    d.wait_for_participants(ROOM, 1, &mut [&mut leg], JOIN_WAIT);
    let out = leg.take().unwrap().wait();
    let caller = out.expect_ok()["participant_id"].as_str().unwrap().to_string();

    let with_digits = pins.wait_until(WAIT, "participant_left", |p| count(p, "participant_left") == 1);
    let without = plain.wait_until(WAIT, "participant_left", |p| count(p, "participant_left") == 1);
    let digits: Vec<&Value> = with_digits.iter().filter(|p| p.event() == "dtmf").map(|p| &p.json["digit"]).collect();
    assert_eq!(digits, [&json!("1"), &json!("2"), &json!("#")]);
    for p in with_digits.iter().filter(|p| p.event() == "dtmf") {
        verify(p);
        assert_eq!(p.json["participant_id"], caller.as_str());
    }
    assert_eq!(count(&without, "dtmf"), 0, "digits can be PINs: only dtmf = true gets them");
    // Apart from the digits both got the same events, with the same ids.
    let ids = |posts: &[WebhookPost]| -> Vec<Value> {
        posts.iter().filter(|p| p.event() != "dtmf").map(|p| p.json["id"].clone()).collect()
    };
    assert_eq!(ids(&without), ids(&with_digits));
}
