//! What the engine counts while it runs, and the [`Report`] it makes of it: sends against their
//! schedule, and every received packet's delay, stamped or heard, inside the measurement window.

use super::{Engine, Ev, Io, LegState};
use crate::util::{self, Percentiles};
use serde::Serialize;
use std::sync::mpsc;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub legs: usize,
    pub rtc_legs: usize,
    pub rtc_connected: usize,
    pub rtc_failed: usize,
    pub sent_total: u64,
    pub sent_window: u64,
    /// Sum over packets sent in the window of their fan-out.
    pub expected_window: u64,
    pub recv_total: u64,
    /// Stamped packets whose send stamp is inside the window.
    pub recv_stamped_window: u64,
    /// Any media packet received while the window was open (mixes carry no stamp).
    pub recv_any_window: u64,
    pub recv_bytes_window: u64,
    pub legs_with_media: usize,
    /// Receiving legs (no sender of their own) that got no stamped packet from the window, and
    /// the fewest / most such packets one receiving leg got.
    pub receivers_silent_window: usize,
    pub receiver_min_window: u64,
    pub receiver_max_window: u64,
    /// Send stamp to receive, per packet in the window.
    pub delay: Percentiles,
    /// Tone onset sent to tone onset heard (mixer scenarios).
    pub onset_delay: Percentiles,
    pub onsets_sent_window: u64,
    pub onsets_heard_window: u64,
    /// How late the engine sent packets against their schedule (its own overload shows here).
    pub send_lateness: Percentiles,
    pub send_errors: u64,
    pub rtcp_packets: u64,
    /// Datagrams all str0m clients sent (media, RTCP, STUN, DTLS), whole run.
    pub rtc_datagrams_out: u64,
    pub window_s: f64,
}

#[derive(Default)]
pub(super) struct Stats {
    win: (u64, u64),
    sent_total: u64,
    sent_window: u64,
    expected_window: u64,
    recv_total: u64,
    recv_stamped_window: u64,
    recv_any_window: u64,
    recv_bytes_window: u64,
    delays_us: Vec<u32>,
    onset_delays_ms: Vec<f64>,
    onsets: Vec<u64>,
    onsets_sent_window: u64,
    onsets_heard_window: u64,
    lateness_us: Vec<u32>,
    send_errors: u64,
    rtcp_packets: u64,
    rtc_datagrams_out: u64,
}

impl Stats {
    #[inline]
    fn in_win(&self, t: u64) -> bool {
        t >= self.win.0 && t < self.win.1
    }

    /// Count sends and receives stamped in [start, end).
    pub(super) fn set_window(&mut self, start_ns: u64, end_ns: u64) {
        self.win = (start_ns, end_ns);
    }

    /// One packet of a schedule, due at `due` and sent at `now` (`ok`: the socket or str0m took it).
    #[inline]
    pub(super) fn on_sent(&mut self, now: u64, due: u64, ok: bool, onset: bool, fanout: u32) {
        self.sent_total += 1;
        if !ok {
            self.send_errors += 1;
        }
        if onset {
            self.onsets.push(now);
        }
        if self.in_win(now) {
            self.sent_window += 1;
            self.expected_window += fanout as u64;
            if onset {
                self.onsets_sent_window += 1;
            }
            self.lateness_us.push((now.saturating_sub(due) / 1000) as u32);
        }
    }

    /// One datagram a str0m client sent (media, RTCP, STUN or DTLS).
    #[inline]
    pub(super) fn on_rtc_transmit(&mut self, ok: bool) {
        self.rtc_datagrams_out += 1;
        if !ok {
            self.send_errors += 1;
        }
    }

    #[inline]
    pub(super) fn on_rtcp(&mut self) {
        self.rtcp_packets += 1;
    }
}

/// One media payload a leg received at `rx_ns`: its stamp's delay, or the onset it carries.
pub(super) fn on_media(st: &mut LegState, stats: &mut Stats, ev: &mpsc::Sender<Ev>, payload: &[u8], rx_ns: u64) {
    stats.recv_total += 1;
    if st.first_rx_ns.is_none() {
        st.first_rx_ns = Some(rx_ns);
        let _ = ev.send(Ev::FirstMedia { leg: st.id, ns: rx_ns });
    }
    let in_win = stats.in_win(rx_ns);
    if in_win {
        stats.recv_any_window += 1;
        stats.recv_bytes_window += payload.len() as u64;
    }
    if let Some(s) = util::read_stamp(payload) {
        if stats.in_win(s.t_ns) {
            stats.recv_stamped_window += 1;
            st.rx_window += 1;
            stats.delays_us.push((rx_ns.saturating_sub(s.t_ns) / 1000) as u32);
        }
    }
    if let Some(d) = st.detector.as_mut() {
        if let Some(offset) = d.feed(payload) {
            let heard = rx_ns + offset;
            // The latest onset sent at or before the moment it was heard.
            let i = stats.onsets.partition_point(|&s| s <= heard);
            if i > 0 {
                let sent = stats.onsets[i - 1];
                let delay_ms = (heard - sent) as f64 / 1e6;
                if delay_ms < 330.0 && stats.in_win(sent) {
                    stats.onsets_heard_window += 1;
                    stats.onset_delays_ms.push(delay_ms);
                }
            }
        }
    }
}

impl Engine {
    pub(super) fn report(&mut self) -> Report {
        let mut rtc_legs = 0;
        let mut rtc_connected = 0;
        let mut rtc_failed = 0;
        for l in &self.legs {
            if let Io::Rtc(r) = &l.io {
                rtc_legs += 1;
                rtc_connected += r.connected as usize;
                rtc_failed += r.failed as usize;
            }
        }
        let rx: Vec<u64> = self.legs.iter().filter(|l| l.send.is_none()).map(|l| l.st.rx_window).collect();
        let s = &mut self.stats;
        Report {
            receivers_silent_window: rx.iter().filter(|&&n| n == 0).count(),
            receiver_min_window: rx.iter().copied().min().unwrap_or(0),
            receiver_max_window: rx.iter().copied().max().unwrap_or(0),
            legs: self.legs.len(),
            rtc_legs,
            rtc_connected,
            rtc_failed,
            sent_total: s.sent_total,
            sent_window: s.sent_window,
            expected_window: s.expected_window,
            recv_total: s.recv_total,
            recv_stamped_window: s.recv_stamped_window,
            recv_any_window: s.recv_any_window,
            recv_bytes_window: s.recv_bytes_window,
            legs_with_media: self.legs.iter().filter(|l| l.st.first_rx_ns.is_some()).count(),
            delay: util::percentiles_us(&mut s.delays_us),
            onset_delay: util::percentiles_ms(&s.onset_delays_ms),
            onsets_sent_window: s.onsets_sent_window,
            onsets_heard_window: s.onsets_heard_window,
            send_lateness: util::percentiles_us(&mut s.lateness_us),
            send_errors: s.send_errors,
            rtcp_packets: s.rtcp_packets,
            rtc_datagrams_out: s.rtc_datagrams_out,
            window_s: (s.win.1.saturating_sub(s.win.0)) as f64 / 1e9,
        }
    }
}
