//! A broken sender does not break the mix: three PCMU legs (peers/rtp_leg.py) mix (mix-minus,
//! default `mixer.speakers` = 3), then a fourth leg joins offering Opus and sends well-formed RTP
//! headers with random bytes as the Opus payload (peers/rtp_garbage.py). While it does, and after
//! it left, every PCMU leg still hears the other two tones at their sent level and not its own,
//! and the daemon keeps answering. `switchboard_mixer_errors_total` may rise; it is reported.

use std::path::Path;
use std::time::Duration;

use switchboard_integration_tests::*;

const ROOM: &str = "robust";
const AMPLITUDE: f32 = 0.3;
const LEG_DURATION: f64 = 24.0;
const LEGS: [(&str, f32); 3] = [("a", 440.0), ("b", 660.0), ("c", 880.0)];

fn view(d: &Daemon, id: &str) -> Value {
    d.participant(ROOM, id)
}

fn level(x: &[i16], hz: f32) -> f32 {
    tone_level_db(x, 8000, hz)
}

/// Checks every 0.5 s piece of what leg `i` heard in `from..to`: the other legs' tones at the
/// sent level (± 3 dB), its own at least 30 dB below them. Returns what was wrong (empty: all
/// fine) and a one-line summary of the levels.
fn check_mix(phase: &str, i: usize, out: &PeerOutput, file: &Path, from: f64, to: f64) -> (Vec<String>, String) {
    let (name, own) = LEGS[i];
    let (x, _) = leg_audio_between(out, file, from, to);
    let mut problems = Vec::new();
    if (x.len() as f64) < (to - from - 0.2) * 8000.0 {
        problems.push(format!(
            "{phase}, leg {name}: only {:.2} s of audio for {:.1} s",
            x.len() as f64 / 8000.0,
            to - from
        ));
    }
    let want = sine_dbfs(AMPLITUDE);
    let pieces: Vec<&[i16]> = x.chunks_exact(4000).collect();
    if pieces.is_empty() {
        problems.push(format!("{phase}, leg {name}: nothing to analyse"));
        return (problems, String::new());
    }
    let mut bad_pieces = 0;
    for (k, piece) in pieces.iter().enumerate() {
        let bands: Vec<String> = LEGS.iter().map(|(_, hz)| format!("{hz}: {:.1}", level(piece, *hz))).collect();
        let o = level(piece, own);
        let mut wrong = Vec::new();
        for (_, hz) in LEGS.iter().filter(|(n, _)| *n != name) {
            let got = level(piece, *hz);
            if (got - want).abs() > 3.0 {
                wrong.push(format!("{hz} Hz at {got:.1} dBFS, sent at {want:.1}"));
            }
            if o > got - 30.0 {
                wrong.push(format!("own {own} Hz at {o:.1}, not 30 dB below {hz} Hz"));
            }
        }
        if !wrong.is_empty() {
            bad_pieces += 1;
            if bad_pieces <= 3 {
                problems.push(format!(
                    "{phase}, leg {name}, 0.5 s piece #{k} of {}: {}; bands [{}], rms {:.1} dBFS",
                    pieces.len(),
                    wrong.join(", "),
                    bands.join(", "),
                    20.0 * rms(piece).max(1e-6).log10()
                ));
            }
        }
    }
    if bad_pieces > 3 {
        problems.push(format!("{phase}, leg {name}: ... {bad_pieces} of {} pieces wrong", pieces.len()));
    }
    let mid = pieces[pieces.len() / 2];
    let summary = format!(
        "{phase}, leg {name}: {} of {} pieces ok; middle piece {:?}, rms {:.1} dBFS",
        pieces.len() - bad_pieces,
        pieces.len(),
        LEGS.iter().map(|(_, hz)| (*hz, (level(mid, *hz) * 10.0).round() / 10.0)).collect::<Vec<_>>(),
        20.0 * rms(mid).max(1e-6).log10()
    );
    (problems, summary)
}

fn metric(d: &Daemon, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (s, m) = d.get_text("/metrics");
    assert_eq!(s, 200, "GET /metrics");
    metric_value(&m, name, labels).unwrap_or(0.0)
}

#[test]
fn opus_garbage_from_one_leg_leaves_the_other_legs_mixes_intact() {
    require_rtp_leg();
    let mut d = Daemon::start();
    let clock = UnixClock::new();
    let dir = tempfile::tempdir().unwrap();
    let sse = d.create_and_follow(ROOM);
    let (files, mut legs) =
        spawn_tone_legs(&d, ROOM, &LEGS, AMPLITUDE, LEG_DURATION, dir.path(), Duration::from_secs(55));
    let ids = d.wait_for_participants(ROOM, 3, &mut legs, JOIN_WAIT);
    let mixing = poll_until(Duration::from_secs(10), || {
        ids.iter().all(|id| view(&d, id)["subscriptions"][0]["route"] == "mix").then_some(())
    });
    assert!(
        mixing.is_some(),
        "the three legs never all had a mix: {:?}",
        ids.iter().map(|i| view(&d, i)).collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_secs(3));
    let errors_before = metric(&d, "switchboard_mixer_errors_total", &[]);

    // The garbage sender, for 8 s.
    let garbage_args = ["--duration", "8", "--seed", "7"];
    let mut garbage = Some(d.join_peer("rtp_garbage.py", ROOM, "garbage", &garbage_args, Duration::from_secs(30)));
    let ids4 = {
        let mut refs: Vec<&mut Option<PeerHandle>> = vec![&mut garbage];
        refs.extend(legs.iter_mut());
        d.wait_for_participants(ROOM, 4, &mut refs, JOIN_WAIT)
    };
    let g_id = ids4.iter().find(|i| !ids.contains(i)).unwrap().clone();
    // The daemon keeps answering while the garbage flows.
    let mut health = Vec::new();
    let mut garbage_view = Value::Null;
    while !garbage.as_mut().unwrap().finished() {
        let (s, _) = d.get_json("/healthz");
        health.push(s);
        if garbage_view.is_null() {
            let v = view(&d, &g_id);
            if !v["subscriptions"][0]["route"].is_null() {
                garbage_view = v;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let g = garbage.take().unwrap().wait();
    let gj = g.expect_ok();
    assert!(health.iter().all(|s| *s == 200), "GET /healthz while the garbage flowed: {health:?}");
    assert!(gj["sent_packets"].as_u64().unwrap_or(0) >= 300, "the garbage sender sent too little: {}", g.describe());
    // It was a participant like any other: published Opus, got a mix in Opus.
    assert_eq!(garbage_view["tracks"][0]["codec"], "opus", "{garbage_view}");
    assert_eq!(garbage_view["subscriptions"][0]["route"], "mix", "{garbage_view}");
    let errors_during = metric(&d, "switchboard_mixer_errors_total", &[]);

    let outs: Vec<PeerOutput> = legs.iter_mut().map(|l| l.take().unwrap().wait()).collect();
    for (o, (name, _)) in outs.iter().zip(LEGS) {
        o.expect_ok();
        assert_one_stream(name, o);
    }
    assert!(d.exited().is_none(), "the daemon exited: {:?}\n{}", d.exited(), d.log_tail(40));
    assert_eq!(d.get_json("/healthz").0, 200);
    let errors_after = metric(&d, "switchboard_mixer_errors_total", &[]);
    eprintln!(
        "switchboard_mixer_errors_total: {errors_before} before the garbage, {errors_during} after it, {errors_after} at the end; \
         garbage sender: {} packets sent, {} received from the bridge",
        gj["sent_packets"], gj["received_packets"]
    );

    let (g_joined, g_left) =
        (clock.event_at(&sse, "participant_joined", &g_id), clock.event_at(&sse, "participant_left", &g_id));
    let stopped = outs.iter().map(|o| o.json["t0_unix"].as_f64().unwrap() + LEG_DURATION).fold(f64::MAX, f64::min);
    assert!(
        stopped - g_left >= 2.5,
        "the legs stopped {:.1} s after the garbage sender left (load?)",
        stopped - g_left
    );
    // Who the room called the active speaker while the garbage flowed.
    let names: Vec<(String, String)> = ids4.iter().map(|id| (id.clone(), view_name(&outs, &g_id, id))).collect();
    let speakers: Vec<String> = sse
        .events()
        .into_iter()
        .filter(|e| e.event == "active_speaker")
        .map(|e| {
            let id = e.data["participant_id"].as_str().unwrap_or("?").to_string();
            let n = names.iter().find(|(i, _)| *i == id).map(|(_, n)| n.clone()).unwrap_or(id);
            format!("{:+.2} s {n}", clock.unix(e.at) - g_joined)
        })
        .collect();
    let mut problems = Vec::new();
    for (i, o) in outs.iter().enumerate() {
        for (phase, from, to) in [
            ("before the garbage", g_joined - 3.0, g_joined - 0.2),
            ("during the garbage", g_joined + 1.0, g_left - 0.3),
            ("after the garbage", g_left + 1.0, stopped - 0.5),
        ] {
            let (p, summary) = check_mix(phase, i, o, &files[i], from, to);
            eprintln!("{summary}");
            problems.extend(p);
        }
    }
    assert!(
        problems.is_empty(),
        "the PCMU legs' mixes were damaged ({} problems); mixer_errors_total {errors_before} -> {errors_after}; \
         active_speaker events (relative to the garbage sender joining): {speakers:?}\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The display name of a participant: a leg's from its report, or "garbage".
fn view_name(outs: &[PeerOutput], g_id: &str, id: &str) -> String {
    if id == g_id {
        return "garbage".into();
    }
    outs.iter()
        .position(|o| o.json["participant_id"] == id)
        .map(|i| LEGS[i].0.to_string())
        .unwrap_or_else(|| id.to_string())
}
