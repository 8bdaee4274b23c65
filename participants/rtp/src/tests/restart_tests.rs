//! A peer that restarts its stream mid-call (new SSRC, sequence number and timestamp), as
//! gateways do between early media and the answer: the leg follows it at once and ignores the
//! stream it left.

use super::*;

fn from(d: &mut RtpDriver, now: Instant, ssrc: u32, seq: u16, ts: u32) {
    d.handle_receive(now, addr(PEER_RTP), addr(LOCAL_RTP), &rtp(0, seq, ts, ssrc, false, &[0x55; 160]));
}

#[test]
fn a_restarted_stream_reaches_the_room_at_once_and_the_old_one_no_more() {
    let mut clock = Clock::new();
    let (mut d, _) = answered(clock.0, &gateway_offer());
    for i in 0..5u16 {
        let now = clock.advance(20);
        from(&mut d, now, 0xAAAA, 60_000 + i, 1_000_000_000 + 160 * u32::from(i));
    }
    // The answer's media: another SSRC, lower numbers. A packet of the early media arrives late.
    let now = clock.advance(20);
    from(&mut d, now, 0xBBBB, 12, 77);
    from(&mut d, now, 0xAAAA, 60_005, 1_000_000_800);
    let now = clock.advance(20);
    from(&mut d, now, 0xBBBB, 13, 237);
    let sink = drain(&mut d, now);
    let got: Vec<(u32, u16, u32)> = sink.media.iter().map(|(_, m, _)| (m.ssrc.0, m.seq.wire(), m.timestamp)).collect();
    assert_eq!(got[4..], [(0xAAAA, 60_004, 1_000_000_640), (0xBBBB, 12, 77), (0xBBBB, 13, 237)]);
    assert_eq!(sink.drops(), [DropReason::UnknownSource], "the late packet of the old stream");
    // The bridge's reports now describe the new stream.
    let r = d.stream.reception().expect("a stream");
    assert_eq!((r.ssrc, r.extended_max()), (0xBBBB, 13));
}
