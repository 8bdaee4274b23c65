//! The demultiplexer of the shared WebRTC port: which room and participant each datagram is
//! for. A known address is one lookup. A new address must open with a STUN binding request that
//! names a participant's local ICE ufrag (one more lookup, then that one session confirms it);
//! anything else from it is dropped and counted as `unknown_source` without reaching a driver.

use super::READ_BUDGET;
use super::{RoomEntry, Worker};
use crate::runtime::batch::BATCH;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;
use switchboard_driver::ParticipantId;

impl Worker {
    /// Drains the shared socket, handing each datagram to the participant its source address
    /// belongs to.
    pub(super) fn read_webrtc(&mut self) {
        let now = Instant::now();
        let fd = self.sockets.webrtc.as_raw_fd();
        let dst = self.webrtc_local;
        for batch in 0.. {
            if batch == READ_BUDGET {
                self.webrtc_backlog = true;
                break;
            }
            let n = match self.recv.recv(fd) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock: drained. Anything else on an unconnected UDP socket would repeat
                // forever if retried; what is still queued is read at the next readiness.
                Err(_) => break,
            };
            self.read_count += n;
            for i in 0..n {
                let Some((data, src)) = self.recv.get(i) else {
                    self.oversize += 1;
                    continue;
                };
                let target = match self.peers.get(&src) {
                    Some(&t) => Some(t),
                    None => find_peer(&self.rooms, &self.ufrags, &mut self.peers, src, dst, data),
                };
                match target {
                    Some((idx, pid)) => {
                        if let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) {
                            entry.room.handle_receive(now, pid, src, dst, data, &mut self.sockets);
                            self.after_room_call(idx);
                        }
                    }
                    None => self.unknown_source += 1,
                }
            }
            if n < BATCH {
                break;
            }
        }
    }

    /// Drops a departed participant's addresses from the cache, so a later datagram from one of
    /// them counts as unknown instead of reaching a participant that has gone.
    /// Reads on the sockets that used up their budget last turn.
    pub(super) fn read_backlog(&mut self) {
        if std::mem::take(&mut self.webrtc_backlog) {
            self.read_webrtc();
        }
        for token in std::mem::take(&mut self.leg_backlog) {
            self.fire_due_deadlines();
            // A leg that became paced meanwhile is read at its room's deadline instead.
            if self.legs.get(&token).is_some_and(|l| !l.is_paced()) {
                self.read_leg(token, false);
            }
        }
    }

    pub(super) fn forget_peer(&mut self, pid: ParticipantId) {
        self.peers.retain(|_, (_, p)| *p != pid);
        self.ufrags.retain(|_, (_, p)| *p != pid);
    }

    /// (Re-)indexes participant `pid` of room `idx` by its ICE ufrag, after a join or a
    /// renegotiation (an ICE restart changes the ufrag).
    pub(super) fn index_ufrag(&mut self, idx: usize, pid: ParticipantId) {
        let Some(ufrag) = self.rooms.get(idx).and_then(Option::as_ref).and_then(|e| e.room.ice_ufrag(pid)) else {
            return;
        };
        self.ufrags.retain(|_, (_, p)| *p != pid);
        self.ufrags.insert(ufrag, (idx, pid));
    }
}

/// First datagram from an address: it must be a STUN binding request naming a participant's
/// ufrag, and that participant's session must take it. The answer is cached by address.
fn find_peer(
    rooms: &[Option<RoomEntry>],
    ufrags: &HashMap<String, (usize, ParticipantId)>,
    peers: &mut HashMap<SocketAddr, (usize, ParticipantId)>,
    src: SocketAddr,
    dst: SocketAddr,
    data: &[u8],
) -> Option<(usize, ParticipantId)> {
    let &(idx, pid) = ufrags.get(switchboard_webrtc::binding_request_ufrag(data)?)?;
    let entry = rooms.get(idx)?.as_ref()?;
    if !entry.room.accepts(pid, src, dst, data) {
        return None;
    }
    peers.insert(src, (idx, pid));
    Some((idx, pid))
}
