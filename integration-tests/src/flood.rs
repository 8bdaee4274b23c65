//! A UDP flooder: hostile datagrams at a fixed rate to a set of the bridge's ports, sent with
//! `sendmmsg` so that one thread reaches tens of thousands a second on a small machine (Python's
//! `sendto` loop tops out well below that). What it sends, in turn:
//! - random bytes;
//! - STUN binding requests naming random ICE usernames;
//! - RTP with random SSRCs;
//! - RTP carrying a real peer's SSRC ([`FloodPlan::copy_ssrcs`]), sent from another address.
//!
//! Datagrams leave from several sockets (source addresses), and are built in advance: a pool of
//! a few thousand, sent round-robin, so the flooder spends its time in the kernel, not building.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The kinds of datagram the flooder sends, in the order of [`FloodReport::by_kind`].
pub const FLOOD_KINDS: [&str; 4] = ["random_bytes", "stun_random_username", "rtp_random_ssrc", "rtp_copied_ssrc"];

/// What to flood, how hard and for how long.
#[derive(Clone, Debug)]
pub struct FloodPlan {
    /// Every datagram goes to the next of these in turn (IPv4 only: the tests bind loopback).
    pub targets: Vec<SocketAddr>,
    /// Datagrams a second, over all targets.
    pub rate: u32,
    pub duration: Duration,
    /// SSRCs of real peers, copied into the fourth kind; random ones when empty.
    pub copy_ssrcs: Vec<u32>,
    /// Source sockets to spread the datagrams over.
    pub sources: usize,
    pub seed: u64,
}

/// What the flooder did.
#[derive(Clone, Debug, Default)]
pub struct FloodReport {
    pub sent: u64,
    /// Datagrams the kernel refused to send (`sendmmsg` errors or short counts).
    pub failed: u64,
    pub by_kind: [u64; 4],
    pub elapsed: Duration,
}

impl FloodReport {
    /// Datagrams a second actually sent.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Starts flooding on a thread of its own; its report comes from `join`.
pub fn start_flood(plan: FloodPlan) -> JoinHandle<FloodReport> {
    thread::Builder::new().name("flooder".into()).spawn(move || run(&plan)).expect("spawn the flooder")
}

/// A small xorshift generator: the test must not depend on a crate for its noise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

/// One datagram of `kind` (an index into [`FLOOD_KINDS`]).
fn datagram(kind: usize, rng: &mut Rng, copy_ssrcs: &[u32]) -> Vec<u8> {
    match kind {
        0 => {
            let mut d = vec![0; 12 + rng.below(300) as usize];
            rng.fill(&mut d);
            d
        }
        1 => stun_binding_request(rng),
        _ => {
            let ssrc = match (kind, copy_ssrcs.is_empty()) {
                (3, false) => copy_ssrcs[rng.below(copy_ssrcs.len() as u64) as usize],
                _ => rng.next() as u32,
            };
            // PCMU, Opus, or anything: a stranger does not know what was negotiated.
            let pt = [0u8, 8, 111, 96, rng.below(128) as u8][rng.below(5) as usize];
            let mut d = vec![0x80, pt];
            d.extend_from_slice(&(rng.next() as u16).to_be_bytes());
            d.extend_from_slice(&(rng.next() as u32).to_be_bytes());
            d.extend_from_slice(&ssrc.to_be_bytes());
            let mut payload = vec![0; 160];
            rng.fill(&mut payload);
            d.extend_from_slice(&payload);
            d
        }
    }
}

/// A STUN binding request whose USERNAME is `random:random`, with a MESSAGE-INTEGRITY of random
/// bytes (no key signs it) and a FINGERPRINT attribute, as an ICE check carries them.
fn stun_binding_request(rng: &mut Rng) -> Vec<u8> {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut name = Vec::new();
    for len in [4 + rng.below(12), 4 + rng.below(12)] {
        if !name.is_empty() {
            name.push(b':');
        }
        for _ in 0..len {
            name.push(ALNUM[rng.below(ALNUM.len() as u64) as usize]);
        }
    }
    let mut attrs = Vec::new();
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(name.len() as u16).to_be_bytes());
    attrs.extend_from_slice(&name);
    attrs.resize(attrs.len().next_multiple_of(4), 0);
    let mut integrity = [0u8; 20];
    rng.fill(&mut integrity);
    attrs.extend_from_slice(&[0x00, 0x08, 0x00, 20]);
    attrs.extend_from_slice(&integrity);
    attrs.extend_from_slice(&[0x80, 0x28, 0x00, 4]);
    attrs.extend_from_slice(&(rng.next() as u32).to_be_bytes());
    let mut d = vec![0x00, 0x01];
    d.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    d.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    let mut txid = [0u8; 12];
    rng.fill(&mut txid);
    d.extend_from_slice(&txid);
    d.extend_from_slice(&attrs);
    d
}

fn sockaddr(addr: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = addr else { panic!("the flooder sends to IPv4 targets only: {addr}") };
    sockaddr_v4(v4)
}

fn sockaddr_v4(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is a plain C struct; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr = libc::in_addr { s_addr: u32::from(*a.ip()).to_be() };
    s
}

/// Datagrams per `sendmmsg`.
const BATCH: usize = 64;
/// How often the flooder tops up to its schedule.
const STEP: Duration = Duration::from_millis(1);

fn run(plan: &FloodPlan) -> FloodReport {
    assert!(!plan.targets.is_empty(), "nothing to flood");
    let mut rng = Rng(plan.seed | 1);
    let pool: Vec<(usize, Vec<u8>)> = (0..4096).map(|i| (i % 4, datagram(i % 4, &mut rng, &plan.copy_ssrcs))).collect();
    let names: Vec<libc::sockaddr_in> = plan.targets.iter().map(|t| sockaddr(*t)).collect();
    let sockets: Vec<UdpSocket> =
        (0..plan.sources.max(1)).map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind a flood socket")).collect();
    for s in &sockets {
        // A big send buffer, so a burst is queued rather than refused.
        let size: libc::c_int = 4 << 20;
        // SAFETY: setsockopt on a socket we own, with a pointer to a live int of the size given.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    let mut report = FloodReport::default();
    let (mut next, mut target, mut source) = (0usize, 0usize, 0usize);
    let start = Instant::now();
    let total = (u64::from(plan.rate) * plan.duration.as_millis() as u64 / 1000).max(1);
    let mut iov: [libc::iovec; BATCH] = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH];
    // SAFETY: mmsghdr is a plain C struct; all-zero is a valid value.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    while report.sent + report.failed < total {
        let elapsed = start.elapsed();
        let due = (u128::from(plan.rate) * elapsed.as_micros() / 1_000_000).min(u128::from(total)) as u64;
        let mut owed = due.saturating_sub(report.sent + report.failed);
        while owed > 0 {
            let n = (owed as usize).min(BATCH);
            let mut kinds = [0usize; BATCH];
            for i in 0..n {
                let (kind, data) = &pool[next];
                next = (next + 1) % pool.len();
                kinds[i] = *kind;
                iov[i] = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
                let h = &mut hdrs[i].msg_hdr;
                h.msg_name = (&names[target] as *const libc::sockaddr_in).cast_mut().cast();
                h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                h.msg_iov = &mut iov[i];
                h.msg_iovlen = 1;
                target = (target + 1) % names.len();
            }
            let fd = sockets[source].as_raw_fd();
            source = (source + 1) % sockets.len();
            // SAFETY: the first `n` headers point at live iovecs, pool buffers and target
            // addresses, none of which move or are freed during the call.
            let sent = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
            let sent = if sent < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                0
            } else {
                sent as usize
            };
            for &k in &kinds[..sent] {
                report.by_kind[k] += 1;
            }
            report.sent += sent as u64;
            report.failed += (n - sent) as u64;
            owed -= n as u64;
        }
        thread::sleep(STEP);
    }
    report.elapsed = start.elapsed();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flooder_keeps_its_rate_and_sends_every_kind() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let plan = FloodPlan {
            targets: vec![sink.local_addr().unwrap()],
            rate: 20_000,
            duration: Duration::from_millis(500),
            copy_ssrcs: vec![0x1234_5678],
            sources: 2,
            seed: 7,
        };
        let r = start_flood(plan).join().unwrap();
        assert_eq!(r.sent + r.failed, 10_000);
        assert!(r.rate() > 15_000.0, "{r:?}");
        assert!(r.by_kind.iter().all(|&k| k > 2000), "{r:?}");
    }

    #[test]
    fn stun_requests_are_well_formed() {
        let mut rng = Rng(3);
        let d = stun_binding_request(&mut rng);
        assert_eq!(&d[..2], &[0, 1]);
        assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])) + 20, d.len());
        assert_eq!(&d[4..8], &[0x21, 0x12, 0xa4, 0x42]);
        let name_len = usize::from(u16::from_be_bytes([d[22], d[23]]));
        assert!(d[24..24 + name_len].contains(&b':'));
    }
}
