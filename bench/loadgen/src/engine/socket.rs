//! A leg's socket as the engine holds it: non-blocking, in the poller, and stamped by the kernel
//! on arrival, so a delay is measured from the moment a datagram reached the socket.

use crate::util;
use mio::net::UdpSocket;
use mio::{Interest, Poll, Token};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Takes over a leg's socket: non-blocking, kernel receive timestamps on, readable under `token`.
pub(super) fn register(poll: &Poll, sock: std::net::UdpSocket, token: Token) -> UdpSocket {
    let _ = sock.set_nonblocking(true);
    let mut sock = UdpSocket::from_std(sock);
    enable_rx_timestamps(&sock);
    if let Err(e) = poll.registry().register(&mut sock, token, Interest::READABLE) {
        eprintln!("loadgen: register: {e}");
    }
    sock
}

/// Enables kernel receive timestamps on a socket.
fn enable_rx_timestamps<S: AsRawFd>(sock: &S) {
    let on: libc::c_int = 1;
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &on as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// recvmsg with the kernel's receive timestamp: the moment the datagram reached the socket, not the
/// moment this (possibly busy) thread got to it. Returns (len, source, rx time in our ns).
#[inline]
pub(super) fn recv_stamped(fd: i32, buf: &mut [u8]) -> Option<(usize, SocketAddr, u64)> {
    unsafe {
        let mut name: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut name as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return None;
        }
        let mut rx = None;
        let mut cm = libc::CMSG_FIRSTHDR(&msg);
        while !cm.is_null() {
            if (*cm).cmsg_level == libc::SOL_SOCKET && (*cm).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cm) as *const libc::timespec);
                rx = Some(util::mono_of_realtime(ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128));
            }
            cm = libc::CMSG_NXTHDR(&msg, cm);
        }
        let src = match name.ss_family as i32 {
            libc::AF_INET => {
                let a = &*(&name as *const _ as *const libc::sockaddr_in);
                SocketAddr::from((u32::from_be(a.sin_addr.s_addr).to_be_bytes(), u16::from_be(a.sin_port)))
            }
            libc::AF_INET6 => {
                let a = &*(&name as *const _ as *const libc::sockaddr_in6);
                SocketAddr::from((a.sin6_addr.s6_addr, u16::from_be(a.sin6_port)))
            }
            _ => return None,
        };
        Some((n as usize, src, rx.unwrap_or_else(util::now_ns)))
    }
}
