//! The mixer driven sans-IO with a simulated clock: three PCMU inputs with their own tones, one
//! mix output per input, checked by spectrum after decoding what the mixer sent.

use std::time::{Duration, Instant};
use switchboard_driver::testing::Collector;
use switchboard_driver::*;
use switchboard_mixer::g711;

mod common;
use common::{configured_mixer, goertzel, meta, mix_output};

/// The packets of `track`, as (sequence number, timestamp, payload).
fn stream(out: &Collector, track: TrackKey) -> Vec<(u64, u32, Vec<u8>)> {
    out.media_of(track).map(|(_, meta, payload)| (meta.seq.0, meta.timestamp, payload.clone())).collect()
}

/// Every change of the active speakers the mixer reported, in order.
fn speakers(out: &Collector) -> Vec<Vec<SlotKey>> {
    out.events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::ActiveSpeakers { slots } => Some(slots.clone()),
            _ => None,
        })
        .collect()
}

fn tone_frame(hz: f32, amplitude: f32, frame: u64) -> Vec<u8> {
    let pcm: Vec<i16> = (0..160)
        .map(|i| {
            let t = (frame * 160 + i) as f32 / 8000.0;
            (amplitude * 32767.0 * (2.0 * std::f32::consts::PI * hz * t).sin()) as i16
        })
        .collect();
    let mut out = vec![0u8; 160];
    g711::ulaw_encode(&pcm, &mut out);
    out
}

/// Energy of `hz` in 8 kHz PCM, in dB relative to full scale.
fn band_db(pcm: &[i16], hz: f32) -> f32 {
    let power = goertzel(pcm, hz as f64, 8000.0) / (32768.0 * 32768.0);
    let n = pcm.len() as f64;
    (10.0 * (power / (n * n / 4.0)).max(1e-12).log10()) as f32
}

/// The PCM of the last 50 packets (1 s) of a PCMU stream.
fn last_second(packets: &[(u64, u32, Vec<u8>)]) -> Vec<i16> {
    let mut pcm = Vec::new();
    for (_, _, p) in &packets[packets.len() - 50..] {
        let mut frame = vec![0i16; p.len()];
        g711::ulaw_decode(p, &mut frame);
        pcm.extend(frame);
    }
    pcm
}

#[test]
fn each_output_hears_the_others_and_not_itself() {
    let t0 = Instant::now();
    let tones = [440.0f32, 660.0, 880.0];
    let outputs = (0..3).map(|i| mix_output(10 + i, Codec::Pcmu, 0, Some(SlotKey(i)))).collect();
    let mut m = configured_mixer(t0, Codec::Pcmu, 0, 3, outputs, 40);
    let mut out = Collector::default();
    for f in 0..150u64 {
        let now = t0 + Duration::from_millis(20 * f);
        for (i, hz) in tones.iter().enumerate() {
            let rtp = meta(0, 100 + f, 160 * f as u32, i as u32);
            m.write_media(now, SlotKey(i as u16), &rtp, &tone_frame(*hz, 0.3, f)).unwrap();
        }
        m.handle_timeout(now);
        m.poll(now, &mut out);
    }
    assert!(!speakers(&out).is_empty(), "active speakers were reported");
    for (i, own) in tones.iter().enumerate() {
        let packets = &stream(&out, TrackKey(10 + i as u16));
        assert!(packets.len() >= 140, "one packet per tick: {}", packets.len());
        assert!(packets.windows(2).all(|w| w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 160), "one continuous stream");
        let pcm = last_second(packets);
        let mine = band_db(&pcm, *own);
        for other in tones.iter().filter(|t| *t != own) {
            let theirs = band_db(&pcm, *other);
            assert!(theirs > mine + 30.0, "output {i}: {other} Hz at {theirs:.1} dB, own {own} Hz at {mine:.1} dB");
        }
    }
}

#[test]
fn only_the_k_loudest_are_mixed() {
    let t0 = Instant::now();
    let legs = [(440.0f32, 0.4f32), (560.0, 0.3), (680.0, 0.2), (800.0, 0.02), (920.0, 0.01)];
    let mut m = configured_mixer(t0, Codec::Pcmu, 0, 5, vec![mix_output(99, Codec::Pcmu, 0, None)], 20);
    let mut out = Collector::default();
    for f in 0..150u64 {
        let now = t0 + Duration::from_millis(20 * f);
        for (i, (hz, amp)) in legs.iter().enumerate() {
            m.write_media(now, SlotKey(i as u16), &meta(0, f, 160 * f as u32, 0), &tone_frame(*hz, *amp, f)).unwrap();
        }
        m.handle_timeout(now);
        m.poll(now, &mut out);
    }
    let pcm = last_second(&stream(&out, TrackKey(99)));
    let loud: Vec<f32> = legs[..3].iter().map(|(hz, _)| band_db(&pcm, *hz)).collect();
    let quiet: Vec<f32> = legs[3..].iter().map(|(hz, _)| band_db(&pcm, *hz)).collect();
    let weakest_loud = loud.iter().cloned().fold(f32::MAX, f32::min);
    for q in quiet {
        assert!(weakest_loud > q + 20.0, "loud {loud:?} vs quiet {q}");
    }
    assert_eq!(speakers(&out).last().unwrap().len(), 3);
}

/// Whether a PCMU payload carries sound rather than silence.
fn carries_sound(payload: &[u8]) -> bool {
    let mut pcm = vec![0i16; payload.len()];
    g711::ulaw_decode(payload, &mut pcm);
    pcm.iter().any(|s| s.unsigned_abs() > 1000)
}

/// Input to output on a clean network: the jitter buffer's minimum (20 ms) plus the packets'
/// phase against the mixer's tick, well within the 60 ms the benchmarks ask of the mixer.
#[test]
fn a_clean_input_reaches_the_mix_within_60_ms() {
    for phase_ms in [1u64, 7, 13, 19] {
        let t0 = Instant::now();
        let mut m = configured_mixer(t0, Codec::Pcmu, 0, 1, vec![mix_output(9, Codec::Pcmu, 0, None)], 20);
        let mut out = Collector::default();
        // When the mixer sent the first packet that carries sound.
        let mut first_sound = None;
        // One second of silence, then a loud tone; a packet every 20 ms, `phase_ms` into the tick.
        let onset = 50u64;
        for ms in 0..2000u64 {
            let now = t0 + Duration::from_millis(ms);
            if ms % 20 == phase_ms {
                let f = ms / 20;
                let payload = if f < onset { vec![0xFFu8; 160] } else { tone_frame(440.0, 0.5, f) };
                m.write_media(now, SlotKey(0), &meta(0, f, 160 * f as u32, 1), &payload).unwrap();
            }
            m.handle_timeout(now);
            m.poll(now, &mut out);
            if first_sound.is_none() && out.media.iter().any(|(_, _, p)| carries_sound(p)) {
                first_sound = Some(now);
            }
            out.clear();
        }
        let sent = t0 + Duration::from_millis(onset * 20 + phase_ms);
        let delay = first_sound.expect("the tone reached the mix").duration_since(sent);
        assert!(
            delay >= Duration::from_millis(20) && delay <= Duration::from_millis(45),
            "phase {phase_ms} ms: the tone came out {delay:?} after it was sent"
        );
    }
}
