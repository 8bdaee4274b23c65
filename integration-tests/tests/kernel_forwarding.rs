//! In-kernel forwarding of two-party plain-RTP calls (issue 24, item 2): with
//! `rtp.kernel_forwarding = "auto"`, a two-party PCMU call's media is forwarded by the TC program
//! on `lo`'s ingress and never reaches the leg sockets, yet each phone receives every packet of
//! the other as one continuous stream; a third party turns the route to mix and back without a
//! break in either direction's numbering; DTMF sent meanwhile is still reported once.
//!
//! The phones are plain UDP sockets here, so every header the bridge sends can be checked: one
//! SSRC (the one the answer declared), sequence numbers that step by one, and (while forwarded)
//! the sender's exact payload and timestamps one packet apart.
//!
//! The tests skip, saying so, only when the kernel refuses the program
//! (`switchboard_kernel_forwarding_fallbacks_total` at start); the machines this project runs on
//! load it, so there they run.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

const PCMU: u8 = 0;
const EVENT: u8 = 101;

/// One RTP packet as a phone received it.
#[derive(Debug, Clone)]
struct Rx {
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

/// A phone: one symmetric UDP socket, sending 20 ms PCMU packets whose payload names the packet.
struct Phone {
    name: &'static str,
    sock: UdpSocket,
    bridge: SocketAddr,
    ssrc: u32,
    seq: u16,
    ts: u32,
    sent: u32,
    got: Vec<Rx>,
    /// The bridge's sender reports: (media packets received when the SR came, its packet count).
    srs: Vec<(usize, u32)>,
    /// The answer the bridge gave this phone.
    answer: String,
    id: String,
}

/// The payload of the `n`-th packet a phone sends: 160 bytes no codec step would keep.
fn payload(ssrc: u32, n: u32) -> Vec<u8> {
    (0..160u32).map(|i| (ssrc ^ n.wrapping_mul(31) ^ i) as u8).collect()
}

fn packet(marker: bool, pt: u8, seq: u16, ts: u32, ssrc: u32, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(body);
    p
}

impl Phone {
    /// Binds a socket, joins `room` with a PCMU offer (with telephone-event when `dtmf`).
    fn join(d: &Daemon, room: &str, name: &'static str, ssrc: u32, dtmf: bool) -> Phone {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let port = sock.local_addr().unwrap().port();
        let offer = if dtmf { pcmu_dtmf_offer(port) } else { pcmu_offer(port) };
        // rtcp-mux: the bridge's reports come to this one socket.
        let offer = offer.replace("a=sendrecv\r\n", "a=rtcp-mux\r\na=sendrecv\r\n");
        let joined = d.join(room, &offer);
        let answer = joined["sdp"].as_str().unwrap().to_string();
        let bridge = SocketAddr::from(([127, 0, 0, 1], Sdp::parse(&answer).media[0].port));
        let id = joined["id"].as_str().unwrap().to_string();
        // Start numbers far from zero, so a wrap or an offset mistake shows.
        Phone {
            name,
            sock,
            bridge,
            ssrc,
            seq: 65_000,
            ts: 4_000_000_000,
            sent: 0,
            got: Vec::new(),
            srs: Vec::new(),
            answer,
            id,
        }
    }

    fn send_audio(&mut self) {
        let body = payload(self.ssrc, self.sent);
        let p = packet(self.sent == 0, PCMU, self.seq, self.ts, self.ssrc, &body);
        self.sock.send_to(&p, self.bridge).unwrap();
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
        self.sent += 1;
    }

    /// One RFC 4733 event packet of `digit` (event code) at the current timestamp.
    fn send_event(&mut self, first: bool, end: bool, duration: u16) {
        let mut body = vec![5u8, if end { 0x80 | 10 } else { 10 }];
        body.extend_from_slice(&duration.to_be_bytes());
        let p = packet(first, EVENT, self.seq, self.ts, self.ssrc, &body);
        self.sock.send_to(&p, self.bridge).unwrap();
        self.seq = self.seq.wrapping_add(1);
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = self.sock.recv_from(&mut buf) {
            let b = &buf[..n];
            // RTCP (the bridge's reports, PT 200-204) is not media; its SR's sender packet count
            // (bytes 20-23) is kept.
            if n >= 28 && b[1] == 200 {
                self.srs.push((self.got.len(), u32::from_be_bytes([b[20], b[21], b[22], b[23]])));
            }
            if n < 12 || (200..=204).contains(&b[1]) {
                continue;
            }
            self.got.push(Rx {
                pt: b[1] & 0x7f,
                seq: u16::from_be_bytes([b[2], b[3]]),
                ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
                payload: b[12..].to_vec(),
            });
        }
    }

    fn declared_ssrc(&self) -> u32 {
        Sdp::parse(&self.answer).media[0].ssrcs.first().copied().expect("the answer declares a=ssrc")
    }
}

/// Every phone sends one audio packet each 20 ms for `d`, and reads what arrived.
fn talk(phones: &mut [&mut Phone], d: Duration) {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < d {
        for p in phones.iter_mut() {
            p.send_audio();
            p.drain();
        }
        n += 1;
        let next = start + Duration::from_millis(20) * n;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Reads what is still on its way.
fn settle(phones: &mut [&mut Phone]) {
    std::thread::sleep(Duration::from_millis(300));
    for p in phones.iter_mut() {
        p.drain();
    }
}

fn metric(d: &Daemon, name: &str) -> f64 {
    let (_, text) = d.get_text("/metrics");
    metric_value(&text, name, &[]).unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Starts a daemon with kernel forwarding on; `None` (the test skips) only when the kernel
/// refused the program.
fn daemon() -> Option<Daemon> {
    // A short inactivity timeout: a leg the kernel carries must stay alive on the kernel's count.
    let d = Daemon::start_with(|c| {
        c.set("rtp", "kernel_forwarding", "auto");
        c.set("media", "inactivity_timeout_secs", 2);
    });
    if metric(&d, "switchboard_kernel_forwarding_active") == 1.0 {
        return Some(d);
    }
    assert_eq!(metric(&d, "switchboard_kernel_forwarding_fallbacks_total"), 1.0, "neither on nor fallen back");
    eprintln!(
        "SKIPPED: the kernel refused the forwarding program (see the daemon's log line \
         \"in-kernel forwarding unavailable\"); needs CONFIG_BPF_SYSCALL, cls_bpf and root"
    );
    None
}

/// Waits until the daemon has `n` kernel rules installed.
#[track_caller]
fn wait_rules(d: &Daemon, phones: &mut [&mut Phone], n: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(d, "switchboard_kernel_forwarding_rules") != n {
        assert!(Instant::now() < deadline, "kernel rules never became {n}");
        talk(phones, Duration::from_millis(100));
    }
}

/// `got` is one stream: one SSRC (`ssrc`) and every sequence step +1.
#[track_caller]
fn assert_continuous(who: &str, got: &[Rx], ssrc: u32) {
    assert!(!got.is_empty(), "{who} received nothing");
    let ssrcs: std::collections::BTreeSet<u32> = got.iter().map(|r| r.ssrc).collect();
    assert_eq!(ssrcs, [ssrc].into(), "{who}: SSRCs received");
    let gaps: Vec<(u16, u16)> =
        got.windows(2).filter(|w| w[1].seq != w[0].seq.wrapping_add(1)).map(|w| (w[0].seq, w[1].seq)).collect();
    assert!(gaps.is_empty(), "{who}: sequence steps other than +1 (of {} packets): {gaps:?}", got.len());
}

/// What `to` received is exactly what `from` sent, forwarded: every packet, in order, with its
/// payload, its timestamp moved by one constant, and `from`'s packets as one stream.
#[track_caller]
fn assert_forwarded_all(from: &Phone, to: &Phone) {
    let who = format!("{} from {}", to.name, from.name);
    assert_eq!(to.got.len() as u32, from.sent, "{who}: received / sent");
    assert_continuous(&who, &to.got, to.declared_ssrc());
    for (n, r) in to.got.iter().enumerate() {
        assert_eq!(r.pt, PCMU, "{who}: packet {n}");
        assert_eq!(r.payload, payload(from.ssrc, n as u32), "{who}: payload of packet {n}");
        if n > 0 {
            assert_eq!(r.ts.wrapping_sub(to.got[n - 1].ts), 160, "{who}: timestamp step at packet {n}");
        }
    }
}

#[test]
fn a_two_party_pcmu_call_is_forwarded_in_the_kernel_and_arrives_whole() {
    let Some(d) = daemon() else { return };
    d.create_room("kcall");
    let mut a = Phone::join(&d, "kcall", "alice", 0x0a11_ce00, false);
    let mut b = Phone::join(&d, "kcall", "bob", 0x0b0b_0000, false);
    // The first packets go through user space: they latch both legs and set up the slots'
    // numbering, which the rules then continue.
    wait_rules(&d, &mut [&mut a, &mut b], 2.0);
    let read_before = metric(&d, "switchboard_leg_datagrams_read_total");
    let kernel_before = metric(&d, "switchboard_kernel_forwarded_packets_total");
    talk(&mut [&mut a, &mut b], Duration::from_secs(3));
    settle(&mut [&mut a, &mut b]);
    // Housekeeping (every 500 ms) hands the kernel's counts to the rooms and the metrics.
    std::thread::sleep(Duration::from_millis(600));
    let read_after = metric(&d, "switchboard_leg_datagrams_read_total");
    assert_eq!(read_after, read_before, "the leg sockets read media while the kernel forwarded");
    let forwarded = metric(&d, "switchboard_kernel_forwarded_packets_total") - kernel_before;
    assert!(forwarded >= 2.0 * 148.0, "the kernel forwarded {forwarded} packets of ~300");
    assert_forwarded_all(&a, &b);
    assert_forwarded_all(&b, &a);

    // The counters the API and the metrics report include the kernel's packets.
    let (_, text) = d.get_text("/metrics");
    let in_rtp = metric_value(&text, "switchboard_packets_total", &[("kind", "rtp"), ("direction", "in")]);
    assert!(in_rtp.unwrap_or(0.0) >= f64::from(a.sent + b.sent) - 2.0, "packets_total in: {in_rtp:?}");

    // Three seconds in the kernel, past the 2 s inactivity timeout: both legs are alive.
    assert_eq!(d.participants_of("kcall").len(), 2, "the kernel's packets keep the legs alive");

    // The call ends: both legs leave, and the rules go with them.
    for p in [&a, &b] {
        let (s, v) = d.delete(&format!("/v1/rooms/kcall/participants/{}", p.id));
        assert_eq!(s, 204, "{v}");
    }
    assert_eq!(metric(&d, "switchboard_kernel_forwarding_rules"), 0.0);
}

#[test]
fn a_third_party_switches_the_call_to_mix_and_back_without_a_break() {
    let Some(d) = daemon() else { return };
    d.create_room("kmix");
    let mut a = Phone::join(&d, "kmix", "alice", 0x0a11_ce01, false);
    let mut b = Phone::join(&d, "kmix", "bob", 0x0b0b_0001, false);
    wait_rules(&d, &mut [&mut a, &mut b], 2.0);
    // Long enough in the kernel for user space's view to be far behind without the hand-over.
    talk(&mut [&mut a, &mut b], Duration::from_secs(2));

    let mut c = Phone::join(&d, "kmix", "carol", 0x0ca4_0001, false);
    wait_rules(&d, &mut [&mut a, &mut b, &mut c], 0.0);
    talk(&mut [&mut a, &mut b, &mut c], Duration::from_secs(3));
    let view = d.participant("kmix", &b.id);
    assert_eq!(view["subscriptions"][0]["route"], "mix", "three phones, one slot each: {view}");

    let (s, v) = d.delete(&format!("/v1/rooms/kmix/participants/{}", c.id));
    assert_eq!(s, 204, "{v}");
    wait_rules(&d, &mut [&mut a, &mut b], 2.0);
    let forwarded_again = metric(&d, "switchboard_kernel_forwarded_packets_total");
    talk(&mut [&mut a, &mut b], Duration::from_secs(2));
    settle(&mut [&mut a, &mut b]);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        metric(&d, "switchboard_kernel_forwarded_packets_total") > forwarded_again + 100.0,
        "back to two parties, the kernel forwards again"
    );

    // Forward (kernel), mix, forward (kernel): one stream each way.
    for p in [&a, &b] {
        assert_continuous(p.name, &p.got, p.declared_ssrc());
        let ts_back = p.got.windows(2).filter(|w| (w[1].ts.wrapping_sub(w[0].ts) as i32) <= 0).count();
        assert_eq!(ts_back, 0, "{}: timestamps that did not move forward", p.name);
    }
    // The bridge's sender reports count what it sent, kernel or not: an SR's packet count is
    // what the phone had received when it came (give or take the packets still in flight).
    for p in [&a, &b] {
        let &(received, counted) = p.srs.last().unwrap_or_else(|| panic!("{}: no sender report in 9 s", p.name));
        assert!(
            (i64::from(counted) - received as i64).abs() <= 3,
            "{}: SR counts {counted} packets, the phone had received {received}",
            p.name
        );
    }
    // The mixer's packets are in the middle of each stream, not at its ends.
    let mixed = b.got.iter().filter(|r| !a_sent(&a, r)).count();
    assert!(mixed > 50, "bob received {mixed} mixed packets");
    assert!(a_sent(&a, b.got.last().unwrap()), "bob's last packets are alice's again, forwarded");
}

/// Whether `r` carries one of `a`'s payloads unchanged.
fn a_sent(a: &Phone, r: &Rx) -> bool {
    (0..a.sent).any(|n| r.payload == payload(a.ssrc, n))
}

#[test]
fn dtmf_during_kernel_forwarding_is_reported_once_and_the_stream_stays_whole() {
    let Some(d) = daemon() else { return };
    let sse = d.create_and_follow("kdtmf");
    let mut a = Phone::join(&d, "kdtmf", "alice", 0x0a11_ce02, true);
    let mut b = Phone::join(&d, "kdtmf", "bob", 0x0b0b_0002, true);
    wait_rules(&d, &mut [&mut a, &mut b], 2.0);
    talk(&mut [&mut a, &mut b], Duration::from_secs(1));

    // Alice presses 5 for 100 ms: RFC 4733 events instead of audio (Bob keeps talking), the
    // end packet three times.
    a.ts = a.ts.wrapping_add(160);
    for (i, end) in [false, false, false, false, false, true, true, true].into_iter().enumerate() {
        a.send_event(i == 0, end, 160 * (i as u16 + 1).min(5));
        b.send_audio();
        a.drain();
        b.drain();
        std::thread::sleep(Duration::from_millis(20));
    }
    a.ts = a.ts.wrapping_add(160 * 6);
    talk(&mut [&mut a, &mut b], Duration::from_secs(3));
    settle(&mut [&mut a, &mut b]);

    let digits: Vec<Value> = sse.events().into_iter().filter(|e| e.event == "dtmf").map(|e| e.data).collect();
    assert_eq!(digits.len(), 1, "dtmf events: {digits:?}");
    assert_eq!(digits[0]["digit"], "5", "{:?}", digits[0]);
    assert_eq!(event_participant_id(&digits[0]).as_deref(), Some(a.id.as_str()));
    // Bob hears the digit regenerated in his stream, and the stream has no gap around it.
    let events = b.got.iter().filter(|r| r.pt == EVENT).count();
    assert!(events >= 3, "bob received {events} telephone-event packets");
    assert_continuous("bob", &b.got, b.declared_ssrc());
    assert_continuous("alice", &a.got, a.declared_ssrc());
    // And the kernel carries the call again after the digit.
    assert_eq!(metric(&d, "switchboard_kernel_forwarding_rules"), 2.0);
}

#[test]
fn without_the_capability_the_call_is_forwarded_in_user_space_and_says_why_once() {
    // An interface that does not exist stands for a kernel that refuses: the attach fails.
    let d = Daemon::start_with(|c| {
        c.set("rtp", "kernel_forwarding", "auto");
        c.set("rtp", "kernel_interface", "sb-absent0");
    });
    assert_eq!(metric(&d, "switchboard_kernel_forwarding_active"), 0.0);
    assert_eq!(metric(&d, "switchboard_kernel_forwarding_fallbacks_total"), 1.0);
    let said = d.log().matches("in-kernel forwarding unavailable").count();
    assert_eq!(said, 1, "one log line says why: {}", d.log_tail(20));
    d.create_room("kuser");
    let mut a = Phone::join(&d, "kuser", "alice", 0x0a11_ce03, false);
    let mut b = Phone::join(&d, "kuser", "bob", 0x0b0b_0003, false);
    let read_before = metric(&d, "switchboard_leg_datagrams_read_total");
    talk(&mut [&mut a, &mut b], Duration::from_secs(2));
    settle(&mut [&mut a, &mut b]);
    assert_forwarded_all(&a, &b);
    assert_forwarded_all(&b, &a);
    let read = metric(&d, "switchboard_leg_datagrams_read_total") - read_before;
    assert!(read >= f64::from(a.sent + b.sent), "user space read {read} datagrams of {}", a.sent + b.sent);
    assert_eq!(metric(&d, "switchboard_kernel_forwarding_rules"), 0.0);
}
