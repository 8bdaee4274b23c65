//! Keeps one subscriber slot a single continuous RTP stream while its source changes.
//!
//! The slot's SSRC is fixed by the driver; the Forwarder owns sequence number and timestamp. The
//! first source passes through unchanged. When the source changes, the next packet continues at
//! `last sequence + 1` and at `last timestamp + wall-clock gap`, so a receiver sees one stream with
//! a pause, never a jump back or a new SSRC. This is the decision LiveKit makes in
//! `GetTranslationParams`, kept as a pure function of its inputs and `now`.
//!
//! A source that restarts its own stream is a change of source too. Gateways do it mid-call
//! (early media then the answer, a re-INVITE to another media server): a new SSRC, or the same
//! one with its sequence number moved by more than RFC 3550 A.1 allows for loss or reordering.
//! Passing the new numbers on would have the receiver see a jump of thousands in sequence and of
//! about a billion in timestamp (a jitter buffer may hold or drop either), and a restart to lower
//! numbers would be dropped as older than the mapping. The check costs two comparisons a packet.

use std::time::Instant;
use switchboard_driver::{Pt, RtpMeta, SeqNo, Ssrc, TrackId};

/// A source's sequence number this far past the slot's newest is a restart, not a loss
/// (RFC 3550 A.1's `MAX_DROPOUT`: a minute of 20 ms audio).
const MAX_DROPOUT: i64 = 3000;
/// This far behind the slot's newest is a restart, not a reordered packet (A.1's `MAX_MISORDER`).
const MAX_MISORDER: i64 = 100;

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
    /// The source's SSRC: a new one on the same track is a restart of its stream.
    ssrc: Ssrc,
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
    /// Timestamp step between the last two consecutive packets (one packet's duration; 0 until
    /// seen): a gap is bridged in whole packets, so a restart a packet later advances by one.
    ts_step: u32,
}

impl Active {
    /// Whether `meta` starts a new stream on the same source (see the module docs).
    fn restarted_by(&self, meta: &RtpMeta) -> bool {
        if meta.ssrc != self.ssrc {
            return true;
        }
        let ahead = meta.seq.0.wrapping_add(self.seq_offset).wrapping_sub(self.last_out_seq) as i64;
        !(-MAX_MISORDER..=MAX_DROPOUT).contains(&ahead)
    }
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
            Some(st) if st.source == source && !self.paused && !st.restarted_by(meta) => {
                if in_seq < st.first_seq {
                    return None;
                }
                st
            }
            Some(prev) => {
                self.paused = false;
                let next_seq = prev.last_out_seq.wrapping_add(1);
                let gap = now.saturating_duration_since(prev.last_out_at);
                let mut gap_ticks = (gap.as_micros() as u64 * self.clock_rate as u64 / 1_000_000).max(1);
                if prev.ts_step > 0 {
                    // Whole packets, at least one: the first packet after a restart usually
                    // comes one packet after the last, give or take its jitter.
                    let step = u64::from(prev.ts_step);
                    gap_ticks = ((gap_ticks + step / 2) / step).max(1) * step;
                }
                let next_ts = prev.last_out_ts.wrapping_add(gap_ticks as u32);
                *prev = Active {
                    source,
                    ssrc: meta.ssrc,
                    seq_offset: next_seq.wrapping_sub(in_seq),
                    ts_offset: next_ts.wrapping_sub(meta.timestamp),
                    first_seq: in_seq,
                    last_out_seq: prev.last_out_seq,
                    last_out_ts: prev.last_out_ts,
                    last_out_at: prev.last_out_at,
                    ts_step: prev.ts_step,
                };
                prev
            }
            // The first source starts the slot's stream at its 16-bit wire value: the extended
            // number becomes the receiver's SRTP index, which must start with a rollover of 0.
            None => self.state.insert(Active {
                source,
                ssrc: meta.ssrc,
                seq_offset: (in_seq & 0xffff).wrapping_sub(in_seq),
                ts_offset: 0,
                first_seq: in_seq,
                last_out_seq: in_seq & 0xffff,
                last_out_ts: meta.timestamp,
                last_out_at: now,
                ts_step: 0,
            }),
        };
        let out_seq = in_seq.wrapping_add(st.seq_offset);
        let out_ts = meta.timestamp.wrapping_add(st.ts_offset);
        // Reordered packets keep their place; only the newest moves the continuation point.
        if out_seq >= st.last_out_seq {
            let step = out_ts.wrapping_sub(st.last_out_ts);
            // Only a step between neighbours that moves forward by under a second is a packet's
            // duration (video packets of one frame share a timestamp).
            if out_seq == st.last_out_seq.wrapping_add(1) && step > 0 && step < self.clock_rate {
                st.ts_step = step;
            }
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

    /// The rewrite the slot applies to `source` now, for a kernel rule to apply the same: the
    /// sequence offset (16 bits, as on the wire), the timestamp offset, and the source's SSRC.
    /// `None` until a packet of `source` went through, or while the slot is on hold.
    pub fn kernel_mapping(&self, source: TrackId) -> Option<(u16, u32, Ssrc)> {
        let st = self.state.as_ref().filter(|s| s.source == source && !self.paused)?;
        Some((st.seq_offset as u16, st.ts_offset, st.ssrc))
    }

    /// The kernel forwarded `packets` of `source` with the mapping above, the newest arriving
    /// as `seq` / `ts` at `at`: the continuation point moves past them, so the next packet in
    /// user space (or the next source) follows the last one the kernel sent, with no gap and no
    /// restart.
    pub fn kernel_advance(&mut self, source: TrackId, seq: u16, ts: u32, packets: u64, at: Instant) {
        let Some(st) = self.state.as_mut().filter(|s| s.source == source) else { return };
        if packets == 0 {
            return;
        }
        let out_wire = seq.wrapping_add(st.seq_offset as u16);
        let out = switchboard_driver::extend_near(st.last_out_seq, out_wire, packets);
        if out > st.last_out_seq {
            st.last_out_seq = out;
            st.last_out_ts = ts.wrapping_add(st.ts_offset);
            st.last_out_at = at;
        }
    }

    pub fn source(&self) -> Option<TrackId> {
        self.state.map(|s| s.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pkt(seq: u64, ts: u32) -> RtpMeta {
        from(7, seq, ts)
    }

    fn from(ssrc: u32, seq: u64, ts: u32) -> RtpMeta {
        RtpMeta { pt: Pt(0), seq: SeqNo(seq), timestamp: ts, marker: false, ssrc: Ssrc(ssrc), audio_level: None }
    }

    /// Sends 50 packets of 20 ms (8 kHz) from `ssrc` from `seq`/`ts` on track 1, from `t0`;
    /// returns the last one sent and when.
    fn talk(f: &mut Forwarder, t0: Instant, ssrc: u32, seq: u64, ts: u32) -> (RtpMeta, Instant) {
        let mut last = None;
        for i in 0..50u32 {
            let at = t0 + Duration::from_millis(20 * u64::from(i));
            let out = f.rewrite(at, TrackId(1), &from(ssrc, seq + u64::from(i), ts.wrapping_add(160 * i)), Pt(0));
            last = Some((out.expect("forwarded"), at));
        }
        last.expect("50 packets")
    }

    /// The kernel carried 5,000 packets (100 s, past the restart limit) with the slot's
    /// mapping; user space then continues them, and a new source after them, without a gap.
    #[test]
    fn kernel_forwarded_packets_continue_in_user_space_without_gap_or_restart() {
        let mut f = Forwarder::new(8_000);
        let t0 = Instant::now();
        let (last, at) = talk(&mut f, t0, 1, 60_000, 1_000);
        let (seq_off, ts_off, ssrc) = f.kernel_mapping(TrackId(1)).expect("mapped");
        assert_eq!(ssrc, Ssrc(1));
        // The kernel's view: 16-bit numbers in and out.
        let newest_in = (60_049u64 + 5_000) as u16;
        let newest_ts = 1_000u32 + 160 * (49 + 5_000);
        let end = at + Duration::from_secs(100);
        f.kernel_advance(TrackId(1), newest_in, newest_ts, 5_000, end);
        let kernel_out = newest_in.wrapping_add(seq_off);
        assert_eq!(kernel_out, (last.seq.0 as u16).wrapping_add(5_000), "the kernel's numbering continues the slot's");
        // Back in user space: the next packet of the same source, extended as the leg extends it.
        let next =
            f.rewrite(end + Duration::from_millis(20), TrackId(1), &from(1, 60_049 + 5_001, newest_ts + 160), Pt(0));
        let next = next.expect("forwarded");
        assert_eq!(next.seq.0 as u16, kernel_out.wrapping_add(1));
        assert_eq!(next.timestamp, newest_ts.wrapping_add(160).wrapping_add(ts_off));
        // And the mixer's output (another source) continues after it.
        let mixed = f.rewrite(end + Duration::from_millis(40), TrackId(9), &from(77, 3, 5), Pt(0)).unwrap();
        assert_eq!(mixed.seq.0, next.seq.0 + 1);
        assert_eq!(mixed.timestamp, next.timestamp + 160);
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

    /// A restart as gateways do it: new SSRC, sequence and timestamp, one packet (20 ms, with a
    /// little jitter) after the last of the old stream.
    #[test]
    fn a_restarted_source_continues_the_slot_by_one_packet() {
        for (seq, ts) in [(100u64, 7u32), (60_000, 3_000_000_000), (40_010, 1_000_160)] {
            let mut f = Forwarder::new(8_000);
            let t0 = Instant::now();
            let (last, at) = talk(&mut f, t0, 1, 40_000, 1_000_000);
            let restart = at + Duration::from_millis(23);
            let first = f.rewrite(restart, TrackId(1), &from(2, seq, ts), Pt(0)).expect("taken");
            assert_eq!(first.seq.0, last.seq.0 + 1, "restart to {seq}: no sequence gap");
            assert_eq!(first.timestamp, last.timestamp.wrapping_add(160), "restart to {ts}: one packet later");
            let (next, _) = talk(&mut f, restart + Duration::from_millis(20), 2, seq + 1, ts.wrapping_add(160));
            assert_eq!(next.seq.0, first.seq.0 + 50);
            assert_eq!(next.timestamp, first.timestamp.wrapping_add(50 * 160));
        }
    }

    #[test]
    fn a_restart_after_a_pause_bridges_the_pause_in_whole_packets() {
        let mut f = Forwarder::new(8_000);
        let t0 = Instant::now();
        let (last, at) = talk(&mut f, t0, 1, 10, 0);
        // Early media stops; the answer's media starts 1.013 s later.
        let first = f.rewrite(at + Duration::from_millis(1_013), TrackId(1), &from(9, 5, 77), Pt(0)).unwrap();
        assert_eq!(first.seq.0, last.seq.0 + 1);
        // 8,104 ticks of wall clock, rounded to 51 packets of 160.
        assert_eq!(first.timestamp.wrapping_sub(last.timestamp), 51 * 160);
    }

    #[test]
    fn the_same_ssrc_jumping_far_is_a_restart_and_reordering_is_not() {
        for jump in [3_001i64, -101, 30_000, -20_000] {
            let mut f = Forwarder::new(8_000);
            let t0 = Instant::now();
            let (last, at) = talk(&mut f, t0, 1, 50_000, 0);
            let seq = (50_049 + jump) as u64;
            let out = f.rewrite(at + Duration::from_millis(20), TrackId(1), &from(1, seq, 999), Pt(0)).unwrap();
            assert_eq!(out.seq.0, last.seq.0 + 1, "a jump of {jump}");
            assert_eq!(out.timestamp, last.timestamp + 160, "a jump of {jump}");
        }
        // Within the limits: a reordered packet keeps its place (or, older than the stream's
        // first, is dropped), and a loss passes as it is.
        let mut f = Forwarder::new(8_000);
        let t0 = Instant::now();
        let (last, at) = talk(&mut f, t0, 1, 50_000, 0);
        let old = f.rewrite(at, TrackId(1), &from(1, 50_048, 5), Pt(0)).unwrap();
        assert_eq!(old.seq.0, last.seq.0 - 1);
        assert!(f.rewrite(at, TrackId(1), &from(1, 50_049 - 100, 5), Pt(0)).is_none(), "not a restart");
        let ahead = f.rewrite(at, TrackId(1), &from(1, 50_049 + 3_000, 5), Pt(0)).unwrap();
        assert_eq!(ahead.seq.0, last.seq.0 + 3_000);
    }

    #[test]
    fn stragglers_of_a_restarted_stream_older_than_its_first_packet_are_dropped() {
        let mut f = Forwarder::new(8_000);
        let t0 = Instant::now();
        let (_, at) = talk(&mut f, t0, 1, 1_000, 0);
        f.rewrite(at + Duration::from_millis(20), TrackId(1), &from(2, 500, 0), Pt(0)).unwrap();
        assert!(f.rewrite(at + Duration::from_millis(21), TrackId(1), &from(2, 499, 0), Pt(0)).is_none());
        assert!(f.rewrite(at + Duration::from_millis(40), TrackId(1), &from(2, 501, 160), Pt(0)).is_some());
    }
}
