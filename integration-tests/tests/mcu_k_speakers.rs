//! Only the K loudest speakers are mixed (`mixer.speakers`, here 3): six PCMU legs talk at once,
//! each with its own tone and level, and a seventh leg only listens. The listener's mix holds
//! the three loudest tones at their sent level, and the three quietest not at all: each of
//! their bands at least 20 dB below each loud tone's (had a quiet one been mixed, it would be
//! only 9.5 dB below the quietest loud one). The room announces the loudest as active speaker.
//!
//! The levels alternate between loud and quiet along the frequencies, so neither the order of
//! the tones nor the order of joining decides who is mixed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchboard_integration_tests::*;

const LEG: &str = "rtp_leg.py";
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

fn spawn_leg(d: &Daemon, name: &str, extra: &[&str]) -> PeerHandle {
    let mut args: Vec<&str> = vec!["--api", &d.base_url, "--room", ROOM, "--display-name", name];
    args.extend_from_slice(extra);
    spawn_peer(LEG, &args, Duration::from_secs(55))
}

fn wait_for_participants(d: &Daemon, n: usize, legs: &mut [Option<PeerHandle>]) -> Vec<String> {
    let got = poll_until(Duration::from_secs(30), || {
        let (s, v) = d.get_json(&format!("/v1/rooms/{ROOM}"));
        if s == 200 && participant_ids(&v).len() == n {
            return Some(Ok(participant_ids(&v)));
        }
        legs.iter_mut().position(|l| l.as_mut().is_some_and(PeerHandle::finished)).map(Err)
    });
    match got {
        Some(Ok(ids)) => ids,
        Some(Err(i)) => {
            panic!("leg #{i} ended before the room had {n} participants: {}", legs[i].take().unwrap().wait().describe())
        }
        None => panic!("the room never had {n} participants: {:?}", d.get_json(&format!("/v1/rooms/{ROOM}"))),
    }
}

fn joined_at(o: &PeerOutput) -> f64 {
    let t0 = o.json["t0_unix"].as_f64().unwrap();
    let t = o.json["timeline"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e[1].as_str().is_some_and(|s| s.starts_with("joined"))))
        .and_then(|e| e[0].as_f64())
        .unwrap_or_else(|| panic!("no join in the leg's timeline: {}", o.describe()));
    t0 + t
}

/// What a leg (run with --packet-log and --save-audio) heard between two unix times, and its
/// sample rate. The saved file is the decoded audio of its audio packets in arrival order, each
/// worth (payload bytes × rate / 8000) samples (G.711: a sample a byte; G.722: two at 16 kHz),
/// so the packet log places the times in the file exactly, whatever the decoder's lag.
fn leg_audio_between(out: &PeerOutput, path: &Path, from: f64, to: f64) -> (Vec<i16>, u32) {
    let j = &out.json;
    let rate = j["audio"]["rate"].as_u64().unwrap_or(8000) as u32;
    let per_byte = (rate / 8000) as usize;
    let t0 = j["t0_unix"].as_f64().unwrap_or_else(|| panic!("no t0_unix: {}", out.describe()));
    let log =
        j["packet_log"].as_array().unwrap_or_else(|| panic!("the leg ran without --packet-log: {}", out.describe()));
    // Packets that overtook the answer to the join were logged but not decoded (PT unknown yet).
    let mut skip = j["received"]["unknown_pt"].as_u64().unwrap_or(0);
    let all = read_s16le(path);
    let (mut pos, mut start, mut end) = (0usize, None, None);
    for e in log.iter().filter(|e| e[1] == j["audio_pt"]) {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        let t = t0 + e[0].as_f64().unwrap_or(0.0);
        if start.is_none() && t >= from {
            start = Some(pos);
        }
        if t > to {
            end = Some(pos);
            break;
        }
        pos += (e[6].as_u64().unwrap_or(12) as usize).saturating_sub(12) * per_byte;
    }
    let a = start.unwrap_or(pos).min(all.len());
    let b = end.unwrap_or(pos).min(all.len());
    (all[a..b.max(a)].to_vec(), rate)
}

fn level(x: &[i16], hz: f32) -> f32 {
    band_energy_db(x, 8000, hz - 25.0, hz + 25.0)
}

#[test]
fn a_listener_hears_exactly_the_three_loudest_of_six_talkers() {
    require_rtp_leg();
    let d = Daemon::start_with(|c| {
        c.set("mixer", "speakers", 3);
    });
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(d.post_json("/v1/rooms", &json!({"id": ROOM})).0, 201);
    let anchor = (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64(), Instant::now());
    let unix = |t: Instant| anchor.0 + t.saturating_duration_since(anchor.1).as_secs_f64();
    let sse = d.events(ROOM);
    assert_eq!(sse.status, 200);
    let dur = DURATION_S.to_string();
    let listen_file: PathBuf = dir.path().join("listener.s16le");
    let mut legs: Vec<Option<PeerHandle>> = TALKERS
        .iter()
        .map(|(name, hz, amp)| {
            // Send-only: only the listener gets a mix (less load for the peers and the daemon).
            let (hz, amp) = (hz.to_string(), amp.to_string());
            Some(spawn_leg(
                &d,
                name,
                &["--direction", "sendonly", "--tone", &hz, "--amplitude", &amp, "--duration", &dur],
            ))
        })
        .collect();
    // The listener sends no audio at all (--tone 0).
    legs.push(Some(spawn_leg(
        &d,
        "listener",
        &["--tone", "0", "--duration", &dur, "--packet-log", "--save-audio", listen_file.to_str().unwrap()],
    )));
    let ids = wait_for_participants(&d, 7, &mut legs);
    let views: Vec<Value> = ids.iter().map(|id| d.get_json(&format!("/v1/rooms/{ROOM}/participants/{id}")).1).collect();
    let listener_id =
        views.iter().find(|v| v["display_name"] == "listener").unwrap()["id"].as_str().unwrap().to_string();
    let lv = poll_until(Duration::from_secs(10), || {
        let (_, v) = d.get_json(&format!("/v1/rooms/{ROOM}/participants/{listener_id}"));
        (v["subscriptions"][0]["route"] == "mix").then_some(v)
    });
    assert!(
        lv.is_some(),
        "the listener's slot never became a mix: {}",
        d.get_json(&format!("/v1/rooms/{ROOM}/participants/{listener_id}")).1
    );

    let outs: Vec<PeerOutput> = legs.iter_mut().map(|l| l.take().unwrap().wait()).collect();
    for o in &outs {
        o.expect_ok();
    }
    let listener = &outs[6];
    let r = &listener.json["received"];
    assert_eq!(r["ssrcs"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(r["seq_steps_not_1"], 0, "{}", r["seq_step_examples"]);

    // While all seven were in and talking: from 2.5 s after the last joined (the speaker set
    // settles; a newcomer displaces a weaker speaker only 400 ms after the last change) until
    // 0.5 s before the first one stopped.
    let from = outs.iter().map(joined_at).fold(f64::MIN, f64::max) + 2.5;
    let to = outs.iter().map(|o| o.json["t0_unix"].as_f64().unwrap() + DURATION_S).fold(f64::MAX, f64::min) - 0.5;
    assert!(to - from >= 3.0, "the seven were together for only {:.1} s (load?)", to - from + 2.5);
    let (x, _) = leg_audio_between(listener, &listen_file, from, to);
    assert!(x.len() as f64 >= (to - from - 0.2) * 8000.0, "only {} samples for {:.1} s", x.len(), to - from);

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
        .map(|e| (unix(e.at), name_of(&e.data["participant_id"])))
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
    let context = format!(
        "mixer jitter packets: {jitter:?}; active_speaker events (s after the last joined): {:?}",
        announced.iter().map(|(t, n)| (((t - from + 2.5) * 100.0).round() / 100.0, n)).collect::<Vec<_>>()
    );

    let mut by_amp = TALKERS.to_vec();
    by_amp.sort_by(|a, b| b.2.total_cmp(&a.2));
    let (loud, quiet) = by_amp.split_at(3);
    for (k, piece) in x.chunks_exact(4000).enumerate() {
        let bands: Vec<(f32, f32)> = TALKERS.iter().map(|(_, hz, _)| (*hz, level(piece, *hz))).collect();
        for (name, hz, amp) in loud {
            let got = level(piece, *hz);
            let want = 20.0 * amp.log10() - 3.01;
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
