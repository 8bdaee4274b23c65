//! The benchmark scenarios (see docs/benchmarks.md). Each one sets up its legs through the target's
//! control API, runs a warm-up, opens a measurement window, and returns one JSON result.
//!
//! A scenario has a file of its own; this one holds what their setups share: joining a leg through
//! Switchboard's API, where the kernel's floor listens, and when each leg starts.

mod mcu;
mod measure;
mod s1;
mod s1_janus;
mod s2;
mod s5;

pub use mcu::{mcu, Mcu};
pub use s1::{s1, S1};
pub use s2::s2;
pub use s5::s5;

use crate::engine::{self, Ev, IoSpec};
use crate::media::Codec;
use crate::sb::{self, Api};
use crate::Common;
use anyhow::Result;
use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use str0m::media::{Direction, Pt};

/// Joins a plain RTP leg at `local` to `room`: where to send its media, and the join's answer time.
fn join_plain(
    api: &Api,
    room: &str,
    local: SocketAddr,
    codec: Codec,
    pt: u8,
    direction: &str,
) -> Result<(SocketAddr, Duration)> {
    let offer = sb::plain_offer(local, codec, pt, direction);
    let j = api.join(room, &offer, serde_json::json!({}))?;
    Ok((sb::media_addr(&j.answer)?, j.took))
}

/// Joins a str0m client on `sock` to `room`: its leg's I/O, the payload type to send with, and
/// the join's answer time.
fn join_rtc(
    api: &Api,
    room: &str,
    sock: UdpSocket,
    local: SocketAddr,
    video: bool,
    dir: Direction,
    extra: Value,
) -> Result<(IoSpec, Pt, Duration)> {
    let mut o = sb::rtc_offer(local, video, dir)?;
    let j = api.join(room, &o.offer, extra)?;
    let pt = sb::rtc_accept(&mut o, &j.answer)?;
    Ok((IoSpec::Rtc { sock, local, rtc: o.rtc, mid: o.mid, pt }, pt, j.took))
}

/// Where `kernel-floor` listens for leg `i`.
fn floor_addr(c: &Common, i: usize) -> SocketAddr {
    let i = if c.floor_shared { 0 } else { i as u16 };
    SocketAddr::from(([127, 0, 0, 1], c.floor_base + i))
}

fn stagger(t0: u64, i: usize, n: usize) -> u64 {
    t0 + (i as u64 * 20_000_000) / n.max(1) as u64
}

/// Waits until `n` WebRTC legs reported Connected (or failed), up to `limit`.
fn wait_connected(eng: &engine::Handle, n: usize, limit: Duration) -> (usize, usize) {
    let deadline = Instant::now() + limit;
    let (mut ok, mut failed) = (0, 0);
    while ok + failed < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match eng.events.recv_timeout(left) {
            Ok(Ev::Connected { .. }) => ok += 1,
            Ok(Ev::Failed { .. }) => failed += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (ok, failed)
}
