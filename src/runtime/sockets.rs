//! The worker's UDP sockets and the `Network` the core sends through.

use super::batch::SendBatch;
use crate::core::Network;
use mio::net::UdpSocket;
use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

pub struct Sockets {
    /// The one socket every WebRTC participant shares.
    pub webrtc: UdpSocket,
    /// One RTP and one RTCP socket per rtp/srtp leg, by local address.
    pub legs: FxHashMap<SocketAddr, UdpSocket>,
    /// Datagrams written by the rooms since the last flush. The worker flushes before it waits
    /// for IO again, so nothing waits longer than the current turn of the loop.
    pub out: SendBatch,
}

impl Sockets {
    pub fn new(webrtc: UdpSocket) -> Sockets {
        Sockets { webrtc, legs: FxHashMap::default(), out: SendBatch::default() }
    }

    pub fn flush(&mut self) {
        self.out.flush();
    }
}

impl Network for Sockets {
    fn send(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        // A leg's address is exact; anything else came from a WebRTC driver, whose source is the
        // advertised candidate rather than the (possibly wildcard) bound address.
        let fd = self.legs.get(&from).unwrap_or(&self.webrtc).as_raw_fd();
        self.out.push(fd, to, data);
    }
}

/// Asks for `bytes` of kernel buffer each way; the kernel caps it at net.core.[rw]mem_max. A
/// shared socket at the default 208 KiB overflows while one turn of the loop fans a packet out
/// to hundreds of subscribers. Returns what the kernel granted.
pub fn size_buffers(sock: &UdpSocket, bytes: usize) -> (usize, usize) {
    let sock = socket2::SockRef::from(sock);
    if bytes > 0 {
        let _ = sock.set_recv_buffer_size(bytes);
        let _ = sock.set_send_buffer_size(bytes);
    }
    (sock.recv_buffer_size().unwrap_or(0), sock.send_buffer_size().unwrap_or(0))
}
