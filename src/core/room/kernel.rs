//! In-kernel forwarding, the core's side. The core stays sans-IO: it says which directions of a
//! two-party call a kernel rule may carry and with which rewrite (`kernel_paths`), and it takes
//! back what the kernel forwarded (`kernel_sync`). The runtime installs and removes the rules
//! (`runtime::kernel`).
//!
//! A direction qualifies while the room holds exactly two participants, both plain `rtp` legs
//! (no SRTP), with no MCU, and the subscriber's audio slot is routed `forward` from the
//! publisher's one audio track and from nothing else. Both peers must be latched, the slot's
//! forwarder must already have a mapping for the publisher's current stream (one packet went
//! through user space), and the subscriber must be taking media (not on hold, not playing digits
//! of its own). The rule then applies exactly the forwarder's and the leg's rewrite, so a packet
//! gets the same numbers in the kernel and in user space: taking over either way is seamless.

use super::Room;
use crate::core::participant::{Endpoint, Participant, ParticipantState};
use crate::core::routing::Route;
use std::net::SocketAddr;
use switchboard_driver::{KernelCounts, MediaKind, ParticipantId, ParticipantKind, Pt, Ssrc};

/// One direction of a two-party call, as a kernel rule would carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelPath {
    pub from: ParticipantId,
    pub to: ParticipantId,
    /// The packet as it arrives: from the publisher's latched peer to its leg.
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub in_pt: Pt,
    pub in_ssrc: Ssrc,
    /// The newest sequence number user space took from the stream.
    pub last_in_seq: u16,
    /// The packet as it leaves: from the subscriber's leg to its peer.
    pub new_src: SocketAddr,
    pub new_dst: SocketAddr,
    pub out_ssrc: Ssrc,
    pub out_pt: Pt,
    /// Added (wrapping) to the sequence number and the timestamp.
    pub seq_offset: u16,
    pub ts_offset: u32,
}

impl Room {
    /// The directions a kernel rule may carry now, into `out` (cleared first); empty unless the
    /// room is a two-party plain-RTP call that forwards.
    pub fn kernel_paths(&self, out: &mut Vec<KernelPath>) {
        out.clear();
        if self.index.len() != 2 || self.mcu.is_some() {
            return;
        }
        let mut two = self.slab.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|p| (i, p)));
        let (Some(a), Some(b)) = (two.next(), two.next()) else { return };
        out.extend(path(a.1, b));
        out.extend(path(b.1, a));
    }

    /// Takes back what the kernel forwarded on `path` since the last call: the publisher's leg
    /// counts it as received (and is alive), the subscriber's slot and leg continue their
    /// numbering after it, and the room's counters include it.
    pub fn kernel_sync(&mut self, path: &KernelPath, counts: &KernelCounts) {
        if counts.packets == 0 {
            return;
        }
        let (Some(from), Some(to)) = (self.slot_of(path.from), self.slot_of(path.to)) else { return };
        let mut source = None;
        if let Some(Some(a)) = self.slab.get_mut(from) {
            a.driver.kernel_received(counts);
            a.last_received = a.last_received.max(counts.at);
            a.received.add_many(counts.packets, counts.bytes);
            self.stats.received[a.kind].add_many(counts.packets, counts.bytes);
            source = a.tracks.iter().find(|t| t.kind == MediaKind::Audio).map(|t| t.id);
        }
        if let (Some(Some(b)), Some(source)) = (self.slab.get_mut(to), source) {
            for slot in b.slots.iter_mut().filter(|s| s.wired == Some(source)) {
                slot.forwarder.kernel_advance(source, counts.seq, counts.ts, counts.packets, counts.at);
            }
            let seq = counts.seq.wrapping_add(path.seq_offset);
            let ts = counts.ts.wrapping_add(path.ts_offset);
            b.driver.kernel_sent(counts, seq, ts);
            self.stats.sent[b.kind].add_many(counts.packets, counts.bytes);
        }
    }
}

/// The direction from `a` to `b` (by its place in the slab), if a kernel rule may carry it.
fn path(a: &Participant, (b_idx, b): (usize, &Participant)) -> Option<KernelPath> {
    let plain = |p: &Participant| p.kind == ParticipantKind::Rtp && p.state != ParticipantState::Closed;
    if !plain(a) || !plain(b) || !a.media.publish || !b.media.subscribe {
        return None;
    }
    let mut audio = a.tracks.iter().filter(|t| t.kind == MediaKind::Audio);
    let track = audio.next().filter(|t| !t.muted)?;
    if audio.next().is_some() || a.tracks.len() != 1 {
        return None;
    }
    // The track goes to the subscriber's slot and nowhere else (no mixer input).
    let [to] = track.fanout.as_slice() else { return None };
    if to.to != Endpoint::Participant(b_idx) {
        return None;
    }
    let slot = b.slots.iter().find(|s| s.info.key == to.slot)?;
    if slot.route != Some(Route::Forward) || slot.wired != Some(track.id) || !slot.info.active {
        return None;
    }
    let (fwd_seq, ts_offset, fwd_ssrc) = slot.forwarder.kernel_mapping(track.id)?;
    let la = a.driver.kernel_leg()?;
    let lb = b.driver.kernel_leg()?;
    let (in_ssrc, last_in_seq) = la.in_stream?;
    if in_ssrc != fwd_ssrc || la.in_pt != track.spec.pt {
        return None;
    }
    let (peer, new_dst) = (la.latched?, lb.dest?);
    // IPv4 only: the program parses IPv4 headers.
    if ![peer, la.local, lb.local, new_dst].iter().all(SocketAddr::is_ipv4) {
        return None;
    }
    Some(KernelPath {
        from: a.id,
        to: b.id,
        peer,
        local: la.local,
        in_pt: la.in_pt,
        in_ssrc,
        last_in_seq,
        new_src: lb.local,
        new_dst,
        out_ssrc: lb.out_ssrc,
        out_pt: to.pt?,
        seq_offset: fwd_seq.wrapping_add(lb.out_seq_offset?),
        ts_offset,
    })
}
