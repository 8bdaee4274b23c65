//! Only the K loudest speakers are mixed (`mixer.speakers`, here 3): six PCMU legs talk at once,
//! each with its own tone and level, and a seventh leg only listens. The listener's mix holds
//! the three loudest tones at their sent level, and the three quietest not at all: each of
//! their bands at least 20 dB below each loud tone's (had a quiet one been mixed, it would be
//! only 9.5 dB below the quietest loud one). The room announces the loudest as active speaker.
//!
//! The levels alternate between loud and quiet along the frequencies, so neither the order of
//! the tones nor the order of joining decides who is mixed.
//!
//! The six talkers are PCMU legs sent from this test process (µ-law sine, one packet every 20 ms
//! on an absolute schedule, each from its own UDP socket and joined with its own send-only SDP
//! offer): six Python/GStreamer processes would load a small machine enough to make a talker
//! pause now and then, which the mixer rightly takes for silence. Each reports how late its
//! worst packet left. The listener is peers/rtp_leg.py.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

const ROOM: &str = "speakers";
const DURATION_S: f64 = 14.0;
/// (name, tone Hz, amplitude). The loud three sum to 0.75 of full scale (no clipping); the
/// loudest is 8 dB above the next, so it is the active speaker beyond any hysteresis; the
/// loudest quiet one is 9.5 dB below the quietest loud one.
const TALKERS: [(&str, f32, f32); 6] = [
    ("t400", 400.0, 0.18),
    ("t500", 500.0, 0.03),
    ("t600", 600.0, 0.45),
    ("t700", 700.0, 0.02),
    ("t800", 800.0, 0.12),
    ("t900", 900.0, 0.04),
];

/// What a talker did: when it joined and stopped sending (unix seconds), how many packets it
/// sent and how late (ms) its latest packet left against its 20 ms schedule.
#[derive(Debug)]
struct TalkerReport {
    name: &'static str,
    joined: f64,
    stopped: f64,
    packets: u64,
    worst_late_ms: f64,
    left_status: u16,
}

/// Joins `ROOM` with a send-only PCMU offer and sends a sine for `seconds` from a thread.
fn start_talker(d: &Daemon, name: &'static str, hz: f32, amplitude: f32, seconds: f64) -> JoinHandle<TalkerReport> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let ssrc = 0x5EED_0000 | port as u32;
    let offer = [
        "v=0".to_string(),
        format!("o=- {port} 1 IN IP4 127.0.0.1"),
        "s=talker".into(),
        "c=IN IP4 127.0.0.1".into(),
        "t=0 0".into(),
        format!("m=audio {port} RTP/AVP 0 101"),
        "a=rtpmap:0 PCMU/8000".into(),
        "a=rtpmap:101 telephone-event/8000".into(),
        "a=fmtp:101 0-15".into(),
        "a=ptime:20".into(),
        "a=rtcp-mux".into(),
        format!("a=ssrc:{ssrc} cname:talker-{port}"),
        "a=sendonly".into(),
    ]
    .join("\r\n")
        + "\r\n";
    let (s, v) = d.post_json(&format!("/v1/rooms/{ROOM}/participants"), &json!({"sdp": offer, "display_name": name}));
    assert_eq!(s, 201, "talker {name}: join: {v}");
    let joined = unix_now();
    let answer = v["sdp"].as_str().unwrap_or_default().to_string();
    let sdp = Sdp::parse(&answer);
    let ip = sdp
        .session
        .iter()
        .chain(sdp.media.iter().flat_map(|m| m.lines.iter()))
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap_or_else(|| panic!("talker {name}: no c= line in the answer:\n{answer}"))
        .trim()
        .to_string();
    let dest: SocketAddr = format!("{ip}:{}", sdp.media[0].port).parse().unwrap();
    let leave_url = d.url(&format!("/v1/rooms/{ROOM}/participants/{}", v["id"].as_str().unwrap()));
    thread::spawn(move || {
        let start = Instant::now();
        let (mut seq, mut ts, mut n) = (port, u32::from(port) << 8, 0u64);
        let mut worst_late_ms: f64 = 0.0;
        let mut packet = vec![0u8; 12 + 160];
        while (n as f64) * 0.02 < seconds {
            let due = start + Duration::from_millis(20 * n);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            } else {
                worst_late_ms = worst_late_ms.max((now - due).as_secs_f64() * 1000.0);
            }
            packet[0] = 0x80;
            packet[1] = if n == 0 { 0x80 } else { 0 };
            packet[2..4].copy_from_slice(&seq.to_be_bytes());
            packet[4..8].copy_from_slice(&ts.to_be_bytes());
            packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
            for (i, b) in packet[12..].iter_mut().enumerate() {
                let t = (n * 160 + i as u64) as f64 / 8000.0;
                let x = (2.0 * std::f64::consts::PI * hz as f64 * t).sin() * amplitude as f64 * 32767.0;
                *b = ulaw_encode(x as i16);
            }
            sock.send_to(&packet, dest).expect("send RTP");
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
            n += 1;
        }
        let stopped = unix_now();
        let left_status = delete(&leave_url).0;
        TalkerReport { name, joined, stopped, packets: n, worst_late_ms, left_status }
    })
}

fn level(x: &[i16], hz: f32) -> f32 {
    tone_level_db(x, 8000, hz)
}

#[test]
fn a_listener_hears_exactly_the_three_loudest_of_six_talkers() {
    require_rtp_leg();
    // The mixer's jitter buffer at 150 ms, not the harness's 40: on a busy test machine a sender
    // thread can wake 60+ ms late, and an input whose buffer runs dry plays silence, which can
    // rightly cost it its place among the speakers for the 400 ms hold. Here the point is which
    // talkers are picked, not how the mixer rides out jitter.
    let d = Daemon::start_with(|c| {
        c.set("mixer", "speakers", 3);
        c.set("mixer", "jitter_buffer_ms", 150);
    });
    let dir = tempfile::tempdir().unwrap();
    let clock = UnixClock::new();
    let sse = d.create_and_follow(ROOM);
    let dur = (DURATION_S + 4.0).to_string();
    let listen_file: PathBuf = dir.path().join("listener.s16le");
    // The listener first; it sends no audio at all (--tone 0) and stays until the talkers are done.
    let listen_arg = listen_file.to_str().unwrap();
    let listener_args = ["--tone", "0", "--duration", &dur, "--packet-log", "--save-audio", listen_arg];
    let mut listener = Some(d.join_peer(RTP_LEG, ROOM, "listener", &listener_args, Duration::from_secs(55)));
    let listener_id = d.wait_for_participants(ROOM, 1, &mut [&mut listener], JOIN_WAIT).remove(0);
    let talkers: Vec<JoinHandle<TalkerReport>> =
        TALKERS.iter().map(|(name, hz, amp)| start_talker(&d, name, *hz, *amp, DURATION_S)).collect();
    let ids = d.wait_for_participants(ROOM, 7, &mut [&mut listener], JOIN_WAIT);
    let views: Vec<Value> = ids.iter().map(|id| d.participant(ROOM, id)).collect();
    let lv = poll_until(Duration::from_secs(10), || {
        let (_, v) = d.get_json(&format!("/v1/rooms/{ROOM}/participants/{listener_id}"));
        (v["subscriptions"][0]["route"] == "mix").then_some(v)
    });
    assert!(
        lv.is_some(),
        "the listener's slot never became a mix: {}",
        d.get_json(&format!("/v1/rooms/{ROOM}/participants/{listener_id}")).1
    );

    let reports: Vec<TalkerReport> = talkers.into_iter().map(|t| t.join().expect("talker thread")).collect();
    let listener = listener.take().unwrap().wait();
    listener.expect_ok();
    for t in &reports {
        assert_eq!(t.left_status, 204, "talker {}: DELETE", t.name);
    }
    assert_one_stream("the listener", &listener);

    // While all seven were in and talking: from 2.5 s after the last joined (the speaker set
    // settles; a newcomer displaces a weaker speaker only 400 ms after the last change) until
    // 0.5 s before the first one stopped.
    let from = reports.iter().map(|t| t.joined).fold(leg_joined_at(&listener), f64::max) + 2.5;
    let to = reports.iter().map(|t| t.stopped).fold(f64::MAX, f64::min) - 0.5;
    assert!(to - from >= 3.0, "the seven were together for only {:.1} s (load?)", to - from + 2.5);
    let (x, _) = leg_audio_between(&listener, &listen_file, from, to);
    // Most of the window must be there; a starved machine may cost the tail a few frames (the
    // mixer skips ticks rather than burst), which says nothing about who is mixed.
    assert!(x.len() as f64 >= (to - from - 0.2) * 8000.0 * 0.8, "only {} samples for {:.1} s", x.len(), to - from);

    // The active speakers the room announced, and the mixer's jitter counters, for the messages.
    let names: Vec<(String, String)> = views
        .iter()
        .map(|v| (v["id"].as_str().unwrap().to_string(), v["display_name"].as_str().unwrap().to_string()))
        .collect();
    let name_of =
        |id: &Value| names.iter().find(|(i, _)| *id == i.as_str()).map(|(_, n)| n.clone()).unwrap_or_default();
    let announced: Vec<(f64, String)> = sse
        .events()
        .into_iter()
        .filter(|e| e.event == "active_speaker")
        .map(|e| (clock.unix(e.at), name_of(&e.data["participant_id"])))
        .collect();
    let (_, metrics) = d.get_text("/metrics");
    let jitter: Vec<String> = ["late", "lost", "concealed"]
        .iter()
        .map(|e| {
            format!(
                "{e} {}",
                metric_value(&metrics, "switchboard_mixer_jitter_packets_total", &[("event", e)]).unwrap_or(-1.0)
            )
        })
        .collect();
    let late: Vec<String> = reports
        .iter()
        .map(|t| format!("{} {} packets, worst {:.0} ms late", t.name, t.packets, t.worst_late_ms))
        .collect();
    let context = format!(
        "mixer jitter packets: {jitter:?}; active_speaker events (s after the last joined): {:?}; talkers: {late:?}",
        announced.iter().map(|(t, n)| (((t - from + 2.5) * 100.0).round() / 100.0, n)).collect::<Vec<_>>()
    );

    let mut by_amp = TALKERS.to_vec();
    by_amp.sort_by(|a, b| b.2.total_cmp(&a.2));
    let (loud, quiet) = by_amp.split_at(3);
    for (k, piece) in x.chunks_exact(4000).enumerate() {
        let bands: Vec<(f32, f32)> = TALKERS.iter().map(|(_, hz, _)| (*hz, level(piece, *hz))).collect();
        for (name, hz, amp) in loud {
            let got = level(piece, *hz);
            let want = sine_dbfs(*amp);
            assert!(
                (got - want).abs() <= 3.0,
                "0.5 s piece #{k} ({:.1} s after the last joined): {name} (one of the 3 loudest) at {got:.1} dBFS, \
                 sent at {want:.1}; bands {bands:?}\n{context}",
                2.5 + k as f64 * 0.5
            );
            for (qname, qhz, _) in quiet {
                let q = level(piece, *qhz);
                assert!(
                    q <= got - 20.0,
                    "0.5 s piece #{k} ({:.1} s after the last joined): {qname} (one of the 3 quietest) at {q:.1} \
                     dBFS, not 20 dB below {name} ({got:.1}): more than the 3 loudest are mixed, or the wrong ones; \
                     bands {bands:?}\n{context}",
                    2.5 + k as f64 * 0.5
                );
            }
        }
        if k == 0 {
            eprintln!("listener, first 0.5 s piece of {:.1} s: {bands:?}", to - from);
        }
    }

    // The active speaker the room announced while all six talked: the loudest talker.
    let last = announced.iter().rev().find(|(t, _)| *t <= to).map(|(_, n)| n.as_str());
    assert_eq!(
        last,
        Some(loud[0].0),
        "the active speaker while all talked (until {:.1} s after the last joined) should be the loudest; \
         active_speaker events (s after the last joined): {:?}",
        to - from + 2.5,
        announced.iter().map(|(t, n)| (((t - from + 2.5) * 100.0).round() / 100.0, n)).collect::<Vec<_>>()
    );
}
