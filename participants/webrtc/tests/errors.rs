//! Bad input: SDP the driver must refuse with a useful error, and datagrams that must not panic.

mod common;

use std::time::{Duration, Instant};

use common::{add, addr, Pair, BRIDGE, CLIENT};
use str0m::media::{Direction, MediaKind as S0Kind};
use switchboard_driver::testing::Collector;
use switchboard_driver::{Driver, DriverEvent, DropReason, NegotiationError, SdpInput};
use switchboard_webrtc::WebrtcDriver;

const FINGERPRINT: &str = "a=fingerprint:sha-256 \
    00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";

/// A well-formed WebRTC offer with one audio m-line carrying `formats` (each `(pt, rtpmap)`).
fn audio_offer(fingerprint: bool, formats: &[(u8, &str)]) -> String {
    let pts: Vec<String> = formats.iter().map(|(pt, _)| pt.to_string()).collect();
    let mut sdp = String::from("v=0\r\no=- 42 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n");
    if fingerprint {
        sdp.push_str(FINGERPRINT);
        sdp.push_str("\r\n");
    }
    sdp.push_str(&format!("m=audio 9 UDP/TLS/RTP/SAVPF {}\r\n", pts.join(" ")));
    sdp.push_str(
        "c=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:Ab1x\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
         a=setup:actpass\r\na=sendrecv\r\na=rtcp-mux\r\n",
    );
    for (pt, map) in formats {
        sdp.push_str(&format!("a=rtpmap:{pt} {map}\r\n"));
    }
    sdp
}

/// An offer of one BUNDLE group whose m-lines are `(kind, rtpmap lines)`, each listing its
/// rtpmaps' payload types; m-line i has mid i.
fn bundled_offer(lines: &[(&str, &[(u8, &str)])]) -> String {
    let mids: Vec<String> = (0..lines.len()).map(|i| i.to_string()).collect();
    let mut sdp = format!(
        "v=0\r\no=- 42 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\n{FINGERPRINT}\r\n",
        mids.join(" ")
    );
    for (i, (kind, formats)) in lines.iter().enumerate() {
        let pts: Vec<String> = formats.iter().map(|(pt, _)| pt.to_string()).collect();
        sdp.push_str(&format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\na=ice-ufrag:Ab1x\r\n\
             a=ice-pwd:0123456789abcdefghijklmn\r\na=setup:actpass\r\na=sendrecv\r\na=rtcp-mux\r\n",
            pts.join(" ")
        ));
        for (pt, map) in formats.iter() {
            sdp.push_str(&format!("a=rtpmap:{pt} {map}\r\n"));
        }
    }
    sdp
}

fn bad_sdp(result: Result<Option<String>, NegotiationError>) -> String {
    match result {
        Err(NegotiationError::BadSdp(why)) => why,
        other => panic!("expected bad SDP, got {other:?}"),
    }
}

fn driver() -> WebrtcDriver {
    WebrtcDriver::new(Instant::now(), &[addr(BRIDGE)])
}

#[test]
fn garbage_sdp_is_bad_sdp_with_str0m_reason() {
    let mut d = driver();
    let now = Instant::now();
    for junk in ["", "hello", "v=0\r\nm=audio\r\n", "\0\0\0", "v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nt=0 0\r\n"] {
        match d.negotiate(now, SdpInput::Offer(junk)) {
            Err(NegotiationError::BadSdp(msg)) => {
                assert!(!msg.is_empty(), "empty reason for {junk:?}");
                assert!(!msg.contains("PointerOffset"), "{msg}");
            }
            other => panic!("{junk:?} gave {other:?}"),
        }
    }
}

#[test]
fn missing_fingerprint_is_refused_and_the_driver_stays_usable() {
    let mut d = driver();
    let now = Instant::now();
    let err = d.negotiate(now, SdpInput::Offer(&audio_offer(false, &[(111, "opus/48000/2")]))).unwrap_err();
    assert!(matches!(&err, NegotiationError::BadSdp(m) if m.contains("fingerprint")), "{err:?}");

    let answer = d.negotiate(now, SdpInput::Offer(&audio_offer(true, &[(111, "opus/48000/2")])));
    let answer = answer.expect("a good offer still works").expect("answer");
    assert!(answer.contains("a=rtpmap:111 opus/48000/2"), "{answer}");
    assert_eq!(d.negotiated().tracks.len(), 1);
    assert_eq!(d.negotiated().slots.len(), 1);
}

#[test]
fn unsupported_codec_only_is_no_common_codec() {
    let mut d = driver();
    let offer = audio_offer(true, &[(18, "G729/8000"), (3, "GSM/8000")]);
    match d.negotiate(Instant::now(), SdpInput::Offer(&offer)) {
        Err(NegotiationError::NoCommonCodec { offered, supported }) => {
            assert_eq!(offered, "g729, gsm");
            assert_eq!(supported, "opus, pcmu, pcma, vp8, h264");
        }
        other => panic!("expected NoCommonCodec, got {other:?}"),
    }
    // Static PCMU with no rtpmap line is still PCMU.
    let offer = audio_offer(true, &[(0, "PCMU/8000")]).replace("a=rtpmap:0 PCMU/8000\r\n", "");
    d.negotiate(Instant::now(), SdpInput::Offer(&offer)).expect("static PCMU is supported");
    assert_eq!(d.negotiated().tracks[0].codec.codec, switchboard_driver::Codec::Pcmu);
}

#[test]
fn an_answer_is_unexpected() {
    let mut d = driver();
    let err = d.negotiate(Instant::now(), SdpInput::Answer("v=0")).unwrap_err();
    assert!(matches!(err, NegotiationError::UnexpectedState(_)));
}

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn junk_datagrams() -> Vec<Vec<u8>> {
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let mut out = vec![vec![], vec![0], vec![0x80], vec![0x80, 0x60], vec![0x16, 0xfe, 0xfd]];
    for first in [0u8, 1, 0x16, 0x17, 0x80, 0x81, 0x90, 0xbf, 0xff] {
        for len in [1usize, 2, 11, 12, 13, 19, 20, 21, 28, 60, 200, 1500] {
            let mut d: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            d[0] = first;
            out.push(d);
        }
    }
    // STUN-shaped: binding request type and magic cookie, random rest.
    for len in [20usize, 24, 28, 40, 100] {
        let mut d: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        d[..8].copy_from_slice(&[0, 1, 0, (len - 20) as u8, 0x21, 0x12, 0xa4, 0x42]);
        out.push(d);
    }
    out
}

#[test]
fn garbage_datagrams_do_not_panic_before_negotiation() {
    let mut d = driver();
    let mut sink = Collector::default();
    let now = Instant::now();
    for data in junk_datagrams() {
        let _ = d.accepts(addr(CLIENT), addr(BRIDGE), &data);
        d.handle_receive(now, addr(CLIENT), addr(BRIDGE), &data);
        d.poll(now, &mut sink);
    }
    let malformed = sink.events.iter().filter(|e| **e == DriverEvent::Dropped { reason: DropReason::Malformed });
    assert!(malformed.count() > 0, "unparseable datagrams are counted");
}

#[test]
fn garbage_datagrams_do_not_panic_or_break_a_live_session() {
    let mut pair = Pair::new();
    pair.negotiate(|api| {
        add(api, S0Kind::Audio, Direction::SendRecv);
        add(api, S0Kind::Video, Direction::SendRecv);
    });
    pair.connect();
    let now = pair.now;
    for data in junk_datagrams() {
        // From the client's address, so accepts() lets it in, as a spoofer would try.
        let _ = pair.driver.accepts(addr(CLIENT), addr(BRIDGE), &data);
        pair.driver.handle_receive(now, addr(CLIENT), addr(BRIDGE), &data);
    }
    pair.step(Duration::from_millis(5));
    assert!(
        !pair.sink.events.iter().any(|e| matches!(e, DriverEvent::Disconnected { .. })),
        "junk ended the session: {:?}",
        pair.sink.events
    );

    let slot = pair.driver.negotiated().slots[0].clone();
    let pt = slot.codecs[0].pt;
    let meta = switchboard_driver::RtpMeta {
        pt,
        seq: switchboard_driver::SeqNo(1),
        timestamp: 0,
        marker: false,
        ssrc: switchboard_driver::Ssrc(0),
        audio_level: None,
    };
    let now = pair.now;
    pair.driver.write_media(now, slot.key, &meta, &[7]).expect("write");
    assert!(pair.run_until(Duration::from_millis(200), |p| !p.client_rtp.is_empty()), "session survived");
}

/// GStreamer's payloaders all default to 96: an audio and a video m-line both on 96 is one payload
/// type with two meanings, which str0m 0.24.1 panics on. It must be a 400 that says so.
#[test]
fn one_payload_type_for_two_codecs_is_refused_with_the_reason() {
    let mut d = driver();
    let now = Instant::now();
    let offer = bundled_offer(&[("audio", &[(96, "opus/48000/2")]), ("video", &[(96, "VP8/90000")])]);
    let why = bad_sdp(d.negotiate(now, SdpInput::Offer(&offer)));
    assert!(
        why.contains("payload type 96 is opus/48000/2 (no fmtp) on m-line 0 and VP8/90000 (no fmtp) on m-line 1"),
        "{why}"
    );

    // The same meaning on two m-lines is fine, and the driver took nothing from the refusal.
    let offer = bundled_offer(&[("video", &[(96, "VP8/90000")]), ("video", &[(96, "VP8/90000")])]);
    d.negotiate(now, SdpInput::Offer(&offer)).expect("two m-lines, one meaning");
    assert_eq!(d.negotiated().slots.len(), 2);
}

/// A re-offer whose new m-line gives a payload type a new meaning also panicked in str0m; the
/// participant would have been removed. Now it is refused and the session keeps what it had.
#[test]
fn a_reoffer_that_gives_a_payload_type_a_new_meaning_is_refused_and_changes_nothing() {
    let mut d = driver();
    let now = Instant::now();
    let first = bundled_offer(&[("audio", &[(111, "opus/48000/2"), (96, "PCMU/8000")])]);
    d.negotiate(now, SdpInput::Offer(&first)).expect("first offer");
    let before = d.negotiated().clone();

    let new_line =
        bundled_offer(&[("audio", &[(111, "opus/48000/2"), (96, "PCMU/8000")]), ("video", &[(96, "VP8/90000")])]);
    let why = bad_sdp(d.negotiate(now, SdpInput::Offer(&new_line)));
    assert!(why.contains("payload type 96 was PCMU/8000 (no fmtp) earlier in this session and is VP8/90000"), "{why}");
    // On the same m-line str0m would have answered with the old meaning, and sent PCMU to a
    // client that decodes PCMA.
    let same_line = bundled_offer(&[("audio", &[(111, "opus/48000/2"), (96, "PCMA/8000")])]);
    let why = bad_sdp(d.negotiate(now, SdpInput::Offer(&same_line)));
    assert!(why.contains("payload type 96 was PCMU/8000"), "{why}");
    assert_eq!(d.negotiated(), &before);

    let fine =
        bundled_offer(&[("audio", &[(111, "opus/48000/2"), (96, "PCMU/8000")]), ("video", &[(97, "VP8/90000")])]);
    d.negotiate(now, SdpInput::Offer(&fine)).expect("a new m-line with a new payload type");
    assert_eq!(d.negotiated().slots.len(), 2);
}

/// str0m's ICE agent panicked at its first connectivity check when the client's ufrag made the
/// STUN USERNAME longer than 128 bytes (found by the webrtc_offer fuzz target).
#[test]
fn an_overlong_ice_ufrag_is_refused_with_the_reason() {
    let mut d = driver();
    let now = Instant::now();
    let offer = audio_offer(true, &[(111, "opus/48000/2")])
        .replace("a=rtcp-mux\r\n", "a=rtcp-mux\r\na=candidate:1 1 UDP 2015364095 127.0.0.1 35938 typ host\r\n");
    let long = offer.replace("a=ice-ufrag:Ab1x", &format!("a=ice-ufrag:{}", "u".repeat(112)));
    let why = bad_sdp(d.negotiate(now, SdpInput::Offer(&long)));
    assert_eq!(why, "a=ice-ufrag is 112 bytes; this bridge takes at most 111");

    let longest = offer.replace("a=ice-ufrag:Ab1x", &format!("a=ice-ufrag:{}", "u".repeat(111)));
    d.negotiate(now, SdpInput::Offer(&longest)).expect("111 bytes fit");
    // The bridge's own checks go out without a panic.
    let mut sink = Collector::default();
    for ms in (0..2_000).step_by(50) {
        let at = now + Duration::from_millis(ms);
        d.handle_timeout(at);
        d.poll(at, &mut sink);
    }
    assert!(!sink.transmits.is_empty(), "the bridge sent its connectivity checks");
}

/// Two m-lines under one mid lost str0m its payload type bookkeeping (a panic, found by the
/// webrtc_offer fuzz target); RFC 8843 wants mids unique.
#[test]
fn a_mid_on_two_m_lines_is_refused_with_the_reason() {
    let mut d = driver();
    let now = Instant::now();
    let offer = bundled_offer(&[("audio", &[(111, "opus/48000/2")]), ("video", &[(96, "VP8/90000")])]);
    let twice = offer.replace("a=mid:1\r\n", "a=mid:0\r\n");
    assert_ne!(twice, offer);
    assert_eq!(bad_sdp(d.negotiate(now, SdpInput::Offer(&twice))), "a=mid:0 is on more than one m-line");
    d.negotiate(now, SdpInput::Offer(&offer)).expect("unique mids");
}

/// The driver reads offers line by line with webrtc-sdp, so what webrtc-sdp's whole-session
/// checks refuse and str0m takes is still answered as before.
#[test]
fn offers_str0m_takes_are_answered_whatever_webrtc_sdp_thinks_of_them() {
    let fixture = include_str!("../../../integration-tests/tests/fixtures/chromium_offer.sdp");
    let cases = [
        ("no c= line", fixture.replace("c=IN IP4 0.0.0.0\r\n", "").replace("c=IN IP4 0.0.0.0\n", "")),
        ("session-level ptime", fixture.replacen("t=0 0", "t=0 0\r\na=ptime:20", 1)),
        ("an fmtp value webrtc-sdp cannot type", fixture.replace("minptime=10", "minptime=abc")),
        ("extmap at both levels", fixture.replacen("t=0 0", "t=0 0\r\na=extmap:9 urn:x", 1)),
        ("an rtpmap over 127", fixture.replacen("a=rtpmap:111", "a=rtpmap:200 foo/8000\r\na=rtpmap:111", 1)),
    ];
    for (name, sdp) in cases {
        assert_ne!(sdp, fixture, "{name}: the case changes the offer");
        let answer = driver().negotiate(Instant::now(), SdpInput::Offer(&sdp));
        assert!(matches!(answer, Ok(Some(_))), "{name}: {answer:?}");
    }
}
