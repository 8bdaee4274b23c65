//! A leg's send schedule: its source's packets looped from a start time, each sent when its timer
//! comes due, and a leg that fell far behind skipping ahead instead of bursting.

use super::{plain, rtc, Engine, Io, SendCfg, T_SEND};
use crate::util;
use std::cmp::Reverse;
use str0m::rtp::{RtpWrite, SeqNo};

pub(super) struct Sender {
    pub(super) cfg: SendCfg,
    idx: usize,
    cycle: u64,
    seq: u16,
    ts_base: u32,
    count: u32,
    pub(super) due_ns: u64,
    running: bool,
}

impl Sender {
    pub(super) fn new(cfg: SendCfg) -> Sender {
        Sender {
            idx: 0,
            cycle: 0,
            seq: (cfg.ssrc as u16).wrapping_mul(7),
            ts_base: cfg.ssrc.wrapping_mul(2654435761),
            count: 0,
            due_ns: cfg.start_ns,
            running: true,
            cfg,
        }
    }

    /// (Re)starts the schedule from its first packet at `at_ns`; returns when that packet is due.
    pub(super) fn restart(&mut self, at_ns: u64) -> u64 {
        self.cfg.start_ns = at_ns;
        self.idx = 0;
        self.cycle = 0;
        self.due_ns = at_ns + self.cfg.src.items[0].at_ns;
        self.running = true;
        self.due_ns
    }
}

impl Engine {
    /// Sends leg `idx`'s packet due at `due` (now is `now`) and puts its next one in the heap.
    #[inline]
    pub(super) fn send_due(&mut self, idx: usize, due: u64, now: u64) {
        let quiet = self.quiet;
        let leg = &mut self.legs[idx];
        let Some(s) = leg.send.as_mut() else { return };
        // A timer from before a restart (StartAll) is stale: the schedule has its own new one.
        if due != s.due_ns {
            return;
        }
        if !s.running || quiet {
            return;
        }
        let item = &s.cfg.src.items[s.idx];
        let can_send = match &leg.io {
            Io::Plain { .. } => true,
            Io::Rtc(r) => r.connected && !r.failed,
        };
        if can_send {
            let seq = s.seq;
            let ts = s.ts_base.wrapping_add((s.cycle as u32).wrapping_mul(s.cfg.src.ts_period)).wrapping_add(item.ts);
            let mut payload = item.payload.clone();
            if s.cfg.stamp && payload.len() > util::STAMP_LEN {
                util::write_stamp(&mut payload, leg.st.id, s.count, now);
            }
            let ok = match &mut leg.io {
                Io::Plain { sock, remote } => {
                    plain::write(&mut self.out, item.marker, s.cfg.pt, seq, ts, s.cfg.ssrc, &payload);
                    sock.send_to(&self.out, *remote).is_ok()
                }
                Io::Rtc(r) => {
                    let inst = util::instant_of(now);
                    let pt = r.pt;
                    let ok = match r.rtc.direct_api().stream_tx_by_mid(r.mid, None) {
                        Some(tx) => {
                            let w = RtpWrite::new(pt, SeqNo::from(seq as u64), ts, inst, payload).marker(item.marker);
                            tx.write_rtp(w);
                            true
                        }
                        None => false,
                    };
                    rtc::timeout(r, &mut leg.st, &mut self.stats, &self.ev, &mut self.timers, idx);
                    ok
                }
            };
            s.seq = s.seq.wrapping_add(1);
            s.count = s.count.wrapping_add(1);
            self.stats.on_sent(now, due, ok, item.onset, s.cfg.fanout);
        }
        // Next packet of the schedule.
        s.idx += 1;
        if s.idx == s.cfg.src.items.len() {
            s.idx = 0;
            s.cycle += 1;
        }
        s.due_ns = s.cfg.start_ns + s.cycle * s.cfg.src.period_ns + s.cfg.src.items[s.idx].at_ns;
        // A leg that fell far behind (not connected yet, or the engine was stalled) skips ahead
        // instead of bursting.
        if s.due_ns + 200_000_000 < now {
            let period = s.cfg.src.period_ns;
            let behind = (now - s.due_ns) / period;
            s.cycle += behind;
            s.due_ns += behind * period;
        }
        self.timers.push(Reverse((s.due_ns, idx as u32, T_SEND)));
    }
}
