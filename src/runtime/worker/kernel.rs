//! The worker's side of in-kernel forwarding: after each call into a room it asks the room which
//! directions a kernel rule may carry (`Room::kernel_paths`) and installs, replaces or removes
//! rules to match; before each call into a room that has rules, it hands the room what the
//! kernel forwarded since the last time (`Room::kernel_sync`), so user space always continues
//! where the kernel left off (sequence numbers, timestamps, counters, liveness).
//!
//! A rule is removed before a change could make the kernel's rewrite differ from user space's,
//! never after: every change comes from a room call, and the review runs right after it.

use super::Worker;
use crate::core::KernelPath;
use crate::runtime::kernel::{self, Key, Stats};
use crate::runtime::os_thread::monotonic_ns;
use std::time::{Duration, Instant};
use switchboard_driver::KernelCounts;
use tracing::warn;

/// How long a room whose rule the kernel refused stays in user space before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A rule this worker installed for one of its rooms.
pub(super) struct Installed {
    path: KernelPath,
    key: Key,
    /// The stats entry as last handed to the room.
    seen: Stats,
}

/// Whether two paths make the same rule: the newest sequence number user space saw only seeds a
/// new rule's stats, so it changing is no reason to replace one.
fn same_rule(a: &KernelPath, b: &KernelPath) -> bool {
    KernelPath { last_in_seq: 0, ..*a } == KernelPath { last_in_seq: 0, ..*b }
}

impl Worker {
    /// Hands room `idx` what its rules forwarded since the last call. Cheap for a room without
    /// rules (one empty-vector check).
    pub(super) fn kernel_catch_up(&mut self, idx: usize) {
        let Some(fwd) = self.kernel.clone() else { return };
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) else { return };
        if entry.kernel.is_empty() {
            return;
        }
        let clock = Clock::now();
        for inst in &mut entry.kernel {
            if let Some(now) = fwd.read(&inst.key) {
                let (counts, forwarded) = delta(&inst.path, &inst.seen, &now, &clock);
                inst.seen = now;
                if let Some(c) = counts {
                    entry.room.kernel_sync(&inst.path, &c);
                    self.metrics.kernel_packets.inc_by(forwarded.0);
                    self.metrics.kernel_bytes.inc_by(forwarded.1);
                }
            }
        }
    }

    /// Brings room `idx`'s rules in line with what it says now (see the module docs).
    pub(super) fn kernel_review(&mut self, idx: usize) {
        let Some(fwd) = self.kernel.clone() else { return };
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) else { return };
        let mut wanted = std::mem::take(&mut self.kernel_scratch);
        entry.room.kernel_paths(&mut wanted);
        if wanted.is_empty() && entry.kernel.is_empty() {
            self.kernel_scratch = wanted;
            return;
        }
        let clock = Clock::now();
        // Rules no longer wanted, or wanted with another rewrite: out first, and their last
        // counts to the room, before anything else moves.
        let mut i = 0;
        let mut removed = false;
        while i < entry.kernel.len() {
            if wanted.iter().any(|w| same_rule(w, &entry.kernel[i].path)) {
                i += 1;
                continue;
            }
            removed = true;
            let inst = entry.kernel.swap_remove(i);
            let last = fwd.remove(&inst.key);
            self.metrics.kernel_rules.dec();
            if let Some(last) = last {
                let (counts, forwarded) = delta(&inst.path, &inst.seen, &last, &clock);
                if let Some(c) = counts {
                    entry.room.kernel_sync(&inst.path, &c);
                    self.metrics.kernel_packets.inc_by(forwarded.0);
                    self.metrics.kernel_bytes.inc_by(forwarded.1);
                }
            }
        }
        // What the removed rules forwarded moved the streams on: a rule made now starts from
        // where they are, or the program would take the next packet for a jump.
        if removed {
            entry.room.kernel_paths(&mut wanted);
        }
        // After a refusal the room's calls stay in user space a while: retrying on every packet
        // would cost a system call each and say nothing new.
        let backing_off = entry.kernel_retry.is_some_and(|t| clock.now < t);
        for path in wanted.iter().filter(|_| !backing_off) {
            if entry.kernel.iter().any(|k| same_rule(&k.path, path)) {
                continue;
            }
            let Some((key, rule)) = kernel::build(path, fwd.redirect()) else { continue };
            let seen = kernel::first_stats(path);
            match fwd.install(&key, &rule, Some(&seen)) {
                Ok(()) => {
                    self.metrics.kernel_rules.inc();
                    entry.kernel.push(Installed { path: *path, key, seen });
                }
                Err(e) => {
                    entry.kernel_retry = Some(clock.now + RETRY_AFTER);
                    self.metrics.kernel_fallbacks.inc();
                    if !self.kernel_refused {
                        self.kernel_refused = true;
                        warn!(error = %e, "the kernel refused a forwarding rule: that call stays in user space");
                    }
                }
            }
        }
        self.kernel_scratch = wanted;
    }

    /// Removes every rule of room `idx`, as the room ends.
    pub(super) fn kernel_forget(&mut self, idx: usize) {
        let Some(fwd) = self.kernel.clone() else { return };
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) else { return };
        for inst in entry.kernel.drain(..) {
            let _ = fwd.remove(&inst.key);
            self.metrics.kernel_rules.dec();
        }
    }
}

/// `Instant` and CLOCK_MONOTONIC read together, to place the kernel's packet stamps in time.
struct Clock {
    now: Instant,
    mono_ns: Option<u64>,
}

impl Clock {
    fn now() -> Clock {
        Clock { now: Instant::now(), mono_ns: monotonic_ns() }
    }

    fn at(&self, stamp_ns: u64) -> Instant {
        let age = self.mono_ns.map_or(0, |m| m.saturating_sub(stamp_ns));
        self.now.checked_sub(Duration::from_nanos(age)).unwrap_or(self.now)
    }
}

/// What the kernel forwarded between `seen` and `now`, for the room, and (packets, bytes) for
/// the metrics.
fn delta(path: &KernelPath, seen: &Stats, now: &Stats, clock: &Clock) -> (Option<KernelCounts>, (u64, u64)) {
    let packets = now.packets.saturating_sub(seen.packets);
    let bytes = now.bytes.saturating_sub(seen.bytes);
    if packets == 0 {
        return (None, (0, 0));
    }
    let counts = KernelCounts {
        packets,
        bytes,
        ssrc: path.in_ssrc,
        seq: now.last_seq as u16,
        ts: now.last_ts,
        at: clock.at(now.last_ns),
    };
    (Some(counts), (packets, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_driver::{ParticipantId, Pt, Ssrc};

    fn path() -> KernelPath {
        KernelPath {
            from: ParticipantId(1),
            to: ParticipantId(2),
            peer: "127.0.0.1:5004".parse().unwrap(),
            local: "127.0.0.1:40000".parse().unwrap(),
            in_pt: Pt(0),
            in_ssrc: Ssrc(7),
            last_in_seq: 100,
            new_src: "127.0.0.1:40002".parse().unwrap(),
            new_dst: "127.0.0.1:6000".parse().unwrap(),
            out_ssrc: Ssrc(9),
            out_pt: Pt(0),
            seq_offset: 5,
            ts_offset: 10,
        }
    }

    #[test]
    fn a_newer_sequence_number_alone_keeps_the_rule() {
        let a = path();
        assert!(same_rule(&a, &KernelPath { last_in_seq: 900, ..a }));
        assert!(!same_rule(&a, &KernelPath { seq_offset: 6, ..a }), "DTMF moved the leg's numbering");
        assert!(!same_rule(&a, &KernelPath { new_dst: "127.0.0.1:6002".parse().unwrap(), ..a }), "relatched");
    }

    #[test]
    fn the_delta_is_what_the_kernel_forwarded_since_the_last_read() {
        let clock = Clock::now();
        let seen = Stats { packets: 10, bytes: 1720, last_ns: 0, last_seq: 110, last_ts: 1600 };
        let now =
            Stats { packets: 60, bytes: 10_320, last_ns: clock.mono_ns.unwrap_or(0), last_seq: 160, last_ts: 9600 };
        let (counts, metrics) = delta(&path(), &seen, &now, &clock);
        let c = counts.expect("50 packets");
        assert_eq!((c.packets, c.bytes, c.seq, c.ts, c.ssrc), (50, 8600, 160, 9600, Ssrc(7)));
        assert_eq!(metrics, (50, 8600));
        assert!(c.at <= clock.now && clock.now.duration_since(c.at) < Duration::from_millis(1));
        assert_eq!(delta(&path(), &now, &now, &clock).0, None, "nothing new, nothing to hand over");
    }
}
