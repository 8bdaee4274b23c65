//! The packet path: what happens to one driver's (or the MCU's) output. Everything here runs per
//! packet, so it allocates nothing, locks nothing and logs nothing; it bumps plain counters instead.

use super::mcu::RoomMcu;
use super::participant::{resolve_slot, Endpoint, Participant, PublishedTrack};
use super::stats::RoomStats;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;
use switchboard_driver::{
    DisconnectReason, Driver, DriverEvent, DropReason, Mcu, Output, ParticipantKind, RtpMeta, SlotKey, TrackKey,
    WriteError,
};

/// Where datagrams leave the core. The runtime sends them on sockets; tests hand them to a
/// simulated network.
pub trait Network {
    fn send(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]);
}

/// The output of the endpoint `me`, which the room has taken out of its place for the call, so
/// every other endpoint can be borrowed beside it.
pub(super) struct Fanout<'a> {
    pub now: Instant,
    pub me: Endpoint,
    /// `None` for the MCU, which sends no datagrams of its own.
    pub kind: Option<ParticipantKind>,
    pub tracks: &'a [PublishedTrack],
    pub others: &'a mut [Option<Participant>],
    /// The room's MCU, unless it is `me` or there is none.
    pub mcu: Option<&'a mut RoomMcu>,
    pub net: &'a mut dyn Network,
    pub stats: &'a mut RoomStats,
    pub deferred: &'a mut VecDeque<(Endpoint, DriverEvent)>,
    pub earliest: &'a mut Instant,
}

/// The receiving side of one fan-out entry: a participant's driver or the MCU.
enum Receiver<'a> {
    Driver(&'a mut dyn Driver),
    Mcu(&'a mut dyn Mcu),
}

impl Receiver<'_> {
    fn write_and_poll(
        &mut self,
        now: Instant,
        slot: SlotKey,
        meta: &RtpMeta,
        payload: &[u8],
        out: &mut Flush<'_>,
    ) -> (bool, Instant) {
        let written: Result<(), WriteError> = match self {
            Receiver::Driver(d) => d.write_media(now, slot, meta, payload),
            Receiver::Mcu(m) => m.write_media(now, slot, meta, payload),
        };
        let next = match self {
            Receiver::Driver(d) => d.poll(now, out),
            Receiver::Mcu(m) => m.poll(now, out),
        };
        (written.is_ok(), next)
    }
}

impl Output for Fanout<'_> {
    fn transmit(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        if let Some(kind) = self.kind {
            self.stats.sent[kind].add(data.len());
        }
        self.net.send(from, to, data);
    }

    fn media(&mut self, key: TrackKey, meta: &RtpMeta, payload: &[u8]) {
        // Sorted by key (`Room::sync_negotiated`, `RoomMcu::follow`).
        let Ok(at) = self.tracks.binary_search_by_key(&key, |t| t.key) else {
            self.stats.drop(DropReason::NoRoute);
            return;
        };
        let track = &self.tracks[at];
        for r in &track.fanout {
            let (slots, mut receiver, kind, next_timeout, span) = match r.to {
                Endpoint::Participant(i) => match self.others.get_mut(i).and_then(Option::as_mut) {
                    Some(p) => {
                        (&mut p.slots, Receiver::Driver(p.driver.as_mut()), Some(p.kind), &mut p.next_timeout, &p.span)
                    }
                    None => continue,
                },
                Endpoint::Mcu => match self.mcu.as_deref_mut() {
                    Some(m) => (&mut m.inputs, Receiver::Mcu(m.mcu.as_mut()), None, &mut m.next_timeout, &m.span),
                    None => continue,
                },
            };
            let (at, pt) = resolve_slot(slots, r, track.codec);
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
            let mut flush =
                Flush { who: r.to, kind, net: &mut *self.net, stats: &mut *self.stats, deferred: &mut *self.deferred };
            // A receiver that panics must not take the publisher down with it: it is reported as
            // gone, and the room removes it.
            let now = self.now;
            let _entered = span.enter();
            let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                receiver.write_and_poll(now, r.slot, &out, payload, &mut flush)
            }));
            match sent {
                Ok((written, next)) => {
                    if !written {
                        self.stats.drop(DropReason::Send);
                    }
                    *next_timeout = next;
                    *self.earliest = (*self.earliest).min(next);
                }
                Err(_) => {
                    self.deferred.push_back((r.to, DriverEvent::Disconnected { reason: DisconnectReason::Closed }))
                }
            }
        }
    }

    fn event(&mut self, event: DriverEvent) {
        self.deferred.push_back((self.me, event));
    }
}

/// Drains a receiver right after a write. It cannot fan out (its place is borrowed), and need
/// not: a participant's own received media is always drained by the call that received it, and
/// the MCU's mixed media by its own timeout.
struct Flush<'a> {
    who: Endpoint,
    kind: Option<ParticipantKind>,
    net: &'a mut dyn Network,
    stats: &'a mut RoomStats,
    deferred: &'a mut VecDeque<(Endpoint, DriverEvent)>,
}

impl Output for Flush<'_> {
    fn transmit(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        if let Some(kind) = self.kind {
            self.stats.sent[kind].add(data.len());
        }
        self.net.send(from, to, data);
    }

    fn media(&mut self, _key: TrackKey, _meta: &RtpMeta, _payload: &[u8]) {
        self.stats.drop(DropReason::NoRoute);
    }

    fn event(&mut self, event: DriverEvent) {
        self.deferred.push_back((self.who, event));
    }
}
