//! Hands out even/odd UDP port pairs (RTP, RTCP) from the configured range, at random, and rests
//! each released pair for a quarantine before it is handed out again.
//!
//! Why random: a port that follows from the last one lets anyone who saw one call aim packets at
//! the next. Why the quarantine: a peer's late packets (or a stale latch on its side) would
//! otherwise land in the next call that took the pair. Sans-IO: time is an input.
//!
//! Each media worker has a pool of its own over its slice of the range (`slice`), so no two
//! workers ever bind the same port and none of them needs a lock to take one.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many even/odd pairs `[min, max]` holds.
pub fn pairs(min: u16, max: u16) -> usize {
    let start = min.saturating_add(min % 2);
    match start < max {
        true => usize::from(max - start).div_ceil(2),
        false => 0,
    }
}

/// Worker `i`'s slice of `[min, max]`, of `workers`: the pairs split evenly in order, the later
/// slices one pair larger when they do not divide. Inclusive, like the range; empty (`min >
/// max`) only when there are fewer pairs than workers, which `Config::validate` refuses.
pub fn slice(min: u16, max: u16, workers: usize, i: usize) -> (u16, u16) {
    let start = min.saturating_add(min % 2);
    let n = pairs(min, max);
    let workers = workers.max(1);
    let first = |k: usize| k * n / workers;
    // Below `n` pairs of two ports each above `start`, all inside a `u16` range.
    let port = |pair: usize| start + u16::try_from(2 * pair).unwrap_or(u16::MAX - start);
    let (lo, hi) = (first(i), first(i + 1));
    if lo == hi {
        return (port(lo).saturating_add(1), port(lo));
    }
    (port(lo), port(hi - 1) + 1)
}

#[derive(Debug)]
pub struct PortPool {
    /// Even ports of the pairs that may be handed out now.
    free: Vec<u16>,
    /// Released pairs and the time each may be handed out again, oldest release first.
    resting: VecDeque<(Instant, u16)>,
    quarantine: Duration,
    rng: StdRng,
    /// Pairs in the range, whatever their state.
    capacity: usize,
}

impl PortPool {
    /// Every even port `p` in `[min, max]` with `p + 1 <= max`.
    pub fn new(min: u16, max: u16, quarantine: Duration) -> PortPool {
        PortPool::with_rng(min, max, quarantine, StdRng::from_os_rng())
    }

    fn with_rng(min: u16, max: u16, quarantine: Duration, rng: StdRng) -> PortPool {
        let start = min.saturating_add(min % 2);
        let free: Vec<u16> = (start..max).step_by(2).collect();
        let capacity = free.len();
        PortPool { free, resting: VecDeque::new(), quarantine, rng, capacity }
    }

    /// Pairs in the range: free, resting or in use.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A random free pair's even port. Ports that fail to bind are skipped by the caller and
    /// given back with `give_back`.
    pub fn take(&mut self, now: Instant) -> Option<u16> {
        self.wake(now);
        if self.free.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.free.len());
        Some(self.free.swap_remove(i))
    }

    /// A pair a call used: it rests for the quarantine first.
    pub fn release(&mut self, even: u16, now: Instant) {
        if !self.holds(even) {
            self.resting.push_back((now + self.quarantine, even));
        }
    }

    /// A pair no call used (it would not bind): free again at once.
    pub fn give_back(&mut self, even: u16) {
        if !self.holds(even) {
            self.free.push(even);
        }
    }

    /// Pairs that may be handed out at `now`.
    pub fn available(&mut self, now: Instant) -> usize {
        self.wake(now);
        self.free.len()
    }

    fn holds(&self, even: u16) -> bool {
        self.free.contains(&even) || self.resting.iter().any(|(_, p)| *p == even)
    }

    /// Frees the pairs whose rest is over. Releases come in time order with one quarantine, so
    /// the queue is sorted; a `now` that went backwards only makes pairs rest longer.
    fn wake(&mut self, now: Instant) {
        while let Some(&(until, even)) = self.resting.front() {
            if until > now {
                break;
            }
            self.resting.pop_front();
            self.free.push(even);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn pool(min: u16, max: u16, quarantine_secs: u64) -> PortPool {
        PortPool::with_rng(min, max, Duration::from_secs(quarantine_secs), StdRng::seed_from_u64(7))
    }

    #[test]
    fn pairs_are_even_and_inside_the_range() {
        let now = Instant::now();
        let mut p = pool(40001, 40006, 0);
        let got: BTreeSet<u16> = [p.take(now), p.take(now)].into_iter().flatten().collect();
        assert_eq!(got, BTreeSet::from([40002, 40004]));
        assert_eq!(p.take(now), None);
        assert_eq!(p.capacity(), 2, "in use or not, the range holds two pairs");
        p.release(40002, now);
        assert_eq!(p.available(now), 1);
    }

    #[test]
    fn ports_come_in_random_order() {
        let now = Instant::now();
        let mut p = pool(40000, 40999, 0);
        let order: Vec<u16> = std::iter::from_fn(|| p.take(now)).collect();
        assert_eq!(order.len(), 500);
        assert!(order.iter().all(|port| port % 2 == 0 && (40000..40999).contains(port)));
        assert_eq!(order.iter().collect::<BTreeSet<_>>().len(), 500, "no pair handed out twice");
        let ascending = order.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(ascending < 50, "{ascending} of 499 steps went to the next pair");
    }

    #[test]
    fn a_released_pair_rests_for_the_quarantine() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut p = pool(40000, 40003, 10);
        let a = p.take(t0).unwrap();
        let b = p.take(t0).unwrap();
        p.release(a, at(1));
        p.release(b, at(5));
        assert_eq!(p.take(at(10)), None, "a rests until 11 s");
        assert_eq!(p.available(at(10)), 0);
        assert_eq!(p.take(at(11)), Some(a));
        assert_eq!(p.take(at(14)), None, "b rests until 15 s");
        assert_eq!(p.take(at(15)), Some(b));
        // A pair that never carried a call is free at once; a double release is one release.
        p.give_back(b);
        p.give_back(b);
        p.release(b, at(15));
        assert_eq!(p.available(at(15)), 1);
        assert_eq!(p.take(at(15)), Some(b));
        assert_eq!(p.take(at(15)), None);
    }

    #[test]
    fn the_range_is_split_into_slices_that_cover_it_once() {
        assert_eq!(pairs(40000, 40999), 500);
        assert_eq!(pairs(40001, 40006), 2);
        assert_eq!(pairs(40001, 40002), 0);
        assert_eq!(slice(40000, 40999, 1, 0), (40000, 40999), "one worker has it all");
        assert_eq!(slice(40000, 40999, 2, 0), (40000, 40499));
        assert_eq!(slice(40000, 40999, 2, 1), (40500, 40999));
        // 29 pairs over 2 and 3 workers: every pair in exactly one slice, each slice whole pairs.
        for workers in [2, 3, 4] {
            let mut seen = BTreeSet::new();
            for i in 0..workers {
                let (lo, hi) = slice(20005, 20063, workers, i);
                assert!(lo % 2 == 0 && hi % 2 == 1 && lo < hi, "{workers} workers, slice {i}: {lo}..={hi}");
                let mut p = PortPool::new(lo, hi, Duration::ZERO);
                let now = Instant::now();
                while let Some(port) = p.take(now) {
                    assert!(seen.insert(port), "{port} is in two slices");
                }
            }
            assert_eq!(seen.len(), 29, "{workers} workers");
            assert_eq!(seen.first(), Some(&20006));
            assert_eq!(seen.last(), Some(&20062));
        }
        let (lo, hi) = slice(40000, 40003, 3, 0);
        assert!(lo > hi, "fewer pairs than workers leaves a slice empty");
    }

    #[test]
    fn a_clock_that_goes_back_only_delays() {
        let t0 = Instant::now();
        let mut p = pool(40000, 40001, 10);
        let a = p.take(t0 + Duration::from_secs(20)).unwrap();
        p.release(a, t0 + Duration::from_secs(20));
        assert_eq!(p.take(t0), None);
        assert_eq!(p.take(t0 + Duration::from_secs(30)), Some(a));
    }
}
