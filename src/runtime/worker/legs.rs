//! The sockets of rtp/srtp legs: a port pair bound, adopted into the poller and freed per leg,
//! each socket read on arrival or, when only the mixer takes its media, at its room's deadline.

use super::{RoomEntry, Worker, READ_BUDGET};
use crate::runtime::batch::{stamp_arrivals, BATCH};
use crate::runtime::command::CommandError;
use crate::runtime::drivers::LegPorts;
use crate::runtime::sockets::size_buffers;
use mio::net::UdpSocket;
use mio::{Interest, Token};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};
use switchboard_driver::ParticipantId;
use tracing::warn;

/// Datagrams one paced read may find on a leg's RTP socket before the leg is taken for flooded:
/// a talking leg sends one a 20 ms tick, two at a 10 ms ptime.
const PACED_BURST: usize = 16;
/// Datagrams a flooded leg's socket may still bring between two housekeeping turns (500 ms) and
/// be paced again: twice what a 10 ms ptime leg sends.
const FLOOD_QUIET: u32 = 200;

/// The sockets of one rtp/srtp leg.
pub(super) struct Leg {
    room: usize,
    participant: ParticipantId,
    pub(super) local: SocketAddr,
    /// The leg's RTP socket (the other is its RTCP socket, which is never paced).
    pub(super) rtp: bool,
    paced: bool,
    /// The latest arrival time handed to the room for this socket, so a paced read never goes
    /// back in time.
    last_arrival: Instant,
    /// Flooded: read on arrival even if the room would pace it. A paced socket is drained just
    /// before its room's mixer tick, so a flood queued on it would make every tick late by the
    /// time it takes to read it; read on arrival, the flood is read between ticks.
    flooded: bool,
    /// Datagrams read since the last housekeeping turn.
    read_since: u32,
}

impl Leg {
    pub(super) fn is_paced(&self) -> bool {
        self.paced
    }
}

impl Worker {
    /// Binds an even/odd port pair for a new leg.
    pub(super) fn open_leg(&mut self) -> Result<LegPorts, CommandError> {
        let mut busy = Vec::new();
        let mut found = Err(CommandError::NoPorts);
        let now = Instant::now();
        for _ in 0..self.ports.available(now) {
            let Some(port) = self.ports.take(now) else { break };
            let ip = self.cfg.rtp.bind_ip;
            match (UdpSocket::bind(SocketAddr::new(ip, port)), UdpSocket::bind(SocketAddr::new(ip, port + 1))) {
                (Ok(rtp), Ok(rtcp)) => {
                    // At the kernel's default (208 KiB) a leg port flooded at a few thousand
                    // datagrams a second overflows within a few tens of milliseconds of the
                    // media thread waiting for a CPU, and the call's own packets go with it.
                    size_buffers(&rtp, self.cfg.rtp.socket_buffer_bytes);
                    size_buffers(&rtcp, self.cfg.rtp.socket_buffer_bytes);
                    found = Ok(LegPorts { port, rtp, rtcp });
                    break;
                }
                // Out of descriptors: every other port would fail the same way, and the port is
                // not to blame, so it goes back unquarantined.
                (Err(e), _) | (_, Err(e)) if crate::limits::is_out_of_files(&e) => {
                    busy.push(port);
                    found = Err(CommandError::NoResources);
                    break;
                }
                // Someone else holds it: skip it now, and offer it again to later joins.
                _ => {
                    warn!(port, "media port busy, skipped");
                    busy.push(port);
                }
            }
        }
        for port in busy {
            self.ports.give_back(port);
        }
        found
    }

    /// Gives back a leg that never joined. Its sockets close when `leg` drops, so whatever was
    /// queued for them goes out first, before their descriptors can be reused. No peer was told
    /// its port (the join failed before any answer went out), so it needs no quarantine.
    pub(super) fn close_leg(&mut self, leg: LegPorts) {
        self.sockets.flush();
        self.ports.give_back(leg.port);
    }

    /// Puts a joined leg's sockets in the poller and the send table, under tokens of its own.
    pub(super) fn adopt_leg(&mut self, room: usize, participant: ParticipantId, leg: LegPorts) {
        let LegPorts { port, rtp, rtcp } = leg;
        let mut tokens = [Token(0); 2];
        for (i, mut sock) in [rtp, rtcp].into_iter().enumerate() {
            let token = Token(self.next_token);
            self.next_token += 1;
            let Ok(local) = sock.local_addr() else { continue };
            if self.poll.registry().register(&mut sock, token, Interest::READABLE).is_err() {
                continue;
            }
            let rtp = i == 0;
            tokens[i] = token;
            let leg = Leg {
                room,
                participant,
                local,
                rtp,
                paced: false,
                last_arrival: Instant::now(),
                flooded: false,
                read_since: 0,
            };
            self.legs.insert(token, leg);
            self.sockets.legs.insert(local, sock);
        }
        self.leg_ports.insert(participant, (port, tokens));
        // The room decided the leg's routes before the leg was adopted: look again.
        restate_pacing(&mut self.rooms, room);
    }

    pub(super) fn free_leg(&mut self, pid: ParticipantId) {
        let Some((port, tokens)) = self.leg_ports.remove(&pid) else {
            return;
        };
        // Queued datagrams name sockets by descriptor; send them before the descriptor can be
        // closed and reused.
        self.sockets.flush();
        for token in tokens {
            if let Some(leg) = self.legs.remove(&token) {
                if let Some(mut sock) = self.sockets.legs.remove(&leg.local) {
                    if !leg.paced {
                        let _ = self.poll.registry().deregister(&mut sock);
                    }
                }
                if let Some(entry) = self.rooms.get_mut(leg.room).and_then(Option::as_mut) {
                    entry.paced.retain(|t| *t != token);
                }
            }
        }
        self.ports.release(port, Instant::now());
    }

    /// Drains one leg's socket. On arrival (`paced` false) every datagram is handed over at the
    /// time of the read; a paced leg's carry their kernel arrival stamps, kept from going back in
    /// time and from running ahead of the read (a wall clock can step).
    pub(super) fn read_leg(&mut self, token: Token, paced: bool) {
        let Some(leg) = self.legs.get(&token) else {
            return;
        };
        let (idx, pid, local, mut last) = (leg.room, leg.participant, leg.local, leg.last_arrival);
        // What reaches user space of a kernel-forwarded call (RTCP, digits, another source)
        // meets the room's state as the kernel left it.
        self.kernel_catch_up(idx);
        let now = Instant::now();
        let wall = match paced {
            true => SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default(),
            false => Duration::ZERO,
        };
        let (mut batches, mut read) = (0, 0);
        while let Some(sock) = self.sockets.legs.get(&local) {
            if !paced && batches == READ_BUDGET {
                // A paced read drains (it happens once per deadline); a flood on an unpaced
                // socket waits for the next turn.
                if !self.leg_backlog.contains(&token) {
                    self.leg_backlog.push(token);
                }
                break;
            }
            batches += 1;
            let n = match self.recv.recv(sock.as_raw_fd()) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock: drained. Anything else on an unconnected UDP socket would repeat
                // forever if retried; what is still queued is read at the next readiness.
                Err(_) => break,
            };
            read += n;
            if !paced {
                // Coalescing is about wake-ups, and a paced read causes none.
                self.read_count += n;
            }
            if let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) {
                for i in 0..n {
                    let at = match paced {
                        true => {
                            let age = self.recv.stamp(i).map_or(Duration::ZERO, |t| wall.saturating_sub(t));
                            last = now.checked_sub(age).unwrap_or(now).max(last).min(now);
                            last
                        }
                        false => now,
                    };
                    match self.recv.get(i) {
                        Some((data, src)) => entry.room.handle_receive(at, pid, src, local, data, &mut self.sockets),
                        None => self.oversize += 1,
                    }
                }
            }
            if n < BATCH {
                break;
            }
        }
        self.metrics.leg_datagrams_read.inc_by(read as u64);
        if let Some(leg) = self.legs.get_mut(&token) {
            leg.read_since = leg.read_since.saturating_add(read as u32);
            if paced {
                leg.last_arrival = last;
                if read > PACED_BURST && !leg.flooded {
                    leg.flooded = true;
                    restate_pacing(&mut self.rooms, idx);
                }
            }
        }
        self.after_room_call(idx);
    }

    /// At housekeeping: a flooded leg whose socket has gone quiet follows its room's pacing
    /// again.
    pub(super) fn review_floods(&mut self) {
        for leg in self.legs.values_mut() {
            if leg.flooded && leg.read_since < FLOOD_QUIET {
                leg.flooded = false;
                restate_pacing(&mut self.rooms, leg.room);
            }
            leg.read_since = 0;
        }
    }

    /// Reads a room's paced legs, just before its deadline is handled. Each datagram carries the
    /// time the kernel stamped on its arrival, so the mixer's jitter buffer sees the true arrival
    /// pattern, and the mix made at this deadline has every packet it would have had if each had
    /// been read as it came.
    pub(super) fn read_paced(&mut self, idx: usize) {
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) else { return };
        // A copy: a call below may re-pace the room (a leave reroutes it) or free a leg.
        let mut tokens = std::mem::take(&mut self.paced_scratch);
        tokens.clear();
        tokens.extend_from_slice(&entry.paced);
        for &token in &tokens {
            self.read_leg(token, true);
        }
        self.paced_scratch = tokens;
    }

    /// Brings a room's paced legs in line with what the room says: a leg whose media only the
    /// mixer takes leaves the poller; one that is forwarded anywhere comes back to it. Runs only
    /// when the room's pacing epoch moved (routes changed), or a leg joined.
    pub(super) fn repace(&mut self, idx: usize) {
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) else { return };
        entry.pacing_seen = entry.room.pacing_epoch();
        for (&token, leg) in self.legs.iter_mut().filter(|(_, l)| l.room == idx && l.rtp) {
            let want = entry.room.is_mixer_paced(leg.participant) && !leg.flooded;
            if want == leg.paced {
                continue;
            }
            let Some(sock) = self.sockets.legs.get_mut(&leg.local) else { continue };
            // Without stamps a paced read would see every arrival at the room's deadline: a leg
            // whose socket cannot stamp stays in the poller.
            if want && stamp_arrivals(sock.as_raw_fd(), true).is_err() {
                continue;
            }
            let moved = match want {
                true => self.poll.registry().deregister(sock),
                // Edge-triggered, but registering reports what is already queued.
                false => self.poll.registry().register(sock, token, Interest::READABLE),
            };
            if moved.is_err() {
                continue;
            }
            if !want {
                let _ = stamp_arrivals(sock.as_raw_fd(), false);
            }
            leg.paced = want;
            match want {
                true => entry.paced.push(token),
                false => entry.paced.retain(|t| *t != token),
            }
        }
    }
}

/// Makes the worker bring room `idx`'s paced legs in line again (`repace`) after its next call,
/// as if the room's pacing had changed.
fn restate_pacing(rooms: &mut [Option<RoomEntry>], idx: usize) {
    if let Some(entry) = rooms.get_mut(idx).and_then(Option::as_mut) {
        entry.pacing_seen = entry.room.pacing_epoch().wrapping_sub(1);
    }
}
