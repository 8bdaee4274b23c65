//! Leaks (issue 19, acceptance "Leaks"): 5,000 joins and leaves of mixed kinds (plain RTP, SDES
//! SRTP, WebRTC with canned offers), three to a room so rooms route and mix, some that talk
//! first, some that leave cleanly (DELETE) and some that vanish and are taken by the inactivity
//! timeout. Afterwards the daemon's open descriptors, the leg ports bound and its resident
//! memory are back to where they were after a warm-up round of the same traffic, within 5 %.
//!
//! The node is small on purpose: each daemon gets 31 leg port pairs, handed out again at once
//! (`rtp.port_quarantine_secs = 0`), so a leaked pair shows within a few dozen joins as
//! `no_ports`.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

const JOINS: usize = 5_000;
const WARM_UP: usize = 600;
const THREADS: usize = 4;
const TOLERANCE: f64 = 0.05;

/// Tallies of what the joins did.
#[derive(Default)]
struct Tally {
    joined: AtomicUsize,
    deleted: AtomicUsize,
    abandoned: AtomicUsize,
    talked: AtomicUsize,
    /// Joins refused for want of ports while abandoned legs waited for their timeout, retried.
    retried: AtomicUsize,
}

/// Runs `joins` joins over `THREADS` threads, each in rooms of three: the i-th participant's
/// kind, whether it talks and how it leaves follow from i, so every mix occurs.
fn churn(d: &Daemon, joins: usize, round: &str, tally: &Tally) {
    let webrtc = [fixture("chromium_offer.sdp"), fixture("webrtcbin_offer.sdp")];
    let next = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (next, webrtc) = (&next, &webrtc);
            s.spawn(move || {
                let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
                let port = phone.local_addr().unwrap().port();
                let mut room_members: Vec<(String, String)> = Vec::new();
                for mine in 0.. {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= joins {
                        break;
                    }
                    let kind = CHURN_KINDS[i % CHURN_KINDS.len()];
                    // This thread's joins, three to a room.
                    let room = format!("{round}-{t}-{}", mine / 3 % 8);
                    let sdp = churn_offer(kind, port, &webrtc[i % webrtc.len()]);
                    let (joined, waited) = join_retrying(d, &room, &sdp);
                    tally.retried.fetch_add(waited, Ordering::Relaxed);
                    tally.joined.fetch_add(1, Ordering::Relaxed);
                    let id = joined["id"].as_str().expect("an id").to_string();
                    if kind == LegKind::Rtp && i % 2 == 0 {
                        // A few packets of media: the leg latches, routes and (three to a room) mixes.
                        for seq in 0..5 {
                            phone.send_to(&pcmu_packet(seq, 0x1eaf_0001), ("127.0.0.1", answer_port(&joined))).unwrap();
                        }
                        tally.talked.fetch_add(1, Ordering::Relaxed);
                    }
                    room_members.push((room, id));
                    if room_members.len() == 3 {
                        for (j, (room, id)) in room_members.drain(..).enumerate() {
                            // One in four vanishes: the inactivity timeout takes it.
                            if (i + j) % 4 == 0 {
                                tally.abandoned.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            let (status, v) = d.delete(&format!("/v1/rooms/{room}/participants/{id}"));
                            assert!(status == 204 || status == 404, "leave {id}: {status} {v}");
                            tally.deleted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
}

/// What the daemon holds once the churn has drained away: its sample, and the leg ports bound.
fn settled(d: &Daemon) -> (ProcSample, usize) {
    let pid = d.pid().expect("the daemon runs");
    let drained = poll_until(Duration::from_secs(20), || {
        let rooms = d.get_json("/v1/rooms").1["rooms"].as_array().map_or(usize::MAX, Vec::len);
        let ports = udp_sockets(d.ports.rtp_min..=d.ports.rtp_max).len();
        (rooms == 0 && ports == 0).then_some(())
    });
    assert!(drained.is_some(), "rooms or leg ports left over: {:?}", d.get_json("/v1/rooms"));
    // A housekeeping turn or two after the last room went.
    thread::sleep(Duration::from_secs(1));
    (proc_sample(pid).expect("the daemon runs"), udp_sockets(d.ports.rtp_min..=d.ports.rtp_max).len())
}

#[test]
fn five_thousand_joins_and_leaves_leave_nothing_behind() {
    let d = Daemon::start_with(|c| {
        c.set("rtp", "port_quarantine_secs", 0);
        c.set("media", "inactivity_timeout_secs", 1);
        c.set("rooms", "empty_timeout_secs", 1);
        c.set("log", "filter", "warn");
    });
    let started = Instant::now();
    let warm = Tally::default();
    churn(&d, WARM_UP, "warm", &warm);
    let (base, base_ports) = settled(&d);
    let warmed = started.elapsed();

    let tally = Tally::default();
    let churn_started = Instant::now();
    churn(&d, JOINS, "leak", &tally);
    let churned = churn_started.elapsed();
    let (after, after_ports) = settled(&d);

    let (_, metrics) = d.get_text("/metrics");
    let left = |reason: &str| {
        metric_value(&metrics, "switchboard_participants_left_total", &[("reason", reason)]).unwrap_or(0.0)
    };
    println!(
        "leaks: warm-up of {WARM_UP} joins in {:.1} s, then {} joins in {:.1} s ({:.0}/s): {} deleted, {} abandoned, {} talked, {} retried for ports",
        warmed.as_secs_f64(),
        tally.joined.load(Ordering::Relaxed),
        churned.as_secs_f64(),
        JOINS as f64 / churned.as_secs_f64(),
        tally.deleted.load(Ordering::Relaxed),
        tally.abandoned.load(Ordering::Relaxed),
        tally.talked.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed)
    );
    let ticks = metric_value(&metrics, "switchboard_mixer_ticks_total", &[]).unwrap_or(0.0);
    println!(
        "leaks: left by request {}, inactive {}, other {}; {ticks} mix ticks",
        left("requested"),
        left("inactive"),
        left("transport_failed") + left("shutdown")
    );
    println!(
        "leaks: fds {} -> {}, leg ports {base_ports} -> {after_ports}, RSS {} KiB -> {} KiB ({:+.1} %)",
        base.fds,
        after.fds,
        base.rss_kib,
        after.rss_kib,
        100.0 * (after.rss_kib as f64 / base.rss_kib as f64 - 1.0)
    );

    assert_eq!(tally.joined.load(Ordering::Relaxed), JOINS);
    assert!(ticks > 0.0, "no room ever mixed: the churn did not exercise the mixer");
    // Everyone left, the abandoned by the timeout (as did some that were slow to be deleted).
    let all = |t: &Tally, c: fn(&Tally) -> &AtomicUsize| c(t).load(Ordering::Relaxed) as f64;
    let abandoned = all(&warm, |t| &t.abandoned) + all(&tally, |t| &t.abandoned);
    let joined = all(&warm, |t| &t.joined) + all(&tally, |t| &t.joined);
    assert!(left("inactive") >= abandoned, "{} abandoned, {} left inactive", abandoned, left("inactive"));
    assert_eq!(left("requested") + left("inactive"), joined, "every participant left, and only once");
    assert_eq!(after_ports, base_ports, "leg ports still bound");
    assert!(
        after.fds as f64 <= base.fds as f64 * (1.0 + TOLERANCE),
        "open descriptors grew from {} to {}",
        base.fds,
        after.fds
    );
    assert!(
        after.rss_kib as f64 <= base.rss_kib as f64 * (1.0 + TOLERANCE),
        "resident memory grew from {} KiB to {} KiB",
        base.rss_kib,
        after.rss_kib
    );
}
