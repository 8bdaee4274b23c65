//! Bad input on the phone-leg side, each checked for its status and error code (or its drop
//! counter) and for changing nothing else:
//! - offers the bridge cannot take (no supported codec, only unsupported SDES suites);
//! - an exhausted RTP port range;
//! - packets from a foreign address while latching is off, and a stranger's packets to a latched
//!   leg while its peer talks (RTP Bleed);
//! - SRTP with a bad auth tag, a replayed SRTP packet, a truncated datagram;
//! - a leg that goes silent for the inactivity timeout.
//!
//! Most of it needs no media stack: the test itself is the "phone", with std UDP sockets.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

fn offer(port: u16, proto: &str, media: &str) -> String {
    format!("v=0\r\no=- 77 1 IN IP4 127.0.0.1\r\ns=gw\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} {proto} {media}")
}

/// A plain PCMU + telephone-event offer for a phone at `port`.
fn pcmu_offer(port: u16) -> String {
    offer(
        port,
        "RTP/AVP",
        "0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=rtcp-mux\r\na=sendrecv\r\n",
    )
}

fn phone_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    s
}

fn port_of(s: &UdpSocket) -> u16 {
    s.local_addr().unwrap().port()
}

/// The bridge's media port from its answer.
fn answer_port(joined: &Value) -> u16 {
    let sdp = joined["sdp"].as_str().unwrap_or_else(|| panic!("no sdp in {joined}"));
    Sdp::parse(sdp).media[0].port
}

fn rtp(seq: u16, ts: u32, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 160));
    p
}

/// Everything `s` receives for `dur`.
fn drain(s: &UdpSocket, dur: Duration) -> Vec<Vec<u8>> {
    let end = Instant::now() + dur;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        if let Ok(n) = s.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
    }
    got
}

fn dropped(d: &Daemon, reason: &str) -> f64 {
    let (s, text) = d.get_text("/metrics");
    assert_eq!(s, 200);
    metric_value(&text, "switchboard_packets_dropped_total", &[("reason", reason)])
        .unwrap_or_else(|| panic!("no switchboard_packets_dropped_total{{reason=\"{reason}\"}} in /metrics"))
}

/// Waits (metrics are harvested every 500 ms) until the counter reaches `want`, then a little
/// longer to see that it does not overshoot; returns the settled value.
fn settle_dropped(d: &Daemon, reason: &str, want: f64) -> f64 {
    poll_until(Duration::from_secs(3), || (dropped(d, reason) >= want).then_some(()));
    std::thread::sleep(Duration::from_millis(700));
    dropped(d, reason)
}

#[test]
fn refused_offers_and_an_exhausted_port_range_change_nothing() {
    // One even/odd pair per media worker (each worker has its own slice of the range), so room
    // `gw`, on the first worker, has room for exactly one rtp leg, resting 1 s once released.
    let d = Daemon::start_with(|c| {
        let min = c.get("rtp", "port_min").and_then(Value::as_u64).unwrap();
        c.set("rtp", "port_max", min + 2 * test_workers() - 1);
        c.set("rtp", "port_quarantine_secs", 1);
    });
    let parts = "/v1/rooms/gw/participants";
    d.create_room("gw");
    assert_eq!(d.worker_of("gw"), 0, "the first room goes to the first worker");
    let phone = phone_socket();

    // G.729 only: nothing the bridge speaks. The message names what was offered.
    let g729 =
        offer(port_of(&phone), "RTP/AVP", "18\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=sendrecv\r\n");
    let r = d.post_json(parts, &json!({ "sdp": g729 }));
    assert_api_error(&r, 400, "bad_sdp");
    let msg = r.1["error"]["message"].as_str().unwrap();
    assert!(msg.contains("G729"), "the error should name the offered codec G729: {msg:?}");
    assert_eq!(d.participants_of("gw"), Vec::<String>::new(), "a refused offer joined someone");

    // SDES with only suites the bridge does not implement.
    // Well-formed keys (30 and 46 bytes of key || salt), suites the bridge does not implement.
    let key30 = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e";
    let key46 = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLg==";
    let f8 = offer(
        port_of(&phone),
        "RTP/SAVP",
        &format!(
            "0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:1 F8_128_HMAC_SHA1_80 inline:{key30}\r\n\
             a=crypto:2 AES_256_CM_HMAC_SHA1_80 inline:{key46}\r\na=sendrecv\r\n"
        ),
    );
    let r = d.post_json(parts, &json!({ "sdp": f8 }));
    assert_api_error(&r, 400, "bad_sdp");
    let msg = r.1["error"]["message"].as_str().unwrap();
    assert!(msg.contains("F8_128_HMAC_SHA1_80"), "the error should name the offered suite: {msg:?}");
    assert_eq!(d.participants_of("gw"), Vec::<String>::new(), "a refused offer joined someone");
    // A refused join into a room that does not exist creates no room either.
    assert_api_error(&d.post_json("/v1/rooms/ghost/participants", &json!({ "sdp": g729 })), 400, "bad_sdp");
    assert_api_error(&d.get_json("/v1/rooms/ghost"), 404, "room_not_found");

    // The refused offers gave their port pair back: the one pair serves this join.
    let (s, first) = d.post_json(parts, &json!({ "sdp": pcmu_offer(port_of(&phone)) }));
    assert_eq!(s, 201, "join with the only free port pair: {first}");
    let first_id = first["id"].as_str().unwrap().to_string();
    assert_eq!(answer_port(&first), d.ports.rtp_min, "the only pair's even port");

    // No pair left: 503 no_ports, for an offer and for a late offer alike; nothing changed.
    let other = phone_socket();
    assert_api_error(&d.post_json(parts, &json!({ "sdp": pcmu_offer(port_of(&other)) })), 503, "no_ports");
    assert_api_error(&d.post_json(parts, &json!({ "kind": "rtp" })), 503, "no_ports");
    assert_eq!(d.participants_of("gw"), vec![first_id.clone()]);
    let (s, still) = d.get_json(&format!("{parts}/{first_id}"));
    assert_eq!(s, 200, "{still}");
    assert_eq!(still["tracks"], first["tracks"], "the first leg's view changed: {still}");

    // Leaving frees the pair again, once it has rested for the quarantine.
    assert_eq!(d.delete(&format!("{parts}/{first_id}")).0, 204);
    assert_api_error(&d.post_json(parts, &json!({ "sdp": pcmu_offer(port_of(&other)) })), 503, "no_ports");
    std::thread::sleep(Duration::from_millis(1300));
    let (s, again) = d.post_json(parts, &json!({ "sdp": pcmu_offer(port_of(&other)) }));
    assert_eq!(s, 201, "join after the only leg left: {again}");
    assert_eq!(answer_port(&again), d.ports.rtp_min);
}

#[test]
fn foreign_source_is_dropped_and_counted_when_latching_is_off() {
    let d = Daemon::start_with(|c| {
        c.set("rtp", "symmetric", false);
    });
    let parts = "/v1/rooms/strict/participants";
    let (a, b, foreign) = (phone_socket(), phone_socket(), phone_socket());
    let (s, ja) = d.post_json(parts, &json!({ "sdp": pcmu_offer(port_of(&a)) }));
    assert_eq!(s, 201, "{ja}");
    let (s, jb) = d.post_json(parts, &json!({ "sdp": pcmu_offer(port_of(&b)) }));
    assert_eq!(s, 201, "{jb}");
    let bridge_a = ("127.0.0.1", answer_port(&ja));
    let before = dropped(&d, "unknown_source");
    assert_eq!(before, 0.0);

    // From the address in A's SDP: accepted and forwarded to B.
    let ssrc = 0x0a0a_0a0a;
    for i in 0..25u16 {
        a.send_to(&rtp(i, u32::from(i) * 160, ssrc, 0x11), bridge_a).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let at_b = drain(&b, Duration::from_millis(300));
    let genuine = at_b.iter().filter(|p| p.len() == 172 && p[12..].iter().all(|x| *x == 0x11)).count();
    assert!(genuine >= 20, "B got {genuine} of A's 25 packets (of {} datagrams)", at_b.len());

    // The same stream, continued from another port: dropped, counted, not forwarded, and the
    // bridge does not start sending to the foreign address.
    for i in 25..45u16 {
        foreign.send_to(&rtp(i, u32::from(i) * 160, ssrc, 0x22), bridge_a).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in 0..10u16 {
        // B talks meanwhile; with latching off the bridge sends it to A's SDP address only.
        b.send_to(&rtp(i, u32::from(i) * 160, 0x0b0b_0b0b, 0x33), ("127.0.0.1", answer_port(&jb))).unwrap();
    }
    let at_b = drain(&b, Duration::from_millis(400));
    let leaked = at_b.iter().filter(|p| p.len() == 172 && p[12..].iter().all(|x| *x == 0x22)).count();
    assert_eq!(leaked, 0, "packets from the foreign port were forwarded to B");
    let at_foreign = drain(&foreign, Duration::from_millis(200));
    assert!(at_foreign.is_empty(), "the bridge sent {} datagrams to the foreign port", at_foreign.len());
    let at_a = drain(&a, Duration::from_millis(200));
    assert!(
        at_a.iter().any(|p| p.len() == 172 && p[12..].iter().all(|x| *x == 0x33)),
        "B's media did not reach A's SDP address ({} datagrams)",
        at_a.len()
    );
    let after = settle_dropped(&d, "unknown_source", 20.0);
    assert_eq!(after - before, 20.0, "switchboard_packets_dropped_total{{reason=\"unknown_source\"}}");
}

#[test]
fn a_stranger_cannot_take_over_a_latched_leg() {
    let d = Daemon::start();
    let parts = "/v1/rooms/bleed/participants";
    let (a, b, stranger) = (phone_socket(), phone_socket(), phone_socket());
    // A is behind a NAT: its SDP names a port it does not send from, so the leg latches to the
    // source of A's packets.
    let (s, ja) = d.post_json(parts, &json!({ "sdp": pcmu_offer(port_of(&phone_socket())) }));
    assert_eq!(s, 201, "{ja}");
    let (s, jb) = d.post_json(parts, &json!({ "sdp": pcmu_offer(port_of(&b)) }));
    assert_eq!(s, 201, "{jb}");
    let (bridge_a, bridge_b) = (("127.0.0.1", answer_port(&ja)), ("127.0.0.1", answer_port(&jb)));
    let before = dropped(&d, "unknown_source");

    // A talks, and a stranger sends the same kind of packets to A's port in between (RTP Bleed).
    let (ssrc_a, ssrc_x) = (0x0a0a_0a0a, 0x0e0e_0e0e);
    for i in 0..30u16 {
        a.send_to(&rtp(i, u32::from(i) * 160, ssrc_a, 0x11), bridge_a).unwrap();
        if i >= 5 {
            stranger.send_to(&rtp(i, u32::from(i) * 160, ssrc_x, 0x22), bridge_a).unwrap();
        }
        b.send_to(&rtp(i, u32::from(i) * 160, 0x0b0b_0b0b, 0x33), bridge_b).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let payloads =
        |got: &[Vec<u8>], fill: u8| got.iter().filter(|p| p.len() == 172 && p[12..].iter().all(|x| *x == fill)).count();
    let at_b = drain(&b, Duration::from_millis(300));
    assert_eq!(payloads(&at_b, 0x22), 0, "the stranger's packets were forwarded to B");
    assert!(payloads(&at_b, 0x11) >= 25, "B got {} of A's 30 packets", payloads(&at_b, 0x11));
    let at_stranger = drain(&stranger, Duration::from_millis(100));
    assert_eq!(payloads(&at_stranger, 0x33), 0, "B's media went to the stranger");
    let at_a = drain(&a, Duration::from_millis(100));
    assert!(payloads(&at_a, 0x33) >= 20, "B's media did not follow A's latch ({} of 30)", payloads(&at_a, 0x33));
    assert_eq!(settle_dropped(&d, "unknown_source", before + 25.0) - before, 25.0, "the stranger's packets, counted");

    // A's NAT rebinds: the old mapping falls silent, and a second later the new one is the peer.
    std::thread::sleep(Duration::from_millis(1200));
    for i in 30..45u16 {
        stranger.send_to(&rtp(i, u32::from(i) * 160, ssrc_a, 0x44), bridge_a).unwrap();
        b.send_to(&rtp(i, u32::from(i) * 160, 0x0b0b_0b0b, 0x33), bridge_b).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let at_b = drain(&b, Duration::from_millis(300));
    assert!(payloads(&at_b, 0x44) >= 12, "after A's silence its new source was not taken ({})", payloads(&at_b, 0x44));
    let at_new = drain(&stranger, Duration::from_millis(100));
    assert!(payloads(&at_new, 0x33) >= 10, "B's media did not move to A's new source ({})", payloads(&at_new, 0x33));
}

#[test]
fn bad_srtp_and_truncated_packets_are_dropped_by_reason() {
    require_rtp_leg();
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("b.s16le");
    let suite = "AES_CM_128_HMAC_SHA1_80";
    // The listener stays until the attacker is done (the stop file).
    let stop = dir.path().join("stop");
    let (stop_arg, audio_arg) = (stop.to_str().unwrap(), audio.to_str().unwrap());
    let rx_args =
        ["--srtp", suite, "--tone", "660", "--duration", "40", "--stop-file", stop_arg, "--save-audio", audio_arg];
    let mut rx = Some(d.join_peer(RTP_LEG, "sec", "listener", &rx_args, Duration::from_secs(60)));
    d.wait_for_participants("sec", 1, &mut [&mut rx], JOIN_WAIT);
    for reason in ["srtp_auth", "replay", "malformed"] {
        assert_eq!(dropped(&d, reason), 0.0, "{reason} before anything was injected");
    }
    // The sender replaces 5 of its packets by copies with a broken auth tag, then sends again
    // 3 packets it sent before, then 2 datagrams of 5 bytes.
    // (The injections count from when the listener's media flows in: --timeline-after-rx.)
    let mut tx_args = vec!["--srtp", suite, "--tone", "440", "--duration", "5", "--timeline-after-rx", "25"];
    tx_args.extend(["--inject", "2:bad-authx5", "--inject", "2.6:replayx3", "--inject", "3.2:truncatedx2"]);
    let tx = d.join_peer(RTP_LEG, "sec", "attacker", &tx_args, Duration::from_secs(40)).wait();
    std::fs::write(&stop, b"").unwrap();
    let rx = rx.take().unwrap().wait();
    let tj = tx.expect_ok();
    assert_eq!(tj["sent"]["injected"], json!({"bad-auth": 5, "replay": 3, "truncated": 2}), "{}", tx.describe());
    assert_eq!(settle_dropped(&d, "srtp_auth", 5.0), 5.0, "drops for srtp_auth");
    assert_eq!(dropped(&d, "replay"), 3.0, "drops for replay");
    assert_eq!(dropped(&d, "malformed"), 2.0, "drops for malformed");

    // The rest of the stream went through: the listener still heard 440 Hz clean.
    let rj = rx.expect_ok();
    assert_eq!(rj["received"]["srtp_auth_failed"], 0, "{}", rx.describe());
    let all = read_s16le(&audio);
    let tail = &all[all.len().saturating_sub(8000)..];
    let hz = dominant_frequency(tail, 8000);
    assert!((hz - 440.0).abs() <= 10.0, "the listener heard {hz} Hz after the attack: {rj}");
}

#[test]
fn silent_leg_is_closed_after_the_inactivity_timeout() {
    let d = Daemon::start_with(|c| {
        c.set("media", "inactivity_timeout_secs", 2);
    });
    let sse = d.create_and_follow("idle");
    let parts = "/v1/rooms/idle/participants";
    let (silent, talker) = (phone_socket(), phone_socket());
    let joined_at = Instant::now();
    let (s, js) = d.post_json(parts, &json!({ "sdp": pcmu_offer(port_of(&silent)) }));
    assert_eq!(s, 201, "{js}");
    let (s, jt) = d.post_json(parts, &json!({ "sdp": pcmu_offer(port_of(&talker)) }));
    assert_eq!(s, 201, "{jt}");
    let (silent_id, talker_id) = (js["id"].as_str().unwrap().to_string(), jt["id"].as_str().unwrap().to_string());

    // The talker sends 20 ms packets for 4.5 s; the silent leg sends nothing at all.
    let to = ("127.0.0.1", answer_port(&jt));
    let mut i = 0u16;
    while joined_at.elapsed() < Duration::from_millis(4500) {
        talker.send_to(&rtp(i, u32::from(i) * 160, 0x7a1c_0001, 0x44), to).unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = sse.wait_for_participant_event("participant_left", &silent_id, Duration::from_secs(1));
    let after = left.at.duration_since(joined_at);
    assert!(
        after >= Duration::from_millis(1800) && after <= Duration::from_millis(3600),
        "the silent leg was closed {after:?} after joining; the timeout is 2 s"
    );
    assert_eq!(left.data["reason"], "inactive", "participant_left: {}", left.data);
    assert_api_error(&d.get_json(&format!("{parts}/{silent_id}")), 404, "participant_not_found");
    // The talker kept its leg.
    assert!(
        !sse.events()
            .iter()
            .any(|e| e.event == "participant_left"
                && event_participant_id(&e.data).as_deref() == Some(talker_id.as_str())),
        "the talking leg was closed too: {:?}",
        sse.names()
    );
    assert_eq!(d.participants_of("idle"), vec![talker_id]);
    let (_, metrics) = d.get_text("/metrics");
    let inactive = metric_value(&metrics, "switchboard_participants_left_total", &[("reason", "inactive")]);
    assert_eq!(inactive, Some(1.0), "switchboard_participants_left_total{{reason=\"inactive\"}}");
    // Closing a leg says goodbye: an RTCP BYE (PT 203) to the silent leg's address.
    let got = drain(&silent, Duration::from_millis(100));
    let bye = got.iter().any(|p| {
        let mut off = 0;
        while off + 4 <= p.len() {
            if p[off + 1] == 203 {
                return true;
            }
            off += (usize::from(u16::from_be_bytes([p[off + 2], p[off + 3]])) + 1) * 4;
        }
        false
    });
    assert!(
        bye,
        "no RTCP BYE reached the closed leg ({} datagrams: {:?})",
        got.len(),
        got.iter().map(|p| p.len()).collect::<Vec<_>>()
    );
}
