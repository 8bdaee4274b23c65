//! An adaptive packet jitter buffer per mixer input. Packets leave in sequence order, one per
//! `pop`; a hole is a loss (the decoder conceals it); a packet older than what already played is
//! late and dropped. How long packets wait adapts between a minimum and a maximum delay.
//!
//! # Playout delay
//! The buffer keeps a *target* delay, starting at the minimum (`mixer.jitter_buffer_ms`). After
//! the first packet of a stream, or of a talk spurt after the sender paused, playout starts
//! `target` later, at the next mixer tick; from then on one packet leaves per frame the mixer
//! plays, so every packet waits as long as the first one did, less its own extra arrival jitter.
//! The delay is measured in the waits of the packets played (`pop` time less arrival): the
//! longest wait, the fastest packet's, is the playout delay; the shortest is the headroom left
//! for jitter. On a clean network the delay stays at the minimum plus the tick phase.
//!
//! # Growing: at once, a frame at a time
//! - A *late* packet (its turn has passed: dropped and counted `late`) means the delay is short
//!   of the jitter. The target rises by one frame (`frame`, the mixer's 20 ms tick) and playout
//!   *holds* for a frame: the next `pop` returns `Pop::Hold` (the decoder conceals one frame)
//!   without moving on, so every packet from then on waits a frame longer. Only a late packet
//!   that was due after the previous growth took effect grows the buffer again: the others of
//!   the same spike were behind before it, and counting each would overshoot.
//! - An *underrun* (the buffer ran dry at a packet's turn: `Pop::Empty`, as for a pause) followed
//!   by that packet within the maximum delay was a delay spike. The target rises by one frame and
//!   playout carries on from the lowest packet at its old turn or, if that has passed, at once:
//!   the stall itself has become delay, and nothing that arrived is dropped. When a later packet
//!   comes first, the awaited one was lost rather than delayed (with packets of 30 ms or more the
//!   buffer often holds just one, so a loss shows as an underrun, not a hole): playout carries
//!   on the same way, without growing. A longer gap is a pause (silence suppression, Opus DTX's
//!   400 ms, a muted sender), which no buffer within the maximum could have bridged: the target
//!   stays, and playout restarts `target` after the packet that ends it.
//! - The target never exceeds the maximum (`mixer.jitter_buffer_max_ms`); beyond it late packets
//!   are only dropped and counted. The delay itself is kept within a frame of the maximum: a
//!   packet about to play that has waited longer is dropped when the one after it is here (a
//!   burst after a long stall), so the buffer catches up.
//!
//! # Shrinking: slowly, one packet per calm window
//! Over a window of `SHRINK_WINDOW` (2 s, about 100 packets; any late packet or growth starts a
//! new one) the buffer notes the shortest and the longest wait. At the window's end the target
//! is set to the delay measured (the longest wait, to whole frames above the minimum: playout
//! that started on a packet that came late has more delay than its target), and the buffer drops
//! the oldest queued packet (skips it: the next one plays in its turn) and lowers the target by
//! that packet's duration, if both
//! - the shortest wait was at least one packet plus one frame: after the skip every packet of the
//!   window would still have arrived a frame early, so a repeat of the window's worst jitter is
//!   not late. For 20 ms packets these are the "two frames beyond what is needed"; and
//! - the longest wait was at least the minimum plus one packet: the delay stays at or above the
//!   minimum.
//!
//! Asymmetric on purpose: a late packet is an audible gap, so the buffer grows within a packet or
//! two; 20 ms of extra delay for a couple of seconds is not, so it gives a packet back every 2 s
//! at most, once the jitter that asked for it has not recurred for a whole window (from the
//! default maximum, 200 ms, to the minimum in under 20 s). The band where it neither grows nor
//! shrinks is two frames wide, so it does not oscillate. Two seconds is long enough to contain
//! the periodic stalls of a busy sender (a thread that wakes late now and then) and short enough
//! to give back the delay of a one-off spike within seconds.
//!
//! The packet duration is measured, not assumed: the window's length over the sequence numbers
//! it played, and before that what the payloads say (`set_packet_duration`). A hold adds one
//! 20 ms frame whatever the packet size; a skip removes one packet.
//!
//! # Everything else
//! A packet `CAPACITY` or more away from playout, ahead or behind, is a jump: the stream
//! restarted, and playout starts over from it. After an underrun, packets older than the awaited
//! one stay late for `FLOOR_TTL`, so a straggler is not played out of order. Payloads are copied
//! into recycled slots: a stream allocates nothing once the buffer has been as deep as it gets.
//! No input panics: sequence numbers can be anything.

use std::time::{Duration, Instant};

/// Ring slots: 2.56 s of 20 ms packets (1.28 s of 10 ms ones), above the largest allowed maximum
/// delay (1 s) plus its jitter. A packet this far from playout is a jump.
const CAPACITY: usize = 128;
/// Largest payload kept; anything bigger is not an audio packet.
const MTU: usize = 1500;
/// How long the buffer must have had room to spare before it gives back a packet of delay.
const SHRINK_WINDOW: Duration = Duration::from_secs(2);
/// Packets a shrink window must have played to count: a window of mostly losses says nothing.
const SHRINK_MIN_PACKETS: u32 = 20;
/// After an underrun, how long packets older than the awaited one are still late. After this a
/// lower sequence number starts a new stream (a sender that restarted just below).
const FLOOR_TTL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Entry {
    seq: u64,
    arrival: Instant,
    len: usize,
    data: [u8; MTU],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop<'a> {
    /// The next packet in order.
    Packet(&'a [u8]),
    /// Conceal one packet: the next packet is missing but later ones are here. `following` is
    /// the packet after it when that is already here: a codec with in-band redundancy (Opus FEC)
    /// can rebuild the lost one from it.
    Lost { following: Option<&'a [u8]> },
    /// Conceal one mixer frame: the buffer holds playout for a frame to grow its delay. Nothing
    /// was lost.
    Hold,
    /// Nothing to play yet (start-up or the sender paused).
    Empty,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets that arrived after their turn, dropped.
    pub late: u64,
    /// Packets missing at their turn while later ones were queued (holds are not counted).
    pub lost: u64,
}

/// What the buffer saw since a shrink window began.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// The window's first pop.
    start: Option<Instant>,
    /// Sequence numbers played or concealed after the first pop (holds excluded).
    advanced: u32,
    /// Packets played.
    packets: u32,
    /// The least and the most time a played packet waited in the buffer.
    min_wait: Duration,
    max_wait: Duration,
}

impl Window {
    const NEW: Window =
        Window { start: None, advanced: 0, packets: 0, min_wait: Duration::MAX, max_wait: Duration::ZERO };
}

/// The buffer ran dry at packet `seq`'s turn, at `at`.
#[derive(Debug, Clone, Copy)]
struct Stall {
    seq: u64,
    at: Instant,
    /// A packet has arrived since: the stall has been judged (spike or pause).
    resumed: bool,
    /// It was a delay spike: playout resumes as soon as there is a packet.
    spike: bool,
}

pub struct JitterBuffer {
    min: Duration,
    max: Duration,
    /// One played frame: what a hold adds to the delay.
    frame: Duration,
    target: Duration,
    slots: Vec<Option<Box<Entry>>>,
    /// Occupied slots.
    len: usize,
    /// The next sequence number to play, once playout has started.
    next: Option<u64>,
    /// Before playout starts: the lowest sequence number buffered, where it will start.
    fill_low: Option<u64>,
    /// When the buffer started filling after being empty.
    filling_since: Option<Instant>,
    stall: Option<Stall>,
    /// One packet's duration, as measured by the last shrink window or told by the payloads (one
    /// frame until then).
    packet: Duration,
    /// Frames to conceal before playing on.
    holds: u32,
    /// Late packets below this were due before the last growth took effect.
    grown_at: u64,
    window: Window,
    pub stats: JitterStats,
    /// The packet the last `Pop::Packet` borrows.
    popped: Option<Box<Entry>>,
    /// Recycled entries (its capacity is reserved up front, so recycling never allocates). Boxed:
    /// an entry moves between a slot, `popped` and here as a pointer, not as 1.5 kB.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Entry>>,
    #[cfg(test)]
    allocated: usize,
}

impl JitterBuffer {
    /// A buffer whose delay starts at `min` and adapts up to `max` (at least `min`) in steps of
    /// `frame`, the duration of one mixer frame.
    pub fn new(min: Duration, max: Duration, frame: Duration) -> JitterBuffer {
        JitterBuffer {
            min,
            max: max.max(min),
            frame,
            target: min,
            slots: (0..CAPACITY).map(|_| None).collect(),
            len: 0,
            next: None,
            fill_low: None,
            filling_since: None,
            stall: None,
            packet: frame,
            holds: 0,
            grown_at: 0,
            window: Window::NEW,
            stats: JitterStats::default(),
            popped: None,
            spare: Vec::with_capacity(CAPACITY + 1),
            #[cfg(test)]
            allocated: 0,
        }
    }

    /// The delay playout currently aims for.
    pub fn target(&self) -> Duration {
        self.target
    }

    /// How long the packets being received last, as their payloads say: playout after an
    /// underrun resumes at the turns this implies. Anything beyond 120 ms is no audio packet.
    pub fn set_packet_duration(&mut self, packet: Duration) {
        if !packet.is_zero() && packet <= Duration::from_millis(120) {
            self.packet = packet;
        }
    }

    /// Stores a packet. Copies the payload into a recycled slot, so a steady stream allocates
    /// nothing once the buffer has been as deep as it gets.
    pub fn push(&mut self, now: Instant, seq: u64, payload: &[u8]) {
        if payload.len() > MTU {
            return;
        }
        // Where the stream is: the next packet to play, else (after an underrun, for a while)
        // the packet the buffer waited for.
        if let Some(s) = self.stall {
            if self.next.is_none() && now.saturating_duration_since(s.at) > FLOOR_TTL {
                self.stall = None;
            }
        }
        if let Some(at) = self.next.or(self.stall.map(|s| s.seq)) {
            if seq < at {
                if at - seq < CAPACITY as u64 {
                    self.late(seq);
                    return;
                }
                // Far behind: the stream restarted with lower numbers. Start over from it.
                self.clear();
            } else if seq - at >= CAPACITY as u64 {
                // Far ahead: the stream jumped (restart, or a long silence). Start over from it.
                self.clear();
            }
        }
        if self.next.is_none() {
            if let Some(low) = self.fill_low {
                if seq.abs_diff(low) >= CAPACITY as u64 {
                    self.clear();
                }
            }
        }
        if let Some(s) = &mut self.stall {
            if !s.resumed {
                s.resumed = true;
                // Back within what the buffer may hold: a delay spike, not a pause; or, when a
                // later packet comes first, a loss, which needs no more delay.
                if seq >= s.seq && now.saturating_duration_since(s.at) <= self.max {
                    s.spike = true;
                    if seq == s.seq {
                        let at = s.seq;
                        self.grow(at, false);
                    }
                }
            }
        }
        if self.next.is_none() {
            if self.len == 0 && self.filling_since.is_none() {
                self.filling_since = Some(now);
            }
            self.fill_low = Some(self.fill_low.map_or(seq, |l| l.min(seq)));
        }
        let i = slot(seq);
        let mut entry = match self.slots[i].take() {
            Some(e) => e,
            None => {
                self.len += 1;
                match self.spare.pop() {
                    Some(e) => e,
                    None => {
                        #[cfg(test)]
                        {
                            self.allocated += 1;
                        }
                        Box::new(Entry { seq: 0, arrival: now, len: 0, data: [0; MTU] })
                    }
                }
            }
        };
        entry.seq = seq;
        entry.arrival = now;
        entry.len = payload.len();
        entry.data[..payload.len()].copy_from_slice(payload);
        self.slots[i] = Some(entry);
    }

    /// A packet whose turn has passed: dropped, counted, and a sign the delay is too short.
    fn late(&mut self, seq: u64) {
        self.stats.late += 1;
        // Whatever happens, this window was not calm.
        self.window = Window::NEW;
        if seq >= self.grown_at {
            match self.next {
                Some(next) => self.grow(next, true),
                // Between talk spurts: the restart will wait the new target.
                None => self.grow(self.stall.map_or(seq.saturating_add(1), |s| s.seq), false),
            }
        }
    }

    /// Raises the target by one frame, holding playout for that frame if it is running.
    /// Late packets below `due` were due before this growth takes effect.
    fn grow(&mut self, due: u64, hold: bool) {
        let Some(target) = self.target.checked_add(self.frame) else { return };
        if self.frame.is_zero() || target > self.max {
            return;
        }
        self.target = target;
        if hold {
            self.holds += 1;
        }
        self.grown_at = due;
        self.window = Window::NEW;
    }

    /// The target that explains a playout delay of `wait` for the fastest packets: the minimum plus
    /// whole frames, within the maximum.
    fn measured(&self, wait: Duration) -> Duration {
        if self.frame.is_zero() || wait <= self.min {
            return self.min;
        }
        let frames = (wait - self.min).as_micros() / self.frame.as_micros();
        let above = self.frame.saturating_mul(u32::try_from(frames).unwrap_or(u32::MAX));
        self.min.saturating_add(above).min(self.max)
    }

    fn holds_seq(&self, seq: u64) -> bool {
        matches!(&self.slots[slot(seq)], Some(e) if e.seq == seq)
    }

    fn recycle(&mut self, e: Box<Entry>) {
        if self.spare.len() < self.spare.capacity() {
            self.spare.push(e);
        }
    }

    fn clear(&mut self) {
        for i in 0..CAPACITY {
            if let Some(e) = self.slots[i].take() {
                self.recycle(e);
            }
        }
        self.len = 0;
        self.next = None;
        self.fill_low = None;
        self.filling_since = None;
        self.stall = None;
        self.holds = 0;
        self.grown_at = 0;
        self.window = Window::NEW;
    }

    /// Drops the oldest packets while they have waited a frame longer than the maximum delay (a
    /// burst after a long stall, or playout that started on a packet that came very late), as long
    /// as the one after is here too. Returns the packet to play.
    fn trim(&mut self, now: Instant, mut next: u64) -> u64 {
        let limit = self.max.saturating_add(self.frame);
        loop {
            let after = next.saturating_add(1);
            let stale = matches!(&self.slots[slot(next)], Some(e) if e.seq == next
                && now.saturating_duration_since(e.arrival) >= limit);
            if !stale || after == next || !self.holds_seq(after) {
                return next;
            }
            if let Some(e) = self.slots[slot(next)].take() {
                self.len -= 1;
                self.recycle(e);
            }
            self.window = Window::NEW;
            next = after;
        }
    }

    /// At the end of a calm window, skips the oldest packet and returns the one to play instead.
    fn shrink(&mut self, now: Instant, next: u64) -> u64 {
        let w = self.window;
        let Some(start) = w.start else { return next };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < SHRINK_WINDOW {
            return next;
        }
        if w.packets < SHRINK_MIN_PACKETS || w.advanced == 0 {
            self.window = Window::NEW;
            return next;
        }
        // One packet's duration, to the millisecond.
        let packet = Duration::from_millis(((elapsed.as_micros() / w.advanced as u128 + 500) / 1000) as u64);
        self.packet = packet;
        // The delay playout actually has: what the fastest packet waited, less the tick phase.
        // It differs from the target when playout started on a packet that came late.
        self.target = self.measured(w.max_wait);
        let spare = w.min_wait >= packet.saturating_add(self.frame);
        let above_min = w.max_wait >= self.min.saturating_add(packet);
        if !(spare && above_min) {
            self.window = Window::NEW;
            return next;
        }
        // Skip only when the packet after it is here too; else try again at the next pop.
        let after = next.saturating_add(1);
        if after == next || !self.holds_seq(next) || !self.holds_seq(after) {
            return next;
        }
        if let Some(e) = self.slots[slot(next)].take() {
            self.len -= 1;
            self.recycle(e);
        }
        self.target = self.target.saturating_sub(packet).max(self.min);
        self.window = Window::NEW;
        after
    }

    /// The frame to play now.
    pub fn pop(&mut self, now: Instant) -> Pop<'_> {
        let next = match self.next {
            Some(n) => n,
            None => {
                let (Some(since), Some(low)) = (self.filling_since, self.fill_low) else {
                    return Pop::Empty;
                };
                // After a spike, playout carries on where it left off, later by the stall: the
                // lowest packet here plays at its old turn or, if that has passed, now. After a
                // pause, playout waits the target.
                let start = match self.stall {
                    Some(s) if s.spike => {
                        let turns = u32::try_from(low.saturating_sub(s.seq)).unwrap_or(u32::MAX);
                        s.at.checked_add(self.packet.saturating_mul(turns))
                    }
                    _ => since.checked_add(self.target),
                };
                match start {
                    Some(start) if now >= start => {}
                    _ => return Pop::Empty,
                }
                self.next = Some(low);
                self.fill_low = None;
                self.filling_since = None;
                self.stall = None;
                self.window = Window::NEW;
                low
            }
        };
        if self.holds > 0 {
            self.holds -= 1;
            return Pop::Hold;
        }
        let next = self.trim(now, next);
        let next = self.shrink(now, next);
        match self.window.start {
            None => self.window.start = Some(now),
            Some(_) => self.window.advanced = self.window.advanced.saturating_add(1),
        }
        let i = slot(next);
        if self.holds_seq(next) {
            if let Some(e) = self.slots[i].take() {
                self.len -= 1;
                self.next = Some(next.saturating_add(1));
                let wait = now.saturating_duration_since(e.arrival);
                let w = &mut self.window;
                w.packets = w.packets.saturating_add(1);
                w.min_wait = w.min_wait.min(wait);
                w.max_wait = w.max_wait.max(wait);
                if let Some(old) = self.popped.take() {
                    self.recycle(old);
                }
                let e = self.popped.insert(e);
                return Pop::Packet(&e.data[..e.len]);
            }
        }
        if self.len == 0 {
            // Ran dry: the sender paused, or a spike holds its packets back. Wait for it, and
            // buffer again when it resumes.
            self.stall = Some(Stall { seq: next, at: now, resumed: false, spike: false });
            self.next = None;
            self.fill_low = None;
            self.filling_since = None;
            self.window = Window::NEW;
            return Pop::Empty;
        }
        let after = next.saturating_add(1);
        self.next = Some(after);
        self.stats.lost += 1;
        let following = match &self.slots[slot(after)] {
            Some(e) if e.seq == after => Some(&e.data[..e.len]),
            _ => None,
        };
        Pop::Lost { following }
    }
}

fn slot(seq: u64) -> usize {
    (seq % CAPACITY as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const FRAME: Duration = Duration::from_millis(20);

    fn fixed(delay: u64) -> JitterBuffer {
        JitterBuffer::new(ms(delay), ms(delay), FRAME)
    }

    fn adaptive() -> JitterBuffer {
        JitterBuffer::new(ms(20), ms(200), FRAME)
    }

    use switchboard_driver::testing::Rng;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Played {
        /// The packet, and how long after it was sent it played.
        Packet {
            seq: u64,
            delay: Duration,
        },
        Lost,
        Empty,
    }

    /// What a simulated call did, tick by tick.
    struct Trace {
        /// Per 20 ms tick: its time since the start, what played, the target after it.
        ticks: Vec<(Duration, Played, Duration)>,
        /// Arrival times (since the start) of the packets dropped as late.
        late: Vec<Duration>,
    }

    impl Trace {
        fn packets(&self) -> impl Iterator<Item = (Duration, u64, Duration)> + '_ {
            self.ticks.iter().filter_map(|(t, p, _)| match p {
                Played::Packet { seq, delay } => Some((*t, *seq, *delay)),
                _ => None,
            })
        }
        fn lost_after(&self, from: Duration) -> usize {
            self.ticks.iter().filter(|(t, p, _)| *t >= from && *p == Played::Lost).count()
        }
        fn late_after(&self, from: Duration) -> usize {
            self.late.iter().filter(|t| **t >= from).count()
        }
        /// Frames not played from a packet (concealed, or silence) once playout had started.
        fn troubles(&self) -> usize {
            let first = self.ticks.iter().position(|x| matches!(x.1, Played::Packet { .. })).unwrap_or(0);
            self.ticks[first..].iter().filter(|x| !matches!(x.1, Played::Packet { .. })).count()
        }
        fn target_at(&self, at: Duration) -> Duration {
            self.ticks.iter().take_while(|(t, _, _)| *t <= at).last().map_or(Duration::ZERO, |x| x.2)
        }
    }

    /// A sender with `ptime` ms packets sent from `phase` after the start, packet `seq` arriving
    /// `net(seq)` after it was sent (`None`: lost), into `jb`, popped by a mixer that plays one
    /// 20 ms frame per tick (one pop per frame: a 10 ms packet is half a frame) for `secs`.
    fn simulate(
        jb: &mut JitterBuffer,
        ptime: u64,
        phase: Duration,
        secs: u64,
        mut net: impl FnMut(u64) -> Option<Duration>,
    ) -> Trace {
        let t0 = Instant::now();
        let sent = |seq: u64| phase + ms(seq * ptime);
        let packets = secs * 1000 / ptime;
        let mut arrivals: Vec<(Duration, u64)> =
            (0..packets).filter_map(|seq| net(seq).map(|d| (sent(seq) + d, seq))).collect();
        arrivals.sort();
        let mut trace = Trace { ticks: Vec::new(), late: Vec::new() };
        let mut a = 0;
        for tick in 0..secs * 50 {
            let now = ms(tick * 20);
            while a < arrivals.len() && arrivals[a].0 <= now {
                let (at, seq) = arrivals[a];
                let late = jb.stats.late;
                jb.push(t0 + at, seq, &seq.to_le_bytes());
                if jb.stats.late > late {
                    trace.late.push(at);
                }
                a += 1;
            }
            // Milliseconds of this tick's frame played so far.
            let mut have = 0;
            while have < 20 {
                let played = match jb.pop(t0 + now) {
                    Pop::Packet(p) => {
                        let seq = u64::from_le_bytes(p.try_into().expect("8 bytes"));
                        have += ptime;
                        Played::Packet { seq, delay: now - sent(seq) }
                    }
                    // A lost packet is concealed for as long as it lasted, a hold for a frame.
                    Pop::Lost { .. } => {
                        have += ptime;
                        Played::Lost
                    }
                    Pop::Hold => {
                        have += 20;
                        Played::Lost
                    }
                    Pop::Empty => {
                        have = 20;
                        Played::Empty
                    }
                };
                trace.ticks.push((now, played, jb.target()));
            }
        }
        trace
    }

    /// Checks that packets played in increasing sequence order.
    fn assert_in_order(trace: &Trace) {
        let seqs: Vec<u64> = trace.packets().map(|p| p.1).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "out of order: {seqs:?}");
    }

    #[test]
    fn holds_for_the_delay_then_plays_in_order() {
        let t0 = Instant::now();
        let mut jb = fixed(40);
        jb.push(t0, 11, b"b");
        jb.push(t0, 10, b"a");
        assert_eq!(jb.pop(t0 + ms(20)), Pop::Empty);
        assert_eq!(jb.pop(t0 + ms(40)), Pop::Packet(b"a"));
        assert_eq!(jb.pop(t0 + ms(60)), Pop::Packet(b"b"));
        assert_eq!(jb.pop(t0 + ms(80)), Pop::Empty);
    }

    #[test]
    fn a_hole_is_a_loss_and_a_late_packet_is_dropped() {
        let t0 = Instant::now();
        let mut jb = fixed(0);
        jb.push(t0, 1, b"1");
        jb.push(t0, 3, b"3");
        assert_eq!(jb.pop(t0), Pop::Packet(b"1"));
        assert_eq!(jb.pop(t0), Pop::Lost { following: Some(&b"3"[..]) }, "the packet after the lost one, for FEC");
        jb.push(t0, 2, b"2");
        assert_eq!(jb.pop(t0), Pop::Packet(b"3"));
        assert_eq!(jb.stats, JitterStats { late: 1, lost: 1 });
        assert_eq!(jb.target(), ms(0), "a fixed buffer (max = min) does not grow");
    }

    #[test]
    fn a_late_packet_grows_the_target_and_holds_one_frame() {
        let t0 = Instant::now();
        let at = |n: u64| t0 + ms(n);
        let mut jb = adaptive();
        jb.push(at(0), 0, b"0");
        jb.push(at(20), 1, b"1");
        assert_eq!(jb.pop(at(20)), Pop::Packet(b"0"));
        // Packet 2 is held up; 3 is on time, so at 2's turn it is a loss.
        assert_eq!(jb.pop(at(40)), Pop::Packet(b"1"));
        jb.push(at(60), 3, b"3");
        assert_eq!(jb.pop(at(60)), Pop::Lost { following: Some(&b"3"[..]) });
        // 2 arrives 30 ms after it was sent, 10 ms after its turn.
        jb.push(at(70), 2, b"2");
        assert_eq!(jb.stats, JitterStats { late: 1, lost: 1 });
        assert_eq!(jb.target(), ms(40));
        // The hold: one concealed frame, not counted lost, and 3 waits for the next tick.
        assert_eq!(jb.pop(at(80)), Pop::Hold);
        assert_eq!(jb.pop(at(100)), Pop::Packet(b"3"));
        // Now a packet as late as 2 was is on time: 4, sent at 80, arrives 30 ms later.
        jb.push(at(105), 5, b"5");
        jb.push(at(110), 4, b"4");
        assert_eq!(jb.pop(at(120)), Pop::Packet(b"4"));
        assert_eq!(jb.pop(at(140)), Pop::Packet(b"5"));
        assert_eq!(jb.stats, JitterStats { late: 1, lost: 1 });
        assert_eq!(jb.target(), ms(40));
    }

    #[test]
    fn a_clean_stream_stays_at_the_minimum_delay() {
        for phase in [0, 7, 13, 19] {
            let mut jb = adaptive();
            let trace = simulate(&mut jb, 20, ms(phase), 20, |_| Some(ms(5)));
            assert_eq!((jb.stats.late, jb.stats.lost, trace.lost_after(Duration::ZERO)), (0, 0, 0), "phase {phase}");
            assert_in_order(&trace);
            let seqs: Vec<u64> = trace.packets().map(|p| p.1).collect();
            assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "every packet played, phase {phase}");
            assert!(seqs.len() >= 995, "{}", seqs.len());
            for (t, seq, delay) in trace.packets() {
                // 5 ms of network, then the minimum of 20 ms plus less than a tick of phase.
                assert!(delay >= ms(25) && delay < ms(45), "phase {phase}: {seq} played at {t:?}, {delay:?} late");
            }
            assert!(trace.ticks.iter().all(|x| x.2 == ms(20)), "the target stayed at the minimum");
        }
    }

    /// Network delay of 5 ms plus up to `jitter` ms, uniformly, while `on(seq)`.
    fn jittery(seed: u64, jitter: u64, on: impl Fn(u64) -> bool) -> impl FnMut(u64) -> Option<Duration> {
        let mut rng = Rng(seed);
        move |seq| {
            let j = rng.below(jitter + 1);
            Some(ms(5 + if on(seq) { j } else { 0 }))
        }
    }

    #[test]
    fn jitter_grows_the_buffer_until_nothing_is_late() {
        // Clean for the first second, then 0-60 ms of jitter on every packet.
        for seed in [2, 4, 8] {
            let mut jb = adaptive();
            let trace = simulate(&mut jb, 20, ms(7), 30, jittery(seed, 60, |seq| seq >= 50));
            assert_in_order(&trace);
            assert!(trace.troubles() > 0 && trace.target_at(Duration::from_secs(5)) > ms(20), "seed {seed}: grown");
            // Settled within 5 s: nothing late, lost, held or run dry after that.
            let settled = Duration::from_secs(5);
            assert_eq!(trace.late_after(settled), 0, "seed {seed}: late at {:?}", trace.late);
            assert!(
                trace.ticks.iter().filter(|x| x.0 >= settled).all(|x| matches!(x.1, Played::Packet { .. })),
                "seed {seed}"
            );
            // Enough for 60 ms of jitter and less than two frames more, far below the maximum.
            let target = jb.target();
            assert!(target >= ms(40) && target <= ms(80), "seed {seed}: target {target:?}");
            for (t, seq, delay) in trace.packets().filter(|p| p.0 >= settled) {
                assert!(
                    delay >= ms(5 + 60) && delay < ms(5 + 60 + 40) && delay < target + ms(5 + 20),
                    "seed {seed}: {seq} played at {t:?}, {delay:?} after sending, target {target:?}"
                );
            }
        }
    }

    #[test]
    fn jitter_of_30_to_60_ms_settles_too() {
        let mut rng = Rng(9);
        let mut jb = adaptive();
        let trace = simulate(&mut jb, 20, ms(3), 30, |seq| Some(ms(30 + if seq < 50 { 0 } else { rng.below(31) })));
        assert_in_order(&trace);
        assert!(trace.troubles() > 0 && jb.target() > ms(20), "a 20 ms buffer cannot hold 30 ms of jitter");
        assert_eq!(trace.late_after(Duration::from_secs(5)), 0, "late at {:?}", trace.late);
        assert!(jb.target() >= ms(20) && jb.target() <= ms(60), "{:?}", jb.target());
        for (t, seq, delay) in trace.packets().filter(|p| p.0 >= Duration::from_secs(5)) {
            assert!(delay >= ms(60) && delay < ms(60 + 40), "{seq} played at {t:?}, {delay:?} after sending");
        }
    }

    #[test]
    fn the_delay_comes_back_down_when_the_jitter_stops() {
        // Clean, then 0-60 ms of jitter from 1 s to 10 s, then clean again.
        let mut jb = adaptive();
        let trace = simulate(&mut jb, 20, ms(11), 30, jittery(4, 60, |seq| (50..500).contains(&seq)));
        let calm = Duration::from_secs(10);
        let high = trace.target_at(calm);
        assert!(high >= ms(60), "grown under jitter: {high:?}");
        // One packet per 2 s window, plus the window the jitter was still in.
        let frames_back = (high - ms(20)).as_millis() as u64 / 20;
        let bound = calm + Duration::from_secs(2 * frames_back + 2);
        let back = trace.ticks.iter().find(|x| x.0 >= calm && x.2 == ms(20)).map(|x| x.0);
        assert!(back.is_some_and(|b| b <= bound), "target back at the minimum at {back:?}, bound {bound:?}");
        // Shrinking skipped packets but made none late, lost or held, and never went back up.
        assert_eq!(trace.late_after(calm), 0);
        assert_eq!(trace.lost_after(calm), 0);
        assert!(trace.ticks.windows(2).filter(|w| w[0].0 >= calm).all(|w| w[1].2 <= w[0].2));
        assert_in_order(&trace);
        let played = trace.packets().filter(|p| p.0 >= calm).map(|p| p.1).collect::<Vec<_>>();
        let gaps = played.windows(2).filter(|w| w[1] != w[0] + 1).count() as u64;
        assert_eq!(gaps, frames_back, "one packet skipped per frame of delay given back");
        // And the delay is that of a clean stream again.
        for (t, seq, delay) in trace.packets().filter(|p| p.0 >= bound) {
            assert!(delay >= ms(25) && delay < ms(45), "{seq} played at {t:?}, {delay:?} after sending");
        }
    }

    #[test]
    fn growth_stops_at_the_maximum() {
        let mut jb = adaptive();
        let trace = simulate(&mut jb, 20, ms(0), 20, jittery(5, 600, |_| true));
        assert!(trace.ticks.iter().all(|x| x.2 <= ms(200)));
        assert_eq!(jb.target(), ms(200));
        assert!(jb.stats.late > 100, "jitter beyond the maximum stays late: {}", jb.stats.late);
        assert_in_order(&trace);
    }

    #[test]
    fn a_burst_beyond_the_maximum_is_trimmed() {
        // A sender stalls for 300 ms and then sends what it had all at once; the maximum is 60 ms.
        let mut jb = JitterBuffer::new(ms(20), ms(60), FRAME);
        let trace = simulate(&mut jb, 20, ms(7), 5, |seq| match seq {
            50..=64 => Some(ms(5 + (65 - seq) * 20)),
            _ => Some(ms(5)),
        });
        assert_in_order(&trace);
        assert_eq!(jb.stats, JitterStats::default());
        // The burst plays; then packets that waited a frame past the maximum are dropped.
        let after = Duration::from_secs(2);
        for (t, seq, delay) in trace.packets().filter(|p| p.0 >= after) {
            assert!(delay < ms(5 + 60 + 20), "{seq} played at {t:?}, {delay:?} after sending");
        }
        assert!(trace.ticks.iter().filter(|x| x.0 >= after).all(|x| matches!(x.1, Played::Packet { .. })));
    }

    #[test]
    fn ten_ms_packets_grow_and_shrink_back() {
        // 10 ms packets (two per mixer frame), 0-50 ms of jitter from 1 s to 10 s.
        let mut jb = adaptive();
        let trace = simulate(&mut jb, 10, ms(4), 30, jittery(6, 50, |seq| (100..1000).contains(&seq)));
        assert_in_order(&trace);
        assert!(trace.target_at(Duration::from_secs(10)) >= ms(60));
        assert_eq!(trace.late_after(Duration::from_secs(5)), 0, "late at {:?}", trace.late);
        assert_eq!(jb.target(), ms(20), "back at the minimum after 20 calm seconds");
        for (t, seq, delay) in trace.packets().filter(|p| p.0 >= Duration::from_secs(25)) {
            assert!(delay < ms(5 + 20 + 20 + 10), "{seq} played at {t:?}, {delay:?} after sending");
        }
    }

    #[test]
    fn reordered_packets_within_the_delay_play_in_order() {
        let mut jb = JitterBuffer::new(ms(40), ms(200), FRAME);
        // Every even packet overtakes the odd one before it.
        let trace = simulate(&mut jb, 20, ms(5), 10, |seq| Some(ms(if seq % 2 == 1 { 25 } else { 2 })));
        let seqs: Vec<u64> = trace.packets().map(|p| p.1).collect();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
        assert!(seqs.len() >= 490);
        assert_eq!(jb.stats, JitterStats::default());
        assert_eq!(jb.target(), ms(40));
    }

    #[test]
    fn a_stall_then_a_burst_grows_and_plays_everything() {
        // Packets 100..105 are held up so that they all arrive with 105, 100 ms late.
        let mut jb = adaptive();
        let trace = simulate(&mut jb, 20, ms(7), 4, |seq| match seq {
            100..=105 => Some(ms(5 + (105 - seq) * 20)),
            _ => Some(ms(5)),
        });
        let seqs: Vec<u64> = trace.packets().map(|p| p.1).collect();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "all played, in order");
        assert_eq!(jb.stats, JitterStats::default());
        assert_eq!(trace.target_at(Duration::from_secs(3)), ms(40), "one frame for the underrun");
        // Silence from 100's turn (2.04 s) until the burst (2.112 s); then 100 plays at once.
        let empties: Vec<Duration> =
            trace.ticks.iter().filter(|x| x.0 > Duration::from_secs(1) && x.1 == Played::Empty).map(|x| x.0).collect();
        assert_eq!(empties, [ms(2040), ms(2060), ms(2080), ms(2100)]);
        let resumed = trace.packets().find(|p| p.1 == 100).map(|p| p.0);
        assert_eq!(resumed, Some(ms(2120)));
        // The stall's length is now delay: every later packet plays 80 ms later than before.
        let before = trace.packets().find(|p| p.1 == 99).map(|p| p.2);
        assert!(trace.packets().filter(|p| p.1 >= 100).all(|p| Some(p.2) == before.map(|d| d + ms(80))));
    }

    /// 60 ms packets: the buffer holds one at a time, so a lost packet shows as an underrun. A
    /// later packet arriving first says it was lost: no growth, and playout goes on at the turns
    /// of 60 ms packets. The awaited packet arriving late is a spike, as with any ptime.
    #[test]
    fn a_lost_long_packet_is_not_a_delay_spike() {
        let t0 = Instant::now();
        let at = |n: u64| t0 + ms(n);
        for late in [false, true] {
            let mut jb = adaptive();
            jb.set_packet_duration(ms(60));
            jb.push(at(0), 0, b"0");
            assert_eq!(jb.pop(at(20)), Pop::Packet(b"0"));
            jb.push(at(60), 1, b"1");
            assert_eq!(jb.pop(at(80)), Pop::Packet(b"1"));
            // 2 is due at 140 and is not there.
            assert_eq!(jb.pop(at(140)), Pop::Empty);
            if late {
                jb.push(at(170), 2, b"2");
                assert_eq!(jb.target(), ms(40), "a delay spike grows the buffer");
                assert_eq!(jb.pop(at(180)), Pop::Packet(b"2"));
            } else {
                jb.push(at(180), 3, b"3");
                assert_eq!(jb.target(), ms(20), "a loss does not");
                assert_eq!(jb.pop(at(180)), Pop::Empty, "3 waits for its turn, one packet after 2's");
                assert_eq!(jb.pop(at(200)), Pop::Packet(b"3"));
            }
        }
    }

    #[test]
    fn a_pause_longer_than_the_maximum_does_not_grow() {
        // Silence suppression: nothing sent for 1 s, sequence numbers carry on.
        let t0 = Instant::now();
        let at = |n: u64| t0 + ms(n);
        let mut jb = adaptive();
        for s in 0..10 {
            jb.push(at(s * 20), s, b"x");
            assert_eq!(jb.pop(at(s * 20 + 20)), Pop::Packet(b"x"), "packet {s}");
        }
        assert_eq!(jb.pop(at(220)), Pop::Empty);
        assert_eq!(jb.pop(at(240)), Pop::Empty);
        jb.push(at(1205), 10, b"y");
        assert_eq!(jb.pop(at(1220)), Pop::Empty, "buffering the minimum again");
        assert_eq!(jb.pop(at(1240)), Pop::Packet(b"y"));
        assert_eq!(jb.target(), ms(20));
        assert_eq!(jb.stats, JitterStats::default());
    }

    #[test]
    fn a_straggler_after_an_underrun_is_late_not_replayed() {
        let t0 = Instant::now();
        let at = |n: u64| t0 + ms(n);
        let mut jb = fixed(20);
        jb.push(at(0), 1, b"1");
        jb.push(at(0), 3, b"3");
        assert_eq!(jb.pop(at(20)), Pop::Packet(b"1"));
        assert_eq!(jb.pop(at(40)), Pop::Lost { following: Some(&b"3"[..]) });
        assert_eq!(jb.pop(at(60)), Pop::Packet(b"3"));
        assert_eq!(jb.pop(at(80)), Pop::Empty);
        jb.push(at(90), 2, b"2");
        jb.push(at(95), 4, b"4");
        assert_eq!(jb.pop(at(120)), Pop::Packet(b"4"));
        assert_eq!(jb.stats, JitterStats { late: 1, lost: 1 });
    }

    #[test]
    fn jumps_restart_playout() {
        let t0 = Instant::now();
        let mut jb = fixed(0);
        jb.push(t0, 1, b"1");
        assert_eq!(jb.pop(t0), Pop::Packet(b"1"));
        jb.push(t0, 10_000, b"x");
        assert_eq!(jb.pop(t0), Pop::Packet(b"x"));
        // Far behind: a sender that restarted lower.
        jb.push(t0, 5, b"y");
        assert_eq!(jb.pop(t0), Pop::Packet(b"y"));
        // Near behind while playing: late.
        jb.push(t0, 4, b"z");
        assert_eq!(jb.pop(t0), Pop::Empty);
        assert_eq!(jb.stats, JitterStats { late: 1, lost: 0 });
        // A lower restart after an underrun is late for a while, then taken as a new stream.
        jb.push(t0 + ms(500), 3, b"3");
        assert_eq!(jb.pop(t0 + ms(500)), Pop::Empty);
        jb.push(t0 + ms(1500), 3, b"3");
        assert_eq!(jb.pop(t0 + ms(1500)), Pop::Packet(b"3"));
        assert_eq!(jb.stats, JitterStats { late: 2, lost: 0 });
    }

    #[test]
    fn oversized_payload_is_ignored() {
        let t0 = Instant::now();
        let mut jb = fixed(0);
        jb.push(t0, 1, &[0u8; 2000]);
        assert_eq!(jb.pop(t0), Pop::Empty);
    }

    #[test]
    fn garbage_sequence_numbers_do_not_panic() {
        let t0 = Instant::now();
        let mut rng = Rng(0xDEAD_BEEF);
        let mut jb = adaptive();
        let edges = [0, 1, 127, 128, u64::MAX, u64::MAX - 1, u64::MAX - 128, u64::MAX / 2];
        let mut now = t0;
        let mut last = 0u64;
        for _ in 0..200_000 {
            now += ms(rng.below(25));
            let seq = match rng.below(4) {
                0 => edges[rng.below(edges.len() as u64) as usize],
                1 => rng.next_u64(),
                _ => last.wrapping_add(rng.below(300)).wrapping_sub(150),
            };
            last = seq;
            let len = [0, 1, 160, 1500, 1501][rng.below(5) as usize];
            jb.push(now, seq, &vec![7u8; len]);
            for _ in 0..rng.below(3) {
                if let Pop::Packet(p) = jb.pop(now) {
                    assert!(p.len() <= 1500);
                }
            }
            assert_eq!(jb.len, jb.slots.iter().flatten().count());
            assert!(jb.target() >= ms(20) && jb.target() <= ms(200));
        }
        // The worst cases: playing the last sequence number there is, and wrapping past it.
        let mut jb = fixed(0);
        jb.push(t0, u64::MAX - 1, b"a");
        jb.push(t0, u64::MAX, b"b");
        assert_eq!(jb.pop(t0), Pop::Packet(b"a"));
        assert_eq!(jb.pop(t0), Pop::Packet(b"b"));
        assert_eq!(jb.pop(t0), Pop::Empty);
        jb.push(t0, 0, b"c");
        assert_eq!(jb.pop(t0), Pop::Packet(b"c"));
    }

    #[test]
    fn a_steady_stream_allocates_only_its_depth() {
        let mut jb = adaptive();
        simulate(&mut jb, 20, ms(9), 30, jittery(7, 60, |seq| seq < 500));
        // The deepest the buffer got: about the grown target in packets, plus the jitter.
        assert!(jb.allocated <= 12, "{} entries allocated", jb.allocated);
        let before = jb.allocated;
        let t0 = Instant::now();
        for seq in 0..1000u64 {
            jb.push(t0 + ms(seq * 20), 1_000_000 + seq, b"x");
            let _ = jb.pop(t0 + ms(seq * 20 + 20));
        }
        assert_eq!(jb.allocated, before, "slots are recycled");
    }
}
