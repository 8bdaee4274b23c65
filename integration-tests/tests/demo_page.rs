//! The demo page (`/demo`) and its SDK (`/sdk/switchboard.js`), as people use them: two headless
//! Chromium pages (peers/demo_page.mjs) open the link with their own token, join one room through
//! the page's form, see and hear each other and a phone leg (peers/rtp_leg.py, joined through the
//! API), mute, and leave. Also: the two files as served, the link `make run` prints, and the SDK's
//! event-stream parser and its live stream under node (peers/sdk_check.mjs).

use std::process::Command;
use std::time::Duration;

use switchboard_integration_tests::*;

const PAGE: &str = "demo_page.mjs";
const PHONE_HZ: f64 = 880.0;

fn grants() -> [&'static str; 2] {
    ["publish", "subscribe"]
}

/// The page state's slot carrying `id`'s media of `kind`, with its `stats` entry.
fn slot_of<'a>(page: &'a Value, id: &str, kind: &str) -> Option<(&'a Value, &'a Value)> {
    let slot = page["state"]["slots"].as_array()?.iter().find(|s| s["publisher_id"] == id && s["kind"] == kind)?;
    let stats = page["stats"].as_array()?.iter().find(|s| s["mid"] == slot["mid"])?;
    Some((slot, stats))
}

/// The tile the page shows for `name`.
fn tile<'a>(page: &'a Value, name: &str) -> Option<&'a Value> {
    page["state"]["tiles"].as_array()?.iter().find(|t| t["name"] == name)
}

fn names(page: &Value) -> Vec<String> {
    let mut n: Vec<String> = page["state"]["participants"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    n.sort();
    n
}

#[test]
fn two_pages_and_a_phone_see_and_hear_each_other_then_mute_and_leave() {
    require_chromium();
    require_rtp_leg();
    let d = Daemon::start();
    let sse = d.create_and_follow("demo");
    let (alice_tok, bob_tok) = (token("demo", "alice", &grants()), token("demo", "bob", &grants()));
    let (alice_arg, bob_arg) = (format!("alice={alice_tok}"), format!("bob={bob_tok}"));
    let mut args = vec!["--api", &d.base_url, "--person", &alice_arg, "--person", &bob_arg];
    args.extend(["--expect", "phone", "--expect-tone", "phone:880", "--expect-speaker", "--mute", "bob"]);
    args.extend(["--timeout", "120"]);
    let shot = std::env::var("SB_DEMO_SCREENSHOT").ok();
    if let Some(path) = &shot {
        args.extend(["--screenshot", path]);
    }
    let mut pages = Some(spawn_peer(PAGE, &args, Duration::from_secs(200)));

    // The phone calls in once both pages are in and connected (their event streams are up by
    // then): its one slot mixes the two browsers, and the mixer names the room's first speaker.
    d.wait_for_participants("demo", 2, &mut [&mut pages], Duration::from_secs(60));
    let connected = poll_until(Duration::from_secs(30), || {
        let (_, room) = d.get_json("/v1/rooms/demo");
        room["participants"].as_array()?.iter().all(|p| p["state"] == "connected").then_some(())
    });
    assert!(connected.is_some(), "the pages never connected: {:?}", d.get_json("/v1/rooms/demo"));
    std::thread::sleep(Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    let leg_args = ["--tone", "880", "--duration", "150", "--stop-file", stop.to_str().unwrap()];
    let leg = d.join_peer(RTP_LEG, "demo", "phone", &leg_args, Duration::from_secs(180));
    let mut pages = pages.take().unwrap();

    // The bridge's own view of alice while everyone is in: each of the others forwarded to a
    // slot of her own, which takes the audio slot her page added (a renegotiation) for the phone.
    let in_call = poll_until(Duration::from_secs(160), || {
        if pages.finished() {
            return Some(None);
        }
        std::thread::sleep(Duration::from_millis(250));
        let (s, room) = d.get_json("/v1/rooms/demo");
        let alice = room["participants"].as_array()?.iter().find(|p| p["identity"] == "alice")?.clone();
        let forwards = alice["subscriptions"].as_array()?.iter().filter(|s| s["route"] == "forward").count();
        (s == 200 && forwards == 3).then_some(Some((room, alice)))
    })
    .flatten();
    let out = pages.wait();
    std::fs::write(&stop, b"").unwrap();
    let j = out.expect_ok();
    assert_eq!(j["ready"], true, "the pages never saw and heard everyone: {}", out.describe());
    let (room, alice_view) =
        in_call.unwrap_or_else(|| panic!("alice never had three forward slots: {}", out.describe()));
    let id_of = |name: &str| -> String {
        let p = room["participants"].as_array().unwrap().iter().find(|p| p["display_name"] == name);
        p.and_then(|p| p["id"].as_str()).unwrap_or_else(|| panic!("no {name} in {room}")).to_string()
    };
    let (alice, bob, phone) = (id_of("alice"), id_of("bob"), id_of("phone"));
    // The speaker each page shows: the last one the bridge named before anyone left.
    let alice_left = sse.wait_for_participant_event("participant_left", &alice, Duration::from_secs(5)).at;
    let spoken: Vec<SseEvent> =
        sse.events().into_iter().filter(|e| e.event == "active_speaker" && e.at < alice_left).collect();
    let speaker = spoken.last().and_then(|e| event_participant_id(&e.data));
    let speaker = speaker.unwrap_or_else(|| panic!("the bridge named no speaker: {:?}", sse.names()));

    for (me, other, other_id) in [("alice", "bob", &bob), ("bob", "alice", &alice)] {
        let page = &j["pages"][me];
        let ctx = format!("{me}'s page: {page}");
        assert_eq!(page["state"]["connection"], "connected", "{ctx}");
        assert_eq!(page["room_field"], "demo", "the room comes from the token: {ctx}");
        assert_eq!(names(page), [other, "phone", "you"], "{ctx}");
        for name in [&format!("{me} (you)"), other, "phone"] {
            assert!(tile(page, name).is_some(), "no tile named {name}: {ctx}");
        }
        // The other browser's camera and microphone, decoded.
        let (vslot, video) = slot_of(page, other_id, "video").unwrap_or_else(|| panic!("no video from {other}: {ctx}"));
        assert!(video["framesDecoded"].as_u64().unwrap_or(0) >= 30, "{other}'s video: {video}");
        assert_eq!((&vslot["route"], &vslot["codec"]), (&json!("forward"), &json!("vp8")), "{ctx}");
        let (_, voice) = slot_of(page, other_id, "audio").unwrap_or_else(|| panic!("no audio from {other}: {ctx}"));
        assert!(voice["packetsReceived"].as_u64().unwrap_or(0) >= 50, "{other}'s audio: {voice}");
        assert!(voice["totalAudioEnergy"].as_f64().unwrap_or(0.0) > 0.0, "{other}'s audio is silent: {voice}");
        // The phone, heard as its tone on a slot of its own.
        let (pslot, pstats) = slot_of(page, &phone, "audio").unwrap_or_else(|| panic!("no slot for the phone: {ctx}"));
        let peak = pslot["peaks"][0][0].as_f64().unwrap_or(0.0);
        assert!((peak - PHONE_HZ).abs() <= 20.0, "the phone's slot peaks at {peak} Hz, not 880: {pslot}");
        assert!(pstats["totalAudioEnergy"].as_f64().unwrap_or(0.0) > 0.0, "{pstats}");
        assert_eq!((&pslot["route"], &pslot["codec"]), (&json!("forward"), &json!("pcmu")), "{ctx}");
        let phone_tile = tile(page, "phone").unwrap();
        assert_eq!(
            phone_tile["routes"],
            json!([format!("audio forward · pcmu · slot {}", pslot["mid"].as_str().unwrap())])
        );
        assert_eq!(phone_tile["video"], false, "a phone has no picture: {phone_tile}");
        assert_eq!(tile(page, other).unwrap()["video"], true, "{ctx}");
        // The active speaker, named and highlighted.
        assert_eq!(page["state"]["speaker"], speaker.as_str(), "{ctx}");
        let shown = if speaker == page["state"]["me"] {
            "you"
        } else if speaker == alice {
            "alice"
        } else {
            "bob"
        };
        assert_eq!(page["state"]["speakerText"], format!("Active speaker: {shown}"), "{ctx}");
        let lit: Vec<&Value> =
            page["state"]["tiles"].as_array().unwrap().iter().filter(|t| t["speaking"] == true).collect();
        let tile_name = if shown == "you" { format!("{me} (you)") } else { shown.to_string() };
        assert_eq!(lit.len(), 1, "one tile lit: {ctx}");
        assert_eq!(lit[0]["name"], tile_name.as_str(), "{ctx}");
        // The page hears of its own route changes as events.
        let own_routes = page["state"]["events"].as_array().unwrap().iter().filter(|e| {
            e["name"] == "route_changed"
                && e["data"]["participant_id"] == page["state"]["me"]
                && e["data"]["publisher_id"] == phone.as_str()
        });
        assert!(own_routes.count() >= 1, "no route_changed bringing the phone to {me}'s page: {ctx}");
        // The token stays out of the address bar, the console and every URL; the page's policy
        // blocked nothing it needs.
        assert_eq!(page["url_after_load"], d.url("/demo"), "{ctx}");
        assert_eq!(page["visible_url_has_token"], false);
        assert_eq!(page["console_has_token"], false);
        assert_eq!(page["urls_with_token"], 0);
        assert_eq!(page["csp_violations"], json!([]), "{ctx}");
        assert_eq!(page["page_errors"], json!([]), "{ctx}");
        assert_eq!(page["failed_responses"], json!([]), "every call the page made succeeded: {ctx}");
        let console = page["console"].as_array().unwrap();
        assert!(!console.iter().any(|l| l.as_str().unwrap_or("").contains("Failed")), "{ctx}");
        assert_eq!(page["after_leave"]["joined"], false, "{me} pressed Leave: {}", page["after_leave"]);
    }

    // What alice's page shows for bob is what the bridge says it does for her.
    let alice_page = &j["pages"]["alice"];
    let mut shown: Vec<String> = alice_view["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["publisher_id"] == bob.as_str())
        .map(|s| {
            format!(
                "{} {} · {} · slot {}",
                s["kind"].as_str().unwrap(),
                s["route"].as_str().unwrap(),
                s["codec"].as_str().unwrap(),
                s["slot"].as_str().unwrap()
            )
        })
        .collect();
    shown.sort();
    assert_eq!(tile(alice_page, "bob").unwrap()["routes"], json!(shown), "alice's page vs the bridge: {alice_view}");
    assert_eq!(alice_view["display_name"], "alice", "{alice_view}");
    assert_eq!((&alice_view["can_publish"], &alice_view["can_subscribe"]), (&json!(true), &json!(true)));

    // Bob pressed Mute and Camera off: alice stopped hearing him, and his buttons say so.
    let m = &j["mute"];
    let (before, after) = (m["alice"]["before"].as_f64().unwrap_or(0.0), m["alice"]["after"].as_f64().unwrap_or(1.0));
    assert!(before > 0.0, "alice heard nothing from bob before he muted: {m}");
    assert!(after < before / 20.0, "alice still heard bob after he muted: {m}");
    assert_eq!((&m["buttons"]["mic"], &m["buttons"]["cam"]), (&json!("Unmute microphone"), &json!("Turn camera on")));

    // Bob's page heard alice leave; then both are gone and the phone is alone.
    let left = j["pages"]["bob"]["after_leave"]["events"].as_array().unwrap().iter().any(|e| {
        e["name"] == "participant_left"
            && e["data"]["participant_id"] == alice.as_str()
            && e["data"]["reason"] == "requested"
    });
    assert!(left, "bob's log never showed alice leaving: {}", j["pages"]["bob"]["after_leave"]);
    for (id, identity) in [(&alice, "alice"), (&bob, "bob")] {
        let joined = sse.wait_for_participant_event("participant_joined", id, Duration::from_secs(2));
        assert_eq!(joined.data["identity"], identity, "{:?}", joined.data);
        let gone = sse.wait_for_participant_event("participant_left", id, Duration::from_secs(5));
        assert_eq!(gone.data["reason"], "requested", "{:?}", gone.data);
    }
    assert_eq!(d.participants_of("demo"), [phone]);
    leg.wait().expect_ok();
    if let Some(path) = shot {
        assert!(std::fs::metadata(&path).map(|m| m.len() > 10_000).unwrap_or(false), "no screenshot at {path}");
    }
}

#[test]
fn the_page_and_the_sdk_are_served_without_a_token_with_their_types_and_policy() {
    let d = Daemon::start();
    let page = raw_http_with(&d.base_url, "GET", "/demo", &[], b"");
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let csp = page.header("content-security-policy").unwrap_or_else(|| panic!("no CSP: {:?}", page.headers));
    for directive in
        ["default-src 'none'", "script-src 'self' 'sha256-", "connect-src 'self'", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert!(page.body.contains("from '/sdk/switchboard.js'"), "the page uses the served SDK");
    assert!(
        !page.body.contains("localStorage") && !page.body.contains("console.log"),
        "the page keeps no token and logs nothing"
    );

    let sdk = raw_http_with(&d.base_url, "GET", "/sdk/switchboard.js", &[], b"");
    assert_eq!(sdk.status, 200);
    assert_eq!(sdk.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(sdk.body.contains("export class Switchboard"), "{}", &sdk.body[..200.min(sdk.body.len())]);

    // Open means these two, not their neighbours: the API still wants a token.
    let api = raw_http_with(&d.base_url, "GET", "/v1/rooms", &[], b"");
    assert_eq!(api.status, 401, "{}", api.body);
    assert_eq!(raw_http_with(&d.base_url, "POST", "/demo", &[], b"").status, 405);
    let routes = Command::new(daemon_bin()).arg("routes").output().expect("switchboard routes");
    let routes = String::from_utf8_lossy(&routes.stdout);
    for line in ["GET /demo open", "GET /sdk/switchboard.js open"] {
        assert!(routes.lines().any(|l| l == line), "{line:?} not in `switchboard routes`:\n{routes}");
    }
}

#[test]
fn the_link_make_run_prints_opens_the_demo_room_as_guest() {
    let d = Daemon::start();
    d.create_room("demo");
    let mut cmd = Command::new(workspace_root().join("scripts/demo-link.sh"));
    // As for the daemon: the test's config is the whole truth (SWITCHBOARD_* would override it).
    for (k, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("SWITCHBOARD_")) {
        cmd.env_remove(k);
    }
    let out = cmd.arg(daemon_bin()).arg(&d.config_path).output().expect("run scripts/demo-link.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let link =
        text.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no link in {text}"));
    let (page, token) = link.split_once("#token=").unwrap_or_else(|| panic!("no #token= in {link}"));
    assert_eq!(page, d.url("/demo"), "the link points at the daemon's http.listen");
    assert_eq!(raw_http_with(&d.base_url, "GET", "/demo", &[], b"").status, 200);
    // The token is a guest's for room demo, to publish and subscribe, for 12 hours.
    let (s, room) = d.call_as(Some(token), "GET", "/v1/rooms/demo", None);
    assert_eq!(s, 200, "{room}");
    assert_api_error(&d.call_as(Some(token), "GET", "/v1/rooms/other", None), 403, "forbidden");
    assert_api_error(&d.call_as(Some(token), "DELETE", "/v1/rooms/demo", None), 403, "forbidden");
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(TEST_SECRET.as_bytes()),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .expect("the token verifies with the daemon's key")
    .claims;
    assert_eq!((&claims["sub"], &claims["room"]), (&json!("guest"), &json!("demo")), "{claims}");
    assert_eq!(claims["grants"], json!(["publish", "subscribe"]), "{claims}");
    let ttl = claims["exp"].as_f64().unwrap() - unix_now();
    assert!((12.0 * 3600.0 - 60.0..=12.0 * 3600.0).contains(&ttl), "valid for {ttl} s, not 12 h: {claims}");
}

#[test]
fn the_sdk_parses_event_streams_cut_anywhere_and_follows_a_room_with_a_token() {
    let d = Daemon::start();
    d.create_room("demo");
    let guest = token("demo", "guest", &["subscribe"]);
    let sdk = spawn_peer(
        "sdk_check.mjs",
        &["--api", &d.base_url, "--room", "demo", "--token", &guest, "--seconds", "4"],
        Duration::from_secs(30),
    );
    // Something to hear while the SDK follows the room.
    std::thread::sleep(Duration::from_millis(1500));
    let offer = fixture("chromium_offer.sdp");
    let joined = d.join("demo", &offer);
    let out = sdk.wait();
    let j = out.expect_ok();

    let parser = &j["parser"];
    assert_eq!(parser["failures"], json!([]), "{parser}");
    let events: Vec<&str> = parser["events"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(events, ["participant_joined", "route_changed", "dtmf", "message"], "{parser}");
    assert_eq!(parser["events"][1]["data"], "{\"slot\":\"0\",\n\"route\":\"forward\"}", "data lines join with LF");
    assert_eq!(j["claims"]["good"]["sub"], "zoë", "{}", j["claims"]);
    assert_eq!((&j["claims"]["garbage"], &j["claims"]["missing"]), (&Value::Null, &Value::Null));

    let live = &j["live"];
    let first = &live["events"][0];
    assert_eq!(first["name"], "participant_joined", "{live}");
    assert_eq!(first["data"]["participant_id"], joined["id"], "the SDK hands on the event's JSON parsed: {live}");
    assert_eq!(live["state_after"], "running", "the stream stays open while the room lives: {live}");
    // Without a token the SDK throws the bridge's error, which never holds a token.
    assert_eq!(
        live["refused"],
        json!({"name": "SwitchboardError", "status": 401, "code": "unauthorized", "message_has_token": false})
    );
}
