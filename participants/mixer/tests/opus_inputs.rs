//! Opus through the mixer, driven sans-IO with a simulated clock: a real stream (48 kHz, as
//! endpoints send, with some loss) is heard in the Opus mix, while random bytes sent as Opus are
//! recognised by their TOC churn, muted and counted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_driver::*;

mod common;
use common::{configured_mixer, goertzel, meta, mix_output};

#[derive(Default)]
struct Collect {
    media: Vec<Vec<u8>>,
}

impl Output for Collect {
    fn transmit(&mut self, _: SocketAddr, _: SocketAddr, _: &[u8]) {}
    fn media(&mut self, _: TrackKey, _: &RtpMeta, payload: &[u8]) {
        self.media.push(payload.to_vec());
    }
    fn event(&mut self, _: DriverEvent) {}
}

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
    let mut out = Collect::default();
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
    let stats = m.as_mixer().unwrap().take_stats();
    assert!(out.media.len() >= 240, "one packet per tick: {}", out.media.len());
    assert!(stats.concealed >= 20, "losses concealed: {stats:?}");
    // The garbage input is counted once per tick from when it was recognised.
    assert!(stats.errors >= 200, "garbage recognised: {stats:?}");

    let mut dec = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
    let mut pcm = Vec::new();
    let mut frame = vec![0i16; 1920];
    for p in &out.media {
        let n = dec.decode(p, &mut frame, false).unwrap();
        pcm.extend_from_slice(&frame[..n]);
    }
    // The last 2 s: the tone alone, with no noise from the garbage input mixed in.
    let tail = &pcm[pcm.len() - 32_000..];
    let share = tone_share(tail, 440.0);
    assert!(share > 0.8, "440 Hz is {:.0} % of the mix", share * 100.0);
}
