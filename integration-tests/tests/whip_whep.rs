//! WHIP (RFC 9725) and WHEP against the real daemon: a GStreamer webrtcbin publisher over WHIP
//! heard by a webrtcbin player over WHEP (peers/whip_peer.py), the session URL's DELETE as an
//! event, what the endpoints refuse, and CORS for browser pages on other origins.

use std::time::Duration;

use switchboard_integration_tests::*;

const PEER: &str = "whip_peer.py";
const RATE: u32 = 48_000;

fn bearer(token: &str) -> Option<String> {
    Some(format!("Authorization: Bearer {token}"))
}

/// `POST path` with `body` as `content_type`, and `token` (or none).
fn post_as(d: &Daemon, token: Option<&str>, path: &str, content_type: &str, body: &str) -> RawResponse {
    let headers = [Some(format!("Content-Type: {content_type}")), token.and_then(bearer)];
    raw_http_with(&d.base_url, "POST", path, &headers, body.as_bytes())
}

#[track_caller]
fn assert_raw_error(r: &RawResponse, status: u16, code: &str) {
    assert_api_error(&(r.status, r.json()), status, code);
}

/// A 201 with the answer as `application/sdp`, its one m-line `direction`, and a Location under
/// `prefix`; the participant id.
#[track_caller]
fn assert_session(r: &RawResponse, prefix: &str, direction: &str) -> String {
    assert_eq!(r.status, 201, "expected 201: {r:?}");
    assert_eq!(r.header("content-type"), Some("application/sdp"), "{r:?}");
    let answer = Sdp::parse(&r.body);
    let directions: Vec<&str> = answer.media.iter().map(|m| m.direction.as_str()).collect();
    assert_eq!(directions, [direction], "the answer's m-lines: {r:?}");
    let location = r.header("location").unwrap_or_else(|| panic!("no Location: {r:?}"));
    let id = location.strip_prefix(prefix).unwrap_or_else(|| panic!("Location {location:?} not under {prefix}"));
    assert_eq!(id.len(), 16, "Location {location:?} does not end in a participant id");
    id.to_string()
}

#[test]
fn a_whip_publisher_is_heard_over_whep_and_its_delete_is_an_event() {
    require_gstreamer();
    let d = Daemon::start();
    let sse = d.create_and_follow("studio");
    let encoder = token("studio", "encoder", &["publish"]);
    let viewer = token("studio", "viewer", &["subscribe"]);

    // The publisher stays until the test DELETEs its session: the DELETE must end it, not the
    // peer going away.
    let pub_args =
        ["--protocol", "whip", "--token", &encoder, "--publish-tone", "440", "--duration", "25", "--no-leave"];
    let mut publisher = Some(d.join_peer(PEER, "studio", "encoder", &pub_args, Duration::from_secs(60)));
    let pub_id = d.wait_for_participants("studio", 1, &mut [&mut publisher], JOIN_WAIT).remove(0);
    let view = d.participant("studio", &pub_id);
    assert_eq!(view["kind"], "webrtc", "{view}");
    assert_eq!(view["identity"], "encoder", "the identity is the token's sub: {view}");
    assert_eq!(
        (&view["can_publish"], &view["can_subscribe"]),
        (&json!(true), &json!(false)),
        "WHIP only publishes: {view}"
    );
    let joined = sse.wait_for_participant_event("participant_joined", &pub_id, Duration::from_secs(5));
    assert_eq!(joined.data["identity"], "encoder", "{:?}", joined.data);

    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("whep.s16le");
    let audio_arg = audio.to_string_lossy().into_owned();
    let player_args =
        ["--protocol", "whep", "--token", &viewer, "--receive", "4", "--duration", "7", "--save-audio", &audio_arg];
    let mut player = Some(d.join_peer(PEER, "studio", "player", &player_args, Duration::from_secs(45)));
    let ids = d.wait_for_participants("studio", 2, &mut [&mut player], JOIN_WAIT);
    let player_id = ids.into_iter().find(|i| *i != pub_id).unwrap();
    // The player's receive-only m-line is a slot like any subscriber's, served the publisher.
    let served = poll_until(Duration::from_secs(10), || {
        let v = d.participant("studio", &player_id);
        (v["subscriptions"][0]["publisher_id"] == pub_id.as_str()).then_some(v)
    });
    let served =
        served.unwrap_or_else(|| panic!("slot never got the WHIP publisher: {}", d.participant("studio", &player_id)));
    assert_eq!((&served["identity"], &served["can_publish"]), (&json!("viewer"), &json!(false)), "{served}");

    let out = player.take().unwrap().wait();
    let pj = out.expect_ok();
    assert_eq!(pj["join"]["location"], format!("/whep/studio/{player_id}"), "{}", out.describe());
    assert_eq!(pj["join"]["content_type"], "application/sdp", "{}", out.describe());
    assert_eq!(pj["connection_state"], "connected", "{}", out.describe());
    assert_eq!(pj["left_status"], 204, "the viewer ends its own WHEP session: {}", out.describe());
    let pcm = read_s16le(&audio);
    assert!(pcm.len() as u32 > 3 * RATE, "the player decoded only {} samples: {}", pcm.len(), out.describe());
    let last = &pcm[pcm.len() - 3 * RATE as usize..];
    let hz = dominant_frequency(last, RATE);
    assert!((hz - 440.0).abs() <= 10.0, "heard {hz:.1} Hz over WHEP, expected 440 ± 10: {}", out.describe());
    assert!(rms(last) > 0.05, "the tone is too quiet (rms {:.4}): {}", rms(last), out.describe());

    // The session URL: another identity may not end it, its own may.
    let session = format!("/whip/studio/{pub_id}");
    assert_eq!(d.participants_of("studio"), std::slice::from_ref(&pub_id), "the publisher is still in");
    assert_api_error(&d.call_as(Some(&viewer), "DELETE", &session, None), 403, "forbidden");
    let (s, v) = d.call_as(Some(&encoder), "DELETE", &session, None);
    assert_eq!(s, 204, "DELETE {session}: {v}");
    let left = sse.wait_for_participant_event("participant_left", &pub_id, Duration::from_secs(5));
    assert_eq!(left.data["reason"], "requested", "{:?}", left.data);
    assert!(d.participants_of("studio").is_empty());

    let p = publisher.take().unwrap().wait();
    let sent = p.json["sent_rtp_packets"].as_u64().unwrap_or(0);
    assert!(sent > 300, "the WHIP publisher sent {sent} packets: {}", p.describe());
    assert_eq!(p.json["join"]["location"], session.as_str(), "{}", p.describe());
}

#[test]
fn whip_and_whep_refuse_what_they_must_and_follow_the_room_rules() {
    let d = Daemon::start_with(|c| {
        c.set("rooms", "auto_create", false);
    });
    let (s, v) = d.post_json("/v1/rooms", &json!({"id": "stage", "max_participants": 2}));
    assert_eq!(s, 201, "{v}");
    let offer = fixture("webrtcbin_offer.sdp");
    let recv_offer = fixture("webrtcbin_recvonly_offer.sdp");
    let (cam, eye) = (token("stage", "cam", &["publish"]), token("stage", "eye", &["subscribe"]));
    let sdp = "application/sdp";

    let r = post_as(&d, None, "/whip/stage", sdp, &offer);
    assert_raw_error(&r, 401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{r:?}");
    assert_raw_error(&post_as(&d, Some(&eye), "/whip/stage", sdp, &offer), 403, "forbidden");
    assert_raw_error(&post_as(&d, Some(&cam), "/whep/stage", sdp, &recv_offer), 403, "forbidden");
    let elsewhere = token("other", "cam", &["publish"]);
    assert_raw_error(&post_as(&d, Some(&elsewhere), "/whip/stage", sdp, &offer), 403, "forbidden");
    assert_raw_error(
        &post_as(&d, Some(&cam), "/whip/stage", "application/json", &offer),
        415,
        "unsupported_media_type",
    );
    let r = post_as(&d, Some(&cam), "/whip/stage", sdp, "hello");
    assert_raw_error(&r, 400, "bad_sdp");
    assert!(r.json()["error"]["message"].as_str().unwrap_or("").contains("v="), "names the problem: {r:?}");
    let plain = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let r = post_as(&d, Some(&cam), "/whip/stage", sdp, plain);
    assert_raw_error(&r, 400, "bad_sdp");
    assert!(r.json()["error"]["message"].as_str().unwrap_or("").contains("WebRTC offer"), "{r:?}");
    assert_raw_error(&post_as(&d, Some(admin_token()), "/whip/nowhere", sdp, &offer), 404, "room_not_found");
    assert!(d.participants_of("stage").is_empty(), "a refused offer joins no one");

    let cam_id = assert_session(&post_as(&d, Some(&cam), "/whip/stage", sdp, &offer), "/whip/stage/", "recvonly");
    let view = d.participant("stage", &cam_id);
    assert_eq!(
        (&view["identity"], &view["can_publish"], &view["can_subscribe"]),
        (&json!("cam"), &json!(true), &json!(false))
    );
    let eye_id = assert_session(&post_as(&d, Some(&eye), "/whep/stage", sdp, &recv_offer), "/whep/stage/", "sendonly");
    let view = d.participant("stage", &eye_id);
    assert_eq!(
        (&view["identity"], &view["can_publish"], &view["can_subscribe"]),
        (&json!("eye"), &json!(false), &json!(true))
    );
    assert_raw_error(&post_as(&d, Some(&cam), "/whip/stage", sdp, &offer), 409, "room_full");

    // No trickle ICE, no ICE restart: a PATCH is 405 naming what the session URL takes.
    let frag = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n";
    let headers = [Some("Content-Type: application/trickle-ice-sdpfrag".to_string()), bearer(&cam)];
    let r = raw_http_with(&d.base_url, "PATCH", &format!("/whip/stage/{cam_id}"), &headers, frag.as_bytes());
    assert_eq!((r.status, r.header("allow")), (405, Some("DELETE")), "{r:?}");
    assert_eq!(d.call_as(Some(&cam), "GET", &format!("/whip/stage/{cam_id}"), None).0, 405);

    assert_api_error(&d.call_as(Some(&eye), "DELETE", &format!("/whip/stage/{cam_id}"), None), 403, "forbidden");
    assert_eq!(d.call_as(Some(&cam), "DELETE", &format!("/whip/stage/{cam_id}"), None).0, 204);
    assert_api_error(
        &d.call_as(Some(&cam), "DELETE", &format!("/whip/stage/{cam_id}"), None),
        404,
        "participant_not_found",
    );
    assert_eq!(d.call_as(Some(&eye), "DELETE", &format!("/whep/stage/{eye_id}"), None).0, 204);
    assert!(d.participants_of("stage").is_empty());
}

fn preflight(d: &Daemon, origin: &str) -> RawResponse {
    let headers = [
        Some(format!("Origin: {origin}")),
        Some("Access-Control-Request-Method: POST".to_string()),
        Some("Access-Control-Request-Headers: authorization, content-type".to_string()),
    ];
    raw_http_with(&d.base_url, "OPTIONS", "/whip/live", &headers, b"")
}

#[test]
fn cors_preflight_is_answered_for_listed_origins_only() {
    let d = Daemon::start_with(|c| {
        c.set("http", "cors_origins", json!(["https://studio.example"]));
    });
    // No token: a browser sends none on a preflight.
    let ok = preflight(&d, "https://studio.example");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://studio.example"), "{ok:?}");
    let methods = ok.header("access-control-allow-methods").unwrap_or("").to_ascii_uppercase();
    for m in ["POST", "GET", "PATCH", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{m} not allowed: {ok:?}");
    }
    let headers = ok.header("access-control-allow-headers").unwrap_or("").to_ascii_lowercase();
    assert!(headers.contains("authorization") && headers.contains("content-type"), "{ok:?}");

    let other = preflight(&d, "https://elsewhere.example");
    assert_eq!(other.header("access-control-allow-origin"), None, "another origin is not allowed: {other:?}");

    // A real request from the page: even its 401 can be read, with the WHIP headers exposed.
    let headers = [Some("Origin: https://studio.example".to_string()), Some("Content-Type: application/sdp".into())];
    let r = raw_http_with(&d.base_url, "POST", "/whip/live", &headers, fixture("webrtcbin_offer.sdp").as_bytes());
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://studio.example"), "{r:?}");
    let exposed = r.header("access-control-expose-headers").unwrap_or("").to_ascii_lowercase();
    for h in ["location", "etag", "link", "content-type"] {
        assert!(exposed.contains(h), "{h} not exposed: {r:?}");
    }

    // Without cors_origins (the default) there are no CORS headers at all.
    let plain = Daemon::start();
    let r = preflight(&plain, "https://studio.example");
    assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");
    assert_ne!(r.status, 200, "no CORS, no preflight answer: {r:?}");
}
