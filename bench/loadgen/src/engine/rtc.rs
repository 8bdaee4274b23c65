//! One str0m client inside the engine's loop: its datagrams go out, its events come in, and its
//! deadline sits in the engine's timer heap like any send, spaced so that str0m's housekeeping
//! does not cost the generator more than the bridge would notice.

use super::stats::{on_media, Stats};
use super::{Ev, LegState, Timers, T_RTC};
use crate::util;
use mio::net::UdpSocket;
use std::cmp::Reverse;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Instant;
use str0m::media::{Mid, Pt};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

pub(super) struct RtcIo {
    pub(super) sock: UdpSocket,
    pub(super) local: SocketAddr,
    pub(super) rtc: Box<Rtc>,
    pub(super) mid: Mid,
    pub(super) pt: Pt,
    pub(super) connected: bool,
    pub(super) failed: bool,
    /// The str0m deadline currently in the timer heap.
    pub(super) deadline_ns: u64,
    /// The deadline str0m asked for last.
    pub(super) want_ns: u64,
}

impl RtcIo {
    pub(super) fn new(sock: UdpSocket, local: SocketAddr, rtc: Box<Rtc>, mid: Mid, pt: Pt) -> RtcIo {
        RtcIo { sock, local, rtc, mid, pt, connected: false, failed: false, deadline_ns: u64::MAX, want_ns: u64::MAX }
    }
}

#[inline]
pub(super) fn fail(r: &mut RtcIo, st: &LegState, ev: &mpsc::Sender<Ev>) {
    if !r.failed {
        r.failed = true;
        let _ = ev.send(Ev::Failed { leg: st.id });
    }
}

/// Lets str0m run its timers now, then drains its output and puts its next deadline in the heap.
#[inline]
pub(super) fn timeout(
    r: &mut RtcIo,
    st: &mut LegState,
    stats: &mut Stats,
    ev: &mpsc::Sender<Ev>,
    timers: &mut Timers,
    idx: usize,
) {
    let inst = Instant::now();
    if r.rtc.handle_input(Input::Timeout(inst)).is_err() {
        fail(r, st, ev);
    } else {
        drain_rtc(r, st, stats, ev, inst);
        push_rtc_timer(timers, r, idx);
    }
}

/// Minimum spacing of a connected client's str0m timeouts (LOADGEN_RTC_TICK_US, default 5000).
fn rtc_tick_ns() -> u64 {
    static T: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        std::env::var("LOADGEN_RTC_TICK_US").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(5000) * 1000
    })
}

#[inline]
pub(super) fn push_rtc_timer(timers: &mut Timers, r: &mut RtcIo, idx: usize) {
    if r.want_ns != r.deadline_ns && r.want_ns != u64::MAX && !r.failed {
        // Never schedule in the past. Once connected, str0m's housekeeping (RTCP, TWCC feedback,
        // ICE keep-alives) runs at most every 5 ms per client: that keeps the generator's cost per
        // client down and changes nothing the bridge can notice.
        let min_gap = if r.connected { rtc_tick_ns() } else { 100_000 };
        let t = r.want_ns.max(util::now_ns() + min_gap);
        r.want_ns = t;
        r.deadline_ns = t;
        timers.push(Reverse((t, idx as u32, T_RTC)));
    }
}

/// Runs str0m's output: datagrams out, events in, and the next deadline into `r.deadline_ns`
/// (the caller pushes the timer).
#[inline]
pub(super) fn drain_rtc(r: &mut RtcIo, st: &mut LegState, stats: &mut Stats, ev: &mpsc::Sender<Ev>, now: Instant) {
    drain_rtc_at(r, st, stats, ev, util::ns_of(now))
}

/// As [`drain_rtc`], with the kernel receive time of the datagram just fed in: media it yields is
/// counted as received then.
pub(super) fn drain_rtc_at(r: &mut RtcIo, st: &mut LegState, stats: &mut Stats, ev: &mpsc::Sender<Ev>, rx_ns: u64) {
    loop {
        match r.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                r.want_ns = util::ns_of(t);
                return;
            }
            Ok(Output::Transmit(t)) => {
                let ok = r.sock.send_to(&t.contents, t.destination).is_ok();
                stats.on_rtc_transmit(ok);
            }
            Ok(Output::Event(e)) => match e {
                Event::Connected => {
                    r.connected = true;
                    let _ = ev.send(Ev::Connected { leg: st.id, ns: util::now_ns() });
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    fail(r, st, ev);
                }
                Event::RtpPacket(p) => {
                    on_media(st, stats, ev, &p.payload, rx_ns);
                }
                _ => {}
            },
            Err(_) => {
                fail(r, st, ev);
                return;
            }
        }
    }
}
