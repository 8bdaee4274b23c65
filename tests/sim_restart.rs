//! A phone leg that restarts its stream mid-call (new SSRC, sequence number and timestamp), as
//! a gateway does between early media and the answer, heard by the other leg forwarded and
//! mixed, through a simulated clock.

mod sim;

use sim::*;
use std::time::{Duration, Instant};
use switchboard_mixer::g711;

/// 20 ms of a 440 Hz PCMU tone at half scale: frame `n` of a continuous one.
fn tone(n: u64) -> Vec<u8> {
    let pcm: Vec<i16> = (0..160u64)
        .map(|i| {
            let t = (n * 160 + i) as f64 / 8000.0;
            (16_000.0 * (std::f64::consts::TAU * 440.0 * t).sin()) as i16
        })
        .collect();
    let mut out = vec![0u8; 160];
    g711::ulaw_encode(&pcm, &mut out);
    out
}

/// What the restarting leg sends as packet `n`: 440 Hz, from SSRC 0xA until `restart`, then from
/// SSRC 0xB with unrelated sequence numbers and timestamps.
fn leg_packet(n: u64, restart: u64) -> Vec<u8> {
    if n < restart {
        encode_from(0xA, 0, 60_000 + n, 3_000_000_000u32.wrapping_add(160 * n as u32), &tone(n))
    } else {
        let k = n - restart;
        encode_from(0xB, 0, 10 + k, 99 + 160 * k as u32, &tone(n))
    }
}

#[track_caller]
fn assert_one_stream(got: &[(u64, u32, Vec<u8>)]) {
    for w in got.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "sequence steps by one: {:?} then {:?}", (w[0].0, w[0].1), (w[1].0, w[1].1));
        assert_eq!(w[1].1, w[0].1.wrapping_add(160), "timestamp steps by 20 ms at {}", w[1].0);
    }
}

#[test]
fn a_forwarded_leg_that_restarts_its_stream_stays_one_stream() {
    let t0 = Instant::now();
    let (mut r, mut net, a, _) = pcmu_pair(t0);
    for n in 0..200u64 {
        let now = t0 + Duration::from_millis(20 * n);
        r.handle_receive(now, a, src(1), dst(1), &leg_packet(n, 100), &mut net);
    }
    let got = &net.received[&src(2)];
    assert_eq!(got.len(), 200, "every packet forwarded, before and after the restart");
    assert_one_stream(got);
    assert!(got.iter().enumerate().all(|(n, p)| p.2 == tone(n as u64)), "the payloads as sent");
}

#[test]
fn a_mixed_leg_that_restarts_its_stream_is_heard_throughout() {
    let t0 = Instant::now();
    let mut net = SimNet::default();
    let mut r = real_mixing_room(t0);
    let pcmu = [Codec::Pcmu];
    let a = join(&mut r, t0, &mut net, 1, &pcmu, &pcmu, AudioPreference::Auto);
    // The listener asks for the mix: the restarting leg reaches it through the mixer.
    let b = join(&mut r, t0, &mut net, 2, &pcmu, &pcmu, AudioPreference::Mix);
    let restart = 150;
    for n in 0..300u64 {
        let now = t0 + Duration::from_millis(20 * n);
        r.handle_receive(now, a, src(1), dst(1), &leg_packet(n, restart), &mut net);
        r.handle_receive(now, b, src(2), dst(2), &encode(0, 5_000 + n, 160 * n as u32, &[0xff; 160]), &mut net);
        r.handle_timeout(now, &mut net);
    }
    assert_eq!(r.participant_view(b).unwrap().subscriptions[0].route, Some(Route::Mix));
    let got = &net.received[&src(2)];
    assert!(got.len() >= 290, "a mix packet every 20 ms: {}", got.len());
    assert_one_stream(got);
    // Every 20 ms the listener hears the tone, once the jitter buffer has filled, up to the end:
    // the restart costs no packet.
    let levels: Vec<f64> = got
        .iter()
        .map(|(_, _, p)| {
            let mut pcm = vec![0i16; p.len()];
            g711::ulaw_decode(p, &mut pcm);
            (pcm.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
        })
        .collect();
    let quiet: Vec<usize> = (10..levels.len()).filter(|i| levels[*i] < 8_000.0).collect();
    assert!(quiet.is_empty(), "frames without the tone (of {}): {quiet:?}", levels.len());
}
