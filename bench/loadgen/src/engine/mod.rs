//! The media engine: one thread that owns every leg's socket (plain RTP legs and str0m WebRTC
//! clients), sends each leg's schedule and measures what comes back.
//!
//! The control thread (HTTP, peers' control protocols) builds legs and hands them over with
//! [`Cmd::Add`]; the engine never blocks on anything but `epoll`. This file holds that contract
//! and the loop; a leg's schedule, its str0m client, its socket and what it counts have a file each.
//! The small functions those files call per packet are `#[inline]`: when the engine was one file
//! they were inlined into the loop, and the generator's own cost is part of what a run measures.

mod detect;
mod plain;
mod rtc;
mod schedule;
mod socket;
mod stats;

pub use detect::Detect;
pub use stats::Report;

use crate::media::Source;
use crate::util;
use detect::Detector;
use mio::net::UdpSocket;
use mio::{Events, Poll, Token, Waker};
use rtc::RtcIo;
use schedule::Sender;
use stats::Stats;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use str0m::media::{Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Input, Rtc};

/// A `start_ns` that holds a sender until [`Cmd::StartAll`].
pub const HOLD: u64 = u64::MAX / 2;

/// What a leg sends.
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

enum Io {
    Plain { sock: UdpSocket, remote: SocketAddr },
    Rtc(Box<RtcIo>),
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

/// Every deadline of every leg, soonest first: (due ns, leg index, `T_SEND` or `T_RTC`).
type Timers = BinaryHeap<Reverse<(u64, u32, u8)>>;

const T_SEND: u8 = 0;
const T_RTC: u8 = 1;

struct Engine {
    poll: Poll,
    rx: mpsc::Receiver<Cmd>,
    ev: mpsc::Sender<Ev>,
    legs: Vec<Leg>,
    timers: Timers,
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
                    self.stats.set_window(start_ns, end_ns);
                }
                Cmd::Quiet => {
                    self.quiet = true;
                }
                Cmd::StartAll { at_ns } => {
                    for (idx, leg) in self.legs.iter_mut().enumerate() {
                        if let Some(s) = leg.send.as_mut() {
                            let due = s.restart(at_ns);
                            self.timers.push(Reverse((due, idx as u32, T_SEND)));
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
                            rtc::drain_rtc(r, &mut leg.st, &mut self.stats, &self.ev, Instant::now());
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
            IoSpec::Plain { sock, remote } => Io::Plain { sock: socket::register(&self.poll, sock, token), remote },
            IoSpec::Rtc { sock, local, rtc, mid, pt } => {
                let sock = socket::register(&self.poll, sock, token);
                Io::Rtc(Box::new(RtcIo::new(sock, local, rtc, mid, pt)))
            }
        };
        let send = spec.send.map(Sender::new);
        let st = LegState { id: spec.id, first_rx_ns: None, rx_window: 0, detector: Detector::new(spec.detect) };
        self.legs.push(Leg { io, st, send });
        let leg = &mut self.legs[idx];
        if let Some(s) = &leg.send {
            self.timers.push(Reverse((s.due_ns, idx as u32, T_SEND)));
        }
        if let Io::Rtc(r) = &mut leg.io {
            let now = Instant::now();
            let _ = r.rtc.handle_input(Input::Timeout(now));
            rtc::drain_rtc(r, &mut leg.st, &mut self.stats, &self.ev, now);
            rtc::push_rtc_timer(&mut self.timers, r, idx);
        }
    }

    fn readable(&mut self, idx: usize) {
        let Some(leg) = self.legs.get_mut(idx) else { return };
        loop {
            let fd = match &leg.io {
                Io::Plain { sock, .. } => sock.as_raw_fd(),
                Io::Rtc(r) => r.sock.as_raw_fd(),
            };
            let Some((n, src, rx_ns)) = socket::recv_stamped(fd, &mut self.buf) else { break };
            let now = util::instant_of(rx_ns).max(Instant::now() - Duration::from_secs(1));
            let data = &self.buf[..n];
            match &mut leg.io {
                Io::Plain { .. } => {
                    if let Some(payload) = plain::payload(data, &mut self.stats) {
                        stats::on_media(&mut leg.st, &mut self.stats, &self.ev, payload, rx_ns);
                    }
                }
                Io::Rtc(r) => {
                    if r.failed {
                        continue;
                    }
                    if let Ok(recv) = Receive::new(Protocol::Udp, src, r.local, data) {
                        if r.rtc.handle_input(Input::Receive(now, recv)).is_err() {
                            rtc::fail(r, &leg.st, &self.ev);
                            continue;
                        }
                        rtc::drain_rtc_at(r, &mut leg.st, &mut self.stats, &self.ev, rx_ns);
                        rtc::push_rtc_timer(&mut self.timers, r, idx);
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
                        rtc::timeout(r, &mut leg.st, &mut self.stats, &self.ev, &mut self.timers, idx);
                    }
                }
            }
        }
    }
}
