use super::*;
use crate::rtp_header::RtpHeader;
use switchboard_driver::{SlotKey, WriteError};

const PEER_SSRC: u32 = 0x1234_5678;

/// Two drivers wired to each other: `a` dials out (offer), `b` answers.
fn srtp_pair(now: Instant) -> (RtpDriver, RtpDriver) {
    let mut a = RtpDriver::new(config(Some(ParticipantKind::Srtp), true), now);
    let offer_sdp = a.create_offer(now).unwrap();
    let mut b_cfg = config(None, true);
    b_cfg.rtp_local = addr(PEER_RTP);
    b_cfg.rtcp_local = addr(PEER_RTCP);
    b_cfg.advertised_ip = "192.0.2.10".parse().unwrap();
    let mut b = RtpDriver::new(b_cfg, now);
    // `a` advertises 203.0.113.1 but sends from 10.0.0.1 (behind NAT): `b` latches.
    let answer = b.negotiate(now, SdpInput::Offer(&offer_sdp)).unwrap().unwrap();
    assert_eq!(b.kind(), ParticipantKind::Srtp);
    a.negotiate(now, SdpInput::Answer(&answer)).unwrap();
    (a, b)
}

/// Sends one room packet from `from` and returns the datagram it produced.
fn send(from: &mut RtpDriver, now: Instant, seq: u64, payload: &[u8]) -> (SocketAddr, SocketAddr, Vec<u8>) {
    from.write_media(now, SlotKey(0), &meta(0, seq, seq as u32 * 160), payload).unwrap();
    let mut sink = drain(from, now);
    assert_eq!(sink.transmits.len(), 1);
    sink.transmits.remove(0)
}

#[test]
fn plain_rtp_reaches_the_room_and_connects_once() {
    let now = Instant::now();
    let (mut d, _) = answered(now, &gateway_offer());
    for seq in 1..=3u16 {
        d.handle_receive(
            now,
            addr(PEER_RTP),
            addr(LOCAL_RTP),
            &rtp(0, seq, u32::from(seq) * 160, PEER_SSRC, false, &[seq as u8; 160]),
        );
    }
    let sink = drain(&mut d, now);
    assert_eq!(sink.events, [DriverEvent::Connected]);
    assert_eq!(sink.media.len(), 3);
    let (track, m, payload) = &sink.media[2];
    assert_eq!((*track, m.pt, m.timestamp, m.ssrc), (TrackKey(0), Pt(0), 480, Ssrc(PEER_SSRC)));
    assert_eq!(m.seq.wire(), 3);
    assert_eq!(payload, &vec![3u8; 160]);
}

/// A packet whose one-byte header extension carries `level` as element `id`.
fn rtp_with_level(seq: u16, id: u8, level: u8) -> Vec<u8> {
    let mut p = rtp(0, seq, u32::from(seq) * 160, PEER_SSRC, false, &[]);
    p[0] |= 0x10;
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, id << 4, 0x80 | level, 0, 0]);
    p.extend_from_slice(&[0xff; 160]);
    p
}

#[test]
fn audio_levels_a_gateway_offers_are_taken_into_the_room() {
    let now = Instant::now();
    let offer_levels = |direction: &str| {
        offer(
            "RTP/AVP 0 101",
            &format!(
                "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
                 a=extmap:4{direction} urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\n"
            ),
        )
    };
    let (mut d, answer) = answered(now, &offer_levels(""));
    assert!(answer.contains("a=extmap:4/recvonly urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"), "{answer}");
    d.handle_receive(now, addr(PEER_RTP), addr(LOCAL_RTP), &rtp_with_level(1, 4, 33));
    // An element under another id is not the level.
    d.handle_receive(now, addr(PEER_RTP), addr(LOCAL_RTP), &rtp_with_level(2, 5, 33));
    let sink = drain(&mut d, now);
    let levels: Vec<Option<i8>> = sink.media.iter().map(|(_, m, _)| m.audio_level).collect();
    assert_eq!(levels, [Some(33), None]);
    assert_eq!(sink.media[0].2, vec![0xff; 160], "the extension is not payload");

    // A peer that only receives levels sends none, and one that never offered them is not told of them.
    let (mut d, answer) = answered(now, &offer_levels("/recvonly"));
    assert!(!answer.contains("a=extmap"), "{answer}");
    d.handle_receive(now, addr(PEER_RTP), addr(LOCAL_RTP), &rtp_with_level(1, 4, 33));
    assert_eq!(drain(&mut d, now).media[0].1.audio_level, None);
    let (_, answer) = answered(now, &gateway_offer());
    assert!(!answer.contains("a=extmap"), "{answer}");
}

#[test]
fn bad_packets_are_dropped_with_a_reason() {
    let now = Instant::now();
    let (mut d, _) = answered(now, &gateway_offer());
    let peer = addr(PEER_RTP);
    d.handle_receive(now, peer, addr(LOCAL_RTP), &rtp(18, 1, 0, PEER_SSRC, false, &[0; 20]));
    d.handle_receive(now, peer, addr(LOCAL_RTP), &[0x80, 0, 1]);
    d.handle_receive(now, peer, addr(LOCAL_RTP), b"\x00\x01\x00\x00garbage-stun-ish");
    d.handle_receive(now, peer, addr(LOCAL_RTCP), &[0x80, 201, 0, 9, 0]);
    let sink = drain(&mut d, now);
    assert_eq!(
        sink.drops(),
        [DropReason::UnknownPayloadType, DropReason::Malformed, DropReason::Malformed, DropReason::Malformed]
    );
    assert!(sink.media.is_empty());
    assert!(!sink.events.contains(&DriverEvent::Connected), "invalid packets do not connect");
}

#[test]
fn srtp_round_trip_and_its_failures() {
    let now = Instant::now();
    let (mut a, mut b) = srtp_pair(now);
    let (from, to, packet) = send(&mut a, now, 1, &[0x55; 160]);
    assert_eq!((from, to), (addr(LOCAL_RTP), addr(PEER_RTP)));
    assert_eq!(packet.len(), 12 + 160 + 10, "AES_CM_128_HMAC_SHA1_80 by default");
    assert_ne!(&packet[12..172], &[0x55; 160][..], "encrypted");

    b.handle_receive(now, from, to, &packet);
    let sink = drain(&mut b, now);
    assert_eq!(sink.events, [DriverEvent::Connected]);
    assert_eq!(sink.media[0].2, vec![0x55; 160]);

    // Replay, tamper, truncate.
    b.handle_receive(now, from, to, &packet);
    let (_, _, second) = send(&mut a, now, 2, &[0x66; 160]);
    let mut tampered = second.clone();
    tampered[40] ^= 0x01;
    b.handle_receive(now, from, to, &tampered);
    b.handle_receive(now, from, to, &second[..16]);
    let sink = drain(&mut b, now);
    assert_eq!(sink.drops(), [DropReason::Replay, DropReason::SrtpAuth, DropReason::Malformed]);
    // The genuine packet still gets through after all that.
    b.handle_receive(now, from, to, &second);
    assert_eq!(drain(&mut b, now).media[0].2, vec![0x66; 160]);

    // And the other way, to the address b latched (a's real source, not its SDP address).
    let (from, to, back) = send(&mut b, now, 1, &[0x77; 160]);
    assert_eq!(to, addr(LOCAL_RTP));
    a.handle_receive(now, from, to, &back);
    assert_eq!(drain(&mut a, now).media[0].2, vec![0x77; 160]);
}

#[test]
fn plain_rtp_into_an_srtp_leg_fails_authentication() {
    let now = Instant::now();
    let (_, mut b) = srtp_pair(now);
    b.handle_receive(now, addr(LOCAL_RTP), addr(PEER_RTP), &rtp(0, 1, 160, 9, false, &[0; 160]));
    assert_eq!(drain(&mut b, now).drops(), [DropReason::SrtpAuth]);
}

#[test]
fn latching_follows_the_peer_but_not_a_stranger() {
    let t0 = Instant::now();
    let (mut d, _) = answered(t0, &gateway_offer());
    let write = |d: &mut RtpDriver, now, seq| send(d, now, seq, &[0; 160]).1;
    assert_eq!(write(&mut d, t0, 1), addr(PEER_RTP), "before any packet: the SDP address");
    let nat = addr("198.51.100.7:41000");
    d.handle_receive(t0, nat, addr(LOCAL_RTP), &rtp(0, 1, 160, PEER_SSRC, false, &[0; 160]));
    assert_eq!(write(&mut d, t0, 2), nat);
    // A garbage packet from elsewhere does not move the latch, and neither does a valid one while
    // the latched source keeps talking (RTP Bleed): it is dropped, not played.
    let stranger = addr("198.51.100.8:42000");
    d.handle_receive(t0, stranger, addr(LOCAL_RTP), &[0x80, 0]);
    let t1 = t0 + Duration::from_millis(20);
    d.handle_receive(t1, stranger, addr(LOCAL_RTP), &rtp(0, 2, 320, PEER_SSRC, false, &[0; 160]));
    let sink = drain(&mut d, t1);
    assert_eq!(sink.drops(), [DropReason::UnknownSource, DropReason::UnknownSource]);
    assert!(sink.media.is_empty(), "the stranger's packet must not reach the room");
    assert_eq!(write(&mut d, t1, 3), nat);
    // The SDP's address is always the peer's.
    d.handle_receive(t1, addr(PEER_RTP), addr(LOCAL_RTP), &rtp(0, 3, 480, PEER_SSRC, false, &[0; 160]));
    assert_eq!(write(&mut d, t1, 4), addr(PEER_RTP));
    // The peer's NAT rebinds: its old mapping falls silent, and after RELATCH_AFTER the new one
    // takes the latch.
    let rebound = addr("198.51.100.7:41002");
    let t2 = t1 + crate::inbound::RELATCH_AFTER - Duration::from_millis(1);
    d.handle_receive(t2, rebound, addr(LOCAL_RTP), &rtp(0, 4, 640, PEER_SSRC, false, &[0; 160]));
    assert_eq!(write(&mut d, t2, 5), addr(PEER_RTP), "not yet: the latched source spoke {:?} ago", t2 - t1);
    let t3 = t1 + crate::inbound::RELATCH_AFTER;
    d.handle_receive(t3, rebound, addr(LOCAL_RTP), &rtp(0, 5, 800, PEER_SSRC, false, &[0; 160]));
    assert_eq!(write(&mut d, t3, 6), rebound);
}

/// A peer on hold is silent because it said so, not because its NAT moved: a stranger cannot
/// take the latch by waiting, during the hold or in the first moments after the resume.
#[test]
fn on_hold_the_latch_stays_with_the_peer() {
    let t0 = Instant::now();
    let (mut d, _) = answered(t0, &gateway_offer());
    let nat = addr("198.51.100.7:41000");
    let stranger = addr("198.51.100.8:42000");
    d.handle_receive(t0, nat, addr(LOCAL_RTP), &rtp(0, 1, 160, PEER_SSRC, false, &[0; 160]));
    drain(&mut d, t0);
    let hold = gateway_offer().replace("a=sendrecv", "a=inactive");
    d.negotiate(t0, SdpInput::Offer(&hold)).unwrap();

    let on_hold = t0 + crate::inbound::RELATCH_AFTER * 10;
    d.handle_receive(on_hold, stranger, addr(LOCAL_RTP), &rtp(0, 7, 1120, PEER_SSRC, false, &[0; 160]));
    let sink = drain(&mut d, on_hold);
    assert_eq!(sink.drops(), [DropReason::UnknownSource], "the stranger is refused during the hold");
    assert!(sink.media.is_empty());

    let resumed = on_hold + Duration::from_millis(10);
    d.negotiate(resumed, SdpInput::Offer(&gateway_offer())).unwrap();
    d.handle_receive(resumed, stranger, addr(LOCAL_RTP), &rtp(0, 8, 1280, PEER_SSRC, false, &[0; 160]));
    assert_eq!(drain(&mut d, resumed).drops(), [DropReason::UnknownSource], "and right after the resume");
    assert_eq!(send(&mut d, resumed, 1, &[0; 160]).1, nat, "the room's audio still goes to the peer");

    // Once the peer sends again, nothing changed; had it gone for good, its silence now counts.
    let later = resumed + crate::inbound::RELATCH_AFTER;
    d.handle_receive(later, stranger, addr(LOCAL_RTP), &rtp(0, 9, 1440, PEER_SSRC, false, &[0; 160]));
    assert!(drain(&mut d, later).drops().is_empty(), "a silent sending peer's latch moves as before");
    assert_eq!(send(&mut d, later, 2, &[0; 160]).1, stranger);
}

#[test]
fn plain_rtcp_from_a_stranger_feeds_no_report() {
    let now = Instant::now();
    let (mut d, _) = answered(now, &gateway_offer());
    let nat = addr("198.51.100.7:41000");
    d.handle_receive(now, nat, addr(LOCAL_RTP), &rtp(0, 1, 160, PEER_SSRC, false, &[0; 160]));
    // A receiver report about our stream claiming everything was lost.
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&PEER_SSRC.to_be_bytes());
    rr.extend_from_slice(&d.ssrc().0.to_be_bytes());
    rr.extend_from_slice(&[255, 0, 0, 50, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    d.handle_receive(now, addr("203.0.113.66:5001"), addr(LOCAL_RTCP), &rr);
    assert_eq!(drain(&mut d, now).drops(), [DropReason::UnknownSource]);
    assert!(d.remote_report.is_none(), "a stranger's report must not reach the stats");
    // From the latched host (its RTCP port differs behind the NAT), it is the peer's.
    d.handle_receive(now, addr("198.51.100.7:41001"), addr(LOCAL_RTCP), &rr);
    assert!(drain(&mut d, now).drops().is_empty());
    assert!(d.remote_report.is_some_and(|r| r.fraction_lost > 0.99));
}

#[test]
fn without_latching_foreign_sources_are_dropped() {
    let now = Instant::now();
    let mut d = RtpDriver::new(config(None, false), now);
    d.negotiate(now, SdpInput::Offer(&gateway_offer())).unwrap();
    let foreign = addr("198.51.100.7:41000");
    d.handle_receive(now, foreign, addr(LOCAL_RTP), &rtp(0, 1, 160, PEER_SSRC, false, &[0; 160]));
    d.handle_receive(now, foreign, addr(LOCAL_RTCP), &[0x80, 201, 0, 1, 0, 0, 0, 1]);
    d.handle_receive(now, addr(PEER_RTP), addr(LOCAL_RTP), &rtp(0, 2, 320, PEER_SSRC, false, &[0; 160]));
    let sink = drain(&mut d, now);
    assert_eq!(sink.drops(), [DropReason::UnknownSource, DropReason::UnknownSource]);
    assert_eq!(sink.media.len(), 1);
    assert_eq!(send(&mut d, now, 1, &[0; 160]).1, addr(PEER_RTP));
}

#[test]
fn write_media_sets_ssrc_and_respects_hold_and_slot() {
    let now = Instant::now();
    let (mut d, _) = answered(now, &gateway_offer());
    let (_, _, packet) = send(&mut d, now, 7, &[1, 2, 3]);
    let h = RtpHeader::parse(&packet).unwrap();
    assert_eq!((h.ssrc, h.pt, h.timestamp), (d.ssrc().0, 0, 7 * 160));
    assert_eq!(&packet[12..], &[1, 2, 3]);

    assert_eq!(d.write_media(now, SlotKey(1), &meta(0, 8, 0), &[0]), Err(WriteError::NoSuchSlot));
    assert_eq!(d.write_media(now, SlotKey(0), &meta(9, 8, 0), &[0]), Err(WriteError::PayloadType(9)));

    let held = gateway_offer().replace("a=sendrecv", "a=sendonly");
    d.negotiate(now, SdpInput::Offer(&held)).unwrap();
    assert_eq!(d.write_media(now, SlotKey(0), &meta(0, 8, 1280), &[0]), Ok(()));
    assert!(drain(&mut d, now).transmits.is_empty(), "nothing goes out on hold");

    d.negotiate(now, SdpInput::Offer(&gateway_offer())).unwrap();
    let (_, _, resumed) = send(&mut d, now, 9, &[0]);
    let h2 = RtpHeader::parse(&resumed).unwrap();
    assert_eq!((h2.ssrc, h2.seq), (h.ssrc, h.seq.wrapping_add(2)), "same SSRC, room seq gap kept");
}

use switchboard_driver::alloc_count::{self as counting, Counting};

/// Counts this thread's heap allocations, to check the plain RTP path makes none.
#[global_allocator]
static GLOBAL: Counting = Counting;

/// An `Output` that keeps nothing, so it allocates nothing (the shared `Collector` copies every
/// packet, which this test would count).
#[derive(Default)]
struct Counter(usize, usize);

impl Output for Counter {
    fn transmit(&mut self, _: SocketAddr, _: SocketAddr, data: &[u8]) {
        self.0 += data.len();
    }
    fn media(&mut self, _: TrackKey, _: &RtpMeta, payload: &[u8]) {
        self.1 += payload.len();
    }
    fn event(&mut self, _: DriverEvent) {}
}

#[test]
fn plain_rtp_steady_state_does_not_allocate() {
    let now = Instant::now();
    let (mut d, _) = answered(now, &gateway_offer());
    let mut out = Counter::default();
    let mut packets: Vec<Vec<u8>> =
        (1..=200u16).map(|s| rtp(0, s, u32::from(s) * 160, PEER_SSRC, false, &[0; 160])).collect();
    let step = |d: &mut RtpDriver, i: usize, out: &mut Counter| {
        d.handle_receive(now, addr(PEER_RTP), addr(LOCAL_RTP), &packets[i]);
        d.write_media(now, SlotKey(0), &meta(0, i as u64, i as u32 * 160), &[0; 160]).unwrap();
        d.poll(now, out);
    };
    for i in 0..10 {
        step(&mut d, i, &mut out); // warm-up: buffers and stats get allocated once
    }
    let before = counting::count();
    for i in 10..200 {
        step(&mut d, i, &mut out);
    }
    assert_eq!(counting::count() - before, 0, "allocations on the plain RTP path");
    let probe = std::hint::black_box(vec![0u8; 16]);
    assert!(counting::count() > before, "the counter works");
    drop(probe);
    assert_eq!((out.0, out.1), (200 * 172, 200 * 160));
    packets.clear();
}

#[test]
fn fuzz_entry_points_survive_every_prefix() {
    let (_, answer) = answered(Instant::now(), &gateway_offer());
    for cut in 0..answer.len() {
        let _ = crate::parse_remote_description(&answer[..cut]);
    }
    let packet = rtp(0, 1, 2, 3, true, &[9; 40]);
    for cut in 0..packet.len() {
        let _ = crate::RtpHeader::parse(&packet[..cut]);
        let _ = crate::parse_rtcp(&packet[..cut]);
    }
}
