//! Batched datagram IO: `recvmmsg` to read a socket's queue in one call, `sendmmsg` to write a
//! fan-out's datagrams in one call per socket.
//!
//! Written by hand on `libc` because no maintained crate does both without per-call allocation:
//! `quinn-udp` batches by GSO (one destination per call, while a fan-out has one per packet) and
//! `nix`'s multi-message API needs its own header buffers per call site. The profile of the relay
//! benchmark had two thirds of the daemon's time in syscalls; see docs/benchmarks.md.

#![allow(unsafe_code, reason = "recvmmsg/sendmmsg through libc; each block says why it is sound")]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::time::Duration;

/// The largest datagram kept whole. Media and WebRTC datagrams stay under a 1500-byte MTU; a
/// larger one is truncated by the kernel, flagged, and dropped.
pub const SLOT: usize = 2048;
/// Datagrams per syscall.
pub const BATCH: usize = 32;

/// The kernel's view of `BATCH` datagram slots: headers pointing at buffers and addresses.
/// Built once; the pointers stay valid because every array is boxed and never resized.
struct Slots {
    bufs: Box<[[u8; SLOT]; BATCH]>,
    iov: Box<[libc::iovec; BATCH]>,
    names: Box<[libc::sockaddr_storage; BATCH]>,
    hdrs: Box<[libc::mmsghdr; BATCH]>,
}

// SAFETY: the raw pointers in `iov` and `hdrs` point only into the other boxes of the same
// value, which move with it; nothing else holds them.
unsafe impl Send for Slots {}

impl Slots {
    #[allow(clippy::large_stack_arrays, reason = "64 KiB passes through the stack once per socket, not per packet")]
    fn new() -> Slots {
        // SAFETY: iovec, sockaddr_storage and mmsghdr are plain C structs; all-zero is valid.
        let mut slots = unsafe {
            Slots {
                bufs: Box::new([[0; SLOT]; BATCH]),
                iov: Box::new(zeroed()),
                names: Box::new(zeroed()),
                hdrs: Box::new(zeroed()),
            }
        };
        for i in 0..BATCH {
            slots.iov[i] = libc::iovec { iov_base: slots.bufs[i].as_mut_ptr().cast(), iov_len: SLOT };
            let h = &mut slots.hdrs[i].msg_hdr;
            h.msg_name = (&mut slots.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut slots.iov[i];
            h.msg_iovlen = 1;
        }
        slots
    }
}

/// Control-message room per datagram: one `SCM_TIMESTAMPNS` needs 32 bytes. Words, so that the
/// `cmsghdr` the kernel writes there is aligned.
const CTRL_WORDS: usize = 8;

/// Receive buffers for one `recvmmsg`.
pub struct RecvBatch {
    slots: Slots,
    addrs: [SocketAddr; BATCH],
    ctrl: Box<[[u64; CTRL_WORDS]; BATCH]>,
}

// SAFETY: as for `Slots`: the headers' control pointers point into `ctrl`, owned by the value.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        let mut batch = RecvBatch {
            slots: Slots::new(),
            addrs: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            ctrl: Box::new([[0; CTRL_WORDS]; BATCH]),
        };
        for i in 0..BATCH {
            batch.slots.hdrs[i].msg_hdr.msg_control = batch.ctrl[i].as_mut_ptr().cast();
        }
        batch
    }
}

/// Asks the kernel to stamp (or no longer stamp) each datagram `fd` receives with its arrival
/// time (wall clock), for [`RecvBatch::stamp`]. A stamp costs a control message per datagram, so
/// only sockets that need one have it.
pub fn stamp_arrivals(fd: RawFd, on: bool) -> io::Result<()> {
    let on = libc::c_int::from(on);
    // SAFETY: a plain setsockopt with a pointer to a live int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl RecvBatch {
    /// Reads up to `BATCH` datagrams. An empty queue is `WouldBlock`. Fewer than `BATCH` means
    /// the queue was empty when the call returned, so an edge-triggered poller will report the
    /// next arrival: no second call is needed to see `WouldBlock`.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for h in self.slots.hdrs.iter_mut() {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_controllen = CTRL_WORDS * size_of::<u64>();
        }
        // SAFETY: the headers point at buffers and names owned by `self.slots` (see `Slots`).
        let n = unsafe {
            libc::recvmmsg(fd, self.slots.hdrs.as_mut_ptr(), BATCH as _, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.addrs[i] = from_storage(&self.slots.names[i]).unwrap_or(self.addrs[i]);
        }
        Ok(n)
    }

    /// Datagram `i` of the last `recv`, or `None` when it did not fit a slot.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let h = &self.slots.hdrs[i];
        let len = (h.msg_len as usize).min(SLOT);
        (h.msg_hdr.msg_flags & libc::MSG_TRUNC == 0).then(|| (&self.slots.bufs[i][..len], self.addrs[i]))
    }

    /// When datagram `i` of the last `recv` reached its socket, as wall-clock time since the
    /// epoch; `None` when the socket does not stamp (see [`stamp_arrivals`]).
    pub fn stamp(&self, i: usize) -> Option<Duration> {
        let h = &self.slots.hdrs.get(i)?.msg_hdr;
        // SAFETY: the kernel filled `msg_control` up to `msg_controllen` with well-formed control
        // messages; the CMSG macros walk them without leaving that range.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    return Some(Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32));
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }
}

/// Datagrams waiting to be written, in order, each with its socket.
pub struct SendBatch {
    slots: Slots,
    fds: [RawFd; BATCH],
    queued: usize,
    /// Datagrams the kernel refused; added to the drop metric by the owner.
    pub errors: u64,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch { slots: Slots::new(), fds: [-1; BATCH], queued: 0, errors: 0 }
    }
}

impl SendBatch {
    pub fn push(&mut self, fd: RawFd, to: SocketAddr, data: &[u8]) {
        if data.len() > SLOT {
            // Order matters more than batching: what is queued goes first.
            self.flush();
            self.send_one(fd, to, data);
            return;
        }
        if self.queued == BATCH {
            self.flush();
        }
        let i = self.queued;
        self.slots.bufs[i][..data.len()].copy_from_slice(data);
        self.slots.iov[i].iov_len = data.len();
        self.slots.hdrs[i].msg_hdr.msg_namelen = to_storage(to, &mut self.slots.names[i]);
        self.fds[i] = fd;
        self.queued += 1;
    }

    /// Writes every queued datagram: one `sendmmsg` per run of datagrams for the same socket.
    pub fn flush(&mut self) {
        let mut start = 0;
        while start < self.queued {
            let fd = self.fds[start];
            let end = (start..self.queued).find(|&i| self.fds[i] != fd).unwrap_or(self.queued);
            self.send_run(fd, start, end);
            start = end;
        }
        self.queued = 0;
    }

    fn send_run(&mut self, fd: RawFd, start: usize, end: usize) {
        let mut done = start;
        while done < end {
            // SAFETY: headers `done..end` point at filled buffers and names in `self.slots`.
            let n = unsafe {
                libc::sendmmsg(fd, self.slots.hdrs.as_mut_ptr().add(done), (end - done) as _, libc::MSG_DONTWAIT)
            };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first datagram failed (full buffer, unreachable, bad address): drop it and
                // go on with the rest.
                self.errors += 1;
                done += 1;
            } else {
                // A short count means the next datagram failed; its error comes back on the
                // next call, which drops it above.
                done += n as usize;
            }
        }
    }

    fn send_one(&mut self, fd: RawFd, to: SocketAddr, data: &[u8]) {
        // SAFETY: `data` and `storage` outlive the call.
        let sent = unsafe {
            let mut storage: libc::sockaddr_storage = zeroed();
            let len = to_storage(to, &mut storage);
            libc::sendto(
                fd,
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_DONTWAIT,
                (&storage as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        if sent < 0 {
            self.errors += 1;
        }
    }
}

fn to_storage(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: sockaddr_storage is large and aligned enough for either address family.
    unsafe {
        match addr {
            SocketAddr::V4(a) => {
                let sin = &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr = libc::in_addr { s_addr: u32::from(*a.ip()).to_be() };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                let sin6 = &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}

fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    // SAFETY: the family field says which layout the kernel wrote.
    unsafe {
        match storage.ss_family as libc::c_int {
            libc::AF_INET => {
                let sin = &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
            }
            libc::AF_INET6 => {
                let sin6 = &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                let port = u16::from_be(sin6.sin6_port);
                Some(SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn a_stamping_socket_tells_when_each_datagram_arrived_not_when_it_was_read() {
        let (tx, rx) = pair();
        let (_, plain) = pair();
        stamp_arrivals(rx.as_raw_fd(), true).unwrap();
        // The kernel turns stamping on for its receive path from a work queue: until then a
        // datagram is stamped when it is read, which is no worse than no stamp.
        std::thread::sleep(Duration::from_millis(20));
        let wall = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let before = wall();
        tx.send_to(b"first", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        tx.send_to(b"second", rx.local_addr().unwrap()).unwrap();
        tx.send_to(b"plain", plain.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let read_at = wall();
        let mut batch = RecvBatch::default();
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 2);
        let (first, second) = (batch.stamp(0).unwrap(), batch.stamp(1).unwrap());
        assert!(first >= before && first + Duration::from_millis(25) < second, "{before:?} {first:?} {second:?}");
        assert!(second + Duration::from_millis(25) < read_at, "stamped on arrival: {second:?}, read {read_at:?}");
        assert_eq!(batch.recv(plain.as_raw_fd()).unwrap(), 1);
        assert_eq!(batch.get(0).unwrap().0, b"plain");
        assert_eq!(batch.stamp(0), None, "a socket that was not asked to stamp gives no time");
    }

    #[test]
    fn send_batch_keeps_order_and_sources_across_sockets() {
        let (a1, rx) = pair();
        let a2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut batch = SendBatch::default();
        // More than one batch, alternating runs of two sockets.
        for i in 0..(BATCH as u8 + 5) {
            let fd = if (i / 3) % 2 == 0 { a1.as_raw_fd() } else { a2.as_raw_fd() };
            batch.push(fd, to, &[i; 100]);
        }
        batch.flush();
        assert_eq!(batch.queued, 0);
        let mut recv = RecvBatch::default();
        let mut got = Vec::new();
        while got.len() < BATCH + 5 {
            match recv.recv(rx.as_raw_fd()) {
                Ok(n) => (0..n).for_each(|i| got.push(recv.get(i).map(|(d, from)| (d[0], d.len(), from)).unwrap())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        for (i, (first, len, from)) in got.into_iter().enumerate() {
            assert_eq!((first, len), (i as u8, 100));
            let expect = if (i / 3) % 2 == 0 { &a1 } else { &a2 };
            assert_eq!(from, expect.local_addr().unwrap());
        }
        assert_eq!(batch.errors, 0);
    }

    #[test]
    fn oversized_datagrams_are_flagged_not_delivered() {
        let (tx, rx) = pair();
        tx.send_to(&[7u8; SLOT + 10], rx.local_addr().unwrap()).unwrap();
        tx.send_to(&[8u8; 20], rx.local_addr().unwrap()).unwrap();
        let mut recv = RecvBatch::default();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match recv.recv(rx.as_raw_fd()) {
                Ok(n) => (0..n).for_each(|i| seen.push(recv.get(i).map(|(d, _)| d.len()))),
                Err(_) => std::thread::yield_now(),
            }
        }
        assert_eq!(seen, vec![None, Some(20)]);
    }

    #[test]
    fn a_failed_datagram_is_counted_and_the_rest_still_go() {
        let (tx, rx) = pair();
        let to = rx.local_addr().unwrap();
        let mut batch = SendBatch::default();
        batch.push(tx.as_raw_fd(), to, b"one");
        // An IPv6 destination on an IPv4 socket fails in the kernel.
        batch.push(tx.as_raw_fd(), "[::1]:9".parse().unwrap(), b"bad");
        batch.push(tx.as_raw_fd(), to, b"two");
        batch.flush();
        assert_eq!(batch.errors, 1);
        let mut recv = RecvBatch::default();
        let mut got = Vec::new();
        while got.len() < 2 {
            if let Ok(n) = recv.recv(rx.as_raw_fd()) {
                (0..n).for_each(|i| got.push(recv.get(i).unwrap().0.to_vec()));
            }
        }
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    }
}
