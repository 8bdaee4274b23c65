//! Packet durations (`a=ptime`) other than the mixer's 20 ms tick, driven sans-IO with a simulated
//! clock: a phone leg sending a tone in packets of 10, 30, 40 or 60 ms, in G.711, G.722 or Opus,
//! hears it back from the mix in packets of its own ptime, stamped by the audio they carry.

use std::time::{Duration, Instant};
use switchboard_driver::testing::Collector;
use switchboard_driver::*;
use switchboard_mixer::{g711, gst_codec, spec, Mixer};

mod common;
use common::{goertzel, meta};

const HZ: f64 = 440.0;
const SECONDS: u64 = 4;

fn pt(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => 0,
        Codec::G722 => 9,
        _ => 111,
    }
}

/// `len` samples at `rate` of the test tone, from sample `from` on.
fn tone(rate: u64, from: u64, len: u64) -> Vec<i16> {
    (from..from + len).map(|i| (8000.0 * (std::f64::consts::TAU * HZ * i as f64 / rate as f64).sin()) as i16).collect()
}

/// A phone leg's encoder: packet `n` carries the tone from `n * ptime` for `ptime` ms.
enum Sender {
    Pcmu,
    G722(gst_codec::Encoder),
    /// libopus packs 10, 20, 40 and 60 ms; other ptimes are 10 ms frames repacketized.
    Opus(opus::Encoder, opus::Repacketizer),
}

impl Sender {
    fn new(codec: Codec, ptime: u64) -> Sender {
        match codec {
            Codec::Pcmu => Sender::Pcmu,
            Codec::G722 => Sender::G722(gst_codec::Encoder::new(Codec::G722, ptime as u32).expect("G.722 encoder")),
            _ => {
                let mut enc =
                    opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).expect("Opus encoder");
                // Frames join only when they share a mode: voice, wideband, 32 kbit/s keeps SILK.
                enc.set_bitrate(opus::Bitrate::Bits(32_000)).expect("bitrate");
                enc.set_bandwidth(opus::Bandwidth::Wideband).expect("bandwidth");
                enc.set_signal(opus::Signal::Voice).expect("signal");
                Sender::Opus(enc, opus::Repacketizer::new().expect("repacketizer"))
            }
        }
    }

    fn packet(&mut self, ptime: u64, n: u64) -> Vec<u8> {
        match self {
            Sender::Pcmu => {
                let pcm = tone(8000, n * ptime * 8, ptime * 8);
                let mut out = vec![0u8; pcm.len()];
                g711::ulaw_encode(&pcm, &mut out);
                out
            }
            Sender::G722(enc) => {
                let mut out = Vec::new();
                enc.encode(&tone(16_000, n * ptime * 16, ptime * 16), &mut out).expect("G.722 encode");
                out
            }
            Sender::Opus(enc, rp) => {
                let frame = if [10, 20, 40, 60].contains(&ptime) { ptime } else { 10 };
                let frames: Vec<Vec<u8>> = (0..ptime / frame)
                    .map(|k| {
                        let mut out = vec![0u8; 1500];
                        let from = (n * ptime + k * frame) * 48;
                        let len = enc.encode(&tone(48_000, from, frame * 48), &mut out).expect("Opus encode");
                        out.truncate(len);
                        out
                    })
                    .collect();
                let parts: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
                let mut out = vec![0u8; 1500];
                let len = rp.combine(&parts, &mut out).expect("repacketize");
                out.truncate(len);
                out
            }
        }
    }
}

/// A leg's decoder: a payload's PCM (at 16 kHz, G.711 upsampled by repetition: only the tone's
/// frequency and the packet's duration are checked).
enum Receiver {
    Pcmu,
    G722(gst_codec::Decoder),
    Opus(opus::Decoder),
}

impl Receiver {
    fn new(codec: Codec) -> Receiver {
        match codec {
            Codec::Pcmu => Receiver::Pcmu,
            Codec::G722 => Receiver::G722(gst_codec::Decoder::new(Codec::G722).expect("G.722 decoder")),
            _ => Receiver::Opus(opus::Decoder::new(16_000, opus::Channels::Mono).expect("Opus decoder")),
        }
    }

    fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
        match self {
            Receiver::Pcmu => {
                let mut pcm = vec![0i16; payload.len()];
                g711::ulaw_decode(payload, &mut pcm);
                pcm.iter().flat_map(|s| [*s, *s]).collect()
            }
            Receiver::G722(dec) => {
                let mut pcm = Vec::new();
                dec.decode(Some(payload), 320, &mut pcm).expect("G.722 decode");
                pcm
            }
            Receiver::Opus(dec) => {
                let mut pcm = vec![0i16; 1920];
                let n = dec.decode(payload, &mut pcm, false).expect("Opus decode");
                pcm.truncate(n);
                pcm
            }
        }
    }
}

/// Runs a leg sending `codec` in packets of `ptime_in` ms into a mixer whose one output, the mix
/// in `codec` at `ptime_out` ms, it hears; checks what it hears.
fn check(codec: Codec, ptime_in: u64, ptime_out: u64) {
    check_lossy(codec, ptime_in, ptime_out, None);
}

/// `check`, with every `lose_every`-th packet the leg sends lost on the way.
fn check_lossy(codec: Codec, ptime_in: u64, ptime_out: u64, lose_every: Option<u64>) -> MixerStats {
    let who = format!("{codec:?}, {ptime_in} ms in, {ptime_out} ms out, lost 1 in {lose_every:?}");
    let t0 = Instant::now();
    let mut m = Mixer::new(t0);
    let output = MixOutput {
        track: TrackKey(7),
        codec: spec(codec, pt(codec)),
        ptime_ms: ptime_out as u16,
        kind: MixOutputKind::Mix { minus: None },
    };
    m.configure(
        t0,
        &MixPlan {
            inputs: vec![MixInput { slot: SlotKey(0), codec: spec(codec, pt(codec)), publisher: ParticipantId(1) }],
            outputs: vec![output],
            speakers: 3,
            jitter_buffer_ms: 40,
            jitter_buffer_max_ms: 200,
            video: VideoSettings::default(),
        },
    );
    let mut sender = Sender::new(codec, ptime_in);
    let clock = u64::from(codec.clock_rate());
    let mut out = Collector::default();
    // (when it came out, sequence number, timestamp, payload)
    let mut heard: Vec<(Duration, u64, u32, Vec<u8>)> = Vec::new();
    for step in 0..SECONDS * 100 {
        let at = Duration::from_millis(10 * step);
        let now = t0 + at;
        // Packet n is sent once its last sample is in: at (n + 1) * ptime.
        if (step * 10) % ptime_in == 0 && step > 0 {
            let n = step * 10 / ptime_in - 1;
            let ts = (n * ptime_in * clock / 1000) as u32;
            let packet = sender.packet(ptime_in, n);
            if lose_every.is_none_or(|k| n % k != k - 1) {
                m.write_media(now, SlotKey(0), &meta(pt(codec), 1_000 + n, ts, 5), &packet).unwrap();
            }
        }
        m.handle_timeout(now);
        m.poll(now, &mut out);
        heard.extend(out.media.drain(..).map(|(_, meta, p)| (at, meta.seq.0, meta.timestamp, p)));
    }
    let stats = m.take_stats();
    assert_eq!(stats.errors, 0, "{who}: {stats:?}");
    let expected = (SECONDS * 1000 / ptime_out) as usize;
    assert!(heard.len() + 4 >= expected && heard.len() <= expected, "{who}: {} packets of {expected}", heard.len());

    let mut receiver = Receiver::new(codec);
    let mut pcm = Vec::new();
    let step = (ptime_out * clock / 1000) as u32;
    for (i, (at, seq, ts, payload)) in heard.iter().enumerate() {
        let samples = receiver.decode(payload);
        assert_eq!(samples.len() as u64, ptime_out * 16, "{who}: packet {i} lasts {} samples", samples.len());
        pcm.extend(samples);
        if i > 0 {
            let (prev_at, prev_seq, prev_ts, _) = &heard[i - 1];
            assert_eq!(*seq, prev_seq + 1, "{who}: packet {i}");
            assert_eq!(ts.wrapping_sub(*prev_ts), step, "{who}: packet {i} stamped {ts} after {prev_ts}");
            // A packet leaves at the first tick its audio is mixed: after the one before by its
            // duration rounded to the 20 ms ticks (30 ms packets come 20 and 40 ms apart; 10 ms
            // ones two a tick).
            let gap = at.saturating_sub(*prev_at).as_millis() as u64;
            assert!(gap <= ptime_out.div_ceil(20) * 20, "{who}: packet {i} came {gap} ms after the one before");
        }
    }
    // The last second: the tone the leg sent, alone.
    let tail = &pcm[pcm.len() - 16_000..];
    let energy: f64 = tail.iter().map(|x| f64::from(*x).powi(2)).sum();
    let share = 2.0 * goertzel(tail, HZ, 16_000.0) / (tail.len() as f64 * energy.max(1.0));
    assert!(share > 0.7, "{who}: 440 Hz is {:.0} % of what the leg heard", share * 100.0);
    stats
}

#[test]
fn g711_legs_of_every_ptime_hear_the_mix_in_their_ptime() {
    for ptime in [10, 20, 30, 40, 60] {
        check(Codec::Pcmu, ptime, ptime);
    }
}

#[test]
fn g722_legs_of_every_ptime_hear_the_mix_in_their_ptime() {
    for ptime in [10, 20, 30, 40, 60] {
        check(Codec::G722, ptime, ptime);
    }
}

#[test]
fn opus_legs_of_every_ptime_hear_the_mix_in_their_ptime() {
    for ptime in [10, 20, 30, 40, 60] {
        check(Codec::Opus, ptime, ptime);
    }
}

#[test]
fn a_leg_may_send_one_ptime_and_hear_another() {
    check(Codec::Pcmu, 60, 10);
    check(Codec::G722, 10, 60);
    check(Codec::Opus, 40, 30);
}

/// A lost packet is concealed for as long as it lasted (10 ms concealed as 20 would push the
/// stream later at every loss, 60 ms concealed as 20 would run it dry), and a lost long packet,
/// which leaves the buffer empty at its turn, does not grow the buffer as a delay spike would.
#[test]
fn lost_packets_cost_their_duration_and_no_delay() {
    for ptime in [10, 30, 60] {
        for codec in [Codec::Pcmu, Codec::Opus] {
            let stats = check_lossy(codec, ptime, 20, Some(10));
            assert!(stats.jitter_target_ms <= 60, "{codec:?} at {ptime} ms, 10 % lost: {stats:?}");
        }
    }
}
