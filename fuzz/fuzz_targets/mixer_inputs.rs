//! The audio mixer fed arbitrary payloads on PCMU, G.722 and Opus inputs, with sequence and
//! timestamp jumps either way, audio levels or none, and ticks early, late or skipped: every
//! packet is mixed, concealed or dropped, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_driver::*;
use switchboard_mixer::{spec, Mixer};

const CODECS: [(Codec, u8); 3] = [(Codec::Pcmu, 0), (Codec::G722, 9), (Codec::Opus, 111)];

struct Null;

impl Output for Null {
    fn transmit(&mut self, _: SocketAddr, _: SocketAddr, _: &[u8]) {}
    fn media(&mut self, _: TrackKey, _: &RtpMeta, _: &[u8]) {}
    fn event(&mut self, _: DriverEvent) {}
}

fn configured(t0: Instant) -> Mixer {
    let mut mixer = Mixer::new(t0);
    let inputs = CODECS
        .iter()
        .zip(0u16..)
        .map(|((codec, pt), i)| MixInput {
            slot: SlotKey(i),
            codec: spec(*codec, *pt),
            publisher: ParticipantId(u64::from(i) + 1),
        })
        .collect();
    // One output per codec, each less one input, and one that hears everyone.
    let mut outputs: Vec<MixOutput> = CODECS
        .iter()
        .zip(0u16..)
        .map(|((codec, pt), i)| MixOutput {
            track: TrackKey(10 + i),
            codec: spec(*codec, *pt),
            ptime_ms: 20,
            kind: MixOutputKind::Mix { minus: Some(SlotKey(i)) },
        })
        .collect();
    outputs.push(MixOutput {
        track: TrackKey(20),
        codec: spec(Codec::Pcmu, 0),
        ptime_ms: 30,
        kind: MixOutputKind::Mix { minus: None },
    });
    let plan = MixPlan {
        inputs,
        outputs,
        speakers: 2,
        jitter_buffer_ms: 20,
        jitter_buffer_max_ms: 200,
        video: VideoSettings::default(),
    };
    mixer.configure(t0, &plan);
    mixer
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut mixer = configured(t0);
    // Extended sequence numbers as a driver hands them over: far from zero, moving either way.
    let mut seq = [1u64 << 20; 3];
    let mut ts = [0u32; 3];
    let mut rest = data;
    // A record: op, then for a packet a 16-bit sequence step, a 32-bit timestamp step, a level
    // byte and a length, then that many payload bytes.
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let slot = usize::from(op % 3);
        if op & 0x80 == 0 {
            now += Duration::from_millis(u64::from(op & 0x7f));
            mixer.handle_timeout(now);
            mixer.poll(now, &mut Null);
            continue;
        }
        let Some((head, tail)) = rest.split_at_checked(8) else { break };
        let len = usize::from(head[7]).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        seq[slot] = seq[slot].saturating_add_signed(i64::from(i16::from_le_bytes([head[0], head[1]])));
        ts[slot] = ts[slot].wrapping_add(u32::from_le_bytes([head[2], head[3], head[4], head[5]]));
        let (_, pt) = CODECS[slot];
        let level = (head[6] & 0x80 != 0).then_some((head[6] & 0x7f) as i8);
        let meta = RtpMeta {
            pt: Pt(if op & 0x40 != 0 { pt } else { head[6] & 0x7f }),
            seq: SeqNo(seq[slot]),
            timestamp: ts[slot],
            marker: op & 0x20 != 0,
            ssrc: Ssrc(slot as u32 + 1),
            audio_level: level,
        };
        let _ = mixer.write_media(now, SlotKey(slot as u16), &meta, payload);
    }
    for _ in 0..20 {
        now += Duration::from_millis(20);
        mixer.handle_timeout(now);
        mixer.poll(now, &mut Null);
    }
});
