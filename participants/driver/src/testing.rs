//! The one recording [`Output`] every crate's tests use: it keeps what a driver handed out, in
//! order, so a test can assert on datagrams, media and events without writing its own collector.

use crate::{DriverEvent, DropReason, Output, RtpMeta, TrackKey};
use std::net::SocketAddr;

/// Everything a driver's `poll` handed out, copied.
#[derive(Debug, Default, Clone)]
pub struct Collector {
    pub transmits: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    pub media: Vec<(TrackKey, RtpMeta, Vec<u8>)>,
    pub events: Vec<DriverEvent>,
}

impl Output for Collector {
    fn transmit(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        self.transmits.push((from, to, data.to_vec()));
    }
    fn media(&mut self, track: TrackKey, meta: &RtpMeta, payload: &[u8]) {
        self.media.push((track, *meta, payload.to_vec()));
    }
    fn event(&mut self, event: DriverEvent) {
        self.events.push(event);
    }
}

impl Collector {
    /// The reasons of every `Dropped` event, in order.
    pub fn drops(&self) -> Vec<DropReason> {
        self.events
            .iter()
            .filter_map(|e| match e {
                DriverEvent::Dropped { reason } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    /// Every DTMF digit reported, with its duration.
    pub fn digits(&self) -> Vec<(char, u32)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                DriverEvent::Dtmf { digit, duration_ms } => Some((*digit, *duration_ms)),
                _ => None,
            })
            .collect()
    }

    /// The media packets of one track, in order.
    pub fn media_of(&self, track: TrackKey) -> impl Iterator<Item = &(TrackKey, RtpMeta, Vec<u8>)> {
        self.media.iter().filter(move |(k, _, _)| *k == track)
    }

    /// Forgets everything collected so far.
    pub fn clear(&mut self) {
        self.transmits.clear();
        self.media.clear();
        self.events.clear();
    }
}

/// Deterministic pseudo-random numbers (xorshift64*) for tests that mangle input: a failure
/// reproduces from its seed. Not for anything but tests.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A position in something `len` long (0 when it is empty).
    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }
}
