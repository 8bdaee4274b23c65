//! Receive statistics for the peer's stream: sequence tracking (RFC 3550 A.1), loss (A.3) and
//! interarrival jitter (A.8). They fill the report block of the bridge's SR/RR.

use crate::rtcp::ReportBlock;

const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

/// Statistics for one remote SSRC.
#[derive(Debug, Clone)]
pub struct Reception {
    pub ssrc: u32,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Interarrival jitter in timestamp units, times 16 (A.8's fixed-point form).
    jitter_q4: u64,
    /// Previous relative transit time, in timestamp units.
    transit: Option<i64>,
}

impl Reception {
    /// Starts tracking `ssrc` with its first packet's sequence number. A.1's probation is
    /// skipped: the packet already passed the SDP's PT check (and SRTP authentication).
    pub fn new(ssrc: u32, seq: u16) -> Reception {
        let mut r = Reception {
            ssrc,
            max_seq: seq.wrapping_sub(1),
            cycles: 0,
            base_seq: 0,
            bad_seq: u32::MAX,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter_q4: 0,
            transit: None,
        };
        r.init_seq(seq);
        r.max_seq = seq.wrapping_sub(1);
        r
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = u32::MAX;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// Records a packet's sequence number. Returns false for a packet A.1 would not count (a
    /// large jump not yet confirmed).
    pub fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = seq;
        } else if udelta <= u16::MAX - MAX_MISORDER {
            // A very large jump: accept only when the next packet follows it (a restart).
            if u32::from(seq) == self.bad_seq {
                self.init_seq(seq);
            } else {
                self.bad_seq = u32::from(seq.wrapping_add(1));
                return false;
            }
        }
        // Otherwise: a duplicate or reordered packet, counted as received.
        self.received = self.received.wrapping_add(1);
        true
    }

    /// Updates jitter from a packet's RTP timestamp and its arrival time, both in the payload's
    /// clock units.
    pub fn update_jitter(&mut self, rtp_ts: u32, arrival_ts: u64) {
        // Relative transit: only differences matter, so wrapping in 32 bits is fine.
        let transit = i64::from((arrival_ts as u32).wrapping_sub(rtp_ts) as i32);
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs().min(1 << 31);
            // J += (|D| - J) / 16, with J kept times 16.
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// The newest sequence number taken, as on the wire.
    pub fn max_seq(&self) -> u16 {
        self.max_seq
    }

    /// Takes `packets` that the kernel forwarded past the leg, the newest numbered `seq`: the
    /// highest number moves to it (across as many wraps as the count says) and the packets
    /// count as received, so loss and the reports' highest number stay true.
    pub fn advance(&mut self, seq: u16, packets: u64) {
        let prev = u64::from(self.extended_max());
        let ext = switchboard_driver::extend_near(prev, seq, packets);
        if ext > prev {
            self.cycles = (ext as u32) & 0xffff_0000;
            self.max_seq = ext as u16;
        }
        self.bad_seq = u32::MAX;
        self.received = self.received.wrapping_add(packets as u32);
    }

    pub fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// `seq` extended to 64 bits next to the highest sequence number seen (reordered packets
    /// land just below it, across a wrap too).
    pub fn extend(&self, seq: u16) -> u64 {
        let diff = i64::from(seq.wrapping_sub(self.max_seq) as i16);
        u64::from(self.extended_max()).saturating_add_signed(diff)
    }

    pub fn expected(&self) -> u32 {
        self.extended_max().wrapping_sub(self.base_seq).wrapping_add(1)
    }

    /// Cumulative packets lost (may be negative with duplicates), clamped to 24 bits.
    pub fn cumulative_lost(&self) -> i32 {
        let lost = i64::from(self.expected()) - i64::from(self.received);
        lost.clamp(-0x80_0000, 0x7f_ffff) as i32
    }

    /// Jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        // At most 2^31 after the shift, since each step adds at most 2^31 / 16 net.
        u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX)
    }

    /// Builds the report block and starts a new interval for the fraction lost.
    pub fn report(&mut self, lsr: u32, dlsr: u32) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost(),
            extended_highest_seq: self.extended_max(),
            jitter: self.jitter(),
            lsr,
            dlsr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_across_a_wrap() {
        let mut r = Reception::new(1, 65530);
        for seq in (65530u16..=65535).chain(0..10).filter(|s| *s != 2 && *s != 3) {
            r.update_seq(seq);
        }
        assert_eq!(r.extended_max(), 65536 + 9);
        let block = r.report(0, 0);
        assert_eq!(block.cumulative_lost, 2);
        assert_eq!(block.fraction_lost, (2 * 256 / 16) as u8);
        // No new packets: nothing lost in the next interval.
        assert_eq!(r.report(0, 0).fraction_lost, 0);
    }

    #[test]
    fn steady_stream_has_no_jitter_and_late_packets_add_some() {
        let mut r = Reception::new(1, 0);
        for i in 0..50u32 {
            r.update_jitter(i * 160, u64::from(1000 + i * 160));
        }
        assert_eq!(r.jitter(), 0);
        for i in 50..100u32 {
            let late = if i % 2 == 0 { 80 } else { 0 };
            r.update_jitter(i * 160, u64::from(1000 + i * 160 + late));
        }
        assert!((60..=80).contains(&r.jitter()), "{}", r.jitter());
    }

    #[test]
    fn kernel_forwarded_packets_move_the_highest_number_and_count_as_received() {
        let mut r = Reception::new(1, 65_000);
        for s in 65_000..65_010 {
            r.update_seq(s);
        }
        // 1,000 packets went through the kernel, the newest wrapped past 65,535.
        let newest = 65_009u16.wrapping_add(1_000);
        r.advance(newest, 1_000);
        assert_eq!(r.extended_max(), 65_009 + 1_000);
        assert_eq!(r.cumulative_lost(), 0);
        // The next packet in user space follows without a probation drop.
        assert!(r.update_seq(newest.wrapping_add(1)));
        assert_eq!(r.extend(newest.wrapping_add(1)), 65_009 + 1_001);
    }

    #[test]
    fn large_jump_needs_confirmation() {
        let mut r = Reception::new(1, 100);
        for s in 100..110 {
            assert!(r.update_seq(s));
        }
        assert!(!r.update_seq(40000));
        assert!(r.update_seq(40001));
        assert_eq!(r.extended_max(), 40001);
    }
}
