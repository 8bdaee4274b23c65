use super::*;
use crate::rtp_header::RtpHeader;
use switchboard_driver::SlotKey;

const PEER_SSRC: u32 = 0xfeed;

fn event(code: u8, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [code, (u8::from(end) << 7) | 10, d[0], d[1]]
}

/// A peer sending telephone-event packets (PT 101) 20 ms apart with its own sequence numbers.
struct Peer {
    seq: u16,
}

impl Peer {
    fn send(&mut self, d: &mut RtpDriver, clock: &mut Clock, ts: u32, marker: bool, payload: [u8; 4]) {
        self.seq = self.seq.wrapping_add(1);
        let now = clock.advance(20);
        d.handle_receive(now, addr(PEER_RTP), addr(LOCAL_RTP), &rtp(101, self.seq, ts, PEER_SSRC, marker, &payload));
        d.handle_timeout(now);
    }
}

fn digits(d: &mut RtpDriver, now: Instant) -> Vec<(char, u32)> {
    let sink = drain(d, now);
    assert!(sink.media.is_empty(), "telephone-event never reaches the room as media");
    sink.digits()
}

#[test]
fn normal_event_with_triple_end_is_reported_once() {
    let mut clock = Clock::new();
    let (mut d, _) = answered(clock.0, &gateway_offer());
    let mut peer = Peer { seq: 100 };
    peer.send(&mut d, &mut clock, 8000, true, event(1, false, 160));
    peer.send(&mut d, &mut clock, 8000, false, event(1, false, 320));
    peer.send(&mut d, &mut clock, 8000, false, event(1, false, 480));
    assert!(digits(&mut d, clock.0).is_empty(), "nothing before the end");
    for _ in 0..3 {
        peer.send(&mut d, &mut clock, 8000, false, event(1, true, 640));
    }
    assert_eq!(digits(&mut d, clock.0), [('1', 80)]);
    clock.advance(3000);
    d.handle_timeout(clock.0);
    assert!(digits(&mut d, clock.0).is_empty(), "and never again");
}

#[test]
fn missing_marker_and_repeated_packets() {
    let mut clock = Clock::new();
    let (mut d, _) = answered(clock.0, &gateway_offer());
    let mut peer = Peer { seq: 7 };
    for dur in [160, 160, 320, 320, 480] {
        peer.send(&mut d, &mut clock, 500, false, event(11, false, dur));
    }
    peer.send(&mut d, &mut clock, 500, false, event(11, true, 800));
    peer.send(&mut d, &mut clock, 500, false, event(11, true, 800));
    assert_eq!(digits(&mut d, clock.0), [('#', 100)]);
}

#[test]
fn all_end_packets_lost_times_out() {
    let mut clock = Clock::new();
    let (mut d, _) = answered(clock.0, &gateway_offer());
    let mut peer = Peer { seq: 0 };
    peer.send(&mut d, &mut clock, 1000, true, event(12, false, 160));
    peer.send(&mut d, &mut clock, 1000, false, event(12, false, 320));
    let deadline = d.poll(clock.0, &mut Collector::default());
    assert!(deadline <= clock.0 + Duration::from_secs(1));
    clock.advance(900);
    d.handle_timeout(clock.0);
    assert!(digits(&mut d, clock.0).is_empty());
    clock.advance(200);
    d.handle_timeout(clock.0);
    assert_eq!(digits(&mut d, clock.0), [('A', 40)]);
}

#[test]
fn the_same_digit_twice_back_to_back() {
    let mut clock = Clock::new();
    let (mut d, _) = answered(clock.0, &gateway_offer());
    let mut peer = Peer { seq: 65534 };
    for ts in [4000u32, 4800] {
        peer.send(&mut d, &mut clock, ts, true, event(5, false, 160));
        for _ in 0..3 {
            peer.send(&mut d, &mut clock, ts, false, event(5, true, 400));
        }
    }
    assert_eq!(digits(&mut d, clock.0), [('5', 50), ('5', 50)]);
}

/// A packet the bridge sent, read back.
#[derive(Debug)]
struct Sent {
    at: Duration,
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    payload: Vec<u8>,
}

fn collect(d: &mut RtpDriver, now: Instant, t0: Instant, into: &mut Vec<Sent>) -> Instant {
    let mut sink = Collector::default();
    let next = d.poll(now, &mut sink);
    for (_, _, data) in sink.transmits {
        if data[1] & 0x7f >= 72 && data[1] & 0x7f <= 76 {
            continue; // RTCP
        }
        let h = RtpHeader::parse(&data).unwrap();
        into.push(Sent {
            at: now - t0,
            marker: h.marker,
            pt: h.pt,
            seq: h.seq,
            ts: h.timestamp,
            payload: data[h.header_len..].to_vec(),
        });
    }
    next
}

#[test]
fn sends_digits_as_rfc4733_events_with_continuous_seq() {
    let mut clock = Clock::new();
    let t0 = clock.0;
    let (mut d, _) = answered(clock.0, &gateway_offer());
    let mut sent = Vec::new();
    // Room media: 20 ms PCMU with the room's own seq (1000..) and ts.
    let mut room_seq = 1000u64;
    let mut room_ts = 50_000u32;
    let mut media = |d: &mut RtpDriver, now: Instant| {
        d.write_media(now, SlotKey(0), &meta(0, room_seq, room_ts), &[0xff; 160]).unwrap();
        room_seq += 1;
        room_ts = room_ts.wrapping_add(160);
    };
    for _ in 0..3 {
        let now = clock.advance(20);
        media(&mut d, now);
        collect(&mut d, now, t0, &mut sent);
    }
    d.send_dtmf(clock.0, "1#", 100).unwrap();
    // Run 1 s of simulated time: media every 20 ms, DTMF at its own deadlines.
    let end = clock.0 + Duration::from_millis(1000);
    let mut next_media = clock.0 + Duration::from_millis(20);
    let mut next = collect(&mut d, clock.0, t0, &mut sent);
    while clock.0 < end {
        clock.0 = next.min(next_media);
        d.handle_timeout(clock.0);
        if clock.0 >= next_media {
            media(&mut d, clock.0);
            next_media += Duration::from_millis(20);
        }
        next = collect(&mut d, clock.0, t0, &mut sent);
    }

    // Sequence numbers are continuous across media and events.
    for w in sent.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "{w:?}");
    }
    let events: Vec<&Sent> = sent.iter().filter(|s| s.pt == 101).collect();
    // ptime 20: 100 ms = 5 packets of 20 ms, the last of which is an end packet, sent 3 times.
    let per_digit = 4 + 3;
    assert_eq!(events.len(), 2 * per_digit);
    for (i, digit) in events.chunks(per_digit).enumerate() {
        let code = [1u8, 11][i];
        assert!(digit.iter().all(|s| s.ts == digit[0].ts && s.payload[0] == code));
        assert!(digit[0].marker && digit[1..].iter().all(|s| !s.marker));
        let durations: Vec<u16> = digit.iter().map(|s| u16::from_be_bytes([s.payload[2], s.payload[3]])).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
        let ends = digit.iter().filter(|s| s.payload[1] & 0x80 != 0).count();
        assert_eq!(ends, 3);
        for w in digit.windows(2) {
            assert_eq!(w[1].at - w[0].at, Duration::from_millis(20));
        }
    }
    // The gap: the second digit starts 50 ms after the first one's last end packet.
    let first_end = events[per_digit - 1].at;
    assert_eq!(events[per_digit].at - first_end, Duration::from_millis(50));
    // The event timestamp follows the media clock: the first event starts 160 after the last
    // media packet before it (one 20 ms frame later, when send_dtmf was called).
    let last_media_before = sent.iter().take_while(|s| s.pt == 0).last().unwrap();
    assert_eq!(events[0].ts, last_media_before.ts);
    // No room audio went out while a digit was playing: each event's packets are contiguous.
    let event_positions: Vec<usize> = sent.iter().enumerate().filter(|(_, s)| s.pt == 101).map(|(i, _)| i).collect();
    for digit in event_positions.chunks(per_digit) {
        assert_eq!(digit[per_digit - 1] - digit[0], per_digit - 1, "media inside an event");
    }
    assert!(sent.iter().filter(|s| s.pt == 0).count() > 20, "media resumed");
}

#[test]
fn send_dtmf_refuses_what_it_cannot_send() {
    let now = Instant::now();
    let (mut d, _) = answered(now, &offer("RTP/AVP 0", ""));
    assert!(d.send_dtmf(now, "1", 100).is_err(), "no telephone-event negotiated");
    let (mut d, _) = answered(now, &gateway_offer());
    assert!(d.send_dtmf(now, "12Z", 100).is_err());
    assert!(drain(&mut d, now).transmits.is_empty(), "nothing queued from a refused string");
}
