//! What a media worker tells the rest of the node about itself, without a lock: its heartbeat,
//! whether it still runs or failed, and its load (participants and CPU share), which placement
//! and the node-wide limits read.

use super::heartbeat::Heartbeat;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Instant;

#[derive(Debug)]
pub struct WorkerStatus {
    /// Beaten once per loop turn; `/healthz` reads it.
    pub heartbeat: Heartbeat,
    /// Set when the thread has ended, asked to or not.
    ended: AtomicBool,
    /// Set when it ended by a panic outside any participant.
    failed: AtomicBool,
    participants: AtomicUsize,
    /// CPU time over wall time of the last housekeeping window, in thousandths of a core.
    cpu_permille: AtomicU32,
}

impl WorkerStatus {
    pub fn new(now: Instant) -> WorkerStatus {
        WorkerStatus {
            heartbeat: Heartbeat::new(now),
            ended: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            participants: AtomicUsize::new(0),
            cpu_permille: AtomicU32::new(0),
        }
    }

    /// Whether it takes commands and new rooms: not once it failed (it is closing its rooms
    /// before its thread ends), nor once its thread has ended.
    pub fn is_running(&self) -> bool {
        !self.ended.load(Ordering::Acquire) && !self.has_failed()
    }

    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub fn set_ended(&self) {
        self.ended.store(true, Ordering::Release);
    }

    pub fn set_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    pub fn participants(&self) -> usize {
        self.participants.load(Ordering::Relaxed)
    }

    pub fn set_participants(&self, n: usize) {
        self.participants.store(n, Ordering::Relaxed);
    }

    pub fn cpu_permille(&self) -> u32 {
        self.cpu_permille.load(Ordering::Relaxed)
    }

    pub fn set_cpu_permille(&self, p: u32) {
        self.cpu_permille.store(p, Ordering::Relaxed);
    }
}
