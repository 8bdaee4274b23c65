//! What a leg produced between two `poll` calls, in order, with recycled buffers so the steady
//! state allocates nothing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use switchboard_driver::{DriverEvent, Output, RtpMeta, TrackKey};

/// Beyond this many queued items the leg drops new output: `poll` is not being called.
pub const MAX_QUEUED: usize = 4096;

enum Item {
    Transmit { from: SocketAddr, to: SocketAddr, buf: Vec<u8> },
    Media { track: TrackKey, meta: RtpMeta, buf: Vec<u8> },
    Event(DriverEvent),
}

#[derive(Default)]
pub struct OutputQueue {
    items: VecDeque<Item>,
    pool: Vec<Vec<u8>>,
    /// Items refused because the queue was full.
    pub overflowed: u64,
}

impl OutputQueue {
    /// An empty buffer, recycled when possible.
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.pool.pop().unwrap_or_else(|| Vec::with_capacity(1500));
        b.clear();
        b
    }

    /// Gives a buffer back without sending it.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < 64 {
            self.pool.push(buf);
        }
    }

    fn push(&mut self, item: Item) {
        if self.items.len() >= MAX_QUEUED {
            self.overflowed += 1;
            match item {
                Item::Transmit { buf, .. } | Item::Media { buf, .. } => self.recycle(buf),
                Item::Event(_) => {}
            }
            return;
        }
        self.items.push_back(item);
    }

    pub fn transmit(&mut self, from: SocketAddr, to: SocketAddr, buf: Vec<u8>) {
        self.push(Item::Transmit { from, to, buf });
    }

    pub fn media(&mut self, track: TrackKey, meta: RtpMeta, buf: Vec<u8>) {
        self.push(Item::Media { track, meta, buf });
    }

    pub fn event(&mut self, event: DriverEvent) {
        self.push(Item::Event(event));
    }

    pub fn drain(&mut self, out: &mut dyn Output) {
        while let Some(item) = self.items.pop_front() {
            match item {
                Item::Transmit { from, to, buf } => {
                    out.transmit(from, to, &buf);
                    self.recycle(buf);
                }
                Item::Media { track, meta, buf } => {
                    out.media(track, &meta, &buf);
                    self.recycle(buf);
                }
                Item::Event(e) => out.event(e),
            }
        }
    }
}
