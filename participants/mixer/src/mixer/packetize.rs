//! Cutting the mix into packets of each output's ptime, and stamping them.
//!
//! The mixer makes one 20 ms frame a tick; a leg may ask (`a=ptime`) for packets of 10 ms (two a
//! tick) or of 30, 40, 60 ms (one every few ticks, 30 ms on alternate ticks). Each encoder
//! gathers frames and cuts a packet whenever it has a ptime's worth.
//!
//! Packets start on a grid shared by every encoder: mixer time (in 16 kHz samples since the mixer
//! started, frames skipped while starved included) at whole multiples of the ptime. An encoder
//! that starts, or resumes after ticks it was not fed, fills the time since the last grid point
//! with silence. So when an output moves to another encoder (a listener who starts talking gets a
//! mix-minus of their own), the new encoder's next packet starts exactly where the old one's
//! last packet ended: the stream goes on without a gap or an overlap, never carrying stale audio.
//!
//! An output's timestamps follow the audio: a packet is stamped by its first sample's mixer time,
//! so whatever the ptime, the encoder or a skipped tick, the timestamp advances with the audio.

use crate::codec::{Encoder, StageError, FRAME};
use switchboard_driver::{Codec, SeqNo};

/// The mixer's internal rate.
const RATE: u64 = 16_000;
/// Samples in 10 ms at 16 kHz: every ptime is a multiple of it.
const TEN_MS: u64 = RATE / 100;

/// The packet duration the mixer sends for a leg that asked for `asked` ms: the nearest multiple
/// of 10 ms from 10 to 120 ms (every codec here packs any of them; Opus packets end at 120 ms).
pub(super) fn packet_ms(asked: u16) -> u16 {
    (asked.clamp(10, 120) + 5) / 10 * 10
}

/// One encoder and the packets it cut this tick.
pub(super) struct Packetizer {
    encoder: Encoder,
    /// Samples (16 kHz) in one packet.
    samples: usize,
    /// PCM gathered toward the next packet.
    pending: Vec<i16>,
    /// Mixer time of `pending[0]`.
    pending_at: u64,
    /// The packets the last `push` finished, in order, as (mixer time of their first sample,
    /// payload); only the first `ready` are this tick's. The buffers are reused.
    packets: Vec<(u64, Vec<u8>)>,
    ready: usize,
}

impl Packetizer {
    pub(super) fn new(codec: Codec, ptime_ms: u16) -> Result<Packetizer, StageError> {
        let encoder = Encoder::new(codec, u32::from(ptime_ms))?;
        let samples = usize::from(ptime_ms) * TEN_MS as usize / 10;
        Ok(Packetizer {
            encoder,
            samples,
            pending: Vec::with_capacity(samples + FRAME),
            pending_at: 0,
            // 10 ms packets come two a tick; a 16 kHz G.722 byte holds two samples.
            packets: (0..2).map(|_| (0, Vec::with_capacity(256.max(samples / 2)))).collect(),
            ready: 0,
        })
    }

    pub(super) fn encoder(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    /// Takes one frame of PCM that starts at mixer time `at` and encodes every packet it
    /// completes (see `packets`).
    pub(super) fn push(&mut self, at: u64, pcm: &[i16]) -> Result<(), StageError> {
        self.ready = 0;
        let samples = self.samples as u64;
        if self.pending_at + self.pending.len() as u64 != at {
            // Not fed since the last packet boundary (a new encoder, or one that sat idle): start
            // at the boundary with silence, so packets stay on the grid (see the module docs).
            let into = (at % samples) as usize;
            self.pending.clear();
            self.pending.resize(into, 0);
            self.pending_at = at - into as u64;
        }
        self.pending.extend_from_slice(pcm);
        let mut done = 0;
        while self.pending.len() - done >= self.samples {
            if self.ready == self.packets.len() {
                // Only for ptimes under 10 ms, which `packet_ms` never gives.
                self.packets.push((0, Vec::with_capacity(256)));
            }
            let (start, payload) = &mut self.packets[self.ready];
            *start = self.pending_at + done as u64;
            let result = self.encoder.encode(&self.pending[done..done + self.samples], payload);
            done += self.samples;
            result?;
            // An encoder may make no packet of a frame (never with the settings used here).
            if !payload.is_empty() {
                self.ready += 1;
            }
        }
        self.pending.drain(..done);
        self.pending_at += done as u64;
        Ok(())
    }

    /// The packets the last `push` finished: (mixer time of the first sample, payload).
    pub(super) fn packets(&self) -> &[(u64, Vec<u8>)] {
        &self.packets[..self.ready]
    }

    /// Samples (16 kHz) in one packet.
    pub(super) fn samples(&self) -> u64 {
        self.samples as u64
    }
}

/// An output's sequence numbers and timestamps.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamps {
    seq: u64,
    /// Mixer time and timestamp where the last packet sent ended; `None` before the first.
    next: Option<(u64, u32)>,
}

impl Stamps {
    /// A stream that starts at sequence number 1 and timestamp 0.
    pub(super) fn new() -> Stamps {
        Stamps { seq: 1, next: None }
    }

    /// The sequence number and timestamp (at `clock_rate`) of a packet of `samples` that starts
    /// at mixer time `start`, or `None` for a packet that would overlap the last one sent (only
    /// when the output's ptime changed, and with it the grid).
    pub(super) fn stamp(&mut self, start: u64, samples: u64, clock_rate: u32) -> Option<(SeqNo, u32)> {
        let ticks = |n: u64| (n * u64::from(clock_rate) / RATE) as u32;
        let timestamp = match self.next {
            None => 0,
            Some((at, _)) if start < at => return None,
            Some((at, ts)) => ts.wrapping_add(ticks(start - at)),
        };
        let seq = SeqNo(self.seq);
        self.seq += 1;
        self.next = Some((start + samples, timestamp.wrapping_add(ticks(samples))));
        Some((seq, timestamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_ptimes_become_multiples_of_ten_within_what_every_codec_packs() {
        let cases = [(0, 10), (5, 10), (10, 10), (14, 10), (15, 20), (20, 20), (30, 30), (33, 30), (60, 60)];
        for (asked, sent) in cases.into_iter().chain([(120, 120), (150, 120), (u16::MAX, 120)]) {
            assert_eq!(packet_ms(asked), sent, "a=ptime:{asked}");
        }
    }

    /// The packets `p` cuts from `frames` frames of a ramp fed from mixer frame `from` on.
    fn run(p: &mut Packetizer, from: u64, frames: u64) -> Vec<(u64, usize)> {
        let mut cut = Vec::new();
        for f in from..from + frames {
            p.push(f * FRAME as u64, &[1000; FRAME]).expect("encode");
            cut.extend(p.packets().iter().map(|(at, payload)| (*at, payload.len())));
        }
        cut
    }

    #[test]
    fn packets_are_cut_at_the_ptime_on_the_shared_grid() {
        // G.711: a byte a sample at 8 kHz, so a payload's length is its duration.
        for (ptime, per_packet) in [(10u16, 80usize), (20, 160), (30, 240), (40, 320), (60, 480)] {
            let mut p = Packetizer::new(Codec::Pcmu, ptime).expect("encoder");
            let cut = run(&mut p, 0, 30);
            let n = 30 * 20 / usize::from(ptime);
            assert_eq!(cut.len(), n, "{ptime} ms");
            for (k, (at, len)) in cut.iter().enumerate() {
                assert_eq!((*at, *len), (k as u64 * p.samples(), per_packet), "{ptime} ms, packet {k}");
            }
        }
    }

    #[test]
    fn an_encoder_that_starts_late_or_resumes_fills_up_to_the_grid_with_silence() {
        let mut p = Packetizer::new(Codec::Pcmu, 60).expect("encoder");
        // Started at frame 4 (80 ms), 20 ms past the grid point at 60 ms: its first packet is
        // that grid point's, 20 ms of silence and then 40 ms of the mix.
        let cut = run(&mut p, 4, 5);
        assert_eq!(cut.iter().map(|c| c.0).collect::<Vec<_>>(), [960, 1920]);
        // Fed again at frame 20 (400 ms) after a pause: its packet starts at the grid point at
        // 360 ms with 40 ms of silence, and nothing of before the pause.
        p.push(20 * FRAME as u64, &[1000; FRAME]).expect("encode");
        let packets = p.packets();
        assert_eq!(packets.iter().map(|c| c.0).collect::<Vec<_>>(), [360 * 16]);
        let mut pcm = vec![0i16; packets[0].1.len()];
        crate::g711::ulaw_decode(&packets[0].1, &mut pcm);
        // (Past the first 2 ms, where the G.711 encoder's resampling filter still rings with the
        // samples it saw before the pause.)
        assert!(pcm[16..300].iter().all(|s| s.abs() < 8), "the lead-in is silence: {:?}", &pcm[..300]);
        assert!(pcm[340..].iter().all(|s| (*s - 1000).abs() < 100), "then the mix");
    }

    #[test]
    fn stamps_follow_the_audio_and_never_overlap() {
        let mut s = Stamps::new();
        assert_eq!(s.stamp(9_600, 480, 8_000), Some((SeqNo(1), 0)));
        assert_eq!(s.stamp(10_080, 480, 8_000), Some((SeqNo(2), 240)));
        // A 40 ms gap in the audio (ticks skipped) is a 40 ms step more in the timestamp.
        assert_eq!(s.stamp(11_200, 480, 8_000), Some((SeqNo(3), 240 + 240 + 320)));
        // The ptime went from 30 to 60 ms: a packet of the new grid that starts before the last
        // one ended is not sent.
        assert_eq!(s.stamp(10_560, 960, 8_000), None);
        assert_eq!(s.stamp(11_680, 960, 48_000), Some((SeqNo(4), 800 + 240)));
        assert_eq!(s.stamp(12_640, 960, 48_000), Some((SeqNo(5), 1040 + 2880)));
    }
}
