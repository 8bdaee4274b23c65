//! The media worker: one thread's loop over its rooms and the sockets their media uses.
//!
//! It is the IO shell around the sans-IO core: it reads datagrams, hands them to rooms with the
//! current time, wakes rooms at their deadlines, and carries out the API's commands. Nothing else
//! touches a room, so the packet path takes no locks.
//!
//! The loop is here; its parts are beside it: `legs` (the sockets of rtp/srtp legs), `demux`
//! (which participant a datagram on the shared WebRTC port is for), `commands` (what the API
//! asks of a worker) and `publish` (a room's events out to SSE and webhooks, and a room's end).
//! Everything a worker holds is in `Worker`, none of it global.

mod commands;
mod demux;
mod legs;
mod publish;
#[cfg(test)]
mod tests;

use super::batch::RecvBatch;
use super::command::{Command, EventFrame};
use super::heartbeat::Heartbeat;
use super::ports::PortPool;
use super::sockets::{size_buffers, Sockets};
use super::timer::DeadlineTimer;
use crate::config::Config;
use crate::core::stats::RoomGauges;
use crate::core::{FinishReason, LeaveReason, Room};
use crate::metrics::{DropLabel, Metrics};
use crate::webhooks::Webhooks;
use legs::Leg;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_driver::{DropReason, ParticipantId, RoomId};
use tokio::sync::broadcast;
use tracing::{info, warn};

pub const WAKER: Token = Token(0);
const WEBRTC: Token = Token(1);
const TIMER: Token = Token(2);
const FIRST_LEG: usize = 3;
const HOUSEKEEPING: Duration = Duration::from_millis(500);
/// Batches one socket may read per loop turn (of `BATCH` datagrams each) before timers, mixer
/// ticks and commands get their turn; a flooded socket is read on in the next turn.
pub(super) const READ_BUDGET: usize = 4;
/// Within a turn, how long after the last scan of the rooms' deadlines the worker scans again
/// between two sockets' reads. A scan visits every room, and on a node of many rooms some
/// deadline is always due: scanning before every socket would cost rooms × sockets a turn.
const MID_TURN_SCAN_GAP: Duration = Duration::from_millis(1);
/// How far past a deadline mio's own timeout would wake the worker if the timerfd did not.
const TIMER_BACKSTOP: Duration = Duration::from_millis(5);
/// How often the worker decides whether it is busy enough to coalesce (see `coalesce`).
const RATE_WINDOW: Duration = Duration::from_millis(100);
/// Datagrams expected per coalescing pause from which pausing pays: below two, most pauses
/// would end in a wake-up for a single datagram anyway.
const COALESCE_MIN_PER_PAUSE: u128 = 2;

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
}

/// All that one worker holds. Its parts (`legs`, `demux`, `commands`) reach these fields directly;
/// nothing here is shared with another worker but the metrics, which are shared by design.
pub struct Worker {
    cfg: Config,
    /// Beaten once per loop turn; `/healthz` reads it.
    heartbeat: Arc<Heartbeat>,
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
}

impl Worker {
    pub fn new(
        cfg: Config,
        poll: Poll,
        commands: Receiver<Command>,
        metrics: Arc<Metrics>,
        heartbeat: Arc<Heartbeat>,
        hooks: Webhooks,
    ) -> std::io::Result<Worker> {
        let mut webrtc = UdpSocket::bind(cfg.webrtc.listen)?;
        let (rcv, snd) = size_buffers(&webrtc, cfg.media.socket_buffer_bytes);
        info!(receive = rcv, send = snd, "shared WebRTC socket buffers");
        poll.registry().register(&mut webrtc, WEBRTC, Interest::READABLE)?;
        let bound = webrtc.local_addr()?;
        // The driver's candidates name the advertised address; a wildcard bind has no address of
        // its own to report as a datagram's destination.
        let webrtc_local = match bound.ip().is_unspecified() {
            true => SocketAddr::new(cfg.webrtc.advertised_ips[0], bound.port()),
            false => bound,
        };
        info!(webrtc = %bound, "media worker listening");
        let coalesce = Duration::from_micros(cfg.media.coalesce_us);
        let timer = DeadlineTimer::new(poll.registry(), TIMER)
            .inspect_err(|e| warn!(error = %e, "no timerfd: deadlines fire up to 1 ms late"))
            .ok();
        Ok(Worker {
            ports: PortPool::new(cfg.rtp.port_min, cfg.rtp.port_max, cfg.port_quarantine()),
            cfg,
            heartbeat,
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
        })
    }

    /// Runs until a `Shutdown` command has been carried out.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
        loop {
            let now = Instant::now();
            // Housekeeping wakes the loop at least every 500 ms, so an idle node still beats.
            self.heartbeat.beat(now);
            let deadline = self.next_room_deadline.min(next_housekeeping);
            self.sockets.flush();
            self.coalesce(deadline);
            let mut wait = deadline.saturating_duration_since(now);
            if let Some(timer) = self.timer.as_mut() {
                match timer.arm(deadline, now) {
                    // The timer wakes the poller; the timeout only backs it up.
                    Ok(()) => wait += TIMER_BACKSTOP,
                    Err(e) => {
                        warn!(error = %e, "timerfd failed: deadlines fire up to 1 ms late");
                        self.timer = None;
                    }
                }
            }
            if self.webrtc_backlog || !self.leg_backlog.is_empty() {
                // Only look for what else is ready: the backlog is read again below.
                wait = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != ErrorKind::Interrupted {
                    warn!(error = %e, "poll failed");
                }
                continue;
            }
            for ev in events.iter() {
                // A turn under flood reads many sockets; a deadline that came due meanwhile (a
                // mixer tick) goes before the next one, not after them all.
                self.fire_due_deadlines();
                match ev.token() {
                    WAKER => {
                        if self.drain_commands() {
                            self.sockets.flush();
                            return;
                        }
                    }
                    WEBRTC => self.read_webrtc(),
                    TIMER => {
                        if let Some(t) = self.timer.as_mut() {
                            t.fired();
                        }
                    }
                    token => self.read_leg(token, false),
                }
            }
            let now = Instant::now();
            if now >= self.next_room_deadline || std::mem::take(&mut self.rescan_deadlines) {
                self.fire_room_timeouts(now);
            }
            if now >= next_housekeeping {
                self.housekeeping(now);
                next_housekeeping = now + HOUSEKEEPING;
            }
            self.read_backlog();
        }
    }

    /// Between two sockets' reads: wakes the rooms whose deadline has passed, if one has and the
    /// last scan is at least `MID_TURN_SCAN_GAP` old.
    fn fire_due_deadlines(&mut self) {
        let now = Instant::now();
        if now >= self.next_room_deadline && now >= self.last_scan + MID_TURN_SCAN_GAP {
            self.fire_room_timeouts(now);
        }
    }

    /// Wakes the rooms whose deadline has passed and finds the next one. The scan is over every
    /// room, so it runs only when a deadline is due or a command may have moved one; a packet
    /// that moves a deadline earlier lowers `next_room_deadline` in `after_room_call`.
    fn fire_room_timeouts(&mut self, now: Instant) {
        self.last_scan = now;
        self.next_room_deadline = now + HOUSEKEEPING;
        for idx in 0..self.rooms.len() {
            let Some(entry) = self.rooms[idx].as_mut() else { continue };
            if entry.room.poll_timeout() <= now {
                if !entry.paced.is_empty() {
                    // The room's deadline, still due while its paced legs are read, must not count
                    // as the next one: `after_room_call` below adds the one `handle_timeout` sets.
                    let next = self.next_room_deadline;
                    self.read_paced(idx);
                    self.next_room_deadline = next;
                }
                if let Some(entry) = self.rooms[idx].as_mut() {
                    // The clock again: reading paced legs and earlier rooms took time, and a tick
                    // is as late as the moment it really runs.
                    let at = Instant::now();
                    if let Some(due) = entry.room.mixer_tick_due().filter(|due| *due <= at) {
                        self.metrics.mixer_tick_lateness.observe((at - due).as_secs_f64());
                    }
                    entry.room.handle_timeout(at, &mut self.sockets);
                }
            }
            self.after_room_call(idx);
        }
    }

    /// Under load, waits a little before polling again so that one wake-up serves many datagrams:
    /// a thread woken for every packet spends more on the wake-up than on the packet (the relay
    /// profile in docs/benchmarks.md). Busy means the datagram rate of the last 100 ms would
    /// bring at least two per pause (4,000 a second at the default 500 µs, some 40 calls). A
    /// quieter worker never waits here, so a few calls pay nothing; a busy one adds at most
    /// `coalesce_us` to a datagram's stay, and never past a room's deadline.
    fn coalesce(&mut self, deadline: Instant) {
        if self.coalesce.is_zero() {
            return;
        }
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.rate_since);
        if elapsed >= RATE_WINDOW {
            // Busy when a pause would gather at least a couple of datagrams at this rate.
            self.busy =
                self.read_count as u128 * self.coalesce.as_nanos() >= COALESCE_MIN_PER_PAUSE * elapsed.as_nanos();
            self.read_count = 0;
            self.rate_since = now;
        }
        if !self.busy {
            return;
        }
        let pause = self.coalesce.min(deadline.saturating_duration_since(now));
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }

    /// Brings the worker in line with what a room call changed: the next deadline, the paced
    /// legs, and what the room reported (`publish`).
    fn after_room_call(&mut self, idx: usize) {
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        self.next_room_deadline = self.next_room_deadline.min(entry.room.poll_timeout());
        if entry.room.pacing_epoch() != entry.pacing_seen {
            self.repace(idx);
        }
        self.publish(idx);
    }

    fn housekeeping(&mut self, now: Instant) {
        let mut gauges = RoomGauges::default();
        let mut expired = Vec::new();
        for (idx, entry) in self.rooms.iter_mut().enumerate() {
            let Some(entry) = entry else { continue };
            self.metrics.add_room_stats(&entry.room.take_stats());
            gauges.add(&entry.room.gauges());
            if entry.room.is_expired(now) {
                expired.push(idx);
            }
        }
        for idx in expired {
            if let Some(entry) = self.rooms[idx].as_ref() {
                info!(room = %entry.room.id(), "empty room removed after its timeout");
            }
            self.finish_room(idx, FinishReason::Empty);
        }
        if self.unknown_source > 0 {
            self.metrics.dropped.with(DropReason::UnknownSource).inc_by(self.unknown_source);
            self.unknown_source = 0;
        }
        if self.sockets.out.errors > 0 {
            self.metrics.dropped.with(DropReason::Send).inc_by(self.sockets.out.errors);
            self.sockets.out.errors = 0;
        }
        if self.oversize > 0 {
            self.metrics.dropped.with(DropLabel::Oversize).inc_by(self.oversize);
            self.oversize = 0;
        }
        self.metrics.set_gauges(self.room_index.len(), &gauges);
        self.metrics.mixer_paced_legs.set(self.rooms.iter().flatten().map(|e| e.paced.len() as i64).sum());
    }

    /// Returns true when the worker should stop.
    fn drain_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Shutdown { reply }) => {
                    self.shutdown();
                    let _ = reply.send(());
                    return true;
                }
                Ok(cmd) => {
                    self.rescan_deadlines = true;
                    self.handle_command(cmd);
                }
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => {
                    self.shutdown();
                    return true;
                }
            }
        }
    }

    fn shutdown(&mut self) {
        self.shutting_down = true;
        let now = Instant::now();
        for idx in 0..self.rooms.len() {
            if let Some(entry) = self.rooms[idx].as_mut() {
                entry.room.close_all(now, LeaveReason::Shutdown, &mut self.sockets);
            }
            self.after_room_call(idx);
            // Removed, so the last housekeeping below cannot also find it empty and finish it
            // a second time.
            self.finish_room(idx, FinishReason::Shutdown);
        }
        self.housekeeping(now);
        info!("media worker stopped");
    }
}
