//! What a plain-RTP leg tells the room so that the runtime can forward a two-party call's media
//! in the kernel, and how the kernel's work is handed back to the leg.
//!
//! While a kernel rule carries a stream, its packets never reach the drivers: the receiving leg's
//! statistics, the sending leg's counters and sequence space would stand still. The runtime reads
//! the kernel's counters and hands them here (`Driver::kernel_received` / `kernel_sent`) before
//! any user-space call into the room, so user space always continues where the kernel left off.

use crate::{Pt, Ssrc};
use std::net::SocketAddr;
use std::time::Instant;

/// A plain-RTP leg's side of a kernel rule, as of now. `None` fields mean "not yet known", and
/// the room then keeps the pair in user space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelLeg {
    /// The leg's own RTP socket address.
    pub local: SocketAddr,
    /// Where the peer's RTP comes from: the latched source, once latched.
    pub latched: Option<SocketAddr>,
    /// Where the leg sends RTP (the latched source, else the SDP's), if the peer receives.
    pub dest: Option<SocketAddr>,
    /// The payload type the peer sends its audio with.
    pub in_pt: Pt,
    /// The peer's current stream (SSRC) and the newest sequence number taken from it.
    pub in_stream: Option<(Ssrc, u16)>,
    /// The leg's own SSRC.
    pub out_ssrc: Ssrc,
    /// Added to the room's sequence numbers on the wire; `None` while it is to be recomputed
    /// (after the leg sent digits of its own) or while the leg plays digits.
    pub out_seq_offset: Option<u16>,
}

/// What the kernel did for one direction since the last hand-over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelCounts {
    /// Packets and UDP payload bytes forwarded since the last hand-over.
    pub packets: u64,
    pub bytes: u64,
    /// The newest packet as it arrived: its SSRC, sequence number and timestamp, and when.
    pub ssrc: Ssrc,
    pub seq: u16,
    pub ts: u32,
    pub at: Instant,
}

/// The extended (64-bit) sequence number whose low 16 bits are `wire`, nearest to
/// `prev + ahead`: the kernel forwarded `ahead` packets since `prev`, so the stream moved about
/// that far, however many times its 16-bit number wrapped meanwhile.
pub fn extend_near(prev: u64, wire: u16, ahead: u64) -> u64 {
    let target = prev.wrapping_add(ahead);
    let delta = wire.wrapping_sub(target as u16) as i16;
    target.wrapping_add(delta as i64 as u64)
}

#[cfg(test)]
mod tests {
    use super::extend_near;

    #[test]
    fn extend_near_follows_the_count_across_wraps() {
        assert_eq!(extend_near(100, 150, 50), 150);
        // Lost packets: the count is a little short of the move.
        assert_eq!(extend_near(100, 160, 50), 160);
        // Wrapped once: 65,530 -> 10 after 16 packets.
        assert_eq!(extend_near(65_530, 10, 16), 65_546);
        // Twenty minutes of 20 ms packets: past one full cycle of 65,536.
        let prev = 3 * 65_536 + 1_000;
        let ahead = 70_000u64;
        let wire = ((prev + ahead) & 0xffff) as u16;
        assert_eq!(extend_near(prev, wire, ahead), prev + ahead);
        // A reordered newest (behind the count) stays behind.
        assert_eq!(extend_near(1_000, 1_045, 50), 1_045);
    }
}
