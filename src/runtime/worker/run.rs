//! One worker's loop: wait for IO or the next deadline, read what arrived, wake the rooms whose
//! deadline came, carry out commands, and every 500 ms tidy up and report, until told to stop.

use super::{Worker, TIMER, WAKER, WEBRTC};
use crate::core::stats::RoomGauges;
use crate::core::{FinishReason, LeaveReason};
use crate::metrics::{DropLabel, WorkerGauges, WorkerLabel};
use crate::runtime::command::Command;
use crate::runtime::os_thread;
use mio::Events;
use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};
use switchboard_driver::DropReason;
use tracing::{info, info_span, warn};

pub(super) const HOUSEKEEPING: Duration = Duration::from_millis(500);
/// How far past a deadline mio's own timeout would wake the worker if the timerfd did not.
const TIMER_BACKSTOP: Duration = Duration::from_millis(5);
/// How often the worker decides whether it is busy enough to coalesce (see `coalesce`).
const RATE_WINDOW: Duration = Duration::from_millis(100);
/// Datagrams expected per coalescing pause from which pausing pays: below two, most pauses
/// would end in a wake-up for a single datagram anyway.
const COALESCE_MIN_PER_PAUSE: u128 = 2;

/// Within a turn, how long after the last scan of the rooms' deadlines the worker scans again
/// between two sockets' reads. A scan visits every room, and on a node of many rooms some
/// deadline is always due: scanning before every socket would cost rooms × sockets a turn.
const MID_TURN_SCAN_GAP: Duration = Duration::from_millis(1);

impl Worker {
    /// Runs until a `Shutdown` command has been carried out. A panic outside any participant (a
    /// participant's own is caught inside its room) ends the loop: the worker then closes what it
    /// held (`fail`) and its thread ends, while the other workers go on.
    pub fn run(mut self) {
        // Every line this thread logs names its worker; entered once, for the thread's life.
        let span = info_span!("worker", index = self.index);
        let _entered = span.enter();
        if catch_unwind(AssertUnwindSafe(|| self.run_loop())).is_err() {
            self.fail();
        }
    }

    fn run_loop(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
        loop {
            let now = Instant::now();
            // Housekeeping wakes the loop at least every 500 ms, so an idle worker still beats.
            self.status().heartbeat.beat(now);
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

    /// Wakes the rooms whose deadline has passed and finds the next one. The scan is over every
    /// room, so it runs only when a deadline is due or a command may have moved one; a packet
    /// that moves a deadline earlier lowers `next_room_deadline` in `after_room_call`.
    pub(super) fn fire_room_timeouts(&mut self, now: Instant) {
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
                self.kernel_catch_up(idx);
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

    /// Between two sockets' reads: wakes the rooms whose deadline has passed, if one has and the
    /// last scan is at least `MID_TURN_SCAN_GAP` old.
    fn fire_due_deadlines(&mut self) {
        let now = Instant::now();
        if now >= self.next_room_deadline && now >= self.last_scan + MID_TURN_SCAN_GAP {
            self.fire_room_timeouts(now);
        }
    }

    /// Reads on the sockets that used up their budget last turn.
    fn read_backlog(&mut self) {
        if std::mem::take(&mut self.webrtc_backlog) {
            self.read_webrtc();
        }
        for token in std::mem::take(&mut self.leg_backlog) {
            self.fire_due_deadlines();
            // A leg that became paced meanwhile is read at its room's deadline instead.
            if self.legs.get(&token).is_some_and(|l| !l.is_paced()) {
                self.read_leg(token, false);
            }
        }
    }

    /// Brings the worker in line with what a room call changed: the next deadline, the paced
    /// legs, and what the room reported (`publish`).
    pub(super) fn after_room_call(&mut self, idx: usize) {
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        self.next_room_deadline = self.next_room_deadline.min(entry.room.poll_timeout());
        if entry.room.pacing_epoch() != entry.pacing_seen {
            self.repace(idx);
        }
        self.kernel_review(idx);
        self.publish(idx);
    }

    pub(super) fn housekeeping(&mut self, now: Instant) {
        self.review_floods();
        let mut gauges = RoomGauges::default();
        let mut expired = Vec::new();
        // What the kernel forwarded goes into the rooms' counters before they are harvested.
        for idx in 0..self.rooms.len() {
            self.kernel_catch_up(idx);
        }
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
        let paced = self.rooms.iter().flatten().map(|e| e.paced.len()).sum();
        let report = WorkerGauges {
            rooms: self.room_index.len(),
            paced,
            port_pairs: self.ports.capacity(),
            port_pairs_free: self.ports.available(now),
            gauges,
        };
        self.metrics.set_worker_gauges(self.index, report);
        self.publish_load(now);
    }

    /// Tells placement how loaded this worker is: its participants, and its CPU share since the
    /// last housekeeping (the thread's CPU time over the wall time between the two readings).
    fn publish_load(&mut self, now: Instant) {
        self.status().set_participants(self.participant_count());
        let Some(cpu) = os_thread::cpu_time() else { return };
        // The thread's CPU time counts from its start, so the first reading is all new.
        let counted = self.cpu_sample.map_or(Duration::ZERO, |(c, _)| c);
        self.metrics.worker_cpu.with(WorkerLabel(self.index)).inc_by(cpu.saturating_sub(counted).as_secs_f64());
        if let Some((cpu0, t0)) = self.cpu_sample {
            let wall = now.saturating_duration_since(t0).as_micros().max(1);
            let used = cpu.saturating_sub(cpu0).as_micros();
            self.status().set_cpu_permille(u32::try_from(used * 1000 / wall).unwrap_or(u32::MAX));
        }
        self.cpu_sample = Some((cpu, now));
    }

    pub(super) fn participant_count(&self) -> usize {
        self.rooms.iter().flatten().map(|e| e.room.len()).sum()
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
                    let room = cmd.room().cloned();
                    // A view or an ng query reads counters; any command may change a route.
                    if let Some(idx) = room.as_ref().and_then(|r| self.room_index.get(r).copied()) {
                        self.kernel_catch_up(idx);
                    }
                    self.handle_command(cmd);
                    // The API counted it in flight when it routed it here (`Placement::route`).
                    if let Some(room) = room {
                        self.shared.placement.settle(&room);
                    }
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
        info!(worker = self.index, "media worker stopped");
    }
}
