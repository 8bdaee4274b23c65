//! The rtpengine ng protocol, spoken as Kamailio's `rtpengine` module speaks it: a two-party
//! plain-RTP call set up by `offer` and `answer` carries media both ways through the bridge,
//! `query` counts what each side sent, `delete` removes the room; bad input gets an ng error
//! reply and leaves no room behind.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::Duration;

use serde_bencode::value::Value as B;
use switchboard_integration_tests::*;

/// A bencoded dictionary from `(key, value)` pairs: strings, or lists of strings.
fn bdict(pairs: &[(&str, B)]) -> B {
    B::Dict(pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.clone())).collect())
}
fn s(v: &str) -> B {
    B::Bytes(v.as_bytes().to_vec())
}
fn l(v: &[&str]) -> B {
    B::List(v.iter().map(|x| s(x)).collect())
}

struct Ng {
    sock: UdpSocket,
    to: String,
    n: u32,
}

impl Ng {
    fn new(port: u16) -> Ng {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Ng { sock, to: format!("127.0.0.1:{port}"), n: 0 }
    }

    /// Sends raw bytes with a fresh cookie (or `cookie`); returns the reply's cookie and dictionary.
    fn raw(&mut self, cookie: Option<&str>, body: &[u8]) -> (String, HashMap<Vec<u8>, B>) {
        self.n += 1;
        let cookie = cookie.map(str::to_string).unwrap_or_else(|| format!("{}_{}", std::process::id(), self.n));
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend_from_slice(body);
        self.sock.send_to(&msg, &self.to).unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, _) = self.sock.recv_from(&mut buf).expect("an ng reply");
        let reply = &buf[..n];
        let space = reply.iter().position(|&b| b == b' ').expect("cookie in the reply");
        let got_cookie = String::from_utf8_lossy(&reply[..space]).to_string();
        assert_eq!(got_cookie, cookie, "the reply carries the request's cookie");
        match serde_bencode::from_bytes::<B>(&reply[space + 1..]).expect("a bencoded reply") {
            B::Dict(d) => (got_cookie, d),
            other => panic!("reply is not a dictionary: {other:?}"),
        }
    }

    fn cmd(&mut self, pairs: &[(&str, B)]) -> HashMap<Vec<u8>, B> {
        self.raw(None, &serde_bencode::to_bytes(&bdict(pairs)).unwrap()).1
    }
}

fn get<'a>(d: &'a HashMap<Vec<u8>, B>, key: &str) -> Option<&'a B> {
    d.get(key.as_bytes())
}
fn text(d: &HashMap<Vec<u8>, B>, key: &str) -> String {
    match get(d, key) {
        Some(B::Bytes(b)) => String::from_utf8_lossy(b).to_string(),
        other => panic!("{key}: {other:?} in {d:?}"),
    }
}
fn int(v: &B, path: &[&str]) -> i64 {
    let mut cur = v;
    for k in path {
        cur = match cur {
            B::Dict(d) => d.get(k.as_bytes()).unwrap_or_else(|| panic!("no {k} in {cur:?}")),
            B::List(items) => &items[k.parse::<usize>().unwrap()],
            _ => panic!("{k}: not a container"),
        };
    }
    match cur {
        B::Int(i) => *i,
        other => panic!("{path:?}: {other:?}"),
    }
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
}

#[test]
fn bad_input_gets_an_error_reply_and_leaves_no_room() {
    let ng_port = reserve_ports();
    let d = Daemon::start_with(|c| {
        c.set("ng", "listen", format!("127.0.0.1:{}", ng_port.http));
    });
    let mut ng = Ng::new(ng_port.http);
    let error = |d: &HashMap<Vec<u8>, B>| (text(d, "result"), text(d, "error-reason"));
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
