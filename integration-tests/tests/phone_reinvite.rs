//! A re-INVITE that moves a phone leg to a new address and a new codec, as a SIP gateway does
//! after a transfer or a media-server hand-over: PATCH with a new offer (new port, PCMA
//! instead of PCMU). The test is both phones, with std UDP sockets and the harness's G.711.
//!
//! Checked: the answer (same bridge port and SSRC, the new codec, a new o= version), media
//! following the new address at once, the route turning from forward into transcode both ways
//! with the tones intact, and the re-offered leg's stream from the bridge staying one stream.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

// ---- the two phones ----

#[derive(Clone, Copy, PartialEq, Debug)]
enum Law {
    U,
    A,
}

/// What one socket received: (arrival, pt, seq, ts, ssrc, payload).
type Log = Arc<Mutex<Vec<(Instant, u8, u16, u32, u32, Vec<u8>)>>>;

fn listen(sock: UdpSocket, stop: Arc<AtomicBool>) -> Log {
    let log: Log = Arc::default();
    let l = log.clone();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Ok(n) = sock.recv(&mut buf) else { continue };
            let p = &buf[..n];
            if n < 12 || (192..=223).contains(&p[1]) {
                continue; // RTCP
            }
            let seq = u16::from_be_bytes([p[2], p[3]]);
            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
            l.lock().unwrap().push((Instant::now(), p[1] & 0x7f, seq, ts, ssrc, p[12..].to_vec()));
        }
    });
    log
}

/// The PCM of the packets with payload type `pt` that arrived after `from`.
fn decode(log: &Log, pt: u8, from: Instant) -> Vec<i16> {
    let law = if pt == 8 { Law::A } else { Law::U };
    log.lock()
        .unwrap()
        .iter()
        .filter(|p| p.1 == pt && p.0 >= from)
        .flat_map(|p| p.5.iter().map(move |b| if law == Law::A { alaw_decode(*b) } else { ulaw_decode(*b) }))
        .collect()
}

fn count(log: &Log, from: Instant, to: Instant) -> usize {
    log.lock().unwrap().iter().filter(|p| p.0 >= from && p.0 <= to).count()
}

fn offer(port: u16, version: u32, law: Law) -> String {
    let (pt, name) = if law == Law::A { (8, "PCMA") } else { (0, "PCMU") };
    format!(
        "v=0\r\no=gw 5150 {version} IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {name}/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\na=ptime:20\r\na=rtcp-mux\r\na=sendrecv\r\n"
    )
}

/// The sending half of a phone: a sine of `hz`, 20 ms packets, from whichever socket and codec
/// `target` currently says; one SSRC and one sequence/timestamp space throughout.
fn talk(hz: f32, ssrc: u32, target: Arc<Mutex<(UdpSocket, u16, Law)>>, stop: Arc<AtomicBool>) {
    thread::spawn(move || {
        let pcm = sine(hz, 8000, 1.0, 0.5);
        let start = Instant::now();
        let mut i: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            let (sock, port, law) = {
                let t = target.lock().unwrap();
                (t.0.try_clone().unwrap(), t.1, t.2)
            };
            let mut p = vec![0x80, if law == Law::A { 8 } else { 0 }];
            p.extend_from_slice(&(i as u16).to_be_bytes());
            p.extend_from_slice(&(i * 160).to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            let off = (i as usize * 160) % 8000;
            p.extend(pcm[off..off + 160].iter().map(|x| if law == Law::A { alaw_encode(*x) } else { ulaw_encode(*x) }));
            let _ = sock.send_to(&p, ("127.0.0.1", port));
            i += 1;
            let next = start + Duration::from_millis(20 * u64::from(i));
            thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
}

fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn sub(d: &Daemon, id: &str) -> Value {
    d.get_json(&format!("/v1/rooms/move/participants/{id}")).1["subscriptions"][0].clone()
}

#[test]
fn reinvite_to_a_new_address_and_codec_moves_media_and_transcodes() {
    let d = Daemon::start();
    let parts = "/v1/rooms/move/participants";
    let (a1, a2, b) = (bind(), bind(), bind());
    let port = |s: &UdpSocket| s.local_addr().unwrap().port();
    let (s, ja) = d.post_json(parts, &json!({ "sdp": offer(port(&a1), 1, Law::U), "display_name": "a" }));
    assert_eq!(s, 201, "{ja}");
    let (s, jb) = d.post_json(parts, &json!({ "sdp": offer(port(&b), 1, Law::U), "display_name": "b" }));
    assert_eq!(s, 201, "{jb}");
    let (a_id, b_id) = (ja["id"].as_str().unwrap().to_string(), jb["id"].as_str().unwrap().to_string());
    let first = Sdp::parse(ja["sdp"].as_str().unwrap());
    let (bridge_a, bridge_b) = (first.media[0].port, Sdp::parse(jb["sdp"].as_str().unwrap()).media[0].port);
    let a_ssrc = first.media[0].ssrcs[0];

    let stop = Arc::new(AtomicBool::new(false));
    let (log_a1, log_a2) =
        (listen(a1.try_clone().unwrap(), stop.clone()), listen(a2.try_clone().unwrap(), stop.clone()));
    let log_b = listen(b.try_clone().unwrap(), stop.clone());
    let a_target = Arc::new(Mutex::new((a1.try_clone().unwrap(), bridge_a, Law::U)));
    talk(660.0, 0x0a0a_0001, a_target.clone(), stop.clone());
    talk(440.0, 0x0b0b_0001, Arc::new(Mutex::new((b.try_clone().unwrap(), bridge_b, Law::U))), stop.clone());

    thread::sleep(Duration::from_millis(2500));
    for (id, other) in [(&a_id, &b_id), (&b_id, &a_id)] {
        let s = sub(&d, id);
        assert_eq!((s["route"].as_str(), s["publisher_id"].as_str()), (Some("forward"), Some(other.as_str())), "{s}");
    }

    // The re-INVITE: A is now at a2 and speaks PCMA only.
    let (s, re) = d.patch_json(&format!("{parts}/{a_id}"), &json!({ "sdp": offer(port(&a2), 2, Law::A) }));
    let switched = Instant::now();
    assert_eq!(s, 200, "PATCH re-offer: {re}");
    *a_target.lock().unwrap() = (a2.try_clone().unwrap(), bridge_a, Law::A);
    let answer = re["sdp"].as_str().unwrap_or_else(|| panic!("the PATCH of an offer returned no answer: {re}"));
    let ans = Sdp::parse(answer);
    let m = &ans.media[0];
    assert_eq!(m.port, bridge_a, "the bridge's port changed in the re-answer:\n{answer}");
    assert_eq!(m.codecs, ["pcma", "telephone-event"], "re-answer codecs:\n{answer}");
    assert!(answer.contains(&format!("m=audio {bridge_a} RTP/AVP 8 101\r\n")), "{answer}");
    assert_eq!(m.ssrcs, [a_ssrc], "the bridge's SSRC changed:\n{answer}");
    let version =
        |sdp: &Sdp| sdp.session.iter().find(|l| l.starts_with("o=")).map(|o| o.split(' ').nth(2).unwrap().to_string());
    assert_ne!(version(&ans), version(&first), "a changed answer must carry a new o= version:\n{answer}");

    thread::sleep(Duration::from_millis(3500));
    let end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_millis(100));
    let (sa, sb) = (sub(&d, &a_id), sub(&d, &b_id));
    assert_eq!((sa["route"].as_str(), sa["codec"].as_str()), (Some("transcode"), Some("pcma")), "A's slot: {sa}");
    assert_eq!((sb["route"].as_str(), sb["codec"].as_str()), (Some("transcode"), Some("pcmu")), "B's slot: {sb}");
    assert_eq!(sa["publisher_id"], b_id.as_str());
    assert_eq!(sb["publisher_id"], a_id.as_str());

    // Before: PCMU 440 at a1. After: nothing more at a1, PCMA 440 at a2.
    let before = decode(&log_a1, 0, switched - Duration::from_millis(1500));
    assert!((dominant_frequency(&before, 8000) - 440.0).abs() <= 10.0, "A before the re-INVITE");
    let stale = count(&log_a1, switched + Duration::from_millis(200), end);
    assert!(stale <= 1, "{stale} packets still went to A's old address after the re-INVITE");
    let late = switched + Duration::from_millis(1500);
    let after = decode(&log_a2, 8, late);
    assert!(after.len() >= 8000 * 3 / 2, "A got only {} PCMA samples at its new address", after.len());
    let hz = dominant_frequency(&after, 8000);
    assert!((hz - 440.0).abs() <= 10.0, "A hears {hz} Hz in PCMA after the re-INVITE, expected 440");
    let wrong_pt = log_a2.lock().unwrap().iter().filter(|p| p.1 != 8 && p.1 != 101).count();
    assert_eq!(wrong_pt, 0, "the bridge sent A payload types other than the answered 8/101");
    // B keeps hearing A's 660 Hz, now transcoded from PCMA.
    let b_after = decode(&log_b, 0, late);
    assert!(b_after.len() >= 8000 * 3 / 2, "B got only {} samples after A's re-INVITE", b_after.len());
    let hz = dominant_frequency(&b_after, 8000);
    assert!((hz - 660.0).abs() <= 10.0, "B hears {hz} Hz after A's re-INVITE, expected 660");

    // A's stream from the bridge is one stream across the move: same SSRC (the declared one),
    // sequence numbers that go on, timestamps that follow the clock.
    let old = log_a1.lock().unwrap();
    let new = log_a2.lock().unwrap();
    let (last, next) = (old.iter().rfind(|p| p.1 == 0).unwrap(), new.iter().find(|p| p.1 == 8).unwrap());
    assert!(old.iter().chain(new.iter()).all(|p| p.4 == a_ssrc), "A's stream changed SSRC across the re-INVITE");
    let step = next.2.wrapping_sub(last.2);
    let wall_ms = next.0.duration_since(last.0).as_secs_f64() * 1000.0;
    assert!((1..=50).contains(&step), "sequence number jumped by {step} across the re-INVITE ({wall_ms:.0} ms)");
    let ts_ms = f64::from(next.3.wrapping_sub(last.3) as i32) / 8.0;
    assert!(
        ts_ms > 0.0 && (ts_ms - wall_ms).abs() < 500.0,
        "timestamp moved {ts_ms} ms for a {wall_ms:.0} ms gap across the re-INVITE"
    );
    let steps_not_1 = new.windows(2).filter(|w| w[1].2.wrapping_sub(w[0].2) != 1).count();
    assert_eq!(steps_not_1, 0, "sequence gaps in the transcoded stream");
}
