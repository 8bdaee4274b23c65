//! A receiver that reports loss gets its Opus mix with in-band FEC: each packet then carries a
//! low-rate copy of the frame before it, which the receiver decodes when that frame's packet was
//! lost. Without reports the mix carries none, as before (FEC costs bitrate).

use std::time::{Duration, Instant};
use switchboard_driver::testing::Collector;
use switchboard_driver::*;

mod common;
use common::{configured_mixer, meta, mix_output, take_payloads};

/// How far (rms) frame `lost` of `packets`, recovered from the next packet's FEC, is from the
/// frame as decoded from its own packet.
fn recovery_error(packets: &[Vec<u8>], lost: usize) -> f64 {
    let mut frame = vec![0i16; 320];
    let mut reference = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
    let mut receiver = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
    for p in &packets[..lost] {
        reference.decode(p, &mut frame, false).unwrap();
        receiver.decode(p, &mut frame, false).unwrap();
    }
    let mut heard = vec![0i16; 320];
    reference.decode(&packets[lost], &mut heard, false).unwrap();
    // Without FEC in the next packet, libopus conceals instead.
    let n = receiver.decode(&packets[lost + 1], &mut frame, true).unwrap();
    assert_eq!(n, 320);
    let sum: f64 = heard.iter().zip(&frame).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    (sum / 320.0).sqrt()
}

#[test]
fn a_receiver_reporting_loss_gets_its_mix_with_fec() {
    let t0 = Instant::now();
    let mut m = configured_mixer(t0, Codec::Opus, 111, 1, vec![mix_output(9, Codec::Opus, 111, None)], 40);
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let mut packet = vec![0u8; 1500];
    let mut out = Collector::default();
    let mut phases = Vec::new();
    for f in 0..400u64 {
        let now = t0 + Duration::from_millis(20 * f);
        if f == 200 {
            phases.push(take_payloads(&mut out));
            m.receiver_loss(now, TrackKey(9), 0.1);
        }
        // A voice whose pitch moves every frame: concealment, which carries the last frame's
        // pitch on, cannot guess the lost one.
        let hz = [220.0, 330.0, 270.0, 390.0][f as usize % 4];
        let pcm: Vec<i16> = (0..960u64)
            .map(|i| {
                let w = std::f64::consts::TAU * hz * (f * 960 + i) as f64 / 48_000.0;
                (5000.0 * w.sin() + 2500.0 * (2.0 * w).sin() + 1200.0 * (3.0 * w).sin()) as i16
            })
            .collect();
        let n = enc.encode(&pcm, &mut packet).unwrap();
        m.write_media(now, SlotKey(0), &meta(111, f, 960 * f as u32, 1), &packet[..n]).unwrap();
        m.handle_timeout(now);
        m.poll(now, &mut out);
    }
    phases.push(take_payloads(&mut out));
    assert_eq!(m.take_stats().fec_encoders, 1, "the reported loss turned FEC on");

    // Ten losses in each phase, well after its start.
    let error = |packets: &[Vec<u8>]| {
        let mut e: Vec<f64> = (0..10).map(|k| recovery_error(packets, 100 + 7 * k)).collect();
        e.sort_by(f64::total_cmp);
        e[5]
    };
    let (before, after) = (error(&phases[0]), error(&phases[1]));
    eprintln!("a lost frame is {before:.0} rms off without reports, {after:.0} with 10 % reported");
    assert!(after < 0.5 * before, "with FEC a lost frame is {after:.0} rms off, without {before:.0}");

    // A receiver that stops reporting stops costing FEC after a while.
    let later = t0 + Duration::from_secs(20);
    m.handle_timeout(later);
    m.poll(later, &mut out);
    m.handle_timeout(later + Duration::from_millis(40));
    assert_eq!(m.take_stats().fec_encoders, 0, "a stale report keeps FEC on");
}

#[test]
fn loss_on_a_g711_output_changes_nothing() {
    let t0 = Instant::now();
    let mut m = configured_mixer(t0, Codec::Pcmu, 0, 1, vec![mix_output(9, Codec::Pcmu, 0, None)], 40);
    let mut out = Collector::default();
    m.receiver_loss(t0, TrackKey(9), 0.2);
    for f in 0..50u64 {
        let now = t0 + Duration::from_millis(20 * f);
        m.write_media(now, SlotKey(0), &meta(0, f, 160 * f as u32, 1), &[0x55; 160]).unwrap();
        m.handle_timeout(now);
        m.poll(now, &mut out);
    }
    assert!(out.media.len() >= 45 && out.media.iter().all(|(_, _, p)| p.len() == 160), "PCMU as before");
    assert_eq!(m.take_stats().fec_encoders, 0, "G.711 has no FEC to add");
}
