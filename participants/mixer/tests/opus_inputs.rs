//! Opus through the mixer, driven sans-IO with a simulated clock: a real stream (48 kHz, as
//! endpoints send, with some loss) is heard in the Opus mix, while random bytes sent as Opus are
//! recognised by their TOC churn, muted and counted.

use std::time::{Duration, Instant};
use switchboard_driver::testing::Collector;
use switchboard_driver::*;

mod common;
use common::{configured_mixer, goertzel, meta, mix_output, take_payloads};

/// Share of `pcm`'s energy at `hz` (16 kHz PCM, Goertzel): near 1 for a clean tone on a bin.
fn tone_share(pcm: &[i16], hz: f64) -> f64 {
    let power = goertzel(pcm, hz, 16_000.0);
    let energy: f64 = pcm.iter().map(|x| (*x as f64).powi(2)).sum();
    2.0 * power / (pcm.len() as f64 * energy.max(1.0))
}

#[test]
fn real_opus_is_heard_and_garbage_is_muted() {
    let t0 = Instant::now();
    let mut m = configured_mixer(t0, Codec::Opus, 111, 2, vec![mix_output(9, Codec::Opus, 111, None)], 40);

    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let mut packet = vec![0u8; 1500];
    let mut seed = 0x9E37_79B9u32;
    let mut out = Collector::default();
    for f in 0..250u64 {
        let now = t0 + Duration::from_millis(20 * f);
        let rtp = |ssrc: u32| meta(111, f, 960 * f as u32, ssrc);
        let pcm: Vec<i16> = (0..960u64)
            .map(|i| (9000.0 * (2.0 * std::f64::consts::PI * 440.0 * (f * 960 + i) as f64 / 48_000.0).sin()) as i16)
            .collect();
        let n = enc.encode(&pcm, &mut packet).unwrap();
        // Every tenth packet of the real stream is lost on the way: concealed, not a gap.
        if f % 10 != 5 {
            m.write_media(now, SlotKey(0), &rtp(0), &packet[..n]).unwrap();
        }
        let garbage: Vec<u8> = (0..40 + f as usize % 120)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            })
            .collect();
        m.write_media(now, SlotKey(1), &rtp(1), &garbage).unwrap();
        m.handle_timeout(now);
        m.poll(now, &mut out);
    }
    let stats = m.take_stats();
    assert!(out.media.len() >= 240, "one packet per tick: {}", out.media.len());
    assert!(stats.concealed >= 20, "losses concealed: {stats:?}");
    // The garbage input is counted once per tick from when it was recognised.
    assert!(stats.errors >= 200, "garbage recognised: {stats:?}");

    let mut dec = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
    let mut pcm = Vec::new();
    let mut frame = vec![0i16; 1920];
    for (_, _, p) in &out.media {
        let n = dec.decode(p, &mut frame, false).unwrap();
        pcm.extend_from_slice(&frame[..n]);
    }
    // The last 2 s: the tone alone, with no noise from the garbage input mixed in.
    let tail = &pcm[pcm.len() - 32_000..];
    let share = tone_share(tail, 440.0);
    assert!(share > 0.8, "440 Hz is {:.0} % of the mix", share * 100.0);
}

/// A 20 ms Opus packet (48 kHz) of a tone at `hz`, or of near-silence when `hz` is 0.
struct ToneSender {
    enc: opus::Encoder,
    packet: Vec<u8>,
}

impl ToneSender {
    fn new() -> ToneSender {
        let enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        ToneSender { enc, packet: vec![0u8; 1500] }
    }

    fn frame(&mut self, hz: f64, f: u64) -> &[u8] {
        let amplitude = if hz > 0.0 { 6000.0 } else { 0.0 };
        let pcm: Vec<i16> = (0..960u64)
            .map(|i| (amplitude * (2.0 * std::f64::consts::PI * hz * (f * 960 + i) as f64 / 48_000.0).sin()) as i16)
            .collect();
        let n = self.enc.encode(&pcm, &mut self.packet).unwrap();
        &self.packet[..n]
    }
}

/// Browsers tell their level in every packet (RFC 6464). An input the mix leaves out is then not
/// decoded, yet it still joins the mix as soon as its level wins, and is heard cleanly.
#[test]
fn inputs_left_out_of_the_mix_are_not_decoded_when_their_senders_report_levels() {
    let t0 = Instant::now();
    let legs = 5usize;
    let mut m = configured_mixer(t0, Codec::Opus, 111, legs as u16, vec![mix_output(9, Codec::Opus, 111, None)], 40);
    let mut senders: Vec<ToneSender> = (0..legs).map(|_| ToneSender::new()).collect();
    let mut out = Collector::default();
    // (tone, reported level in -dBov) per leg and phase. Phase 0 reports no levels at all.
    let phases: [[(f64, Option<i8>); 5]; 3] = [
        [(440.0, None), (660.0, None), (880.0, None), (0.0, None), (0.0, None)],
        [(440.0, Some(20)), (660.0, Some(20)), (880.0, Some(20)), (0.0, Some(127)), (0.0, Some(127))],
        // Leg 0 falls silent and leg 3 starts talking: 1,200 Hz must take 440 Hz's place.
        [(0.0, Some(127)), (660.0, Some(20)), (880.0, Some(20)), (1200.0, Some(15)), (0.0, Some(127))],
    ];
    let mut undecoded = Vec::new();
    let mut heard = Vec::new();
    for (phase, legs_now) in phases.iter().enumerate() {
        for f in (phase as u64 * 100)..(phase as u64 * 100 + 100) {
            let now = t0 + Duration::from_millis(20 * f);
            for (i, (hz, level)) in legs_now.iter().enumerate() {
                let rtp = RtpMeta { audio_level: *level, ..meta(111, f, 960 * f as u32, i as u32) };
                m.write_media(now, SlotKey(i as u16), &rtp, senders[i].frame(*hz, f)).unwrap();
            }
            m.handle_timeout(now);
            m.poll(now, &mut out);
        }
        undecoded.push(m.take_stats().undecoded);
        heard.push(take_payloads(&mut out));
    }
    assert_eq!(undecoded[0], 0, "without levels, every input is decoded to be measured");
    // Legs 3 and 4 are left out for the whole phase; the first ticks are the selector's.
    assert!(undecoded[1] >= 2 * 90, "two silent legs not decoded: {undecoded:?}");
    assert!(undecoded[2] >= 2 * 80, "leg 0 and leg 4 not decoded once the set changed: {undecoded:?}");

    let decode = |packets: &[Vec<u8>]| {
        let mut dec = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
        let mut frame = vec![0i16; 1920];
        let mut pcm = Vec::new();
        for p in packets {
            let n = dec.decode(p, &mut frame, false).unwrap();
            pcm.extend_from_slice(&frame[..n]);
        }
        pcm
    };
    let band_db =
        |pcm: &[i16], hz: f64| 10.0 * (goertzel(pcm, hz, 16_000.0) / (pcm.len() as f64).powi(2)).max(1e-9).log10();
    // The last second of each phase.
    let last = |pcm: &[i16]| pcm[pcm.len() - 16_000..].to_vec();
    let talking = last(&decode(&heard[1]));
    for hz in [440.0, 660.0, 880.0] {
        assert!(band_db(&talking, hz) > band_db(&talking, 1200.0) + 30.0, "{hz} Hz is mixed in phase 1");
    }
    let switched = last(&decode(&heard[2]));
    let new_talker = band_db(&switched, 1200.0);
    assert!(new_talker > band_db(&switched, 440.0) + 30.0, "the new talker replaced the silent one");
    assert!(
        (new_talker - band_db(&switched, 660.0)).abs() < 6.0,
        "the new talker is heard at its level once decoding resumed: {new_talker:.1} dB against {:.1} dB",
        band_db(&switched, 660.0)
    );
    let share: f64 = [660.0, 880.0, 1200.0].iter().map(|hz| tone_share(&switched, *hz)).sum();
    assert!(share > 0.8, "the mix is the three tones and little else: {:.0} %", share * 100.0);
}

/// A browser that sees loss adds a low-rate copy of each frame to the next packet (in-band FEC).
/// When a packet is lost and the next one is already buffered, the mix plays that copy, so a
/// sound that only the lost packet carried is still heard; without FEC, concealment can only
/// carry the sound before it on.
#[test]
fn a_lost_opus_packet_is_heard_from_the_next_ones_fec_in_the_mix() {
    // The share of the mix at the pitch only the lost packets carried.
    let run = |fec: bool| {
        let t0 = Instant::now();
        let mut m = configured_mixer(t0, Codec::Opus, 111, 1, vec![mix_output(9, Codec::Opus, 111, None)], 40);
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        enc.set_bitrate(opus::Bitrate::Bits(32_000)).unwrap();
        enc.set_inband_fec(fec).unwrap();
        enc.set_packet_loss_perc(if fec { 20 } else { 0 }).unwrap();
        let mut packet = vec![0u8; 1500];
        let mut out = Collector::default();
        for f in 0..200u64 {
            let now = t0 + Duration::from_millis(20 * f);
            let lost = f % 10 == 5;
            let hz = if lost { 700.0 } else { 300.0 };
            let pcm: Vec<i16> = (0..960u64)
                .map(|i| (8000.0 * (std::f64::consts::TAU * hz * (f * 960 + i) as f64 / 48_000.0).sin()) as i16)
                .collect();
            let n = enc.encode(&pcm, &mut packet).unwrap();
            if !lost {
                m.write_media(now, SlotKey(0), &meta(111, f, 960 * f as u32, 1), &packet[..n]).unwrap();
            }
            m.handle_timeout(now);
            m.poll(now, &mut out);
        }
        let stats = m.take_stats();
        assert!(stats.concealed >= 18, "every lost packet is counted as concealed: {stats:?}");
        let mut dec = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
        let mut frame = vec![0i16; 1920];
        let mut pcm = Vec::new();
        for (_, _, p) in &out.media {
            let n = dec.decode(p, &mut frame, false).unwrap();
            pcm.extend_from_slice(&frame[..n]);
        }
        tone_share(&pcm, 700.0)
    };
    let (with_fec, without) = (run(true), run(false));
    // The share is coherent over the whole mix, so a tone there a tenth of the time scores at
    // most a hundredth; the copy is coarser than the frame, so less is asked.
    assert!(
        with_fec > 0.005 && with_fec > 20.0 * without,
        "700 Hz, carried only by the lost packets, is {:.2} % of the mix with FEC and {:.2} % without",
        with_fec * 100.0,
        without * 100.0
    );
}
