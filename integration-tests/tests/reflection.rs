//! Reflection: an `rtp` offer that points the bridge's media at itself, at a multicast group or
//! outside `rtp.allowed_peers` is a 400 `bad_sdp` naming the reason, and changes nothing else.
//! Hold (`c=0.0.0.0`) stays accepted, on a join and on a re-offer.
//!
//! No media stack: the offers name addresses, and the API's answers are all that is checked.

use std::net::UdpSocket;

use switchboard_integration_tests::*;

fn offer_at(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 77 1 IN IP4 {ip}\r\ns=gw\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// A port a "phone" on this host really owns, so an accepted offer names a live peer.
fn phone_port() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

fn answer_port(joined: &Value) -> u16 {
    let sdp = joined["sdp"].as_str().unwrap_or_else(|| panic!("no sdp in {joined}"));
    Sdp::parse(sdp).media[0].port
}

/// A 400 `bad_sdp` whose message says `reason`.
fn assert_refused(got: &(u16, Value), reason: &str) {
    assert_api_error(got, 400, "bad_sdp");
    let msg = got.1["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains(reason), "the message should say {reason:?}: {msg:?}");
}

#[test]
fn offers_toward_the_bridge_or_multicast_are_refused_and_change_nothing() {
    let d = Daemon::start();
    let parts = "/v1/rooms/reflect/participants";
    d.create_room("reflect");
    let (_phone, port) = phone_port();
    let (s, first) = d.post_json(parts, &json!({ "sdp": offer_at("127.0.0.1", port) }));
    assert_eq!(s, 201, "{first}");
    let first_id = first["id"].as_str().unwrap().to_string();
    let bridge_port = answer_port(&first);
    let view = d.participant("reflect", &first_id);

    // Toward the first leg's own port, toward another port of the range, toward the WebRTC
    // socket, and at a multicast group.
    let refused = [
        (offer_at("127.0.0.1", bridge_port), "no loops"),
        (offer_at("127.0.0.1", d.ports.rtp_max - 1), "no loops"),
        (offer_at("127.0.0.1", d.webrtc_port()), "no loops"),
        (offer_at("239.1.2.3", 30000), "multicast"),
        (offer_at("255.255.255.255", 30000), "broadcast"),
    ];
    for (sdp, reason) in &refused {
        assert_refused(&d.post_json(parts, &json!({ "sdp": sdp })), reason);
        // A re-offer is held to the same rules, and the leg stays as it was.
        assert_refused(&d.patch_json(&format!("{parts}/{first_id}"), &json!({ "sdp": sdp })), reason);
    }
    assert_eq!(d.participants_of("reflect"), vec![first_id.clone()], "a refused offer joined someone");
    assert_eq!(d.participant("reflect", &first_id)["tracks"], view["tracks"], "the first leg changed");

    // A late-offer leg whose answer points at the bridge is refused the same way.
    let (s, late) = d.post_json(parts, &json!({ "kind": "rtp" }));
    assert_eq!(s, 201, "{late}");
    let late_id = late["id"].as_str().unwrap().to_string();
    let answer = offer_at("127.0.0.1", bridge_port);
    assert_refused(&d.patch_json(&format!("{parts}/{late_id}"), &json!({ "sdp": answer })), "no loops");
    assert_eq!(d.delete(&format!("{parts}/{late_id}")).0, 204);
    assert_eq!(d.participants_of("reflect"), vec![first_id.clone()]);
}

#[test]
fn offers_outside_allowed_peers_are_refused() {
    let d = Daemon::start_with(|c| {
        c.set("rtp", "allowed_peers", json!(["127.0.0.0/8"]));
    });
    let parts = "/v1/rooms/allow/participants";
    d.create_room("allow");
    assert_refused(&d.post_json(parts, &json!({ "sdp": offer_at("192.0.2.10", 30000) })), "rtp.allowed_peers");
    assert_eq!(d.participants_of("allow"), Vec::<String>::new(), "a refused offer joined someone");
    let (_phone, port) = phone_port();
    let (s, ok) = d.post_json(parts, &json!({ "sdp": offer_at("127.0.0.1", port) }));
    assert_eq!(s, 201, "an allowed peer: {ok}");
}

#[test]
fn a_bad_allowed_peers_entry_stops_the_start_with_the_key_named() {
    let err = Daemon::try_start_with(|c| {
        c.set("rtp", "allowed_peers", json!(["10.0.0.0/33"]));
    })
    .err()
    .expect("the daemon refuses to start");
    assert!(err.contains("rtp.allowed_peers"), "{err}");
}

#[test]
fn hold_at_0_0_0_0_is_still_accepted() {
    let d = Daemon::start();
    let parts = "/v1/rooms/hold/participants";
    d.create_room("hold");
    let (s, held) = d.post_json(parts, &json!({ "sdp": offer_at("0.0.0.0", 30000) }));
    assert_eq!(s, 201, "a join on hold: {held}");
    let (_phone, port) = phone_port();
    let (s, joined) = d.post_json(parts, &json!({ "sdp": offer_at("127.0.0.1", port) }));
    assert_eq!(s, 201, "{joined}");
    let id = joined["id"].as_str().unwrap();
    let (s, re) = d.patch_json(&format!("{parts}/{id}"), &json!({ "sdp": offer_at("0.0.0.0", port) }));
    assert_eq!(s, 200, "a re-offer to hold: {re}");
}
