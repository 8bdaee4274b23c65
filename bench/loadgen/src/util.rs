//! Clock, payload stamps, percentiles and /proc readings.

use serde::Serialize;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process-wide monotonic epoch every stamp is relative to.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Fixes the epoch and the wall-clock offset; call once at start.
pub fn init_clocks() {
    epoch();
    realtime_offset();
}

pub fn ns_of(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

pub fn now_ns() -> u64 {
    ns_of(Instant::now())
}

pub fn instant_of(ns: u64) -> Instant {
    epoch() + Duration::from_nanos(ns)
}

fn realtime_ns() -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// CLOCK_REALTIME minus our monotonic ns, read once: kernel receive timestamps (SO_TIMESTAMPNS)
/// are wall-clock, stamps are monotonic. Over a few minutes the two clocks do not drift apart by
/// anything measurable here.
fn realtime_offset() -> i128 {
    static OFF: OnceLock<i128> = OnceLock::new();
    *OFF.get_or_init(|| {
        let mut best = (i128::MAX, 0i128);
        for _ in 0..8 {
            let a = now_ns() as i128;
            let rt = realtime_ns();
            let b = now_ns() as i128;
            if b - a < best.0 {
                best = (b - a, rt - (a + b) / 2);
            }
        }
        best.1
    })
}

/// A kernel receive timestamp (CLOCK_REALTIME ns) in our monotonic ns.
pub fn mono_of_realtime(rt_ns: i128) -> u64 {
    (rt_ns - realtime_offset()).max(0) as u64
}

/// A stamp written over the last bytes of a forwarded payload: magic, sender id, sequence, send
/// time. Bridges that forward (SFU, relay) do not touch payload bytes, so the receiver gets the
/// send time back without any shared state.
pub const STAMP_LEN: usize = 20;
const MAGIC: u32 = 0x5342_4c47; // "SBLG"

pub fn write_stamp(payload: &mut [u8], sender: u32, seq: u32, t_ns: u64) {
    let n = payload.len();
    debug_assert!(n > STAMP_LEN);
    let s = &mut payload[n - STAMP_LEN..];
    s[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    s[4..8].copy_from_slice(&sender.to_be_bytes());
    s[8..12].copy_from_slice(&seq.to_be_bytes());
    s[12..20].copy_from_slice(&t_ns.to_be_bytes());
}

/// A decoded stamp. Sender and sequence travel on the wire for packet dumps; the engine only
/// needs the send time.
pub struct Stamp {
    pub t_ns: u64,
}

pub fn read_stamp(payload: &[u8]) -> Option<Stamp> {
    let n = payload.len();
    if n < STAMP_LEN {
        return None;
    }
    let s = &payload[n - STAMP_LEN..];
    if u32::from_be_bytes(s[0..4].try_into().ok()?) != MAGIC {
        return None;
    }
    Some(Stamp { t_ns: u64::from_be_bytes(s[12..20].try_into().ok()?) })
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub n: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Percentiles of values in microseconds, reported in milliseconds.
pub fn percentiles_us(v: &mut [u32]) -> Percentiles {
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_unstable();
    let at = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        Some(v[i] as f64 / 1000.0)
    };
    Percentiles { n: v.len(), p50_ms: at(0.50), p90_ms: at(0.90), p99_ms: at(0.99), max_ms: at(1.0) }
}

/// Percentiles of values in milliseconds.
pub fn percentiles_ms(v: &[f64]) -> Percentiles {
    let mut us: Vec<u32> = v.iter().map(|x| (x * 1000.0).max(0.0).min(u32::MAX as f64) as u32).collect();
    percentiles_us(&mut us)
}

/// CPU time (user + system) of a process and all its threads, in seconds, from /proc/<pid>/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after ')' start at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz)
}

/// Sum of the threads' on-CPU time in nanoseconds from /proc/<pid>/task/*/schedstat: finer than
/// the 10 ms ticks of /proc/<pid>/stat. Threads that exit between two readings are lost, which
/// is why both are reported.
pub fn sched_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let p = e.ok()?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(p) {
            total += s.split_whitespace().next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Some(total)
}

/// Resident set size in KiB (VmRSS of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU usage of a set of processes between two points in time.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    at: Instant,
    ticks_s: f64,
    sched_ns: u64,
}

pub fn cpu_mark(pids: &[u32]) -> CpuMark {
    let mut ticks_s = 0.0;
    let mut sched = 0;
    for &p in pids {
        ticks_s += cpu_seconds(p).unwrap_or(0.0);
        sched += sched_ns(p).unwrap_or(0);
    }
    CpuMark { at: Instant::now(), ticks_s, sched_ns: sched }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUse {
    pub wall_s: f64,
    /// utime + stime from /proc/<pid>/stat (10 ms ticks).
    pub cpu_s: f64,
    /// The same from schedstat (ns resolution).
    pub sched_cpu_s: f64,
    /// cpu_s / wall_s: share of one core.
    pub core_share: f64,
}

pub fn cpu_between(a: CpuMark, b: CpuMark) -> CpuUse {
    let wall_s = b.at.duration_since(a.at).as_secs_f64();
    let cpu_s = (b.ticks_s - a.ticks_s).max(0.0);
    let sched_cpu_s = b.sched_ns.saturating_sub(a.sched_ns) as f64 / 1e9;
    CpuUse { wall_s, cpu_s, sched_cpu_s, core_share: if wall_s > 0.0 { cpu_s / wall_s } else { 0.0 } }
}

/// Busy and total jiffies of every CPU (/proc/stat), to show how busy each core was in a window,
/// including work of other processes on a shared machine.
pub fn cpu_jiffies() -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(|b| b.is_ascii_digit()))
        .map(|l| {
            let v: Vec<u64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// Busy percentage of each CPU between two readings.
pub fn cpu_busy_pct(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let t = y.1.saturating_sub(x.1);
            if t == 0 {
                0.0
            } else {
                100.0 * y.0.saturating_sub(x.0) as f64 / t as f64
            }
        })
        .collect()
}

/// Datagrams the kernel dropped because a socket's receive buffer was full: summed over the UDP
/// sockets the process `pid` holds (the `drops` column of /proc/net/udp and udp6).
pub fn udp_drops(pid: u32) -> Option<u64> {
    let mut inodes = std::collections::HashSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if let Ok(t) = std::fs::read_link(e.path()) {
            let t = t.to_string_lossy();
            if let Some(i) = t.strip_prefix("socket:[").and_then(|x| x.strip_suffix(']')) {
                if let Ok(i) = i.parse::<u64>() {
                    inodes.insert(i);
                }
            }
        }
    }
    let mut drops = 0;
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for l in text.lines().skip(1) {
            let c: Vec<&str> = l.split_whitespace().collect();
            if c.len() < 13 {
                continue;
            }
            if c[9].parse::<u64>().is_ok_and(|i| inodes.contains(&i)) {
                drops += c[c.len() - 1].parse::<u64>().unwrap_or(0);
            }
        }
    }
    Some(drops)
}
