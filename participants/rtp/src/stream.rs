//! Which of the peer's RTP streams the leg takes, and its receive statistics.
//!
//! A gateway may restart its stream mid-call with a new SSRC, sequence number and timestamp:
//! early media from one media server then the answer's from another, or a re-INVITE. The newest
//! SSRC is taken at once (the room's forwarder makes the restart invisible to subscribers); the
//! SSRC it replaced is refused while its successor is live, so a late packet of the old stream
//! cannot flip the call back and forth between the two. Once the new stream has been quiet for
//! `RETIRED_QUIET`, the old one may come back (a gateway that returned to its first server).
//!
//! The same SSRC jumping in sequence number by more than loss or reordering explains is taken
//! only when the next packet follows it (RFC 3550 A.1's probation for a restart): one stray
//! packet of an old or forged number must not move the stream. Its first packet is dropped.

use crate::reception::Reception;
use std::time::{Duration, Instant};

/// How long the current stream must have been quiet before the stream it replaced is taken back.
/// Reordering delays a packet by milliseconds; a returning stream loses at most this much.
pub(crate) const RETIRED_QUIET: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
pub(crate) struct PeerStream {
    current: Option<Reception>,
    /// The SSRC the current one replaced.
    retired: Option<u32>,
    /// When the current SSRC last sent a packet that was taken.
    heard: Option<Instant>,
}

impl PeerStream {
    /// Takes a packet of `ssrc` with sequence number `seq`: its sequence number extended to 64
    /// bits in the stream's own numbering, or `None` when it is refused (see the module docs).
    pub(crate) fn take(&mut self, now: Instant, ssrc: u32, seq: u16) -> Option<u64> {
        let reception = match &mut self.current {
            Some(r) if r.ssrc == ssrc => {
                if !r.update_seq(seq) {
                    return None;
                }
                r
            }
            slot => {
                let quiet = self.heard.is_none_or(|h| now.saturating_duration_since(h) >= RETIRED_QUIET);
                if self.retired == Some(ssrc) && !quiet {
                    return None;
                }
                self.retired = slot.as_ref().map(|r| r.ssrc);
                let r = slot.insert(Reception::new(ssrc, seq));
                r.update_seq(seq);
                r
            }
        };
        self.heard = Some(now);
        Some(reception.extend(seq))
    }

    /// The kernel forwarded `packets` of stream `ssrc`, the newest numbered `seq`, at `at`.
    pub(crate) fn kernel_advance(&mut self, at: Instant, ssrc: u32, seq: u16, packets: u64) {
        if let Some(r) = self.current.as_mut().filter(|r| r.ssrc == ssrc) {
            r.advance(seq, packets);
            self.heard = Some(at);
        }
    }

    /// The current stream's statistics, if the peer has sent one.
    pub(crate) fn reception(&self) -> Option<&Reception> {
        self.current.as_ref()
    }

    pub(crate) fn reception_mut(&mut self) -> Option<&mut Reception> {
        self.current.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_new_ssrc_is_taken_at_once_and_the_old_one_refused_while_the_new_one_talks() {
        let t0 = Instant::now();
        let mut s = PeerStream::default();
        for i in 0..10u16 {
            assert_eq!(s.take(t0 + ms(20 * u64::from(i)), 1, 60_000 + i), Some(60_000 + u64::from(i)));
        }
        // The restart: a new SSRC with lower numbers, taken in its own numbering.
        assert_eq!(s.take(t0 + ms(200), 2, 7), Some(7));
        assert_eq!(s.reception().map(|r| r.ssrc), Some(2));
        // A straggler of the old stream, and one after the new stream's last packet.
        assert_eq!(s.take(t0 + ms(205), 1, 60_010), None);
        assert_eq!(s.take(t0 + ms(220), 2, 8), Some(8));
        assert_eq!(s.take(t0 + ms(220) + RETIRED_QUIET - ms(1), 1, 60_011), None);
        assert_eq!(s.reception().map(|r| r.ssrc), Some(2), "the straggler moved nothing");
        // The new stream went quiet: the old one may come back.
        assert_eq!(s.take(t0 + ms(220) + RETIRED_QUIET, 1, 60_012), Some(60_012));
        assert_eq!(s.reception().map(|r| r.ssrc), Some(1));
    }

    #[test]
    fn a_third_ssrc_is_never_refused() {
        let t0 = Instant::now();
        let mut s = PeerStream::default();
        s.take(t0, 1, 100);
        s.take(t0 + ms(20), 2, 200);
        assert_eq!(s.take(t0 + ms(40), 3, 300), Some(300));
        // Now 2 is the retired one, and 1 is just another new stream.
        assert_eq!(s.take(t0 + ms(41), 2, 201), None);
        assert_eq!(s.take(t0 + ms(42), 1, 101), Some(101));
    }

    #[test]
    fn a_jump_on_the_same_ssrc_needs_the_next_packet_to_follow() {
        let t0 = Instant::now();
        let mut s = PeerStream::default();
        for i in 0..10u16 {
            s.take(t0, 5, 1_000 + i);
        }
        assert_eq!(s.take(t0, 5, 40_000), None, "one stray packet far ahead");
        assert_eq!(s.take(t0, 5, 1_010), Some(1_010), "the stream carries on");
        assert_eq!(s.take(t0, 5, 30_000), None);
        assert_eq!(s.take(t0, 5, 30_001), Some(30_001), "confirmed: the stream restarted there");
        assert_eq!(s.take(t0, 5, 30_002), Some(30_002));
        // Reordering and loss within the limits pass.
        assert_eq!(s.take(t0, 5, 30_000 - 50), Some(30_000 - 50));
        assert_eq!(s.take(t0, 5, 30_002 + 2_000), Some(32_002));
    }
}
