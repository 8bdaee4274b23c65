//! The worker's UDP sockets and the `Network` the core sends through.

use crate::core::Network;
use mio::net::UdpSocket;
use std::collections::HashMap;
use std::net::SocketAddr;

pub struct Sockets {
    /// The one socket every WebRTC participant shares.
    pub webrtc: UdpSocket,
    /// One RTP and one RTCP socket per rtp/srtp leg, by local address.
    pub legs: HashMap<SocketAddr, UdpSocket>,
    pub send_errors: u64,
}

impl Network for Sockets {
    fn send(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        // A leg's address is exact; anything else came from a WebRTC driver, whose source is the
        // advertised candidate rather than the (possibly wildcard) bound address.
        let sock = self.legs.get(&from).unwrap_or(&self.webrtc);
        if sock.send_to(data, to).is_err() {
            self.send_errors += 1;
        }
    }
}
