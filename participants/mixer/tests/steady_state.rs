//! The mixer's tick runs for every room 50 times a second: once its buffers have grown, a tick
//! must not touch the heap, whatever the outputs' codecs and `a=fmtp` lines.

use std::time::{Duration, Instant};
use switchboard_driver::testing::Collector;
use switchboard_driver::*;
use switchboard_mixer::{g711, spec, Mixer};

use switchboard_driver::alloc_count::{self as counting, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Opus as a browser offers it: an `a=fmtp` line that a per-tick copy of the codec would copy too.
fn opus() -> CodecSpec {
    CodecSpec { channels: 2, fmtp: "minptime=10;useinbandfec=1".into(), ..spec(Codec::Opus, 111) }
}

#[test]
fn a_steady_tick_does_not_allocate() {
    let t0 = Instant::now();
    let legs = 6u16;
    let mut outputs: Vec<MixOutput> = (0..legs)
        .map(|i| MixOutput {
            track: TrackKey(100 + i),
            codec: if i % 2 == 0 { spec(Codec::Pcmu, 0) } else { opus() },
            ptime_ms: 20,
            kind: MixOutputKind::Mix { minus: Some(SlotKey(i)) },
        })
        .collect();
    outputs.push(MixOutput {
        track: TrackKey(99),
        codec: opus(),
        ptime_ms: 20,
        kind: MixOutputKind::Mix { minus: None },
    });
    let plan = MixPlan {
        inputs: (0..legs)
            .map(|i| MixInput {
                slot: SlotKey(i),
                codec: spec(Codec::Pcmu, 0),
                publisher: ParticipantId(u64::from(i) + 1),
            })
            .collect(),
        outputs,
        speakers: 3,
        jitter_buffer_ms: 40,
        jitter_buffer_max_ms: 200,
        video: VideoSettings::default(),
    };
    let mut m = Mixer::new(t0);
    m.configure(t0, &plan);

    // Every leg sends, as phones do; three carry a tone, the rest near-silence.
    let frames: Vec<Vec<u8>> = (0..legs)
        .map(|i| {
            let amplitude = if i < 3 { 8000.0 } else { 20.0 };
            let hz = 300.0 + 150.0 * f32::from(i);
            let pcm: Vec<i16> =
                (0..160).map(|n| (amplitude * (std::f32::consts::TAU * hz * n as f32 / 8000.0).sin()) as i16).collect();
            let mut ulaw = vec![0u8; 160];
            g711::ulaw_encode(&pcm, &mut ulaw);
            ulaw
        })
        .collect();
    let mut out = Collector::default();
    let tick = |m: &mut Mixer, f: u64, out: &mut Collector| {
        let now = t0 + Duration::from_millis(20 * f);
        for (i, frame) in frames.iter().enumerate() {
            // Each leg loses one packet in ten, so concealment runs in the counted ticks too.
            if f % 10 == i as u64 {
                continue;
            }
            let meta = RtpMeta {
                pt: Pt(0),
                seq: SeqNo(f),
                timestamp: 160 * f as u32,
                marker: false,
                ssrc: Ssrc(i as u32),
                audio_level: None,
            };
            m.write_media(now, SlotKey(i as u16), &meta, frame).unwrap();
        }
        m.handle_timeout(now);
        m.poll(now, out);
    };
    // Warm-up: encoders are made, jitter buffers and queues reach their size, speakers settle.
    for f in 0..150 {
        tick(&mut m, f, &mut out);
    }
    // The collector copies every payload it is handed: one allocation each (no packet is empty),
    // and none for its lists, which are cleared and reserved here so they never grow in the
    // counted ticks. Every allocation beyond those copies is the mixer's.
    out.clear();
    out.media.reserve(250 * (usize::from(legs) + 1));
    out.events.reserve(250);
    let before = counting::count();
    for f in 150..400 {
        tick(&mut m, f, &mut out);
    }
    let sent = out.media.len();
    let copies = out.media.iter().filter(|(_, _, p)| !p.is_empty()).count();
    let allocations = counting::count() - before - copies;
    assert_eq!(sent, 250 * (usize::from(legs) + 1), "one packet per output per tick");
    assert_eq!(allocations, 0, "{allocations} heap allocations in 250 steady ticks");
}
