//! Relay -> mix -> relay without the phone legs noticing: two PCMU legs relay (route "forward");
//! a third joins and every slot becomes a mix; it leaves and the two relay again. A change of
//! route never makes a subscriber renegotiate: its slot keeps its SSRC, sequence numbers step by
//! one and timestamps keep pace with the wall clock (docs: "Routing rules").
//!
//! The legs (peers/rtp_leg.py --packet-log) log every packet they receive; the stream checks are
//! made here, on those logs. The routes are read from the API and from SSE `route_changed`.

use std::path::Path;
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

const ROOM: &str = "switch";
const AB_DURATION: f64 = 26.0;

fn spawn_leg(d: &Daemon, name: &str, hz: f32, duration: f64, file: &Path) -> Option<PeerHandle> {
    Some(d.join_peer(RTP_LEG, ROOM, name, &tone_leg_args(hz, 0.3, duration, file), Duration::from_secs(55)))
}

/// Polls the API until each `(participant, route, publisher)` holds for its slot (publisher
/// `None`: the slot has none, as for a mix). Returns the views.
fn wait_routes(d: &Daemon, want: &[(&str, &str, Option<&str>)], phase: &str) -> Vec<Value> {
    let ok = |v: &Value, route: &str, publisher: Option<&str>| {
        let s = &v["subscriptions"][0];
        s["route"] == route && s["codec"] == "pcmu" && s["publisher_id"].as_str() == publisher
    };
    poll_until(Duration::from_secs(10), || {
        let views: Vec<Value> = want.iter().map(|(id, _, _)| d.participant(ROOM, id)).collect();
        views.iter().zip(want).all(|(v, (_, r, p))| ok(v, r, *p)).then_some(views)
    })
    .unwrap_or_else(|| {
        let now: Vec<Value> = want.iter().map(|(id, _, _)| d.participant(ROOM, id)["subscriptions"].clone()).collect();
        panic!(
            "{phase}: the API never showed (participant, route, publisher) {want:?} in PCMU; it shows {}",
            json!(now)
        )
    })
}

/// The `route_changed` events for `id`, (arrival, route, publisher_id), that came before any
/// of `until` left the room.
fn route_events(sse: &SseClient, clock: UnixClock, id: &str, until: &[&str]) -> Vec<(f64, Value, Value)> {
    sse.events()
        .into_iter()
        .take_while(|e| {
            !(e.event == "participant_left"
                && until.iter().any(|u| event_participant_id(&e.data).as_deref() == Some(u)))
        })
        .filter(|e| e.event == "route_changed" && e.data["participant_id"] == id)
        .map(|e| (clock.unix(e.at), e.data["route"].clone(), e.data["publisher_id"].clone()))
        .collect()
}

/// The stream a leg received is ONE stream: the SSRC its answer declared, sequence numbers
/// +1 each, timestamps increasing and never ahead of the wall clock by more than one packet.
#[track_caller]
/// The paced-legs gauge once it reads `want` (it is set at the worker's 500 ms harvest), or what
/// it read last.
fn paced_legs(d: &Daemon, want: f64) -> Option<f64> {
    let mut last = None;
    poll_until(Duration::from_secs(3), || {
        let (_, metrics) = d.get_text("/metrics");
        last = metric_value(&metrics, "switchboard_mixer_paced_legs", &[]);
        (last == Some(want)).then_some(())
    });
    last
}

fn assert_one_continuous_stream(name: &str, out: &PeerOutput) {
    let j = &out.json;
    let declared = Sdp::parse(j["answer_sdp"].as_str().unwrap_or("")).media[0].ssrcs.first().copied();
    let log = j["packet_log"].as_array().cloned().unwrap_or_default();
    assert!(log.len() > 500, "{name}: only {} packets logged: {}", log.len(), out.describe());
    // (t, pt, seq, ts, ssrc, marker, payload_len)
    let p: Vec<(f64, u64, u64, u64)> = log
        .iter()
        .map(|e| (e[0].as_f64().unwrap(), e[2].as_u64().unwrap(), e[3].as_u64().unwrap(), e[4].as_u64().unwrap()))
        .collect();
    let ssrcs: Vec<u64> = p.iter().map(|x| x.3).fold(Vec::new(), |mut v, s| {
        if !v.contains(&s) {
            v.push(s);
        }
        v
    });
    assert_eq!(ssrcs.len(), 1, "{name}: the bridge sent {} SSRCs {ssrcs:?}", ssrcs.len());
    assert_eq!(Some(ssrcs[0] as u32), declared, "{name}: the SSRC is not the one the answer declared");
    let mut bad_seq = Vec::new();
    let mut bad_ts = Vec::new();
    for w in p.windows(2) {
        let ((t1, s1, ts1, _), (t2, s2, ts2, _)) = (w[0], w[1]);
        let step = (s2 as i64 - s1 as i64).rem_euclid(65536);
        if step != 1 {
            bad_seq.push(format!("at {t2:.3} s: seq {s1} -> {s2}"));
        }
        let dts = (ts2 as i64 - ts1 as i64).rem_euclid(1 << 32);
        let dts_ms = if dts >= 1 << 31 { (dts - (1 << 32)) as f64 / 8.0 } else { dts as f64 / 8.0 };
        let wall_ms = (t2 - t1) * 1000.0;
        if dts_ms <= 0.0 || dts_ms > wall_ms + 20.0 {
            bad_ts.push(format!("at {t2:.3} s: ts +{dts_ms:.1} ms for a wall-clock gap of {wall_ms:.1} ms"));
        }
    }
    assert!(
        bad_seq.is_empty(),
        "{name}: {} sequence steps other than +1: {:?}",
        bad_seq.len(),
        &bad_seq[..bad_seq.len().min(10)]
    );
    assert!(bad_ts.is_empty(), "{name}: {} timestamp jumps: {:?}", bad_ts.len(), &bad_ts[..bad_ts.len().min(10)]);
    // Over the whole call too the timestamps kept pace with the wall clock (no slow drift
    // either), within what the first and last packets' arrival jitter can account for.
    let (first, last) = (p[0], p[p.len() - 1]);
    let total_ts_ms = ((last.2 as i64 - first.2 as i64).rem_euclid(1 << 32)) as f64 / 8.0;
    let total_wall_ms = (last.0 - first.0) * 1000.0;
    assert!(
        (total_ts_ms - total_wall_ms).abs() <= 150.0,
        "{name}: over the call the timestamps advanced {total_ts_ms:.0} ms in {total_wall_ms:.0} ms of wall clock"
    );
}

/// Band level (±25 Hz around `hz`) of what a leg heard between two unix times.
fn band_between(out: &PeerOutput, file: &Path, from: f64, to: f64, hz: f32) -> f32 {
    let (x, rate) = leg_audio_between(out, file, from, to);
    assert!(x.len() >= rate as usize / 2, "less than 0.5 s of audio between {from:.2} and {to:.2}: {}", x.len());
    tone_level_db(&x, rate, hz)
}

#[test]
fn relay_to_mix_and_back_keeps_each_leg_one_continuous_stream() {
    require_rtp_leg();
    let d = Daemon::start();
    let clock = UnixClock::new();
    let dir = tempfile::tempdir().unwrap();
    let sse = d.create_and_follow(ROOM);
    let [a_file, b_file, c_file] = ["a", "b", "c"].map(|n| dir.path().join(format!("{n}.s16le")));

    // Phase 1: A and B relay.
    let mut a = spawn_leg(&d, "a", 440.0, AB_DURATION, &a_file);
    let mut b = spawn_leg(&d, "b", 660.0, AB_DURATION, &b_file);
    let ids = d.wait_for_participants(ROOM, 2, &mut [&mut a, &mut b], JOIN_WAIT);
    let (a_id, b_id) = (d.participant_named(ROOM, &ids, "a"), d.participant_named(ROOM, &ids, "b"));
    wait_routes(&d, &[(&a_id, "forward", Some(&b_id)), (&b_id, "forward", Some(&a_id))], "phase 1 (A and B)");
    std::thread::sleep(Duration::from_secs(3));

    // Phase 2: C joins for 7 s: three publishers, one slot each: all mix.
    let mut c = spawn_leg(&d, "c", 880.0, 7.0, &c_file);
    let ids3 = d.wait_for_participants(ROOM, 3, &mut [&mut c, &mut a, &mut b], JOIN_WAIT);
    let c_id = ids3.iter().find(|i| **i != a_id && **i != b_id).unwrap().clone();
    wait_routes(&d, &[(&a_id, "mix", None), (&b_id, "mix", None), (&c_id, "mix", None)], "phase 2 (A, B and C)");
    // Mixed only: the worker reads the three legs at the mixer's ticks.
    assert_eq!(paced_legs(&d, 3.0), Some(3.0), "switchboard_mixer_paced_legs in phase 2");
    let c = c.take().unwrap().wait();
    c.expect_ok();

    // Phase 3: C left: A and B relay again, each with the other as its source.
    wait_routes(&d, &[(&a_id, "forward", Some(&b_id)), (&b_id, "forward", Some(&a_id))], "phase 3 (C left)");
    // Relayed again: read on arrival (the continuity checks below cover the switch itself).
    assert_eq!(paced_legs(&d, 0.0), Some(0.0), "switchboard_mixer_paced_legs in phase 3");
    let checked_at = clock.unix(Instant::now());
    let a = a.take().unwrap().wait();
    let b = b.take().unwrap().wait();
    a.expect_ok();
    b.expect_ok();
    let stopped = |o: &PeerOutput| o.json["t0_unix"].as_f64().unwrap() + AB_DURATION;
    assert!(stopped(&a).min(stopped(&b)) > checked_at + 2.0, "A or B stopped before phase 3 could be heard (load?)");

    // The phases as SSE saw them.
    let at = |name: &str, id: &str| clock.event_at(&sse, name, id);
    let c_joined = at("participant_joined", &c_id);
    let c_left = at("participant_left", &c_id);
    // Until A or B leaves at the end (then the other's slot has no source: route null).
    at("participant_left", &a_id);
    at("participant_left", &b_id);
    for (name, id, other) in [("A", &a_id, &b_id), ("B", &b_id, &a_id)] {
        let evs = route_events(&sse, clock, id, &[&a_id, &b_id]);
        let summary: Vec<String> = evs.iter().map(|(t, r, p)| format!("{:+.2} s {r} from {p}", t - c_joined)).collect();
        // Collapse repeats; what is left must be exactly forward -> mix -> forward.
        let mut seq: Vec<(Value, Value)> = Vec::new();
        for (_, r, p) in &evs {
            if seq.last() != Some(&(r.clone(), p.clone())) {
                seq.push((r.clone(), p.clone()));
            }
        }
        let want =
            vec![(json!("forward"), json!(other)), (json!("mix"), Value::Null), (json!("forward"), json!(other))];
        assert_eq!(seq, want, "{name}: route_changed events (relative to C joining): {summary:?}");
        // The switch to mix came after C joined, the switch back after C left.
        let to_mix = evs.iter().find(|(_, r, _)| r == "mix").unwrap().0;
        let back = evs.iter().rev().find(|(_, r, _)| r == "forward").unwrap().0;
        assert!(to_mix >= c_joined - 0.05, "{name}: mix announced before C joined: {summary:?}");
        assert!(back >= c_left - 0.05, "{name}: forward announced before C left: {summary:?}");
    }
    let evs = route_events(&sse, clock, &c_id, &[&c_id]);
    assert!(evs.iter().any(|(_, r, _)| r == "mix"), "C: no route_changed to mix: {evs:?}");

    // Each remaining leg: one stream from start to end, across both switches.
    assert_one_continuous_stream("A", &a);
    assert_one_continuous_stream("B", &b);

    // And the stream carried each phase's audio: C's tone only while C was there, the other
    // leg's throughout.
    for (name, o, file, other_hz) in [("A", &a, &a_file, 660.0), ("B", &b, &b_file, 440.0)] {
        let mix = (c_joined + 2.0, c_left - 0.5);
        let relay = (c_left + 1.5, stopped(o).min(stopped(if name == "A" { &b } else { &a })) - 0.5);
        let during_880 = band_between(o, file, mix.0, mix.1, 880.0);
        let during_other = band_between(o, file, mix.0, mix.1, other_hz);
        let after_880 = band_between(o, file, relay.0, relay.1, 880.0);
        let after_other = band_between(o, file, relay.0, relay.1, other_hz);
        eprintln!(
            "{name}: mix phase 880 Hz {during_880:.1} / {other_hz} Hz {during_other:.1} dBFS; \
             relay again 880 Hz {after_880:.1} / {other_hz} Hz {after_other:.1} dBFS"
        );
        assert!(during_880 > -20.0 && during_other > -20.0, "{name}: the mix lacks C's or the other leg's tone");
        assert!(after_other > -20.0, "{name}: the relay after C left lacks the other leg's tone");
        assert!(after_880 < after_other - 30.0, "{name}: C's tone is still heard after C left");
    }
}
