//! What the kernel says about a running daemon: its open descriptors, resident memory and CPU
//! time (`/proc/<pid>`), and the UDP sockets bound in a port range with the datagrams each
//! dropped for want of buffer space (`/proc/net/udp`).

use std::fs;
use std::ops::RangeInclusive;

/// One look at a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcSample {
    /// Entries in `/proc/<pid>/fd`.
    pub fds: usize,
    /// `VmRSS`, in KiB.
    pub rss_kib: u64,
    /// User plus system CPU time so far, in clock ticks (`utime + stime` of `/proc/<pid>/stat`).
    pub cpu_ticks: u64,
}

/// Reads `/proc/<pid>`; `None` once the process is gone.
pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis do
    // not. utime and stime are fields 14 and 15, the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let cpu_ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcSample { fds, rss_kib, cpu_ticks })
}

/// Clock ticks a second, for [`ProcSample::cpu_ticks`].
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the system; it has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// What the scheduler says of one thread: time on a CPU and time spent runnable but waiting for
/// one (`/proc/<pid>/task/<tid>/schedstat`), in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedSample {
    pub ran_ns: u64,
    pub waited_ns: u64,
}

/// The scheduler's figures for the thread of process `pid` named `name` (its `comm`).
pub fn thread_sched(pid: u32, name: &str) -> Option<SchedSample> {
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = fs::read_to_string(task.path().join("schedstat")).ok()?;
        let mut f = stat.split_whitespace().map(|v| v.parse::<u64>().ok());
        return Some(SchedSample { ran_ns: f.next()??, waited_ns: f.next()?? });
    }
    None
}

/// A UDP socket bound on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpSocketStat {
    pub port: u16,
    /// Datagrams the kernel dropped at this socket (its receive buffer was full, or it refused
    /// them), since the socket was made.
    pub drops: u64,
    /// Bytes waiting in its receive queue.
    pub rx_queue: u64,
}

/// The IPv4 UDP sockets of this host whose local port is in `ports`, sorted by port. A test's
/// daemon owns its port block, so in its RTP range these are exactly its legs' sockets.
pub fn udp_sockets(ports: RangeInclusive<u16>) -> Vec<UdpSocketStat> {
    let text = fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let mut out: Vec<UdpSocketStat> = text.lines().skip(1).filter_map(parse_udp_line).collect();
    out.retain(|s| ports.contains(&s.port));
    out.sort_by_key(|s| s.port);
    out
}

/// One line of `/proc/net/udp`: `sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout
/// inode ref pointer drops`.
fn parse_udp_line(line: &str) -> Option<UdpSocketStat> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let port = u16::from_str_radix(f.get(1)?.rsplit_once(':')?.1, 16).ok()?;
    let rx_queue = u64::from_str_radix(f.get(4)?.split_once(':')?.1, 16).ok()?;
    let drops = f.last()?.parse().ok()?;
    Some(UdpSocketStat { port, drops, rx_queue })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udp_line_gives_port_queue_and_drops() {
        let line = "  12: 0100007F:4E21 00000000:0000 07 00000000:00000340 00:00000000 00000000  1000        0 \
                    123456 2 0000000000000000 17";
        assert_eq!(parse_udp_line(line), Some(UdpSocketStat { port: 0x4e21, drops: 17, rx_queue: 0x340 }));
    }

    #[test]
    fn this_process_and_its_socket_are_seen() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        assert_eq!(udp_sockets(port..=port).len(), 1);
        let me = proc_sample(std::process::id()).expect("our own /proc entry");
        assert!(me.fds >= 3 && me.rss_kib > 0, "{me:?}");
    }
}
