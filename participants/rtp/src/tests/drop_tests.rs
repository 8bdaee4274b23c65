//! Datagrams a leg drops: whose they are said to be (only the peer's keep a participant alive,
//! issue 19 item 5), and that dropping them allocates nothing (item 1), so a flood costs no
//! memory traffic.

use super::*;
use crate::rtcp::{write_report, ReportBlock};
use switchboard_driver::alloc_count as counting;

const PEER_SSRC: u32 = 0x0bad_cafe;
const STRANGER: &str = "198.51.100.7:4000";

/// A leg that has latched to the peer with one valid packet, its output drained.
fn latched(now: Instant) -> RtpDriver {
    let (mut d, _) = answered(now, &gateway_offer());
    d.handle_receive(now, addr(PEER_RTP), addr(LOCAL_RTP), &rtp(0, 1, 160, PEER_SSRC, false, &[0; 160]));
    drain(&mut d, now);
    d
}

fn receiver_report(ssrc: u32) -> Vec<u8> {
    let mut rr = Vec::new();
    write_report(&mut rr, ssrc, None, Some(ReportBlock::default()), "x");
    rr
}

#[test]
fn a_late_offer_leg_takes_nothing_as_its_peers_before_the_answer() {
    let now = Instant::now();
    let mut d = leg(now);
    d.create_offer(now).unwrap();
    // Even from the address its answer will name: until then, nothing says who the peer is.
    d.handle_receive(now, addr(PEER_RTP), addr(LOCAL_RTP), &rtp(0, 1, 160, PEER_SSRC, false, &[0; 160]));
    d.handle_receive(now, addr(STRANGER), addr(LOCAL_RTCP), &receiver_report(5));
    let sink = drain(&mut d, now);
    assert_eq!(sink.drops(), [DropReason::UnknownSource, DropReason::UnknownSource]);
    assert!(sink.media.is_empty() && !sink.events.contains(&DriverEvent::Connected));
}

#[test]
fn strangers_packets_to_an_unlatched_leg_are_not_the_peers() {
    let now = Instant::now();
    let (mut d, _) = answered(now, &gateway_offer());
    let stranger = addr(STRANGER);
    // A payload type the leg did not negotiate cannot latch, so it says nothing of its sender.
    d.handle_receive(now, stranger, addr(LOCAL_RTP), &rtp(18, 1, 0, 77, false, &[0; 20]));
    // Well-formed RTCP from a host the SDP did not name, before any media latched.
    d.handle_receive(now, stranger, addr(LOCAL_RTCP), &receiver_report(77));
    d.handle_receive(now, stranger, addr(LOCAL_RTP), &[0x80, 0, 1]);
    let sink = drain(&mut d, now);
    assert_eq!(sink.drops(), [DropReason::UnknownSource, DropReason::UnknownSource, DropReason::Malformed]);
    assert!(!sink.events.contains(&DriverEvent::Connected));
    // The same wrong payload type from the SDP's address is the peer's mistake, not a stranger's.
    d.handle_receive(now, addr(PEER_RTP), addr(LOCAL_RTP), &rtp(18, 2, 0, PEER_SSRC, false, &[0; 20]));
    // And its RTCP, from the host the SDP named, is taken.
    d.handle_receive(now, addr(PEER_RTCP), addr(LOCAL_RTCP), &receiver_report(PEER_SSRC));
    let sink = drain(&mut d, now);
    assert_eq!(sink.drops(), [DropReason::UnknownPayloadType]);
    assert!(sink.events.contains(&DriverEvent::Connected), "the peer's RTCP is valid");
}

/// Every kind of datagram a flood sends a leg, each dropped: garbage, STUN, a stranger's RTP
/// with a random or the peer's own SSRC, forged RTCP (a stranger's, and the peer host's with a
/// broken second packet), a source the peer policy refuses, and anything at a late-offer leg.
#[test]
fn dropped_datagrams_allocate_nothing() {
    let now = Instant::now();
    let mut d = latched(now);
    let mut late = leg(now);
    late.create_offer(now).unwrap();
    let mut broken_compound = receiver_report(PEER_SSRC);
    broken_compound.extend_from_slice(&[0x81, 201, 0, 7, 0, 0]);
    let stun = b"\x00\x01\x00\x08\x21\x12\xa4\x42abcdefghijkl\x00\x06\x00\x04ab:c".to_vec();
    let (stranger, peer_rtcp, multicast) = (addr(STRANGER), addr(PEER_RTCP), addr("224.0.0.9:5004"));
    let floods: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = vec![
        (stranger, addr(LOCAL_RTP), vec![0x42; 120]),
        (stranger, addr(LOCAL_RTP), stun.clone()),
        (stranger, addr(LOCAL_RTP), rtp(0, 9, 99, 0x7777, false, &[1; 160])),
        (stranger, addr(LOCAL_RTP), rtp(0, 2, 320, PEER_SSRC, false, &[1; 160])),
        (stranger, addr(LOCAL_RTCP), receiver_report(PEER_SSRC)),
        (peer_rtcp, addr(LOCAL_RTCP), broken_compound),
        (peer_rtcp, addr(LOCAL_RTCP), stun),
        (multicast, addr(LOCAL_RTP), rtp(0, 3, 480, PEER_SSRC, false, &[1; 160])),
    ];
    let mut out = switchboard_driver::testing::Collector::default();
    let round = |d: &mut RtpDriver, late: &mut RtpDriver, out: &mut switchboard_driver::testing::Collector| {
        for (src, dst, data) in &floods {
            d.handle_receive(now, *src, *dst, data);
            late.handle_receive(now, *src, *dst, data);
        }
        d.poll(now, out);
        late.poll(now, out);
        let dropped = out.events.iter().filter(|e| matches!(e, DriverEvent::Dropped { .. })).count();
        assert_eq!(dropped, 2 * floods.len(), "every datagram dropped: {:?}", out.events);
        out.events.clear();
        assert!(out.media.is_empty() && out.transmits.is_empty());
    };
    // Warm-up: queues and scratch buffers reach their size once.
    for _ in 0..4 {
        round(&mut d, &mut late, &mut out);
    }
    let before = counting::count();
    for _ in 0..1000 {
        round(&mut d, &mut late, &mut out);
    }
    assert_eq!(counting::count() - before, 0, "allocations while dropping {} datagrams", 2000 * floods.len());
}
