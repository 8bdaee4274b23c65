//! The demultiplexer of the shared WebRTC port: which room and participant each datagram is
//! for, found once per remote address and cached.

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
        loop {
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
                // Only a STUN binding request (first byte 0 or 1) can start a new WebRTC session,
                // so stray traffic from unknown addresses costs no scan of the rooms.
                let target = match self.peers.get(&src) {
                    Some(&t) => Some(t),
                    None if data.first().is_some_and(|b| *b < 2) => {
                        find_peer(&self.rooms, &mut self.peers, src, dst, data)
                    }
                    None => None,
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
    pub(super) fn forget_peer(&mut self, pid: ParticipantId) {
        self.peers.retain(|_, (_, p)| *p != pid);
    }
}

/// First datagram from an address: ask every room. Only STUN from a new address gets here; the
/// answer is cached, so the packet path never scans.
fn find_peer(
    rooms: &[Option<RoomEntry>],
    peers: &mut HashMap<SocketAddr, (usize, ParticipantId)>,
    src: SocketAddr,
    dst: SocketAddr,
    data: &[u8],
) -> Option<(usize, ParticipantId)> {
    for (idx, entry) in rooms.iter().enumerate() {
        if let Some(pid) = entry.as_ref().and_then(|e| e.room.find_acceptor(src, dst, data)) {
            peers.insert(src, (idx, pid));
            return Some((idx, pid));
        }
    }
    None
}
