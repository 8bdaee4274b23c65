//! A real SIP proxy drives the bridge: Debian's Kamailio, its `rtpengine` module pointed at the
//! bridge's `ng.listen`, relays a call from a sipp caller to a sipp callee. The caller plays a
//! PCMU tone from a pcap the test writes; the callee's media is the test's own UDP socket, so the
//! test reads what the bridge relays. Checked: each side's SDP names the bridge, not the other
//! phone; the callee gets every packet as one stream with the payload as sent; ng `query` counts
//! what each side sent; the BYE removes the room and the call. And a call the caller gives up
//! while it rings: the CANCEL (and the 487 that ends the INVITE) removes the room the INVITE made.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

const CALLER_TAG: &str = "caller-tag-1";
const CALLEE_TAG: &str = "callee-tag-1";
/// The caller hangs up this long after its ACK; the tone lasts 3 s of it.
const HANGUP_MS: u32 = 8000;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A scenario from `tests/fixtures/` with its `@NAME@` placeholders filled in, written to `dir`.
fn scenario(dir: &Path, name: &str, values: &[(&str, String)]) -> std::path::PathBuf {
    let mut text = fixture(name);
    for (k, v) in values {
        text = text.replace(&format!("@{k}@"), v);
    }
    let left = text
        .split('@')
        .skip(1)
        .step_by(2)
        .find(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
    assert!(left.is_none(), "{name}: @{}@ is left", left.unwrap_or_default());
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a scenario");
    path
}

fn is_rtcp(p: &[u8]) -> bool {
    p.len() >= 2 && (200..=204).contains(&p[1])
}

/// The RTP that reaches `sock` until `want` packets have come (and 300 ms more, to catch any
/// extra) or `timeout` passes; with the address it came from.
fn receive_rtp(sock: &UdpSocket, want: usize, timeout: Duration) -> (Vec<Vec<u8>>, Option<SocketAddr>) {
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let deadline = Instant::now() + timeout;
    let (mut got, mut from, mut complete_at) = (Vec::new(), None, None::<Instant>);
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline && complete_at.is_none_or(|t| t.elapsed() < Duration::from_millis(300)) {
        if let Ok((n, src)) = sock.recv_from(&mut buf) {
            if n > 12 && !is_rtcp(&buf[..n]) {
                got.push(buf[..n].to_vec());
                from.get_or_insert(src);
            }
        }
        if got.len() >= want && complete_at.is_none() {
            complete_at = Some(Instant::now());
        }
    }
    (got, from)
}

/// The SDP of the first message in `messages` that starts with `first_line`.
fn sdp_of(messages: &[String], first_line: &str) -> Sdp {
    let m = messages
        .iter()
        .find(|m| m.starts_with(first_line))
        .unwrap_or_else(|| panic!("no {first_line:?} among {messages:#?}"));
    Sdp::parse(sip_body(m).unwrap_or_else(|| panic!("no SDP in {m}")))
}

/// The daemon with `ng.listen`, Kamailio in front of it, and the ports of the SIP side.
struct SipSide {
    d: Daemon,
    kamailio: Kamailio,
    dir: tempfile::TempDir,
    ng_port: u16,
    proxy: u16,
    uac: u16,
    uas: u16,
    /// The caller's RTP port; sipp binds it and the one two above it (for video), so the callee's
    /// is 8 above.
    uac_media: u16,
    _ports: PortBlock,
}

impl SipSide {
    fn start() -> SipSide {
        require_sip_tools();
        let ports = reserve_ports();
        let (ng_port, proxy, uac, uas) = (ports.webrtc, ports.webrtc + 1, ports.webrtc + 2, ports.webrtc + 3);
        let d = Daemon::start_with(|c| {
            c.set("ng", "listen", format!("127.0.0.1:{ng_port}"));
        });
        let dir = tempfile::Builder::new().prefix("switchboard-sip-").tempdir().unwrap();
        let kamailio = Kamailio::start(dir.path(), local(proxy), local(ng_port), local(uas));
        SipSide { d, kamailio, dir, ng_port, proxy, uac, uas, uac_media: ports.rtp_min, _ports: ports }
    }

    fn callee(&self, scenario: &Path) -> Sipp {
        let callee = Sipp::start(self.dir.path(), "callee", scenario, self.uas, self.uac_media + 8, None);
        // Kamailio resends an INVITE that finds no one after 500 ms; this spares the wait.
        std::thread::sleep(Duration::from_millis(300));
        callee
    }

    fn caller(&self, scenario: &Path) -> Sipp {
        Sipp::start(self.dir.path(), "caller", scenario, self.uac, self.uac_media, Some(local(self.proxy)))
    }
}

#[test]
fn a_sipp_call_through_kamailio_is_relayed_by_the_bridge_and_ends_with_the_bye() {
    let sip = SipSide::start();
    let (d, dir, uac_media) = (&sip.d, &sip.dir, sip.uac_media);
    let (rtp_min, rtp_max) = (d.ports.rtp_min, d.ports.rtp_max);
    let callee_media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee_port = callee_media.local_addr().unwrap().port();
    let tone = pcmu_tone_packets(440.0, 3.0, 0x5eed_0001);
    let pcap = dir.path().join("tone-440.pcap");
    write_udp_pcap(&pcap, &tone, 20, (uac_media, 4000)).unwrap();
    let callee_xml = scenario(dir.path(), "sipp_callee.xml", &[("MEDIA_PORT", callee_port.to_string())]);
    let caller_xml = scenario(
        dir.path(),
        "sipp_caller.xml",
        &[("PCAP", pcap.display().to_string()), ("HANGUP_MS", HANGUP_MS.to_string())],
    );
    let callee = sip.callee(&callee_xml);
    let caller = sip.caller(&caller_xml);

    // The caller's tone, through the bridge: every packet, one stream, the payload as sent.
    let (got, bridge) = receive_rtp(&callee_media, tone.len(), Duration::from_secs(15));
    assert_eq!(got.len(), tone.len(), "the callee got {} of {} packets", got.len(), tone.len());
    let ssrc = &got[0][8..12];
    for (i, (p, sent)) in got.iter().zip(&tone).enumerate() {
        assert_eq!(&p[8..12], ssrc, "packet {i}: another SSRC");
        assert_eq!(p[1] & 0x7f, 0, "packet {i}: not PCMU");
        assert_eq!(&p[12..], &sent[12..], "packet {i}: the payload changed on the way");
    }
    let seqs: Vec<u16> = got.iter().map(|p| u16::from_be_bytes([p[2], p[3]])).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "sequence gaps: {seqs:?}");
    let pcm = pcmu_payload_samples(got.iter().map(Vec::as_slice));
    let hz = dominant_frequency(&pcm, 8000);
    assert!((hz - 440.0).abs() < 5.0, "the callee heard {hz} Hz");

    // The callee talks back, to where the bridge's packets come from (symmetric RTP).
    let bridge = bridge.expect("an address the RTP came from");
    assert!((rtp_min..=rtp_max).contains(&bridge.port()), "RTP from {bridge}, not a leg of the bridge");
    let back = pcmu_tone_packets(880.0, 0.5, 0x5eed_0002);
    for p in &back {
        callee_media.send_to(p, bridge).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));

    // During the call: one room with the two legs, one ng call, and `query` counts what each
    // side sent.
    let (_, rooms) = d.get_json("/v1/rooms");
    let room = &rooms["rooms"][0];
    assert_eq!(rooms["rooms"].as_array().map(Vec::len), Some(1), "{rooms}");
    assert_eq!(room["participants"].as_array().map(Vec::len), Some(2), "{rooms}");
    let mut ng = Ng::new(sip.ng_port);
    let calls = ng.list();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let q = ng.cmd(&[("command", bstr("query")), ("call-id", bstr(&calls[0]))]);
    assert_eq!(ng_text(&q, "result"), "ok", "{q:?}");
    let tags = q.get(b"tags".as_slice()).cloned().unwrap_or_else(|| panic!("no tags in {q:?}"));
    let stat = |tag: &str, what: &str| ng_int(&tags, &[tag, "medias", "0", "streams", "0", "stats", what]);
    assert_eq!(stat(CALLER_TAG, "packets"), tone.len() as i64, "{q:?}");
    assert_eq!(stat(CALLER_TAG, "bytes"), tone.iter().map(|p| p.len() as i64).sum::<i64>(), "{q:?}");
    assert_eq!(stat(CALLEE_TAG, "packets"), back.len() as i64, "{q:?}");
    let totals = q.get(b"totals".as_slice()).cloned().unwrap();
    assert_eq!(ng_int(&totals, &["RTP", "packets"]), (tone.len() + back.len()) as i64);

    // The BYE: Kamailio deletes the call, and the room goes with it.
    caller.expect_success(Duration::from_secs(20));
    let callee_got = callee.received();
    callee.expect_success(Duration::from_secs(10));
    let (_, rooms) = d.get_json("/v1/rooms");
    assert_eq!(rooms["rooms"], json!([]), "the room outlived the BYE");
    assert_eq!(ng.list(), Vec::<String>::new(), "the call outlived the BYE");

    // Each side was told to send to the bridge, never to the other phone.
    let to_callee = sdp_of(&callee_got, "INVITE ");
    let caller_got = std::fs::read_to_string(dir.path().join("caller.messages")).unwrap();
    let to_caller = sdp_of(&sipp_messages(&caller_got, "received"), "SIP/2.0 200");
    for (who, sdp, other_phone) in [("callee", &to_callee, uac_media), ("caller", &to_caller, callee_port)] {
        let port = sdp.media[0].port;
        assert!(sdp.has_line("c=IN IP4 127.0.0.1"), "the {who}'s SDP: {sdp:?}");
        assert!((rtp_min..=rtp_max).contains(&port), "the {who} is sent to {port}, not the bridge");
        assert_ne!(port, other_phone, "the {who} is sent to the other phone");
        assert!(!sdp.has_line("o=caller") && !sdp.has_line("o=callee"), "the {who}'s SDP keeps a phone's origin");
    }
    assert_eq!(to_callee.media[0].port, bridge.port(), "the bridge sends from another port than it offered");
    let log = sip.kamailio.log();
    assert!(!log.contains("replied with error"), "the bridge refused a command of Kamailio's:\n{log}");
    assert!(!d.log().contains("does not do"), "the bridge ignored something Kamailio asked for");
}

#[test]
fn a_call_given_up_while_ringing_is_deleted_when_cancelled() {
    let sip = SipSide::start();
    let dir = sip.dir.path();
    let callee = sip.callee(&scenario(dir, "sipp_callee_ringing.xml", &[]));
    let caller = sip.caller(&scenario(dir, "sipp_caller_cancel.xml", &[("CANCEL_MS", "2000".into())]));

    // Ringing: the INVITE's offer made the room and both legs; the callee has not answered.
    let ringing = poll_until(Duration::from_secs(5), || {
        let (_, rooms) = sip.d.get_json("/v1/rooms");
        (rooms["rooms"][0]["participants"].as_array().map(Vec::len) == Some(2)).then_some(rooms)
    });
    assert!(ringing.is_some(), "no room with two legs while ringing: {}", sip.d.get_json("/v1/rooms").1);
    let mut ng = Ng::new(sip.ng_port);
    assert_eq!(ng.list().len(), 1);

    caller.expect_success(Duration::from_secs(15));
    callee.expect_success(Duration::from_secs(10));
    assert_eq!(sip.d.get_json("/v1/rooms").1["rooms"], json!([]), "the room outlived the CANCEL");
    assert_eq!(ng.list(), Vec::<String>::new(), "the call outlived the CANCEL");
}
