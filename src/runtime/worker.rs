//! The media worker: one thread that owns every room and every media socket.
//!
//! It is the IO shell around the sans-IO core: it reads datagrams, hands them to rooms with the
//! current time, wakes rooms at their deadlines, and carries out the API's commands. Nothing else
//! touches a room, so the packet path takes no locks.

use super::batch::{stamp_arrivals, RecvBatch, BATCH};
use super::command::{Command, CommandError, EventFrame, JoinRequest, Joined};
use super::drivers::{self, LegPorts};
use super::ports::PortPool;
use super::sdp_kind::kind_of_offer;
use super::sockets::Sockets;
use super::timer::DeadlineTimer;
use crate::config::Config;
use crate::core::stats::RoomGauges;
use crate::core::{Joining, LeaveReason, MixerSettings, Room, RoomConfig, RoomError, RoomEvent};
use crate::metrics::{DropLabel, Metrics};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use switchboard_driver::{DropReason, NegotiationError, ParticipantId, ParticipantKind, RoomId};
use tokio::sync::broadcast;
use tracing::{info, info_span, warn};

pub const WAKER: Token = Token(0);
const WEBRTC: Token = Token(1);
const TIMER: Token = Token(2);
const FIRST_LEG: usize = 3;
const HOUSEKEEPING: Duration = Duration::from_millis(500);
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
}

/// The sockets of one rtp/srtp leg.
struct Leg {
    room: usize,
    participant: ParticipantId,
    local: SocketAddr,
    /// The leg's RTP socket (the other is its RTCP socket, which is never paced).
    rtp: bool,
    paced: bool,
    /// The latest arrival time handed to the room for this socket, so a paced read never goes
    /// back in time.
    last_arrival: Instant,
}

pub struct Worker {
    cfg: Config,
    poll: Poll,
    sockets: Sockets,
    webrtc_local: SocketAddr,
    rooms: Vec<Option<RoomEntry>>,
    room_index: HashMap<RoomId, usize>,
    /// Shared-socket demux: remote address to the participant that accepted it.
    peers: HashMap<SocketAddr, (usize, ParticipantId)>,
    legs: FxHashMap<Token, Leg>,
    leg_ports: HashMap<ParticipantId, (u16, [Token; 2])>,
    next_token: usize,
    ports: PortPool,
    commands: Receiver<Command>,
    metrics: Arc<Metrics>,
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
    /// Wakes the poller at the next deadline to the microsecond; without it (no timerfd), mio's
    /// millisecond timeout does, late by up to a millisecond.
    timer: Option<DeadlineTimer>,
    /// Reused by `read_paced` for its copy of a room's paced tokens.
    paced_scratch: Vec<Token>,
}

impl Worker {
    pub fn new(cfg: Config, poll: Poll, commands: Receiver<Command>, metrics: Arc<Metrics>) -> std::io::Result<Worker> {
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
            ports: PortPool::new(cfg.rtp.port_min, cfg.rtp.port_max),
            cfg,
            poll,
            sockets: Sockets::new(webrtc),
            webrtc_local,
            rooms: Vec::new(),
            room_index: HashMap::new(),
            peers: HashMap::new(),
            legs: FxHashMap::default(),
            leg_ports: HashMap::new(),
            next_token: FIRST_LEG,
            commands,
            metrics,
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
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != ErrorKind::Interrupted {
                    warn!(error = %e, "poll failed");
                }
                continue;
            }
            for ev in events.iter() {
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
        }
    }

    /// Wakes the rooms whose deadline has passed and finds the next one. The scan is over every
    /// room, so it runs only when a deadline is due or a command may have moved one; a packet
    /// that moves a deadline earlier lowers `next_room_deadline` in `after_room_call`.
    fn fire_room_timeouts(&mut self, now: Instant) {
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
                    entry.room.handle_timeout(now, &mut self.sockets);
                }
            }
            self.after_room_call(idx);
        }
    }

    /// Reads a room's paced legs, just before its deadline is handled. Each datagram carries the
    /// time the kernel stamped on its arrival, so the mixer's jitter buffer sees the true arrival
    /// pattern, and the mix made at this deadline has every packet it would have had if each had
    /// been read as it came.
    fn read_paced(&mut self, idx: usize) {
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) else { return };
        // A copy: a call below may re-pace the room (a leave reroutes it) or free a leg.
        let mut tokens = std::mem::take(&mut self.paced_scratch);
        tokens.clear();
        tokens.extend_from_slice(&entry.paced);
        for &token in &tokens {
            self.read_leg(token, true);
        }
        self.paced_scratch = tokens;
    }

    /// Brings a room's paced legs in line with what the room says: a leg whose media only the
    /// mixer takes leaves the poller; one that is forwarded anywhere comes back to it. Runs only
    /// when the room's pacing epoch moved (routes changed), or a leg joined.
    fn repace(&mut self, idx: usize) {
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) else { return };
        entry.pacing_seen = entry.room.pacing_epoch();
        for (&token, leg) in self.legs.iter_mut().filter(|(_, l)| l.room == idx && l.rtp) {
            let want = entry.room.is_mixer_paced(leg.participant);
            if want == leg.paced {
                continue;
            }
            let Some(sock) = self.sockets.legs.get_mut(&leg.local) else { continue };
            // Without stamps a paced read would see every arrival at the room's deadline: a leg
            // whose socket cannot stamp stays in the poller.
            if want && stamp_arrivals(sock.as_raw_fd(), true).is_err() {
                continue;
            }
            let moved = match want {
                true => self.poll.registry().deregister(sock),
                // Edge-triggered, but registering reports what is already queued.
                false => self.poll.registry().register(sock, token, Interest::READABLE),
            };
            if moved.is_err() {
                continue;
            }
            if !want {
                let _ = stamp_arrivals(sock.as_raw_fd(), false);
            }
            leg.paced = want;
            match want {
                true => entry.paced.push(token),
                false => entry.paced.retain(|t| *t != token),
            }
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

    fn read_webrtc(&mut self) {
        let now = Instant::now();
        let fd = self.sockets.webrtc.as_raw_fd();
        let dst = self.webrtc_local;
        loop {
            let n = match self.recv.recv(fd) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock: drained. Anything else on an unconnected UDP socket would repeat
                // forever if retried; what is still queued is read at the next readiness.
                Err(_) => break,
            };
            self.read_count += n;
            for i in 0..n {
                let Some((data, src)) = self.recv.get(i) else {
                    self.oversize += 1;
                    continue;
                };
                // Only a STUN binding request (first byte 0 or 1) can start a new WebRTC session,
                // so stray traffic from unknown addresses costs no scan of the rooms.
                let target = match self.peers.get(&src) {
                    Some(&t) => Some(t),
                    None if data.first().is_some_and(|b| *b < 2) => {
                        find_peer(&self.rooms, &mut self.peers, src, dst, data)
                    }
                    None => None,
                };
                match target {
                    Some((idx, pid)) => {
                        if let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) {
                            entry.room.handle_receive(now, pid, src, dst, data, &mut self.sockets);
                            self.after_room_call(idx);
                        }
                    }
                    None => self.unknown_source += 1,
                }
            }
            if n < BATCH {
                break;
            }
        }
    }

    /// Drains one leg's socket. On arrival (`paced` false) every datagram is handed over at the
    /// time of the read; a paced leg's carry their kernel arrival stamps, kept from going back in
    /// time and from running ahead of the read (a wall clock can step).
    fn read_leg(&mut self, token: Token, paced: bool) {
        let Some(leg) = self.legs.get(&token) else {
            return;
        };
        let (idx, pid, local, mut last) = (leg.room, leg.participant, leg.local, leg.last_arrival);
        let now = Instant::now();
        let wall = match paced {
            true => SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default(),
            false => Duration::ZERO,
        };
        while let Some(sock) = self.sockets.legs.get(&local) {
            let n = match self.recv.recv(sock.as_raw_fd()) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock: drained. Anything else on an unconnected UDP socket would repeat
                // forever if retried; what is still queued is read at the next readiness.
                Err(_) => break,
            };
            if !paced {
                // Coalescing is about wake-ups, and a paced read causes none.
                self.read_count += n;
            }
            if let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) {
                for i in 0..n {
                    let at = match paced {
                        true => {
                            let age = self.recv.stamp(i).map_or(Duration::ZERO, |t| wall.saturating_sub(t));
                            last = now.checked_sub(age).unwrap_or(now).max(last).min(now);
                            last
                        }
                        false => now,
                    };
                    match self.recv.get(i) {
                        Some((data, src)) => entry.room.handle_receive(at, pid, src, local, data, &mut self.sockets),
                        None => self.oversize += 1,
                    }
                }
            }
            if n < BATCH {
                break;
            }
        }
        if let Some(leg) = self.legs.get_mut(&token).filter(|_| paced) {
            leg.last_arrival = last;
        }
        self.after_room_call(idx);
    }

    /// Publishes what a room reported and frees what its departed participants held.
    fn after_room_call(&mut self, idx: usize) {
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        self.next_room_deadline = self.next_room_deadline.min(entry.room.poll_timeout());
        if entry.room.pacing_epoch() != entry.pacing_seen {
            self.repace(idx);
        }
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if !entry.room.has_news() {
            return;
        }
        let listening = entry.events.receiver_count() > 0;
        let room_id = entry.room.id().clone();
        for ev in entry.room.take_events() {
            if let RoomEvent::ParticipantLeft { reason, participant_id } = &ev {
                self.metrics.participants_left.with(*reason).inc();
                let reason = serde_json::to_value(reason).ok();
                let reason = reason.as_ref().and_then(|v| v.as_str()).unwrap_or("unknown");
                info!(room = %room_id, participant = %participant_id, reason, "participant left");
            }
            if listening {
                // RoomEvent is plain data; serializing it cannot fail.
                let data = serde_json::to_string(&ev).unwrap_or_default();
                let _ = entry.events.send(Arc::new(EventFrame { name: ev.name(), data }));
            }
        }
        let closed: Vec<ParticipantId> = entry.room.take_closed().collect();
        for pid in closed {
            self.peers.retain(|_, (_, p)| *p != pid);
            self.free_leg(pid);
        }
    }

    fn free_leg(&mut self, pid: ParticipantId) {
        let Some((port, tokens)) = self.leg_ports.remove(&pid) else {
            return;
        };
        // Queued datagrams name sockets by descriptor; send them before the descriptor can be
        // closed and reused.
        self.sockets.flush();
        for token in tokens {
            if let Some(leg) = self.legs.remove(&token) {
                if let Some(mut sock) = self.sockets.legs.remove(&leg.local) {
                    if !leg.paced {
                        let _ = self.poll.registry().deregister(&mut sock);
                    }
                }
                if let Some(entry) = self.rooms.get_mut(leg.room).and_then(Option::as_mut) {
                    entry.paced.retain(|t| *t != token);
                }
            }
        }
        self.ports.release(port);
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
            if let Some(entry) = self.rooms[idx].take() {
                info!(room = %entry.room.id(), "empty room removed after its timeout");
                self.room_index.remove(entry.room.id());
            }
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
        }
        self.housekeeping(now);
        info!("media worker stopped");
    }

    fn room_idx(&self, room: &RoomId) -> Result<usize, CommandError> {
        self.room_index.get(room).copied().ok_or_else(|| CommandError::RoomNotFound(room.to_string()))
    }

    fn room(&mut self, room: &RoomId) -> Result<(usize, &mut Room), CommandError> {
        let idx = self.room_idx(room)?;
        let entry = self.rooms[idx].as_mut().ok_or_else(|| CommandError::RoomNotFound(room.to_string()))?;
        Ok((idx, &mut entry.room))
    }

    /// Runs `f` on a room with the sockets beside it, then publishes what the room reported.
    fn with_room<R>(&mut self, room: &RoomId, f: impl FnOnce(&mut Room, &mut Sockets) -> R) -> Result<R, CommandError> {
        let idx = self.room_idx(room)?;
        let entry = self.rooms[idx].as_mut().ok_or_else(|| CommandError::RoomNotFound(room.to_string()))?;
        let r = f(&mut entry.room, &mut self.sockets);
        self.after_room_call(idx);
        Ok(r)
    }

    fn create_room(&mut self, id: Option<RoomId>, max: Option<usize>) -> Result<usize, CommandError> {
        if self.shutting_down {
            return Err(CommandError::ShuttingDown);
        }
        let id = match id {
            Some(id) => id,
            None => RoomId::new(&format!("room-{:012x}", rand::random::<u64>() >> 16))
                .ok_or_else(|| CommandError::BadRequest("could not make a room id".into()))?,
        };
        if self.room_index.contains_key(&id) {
            return Err(CommandError::RoomExists(id.to_string()));
        }
        let cfg = RoomConfig {
            max_participants: max.unwrap_or(self.cfg.rooms.max_participants),
            inactivity_timeout: self.cfg.inactivity_timeout(),
            empty_timeout: self.cfg.empty_room_timeout(),
            mixer: MixerSettings {
                factory: drivers::mixer_factory(),
                speakers: self.cfg.mixer.speakers,
                jitter_buffer_ms: self.cfg.mixer.jitter_buffer_ms,
                jitter_buffer_max_ms: self.cfg.mixer.jitter_buffer_max_ms,
                video: switchboard_driver::VideoSettings {
                    width: self.cfg.mixer.composite_width,
                    height: self.cfg.mixer.composite_height,
                    fps: self.cfg.mixer.composite_fps,
                    kbps: self.cfg.mixer.composite_kbps,
                },
            },
        };
        info!(room = %id, "room created");
        let room = Room::new(id.clone(), cfg, Instant::now());
        let (events, _) = broadcast::channel(1024);
        let idx = match self.rooms.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.rooms.push(None);
                self.rooms.len() - 1
            }
        };
        self.rooms[idx] = Some(RoomEntry { room, events, pacing_seen: 0, paced: Vec::new() });
        self.room_index.insert(id, idx);
        Ok(idx)
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::CreateRoom { id, max_participants, reply } => {
                let r = self.create_room(id, max_participants).map(|idx| {
                    let mut v = self.rooms[idx].as_ref().map(|e| e.room.view()).expect("room was just created");
                    v.participants = None;
                    v
                });
                let _ = reply.send(r);
            }
            Command::ListRooms { reply } => {
                let mut rooms: Vec<_> = self.rooms.iter().flatten().map(|e| e.room.view()).collect();
                rooms.sort_by(|a, b| a.id.cmp(&b.id));
                let _ = reply.send(Ok(rooms));
            }
            Command::GetRoom { room, reply } => {
                let _ = reply.send(self.room(&room).map(|(_, r)| r.view()));
            }
            Command::DeleteRoom { room, reply } => {
                let r = self.room_idx(&room).map(|idx| {
                    if let Some(entry) = self.rooms[idx].as_mut() {
                        entry.room.close_all(Instant::now(), LeaveReason::Requested, &mut self.sockets);
                        self.metrics.add_room_stats(&entry.room.take_stats());
                    }
                    self.after_room_call(idx);
                    self.rooms[idx] = None;
                    self.room_index.remove(&room);
                    info!(room = %room, "room deleted");
                });
                let _ = reply.send(r);
            }
            Command::Join { room, request, reply } => {
                let _ = reply.send(self.join(room, request));
            }
            Command::Renegotiate { room, participant, sdp, reply } => {
                let span = info_span!("participant", room = %room, id = %participant);
                let _g = span.enter();
                let r = self.with_room(&room, |r, net| r.renegotiate(Instant::now(), participant, &sdp, net));
                let _ = reply.send(r.and_then(|o| o.map_err(map_room_error)));
            }
            Command::GetParticipant { room, participant, reply } => {
                let r = self
                    .room(&room)
                    .and_then(|(_, r)| r.participant_view(participant).ok_or(CommandError::ParticipantNotFound));
                let _ = reply.send(r);
            }
            Command::Leave { room, participant, reply } => {
                let r =
                    self.with_room(&room, |r, net| r.leave(Instant::now(), participant, LeaveReason::Requested, net));
                let r = match r {
                    Ok(true) => {
                        info!(room = %room, participant = %participant, "participant left on request");
                        Ok(())
                    }
                    Ok(false) => Err(CommandError::ParticipantNotFound),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Command::Dtmf { room, participant, digits, duration_ms, reply } => {
                let r =
                    self.with_room(&room, |r, net| r.send_dtmf(Instant::now(), participant, &digits, duration_ms, net));
                let _ = reply.send(r.and_then(|o| o.map_err(map_room_error)));
            }
            Command::Subscribe { room, reply } => {
                let r = self.room_idx(&room).and_then(|idx| {
                    self.rooms[idx]
                        .as_ref()
                        .map(|e| e.events.subscribe())
                        .ok_or_else(|| CommandError::RoomNotFound(room.to_string()))
                });
                let _ = reply.send(r);
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn join(&mut self, room: RoomId, req: JoinRequest) -> Result<Joined, CommandError> {
        if self.shutting_down {
            return Err(CommandError::ShuttingDown);
        }
        let kind = match (&req.sdp, req.kind) {
            (Some(sdp), hint) => {
                let found = kind_of_offer(sdp).map_err(CommandError::BadSdp)?;
                if let Some(hint) = hint.filter(|h| *h != found) {
                    return Err(CommandError::KindMismatch(format!(
                        "kind is {} but the offer's transport profile is {}'s",
                        hint.as_str(),
                        found.as_str()
                    )));
                }
                found
            }
            (None, Some(kind)) => kind,
            (None, None) => {
                return Err(CommandError::BadRequest(
                    "a join without sdp must name its kind (rtp or srtp), and the bridge makes the offer".into(),
                ))
            }
        };
        let (idx, created) = match self.room_idx(&room) {
            Ok(idx) => (idx, false),
            Err(_) if self.cfg.rooms.auto_create => (self.create_room(Some(room.clone()), None)?, true),
            Err(e) => return Err(e),
        };
        let result = self.join_in(idx, kind, req);
        if result.is_err() && created {
            // A failed join creates nothing, not even the room it would have created.
            self.rooms[idx] = None;
            self.room_index.remove(&room);
        }
        result
    }

    fn join_in(&mut self, idx: usize, kind: ParticipantKind, req: JoinRequest) -> Result<Joined, CommandError> {
        let now = Instant::now();
        // Zero is the mixer's id inside a room.
        let id = ParticipantId(rand::random::<u64>().max(1));
        let room_id = self.rooms[idx].as_ref().map(|e| e.room.id().clone()).ok_or(CommandError::ParticipantNotFound)?;
        let span = info_span!("participant", room = %room_id, id = %id, kind = kind.as_str());
        let _g = span.enter();
        let leg = match kind {
            ParticipantKind::Webrtc => None,
            ParticipantKind::Rtp | ParticipantKind::Srtp => Some(self.open_leg()?),
        };
        let driver = match drivers::make(kind, now, &self.cfg, self.webrtc_local, leg.as_ref()) {
            Ok(d) => d,
            Err(e) => {
                if let Some(leg) = leg {
                    self.close_leg(leg);
                }
                return Err(e);
            }
        };
        let joining = Joining { id, kind, display_name: req.display_name, audio: req.audio, video: req.video, driver };
        let entry = self.rooms[idx].as_mut().ok_or(CommandError::ParticipantNotFound)?;
        match entry.room.join(now, joining, req.sdp.as_deref(), &mut self.sockets) {
            Ok(sdp) => {
                let participant = entry.room.participant_view(id).ok_or(CommandError::ParticipantNotFound)?;
                if let Some(leg) = leg {
                    self.adopt_leg(idx, id, leg);
                }
                info!("participant joined");
                self.after_room_call(idx);
                Ok(Joined { participant, sdp })
            }
            Err(e) => {
                if let Some(leg) = leg {
                    self.close_leg(leg);
                }
                info!(error = %e, "join refused");
                Err(map_room_error(e))
            }
        }
    }

    /// Binds an even/odd port pair for a new leg.
    fn open_leg(&mut self) -> Result<LegPorts, CommandError> {
        let mut busy = Vec::new();
        let mut found = Err(CommandError::NoPorts);
        for _ in 0..self.ports.available() {
            let Some(port) = self.ports.take() else { break };
            let ip = self.cfg.rtp.bind_ip;
            match (UdpSocket::bind(SocketAddr::new(ip, port)), UdpSocket::bind(SocketAddr::new(ip, port + 1))) {
                (Ok(rtp), Ok(rtcp)) => {
                    found = Ok(LegPorts { port, rtp, rtcp });
                    break;
                }
                // Someone else holds it: skip it now, and offer it again to later joins.
                _ => {
                    warn!(port, "media port busy, skipped");
                    busy.push(port);
                }
            }
        }
        for port in busy {
            self.ports.release(port);
        }
        found
    }

    fn close_leg(&mut self, leg: LegPorts) {
        self.sockets.flush();
        self.ports.release(leg.port);
    }

    fn adopt_leg(&mut self, room: usize, participant: ParticipantId, leg: LegPorts) {
        let LegPorts { port, rtp, rtcp } = leg;
        let mut tokens = [Token(0); 2];
        for (i, mut sock) in [rtp, rtcp].into_iter().enumerate() {
            let token = Token(self.next_token);
            self.next_token += 1;
            let Ok(local) = sock.local_addr() else { continue };
            if self.poll.registry().register(&mut sock, token, Interest::READABLE).is_err() {
                continue;
            }
            let rtp = i == 0;
            tokens[i] = token;
            self.legs.insert(token, Leg { room, participant, local, rtp, paced: false, last_arrival: Instant::now() });
            self.sockets.legs.insert(local, sock);
        }
        self.leg_ports.insert(participant, (port, tokens));
        // The room decided the leg's routes before the leg was adopted: look again.
        if let Some(entry) = self.rooms.get_mut(room).and_then(Option::as_mut) {
            entry.pacing_seen = entry.room.pacing_epoch().wrapping_sub(1);
        }
    }
}

/// First datagram from an address: ask every room. Only STUN from a new address gets here; the
/// answer is cached, so the packet path never scans.
fn find_peer(
    rooms: &[Option<RoomEntry>],
    peers: &mut HashMap<SocketAddr, (usize, ParticipantId)>,
    src: SocketAddr,
    dst: SocketAddr,
    data: &[u8],
) -> Option<(usize, ParticipantId)> {
    for (idx, entry) in rooms.iter().enumerate() {
        if let Some(pid) = entry.as_ref().and_then(|e| e.room.find_acceptor(src, dst, data)) {
            peers.insert(src, (idx, pid));
            return Some((idx, pid));
        }
    }
    None
}

/// Asks for `bytes` of kernel buffer each way; the kernel caps it at net.core.[rw]mem_max. A
/// shared socket at the default 208 KiB overflows while one turn of the loop fans a packet out
/// to hundreds of subscribers. Returns what the kernel granted.
fn size_buffers(sock: &UdpSocket, bytes: usize) -> (usize, usize) {
    let sock = socket2::SockRef::from(sock);
    if bytes > 0 {
        let _ = sock.set_recv_buffer_size(bytes);
        let _ = sock.set_send_buffer_size(bytes);
    }
    (sock.recv_buffer_size().unwrap_or(0), sock.send_buffer_size().unwrap_or(0))
}

fn map_room_error(e: RoomError) -> CommandError {
    match e {
        RoomError::Full(n) => CommandError::RoomFull(n),
        RoomError::ParticipantNotFound => CommandError::ParticipantNotFound,
        RoomError::Negotiation(NegotiationError::KindMismatch(m)) => CommandError::KindMismatch(m),
        RoomError::Negotiation(NegotiationError::UnexpectedState(m)) => CommandError::BadRequest(m),
        RoomError::Negotiation(e) => CommandError::BadSdp(e.to_string()),
        RoomError::Write(e) => CommandError::BadRequest(e.to_string()),
    }
}

/// Lets the API reach the worker.
#[derive(Clone)]
pub struct Handle {
    tx: std::sync::mpsc::Sender<Command>,
    waker: Arc<Waker>,
}

impl Handle {
    pub fn new(tx: std::sync::mpsc::Sender<Command>, waker: Arc<Waker>) -> Handle {
        Handle { tx, waker }
    }

    pub async fn call<T>(&self, make: impl FnOnce(super::command::Reply<T>) -> Command) -> Result<T, CommandError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| CommandError::ShuttingDown)?;
        let _ = self.waker.wake();
        rx.await.map_err(|_| CommandError::ShuttingDown)?
    }

    pub async fn shutdown(&self) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Command::Shutdown { reply }).is_ok() {
            let _ = self.waker.wake();
            let _ = rx.await;
        }
    }
}
