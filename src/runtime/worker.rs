//! One media worker: what it holds (`Worker`) and how it is built from its share of the node.
//!
//! A worker is the IO shell around the sans-IO core for its own rooms: it reads datagrams, hands
//! them to rooms with the current time, wakes rooms at their deadlines, and carries out the API's
//! commands. Nothing else touches its rooms, so the packet path takes no locks. A node runs
//! `media.workers` of them, each on its own thread with its own poller, WebRTC socket and slice
//! of the leg ports; they share only the metrics, their status and the placement table
//! (`runtime::workers`).
//!
//! Its parts: `run` (the loop), `legs` (the sockets of rtp/srtp legs), `demux` (which participant
//! a datagram on the shared WebRTC port is for), `commands` (what the API asks of a worker),
//! `joining` (a room's creation and a participant's join), `publish` (a room's events out to SSE
//! and webhooks, and a room's end) and `failure` (a worker that panicked closing what it held).

mod commands;
mod demux;
mod failure;
mod joining;
mod kernel;
mod legs;
mod publish;
mod run;
#[cfg(test)]
mod tests;

use super::batch::RecvBatch;
use super::command::{Command, EventFrame};
use super::ports::PortPool;
use super::sockets::{size_buffers, Sockets};
use super::timer::DeadlineTimer;
use super::workers::Shared;
use crate::config::Config;
use crate::core::Room;
use crate::metrics::Metrics;
use crate::webhooks::Webhooks;
use legs::Leg;
use mio::net::UdpSocket;
use mio::{Interest, Poll, Token};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_driver::{ParticipantId, RoomId};
use tokio::sync::broadcast;
use tracing::{info, warn};

pub const WAKER: Token = Token(0);
const WEBRTC: Token = Token(1);
const TIMER: Token = Token(2);
const FIRST_LEG: usize = 3;
/// Batches one socket may read per loop turn (of `BATCH` datagrams each) before timers, mixer
/// ticks and commands get their turn; a flooded socket is read on in the next turn.
pub(super) const READ_BUDGET: usize = 4;

struct RoomEntry {
    room: Room,
    events: broadcast::Sender<Arc<EventFrame>>,
    /// The room's `pacing_epoch` when `paced` was last brought in line with it.
    pacing_seen: u64,
    /// RTP sockets of the legs whose media only the mixer takes (`Room::is_mixer_paced`): out
    /// of the poller, read when the room's deadline comes instead of on every arrival.
    paced: Vec<Token>,
    /// Whether `room_started` went out; a room whose creating join failed never starts.
    started: bool,
    /// The in-kernel forwarding rules this room's calls have now (`worker::kernel`).
    kernel: Vec<kernel::Installed>,
    /// After the kernel refused one of the room's rules: no new rule before this.
    kernel_retry: Option<Instant>,
}

/// What a worker is made from: its index and its share of the node.
pub struct Setup {
    pub index: usize,
    pub cfg: Config,
    pub poll: Poll,
    /// Its shared WebRTC socket, bound already (every worker's port must be known before any
    /// leg's peer policy is made).
    pub webrtc: UdpSocket,
    /// Its slice of the leg port range, inclusive.
    pub leg_ports: (u16, u16),
    pub commands: Receiver<Command>,
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub hooks: Webhooks,
    /// The forwarding program, when it is attached (`runtime::kernel`).
    pub kernel: Option<Arc<crate::runtime::kernel::KernelForwarder>>,
}

/// All that one worker holds. Its parts (`legs`, `demux`, `commands`) reach these fields directly;
/// nothing here is shared with another worker but `shared` and the metrics, by design.
pub struct Worker {
    index: usize,
    cfg: Config,
    /// Its status (heartbeat, load) and the placement table, which it keeps true for its rooms.
    shared: Arc<Shared>,
    /// The thread's CPU time and the time it was read, for the CPU share placement weighs.
    cpu_sample: Option<(Duration, Instant)>,
    /// Sockets that used up their read budget with datagrams still queued. Edge-triggered
    /// readiness will not report them again, so the loop reads them on, one budget a turn.
    webrtc_backlog: bool,
    leg_backlog: Vec<Token>,
    poll: Poll,
    sockets: Sockets,
    webrtc_local: SocketAddr,
    rooms: Vec<Option<RoomEntry>>,
    room_index: HashMap<RoomId, usize>,
    /// Shared-socket demux: remote address to the participant that accepted it.
    peers: HashMap<SocketAddr, (usize, ParticipantId)>,
    /// WebRTC participants by their local ICE ufrag: a new address's STUN names one, so finding
    /// its participant costs one lookup, however many rooms the node holds. SipHash, since the
    /// looked-up names come from strangers.
    ufrags: HashMap<String, (usize, ParticipantId)>,
    legs: FxHashMap<Token, Leg>,
    leg_ports: HashMap<ParticipantId, (u16, [Token; 2])>,
    next_token: usize,
    ports: PortPool,
    commands: Receiver<Command>,
    metrics: Arc<Metrics>,
    /// Room events out to the webhook receivers' queues; never waits.
    hooks: Webhooks,
    shutting_down: bool,
    recv: RecvBatch,
    /// Shared-socket datagrams nobody accepted, added to the drop metric at housekeeping.
    unknown_source: u64,
    /// Datagrams too large for a receive slot, likewise.
    oversize: u64,
    /// Datagrams read since `rate_since`; see `coalesce`.
    read_count: usize,
    rate_since: Instant,
    /// Whether the last rate window had enough datagrams for coalescing to pay.
    busy: bool,
    coalesce: Duration,
    /// The earliest deadline of any room (never later than the truth; see `fire_room_timeouts`).
    next_room_deadline: Instant,
    /// Set by commands, which can add rooms or move their deadlines.
    rescan_deadlines: bool,
    /// When the rooms' deadlines were last scanned (`fire_room_timeouts`).
    last_scan: Instant,
    /// Wakes the poller at the next deadline to the microsecond; without it (no timerfd), mio's
    /// millisecond timeout does, late by up to a millisecond.
    timer: Option<DeadlineTimer>,
    /// Reused by `read_paced` for its copy of a room's paced tokens.
    paced_scratch: Vec<Token>,
    kernel: Option<Arc<crate::runtime::kernel::KernelForwarder>>,
    /// Reused by `kernel_review` for the paths a room wants.
    kernel_scratch: Vec<crate::core::KernelPath>,
    /// Whether the kernel refused a rule already (logged once per worker).
    kernel_refused: bool,
}

/// The address a worker's candidates name for its bound socket: a wildcard bind has no address of
/// its own to report as a datagram's destination, so the first advertised one stands for it.
pub fn local_webrtc(cfg: &Config, bound: SocketAddr) -> SocketAddr {
    match bound.ip().is_unspecified() {
        true => SocketAddr::new(cfg.webrtc.advertised_ips[0], bound.port()),
        false => bound,
    }
}

impl Worker {
    pub fn new(setup: Setup) -> std::io::Result<Worker> {
        let Setup { index, cfg, poll, mut webrtc, leg_ports, commands, shared, metrics, hooks, kernel } = setup;
        let (rcv, snd) = size_buffers(&webrtc, cfg.media.socket_buffer_bytes);
        poll.registry().register(&mut webrtc, WEBRTC, Interest::READABLE)?;
        let bound = webrtc.local_addr()?;
        let webrtc_local = local_webrtc(&cfg, bound);
        let (lo, hi) = leg_ports;
        info!(worker = index, webrtc = %bound, receive = rcv, send = snd, legs = %format!("{lo}-{hi}"), "media worker listening");
        let coalesce = Duration::from_micros(cfg.media.coalesce_us);
        let timer = DeadlineTimer::new(poll.registry(), TIMER)
            .inspect_err(|e| warn!(error = %e, "no timerfd: deadlines fire up to 1 ms late"))
            .ok();
        let ports = PortPool::new(cfg.rtp.port_min, cfg.rtp.port_max, cfg.port_quarantine());
        metrics.rtp_port_pairs.set(ports.capacity() as i64);
        Ok(Worker {
            ports: PortPool::new(lo, hi, cfg.port_quarantine()),
            index,
            cfg,
            shared,
            cpu_sample: None,
            webrtc_backlog: false,
            leg_backlog: Vec::new(),
            poll,
            sockets: Sockets::new(webrtc),
            webrtc_local,
            rooms: Vec::new(),
            room_index: HashMap::new(),
            peers: HashMap::new(),
            ufrags: HashMap::new(),
            legs: FxHashMap::default(),
            leg_ports: HashMap::new(),
            next_token: FIRST_LEG,
            commands,
            metrics,
            hooks,
            shutting_down: false,
            recv: RecvBatch::default(),
            unknown_source: 0,
            oversize: 0,
            read_count: 0,
            rate_since: Instant::now(),
            busy: false,
            coalesce,
            next_room_deadline: Instant::now(),
            rescan_deadlines: false,
            last_scan: Instant::now(),
            timer,
            paced_scratch: Vec::new(),
            kernel,
            kernel_scratch: Vec::new(),
            kernel_refused: false,
        })
    }

    fn status(&self) -> &super::status::WorkerStatus {
        &self.shared.status[self.index]
    }
}
