//! RFC 4733 telephone-events: reporting received digits exactly once, and playing digits out.
//!
//! The receiver keys events on their RTP timestamp, never on the marker bit (carriers leave it
//! unset), and so copes with repeated updates, the three end packets, and events whose end
//! packets were all lost (reported after [`EVENT_TIMEOUT`] without news, or when a new event
//! starts).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// An event with no update for this long is over.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(1);
/// Silence between two digits the bridge sends.
pub const INTER_DIGIT_GAP: Duration = Duration::from_millis(50);
/// Volume the bridge sends events with (-10 dBm0).
const VOLUME: u8 = 10;
/// How many packets carry the end bit (RFC 4733 §2.5.1.4).
const END_PACKETS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("telephone-event payload shorter than 4 bytes")]
    Truncated,
    #[error("{0:?} is not a DTMF digit (use 0-9, *, #, A-D)")]
    InvalidDigit(char),
    #[error("the leg already has {0} digits waiting to be played; send more once they have played")]
    QueueFull(usize),
}

/// Digits a leg holds waiting to be played: a client that posts faster than digits play (about
/// 150 ms each) is told so instead of growing the queue without end.
pub const MAX_QUEUED_DIGITS: usize = 128;

/// The digit of an event code 0-15.
pub fn digit_of(code: u8) -> Option<char> {
    b"0123456789*#ABCD".get(usize::from(code)).map(|b| char::from(*b))
}

pub fn code_of(digit: char) -> Option<u8> {
    let upper = digit.to_ascii_uppercase();
    "0123456789*#ABCD".chars().position(|c| c == upper).and_then(|p| u8::try_from(p).ok())
}

/// A finished digit: `(digit, duration_ms)`.
pub type Digit = (char, u32);

#[derive(Debug, Clone, Copy)]
struct RxEvent {
    ts: u32,
    code: u8,
    duration: u32,
    clock_rate: u32,
    updated: Instant,
}

impl RxEvent {
    fn digit(&self) -> Option<Digit> {
        let ms = u64::from(self.duration) * 1000 / u64::from(self.clock_rate.max(1));
        Some((digit_of(self.code)?, u32::try_from(ms).unwrap_or(u32::MAX)))
    }
}

/// Turns received telephone-event packets into digits, each reported once.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    current: Option<RxEvent>,
    last_finished_ts: Option<u32>,
}

/// Serial-number order of RTP timestamps: is `a` after `b`?
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl DtmfReceiver {
    /// Takes one telephone-event payload. Finished digits go to `emit` (at most two: an
    /// unfinished event that a new one ends, then the new one if it is already over).
    pub fn on_packet(
        &mut self,
        now: Instant,
        ts: u32,
        payload: &[u8],
        clock_rate: u32,
        mut emit: impl FnMut(Digit),
    ) -> Result<(), DtmfError> {
        let [code, flags, d0, d1, ..] = *payload else {
            return Err(DtmfError::Truncated);
        };
        let end = flags & 0x80 != 0;
        let duration = u32::from(u16::from_be_bytes([d0, d1]));
        if self.last_finished_ts.is_some_and(|last| !after(ts, last)) {
            return Ok(()); // a repeat or late packet of an event already reported
        }
        match &mut self.current {
            Some(cur) if cur.ts == ts => {
                cur.duration = cur.duration.max(duration);
                cur.updated = now;
            }
            Some(cur) if after(cur.ts, ts) => return Ok(()), // late packet of an older event
            _ => {
                // A new event; one still open lost all its end packets and is over now.
                self.finish(&mut emit);
                self.current = Some(RxEvent { ts, code, duration, clock_rate, updated: now });
            }
        }
        if end {
            self.finish(&mut emit);
        }
        Ok(())
    }

    fn finish(&mut self, emit: &mut impl FnMut(Digit)) {
        if let Some(ev) = self.current.take() {
            self.last_finished_ts = Some(ev.ts);
            if let Some(d) = ev.digit() {
                emit(d);
            }
        }
    }

    /// Ends an event that has had no update for [`EVENT_TIMEOUT`].
    pub fn on_timeout(&mut self, now: Instant, emit: impl FnMut(Digit)) {
        let mut emit = emit;
        if self.deadline().is_some_and(|d| now >= d) {
            self.finish(&mut emit);
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.current.map(|c| c.updated + EVENT_TIMEOUT)
    }
}

/// One telephone-event packet to send: the leg adds seq, SSRC and PT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxPacket {
    pub marker: bool,
    /// The event's start, in the leg's RTP timestamp space.
    pub ts: u32,
    pub payload: [u8; 4],
}

#[derive(Debug, Clone, Copy)]
struct Playing {
    code: u8,
    ts: u32,
    /// Total duration in telephone-event clock units, at most `u16::MAX`.
    total: u64,
    /// Packets sent so far for this event.
    sent: u32,
    ends: u32,
}

/// Plays queued digits as RFC 4733 packets, paced by `poll` deadlines.
#[derive(Debug, Default)]
pub struct DtmfSender {
    queue: VecDeque<u8>,
    duration_ms: u32,
    playing: Option<Playing>,
    next_at: Option<Instant>,
}

impl DtmfSender {
    /// Queues `digits`; all of them are checked before any is queued.
    pub fn queue(&mut self, now: Instant, digits: &str, duration_ms: u32) -> Result<(), DtmfError> {
        let codes: Vec<u8> =
            digits.chars().map(|c| code_of(c).ok_or(DtmfError::InvalidDigit(c))).collect::<Result<_, _>>()?;
        if self.queue.len() + codes.len() > MAX_QUEUED_DIGITS {
            return Err(DtmfError::QueueFull(self.queue.len()));
        }
        self.queue.extend(codes);
        self.duration_ms = duration_ms;
        if self.next_at.is_none() {
            self.next_at = Some(now);
        }
        Ok(())
    }

    /// True while an event is being sent: the leg holds back room audio meanwhile.
    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.next_at
    }

    /// Returns the packet due at `now`, if any. `interval` is the packet spacing, `clock_rate`
    /// the telephone-event clock, `ts_now` the leg's current RTP timestamp (for a new event).
    pub fn poll(&mut self, now: Instant, interval: Duration, clock_rate: u32, ts_now: u32) -> Option<TxPacket> {
        let due = self.next_at?;
        if now < due {
            return None;
        }
        // One packet's worth of duration, at most what the 16-bit duration field holds.
        let max = u64::from(u16::MAX);
        let step = (interval.as_millis().min(u128::from(u32::MAX)) as u64 * u64::from(clock_rate) / 1000).clamp(1, max);
        let p = match &mut self.playing {
            Some(p) => p,
            None => {
                let Some(code) = self.queue.pop_front() else {
                    self.next_at = None;
                    return None;
                };
                let total = (u64::from(self.duration_ms) * u64::from(clock_rate) / 1000).clamp(step, max);
                self.playing.insert(Playing { code, ts: ts_now, total, sent: 0, ends: 0 })
            }
        };
        let elapsed = (u64::from(p.sent) + 1).saturating_mul(step);
        let end = elapsed >= p.total;
        let duration = if end { p.total } else { elapsed };
        let packet = TxPacket {
            marker: p.sent == 0,
            ts: p.ts,
            payload: {
                // `duration` is at most `total`, which is at most u16::MAX.
                let d = u16::try_from(duration).unwrap_or(u16::MAX).to_be_bytes();
                [p.code, (u8::from(end) << 7) | VOLUME, d[0], d[1]]
            },
        };
        p.sent += 1;
        if end {
            p.ends += 1;
        }
        if p.ends >= END_PACKETS {
            self.playing = None;
            self.next_at = if self.queue.is_empty() { None } else { Some(due + INTER_DIGIT_GAP) };
        } else {
            self.next_at = Some(due + interval);
        }
        Some(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(code: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [code, (u8::from(end) << 7) | 10, d[0], d[1]]
    }

    /// Feeds `(ts, payload)` packets 20 ms apart; returns what was reported.
    fn feed(rx: &mut DtmfReceiver, t0: Instant, packets: &[(u32, [u8; 4])]) -> Vec<Digit> {
        let mut got = Vec::new();
        for (i, (ts, p)) in packets.iter().enumerate() {
            let now = t0 + Duration::from_millis(20 * i as u64);
            rx.on_packet(now, *ts, p, 8000, |d| got.push(d)).unwrap();
        }
        got
    }

    #[test]
    fn one_digit_with_triple_end_is_reported_once() {
        let mut rx = DtmfReceiver::default();
        let t0 = Instant::now();
        let seq = [(800, pkt(5, false, 160)), (800, pkt(5, false, 320)), (800, pkt(5, false, 320))]
            .into_iter()
            .chain([(800, pkt(5, true, 800)); 3])
            .collect::<Vec<_>>();
        assert_eq!(feed(&mut rx, t0, &seq), [('5', 100)]);
        assert_eq!(rx.deadline(), None);
    }

    #[test]
    fn same_digit_twice_with_different_timestamps() {
        let mut rx = DtmfReceiver::default();
        let seq = [(800, pkt(1, false, 160)), (800, pkt(1, true, 400)), (800, pkt(1, true, 400))]
            .into_iter()
            .chain([(2400, pkt(1, false, 160)), (2400, pkt(1, true, 480)), (2400, pkt(1, true, 480))])
            .collect::<Vec<_>>();
        assert_eq!(feed(&mut rx, Instant::now(), &seq), [('1', 50), ('1', 60)]);
    }

    #[test]
    fn lost_end_packets_time_out_or_end_at_the_next_event() {
        let mut rx = DtmfReceiver::default();
        let t0 = Instant::now();
        assert!(feed(&mut rx, t0, &[(100, pkt(11, false, 160)), (100, pkt(11, false, 320))]).is_empty());
        let mut got = Vec::new();
        rx.on_timeout(t0 + Duration::from_millis(500), |d| got.push(d));
        assert!(got.is_empty());
        rx.on_timeout(rx.deadline().unwrap(), |d| got.push(d));
        assert_eq!(got, [('#', 40)]);
        // A late end packet of that event is not reported again.
        assert!(feed(&mut rx, t0, &[(100, pkt(11, true, 400))]).is_empty());

        let got = feed(&mut rx, t0, &[(900, pkt(0, false, 160)), (1900, pkt(10, true, 160))]);
        assert_eq!(got, [('0', 20), ('*', 20)]);
    }

    #[test]
    fn truncated_and_non_digit_events() {
        let mut rx = DtmfReceiver::default();
        assert_eq!(rx.on_packet(Instant::now(), 1, &[1, 2], 8000, |_| {}), Err(DtmfError::Truncated));
        let got = feed(&mut rx, Instant::now(), &[(5, pkt(16, true, 160))]); // flash: not a digit
        assert!(got.is_empty());
    }

    #[test]
    fn sender_paces_one_event() {
        let mut tx = DtmfSender::default();
        let t0 = Instant::now();
        tx.queue(t0, "9", 120).unwrap();
        let iv = Duration::from_millis(50);
        let mut out = Vec::new();
        let mut now = t0;
        while let Some(at) = tx.deadline() {
            now = now.max(at);
            if let Some(p) = tx.poll(now, iv, 8000, 4000) {
                out.push((now - t0, p));
            }
        }
        let durations: Vec<u16> = out.iter().map(|(_, p)| u16::from_be_bytes([p.payload[2], p.payload[3]])).collect();
        assert_eq!(durations, [400, 800, 960, 960, 960]);
        assert!(out.iter().all(|(_, p)| p.ts == 4000 && p.payload[0] == 9));
        assert_eq!(out.iter().filter(|(_, p)| p.marker).count(), 1);
        assert_eq!(out.iter().filter(|(_, p)| p.payload[1] & 0x80 != 0).count(), 3);
        assert_eq!(out[4].0, Duration::from_millis(200));
        assert_eq!(tx.queue(t0, "12x", 100), Err(DtmfError::InvalidDigit('x')));
    }

    #[test]
    fn sender_survives_extreme_settings() {
        for (ms, clock, duration) in [(2000, 48000, 60_000), (0, 8000, 0), (u64::MAX / 1000, 48000, u32::MAX)] {
            let mut tx = DtmfSender::default();
            let t0 = Instant::now();
            tx.queue(t0, "D", duration).unwrap();
            let mut sent = 0;
            let mut now = t0;
            while let Some(at) = tx.deadline() {
                now = now.max(at);
                sent += usize::from(tx.poll(now, Duration::from_millis(ms), clock, 0).is_some());
                if sent > 2000 {
                    break;
                }
            }
            assert!((3..=2000).contains(&sent), "{ms} ms at {clock}: {sent} packets");
        }
    }
}
