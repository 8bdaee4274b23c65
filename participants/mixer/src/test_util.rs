//! Signals, measurements and inputs shared by the unit tests, and the tests every codec stage
//! (`gst_codec`, `opus_codec`) must pass, written once over `TestCodec`.

use std::f64::consts::TAU;
use std::fmt::{Debug, Display};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The mixer's internal rate.
const RATE: f64 = 16_000.0;

/// Codec tests run one at a time so the memory and timing checks see only their own work.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `len` samples of a tone at `rate`, starting at phase 0.
pub fn tone(freq: f64, rate: f64, amplitude: f64, len: usize) -> Vec<i16> {
    (0..len).map(|n| (amplitude * (TAU * freq * n as f64 / rate).sin()).round() as i16).collect()
}

/// A continuous 16 kHz tone cut into frames, with phase carried across frames.
pub fn tone_frames(freq: f64, amplitude: f64, frame: usize, frames: usize) -> Vec<Vec<i16>> {
    let all = tone(freq, RATE, amplitude, frame * frames);
    (0..frames).map(|f| all[f * frame..(f + 1) * frame].to_vec()).collect()
}

/// Power of `freq` in 16 kHz PCM (Goertzel).
pub fn power_at(x: &[i16], freq: f64) -> f64 {
    power_at_rate(x, freq, RATE)
}

/// Power of `freq` in PCM at `rate` (Goertzel).
pub fn power_at_rate(x: &[i16], freq: f64, rate: f64) -> f64 {
    let coeff = 2.0 * (TAU * freq / rate).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s = v as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Strongest frequency in PCM at `rate` among `from`, `from + step`, … up to `to` (Goertzel).
pub fn strongest(x: &[i16], rate: f64, from: f64, to: f64, step: f64) -> f64 {
    let mut best = (from, f64::MIN);
    let mut f = from;
    while f <= to {
        let p = power_at_rate(x, f, rate);
        if p > best.1 {
            best = (f, p);
        }
        f += step;
    }
    best.0
}

/// Strongest frequency in 16 kHz PCM between 100 Hz and 7.5 kHz: a coarse scan, then a fine one.
pub fn dominant(x: &[i16]) -> f64 {
    let coarse = strongest(x, RATE, 100.0, 7500.0, 10.0);
    strongest(x, RATE, coarse - 10.0, coarse + 10.0, 1.0)
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

/// One codec stage as the shared codec tests below drive it; failing to build a state panics.
pub trait TestCodec {
    /// The codec's name in messages.
    const NAME: &'static str;
    type Encoder;
    type Decoder;
    type Error: Debug + Display;
    fn encoder(ptime_ms: u32) -> Self::Encoder;
    fn decoder() -> Self::Decoder;
    fn frame_samples(enc: &Self::Encoder) -> usize;
    fn encode(enc: &mut Self::Encoder, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), Self::Error>;
    fn decode(
        dec: &mut Self::Decoder,
        payload: Option<&[u8]>,
        frame_samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<(), Self::Error>;
}

/// Declares `$codec`, a `TestCodec` over the `Encoder`, `Decoder` and `CodecError` in scope (a
/// codec module's, whose `frame_samples`, `encode` and `decode` all have the same signatures),
/// building states with `$encoder` (given the ptime as `$ptime`) and `$decoder`.
macro_rules! test_codec {
    ($codec:ident, $name:literal, |$ptime:ident| $encoder:expr, $decoder:expr) => {
        struct $codec;

        impl $crate::test_util::TestCodec for $codec {
            const NAME: &'static str = $name;
            type Encoder = Encoder;
            type Decoder = Decoder;
            type Error = CodecError;
            fn encoder($ptime: u32) -> Encoder {
                $encoder.expect("encoder")
            }
            fn decoder() -> Decoder {
                $decoder.expect("decoder")
            }
            fn frame_samples(enc: &Encoder) -> usize {
                enc.frame_samples()
            }
            fn encode(enc: &mut Encoder, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
                enc.encode(pcm, out)
            }
            fn decode(
                dec: &mut Decoder,
                payload: Option<&[u8]>,
                frame: usize,
                out: &mut Vec<i16>,
            ) -> Result<(), CodecError> {
                dec.decode(payload, frame, out)
            }
        }
    };
}
pub(crate) use test_codec;

/// Encodes a 440 Hz tone, decodes it back, and returns the payload sizes and the PCM.
pub fn round_trip<C: TestCodec>(ptime_ms: u32, frames: usize) -> (Vec<usize>, Vec<i16>) {
    let mut enc = C::encoder(ptime_ms);
    let mut dec = C::decoder();
    let frame = C::frame_samples(&enc);
    let mut sizes = Vec::new();
    let mut pcm = Vec::new();
    let mut payload = Vec::new();
    for input in tone_frames(440.0, 8000.0, frame, frames) {
        C::encode(&mut enc, &input, &mut payload).expect("encode");
        sizes.push(payload.len());
        let before = pcm.len();
        C::decode(&mut dec, Some(&payload), frame, &mut pcm).expect("decode");
        assert_eq!(pcm.len() - before, frame, "one frame out per payload in");
    }
    (sizes, pcm)
}

/// A lost (or empty) payload becomes exactly one frame that carries the signal on, and the
/// stream resumes afterwards. `odd_frames` are further frame lengths, lost one after another, that
/// must come out whole too.
pub fn check_loss_concealment<C: TestCodec>(odd_frames: &[usize]) {
    // Before any packet there is nothing to go on, but the frame must still come out.
    let mut dec = C::decoder();
    let mut pcm = Vec::new();
    C::decode(&mut dec, None, 320, &mut pcm).expect("conceal");
    assert_eq!(pcm.len(), 320);

    let mut enc = C::encoder(20);
    let mut payload = Vec::new();
    for input in tone_frames(440.0, 8000.0, 320, 10) {
        C::encode(&mut enc, &input, &mut payload).expect("encode");
        C::decode(&mut dec, Some(&payload), 320, &mut pcm).expect("decode");
    }
    let before = pcm.len();
    C::decode(&mut dec, None, 320, &mut pcm).expect("conceal");
    assert_eq!(pcm.len() - before, 320);
    // Concealment carries the signal on rather than dropping to silence at once.
    assert!(rms(&pcm[before..]) > 500.0, "concealment rms {}", rms(&pcm[before..]));
    for _ in 0..5 {
        let before = pcm.len();
        C::decode(&mut dec, None, 320, &mut pcm).expect("conceal");
        assert_eq!(pcm.len() - before, 320);
    }
    // An empty payload is a loss too.
    let before = pcm.len();
    C::decode(&mut dec, Some(&[]), 320, &mut pcm).expect("conceal");
    assert_eq!(pcm.len() - before, 320);
    for &frame in odd_frames {
        let before = pcm.len();
        C::decode(&mut dec, None, frame, &mut pcm).expect("conceal");
        assert_eq!(pcm.len() - before, frame);
    }
    // And the stream resumes afterwards.
    let before = pcm.len();
    C::encode(&mut enc, &tone_frames(440.0, 8000.0, 320, 1)[0], &mut payload).expect("encode");
    C::decode(&mut dec, Some(&payload), 320, &mut pcm).expect("decode");
    assert_eq!(pcm.len() - before, 320);
}

/// `garbage_payloads` never panic the decoder, what it decodes from one has a length
/// `plausible(payload, samples)` accepts, and afterwards it still decodes real payloads. A
/// decoder that returns an error is rebuilt, as the mixer would.
pub fn check_garbage_survived<C: TestCodec>(plausible: impl Fn(&[u8], usize) -> bool) {
    let mut dec = C::decoder();
    let mut enc = C::encoder(20);
    let mut pcm = Vec::new();
    for p in &garbage_payloads() {
        pcm.clear();
        match C::decode(&mut dec, Some(p), 320, &mut pcm) {
            Ok(()) => assert!(plausible(p, pcm.len()), "{} samples from {} bytes", pcm.len(), p.len()),
            Err(e) => {
                eprintln!("{}: {e}", C::NAME);
                dec = C::decoder();
            }
        }
    }
    // Whatever it went through, the decoder still decodes real payloads.
    let mut payload = Vec::new();
    C::encode(&mut enc, &tone_frames(440.0, 8000.0, 320, 1)[0], &mut payload).expect("encode");
    pcm.clear();
    C::decode(&mut dec, Some(&payload), 320, &mut pcm).expect("decode after garbage");
    assert_eq!(pcm.len(), 320);
}

/// Thousands of frames, every tenth lost, neither grow the process nor fall behind real time.
pub fn check_long_runs<C: TestCodec>() {
    let mut enc = C::encoder(20);
    let mut dec = C::decoder();
    let frames = tone_frames(440.0, 8000.0, 320, 50);
    let mut payload = Vec::new();
    let mut pcm = Vec::with_capacity(320);
    let mut run = |n: usize| {
        for i in 0..n {
            C::encode(&mut enc, &frames[i % frames.len()], &mut payload).expect("encode");
            pcm.clear();
            // Every tenth packet lost, so concealment is exercised too.
            let p = if i % 10 == 9 { None } else { Some(payload.as_slice()) };
            C::decode(&mut dec, p, 320, &mut pcm).expect("decode");
            assert_eq!(pcm.len(), 320);
        }
    };
    run(500);
    // Growth in several windows: a leak shows in every one, while other tests in this
    // process allocating at the same moment can only spoil some.
    let mut growth = Vec::new();
    for _ in 0..3 {
        let before = resident_kib();
        let started = Instant::now();
        run(1000);
        let elapsed = started.elapsed();
        // 1000 frames are 20 s of audio; even an unoptimised build must be far quicker.
        assert!(elapsed < Duration::from_secs(5), "1000 frames took {elapsed:?}");
        growth.extend(before.zip(resident_kib()).map(|(b, a)| a.saturating_sub(b)));
    }
    // A leaked buffer per frame would be hundreds of KiB per 1000 frames.
    assert!(growth.iter().min().is_none_or(|&g| g < 128), "RSS growth {growth:?} KiB");
}

/// Encoders and decoders made, used once and dropped, hundreds of times, do not grow the process.
pub fn check_create_and_drop<C: TestCodec>() {
    let mut payload = Vec::new();
    let mut pcm = Vec::new();
    let mut cycle = || {
        let mut enc = C::encoder(20);
        let mut dec = C::decoder();
        C::encode(&mut enc, &[0; 320], &mut payload).expect("encode");
        pcm.clear();
        C::decode(&mut dec, Some(&payload), 320, &mut pcm).expect("decode");
    };
    for _ in 0..50 {
        cycle();
    }
    let mut growth = Vec::new();
    for _ in 0..3 {
        let before = resident_kib();
        for _ in 0..100 {
            cycle();
        }
        growth.extend(before.zip(resident_kib()).map(|(b, a)| a.saturating_sub(b)));
    }
    // Leaked codec states (each holds several KiB or more) would show in every window.
    assert!(growth.iter().min().is_none_or(|&g| g < 256), "RSS growth {growth:?} KiB");
}

/// Prints what encoding, decoding and concealing one 20 ms frame cost, and the pair's delay.
pub fn bench_per_frame_cost<C: TestCodec>() {
    const N: usize = 5000;
    let frames = tone_frames(440.0, 8000.0, 320, 50);
    let mut enc = C::encoder(20);
    let mut dec = C::decoder();
    let mut payloads = vec![Vec::new(); N];
    let encode = measure(N, |i| C::encode(&mut enc, &frames[i % frames.len()], &mut payloads[i]).expect("encode"));
    let mut pcm = Vec::with_capacity(320);
    let decode = measure(N, |i| {
        pcm.clear();
        C::decode(&mut dec, Some(&payloads[i]), 320, &mut pcm).expect("decode");
    });
    let conceal = measure(N, |_| {
        pcm.clear();
        C::decode(&mut dec, None, 320, &mut pcm).expect("conceal");
    });
    println!("{} per 20 ms frame: encode {encode}, decode {decode}, conceal {conceal}", C::NAME);

    let mut enc = C::encoder(20);
    let mut dec = C::decoder();
    let mut payload = Vec::new();
    let delay = delay_ms(|input, out| {
        C::encode(&mut enc, input, &mut payload).expect("encode");
        C::decode(&mut dec, Some(&payload), 320, out).expect("decode");
    });
    println!("{}: a tone switched on comes out {delay:?} ms later", C::NAME);
}
