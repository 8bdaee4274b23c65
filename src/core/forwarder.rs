//! Keeps one subscriber slot a single continuous RTP stream while its source changes.
//!
//! The slot's SSRC is fixed by the driver; the Forwarder owns sequence number and timestamp. The
//! first source passes through unchanged. When the source changes, the next packet continues at
//! `last sequence + 1` and at `last timestamp + wall-clock gap`, so a receiver sees one stream with
//! a pause, never a jump back or a new SSRC. This is the decision LiveKit makes in
//! `GetTranslationParams`, kept as a pure function of its inputs and `now`.

use std::time::Instant;
use switchboard_driver::{Pt, RtpMeta, SeqNo, TrackId};

#[derive(Debug, Clone)]
pub struct Forwarder {
    clock_rate: u32,
    state: Option<Active>,
    /// Set while the slot is on hold: the next packet continues the stream like a new source,
    /// so the subscriber sees no gap for what it did not want.
    paused: bool,
}

#[derive(Debug, Clone, Copy)]
struct Active {
    source: TrackId,
    /// Added (wrapping) to the source's extended sequence number.
    seq_offset: u64,
    /// Added (wrapping) to the source's timestamp.
    ts_offset: u32,
    /// The first source sequence number after the switch: anything older belongs to the previous
    /// mapping and would land behind what was already sent.
    first_seq: u64,
    last_out_seq: u64,
    last_out_ts: u32,
    last_out_at: Instant,
}

impl Forwarder {
    pub fn new(clock_rate: u32) -> Forwarder {
        Forwarder { clock_rate: clock_rate.max(1), state: None, paused: false }
    }

    /// Changes the clock rate used to bridge a gap, when the slot's codec changes.
    pub fn set_clock_rate(&mut self, clock_rate: u32) {
        self.clock_rate = clock_rate.max(1);
    }

    /// The header to send on the slot for `meta` from `source`, or `None` to drop it.
    pub fn rewrite(&mut self, now: Instant, source: TrackId, meta: &RtpMeta, pt: Pt) -> Option<RtpMeta> {
        let in_seq = meta.seq.0;
        let st = match &mut self.state {
            Some(st) if st.source == source && !self.paused => {
                if in_seq < st.first_seq {
                    return None;
                }
                st
            }
            Some(prev) => {
                self.paused = false;
                let next_seq = prev.last_out_seq.wrapping_add(1);
                let gap = now.saturating_duration_since(prev.last_out_at);
                let gap_ticks = (gap.as_micros() as u64 * self.clock_rate as u64 / 1_000_000).max(1);
                let next_ts = prev.last_out_ts.wrapping_add(gap_ticks as u32);
                *prev = Active {
                    source,
                    seq_offset: next_seq.wrapping_sub(in_seq),
                    ts_offset: next_ts.wrapping_sub(meta.timestamp),
                    first_seq: in_seq,
                    last_out_seq: prev.last_out_seq,
                    last_out_ts: prev.last_out_ts,
                    last_out_at: prev.last_out_at,
                };
                prev
            }
            // The first source starts the slot's stream at its 16-bit wire value: the extended
            // number becomes the receiver's SRTP index, which must start with a rollover of 0.
            None => self.state.insert(Active {
                source,
                seq_offset: (in_seq & 0xffff).wrapping_sub(in_seq),
                ts_offset: 0,
                first_seq: in_seq,
                last_out_seq: in_seq & 0xffff,
                last_out_ts: meta.timestamp,
                last_out_at: now,
            }),
        };
        let out_seq = in_seq.wrapping_add(st.seq_offset);
        let out_ts = meta.timestamp.wrapping_add(st.ts_offset);
        // Reordered packets keep their place; only the newest moves the continuation point.
        if out_seq >= st.last_out_seq {
            st.last_out_seq = out_seq;
            st.last_out_ts = out_ts;
            st.last_out_at = now;
        }
        Some(RtpMeta { pt, seq: SeqNo(out_seq), timestamp: out_ts, ..*meta })
    }

    /// The slot went on hold; see `paused`.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    pub fn source(&self) -> Option<TrackId> {
        self.state.map(|s| s.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use switchboard_driver::Ssrc;

    fn pkt(seq: u64, ts: u32) -> RtpMeta {
        RtpMeta { pt: Pt(111), seq: SeqNo(seq), timestamp: ts, marker: false, ssrc: Ssrc(7), audio_level: None }
    }

    #[test]
    fn first_source_passes_through_with_the_slot_pt() {
        let mut f = Forwarder::new(48_000);
        let now = Instant::now();
        let out = f.rewrite(now, TrackId(1), &pkt(100, 5000), Pt(96)).unwrap();
        assert_eq!((out.seq, out.timestamp, out.pt), (SeqNo(100), 5000, Pt(96)));
    }

    #[test]
    fn source_switch_continues_sequence_and_bridges_timestamp_by_wall_clock() {
        let mut f = Forwarder::new(8_000);
        let t0 = Instant::now();
        for i in 0..10u64 {
            f.rewrite(t0 + Duration::from_millis(20 * i), TrackId(1), &pkt(100 + i, 160 * i as u32), Pt(0));
        }
        // Last out: seq 109, ts 1440 at t0+180ms. New source 500 ms later with unrelated numbers.
        let t1 = t0 + Duration::from_millis(680);
        let out = f.rewrite(t1, TrackId(2), &pkt(40_000, 999_999), Pt(0)).unwrap();
        assert_eq!(out.seq, SeqNo(110));
        assert_eq!(out.timestamp, 1440 + 4000);
        let next = f.rewrite(t1 + Duration::from_millis(20), TrackId(2), &pkt(40_001, 999_999 + 160), Pt(0)).unwrap();
        assert_eq!((next.seq, next.timestamp), (SeqNo(111), 1440 + 4160));
    }

    #[test]
    fn a_source_past_its_first_rollover_starts_the_slot_at_rollover_zero() {
        let mut f = Forwarder::new(8_000);
        let t0 = Instant::now();
        let out = f.rewrite(t0, TrackId(1), &pkt(3 * 65_536 + 17, 0), Pt(0)).unwrap();
        assert_eq!(out.seq, SeqNo(17));
        let next = f.rewrite(t0, TrackId(1), &pkt(3 * 65_536 + 18, 160), Pt(0)).unwrap();
        assert_eq!(next.seq, SeqNo(18));
    }

    #[test]
    fn resuming_after_hold_continues_without_a_gap() {
        let mut f = Forwarder::new(8_000);
        let t0 = Instant::now();
        f.rewrite(t0, TrackId(1), &pkt(100, 0), Pt(0));
        f.pause();
        // 150 packets went by while the slot was on hold.
        let out = f.rewrite(t0 + Duration::from_secs(3), TrackId(1), &pkt(251, 150 * 160), Pt(0)).unwrap();
        assert_eq!(out.seq, SeqNo(101));
        let next = f.rewrite(t0 + Duration::from_secs(3), TrackId(1), &pkt(252, 151 * 160), Pt(0)).unwrap();
        assert_eq!(next.seq, SeqNo(102));
    }

    #[test]
    fn packets_older_than_the_switch_are_dropped() {
        let mut f = Forwarder::new(8_000);
        let t0 = Instant::now();
        f.rewrite(t0, TrackId(1), &pkt(10, 0), Pt(0));
        f.rewrite(t0, TrackId(2), &pkt(500, 0), Pt(0));
        assert!(f.rewrite(t0, TrackId(2), &pkt(499, 0), Pt(0)).is_none());
    }

    #[test]
    fn reordered_packet_keeps_its_place() {
        let mut f = Forwarder::new(8_000);
        let t0 = Instant::now();
        f.rewrite(t0, TrackId(1), &pkt(10, 0), Pt(0));
        f.rewrite(t0, TrackId(1), &pkt(12, 320), Pt(0));
        let late = f.rewrite(t0, TrackId(1), &pkt(11, 160), Pt(0)).unwrap();
        assert_eq!(late.seq, SeqNo(11));
        // The continuation point is still 12, so a switch continues at 13.
        let sw = f.rewrite(t0, TrackId(3), &pkt(1, 0), Pt(0)).unwrap();
        assert_eq!(sw.seq, SeqNo(13));
    }

    #[test]
    fn switching_back_to_an_earlier_source_stays_continuous() {
        let mut f = Forwarder::new(8_000);
        let t0 = Instant::now();
        f.rewrite(t0, TrackId(1), &pkt(100, 0), Pt(0));
        f.rewrite(t0, TrackId(2), &pkt(7, 0), Pt(0));
        let back = f.rewrite(t0, TrackId(1), &pkt(101, 160), Pt(0)).unwrap();
        assert_eq!(back.seq, SeqNo(102));
    }
}
