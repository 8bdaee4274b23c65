//! Signals, measurements and inputs shared by the codec tests (`gst_codec`, `opus_codec`).

use std::f64::consts::TAU;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The mixer's internal rate.
const RATE: f64 = 16_000.0;

/// Codec tests run one at a time so the memory and timing checks see only their own work.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A continuous 16 kHz tone cut into frames, with phase carried across frames.
pub fn tone_frames(freq: f64, amplitude: f64, frame: usize, frames: usize) -> Vec<Vec<i16>> {
    (0..frames)
        .map(|f| {
            (0..frame)
                .map(|i| {
                    let n = (f * frame + i) as f64;
                    (amplitude * (TAU * freq * n / RATE).sin()).round() as i16
                })
                .collect()
        })
        .collect()
}

/// Power of `freq` in 16 kHz PCM (Goertzel).
pub fn power_at(x: &[i16], freq: f64) -> f64 {
    let coeff = 2.0 * (TAU * freq / RATE).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s = v as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Strongest frequency between 100 Hz and 7.5 kHz: a coarse Goertzel scan, then a fine one.
pub fn dominant(x: &[i16]) -> f64 {
    let scan = |from: f64, to: f64, step: f64| {
        let mut best = (from, f64::MIN);
        let mut f = from;
        while f <= to {
            let p = power_at(x, f);
            if p > best.1 {
                best = (f, p);
            }
            f += step;
        }
        best.0
    };
    let coarse = scan(100.0, 7500.0, 10.0);
    scan(coarse - 10.0, coarse + 10.0, 1.0)
}

pub fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Checks that a round trip of `tone_frames(440.0, 8000.0, ..)` kept the tone and its level.
pub fn check_tone(pcm: &[i16]) {
    // Skip the codecs' start-up (Opus ramps in over its first frames).
    let steady = &pcm[pcm.len() / 4..];
    let f = dominant(steady);
    assert!((f - 440.0).abs() <= 10.0, "dominant {f} Hz");
    let level = 20.0 * (rms(steady) / (8000.0 / 2f64.sqrt())).log10();
    assert!(level.abs() < 3.0, "level {level:.1} dB");
}

/// Payloads no encoder made: degenerate ones, then pseudo-random bytes of many lengths.
pub fn garbage_payloads() -> Vec<Vec<u8>> {
    let mut seed = 0x1234_5678u32;
    let mut noise = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            })
            .collect()
    };
    let mut payloads = vec![vec![0u8], vec![0xFF; 3], vec![0; 1275], vec![0xFF; 5000], vec![0xFC, 0xFF, 0xFF]];
    for len in [1, 2, 7, 60, 160, 400, 1500] {
        for _ in 0..20 {
            payloads.push(noise(len));
        }
    }
    payloads
}

pub fn resident_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4)
}

/// CPU time this thread has run, from the scheduler's own accounting (nanoseconds), so a busy
/// machine does not inflate the figures the way wall time does.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(stat.split_whitespace().next()?.parse().ok()?))
}

/// Wall and CPU microseconds per call of something measured.
#[derive(Clone, Copy)]
pub struct PerCall {
    wall: f64,
    cpu: Option<f64>,
}

impl std::fmt::Display for PerCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} µs wall / {:.1} µs CPU", self.wall, self.cpu.unwrap_or(f64::NAN))
    }
}

/// Runs `f` `n` times and returns its cost per call.
pub fn measure(n: usize, mut f: impl FnMut(usize)) -> PerCall {
    let cpu = thread_cpu();
    let started = Instant::now();
    for i in 0..n {
        f(i);
    }
    let wall = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let cpu = cpu.zip(thread_cpu()).map(|(a, b)| (b - a).as_secs_f64() * 1e6 / n as f64);
    PerCall { wall, cpu }
}

/// Algorithmic delay through an encoder and decoder pair, in ms: where a 1 kHz tone switched on
/// at a frame boundary shows up in the output. `code` encodes and decodes one 20 ms frame.
pub fn delay_ms(mut code: impl FnMut(&[i16], &mut Vec<i16>)) -> Option<f64> {
    let tone = tone_frames(1000.0, 8000.0, 320, 20);
    let mut out = Vec::new();
    for (f, frame) in tone.iter().enumerate() {
        let input = if f < 10 { &[0; 320][..] } else { frame };
        code(input, &mut out);
    }
    out.iter().position(|s| s.unsigned_abs() > 2000).map(|i| i as f64 / 16.0 - 200.0)
}
