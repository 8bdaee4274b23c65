//! A packet jitter buffer per mixer input: packets wait `delay` after the first one arrives, then
//! leave in sequence order, one per frame. A hole becomes a loss (the decoder conceals it); a
//! packet older than what already played is late and dropped.

use std::time::{Duration, Instant};

/// Enough for 1.28 s of 20 ms frames; a buffer this full means the sender runs fast or bursts,
/// and the oldest packets are the least useful.
const CAPACITY: usize = 64;

#[derive(Debug)]
struct Entry {
    seq: u64,
    len: usize,
    data: [u8; 1500],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop<'a> {
    /// The next packet in order.
    Packet(&'a [u8]),
    /// The next packet is missing but later ones are here: conceal one frame.
    Lost,
    /// Nothing to play yet (start-up or the sender paused).
    Empty,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    pub late: u64,
    pub lost: u64,
}

pub struct JitterBuffer {
    delay: Duration,
    slots: Vec<Option<Box<Entry>>>,
    /// The next sequence number to play, once playout has started.
    next: Option<u64>,
    /// When the buffer started filling after being empty.
    filling_since: Option<Instant>,
    pub stats: JitterStats,
    popped: Option<Box<Entry>>,
}

impl JitterBuffer {
    pub fn new(delay: Duration) -> JitterBuffer {
        JitterBuffer {
            delay,
            slots: (0..CAPACITY).map(|_| None).collect(),
            next: None,
            filling_since: None,
            stats: JitterStats::default(),
            popped: None,
        }
    }

    /// Stores a packet. Copies the payload into a recycled slot, so a steady stream allocates
    /// nothing once the buffer has seen `CAPACITY` packets.
    pub fn push(&mut self, now: Instant, seq: u64, payload: &[u8]) {
        if payload.len() > 1500 {
            return;
        }
        if let Some(next) = self.next {
            if seq < next {
                self.stats.late += 1;
                return;
            }
            if seq >= next + CAPACITY as u64 {
                // Far ahead: the stream jumped (restart, or a long silence). Start over from it.
                self.clear();
            }
        }
        if self.is_empty() && self.filling_since.is_none() {
            self.filling_since = Some(now);
        }
        let i = (seq % CAPACITY as u64) as usize;
        let mut entry = match self.slots[i].take().or_else(|| self.popped.take()) {
            Some(e) => e,
            None => Box::new(Entry { seq: 0, len: 0, data: [0; 1500] }),
        };
        entry.seq = seq;
        entry.len = payload.len();
        entry.data[..payload.len()].copy_from_slice(payload);
        self.slots[i] = Some(entry);
    }

    fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    fn clear(&mut self) {
        for s in &mut self.slots {
            if let Some(e) = s.take() {
                self.popped = Some(e);
            }
        }
        self.next = None;
        self.filling_since = None;
    }

    fn lowest(&self) -> Option<u64> {
        self.slots.iter().flatten().map(|e| e.seq).min()
    }

    /// The frame to play now.
    pub fn pop(&mut self, now: Instant) -> Pop<'_> {
        let next = match self.next {
            Some(n) => n,
            None => {
                let Some(since) = self.filling_since else {
                    return Pop::Empty;
                };
                if now < since + self.delay {
                    return Pop::Empty;
                }
                match self.lowest() {
                    Some(l) => l,
                    None => return Pop::Empty,
                }
            }
        };
        let i = (next % CAPACITY as u64) as usize;
        match self.slots[i].take() {
            Some(e) if e.seq == next => {
                self.next = Some(next + 1);
                self.popped = Some(e);
                let e = self.popped.as_ref().expect("just stored");
                Pop::Packet(&e.data[..e.len])
            }
            other => {
                self.slots[i] = other;
                if self.is_empty() {
                    // The sender paused: wait for it, and buffer again when it resumes.
                    self.filling_since = None;
                    self.next = None;
                    return Pop::Empty;
                }
                self.next = Some(next + 1);
                self.stats.lost += 1;
                Pop::Lost
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn holds_for_the_delay_then_plays_in_order() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(40));
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
        let mut jb = JitterBuffer::new(ms(0));
        jb.push(t0, 1, b"1");
        jb.push(t0, 3, b"3");
        assert_eq!(jb.pop(t0), Pop::Packet(b"1"));
        assert_eq!(jb.pop(t0), Pop::Lost);
        jb.push(t0, 2, b"2");
        assert_eq!(jb.pop(t0), Pop::Packet(b"3"));
        assert_eq!(jb.stats, JitterStats { late: 1, lost: 1 });
    }

    #[test]
    fn a_jump_far_ahead_restarts_playout() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(0));
        jb.push(t0, 1, b"1");
        assert_eq!(jb.pop(t0), Pop::Packet(b"1"));
        jb.push(t0, 10_000, b"x");
        assert_eq!(jb.pop(t0), Pop::Packet(b"x"));
    }

    #[test]
    fn oversized_payload_is_ignored() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(ms(0));
        jb.push(t0, 1, &[0u8; 2000]);
        assert_eq!(jb.pop(t0), Pop::Empty);
    }
}
