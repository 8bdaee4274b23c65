//! `kernel-floor`: the least any user-space relay or mixer must spend on the kernel's UDP path,
//! measured under the same load as the servers (`loadgen --target floor`).
//!
//! It makes the system calls Switchboard makes for S1 (plain RTP in place of WebRTC), S2 and S3
//! and nothing else: no RTP parsing, no rooms, no jitter buffer, no mix, no SRTP. What it costs per packet is therefore a floor
//! under Switchboard, rtpengine and Janus alike on this machine, and a target below it cannot be
//! met by any server that uses the kernel's UDP sockets (docs/benchmarks.md, "The kernel's
//! floor").
//!
//! ```text
//! kernel-floor relay --rooms 500 --base 40000   # S2: leg 2m <-> leg 2m+1, ports base..
//! kernel-floor mixer --legs 200 --base 40000    # S3: one datagram in and out per leg per 20 ms
//! kernel-floor fanout --subs 500 --base 40000   # S1: one datagram in, one out per subscriber
//! ```
//!
//! - `relay`: every leg's socket in an edge-triggered epoll; a readable socket is drained with
//!   `recvmmsg` (32 at a time), and what it read leaves from the paired leg's socket in one
//!   `sendmmsg` to the address that leg last sent from (latching, as symmetric RTP does). Under
//!   load it pauses up to `--coalesce-us` between polls, with Switchboard's rule (a pause must
//!   gather two datagrams at the last 100 ms's rate).
//! - `mixer`: the legs' sockets stay out of the poller and carry arrival stamps
//!   (`SO_TIMESTAMPNS`), as Switchboard's mixer-paced legs do; a timerfd wakes the process every
//!   20 ms; each leg is drained with `recvmmsg` and sent one 172-byte PCMU packet of silence
//!   with its own `sendmmsg`.
//! - `fanout`: the shape of S1's WebRTC fan-out, without WebRTC: the publisher's packets come in
//!   on the first port, and leave from the second (one socket for every subscriber, as
//!   Switchboard's WebRTC participants share one) to each subscriber that said hello there, 32
//!   to a `sendmmsg`. What SRTP and the WebRTC stack add comes on top.
//! - `--connect`: each leg's socket is connected to the peer it latched, so a send needs no route
//!   lookup (and the kernel drops every other source's packets unseen).
//! - `--shared`: every leg on one port, told apart by its SSRC (the load generator numbers them),
//!   so one `recvmmsg` and one `sendmmsg` carry up to 32 legs' datagrams. Not what Switchboard
//!   does (each leg has its own port); it measures what batching across legs would buy.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

const BATCH: usize = 32;
const SLOT: usize = 2048;
const CTRL: usize = 64;
const RATE_WINDOW: Duration = Duration::from_millis(100);

/// The runner stops the floor with SIGTERM; that is its normal end, not a failure.
extern "C" fn on_term(_: libc::c_int) {
    unsafe { libc::_exit(0) }
}

fn main() {
    unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) };
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse().unwrap_or_else(|_| die(&format!("{name}: not a number: {v}"))))
            .unwrap_or(default)
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let base = opt("--base", 40000) as u16;
    let result = match (args.get(1).map(String::as_str), flag("--shared")) {
        (Some("relay"), false) => relay(
            opt("--rooms", 100) as usize * 2,
            base,
            Duration::from_micros(opt("--coalesce-us", 500)),
            flag("--connect"),
        ),
        (Some("relay"), true) => {
            shared_relay(opt("--rooms", 100) as usize * 2, base, Duration::from_micros(opt("--coalesce-us", 500)))
        }
        (Some("mixer"), shared) => mixer(
            opt("--legs", 25) as usize,
            base,
            Duration::from_millis(opt("--tick-ms", 20)),
            // One shared socket has no one peer to connect to.
            flag("--connect") && !shared,
            shared,
        ),
        (Some("fanout"), _) => fanout(opt("--subs", 100) as usize, base),
        _ => die("usage: kernel-floor fanout --subs N | relay --rooms M | mixer --legs N [--base PORT] [--connect | --shared]"),
    };
    if let Err(e) = result {
        die(&e.to_string());
    }
}

fn die(msg: &str) -> ! {
    eprintln!("kernel-floor: {msg}");
    std::process::exit(2)
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn bind(port: u16) -> io::Result<RawFd> {
    unsafe {
        let fd = check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0))?;
        let mut sin: libc::sockaddr_in = zeroed();
        sin.sin_family = libc::AF_INET as _;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
        check(libc::bind(fd, (&sin as *const libc::sockaddr_in).cast(), size_of::<libc::sockaddr_in>() as _))
            .map_err(|e| io::Error::new(e.kind(), format!("bind 127.0.0.1:{port}: {e}")))?;
        Ok(fd)
    }
}

/// Sets an integer socket option (`SOL_SOCKET` level).
fn set_opt(fd: RawFd, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    check(unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&value as *const libc::c_int).cast(), 4) }).map(drop)
}

/// An epoll instance watching `fds` for `events`; an event's data is the index of its fd in `fds`.
fn epoll(events: libc::c_int, fds: &[RawFd]) -> io::Result<RawFd> {
    let ep = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    for (i, &fd) in fds.iter().enumerate() {
        let mut ev = libc::epoll_event { events: events as u32, u64: i as u64 };
        check(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
    }
    Ok(ep)
}

/// Where a batch goes.
#[derive(Clone, Copy)]
enum Dest<'a> {
    /// Each datagram to its own address in `Batch::addrs`.
    Each,
    /// Every datagram to one address.
    All(&'a libc::sockaddr_in),
    /// To the peer the socket is connected to.
    Connected,
}

/// One `recvmmsg` or `sendmmsg` worth of message headers, built once and pointed at buffers that
/// never move (each `Vec`'s heap block stays put when the struct does).
struct Batch {
    bufs: Vec<[u8; SLOT]>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    ctrl: Vec<[u64; CTRL / 8]>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new() -> Batch {
        let mut b = Batch {
            bufs: vec![[0; SLOT]; BATCH],
            addrs: vec![unsafe { zeroed() }; BATCH],
            iovs: Vec::with_capacity(BATCH),
            ctrl: vec![[0; CTRL / 8]; BATCH],
            hdrs: Vec::with_capacity(BATCH),
        };
        for i in 0..BATCH {
            b.iovs.push(libc::iovec { iov_base: b.bufs[i].as_mut_ptr().cast(), iov_len: SLOT });
        }
        for i in 0..BATCH {
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as _;
            h.msg_hdr.msg_iov = &mut b.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            b.hdrs.push(h);
        }
        b
    }

    /// Drains up to `BATCH` datagrams; 0 when none was queued.
    fn recv(&mut self, fd: RawFd, stamps: bool) -> usize {
        for i in 0..BATCH {
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_namelen = size_of::<libc::sockaddr_in>() as _;
            self.iovs[i].iov_len = SLOT;
            h.msg_control = if stamps { self.ctrl[i].as_mut_ptr().cast() } else { std::ptr::null_mut() };
            h.msg_controllen = if stamps { CTRL } else { 0 };
        }
        let n =
            unsafe { libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), BATCH as _, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
        n.max(0) as usize
    }

    /// Sends the first `n` buffers, each of its `msg_len` (from the receive, or set by the
    /// caller), from `fd` to `to`.
    fn send(&mut self, fd: RawFd, to: Dest, n: usize) {
        for i in 0..n {
            if let Dest::All(to) = to {
                self.addrs[i] = *to;
            }
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_namelen = if matches!(to, Dest::Connected) { 0 } else { size_of::<libc::sockaddr_in>() as _ };
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            self.iovs[i].iov_len = self.hdrs[i].msg_len as usize;
        }
        // A full send queue drops the rest, as a server's would; the loss shows in the figures.
        unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), n as _, libc::MSG_DONTWAIT) };
    }
}

fn relay(legs: usize, base: u16, coalesce: Duration, connect: bool) -> io::Result<()> {
    let fds: Vec<RawFd> = (0..legs).map(|i| bind(base + i as u16)).collect::<io::Result<_>>()?;
    let mut peers: Vec<Option<libc::sockaddr_in>> = vec![None; legs];
    let ep = epoll(libc::EPOLLIN | libc::EPOLLET, &fds)?;
    println!("ready");
    let mut events: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut b = Batch::new();
    let mut pace = Pace::new(coalesce);
    loop {
        pace.pause();
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as _, 500) };
        for ev in &events[..n.max(0) as usize] {
            let i = ev.u64 as usize;
            loop {
                let got = b.recv(fds[i], false);
                pace.reads += got as u64;
                if got > 0 {
                    let from = b.addrs[got - 1];
                    if connect && peers[i].is_none() {
                        connect_to(fds[i], &from)?;
                    }
                    peers[i] = Some(from);
                    if let Some(to) = peers[i ^ 1] {
                        b.send(fds[i ^ 1], if connect { Dest::Connected } else { Dest::All(&to) }, got);
                    }
                }
                if got < BATCH {
                    break;
                }
            }
        }
    }
}

fn mixer(legs: usize, base: u16, tick: Duration, connect: bool, shared: bool) -> io::Result<()> {
    let ports = if shared { 1 } else { legs };
    let fds: Vec<RawFd> = (0..ports).map(|i| bind(base + i as u16)).collect::<io::Result<_>>()?;
    for &fd in &fds {
        set_opt(fd, libc::SO_TIMESTAMPNS, 1)?;
    }
    let mut peers: Vec<Option<libc::sockaddr_in>> = vec![None; legs];
    let tfd = check(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) })?;
    let ep = epoll(libc::EPOLLIN, &[tfd])?;
    println!("ready");
    let mut b = Batch::new();
    let mut out = Batch::new();
    let (mut seq, mut ts) = (0u16, 0u32);
    let mut next = Instant::now() + tick;
    let mut now_ts: libc::timespec = unsafe { zeroed() };
    loop {
        // Armed once per tick at an absolute time, as Switchboard's worker arms its deadline.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now_ts) };
        let left = next.saturating_duration_since(Instant::now());
        let at = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: now_ts.tv_sec + left.as_secs() as libc::time_t,
                tv_nsec: now_ts.tv_nsec + left.subsec_nanos() as libc::c_long,
            },
        };
        let at = normalize(at);
        unsafe { libc::timerfd_settime(tfd, libc::TFD_TIMER_ABSTIME, &at, std::ptr::null_mut()) };
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 4, 1000) };
        let mut expirations = 0u64;
        unsafe { libc::read(tfd, (&mut expirations as *mut u64).cast(), 8) };
        if Instant::now() < next {
            continue;
        }
        next += tick;
        for (i, &fd) in fds.iter().enumerate() {
            loop {
                let got = b.recv(fd, true);
                for k in 0..got {
                    let from = b.addrs[k];
                    let leg = if shared { leg_of(&b, k, S3_SSRC, legs) } else { Some(i) };
                    let Some(leg) = leg else { continue };
                    if connect && peers[leg].is_none() {
                        connect_to(fd, &from)?;
                    }
                    peers[leg] = Some(from);
                }
                if got < BATCH {
                    break;
                }
            }
        }
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(160);
        let mut queued = 0;
        for (i, to) in peers.iter().enumerate() {
            let Some(to) = to else { continue };
            let pkt = &mut out.bufs[queued];
            pkt[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            pkt[4..8].copy_from_slice(&ts.to_be_bytes());
            pkt[8..12].copy_from_slice(&(0x4000_0000 + i as u32).to_be_bytes());
            pkt[12..172].fill(0xff);
            out.addrs[queued] = *to;
            out.hdrs[queued].msg_len = 172;
            queued += 1;
            if !shared {
                out.send(fds[i], if connect { Dest::Connected } else { Dest::All(to) }, 1);
                queued = 0;
            } else if queued == BATCH {
                out.send(fds[0], Dest::Each, queued);
                queued = 0;
            }
        }
        if queued > 0 {
            out.send(fds[0], Dest::Each, queued);
        }
    }
}

/// The load generator's SSRCs: 0x1000_0000 + leg in S2, 0x2000_0000 + leg in S3.
const S2_SSRC: u32 = 0x1000_0000;
const S3_SSRC: u32 = 0x2000_0000;

/// The leg a datagram in `b` came from, by its SSRC (`--shared`, where the port says nothing).
fn leg_of(b: &Batch, k: usize, first: u32, legs: usize) -> Option<usize> {
    let len = b.hdrs[k].msg_len as usize;
    let ssrc = b.bufs[k].get(8..12).filter(|_| len >= 12)?;
    let leg = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]).wrapping_sub(first) as usize;
    (leg < legs).then_some(leg)
}

/// S2 with every leg on one port: each datagram goes back out of the same socket to the paired
/// leg's address, up to 32 in one `sendmmsg`.
fn shared_relay(legs: usize, base: u16, coalesce: Duration) -> io::Result<()> {
    let fd = bind(base)?;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        set_opt(fd, opt, 4 << 20)?;
    }
    let mut peers: Vec<Option<libc::sockaddr_in>> = vec![None; legs];
    let ep = epoll(libc::EPOLLIN | libc::EPOLLET, &[fd])?;
    println!("ready");
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
    let (mut b, mut out) = (Batch::new(), Batch::new());
    let mut pace = Pace::new(coalesce);
    loop {
        pace.pause();
        unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as _, 500) };
        loop {
            let got = b.recv(fd, false);
            pace.reads += got as u64;
            let mut queued = 0;
            for k in 0..got {
                let Some(leg) = leg_of(&b, k, S2_SSRC, legs) else { continue };
                peers[leg] = Some(b.addrs[k]);
                let Some(to) = peers[leg ^ 1] else { continue };
                let len = b.hdrs[k].msg_len as usize;
                out.bufs[queued][..len].copy_from_slice(&b.bufs[k][..len]);
                out.addrs[queued] = to;
                out.hdrs[queued].msg_len = len as u32;
                queued += 1;
            }
            if queued > 0 {
                out.send(fd, Dest::Each, queued);
            }
            if got < BATCH {
                break;
            }
        }
    }
}

/// S1 without WebRTC: one datagram in from the publisher, one out per subscriber from one
/// shared socket.
fn fanout(subs: usize, base: u16) -> io::Result<()> {
    let (publisher, shared) = (bind(base)?, bind(base + 1)?);
    set_opt(shared, libc::SO_SNDBUF, 4 << 20)?;
    let mut peers: Vec<Option<libc::sockaddr_in>> = vec![None; subs];
    let ep = epoll(libc::EPOLLIN | libc::EPOLLET, &[publisher, shared])?;
    println!("ready");
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
    let (mut b, mut out) = (Batch::new(), Batch::new());
    loop {
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as _, 500) };
        for ev in &events[..n.max(0) as usize] {
            let fd = if ev.u64 == 0 { publisher } else { shared };
            loop {
                let got = b.recv(fd, false);
                for k in 0..got {
                    if fd == shared {
                        if let Some(sub) = leg_of(&b, k, HELLO_SSRC, subs) {
                            peers[sub] = Some(b.addrs[k]);
                        }
                        continue;
                    }
                    let len = b.hdrs[k].msg_len as usize;
                    let mut queued = 0;
                    for to in peers.iter().flatten() {
                        out.bufs[queued][..len].copy_from_slice(&b.bufs[k][..len]);
                        out.addrs[queued] = *to;
                        out.hdrs[queued].msg_len = len as u32;
                        queued += 1;
                        if queued == BATCH {
                            out.send(shared, Dest::Each, queued);
                            queued = 0;
                        }
                    }
                    if queued > 0 {
                        out.send(shared, Dest::Each, queued);
                    }
                }
                if got < BATCH {
                    break;
                }
            }
        }
    }
}

/// The load generator's S1 subscribers say hello with 0x5000_0000 + their number.
const HELLO_SSRC: u32 = 0x5000_0000;

/// Switchboard's coalescing rule: under load, pause before polling again, so that one wake-up
/// serves many datagrams.
struct Pace {
    coalesce: Duration,
    reads: u64,
    since: Instant,
    busy: bool,
}

impl Pace {
    fn new(coalesce: Duration) -> Pace {
        Pace { coalesce, reads: 0, since: Instant::now(), busy: false }
    }

    fn pause(&mut self) {
        if self.coalesce.is_zero() {
            return;
        }
        let now = Instant::now();
        let elapsed = now - self.since;
        if elapsed >= RATE_WINDOW {
            // Busy when a pause would gather at least two datagrams at this rate.
            self.busy = self.reads as u128 * self.coalesce.as_nanos() >= 2 * elapsed.as_nanos();
            (self.reads, self.since) = (0, now);
        }
        if self.busy {
            std::thread::sleep(self.coalesce);
        }
    }
}

/// A connected socket sends without a route lookup per datagram (and hears only its peer).
fn connect_to(fd: RawFd, to: &libc::sockaddr_in) -> io::Result<()> {
    let len = size_of::<libc::sockaddr_in>() as _;
    check(unsafe { libc::connect(fd, (to as *const libc::sockaddr_in).cast(), len) }).map(drop)
}

fn normalize(mut t: libc::itimerspec) -> libc::itimerspec {
    if t.it_value.tv_nsec >= 1_000_000_000 {
        t.it_value.tv_sec += 1;
        t.it_value.tv_nsec -= 1_000_000_000;
    }
    t
}
