//! The packet path: what happens to one driver's output. Everything here runs per packet, so it
//! allocates nothing, locks nothing and logs nothing; it bumps plain counters instead.

use super::participant::{Participant, PublishedTrack};
use super::stats::RoomStats;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;
use switchboard_driver::{DisconnectReason, DriverEvent, DropReason, Output, ParticipantKind, RtpMeta, TrackKey};

/// Where datagrams leave the core. The runtime sends them on sockets; tests hand them to a
/// simulated network.
pub trait Network {
    fn send(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]);
}

/// The output of the participant at `me`, which the room has taken out of its slab for the call,
/// so every other participant can be borrowed beside it.
pub(super) struct Fanout<'a> {
    pub now: Instant,
    pub me: usize,
    pub kind: ParticipantKind,
    pub tracks: &'a [PublishedTrack],
    pub others: &'a mut [Option<Participant>],
    pub net: &'a mut dyn Network,
    pub stats: &'a mut RoomStats,
    pub deferred: &'a mut VecDeque<(usize, DriverEvent)>,
    pub earliest: &'a mut Instant,
}

impl Output for Fanout<'_> {
    fn transmit(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        self.stats.sent[self.kind].add(data.len());
        self.net.send(from, to, data);
    }

    fn media(&mut self, key: TrackKey, meta: &RtpMeta, payload: &[u8]) {
        // Sorted by key (`Room::sync_negotiated`).
        let Ok(at) = self.tracks.binary_search_by_key(&key, |t| t.key) else {
            self.stats.drop(DropReason::NoRoute);
            return;
        };
        let track = &self.tracks[at];
        for r in &track.fanout {
            let Some(sub) = self.others.get_mut(r.participant).and_then(Option::as_mut) else {
                continue;
            };
            let Participant { driver, slots, kind, next_timeout, .. } = sub;
            // The slot is where it was when the fan-out was built, unless the slots changed since.
            let (at, pt) = match slots.get(r.index) {
                Some(s) if s.info.key == r.slot => (Some(r.index), r.pt),
                _ => {
                    let at = slots.iter().position(|s| s.info.key == r.slot);
                    (at, at.and_then(|i| slots[i].info.pt_for(track.codec)))
                }
            };
            let Some(slot) = at.and_then(|i| slots.get_mut(i)) else {
                continue;
            };
            if !slot.info.active {
                continue;
            }
            let Some(pt) = pt else {
                self.stats.drop(DropReason::UnknownPayloadType);
                continue;
            };
            let Some(out) = slot.forwarder.rewrite(self.now, track.id, meta, pt) else {
                continue;
            };
            let mut flush = Flush {
                who: r.participant,
                kind: *kind,
                net: &mut *self.net,
                stats: &mut *self.stats,
                deferred: &mut *self.deferred,
            };
            // A subscriber's driver that panics must not take the publisher down with it: it is
            // reported as gone, and the room removes it.
            let now = self.now;
            let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let written = driver.write_media(now, r.slot, &out, payload).is_ok();
                (written, driver.poll(now, &mut flush))
            }));
            match sent {
                Ok((written, next)) => {
                    if !written {
                        self.stats.drop(DropReason::Send);
                    }
                    *next_timeout = next;
                    *self.earliest = (*self.earliest).min(next);
                }
                Err(_) => self
                    .deferred
                    .push_back((r.participant, DriverEvent::Disconnected { reason: DisconnectReason::Closed })),
            }
        }
    }

    fn event(&mut self, event: DriverEvent) {
        self.deferred.push_back((self.me, event));
    }
}

/// Drains a subscriber right after a write. It cannot fan out (its slab entry is borrowed), and
/// need not: a subscriber's own received media is always drained by the call that received it.
struct Flush<'a> {
    who: usize,
    kind: ParticipantKind,
    net: &'a mut dyn Network,
    stats: &'a mut RoomStats,
    deferred: &'a mut VecDeque<(usize, DriverEvent)>,
}

impl Output for Flush<'_> {
    fn transmit(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        self.stats.sent[self.kind].add(data.len());
        self.net.send(from, to, data);
    }

    fn media(&mut self, _key: TrackKey, _meta: &RtpMeta, _payload: &[u8]) {
        self.stats.drop(DropReason::NoRoute);
    }

    fn event(&mut self, event: DriverEvent) {
        self.deferred.push_back((self.who, event));
    }
}
