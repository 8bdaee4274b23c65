//! The media engine: one thread that owns every leg's socket (plain RTP legs and str0m WebRTC
//! clients), sends each leg's schedule and measures what comes back.
//!
//! The control thread (HTTP, peers' control protocols) builds legs and hands them over with
//! [`Cmd::Add`]; the engine never blocks on anything but `epoll`.

use crate::media::{opus, ulaw_to_linear, Codec, Source};
use crate::util::{self, Percentiles};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use str0m::media::{Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

/// What a leg sends.
/// A `start_ns` that holds a sender until [`Cmd::StartAll`].
pub const HOLD: u64 = u64::MAX / 2;

pub struct SendCfg {
    pub src: Arc<Source>,
    pub ssrc: u32,
    pub pt: u8,
    /// First send, in epoch ns. WebRTC legs start at the first due time after they connect.
    pub start_ns: u64,
    /// Write a send stamp into each payload (forwarding scenarios).
    pub stamp: bool,
    /// How many receivers each packet should reach (for the loss figure).
    pub fanout: u32,
}

/// Onset detection on received audio (mixer scenarios, where stamps do not survive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    Off,
    Pcmu,
    Opus,
}

pub enum IoSpec {
    /// A plain RTP leg: one socket, sending to `remote`.
    Plain { sock: std::net::UdpSocket, remote: SocketAddr },
    /// A str0m client whose offer/answer is already done.
    Rtc { sock: std::net::UdpSocket, local: SocketAddr, rtc: Box<Rtc>, mid: Mid, pt: Pt },
}

pub struct LegSpec {
    pub id: u32,
    pub io: IoSpec,
    pub send: Option<SendCfg>,
    pub detect: Detect,
}

pub enum Cmd {
    Add(Box<LegSpec>),
    /// Count sends and receives stamped in [start, end).
    Window {
        start_ns: u64,
        end_ns: u64,
    },
    /// Stop sending on every leg (sockets stay open, so late packets are still read).
    Quiet,
    /// (Re)start every sender's schedule at `at_ns`.
    StartAll {
        at_ns: u64,
    },
    Report(mpsc::Sender<Report>),
    Stop,
}

#[derive(Debug, Clone, Copy)]
pub enum Ev {
    Connected { leg: u32, ns: u64 },
    FirstMedia { leg: u32, ns: u64 },
    Failed { leg: u32 },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub legs: usize,
    pub rtc_legs: usize,
    pub rtc_connected: usize,
    pub rtc_failed: usize,
    pub sent_total: u64,
    pub sent_window: u64,
    /// Sum over packets sent in the window of their fan-out.
    pub expected_window: u64,
    pub recv_total: u64,
    /// Stamped packets whose send stamp is inside the window.
    pub recv_stamped_window: u64,
    /// Any media packet received while the window was open (mixes carry no stamp).
    pub recv_any_window: u64,
    pub recv_bytes_window: u64,
    pub legs_with_media: usize,
    /// Receiving legs (no sender of their own) that got no stamped packet from the window, and
    /// the fewest / most such packets one receiving leg got.
    pub receivers_silent_window: usize,
    pub receiver_min_window: u64,
    pub receiver_max_window: u64,
    /// Send stamp to receive, per packet in the window.
    pub delay: Percentiles,
    /// Tone onset sent to tone onset heard (mixer scenarios).
    pub onset_delay: Percentiles,
    pub onsets_sent_window: u64,
    pub onsets_heard_window: u64,
    /// How late the engine sent packets against their schedule (its own overload shows here).
    pub send_lateness: Percentiles,
    pub send_errors: u64,
    pub rtcp_packets: u64,
    /// Datagrams all str0m clients sent (media, RTCP, STUN, DTLS), whole run.
    pub rtc_datagrams_out: u64,
    pub window_s: f64,
}

enum Io {
    Plain { sock: UdpSocket, remote: SocketAddr },
    Rtc(Box<RtcIo>),
}

struct RtcIo {
    sock: UdpSocket,
    local: SocketAddr,
    rtc: Box<Rtc>,
    mid: Mid,
    pt: Pt,
    connected: bool,
    failed: bool,
    /// The str0m deadline currently in the timer heap.
    deadline_ns: u64,
    /// The deadline str0m asked for last.
    want_ns: u64,
}

struct Sender {
    cfg: SendCfg,
    idx: usize,
    cycle: u64,
    seq: u16,
    ts_base: u32,
    count: u32,
    due_ns: u64,
    running: bool,
}

struct Detector {
    codec: Codec,
    dec: Option<opus::Decoder>,
    quiet: u32,
    armed: bool,
}

impl Detector {
    fn new(d: Detect) -> Option<Detector> {
        match d {
            Detect::Off => None,
            Detect::Pcmu => Some(Detector { codec: Codec::Pcmu, dec: None, quiet: 0, armed: false }),
            Detect::Opus => Some(Detector { codec: Codec::Opus, dec: opus::Decoder::new(), quiet: 0, armed: false }),
        }
    }

    /// Feeds one payload; returns the offset in ns of a tone onset inside it, if any. An onset is
    /// a sample above HI after at least 100 ms of samples below LO.
    fn feed(&mut self, payload: &[u8]) -> Option<u64> {
        const HI: i32 = 1500;
        const LO: i32 = 400;
        let mut tmp = [0i16; 160];
        let (samples, rate): (&[i16], u32) = match self.codec {
            Codec::Pcmu => {
                let n = payload.len().min(160);
                for (i, &b) in payload[..n].iter().enumerate() {
                    tmp[i] = ulaw_to_linear(b);
                }
                (&tmp[..n], 8000)
            }
            Codec::Opus => match self.dec.as_mut() {
                Some(d) => (d.decode(payload), 48000),
                None => return None,
            },
            Codec::Vp8 => return None,
        };
        let need_quiet = rate / 10;
        let mut onset = None;
        for (i, &s) in samples.iter().enumerate() {
            let a = (s as i32).abs();
            if a > HI {
                if self.armed && onset.is_none() {
                    onset = Some(i as u64 * 1_000_000_000 / rate as u64);
                }
                self.armed = false;
                self.quiet = 0;
            } else if a < LO {
                self.quiet += 1;
                if self.quiet >= need_quiet {
                    self.armed = true;
                }
            } else {
                self.quiet = 0;
            }
        }
        onset
    }
}

struct LegState {
    id: u32,
    first_rx_ns: Option<u64>,
    /// Stamped packets from the window this leg received.
    rx_window: u64,
    detector: Option<Detector>,
}

struct Leg {
    io: Io,
    st: LegState,
    send: Option<Sender>,
}

#[derive(Default)]
struct Stats {
    win: (u64, u64),
    sent_total: u64,
    sent_window: u64,
    expected_window: u64,
    recv_total: u64,
    recv_stamped_window: u64,
    recv_any_window: u64,
    recv_bytes_window: u64,
    delays_us: Vec<u32>,
    onset_delays_ms: Vec<f64>,
    onsets: Vec<u64>,
    onsets_sent_window: u64,
    onsets_heard_window: u64,
    lateness_us: Vec<u32>,
    send_errors: u64,
    rtcp_packets: u64,
    rtc_datagrams_out: u64,
}

impl Stats {
    fn in_win(&self, t: u64) -> bool {
        t >= self.win.0 && t < self.win.1
    }
}

pub struct Handle {
    tx: mpsc::Sender<Cmd>,
    waker: Arc<Waker>,
    pub events: mpsc::Receiver<Ev>,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    pub fn send(&self, c: Cmd) {
        let _ = self.tx.send(c);
        let _ = self.waker.wake();
    }

    pub fn add(&self, leg: LegSpec) {
        self.send(Cmd::Add(Box::new(leg)));
    }

    pub fn report(&self) -> Report {
        let (tx, rx) = mpsc::channel();
        self.send(Cmd::Report(tx));
        rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default()
    }

    pub fn stop(mut self) {
        self.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const WAKER: Token = Token(usize::MAX);

pub fn spawn() -> std::io::Result<Handle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = mpsc::channel();
    let (ev_tx, ev_rx) = mpsc::channel();
    let thread = std::thread::Builder::new().name("media".into()).spawn(move || {
        let mut e = Engine {
            poll,
            rx,
            ev: ev_tx,
            legs: Vec::new(),
            timers: BinaryHeap::new(),
            stats: Stats::default(),
            buf: vec![0u8; 65536],
            out: Vec::with_capacity(2048),
            quiet: false,
        };
        e.run();
    })?;
    Ok(Handle { tx, waker, events: ev_rx, thread: Some(thread) })
}

const T_SEND: u8 = 0;
const T_RTC: u8 = 1;

struct Engine {
    poll: Poll,
    rx: mpsc::Receiver<Cmd>,
    ev: mpsc::Sender<Ev>,
    legs: Vec<Leg>,
    timers: BinaryHeap<Reverse<(u64, u32, u8)>>,
    stats: Stats,
    buf: Vec<u8>,
    out: Vec<u8>,
    quiet: bool,
}

impl Engine {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.timers.peek().map(|Reverse((t, _, _))| {
                let now = util::now_ns();
                Duration::from_nanos(t.saturating_sub(now))
            });
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    eprintln!("loadgen: poll: {e}");
                    return;
                }
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    if !self.commands() {
                        return;
                    }
                } else {
                    self.readable(ev.token().0);
                }
            }
            self.timers_due();
        }
    }

    /// Returns false on Stop.
    fn commands(&mut self) -> bool {
        while let Ok(c) = self.rx.try_recv() {
            match c {
                Cmd::Add(spec) => self.add(*spec),
                Cmd::Window { start_ns, end_ns } => {
                    self.stats.win = (start_ns, end_ns);
                }
                Cmd::Quiet => {
                    self.quiet = true;
                }
                Cmd::StartAll { at_ns } => {
                    for (idx, leg) in self.legs.iter_mut().enumerate() {
                        if let Some(s) = leg.send.as_mut() {
                            s.cfg.start_ns = at_ns;
                            s.idx = 0;
                            s.cycle = 0;
                            s.due_ns = at_ns + s.cfg.src.items[0].at_ns;
                            s.running = true;
                            self.timers.push(Reverse((s.due_ns, idx as u32, T_SEND)));
                        }
                    }
                }
                Cmd::Report(tx) => {
                    let _ = tx.send(self.report());
                }
                Cmd::Stop => {
                    for leg in &mut self.legs {
                        if let Io::Rtc(r) = &mut leg.io {
                            r.rtc.disconnect();
                            drain_rtc(r, &mut leg.st, &mut self.stats, &self.ev, Instant::now());
                        }
                    }
                    return false;
                }
            }
        }
        true
    }

    fn add(&mut self, spec: LegSpec) {
        let idx = self.legs.len();
        let token = Token(idx);
        let io = match spec.io {
            IoSpec::Plain { sock, remote } => {
                let _ = sock.set_nonblocking(true);
                let mut sock = UdpSocket::from_std(sock);
                enable_rx_timestamps(&sock);
                if let Err(e) = self.poll.registry().register(&mut sock, token, Interest::READABLE) {
                    eprintln!("loadgen: register: {e}");
                }
                Io::Plain { sock, remote }
            }
            IoSpec::Rtc { sock, local, rtc, mid, pt } => {
                let _ = sock.set_nonblocking(true);
                let mut sock = UdpSocket::from_std(sock);
                enable_rx_timestamps(&sock);
                if let Err(e) = self.poll.registry().register(&mut sock, token, Interest::READABLE) {
                    eprintln!("loadgen: register: {e}");
                }
                Io::Rtc(Box::new(RtcIo {
                    sock,
                    local,
                    rtc,
                    mid,
                    pt,
                    connected: false,
                    failed: false,
                    deadline_ns: u64::MAX,
                    want_ns: u64::MAX,
                }))
            }
        };
        let send = spec.send.map(|cfg| Sender {
            idx: 0,
            cycle: 0,
            seq: (cfg.ssrc as u16).wrapping_mul(7),
            ts_base: cfg.ssrc.wrapping_mul(2654435761),
            count: 0,
            due_ns: cfg.start_ns,
            running: true,
            cfg,
        });
        let st = LegState { id: spec.id, first_rx_ns: None, rx_window: 0, detector: Detector::new(spec.detect) };
        self.legs.push(Leg { io, st, send });
        let leg = &mut self.legs[idx];
        if let Some(s) = &leg.send {
            self.timers.push(Reverse((s.due_ns, idx as u32, T_SEND)));
        }
        if let Io::Rtc(r) = &mut leg.io {
            let now = Instant::now();
            let _ = r.rtc.handle_input(Input::Timeout(now));
            drain_rtc(r, &mut leg.st, &mut self.stats, &self.ev, now);
            push_rtc_timer(&mut self.timers, r, idx);
        }
    }

    fn readable(&mut self, idx: usize) {
        let Some(leg) = self.legs.get_mut(idx) else { return };
        loop {
            let fd = match &leg.io {
                Io::Plain { sock, .. } => sock.as_raw_fd(),
                Io::Rtc(r) => r.sock.as_raw_fd(),
            };
            let Some((n, src, rx_ns)) = recv_stamped(fd, &mut self.buf) else { break };
            let now = util::instant_of(rx_ns).max(Instant::now() - Duration::from_secs(1));
            let data = &self.buf[..n];
            match &mut leg.io {
                Io::Plain { .. } => {
                    if let Some(payload) = rtp_payload(data, &mut self.stats) {
                        on_media(&mut leg.st, &mut self.stats, &self.ev, payload, rx_ns);
                    }
                }
                Io::Rtc(r) => {
                    if r.failed {
                        continue;
                    }
                    if let Ok(recv) = Receive::new(Protocol::Udp, src, r.local, data) {
                        if r.rtc.handle_input(Input::Receive(now, recv)).is_err() {
                            fail(r, &leg.st, &self.ev);
                            continue;
                        }
                        drain_rtc_at(r, &mut leg.st, &mut self.stats, &self.ev, rx_ns);
                        push_rtc_timer(&mut self.timers, r, idx);
                    }
                }
            }
        }
    }

    fn timers_due(&mut self) {
        loop {
            let now = util::now_ns();
            let Some(&Reverse((t, idx, kind))) = self.timers.peek() else { return };
            if t > now {
                return;
            }
            self.timers.pop();
            let idx = idx as usize;
            match kind {
                T_SEND => self.send_due(idx, t, now),
                _ => {
                    let leg = &mut self.legs[idx];
                    if let Io::Rtc(r) = &mut leg.io {
                        if r.deadline_ns != t || r.failed {
                            continue;
                        }
                        r.deadline_ns = u64::MAX;
                        let inst = Instant::now();
                        if r.rtc.handle_input(Input::Timeout(inst)).is_err() {
                            fail(r, &leg.st, &self.ev);
                            continue;
                        }
                        drain_rtc(r, &mut leg.st, &mut self.stats, &self.ev, inst);
                        push_rtc_timer(&mut self.timers, r, idx);
                    }
                }
            }
        }
    }

    fn send_due(&mut self, idx: usize, due: u64, now: u64) {
        let quiet = self.quiet;
        let leg = &mut self.legs[idx];
        let Some(s) = leg.send.as_mut() else { return };
        // A timer from before a restart (StartAll) is stale: the schedule has its own new one.
        if due != s.due_ns {
            return;
        }
        if !s.running || quiet {
            return;
        }
        let item = &s.cfg.src.items[s.idx];
        let can_send = match &leg.io {
            Io::Plain { .. } => true,
            Io::Rtc(r) => r.connected && !r.failed,
        };
        if can_send {
            let seq = s.seq;
            let ts = s.ts_base.wrapping_add((s.cycle as u32).wrapping_mul(s.cfg.src.ts_period)).wrapping_add(item.ts);
            let mut payload = item.payload.clone();
            if s.cfg.stamp && payload.len() > util::STAMP_LEN {
                util::write_stamp(&mut payload, leg.st.id, s.count, now);
            }
            let ok = match &mut leg.io {
                Io::Plain { sock, remote } => {
                    self.out.clear();
                    self.out.push(0x80);
                    self.out.push(if item.marker { 0x80 } else { 0 } | (s.cfg.pt & 0x7f));
                    self.out.extend_from_slice(&seq.to_be_bytes());
                    self.out.extend_from_slice(&ts.to_be_bytes());
                    self.out.extend_from_slice(&s.cfg.ssrc.to_be_bytes());
                    self.out.extend_from_slice(&payload);
                    sock.send_to(&self.out, *remote).is_ok()
                }
                Io::Rtc(r) => {
                    let inst = util::instant_of(now);
                    let pt = r.pt;
                    let ok = match r.rtc.direct_api().stream_tx_by_mid(r.mid, None) {
                        Some(tx) => {
                            let w = RtpWrite::new(pt, SeqNo::from(seq as u64), ts, inst, payload).marker(item.marker);
                            tx.write_rtp(w);
                            true
                        }
                        None => false,
                    };
                    let inst = Instant::now();
                    if r.rtc.handle_input(Input::Timeout(inst)).is_err() {
                        fail(r, &leg.st, &self.ev);
                    } else {
                        drain_rtc(r, &mut leg.st, &mut self.stats, &self.ev, inst);
                        push_rtc_timer(&mut self.timers, r, idx);
                    }
                    ok
                }
            };
            s.seq = s.seq.wrapping_add(1);
            s.count = s.count.wrapping_add(1);
            self.stats.sent_total += 1;
            if !ok {
                self.stats.send_errors += 1;
            }
            if item.onset {
                self.stats.onsets.push(now);
            }
            if self.stats.in_win(now) {
                self.stats.sent_window += 1;
                self.stats.expected_window += s.cfg.fanout as u64;
                if item.onset {
                    self.stats.onsets_sent_window += 1;
                }
                self.stats.lateness_us.push((now.saturating_sub(due) / 1000) as u32);
            }
        }
        // Next packet of the schedule.
        s.idx += 1;
        if s.idx == s.cfg.src.items.len() {
            s.idx = 0;
            s.cycle += 1;
        }
        s.due_ns = s.cfg.start_ns + s.cycle * s.cfg.src.period_ns + s.cfg.src.items[s.idx].at_ns;
        // A leg that fell far behind (not connected yet, or the engine was stalled) skips ahead
        // instead of bursting.
        if s.due_ns + 200_000_000 < now {
            let period = s.cfg.src.period_ns;
            let behind = (now - s.due_ns) / period;
            s.cycle += behind;
            s.due_ns += behind * period;
        }
        self.timers.push(Reverse((s.due_ns, idx as u32, T_SEND)));
    }

    fn report(&mut self) -> Report {
        let mut rtc_legs = 0;
        let mut rtc_connected = 0;
        let mut rtc_failed = 0;
        for l in &self.legs {
            if let Io::Rtc(r) = &l.io {
                rtc_legs += 1;
                rtc_connected += r.connected as usize;
                rtc_failed += r.failed as usize;
            }
        }
        let rx: Vec<u64> = self.legs.iter().filter(|l| l.send.is_none()).map(|l| l.st.rx_window).collect();
        let s = &mut self.stats;
        Report {
            receivers_silent_window: rx.iter().filter(|&&n| n == 0).count(),
            receiver_min_window: rx.iter().copied().min().unwrap_or(0),
            receiver_max_window: rx.iter().copied().max().unwrap_or(0),
            legs: self.legs.len(),
            rtc_legs,
            rtc_connected,
            rtc_failed,
            sent_total: s.sent_total,
            sent_window: s.sent_window,
            expected_window: s.expected_window,
            recv_total: s.recv_total,
            recv_stamped_window: s.recv_stamped_window,
            recv_any_window: s.recv_any_window,
            recv_bytes_window: s.recv_bytes_window,
            legs_with_media: self.legs.iter().filter(|l| l.st.first_rx_ns.is_some()).count(),
            delay: util::percentiles_us(&mut s.delays_us),
            onset_delay: util::percentiles_ms(&s.onset_delays_ms),
            onsets_sent_window: s.onsets_sent_window,
            onsets_heard_window: s.onsets_heard_window,
            send_lateness: util::percentiles_us(&mut s.lateness_us),
            send_errors: s.send_errors,
            rtcp_packets: s.rtcp_packets,
            rtc_datagrams_out: s.rtc_datagrams_out,
            window_s: (s.win.1.saturating_sub(s.win.0)) as f64 / 1e9,
        }
    }
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
fn recv_stamped(fd: i32, buf: &mut [u8]) -> Option<(usize, SocketAddr, u64)> {
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

fn fail(r: &mut RtcIo, st: &LegState, ev: &mpsc::Sender<Ev>) {
    if !r.failed {
        r.failed = true;
        let _ = ev.send(Ev::Failed { leg: st.id });
    }
}

/// Minimum spacing of a connected client's str0m timeouts (LOADGEN_RTC_TICK_US, default 5000).
fn rtc_tick_ns() -> u64 {
    static T: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        std::env::var("LOADGEN_RTC_TICK_US").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(5000) * 1000
    })
}

fn push_rtc_timer(timers: &mut BinaryHeap<Reverse<(u64, u32, u8)>>, r: &mut RtcIo, idx: usize) {
    if r.want_ns != r.deadline_ns && r.want_ns != u64::MAX && !r.failed {
        // Never schedule in the past. Once connected, str0m's housekeeping (RTCP, TWCC feedback,
        // ICE keep-alives) runs at most every 5 ms per client: that keeps the generator's cost per
        // client down and changes nothing the bridge can notice.
        let min_gap = if r.connected { rtc_tick_ns() } else { 100_000 };
        let t = r.want_ns.max(util::now_ns() + min_gap);
        r.want_ns = t;
        r.deadline_ns = t;
        timers.push(Reverse((t, idx as u32, T_RTC)));
    }
}

/// Runs str0m's output: datagrams out, events in, and the next deadline into `r.deadline_ns`
/// (the caller pushes the timer).
fn drain_rtc(r: &mut RtcIo, st: &mut LegState, stats: &mut Stats, ev: &mpsc::Sender<Ev>, now: Instant) {
    drain_rtc_at(r, st, stats, ev, util::ns_of(now))
}

/// As [`drain_rtc`], with the kernel receive time of the datagram just fed in: media it yields is
/// counted as received then.
fn drain_rtc_at(r: &mut RtcIo, st: &mut LegState, stats: &mut Stats, ev: &mpsc::Sender<Ev>, rx_ns: u64) {
    loop {
        match r.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                r.want_ns = util::ns_of(t);
                return;
            }
            Ok(Output::Transmit(t)) => {
                stats.rtc_datagrams_out += 1;
                if r.sock.send_to(&t.contents, t.destination).is_err() {
                    stats.send_errors += 1;
                }
            }
            Ok(Output::Event(e)) => match e {
                Event::Connected => {
                    r.connected = true;
                    let _ = ev.send(Ev::Connected { leg: st.id, ns: util::now_ns() });
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    fail(r, st, ev);
                }
                Event::RtpPacket(p) => {
                    on_media(st, stats, ev, &p.payload, rx_ns);
                }
                _ => {}
            },
            Err(_) => {
                fail(r, st, ev);
                return;
            }
        }
    }
}

/// The payload of a plain RTP datagram; RTCP is counted and skipped.
fn rtp_payload<'a>(d: &'a [u8], stats: &mut Stats) -> Option<&'a [u8]> {
    if d.len() < 12 || d[0] >> 6 != 2 {
        return None;
    }
    if (200..=206).contains(&d[1]) {
        stats.rtcp_packets += 1;
        return None;
    }
    let cc = (d[0] & 0x0f) as usize;
    let mut off = 12 + 4 * cc;
    if d[0] & 0x10 != 0 {
        if d.len() < off + 4 {
            return None;
        }
        let words = u16::from_be_bytes([d[off + 2], d[off + 3]]) as usize;
        off += 4 + 4 * words;
    }
    let mut end = d.len();
    if d[0] & 0x20 != 0 {
        let pad = *d.last()? as usize;
        end = end.checked_sub(pad)?;
    }
    (off <= end).then(|| &d[off..end])
}

fn on_media(st: &mut LegState, stats: &mut Stats, ev: &mpsc::Sender<Ev>, payload: &[u8], rx_ns: u64) {
    stats.recv_total += 1;
    if st.first_rx_ns.is_none() {
        st.first_rx_ns = Some(rx_ns);
        let _ = ev.send(Ev::FirstMedia { leg: st.id, ns: rx_ns });
    }
    let in_win = stats.in_win(rx_ns);
    if in_win {
        stats.recv_any_window += 1;
        stats.recv_bytes_window += payload.len() as u64;
    }
    if let Some(s) = util::read_stamp(payload) {
        if stats.in_win(s.t_ns) {
            stats.recv_stamped_window += 1;
            st.rx_window += 1;
            stats.delays_us.push((rx_ns.saturating_sub(s.t_ns) / 1000) as u32);
        }
    }
    if let Some(d) = st.detector.as_mut() {
        if let Some(offset) = d.feed(payload) {
            let heard = rx_ns + offset;
            // The latest onset sent at or before the moment it was heard.
            let i = stats.onsets.partition_point(|&s| s <= heard);
            if i > 0 {
                let sent = stats.onsets[i - 1];
                let delay_ms = (heard - sent) as f64 / 1e6;
                if delay_ms < 330.0 && stats.in_win(sent) {
                    stats.onsets_heard_window += 1;
                    stats.onset_delays_ms.push(delay_ms);
                }
            }
        }
    }
}
