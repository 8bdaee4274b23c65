//! Stable-toolchain stand-ins for the fuzz targets: mutated packets and SDP into whole legs.
//! Any panic fails the test; the outcome of each input does not matter.

use super::*;
use crate::rtcp::{write_report, ReportBlock};
use switchboard_driver::SlotKey;

use switchboard_driver::testing::Rng;

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut p = base.to_vec();
    match rng.below(5) {
        0 => {
            for _ in 0..=rng.below(4) {
                if !p.is_empty() {
                    let i = rng.index(p.len());
                    p[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => p.truncate(rng.index(p.len() + 1)),
        2 => p.extend((0..rng.below(40)).map(|_| rng.next_u64() as u8)),
        3 => p = (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect(),
        _ => {
            // A plausible header with random bits in the first two bytes.
            if p.len() > 2 {
                p[0] = 0x80 | (rng.next_u64() as u8 & 0x3f);
                p[1] = rng.next_u64() as u8;
            }
        }
    }
    p
}

fn seeds() -> Vec<Vec<u8>> {
    let mut rr = Vec::new();
    write_report(&mut rr, 5, None, Some(ReportBlock::default()), "seed");
    let mut padded = rtp(0, 3, 480, 5, false, &[1; 20]);
    padded[0] |= 0x20;
    padded.push(4);
    vec![rtp(0, 1, 160, 5, false, &[0; 160]), rtp(101, 2, 320, 5, true, &[3, 0x8a, 0, 160]), padded, rr]
}

fn exercise(d: &mut RtpDriver, rng: &mut Rng, clock: &mut Clock, seeds: &[Vec<u8>], rounds: usize) {
    let ports = [addr(LOCAL_RTP), addr(LOCAL_RTCP)];
    let sources = [addr(PEER_RTP), addr(PEER_RTCP), addr("198.51.100.1:5000")];
    let mut sink = Collector::default();
    for _ in 0..rounds {
        let now = clock.advance(rng.below(30));
        let seed = &seeds[rng.index(seeds.len())];
        let packet = mutate(rng, seed);
        d.handle_receive(now, sources[rng.index(3)], ports[rng.index(2)], &packet);
        match rng.below(20) {
            0 => d.handle_timeout(now),
            1 => {
                let digits: String = (0..rng.below(4)).map(|_| char::from(rng.next_u64() as u8 & 0x7f)).collect();
                let _ = d.send_dtmf(now, &digits, rng.below(10_000) as u32);
            }
            2 => {
                let pt = [0, 8, 101, 127][rng.index(4)];
                let _ = d.write_media(
                    now,
                    SlotKey(rng.below(2) as u16),
                    &meta(pt, rng.next_u64(), rng.next_u64() as u32),
                    &packet,
                );
            }
            _ => {}
        }
        d.poll(now, &mut sink);
        sink.transmits.clear();
        sink.media.clear();
        sink.events.clear();
    }
}

#[test]
fn mutated_datagrams_never_panic() {
    let mut rng = Rng(0x5eed_0001);
    let mut clock = Clock::new();
    let plain = seeds();
    let (mut d, _) = answered(clock.0, &gateway_offer());
    exercise(&mut d, &mut rng, &mut clock, &plain, 20_000);

    // A leg that takes RFC 6464 levels reads each packet's header extension too.
    let levels_offer = gateway_offer()
        .replace("a=sendrecv\r\n", "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\n");
    let (mut d, answer) = answered(clock.0, &levels_offer);
    assert!(answer.contains("a=extmap:1/recvonly"), "{answer}");
    let mut with_levels = plain.clone();
    for ext in [&[0xbe, 0xde, 0, 1, 0x10, 0x85, 0, 0][..], &[0x10, 0x00, 0, 1, 1, 1, 0x85, 0]] {
        let mut p = rtp(0, 9, 1440, 5, false, &[]);
        p[0] |= 0x10;
        p.extend_from_slice(ext);
        p.extend_from_slice(&[0xff; 160]);
        with_levels.push(p);
    }
    exercise(&mut d, &mut rng, &mut clock, &with_levels, 20_000);

    // An srtp leg, seeded with genuinely protected packets so mutations get past the header.
    let mut a = RtpDriver::new(config(Some(ParticipantKind::Srtp), true), clock.0);
    let offer_sdp = a.create_offer(clock.0).unwrap();
    let (mut b, answer) = answered(clock.0, &offer_sdp);
    a.negotiate(clock.0, SdpInput::Answer(&answer)).unwrap();
    let mut protected = Vec::new();
    for seq in 0..20u64 {
        let pt = if seq % 5 == 0 { 101 } else { 0 };
        a.write_media(clock.0, SlotKey(0), &meta(pt, seq, seq as u32 * 160), &[seq as u8; 4]).unwrap();
    }
    let now = clock.advance(3000);
    a.handle_timeout(now);
    protected.extend(drain(&mut a, now).transmits.into_iter().map(|(_, _, p)| p));
    exercise(&mut b, &mut rng, &mut clock, &protected, 5_000);
}

#[test]
fn mutated_sdp_never_panics() {
    let mut rng = Rng(0x5eed_0002);
    let now = Instant::now();
    let mut srtp_leg = RtpDriver::new(config(Some(ParticipantKind::Srtp), true), now);
    let bases = [
        gateway_offer(),
        srtp_leg.create_offer(now).unwrap(),
        offer("RTP/AVP 111 0", "a=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\na=rtcp:30001 IN IP4 192.0.2.11\r\n"),
    ];
    for _ in 0..1_000 {
        let base = &bases[rng.index(bases.len())];
        let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
        for _ in 0..=rng.below(3) {
            let i = rng.index(lines.len());
            match rng.below(4) {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    let dup = lines[i].clone();
                    lines.insert(rng.index(lines.len()), dup);
                }
                2 => {
                    let mut bytes = lines[i].clone().into_bytes();
                    if !bytes.is_empty() {
                        let j = rng.index(bytes.len());
                        bytes[j] = b" :/0123456789abcxyzAV=-"[rng.index(23)];
                    }
                    lines[i] = String::from_utf8_lossy(&bytes).into_owned();
                }
                _ => {
                    let cut = rng.index(lines[i].len() + 1);
                    lines[i].truncate(cut);
                }
            }
        }
        let text = lines.join("\r\n");
        let _ = crate::parse_remote_description(&text);
        let mut d = leg(now);
        let _ = d.negotiate(now, SdpInput::Offer(&text));
        let _ = d.negotiate(now, SdpInput::Offer(&text));
        let _ = srtp_leg.negotiate(now, SdpInput::Answer(&text));
    }
}
