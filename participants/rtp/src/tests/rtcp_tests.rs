use super::*;
use crate::rtcp::{parse_rtcp, write_report, ReportBlock, RtcpPacket, SenderInfo};
use switchboard_driver::SlotKey;

const PEER_SSRC: u32 = 0xabcd_0001;

/// Advances to the first report (2.5 s after negotiation) and returns the RTCP datagrams.
fn first_report(d: &mut RtpDriver, clock: &mut Clock) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
    let deadline = d.poll(clock.0, &mut Collector::default());
    clock.0 = clock.0.max(deadline);
    d.handle_timeout(clock.0);
    drain(d, clock.0).transmits
}

#[test]
fn receiver_report_counts_loss() {
    let mut clock = Clock::new();
    let (mut d, _) = answered(clock.0, &gateway_offer());
    for seq in 1..=20u16 {
        let now = clock.advance(20);
        if seq == 5 || seq == 6 {
            continue; // lost
        }
        d.handle_receive(
            now,
            addr(PEER_RTP),
            addr(LOCAL_RTP),
            &rtp(0, seq, u32::from(seq) * 160, PEER_SSRC, false, &[0; 160]),
        );
    }
    let sent = first_report(&mut d, &mut clock);
    assert_eq!(sent.len(), 1);
    let (from, to, data) = &sent[0];
    assert_eq!((*from, *to), (addr(LOCAL_RTCP), addr(PEER_RTCP)));
    let packets = parse_rtcp(data).unwrap();
    let RtcpPacket::ReceiverReport { ssrc, blocks } = &packets[0] else { panic!("{packets:?}") };
    assert_eq!(*ssrc, d.ssrc().0);
    let b = blocks[0];
    assert_eq!((b.ssrc, b.cumulative_lost, b.extended_highest_seq), (PEER_SSRC, 2, 20));
    assert_eq!(b.fraction_lost, (2 * 256 / 20) as u8);
    assert_eq!(b.jitter, 0, "packets arrived exactly on time");
    assert_eq!(d.stats().packets_lost, 2);
    assert_eq!(d.stats().packets_received, 18);

    // The next one comes 5 s later.
    let next = d.poll(clock.0, &mut Collector::default());
    assert_eq!(next - clock.0, Duration::from_secs(5));
}

#[test]
fn sender_report_after_media_and_rtt_from_the_peer() {
    let mut clock = Clock::new();
    let (mut d, _) = answered(clock.0, &gateway_offer());
    for seq in 0..50u64 {
        let now = clock.advance(20);
        d.write_media(now, SlotKey(0), &meta(0, seq, seq as u32 * 160), &[0; 160]).unwrap();
    }
    drain(&mut d, clock.0);
    let sent = first_report(&mut d, &mut clock);
    let packets = parse_rtcp(&sent[0].2).unwrap();
    let RtcpPacket::SenderReport { info, blocks, .. } = &packets[0] else { panic!("{packets:?}") };
    assert_eq!((info.packets, info.octets), (50, 50 * 160));
    assert!(blocks.is_empty(), "nothing received yet");
    assert!(matches!(packets[1], RtcpPacket::Other { pt: 202 }), "SDES follows");
    // 1.5 s after the last packet (ts 49*160), the SR's RTP time has run on by 12000.
    assert_eq!(info.rtp_ts, 49 * 160 + 12_000);

    // The peer answers 300 ms later, having held our SR for 100 ms: RTT 200 ms.
    let lsr = (info.ntp >> 16) as u32;
    let block = ReportBlock {
        ssrc: d.ssrc().0,
        fraction_lost: 64,
        cumulative_lost: 5,
        extended_highest_seq: 49,
        jitter: 80,
        lsr,
        dlsr: 65536 / 10,
    };
    let mut rr = Vec::new();
    write_report(&mut rr, PEER_SSRC, None, Some(block), "peer");
    let now = clock.advance(300);
    d.handle_receive(now, addr(PEER_RTCP), addr(LOCAL_RTCP), &rr);
    let remote = d.stats().remote.expect("the peer's report is kept");
    assert_eq!((remote.fraction_lost, remote.cumulative_lost, remote.jitter_ms), (0.25, 5, 10.0));
    let rtt = remote.rtt_ms.unwrap();
    assert!((199.0..=201.0).contains(&rtt), "{rtt}");
    // The room hears of it too: a mix sent to this leg may add FEC for the loss, and the quality
    // metrics take all three.
    let events = drain(&mut d, now).events;
    let report = events
        .iter()
        .find_map(|e| match e {
            DriverEvent::ReceiverReport { slot: SlotKey(0), report } => Some(*report),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no receiver report in {events:?}"));
    assert_eq!((report.loss, report.jitter), (Some(0.25), Some(0.01)));
    assert!(report.rtt.is_some_and(|s| (0.199..=0.201).contains(&s)), "{report:?}");
}

#[test]
fn peer_sender_report_is_echoed_in_lsr_and_dlsr() {
    let mut clock = Clock::new();
    let (mut d, _) = answered(clock.0, &gateway_offer());
    d.handle_receive(clock.0, addr(PEER_RTP), addr(LOCAL_RTP), &rtp(0, 1, 0, PEER_SSRC, false, &[0; 160]));
    let mut sr = Vec::new();
    let info = SenderInfo { ntp: 0x1111_2222_3333_4444, rtp_ts: 0, packets: 1, octets: 160 };
    write_report(&mut sr, PEER_SSRC, Some(info), None, "peer");
    d.handle_receive(clock.0, addr(PEER_RTCP), addr(LOCAL_RTCP), &sr);
    let sent = first_report(&mut d, &mut clock);
    let packets = parse_rtcp(&sent[0].2).unwrap();
    let RtcpPacket::ReceiverReport { blocks, .. } = &packets[0] else { panic!("{packets:?}") };
    assert_eq!(blocks[0].lsr, 0x2222_3333);
    assert_eq!(blocks[0].dlsr, 65536 * 5 / 2, "held for 2.5 s");
    assert!(drain(&mut d, clock.0).drops().is_empty());
}

#[test]
fn srtcp_between_two_srtp_legs() {
    let mut clock = Clock::new();
    let now = clock.0;
    let mut a = RtpDriver::new(config(Some(ParticipantKind::Srtp), true), now);
    let offer_sdp = a.create_offer(now).unwrap();
    let mut b_cfg = config(None, true);
    b_cfg.rtp_local = addr(PEER_RTP);
    b_cfg.rtcp_local = addr(PEER_RTCP);
    let mut b = RtpDriver::new(b_cfg, now);
    let answer = b.negotiate(now, SdpInput::Offer(&offer_sdp)).unwrap().unwrap();
    a.negotiate(now, SdpInput::Answer(&answer)).unwrap();

    // b sends media to a; a's report (SRTCP, rtcp-mux) then tells b about it.
    b.write_media(now, SlotKey(0), &meta(0, 1, 160), &[0; 160]).unwrap();
    for (from, to, data) in drain(&mut b, now).transmits {
        a.handle_receive(now, from, to, &data);
    }
    let sent = first_report(&mut a, &mut clock);
    let (from, to, data) = &sent[0];
    assert_eq!(*from, addr(LOCAL_RTP), "rtcp-mux: from the RTP port");
    assert!(parse_rtcp(data).is_err() || data.len() > 60, "the body is encrypted");
    b.handle_receive(clock.0, *from, *to, data);
    assert!(drain(&mut b, clock.0).drops().is_empty());
    let remote = b.stats().remote.expect("b read a's SRTCP report");
    assert_eq!(remote.cumulative_lost, 0);

    // Replaying the SRTCP packet is caught.
    b.handle_receive(clock.0, *from, *to, data);
    assert_eq!(drain(&mut b, clock.0).drops(), [DropReason::Replay]);
}

#[test]
fn close_sends_bye_and_stops() {
    let now = Instant::now();
    let (mut d, _) = answered(now, &gateway_offer());
    d.close(now);
    let sink = drain(&mut d, now);
    let packets = parse_rtcp(&sink.transmits[0].2).unwrap();
    assert!(packets.iter().any(|p| matches!(p, RtcpPacket::Bye { ssrcs } if ssrcs == &[d.ssrc().0])));
    assert!(d.write_media(now, SlotKey(0), &meta(0, 1, 0), &[0]).is_err());
    d.handle_receive(now, addr(PEER_RTP), addr(LOCAL_RTP), &rtp(0, 1, 0, PEER_SSRC, false, &[0; 160]));
    d.handle_timeout(now + Duration::from_secs(10));
    let sink = drain(&mut d, now);
    assert!(sink.transmits.is_empty() && sink.media.is_empty());
}
