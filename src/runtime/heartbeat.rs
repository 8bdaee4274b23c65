//! The media thread's heartbeat: the time of its last loop turn, which the API reads to tell
//! whether the thread is alive. One relaxed store per turn (per wake-up, not per packet).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Heartbeat {
    origin: Instant,
    /// Milliseconds from `origin` to the last turn.
    last_ms: AtomicU64,
}

impl Heartbeat {
    pub fn new(now: Instant) -> Heartbeat {
        Heartbeat { origin: now, last_ms: AtomicU64::new(0) }
    }

    pub fn beat(&self, now: Instant) {
        let ms = u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long ago the last turn was.
    pub fn age(&self, now: Instant) -> Duration {
        let last = self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_is_the_time_since_the_last_beat() {
        let t0 = Instant::now();
        let hb = Heartbeat::new(t0);
        hb.beat(t0 + Duration::from_millis(500));
        assert_eq!(hb.age(t0 + Duration::from_millis(2_500)), Duration::from_secs(2));
        assert_eq!(hb.age(t0), Duration::ZERO, "a clock behind the beat is no age");
    }
}
