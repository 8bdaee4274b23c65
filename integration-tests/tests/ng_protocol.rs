//! The rtpengine ng protocol, spoken as Kamailio's `rtpengine` module speaks it: a two-party
//! plain-RTP call set up by `offer` and `answer` carries media both ways through the bridge,
//! `query` counts what each side sent, `delete` removes the room; bad input gets an ng error
//! reply and leaves no room behind.

use std::net::UdpSocket;
use std::time::Duration;

use serde_bencode::value::Value as B;
use switchboard_integration_tests::*;

fn s(v: &str) -> B {
    bstr(v)
}
fn l(v: &[&str]) -> B {
    blist(v)
}
fn get<'a>(d: &'a NgReply, key: &str) -> Option<&'a B> {
    d.get(key.as_bytes())
}
fn text(d: &NgReply, key: &str) -> String {
    ng_text(d, key)
}
fn int(v: &B, path: &[&str]) -> i64 {
    ng_int(v, path)
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// Sends `n` packets from `from` to the bridge's `port`, 20 ms apart, and returns the RTP that
/// `to` received meanwhile.
fn stream(from: &UdpSocket, port: u16, to: &UdpSocket, n: u16, ssrc: u32) -> Vec<Vec<u8>> {
    to.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    for seq in 0..n {
        from.send_to(&rtp(seq, ssrc), ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        while let Ok((len, _)) = to.recv_from(&mut buf) {
            if len > 12 && !(200..=204).contains(&buf[1]) {
                got.push(buf[..len].to_vec());
            }
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    while let Ok((len, _)) = to.recv_from(&mut buf) {
        if len > 12 && !(200..=204).contains(&buf[1]) {
            got.push(buf[..len].to_vec());
        }
    }
    got
}

fn seqs(pkts: &[Vec<u8>]) -> Vec<u16> {
    pkts.iter().map(|p| u16::from_be_bytes([p[2], p[3]])).collect()
}

#[test]
fn a_two_party_call_set_up_by_offer_and_answer_carries_media_and_is_counted() {
    let ng_port = reserve_ports();
    let d = Daemon::start_with(|c| {
        c.set("ng", "listen", format!("127.0.0.1:{}", ng_port.http));
    });
    let mut ng = Ng::new(ng_port.http);
    assert_eq!(text(&ng.cmd(&[("command", s("ping"))]), "result"), "pong");

    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    let call = "a84b4c76e66710@pc33.atlanta.example.com";
    let offer = ng.cmd(&[
        ("command", s("offer")),
        ("call-id", s(call)),
        ("from-tag", s("1928301774")),
        ("sdp", s(&pcmu_offer(caller.local_addr().unwrap().port()))),
        ("ICE", s("remove")),
        ("transport-protocol", s("RTP/AVP")),
        ("flags", l(&["trust-address", "symmetric"])),
        ("replace", l(&["origin", "session-connection"])),
    ]);
    assert_eq!(text(&offer, "result"), "ok", "{offer:?}");
    assert_eq!(get(&offer, "warning"), None, "everything asked was done: {offer:?}");
    let to_callee = Sdp::parse(&text(&offer, "sdp"));
    assert_eq!(to_callee.media[0].proto, "RTP/AVP");
    assert!(text(&offer, "sdp").contains("c=IN IP4 127.0.0.1"), "the bridge's address: {}", text(&offer, "sdp"));
    let answer = ng.cmd(&[
        ("command", s("answer")),
        ("call-id", s(call)),
        ("from-tag", s("1928301774")),
        ("to-tag", s("a6c85cf")),
        ("sdp", s(&pcmu_offer(callee.local_addr().unwrap().port()))),
    ]);
    assert_eq!(text(&answer, "result"), "ok", "{answer:?}");
    let to_caller = Sdp::parse(&text(&answer, "sdp"));
    let (caller_side, callee_side) = (to_caller.media[0].port, to_callee.media[0].port);
    assert_ne!(caller_side, caller.local_addr().unwrap().port(), "the caller must be sent to the bridge");

    // Caller to callee: every packet, one continuous stream, the payload as sent.
    let got = stream(&caller, caller_side, &callee, 50, 0x1111);
    assert!(got.len() >= 49, "the callee got {} of 50", got.len());
    let sq = seqs(&got);
    assert!(sq.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "sequence gaps: {sq:?}");
    for p in &got {
        // The payload's first byte is the sent sequence number's low byte; the rest follows it.
        let expect: Vec<u8> = (0..160).map(|i| (i as u8) ^ p[12]).collect();
        assert_eq!(&p[12..], &expect[..], "the payload changed on the way");
    }
    // Callee to caller.
    let back = stream(&callee, callee_side, &caller, 30, 0x2222);
    assert!(back.len() >= 29, "the caller got {} of 30", back.len());

    // `query` counts what each side sent: 50 from the caller, 30 from the callee.
    let q = ng.cmd(&[("command", s("query")), ("call-id", s(call))]);
    assert_eq!(text(&q, "result"), "ok", "{q:?}");
    let tags = get(&q, "tags").cloned().unwrap_or_else(|| panic!("no tags in {q:?}"));
    assert_eq!(int(&tags, &["1928301774", "medias", "0", "streams", "0", "stats", "packets"]), 50);
    assert_eq!(int(&tags, &["a6c85cf", "medias", "0", "streams", "0", "stats", "packets"]), 30);
    let totals = get(&q, "totals").unwrap().clone();
    assert_eq!(int(&totals, &["RTP", "packets"]), 80);

    let list = ng.cmd(&[("command", s("list"))]);
    assert_eq!(get(&list, "calls"), Some(&l(&[call])));
    let (_, rooms) = d.get_json("/v1/rooms");
    assert_eq!(rooms["rooms"].as_array().map(Vec::len), Some(1), "{rooms}");

    // A BYE: the proxy deletes the call, and the room goes with it.
    assert_eq!(text(&ng.cmd(&[("command", s("delete")), ("call-id", s(call))]), "result"), "ok");
    let (_, rooms) = d.get_json("/v1/rooms");
    assert_eq!(rooms["rooms"], json!([]), "the room outlived the call");

    // What the bridge does not do is said in a `warning`, and the call is made all the same.
    let offer = ng.cmd(&[
        ("command", s("offer")),
        ("call-id", s("recorded")),
        ("from-tag", s("r")),
        ("sdp", s(&pcmu_offer(caller.local_addr().unwrap().port()))),
        ("record-call", s("yes")),
        ("flags", l(&["trust-address", "strict-source"])),
    ]);
    assert_eq!(text(&offer, "result"), "ok", "{offer:?}");
    let warning = text(&offer, "warning");
    assert!(warning.contains("record-call") && warning.contains("strict-source"), "{warning}");
    assert!(!warning.contains("trust-address"), "{warning}");
    assert_eq!(text(&ng.cmd(&[("command", s("delete")), ("call-id", s("recorded"))]), "result"), "ok");
}

#[test]
fn bad_input_gets_an_error_reply_and_leaves_no_room() {
    let ng_port = reserve_ports();
    let d = Daemon::start_with(|c| {
        c.set("ng", "listen", format!("127.0.0.1:{}", ng_port.http));
    });
    let mut ng = Ng::new(ng_port.http);
    let error = |d: &NgReply| (text(d, "result"), text(d, "error-reason"));
    let (r, why) = error(&ng.raw(None, b"%%%% not bencode").1);
    assert_eq!(r, "error", "{why}");
    let (r, _) = error(&ng.raw(None, b"d7:command5:off").1);
    assert_eq!(r, "error");
    let (r, why) = error(&ng.cmd(&[("command", s("teleport"))]));
    assert_eq!(r, "error");
    assert!(why.contains("teleport"), "{why}");
    let (r, why) = error(&ng.cmd(&[("command", s("answer")), ("call-id", s("nobody")), ("sdp", s(&pcmu_offer(4000)))]));
    assert_eq!(r, "error");
    assert!(why.contains("unknown call-id"), "{why}");
    // An offer the bridge cannot take: an error, and no room, no participant left behind.
    let (r, why) = error(&ng.cmd(&[
        ("command", s("offer")),
        ("call-id", s("bad-sdp")),
        ("from-tag", s("x")),
        ("sdp", s("v=0\r\nthis is not sdp")),
    ]));
    assert_eq!(r, "error", "{why}");
    let (r, why) = error(&ng.cmd(&[
        ("command", s("offer")),
        ("call-id", s("to-webrtc")),
        ("from-tag", s("x")),
        ("sdp", s(&pcmu_offer(4002))),
        ("transport-protocol", s("UDP/TLS/RTP/SAVPF")),
    ]));
    assert_eq!(r, "error");
    assert!(why.contains("RTP/AVP"), "{why}");
    let (_, rooms) = d.get_json("/v1/rooms");
    assert_eq!(rooms["rooms"], json!([]), "a refused offer left a room");

    // A retransmitted offer (same cookie) is answered again, not carried out twice.
    let body = serde_bencode::to_bytes(&bdict(&[
        ("command", s("offer")),
        ("call-id", s("twice")),
        ("from-tag", s("t")),
        ("sdp", s(&pcmu_offer(4004))),
    ]))
    .unwrap();
    let (_, first) = ng.raw(Some("retry-1"), &body);
    let (_, again) = ng.raw(Some("retry-1"), &body);
    assert_eq!(text(&first, "result"), "ok", "{first:?}");
    assert_eq!(text(&first, "sdp"), text(&again, "sdp"));
    let (_, rooms) = d.get_json("/v1/rooms");
    let parts = rooms["rooms"][0]["participants"].as_array().map(Vec::len);
    assert_eq!(parts, Some(2), "a retransmission made another leg: {rooms}");
    // The daemon is fine.
    assert_eq!(d.get_json("/healthz").0, 200);
}

/// Sets up a call by `offer` (and `answer`, when `to_tag` is given); returns its room.
fn call_up(ng: &mut Ng, d: &Daemon, call: &str, to_tag: Option<&str>) -> String {
    let offer = ng.cmd(&[
        ("command", s("offer")),
        ("call-id", s(call)),
        ("from-tag", s("f")),
        ("sdp", s(&pcmu_offer(4010))),
        ("ICE", s("remove")),
    ]);
    assert_eq!(text(&offer, "result"), "ok", "{offer:?}");
    if let Some(to) = to_tag {
        let answer = ng.cmd(&[
            ("command", s("answer")),
            ("call-id", s(call)),
            ("from-tag", s("f")),
            ("to-tag", s(to)),
            ("sdp", s(&pcmu_offer(4012))),
        ]);
        assert_eq!(text(&answer, "result"), "ok", "{answer:?}");
    }
    let (_, rooms) = d.get_json("/v1/rooms");
    let room = rooms["rooms"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"].as_str().is_some_and(|id| id.contains(call))));
    room.and_then(|r| r["id"].as_str()).unwrap_or_else(|| panic!("no room for {call}: {rooms}")).to_string()
}

#[test]
fn a_call_whose_room_ends_on_its_own_is_forgotten() {
    let ng_port = reserve_ports();
    let d = Daemon::start_with(|c| {
        c.set("ng", "listen", format!("127.0.0.1:{}", ng_port.http));
    });
    let mut ng = Ng::new(ng_port.http);
    let deleted = call_up(&mut ng, &d, "room-deleted", Some("t1"));
    let emptied = call_up(&mut ng, &d, "legs-left", None);
    let half = call_up(&mut ng, &d, "one-leg-left", Some("t3"));
    let _kept = call_up(&mut ng, &d, "untouched", Some("t4"));
    assert_eq!(ng.list(), vec!["legs-left", "one-leg-left", "room-deleted", "untouched"]);

    // One room deleted through the API; every leg of another leaves; one leg of a third.
    assert_eq!(d.delete(&format!("/v1/rooms/{deleted}")).0, 204);
    let (_, room) = d.get_json(&format!("/v1/rooms/{emptied}"));
    for id in participant_ids(&room) {
        assert_eq!(d.delete(&format!("/v1/rooms/{emptied}/participants/{id}")).0, 204);
    }
    let (_, room) = d.get_json(&format!("/v1/rooms/{half}"));
    let first = participant_ids(&room).into_iter().next().unwrap();
    assert_eq!(d.delete(&format!("/v1/rooms/{half}/participants/{first}")).0, 204);

    // The emptied room still exists (until rooms.empty_timeout_secs), but its call is over; a call
    // with one leg left is the proxy's to delete.
    assert_eq!(d.get_json(&format!("/v1/rooms/{emptied}")).0, 200);
    assert_eq!(ng.list(), vec!["one-leg-left", "untouched"]);
    for gone in ["room-deleted", "legs-left"] {
        let q = ng.cmd(&[("command", s("query")), ("call-id", s(gone))]);
        assert_eq!(text(&q, "result"), "error", "{gone}: {q:?}");
        assert!(text(&q, "error-reason").contains("unknown call-id"), "{q:?}");
    }
    // `query` finds out for itself, without a `list` first.
    assert_eq!(d.delete(&format!("/v1/rooms/{half}")).0, 204);
    let q = ng.cmd(&[("command", s("query")), ("call-id", s("one-leg-left"))]);
    assert!(text(&q, "error-reason").contains("has ended"), "{q:?}");
    assert_eq!(ng.list(), vec!["untouched"]);
    // The proxy's late delete of a forgotten call is an error, and harms nothing.
    let del = ng.cmd(&[("command", s("delete")), ("call-id", s("room-deleted"))]);
    assert_eq!(text(&del, "result"), "error", "{del:?}");
    // An INVITE reusing a call-id whose room ended starts a new call, not a re-offer.
    call_up(&mut ng, &d, "room-deleted", Some("t5"));
    assert_eq!(ng.list(), vec!["room-deleted", "untouched"]);
    let q = ng.cmd(&[("command", s("query")), ("call-id", s("room-deleted"))]);
    assert_eq!(text(&q, "result"), "ok", "{q:?}");
}

#[test]
fn the_callee_is_offered_the_callers_codec_first_and_not_what_the_proxy_strips() {
    let ng_port = reserve_ports();
    let d = Daemon::start_with(|c| {
        c.set("ng", "listen", format!("127.0.0.1:{}", ng_port.http));
    });
    let mut ng = Ng::new(ng_port.http);
    let pcma =
        |port: u16| pcmu_offer(port).replace("RTP/AVP 0", "RTP/AVP 8").replace("a=rtpmap:0 PCMU", "a=rtpmap:8 PCMA");
    // Kamailio's rtpengine_offer("codec-strip-G722 codec-mask-opus codec-transcode-PCMU").
    let codec = B::Dict(
        [("strip", l(&["G722"])), ("mask", l(&["opus"])), ("transcode", l(&["PCMU"]))]
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    );
    let offer = ng.cmd(&[
        ("command", s("offer")),
        ("call-id", s("pcma-caller")),
        ("from-tag", s("f")),
        ("sdp", s(&pcma(4020))),
        ("transport-protocol", s("RTP/AVP")),
        ("codec", codec),
    ]);
    assert_eq!(text(&offer, "result"), "ok", "{offer:?}");
    assert_eq!(get(&offer, "warning"), None, "{offer:?}");
    let sdp = text(&offer, "sdp");
    let m = Sdp::parse(&sdp).media.remove(0);
    // The m-line's order is the offer's preference.
    assert!(sdp.contains(&format!("m=audio {} RTP/AVP 8 0 101\r\n", m.port)), "{sdp}");
    assert!(!sdp.contains("G722") && !sdp.contains("opus"), "{sdp}");

    // A callee that takes the first codec: both legs PCMA, so the call is forwarded, untranscoded.
    let answer =
        ng.cmd(&[("command", s("answer")), ("call-id", s("pcma-caller")), ("to-tag", s("t")), ("sdp", s(&pcma(4022)))]);
    assert_eq!(text(&answer, "result"), "ok", "{answer:?}");
    let (_, rooms) = d.get_json("/v1/rooms");
    let routes: Vec<&Value> = rooms["rooms"][0]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["subscriptions"].as_array().into_iter().flatten())
        .map(|s| &s["route"])
        .collect();
    assert_eq!(routes, vec!["forward", "forward"], "{rooms}");

    // Asking for a codec the bridge does not have is said in a warning.
    let codec = B::Dict([(b"transcode".to_vec(), l(&["AMR-WB"]))].into_iter().collect());
    let offer = ng.cmd(&[
        ("command", s("offer")),
        ("call-id", s("amr")),
        ("from-tag", s("f")),
        ("sdp", s(&pcma(4024))),
        ("codec", codec),
    ]);
    assert_eq!(text(&offer, "result"), "ok", "{offer:?}");
    assert!(text(&offer, "warning").contains("amr-wb"), "{offer:?}");
}
