//! Time as the tests compare it: peers report unix seconds, the harness stamps `Instant`s, and
//! waits poll until something holds.

use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::sse::SseClient;

/// Now, in seconds since the unix epoch (what the peers report their times in).
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is past 1970").as_secs_f64()
}

/// Converts `Instant`s (e.g. [`crate::SseEvent::at`]) to unix seconds, as the peers report times.
#[derive(Clone, Copy, Debug)]
pub struct UnixClock {
    wall: f64,
    at: Instant,
}

impl UnixClock {
    /// Anchored now: `Instant::now()` is `unix_now()`.
    pub fn new() -> UnixClock {
        UnixClock { wall: unix_now(), at: Instant::now() }
    }

    /// `t` in unix seconds.
    pub fn unix(&self, t: Instant) -> f64 {
        self.wall + t.saturating_duration_since(self.at).as_secs_f64()
    }

    /// When (unix seconds) `sse` received the first event `name` about participant `id`; waits
    /// up to 5 s for it (see [`SseClient::wait_for_participant_event`]).
    pub fn event_at(&self, sse: &SseClient, name: &str, id: &str) -> f64 {
        self.unix(sse.wait_for_participant_event(name, id, Duration::from_secs(5)).at)
    }
}

impl Default for UnixClock {
    fn default() -> Self {
        UnixClock::new()
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
