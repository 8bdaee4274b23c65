//! The peer policy at work in a leg: refused offers, re-offers and answers, and forbidden sources.

use super::*;
use crate::{OwnAddress, PeerPolicy};

/// A leg whose own media addresses are 10.0.0.1 and 203.0.113.1 on 20000-20999, and whose peers
/// must be in 192.0.2.0/24.
fn guarded(now: Instant) -> RtpDriver {
    let mut cfg = config(None, true);
    cfg.peers = PeerPolicy {
        allowed: vec!["192.0.2.0/24".parse().expect("valid")],
        own: ["10.0.0.1", "203.0.113.1"]
            .iter()
            .map(|ip| OwnAddress { ip: ip.parse().expect("valid"), ports: 20000..=20999 })
            .collect(),
    };
    RtpDriver::new(cfg, now)
}

fn offer_at(c: &str, port: u16, attrs: &str) -> String {
    format!(
        "v=0\r\no=gw 100 1 IN IP4 {c}\r\ns=call\r\nc=IN IP4 {c}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\n{attrs}"
    )
}

fn refusal(d: &mut RtpDriver, now: Instant, input: SdpInput<'_>) -> String {
    match d.negotiate(now, input) {
        Err(switchboard_driver::NegotiationError::BadSdp(m)) => m,
        other => panic!("expected bad_sdp, got {other:?}"),
    }
}

#[test]
fn offers_toward_forbidden_addresses_are_refused_with_the_reason() {
    let now = Instant::now();
    let cases = [
        (offer_at("203.0.113.1", 20002, ""), "no loops"),
        (offer_at("10.0.0.1", 20998, ""), "no loops"),
        (offer_at("239.1.2.3", 30000, ""), "multicast"),
        (offer_at("255.255.255.255", 30000, ""), "broadcast"),
        (offer_at("198.51.100.7", 30000, ""), "rtp.allowed_peers"),
        // The RTCP address is checked too, whether a=rtcp names it or it follows c=.
        (offer_at("192.0.2.10", 30000, "a=rtcp:20004 IN IP4 10.0.0.1\r\n"), "RTCP address"),
        (offer_at("192.0.2.10", 30000, "a=rtcp:30001 IN IP4 239.1.2.3\r\n"), "multicast"),
    ];
    for (text, reason) in &cases {
        let mut d = guarded(now);
        let m = refusal(&mut d, now, SdpInput::Offer(text));
        assert!(m.contains(reason), "{m} should say {reason}");
        assert!(d.plan.is_none(), "a refused offer leaves nothing behind");
    }
}

#[test]
fn hold_and_allowed_peers_are_accepted() {
    let now = Instant::now();
    let mut d = guarded(now);
    d.negotiate(now, SdpInput::Offer(&offer_at("192.0.2.10", 30000, ""))).expect("allowed peer");
    let mut held = guarded(now);
    held.negotiate(now, SdpInput::Offer(&offer_at("0.0.0.0", 30000, "a=sendonly\r\n"))).expect("hold");
    assert_eq!(held.rtp_dest(), None);
}

#[test]
fn a_refused_re_offer_keeps_the_call_as_it_was() {
    let now = Instant::now();
    let mut d = guarded(now);
    d.negotiate(now, SdpInput::Offer(&offer_at("192.0.2.10", 30000, ""))).expect("first offer");
    let before = d.plan.clone();
    let m = refusal(&mut d, now, SdpInput::Offer(&offer_at("239.1.2.3", 30000, "")));
    assert!(m.contains("multicast"), "{m}");
    assert_eq!(d.plan, before);
    assert_eq!(d.rtp_dest(), Some(addr(PEER_RTP)));
}

#[test]
fn a_late_offer_answer_is_held_to_the_same_rules() {
    let now = Instant::now();
    let mut d = guarded(now);
    d.create_offer(now).expect("an offer");
    let m = refusal(&mut d, now, SdpInput::Answer(&offer_at("10.0.0.1", 20010, "")));
    assert!(m.contains("no loops"), "{m}");
    d.negotiate(now, SdpInput::Answer(&offer_at("192.0.2.10", 30000, ""))).expect("allowed answer");
}

#[test]
fn a_forbidden_source_is_dropped_and_never_latched() {
    let mut clock = Clock::new();
    let mut d = guarded(clock.0);
    d.negotiate(clock.0, SdpInput::Offer(&offer_at("192.0.2.10", 30000, ""))).expect("offer");
    let packet = |seq| rtp(0, seq, u32::from(seq) * 160, 7, false, &[0; 160]);
    // Even before any latch, and long after the peer went silent, none of these may take it.
    let later = clock.advance(5000);
    for src in ["198.51.100.7:30000", "203.0.113.1:20002", "239.1.2.3:30000"] {
        d.handle_receive(later, addr(src), addr(LOCAL_RTP), &packet(1));
        d.handle_receive(later, addr(src), addr(LOCAL_RTCP), &[0x80, 201, 0, 1, 0, 0, 0, 7]);
    }
    let sink = drain(&mut d, later);
    assert_eq!(sink.drops(), [DropReason::UnknownSource; 6]);
    assert_eq!(sink.media.len(), 0);
    assert_eq!(d.rtp_dest(), Some(addr(PEER_RTP)));
    // An allowed source that moved is still followed.
    d.handle_receive(later, addr("192.0.2.99:4000"), addr(LOCAL_RTP), &packet(2));
    assert_eq!(drain(&mut d, later).media.len(), 1);
    assert_eq!(d.rtp_dest(), Some(addr("192.0.2.99:4000")));
}
