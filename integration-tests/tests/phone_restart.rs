//! A phone leg that restarts its stream mid-call, as a SIP gateway does between early media and
//! the answer, or after a re-INVITE to another media server: a new SSRC, and sequence numbers and
//! timestamps far from the old ones (peers/rtp_leg.py --restart-at). The other leg must go on
//! hearing it as one continuous stream, whether the bridge forwards the call (the 1:1 relay) or
//! mixes it (the other leg asked for `"audio": "mix"`).
//!
//! Checked on the listening leg: the talker's tone (dominant frequency) in the two seconds before
//! the restart and the two after; one SSRC; no sequence number step but +1; timestamps that move
//! with the wall clock (no jump of a billion); no hole in what arrived around the restart.

use std::path::Path;
use std::time::Duration;

use switchboard_integration_tests::*;

const TALKER_HZ: f32 = 660.0;
const LISTENER_HZ: f32 = 440.0;
/// When the talker restarts, in seconds after its media started flowing both ways.
const RESTART_AT: f64 = 4.0;
const TALKER_SECONDS: f64 = 9.0;

/// What a call gave: the listener's and the talker's reports, and the listener's audio file.
struct Heard {
    listener: PeerOutput,
    talker: PeerOutput,
    listener_audio: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts the listener (sending its own tone, with `listener_extra`), then the talker, which
/// restarts its stream `RESTART_AT` after its media flows; ends the call when the talker is done.
/// Returns once both have reported, after `during` has looked at the room with both in it.
fn call(d: &Daemon, room: &str, listener_extra: &[&str], during: impl FnOnce(&[String])) -> Heard {
    let dir = tempfile::tempdir().unwrap();
    let listener_audio = dir.path().join("listener.s16le");
    let stop = dir.path().join("stop");
    let mut args = tone_leg_args(LISTENER_HZ, 0.5, 60.0, &listener_audio);
    args.extend(["--stop-file", stop.to_str().unwrap()].map(String::from));
    args.extend(listener_extra.iter().map(|s| s.to_string()));
    let mut listener = Some(d.join_peer(RTP_LEG, room, "listener", &args, Duration::from_secs(90)));
    d.wait_for_participants(room, 1, &mut [&mut listener], JOIN_WAIT);
    let talker_args = [
        "--tone",
        &TALKER_HZ.to_string(),
        "--amplitude",
        "0.5",
        "--duration",
        &TALKER_SECONDS.to_string(),
        "--timeline-after-rx",
        "25",
        "--restart-at",
        &RESTART_AT.to_string(),
    ]
    .map(String::from);
    let mut talker = Some(d.join_peer(RTP_LEG, room, "talker", &talker_args, Duration::from_secs(60)));
    let ids = d.wait_for_participants(room, 2, &mut [&mut listener, &mut talker], JOIN_WAIT);
    during(&ids);
    let talker = talker.take().unwrap().wait();
    std::fs::write(&stop, b"").unwrap();
    let listener = listener.take().unwrap().wait();
    listener.expect_ok();
    talker.expect_ok();
    Heard { listener, talker, listener_audio, _dir: dir }
}

/// When (unix seconds) the talker restarted its stream.
fn restarted_at(talker: &PeerOutput) -> f64 {
    let j = &talker.json;
    let restarts = j["restarts"].as_array().cloned().unwrap_or_default();
    assert_eq!(restarts.len(), 1, "the talker restarted once: {}", talker.describe());
    j["t0_unix"].as_f64().unwrap() + restarts[0]["at"].as_f64().unwrap()
}

/// The listener heard the talker's tone from `from` to `to` (unix seconds).
#[track_caller]
fn assert_tone(what: &str, listener: &PeerOutput, audio: &Path, from: f64, to: f64) {
    let (heard, rate) = leg_heard_all(listener, audio, (from, to));
    let hz = dominant_frequency(&heard, rate);
    let r = &listener.json["received"];
    assert!((hz - TALKER_HZ).abs() <= 10.0, "{what}: the listener heard {hz:.1} Hz, not {TALKER_HZ}; it received {r}");
    let db = tone_level_db(&heard, rate, TALKER_HZ);
    assert!(db > -25.0, "{what}: the talker's tone at only {db:.1} dBFS");
}

/// What the listener received is one stream from the restart's point of view: one SSRC, steps
/// of +1, timestamps with the wall clock, and no hole in arrivals around the restart.
#[track_caller]
fn assert_one_stream_through(listener: &PeerOutput, restart: f64) {
    assert_one_stream("listener", listener);
    let r = &listener.json["received"];
    assert_eq!(r["ts_not_increasing"], 0, "timestamps went backwards: {r}");
    // Between any two packets the timestamp moved as far as the wall clock, within what a busy
    // test machine delays a packet; a restart passed on would be off by hours.
    let excess = r["max_ts_vs_wall"]["excess_ms"].as_f64().unwrap_or(f64::MAX);
    assert!(excess.abs() < 250.0, "timestamp and wall clock apart by {excess} ms: {}", r["max_ts_vs_wall"]);
    let t0 = listener.json["t0_unix"].as_f64().unwrap();
    let arrivals: Vec<f64> = listener.json["packet_log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e[1] == listener.json["audio_pt"])
        .map(|e| t0 + e[0].as_f64().unwrap())
        .filter(|t| (restart - 1.0..restart + 1.0).contains(t))
        .collect();
    assert!(arrivals.len() >= 80, "{} packets in the 2 s around the restart", arrivals.len());
    let hole = arrivals.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(hole < 0.2, "nothing arrived for {:.0} ms around the restart", hole * 1000.0);
}

#[test]
fn a_forwarded_leg_that_restarts_its_stream_is_heard_as_one_stream() {
    require_rtp_leg();
    let d = Daemon::start();
    d.create_room("restart-relay");
    let heard = call(&d, "restart-relay", &[], |ids| {
        let views: Vec<Value> = ids.iter().map(|id| d.participant("restart-relay", id)).collect();
        for v in &views {
            assert_eq!(v["subscriptions"][0]["route"], "forward", "two PCMU legs: the plain relay: {v}");
        }
    });
    let restart = restarted_at(&heard.talker);
    assert_tone("before the restart", &heard.listener, &heard.listener_audio, restart - 2.2, restart - 0.2);
    assert_tone("after the restart", &heard.listener, &heard.listener_audio, restart + 0.3, restart + 2.3);
    assert_one_stream_through(&heard.listener, restart);
    // Forwarded, the bridge's timestamp continues the old stream's by about one packet.
    let t0 = heard.listener.json["t0_unix"].as_f64().unwrap();
    let log = heard.listener.json["packet_log"].as_array().unwrap().clone();
    let steps: Vec<i64> = log
        .windows(2)
        .filter(|w| (restart - 0.5..restart + 0.5).contains(&(t0 + w[1][0].as_f64().unwrap())))
        .map(|w| i64::from((w[1][3].as_u64().unwrap() as u32).wrapping_sub(w[0][3].as_u64().unwrap() as u32) as i32))
        .collect();
    assert!(steps.iter().all(|s| (160..=800).contains(s)), "timestamp steps around the restart: {steps:?}");
}

#[test]
fn a_mixed_leg_that_restarts_its_stream_is_heard_throughout() {
    require_rtp_leg();
    let d = Daemon::start();
    d.create_room("restart-mix");
    let heard = call(&d, "restart-mix", &["--audio", "mix"], |ids| {
        let listener = d.participant_named("restart-mix", ids, "listener");
        let route = poll_until(Duration::from_secs(5), || {
            let v = d.participant("restart-mix", &listener);
            (v["subscriptions"][0]["route"] == "mix").then_some(v)
        });
        assert!(route.is_some(), "the listener asked for the mix: {}", d.participant("restart-mix", &listener));
    });
    let restart = restarted_at(&heard.talker);
    assert_tone("before the restart", &heard.listener, &heard.listener_audio, restart - 2.2, restart - 0.2);
    assert_tone("after the restart", &heard.listener, &heard.listener_audio, restart + 0.3, restart + 2.3);
    assert_one_stream_through(&heard.listener, restart);
}
