//! Sends one datagram from each of N loopback sockets to N others and reads each back, R rounds,
//! first with a `sendmsg` and two `recvmsg` per socket (the second finds the queue empty, as a
//! drained read does), then with the same requests through one `io_uring_enter` for the sends
//! and one for the receives. Prints the CPU time per datagram of each. Run it pinned:
//! `taskset -c 1 target/release/uring-vs-syscalls 200 2000` (`FIXED=1` registers the sockets).

use io_uring::{opcode, types, IoUring};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

fn sockaddr(addr: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = addr else { panic!("loopback sockets are IPv4") };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as _,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
        sin_zero: [0; 8],
    }
}

fn main() {
    let arg = |i: usize, default: usize| std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (n, rounds) = (arg(1, 200), arg(2, 2000));
    let fixed = std::env::var_os("FIXED").is_some();
    let bind = || {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_nonblocking(true).expect("nonblocking");
        s
    };
    let tx: Vec<UdpSocket> = (0..n).map(|_| bind()).collect();
    let rx: Vec<UdpSocket> = (0..n).map(|_| bind()).collect();
    let dst: Vec<SocketAddr> = rx.iter().map(|s| s.local_addr().expect("addr")).collect();
    let payload = [0u8; 172]; // a PCMU packet
    let mut buf = [0u8; 1500];

    let c0 = cpu_seconds();
    for _ in 0..rounds {
        for (s, d) in tx.iter().zip(&dst) {
            s.send_to(&payload, d).expect("send");
        }
        for s in &rx {
            s.recv_from(&mut buf).expect("one datagram queued");
            assert!(s.recv_from(&mut buf).is_err(), "only one");
        }
    }
    let per = (cpu_seconds() - c0) * 1e6 / (n * rounds) as f64;
    println!("syscalls: {per:.3} µs CPU per datagram sent and received");

    let mut ring = IoUring::new(4096).expect("io_uring");
    let fds: Vec<i32> = tx.iter().chain(&rx).map(|s| s.as_raw_fd()).collect();
    if fixed {
        ring.submitter().register_files(&fds).expect("register files");
    }
    // The opcodes take either kind of file, but not one type that could be either.
    let send = |i: usize, h: &libc::msghdr| match fixed {
        true => opcode::SendMsg::new(types::Fixed(i as u32), h).flags(libc::MSG_DONTWAIT as u32).build(),
        false => opcode::SendMsg::new(types::Fd(fds[i]), h).flags(libc::MSG_DONTWAIT as u32).build(),
    };
    let recv = |i: usize, h: &mut libc::msghdr| match fixed {
        true => opcode::RecvMsg::new(types::Fixed(i as u32), h).flags(libc::MSG_DONTWAIT as u32).build(),
        false => opcode::RecvMsg::new(types::Fd(fds[i]), h).flags(libc::MSG_DONTWAIT as u32).build(),
    };
    let mut addrs: Vec<libc::sockaddr_in> = dst.iter().map(|d| sockaddr(*d)).collect();
    let mut send_iov: Vec<libc::iovec> =
        (0..n).map(|_| libc::iovec { iov_base: payload.as_ptr() as *mut _, iov_len: payload.len() }).collect();
    // SAFETY (all zeroed msghdrs): a zeroed msghdr is a valid empty header, filled in below.
    let send_hdr: Vec<libc::msghdr> = (0..n)
        .map(|i| {
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = &mut addrs[i] as *mut _ as *mut _;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as _;
            h.msg_iov = &mut send_iov[i];
            h.msg_iovlen = 1;
            h
        })
        .collect();
    let mut bufs = vec![[0u8; 1500]; 2 * n];
    let mut recv_iov: Vec<libc::iovec> =
        bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr() as *mut _, iov_len: b.len() }).collect();
    let mut recv_hdr: Vec<libc::msghdr> = (0..2 * n)
        .map(|i| {
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_iov = &mut recv_iov[i];
            h.msg_iovlen = 1;
            h
        })
        .collect();
    let c0 = cpu_seconds();
    for _ in 0..rounds {
        for (i, h) in send_hdr.iter().enumerate() {
            let e = send(i, h);
            // SAFETY: the headers, addresses and buffers outlive the submission (waited for below).
            unsafe { ring.submission().push(&e).expect("ring has room") };
        }
        ring.submit_and_wait(n).expect("submit");
        assert!(ring.completion().all(|c| c.result() > 0), "every send went");
        for (i, h) in recv_hdr.iter_mut().enumerate() {
            let e = recv(n + i / 2, h);
            // SAFETY: as above.
            unsafe { ring.submission().push(&e).expect("ring has room") };
        }
        ring.submit_and_wait(2 * n).expect("submit");
        assert_eq!(ring.completion().filter(|c| c.result() > 0).count(), n, "one datagram each");
    }
    let per = (cpu_seconds() - c0) * 1e6 / (n * rounds) as f64;
    println!("io_uring: {per:.3} µs CPU per datagram sent and received (registered files: {fixed})");
}
