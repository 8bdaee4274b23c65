//! Port blocks: each daemon gets ports no other test, thread or process is using.

use std::fs::{self, File, OpenOptions};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Ports of one daemon: a block of [`PORT_BLOCK`] consecutive ports below the kernel's ephemeral
/// range, held under an `flock` for as long as the daemon lives, so tests in one process (threads)
/// and in several processes (parallel test binaries) never share one. The first port is the HTTP
/// (TCP) port, the next [`WEBRTC_PORTS`] the media workers' WebRTC (UDP) ports (worker i's is
/// `webrtc + i`), then one spare, the rest the RTP range.
pub const PORT_BLOCK: u16 = 64;
/// WebRTC ports per block: test daemons run at most this many media workers.
pub const WEBRTC_PORTS: u16 = 4;
const PORT_BASE: u16 = 20000;
const PORT_BLOCKS: u32 = 180; // 20000 .. 31520, below 32768 (Linux's default ephemeral start)

pub struct PortBlock {
    pub http: u16,
    /// Worker 0's WebRTC port; worker i's is `webrtc + i`.
    pub webrtc: u16,
    pub rtp_min: u16,
    pub rtp_max: u16,
    _lock: File,
}

impl std::fmt::Debug for PortBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PortBlock(http {}, webrtc {}, rtp {}-{})", self.http, self.webrtc, self.rtp_min, self.rtp_max)
    }
}

fn port_free_tcp(p: u16) -> bool {
    TcpListener::bind(("127.0.0.1", p)).is_ok()
}

fn port_free_udp(p: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", p)).is_ok()
}

/// Reserve a block of ports (see [`PortBlock`]).
pub fn reserve_ports() -> PortBlock {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let dir = std::env::temp_dir().join("switchboard-it-ports");
    fs::create_dir_all(&dir).expect("create port lock dir");
    // Start somewhere that depends on the pid and the time, so parallel processes spread out.
    let seed = std::process::id() ^ SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let _ = NEXT.compare_exchange(u32::MAX, seed % PORT_BLOCKS, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..PORT_BLOCKS * 2 {
        let idx = NEXT.fetch_add(1, Ordering::SeqCst) % PORT_BLOCKS;
        let base = PORT_BASE + (idx as u16) * PORT_BLOCK;
        let lock_path = dir.join(format!("{base}.lock"));
        let Ok(file) = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path) else {
            continue;
        };
        // SAFETY: flock on a file descriptor we own; released when the File is dropped or the
        // process dies.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            continue;
        }
        let all_free =
            port_free_tcp(base) && port_free_udp(base + 1) && (base + 2..base + PORT_BLOCK).all(port_free_udp);
        if !all_free {
            continue; // something outside the harness uses it; the lock is dropped here
        }
        return PortBlock {
            http: base,
            webrtc: base + 1,
            // Even, so the range's first pair starts on it.
            rtp_min: base + 2 + WEBRTC_PORTS,
            rtp_max: base + PORT_BLOCK - 1,
            _lock: file,
        };
    }
    panic!(
        "no free block of {PORT_BLOCK} ports in {PORT_BASE}..{}",
        PORT_BASE as u32 + PORT_BLOCKS * PORT_BLOCK as u32
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_blocks_do_not_overlap() {
        let blocks: Vec<PortBlock> = (0..4).map(|_| reserve_ports()).collect();
        for (i, a) in blocks.iter().enumerate() {
            assert!(a.rtp_min >= a.webrtc + WEBRTC_PORTS && a.webrtc > a.http && a.rtp_max < 32768);
            assert_eq!(a.rtp_min % 2, 0);
            for b in &blocks[i + 1..] {
                assert!(a.rtp_max < b.http || b.rtp_max < a.http, "{a:?} overlaps {b:?}");
            }
        }
    }
}
