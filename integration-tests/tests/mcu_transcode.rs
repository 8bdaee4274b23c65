//! Audio between codecs that have nothing in common: a G.722 phone leg (440 Hz), a PCMA phone
//! leg (660 Hz) (peers/rtp_leg.py) and a WebRTC participant publishing 880 Hz Opus
//! (peers/webrtc_listener.py, which is webrtcbin_peer.py keeping every incoming stream).
//!
//! Two legs alone share no codec, so each slot is a transcode (G.722 -> PCMA, PCMA -> G.722).
//! With the WebRTC participant in the room every one-slot subscriber gets a mix in its own codec,
//! so every path runs through the MCU: G.722 and Opus into the PCMA mix, PCMA and Opus into the
//! G.722 mix, G.722 and PCMA into the Opus mix. A WebRTC subscriber with a slot per publisher
//! instead gets each leg transcoded to Opus on its own slot.
//!
//! What each one received is analysed here, in 0.5 s pieces over the seconds the phase lasted
//! (taken from the SSE join/leave events), with the harness's `band_energy_db`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchboard_integration_tests::*;

const LEG: &str = "rtp_leg.py";
const WEBRTC: &str = "webrtc_listener.py";
/// The legs' level: with the WebRTC peer's 0.5 (its fixed level) a mix stays below full scale.
const LEG_AMPLITUDE: f32 = 0.3;
const WEBRTC_AMPLITUDE: f32 = 0.5;

/// Converts the harness's `Instant`s (SSE arrival times) to unix seconds, as the legs report.
struct Clock {
    wall: f64,
    at: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock { wall: SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64(), at: Instant::now() }
    }
    fn unix(&self, t: Instant) -> f64 {
        self.wall + t.saturating_duration_since(self.at).as_secs_f64()
    }
}

fn spawn_leg(d: &Daemon, room: &str, name: &str, extra: &[&str], timeout_s: u64) -> PeerHandle {
    let mut args: Vec<&str> = vec!["--api", &d.base_url, "--room", room, "--display-name", name];
    args.extend_from_slice(extra);
    spawn_peer(LEG, &args, Duration::from_secs(timeout_s))
}

/// Waits until `room` lists `n` participants; fails at once, with its report, if a peer exits first.
fn wait_for_participants(d: &Daemon, room: &str, n: usize, peers: &mut [&mut Option<PeerHandle>]) -> Vec<String> {
    let got = poll_until(Duration::from_secs(30), || {
        let (s, v) = d.get_json(&format!("/v1/rooms/{room}"));
        if s == 200 && participant_ids(&v).len() == n {
            return Some(Ok(participant_ids(&v)));
        }
        peers.iter_mut().position(|p| p.as_mut().is_some_and(PeerHandle::finished)).map(Err)
    });
    match got {
        Some(Ok(ids)) => ids,
        Some(Err(i)) => {
            panic!("peer #{i} ended before {room} had {n} participants: {}", peers[i].take().unwrap().wait().describe())
        }
        None => panic!("{room} never had {n} participants: {:?}", d.get_json(&format!("/v1/rooms/{room}"))),
    }
}

fn view(d: &Daemon, room: &str, id: &str) -> Value {
    let (s, v) = d.get_json(&format!("/v1/rooms/{room}/participants/{id}"));
    assert_eq!(s, 200, "GET participant {id}: {v}");
    v
}

/// Polls until every `(id, route, codec)` holds for the participant's first audio slot.
fn wait_routes(d: &Daemon, room: &str, want: &[(&str, &str, &str)], what: &str) -> Vec<Value> {
    poll_until(Duration::from_secs(10), || {
        let views: Vec<Value> = want.iter().map(|(id, _, _)| view(d, room, id)).collect();
        views
            .iter()
            .zip(want)
            .all(|(v, (_, route, codec))| {
                v["subscriptions"][0]["route"] == *route && v["subscriptions"][0]["codec"] == *codec
            })
            .then_some(views)
    })
    .unwrap_or_else(|| {
        let now: Vec<Value> = want.iter().map(|(id, _, _)| view(d, room, id)["subscriptions"].clone()).collect();
        panic!("{what}: expected (participant, route, codec) {want:?} within 10 s; the views say {}", json!(now))
    })
}

/// How many packets a leg received between two unix times, and the longest wait between two.
fn arrivals(out: &PeerOutput, from: f64, to: f64) -> String {
    let t0 = out.json["t0_unix"].as_f64().unwrap_or(0.0);
    let times: Vec<f64> = out.json["packet_log"]
        .as_array()
        .map(|l| l.iter().filter_map(|p| p[0].as_f64()).map(|t| t0 + t).filter(|t| (from..=to).contains(t)).collect())
        .unwrap_or_default();
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    format!("{} packets in these {:.1} s (50/s expected), longest wait {:.0} ms", times.len(), to - from, gap * 1000.0)
}

fn level(x: &[i16], rate: u32, hz: f32) -> f32 {
    band_energy_db(x, rate, hz - 25.0, hz + 25.0)
}

fn sent_db(amplitude: f32) -> f32 {
    20.0 * amplitude.log10() - 3.01
}

/// In every 0.5 s piece of `x`: each `(hz, sent dBFS)` of `hear` arrives within `tol_db` of its
/// sent level, and each of `not` (the listener's own tone) is at least 30 dB below all of them.
#[track_caller]
fn assert_tones(who: &str, x: &[i16], rate: u32, seconds: f64, hear: &[(f32, f32)], not: &[f32], tol_db: f32) {
    assert!(
        x.len() as f64 >= seconds * rate as f64 * 0.95,
        "{who}: only {:.2} s of received audio for a {seconds:.1} s phase",
        x.len() as f64 / rate as f64
    );
    let pieces: Vec<&[i16]> = x.chunks_exact(rate as usize / 2).collect();
    assert!(!pieces.is_empty(), "{who}: no full 0.5 s of audio to analyse");
    for (k, piece) in pieces.iter().enumerate() {
        let all: Vec<(f32, f32)> =
            hear.iter().map(|(hz, _)| *hz).chain(not.iter().copied()).map(|hz| (hz, level(piece, rate, hz))).collect();
        for (hz, want) in hear {
            let got = level(piece, rate, *hz);
            assert!(
                (got - want).abs() <= tol_db,
                "{who}, 0.5 s piece #{k} of {}: {hz} Hz at {got:.1} dBFS, sent at {want:.1} (± {tol_db} dB); \
                 bands {all:?}",
                pieces.len()
            );
            for own in not {
                let o = level(piece, rate, *own);
                assert!(
                    o <= got - 30.0,
                    "{who}, 0.5 s piece #{k}: its own {own} Hz at {o:.1} dBFS, not 30 dB below the {hz} Hz it \
                     hears ({got:.1}): bands {all:?}"
                );
            }
        }
    }
    let last = pieces[pieces.len() - 1];
    let summary: Vec<String> = hear
        .iter()
        .map(|(hz, _)| *hz)
        .chain(not.iter().copied())
        .map(|hz| format!("{hz} Hz {:.1}", level(last, rate, hz)))
        .collect();
    eprintln!("{who}: {} pieces of 0.5 s ok; last: {summary:?}", pieces.len());
}

#[track_caller]
fn assert_one_stream(who: &str, out: &PeerOutput) {
    let r = &out.json["received"];
    assert_eq!(r["ssrcs"].as_array().map(Vec::len), Some(1), "{who}: {r}");
    assert_eq!(r["seq_steps_not_1"], 0, "{who}: sequence gaps: {}", r["seq_step_examples"]);
}

/// When the SSE stream saw `event` for participant `id` (unix seconds).
fn event_at(sse: &SseClient, clock: &Clock, event: &str, id: &str) -> f64 {
    sse.wait_for_matching(event, |v| event_participant_id(v).as_deref() == Some(id), Duration::from_secs(5));
    let e = sse
        .events()
        .into_iter()
        .find(|e| e.event == event && event_participant_id(&e.data).as_deref() == Some(id))
        .unwrap();
    clock.unix(e.at)
}

/// A WebRTC stream's decoded audio (48 kHz) from `from` (unix seconds) on, and how many seconds
/// that is. `end` is when the peer left: its last decoded sample is taken to be from then (it
/// stops collecting just before it leaves), and the last 0.5 s are left out.
fn webrtc_audio_between(stream: &Value, from: f64, end: f64) -> (Vec<i16>, f64) {
    let all = read_s16le(Path::new(stream["file"].as_str().unwrap_or_else(|| panic!("no file: {stream}"))));
    let rate = 48000.0;
    let stop = all.len().saturating_sub((0.5 * rate) as usize);
    let start = all.len().saturating_sub(((end - from) * rate) as usize);
    (all[start.min(stop)..stop].to_vec(), (end - 0.5 - from).max(0.0))
}

fn spawn_webrtc(d: &Daemon, room: &str, prefix: &Path, extra: &[&str]) -> PeerHandle {
    let mut args: Vec<&str> = vec![
        "--api",
        &d.base_url,
        "--room",
        room,
        "--display-name",
        "webrtc",
        "--publish-tone",
        "880",
        "--receive",
        "3",
        "--save-audio",
        prefix.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    spawn_peer(WEBRTC, &args, Duration::from_secs(55))
}

/// The participant with this display name among `ids`.
fn id_named(d: &Daemon, room: &str, ids: &[String], name: &str) -> String {
    ids.iter()
        .find(|id| view(d, room, id)["display_name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no participant named {name} among {ids:?}"))
}

#[test]
fn g722_pcma_and_opus_each_hear_the_other_two_through_the_mcu() {
    require_rtp_leg();
    require_gstreamer();
    let room = "codecs";
    let d = Daemon::start();
    let clock = Clock::new();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(d.post_json("/v1/rooms", &json!({"id": room})).0, 201);
    let sse = d.events(room);
    assert_eq!(sse.status, 200);

    // The WebRTC participant first (its start-up time varies most); it stays 17 s after joining.
    let prefix = dir.path().join("webrtc");
    let mut webrtc = Some(spawn_webrtc(&d, room, &prefix, &["--duration", "17"]));
    let w_id = wait_for_participants(&d, room, 1, &mut [&mut webrtc]).remove(0);

    // Then the two legs, for 24 s: with the WebRTC peer (three publishers, one slot each: mixes),
    // then alone (no common codec: transcodes).
    let amp = LEG_AMPLITUDE.to_string();
    let (g_file, a_file) = (dir.path().join("g722.s16le"), dir.path().join("pcma.s16le"));
    let leg_args = |codec: &'static str, hz: &'static str, file: &PathBuf| -> Vec<String> {
        [
            "--codec",
            codec,
            "--tone",
            hz,
            "--amplitude",
            &amp,
            "--duration",
            "24",
            "--packet-log",
            "--save-audio",
            file.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let g_args = leg_args("g722", "440", &g_file);
    let a_args = leg_args("pcma", "660", &a_file);
    let mut g722 = Some(spawn_leg(&d, room, "g722", &g_args.iter().map(String::as_str).collect::<Vec<_>>(), 45));
    let mut pcma = Some(spawn_leg(&d, room, "pcma", &a_args.iter().map(String::as_str).collect::<Vec<_>>(), 45));
    let ids = wait_for_participants(&d, room, 3, &mut [&mut webrtc, &mut g722, &mut pcma]);
    let (g_id, a_id) = (id_named(&d, room, &ids, "g722"), id_named(&d, room, &ids, "pcma"));

    // Phase 1: everyone's one slot carries a mix in its own codec.
    wait_routes(
        &d,
        room,
        &[(&g_id, "mix", "g722"), (&a_id, "mix", "pcma"), (&w_id, "mix", "opus")],
        "three publishers, one slot each",
    );
    let webrtc = webrtc.take().unwrap().wait();
    let wj = webrtc.expect_ok().clone();
    assert_eq!(wj["participant_id"], w_id.as_str());
    let legs_joined =
        event_at(&sse, &clock, "participant_joined", &g_id).max(event_at(&sse, &clock, "participant_joined", &a_id));
    let w_left = event_at(&sse, &clock, "participant_left", &w_id);

    // Phase 2: the two legs alone; no common codec, so each slot transcodes the other's track.
    let views = wait_routes(
        &d,
        room,
        &[(&g_id, "transcode", "g722"), (&a_id, "transcode", "pcma")],
        "two legs without a common codec",
    );
    assert_eq!(views[0]["subscriptions"][0]["publisher_id"], a_id.as_str(), "{}", views[0]);
    assert_eq!(views[1]["subscriptions"][0]["publisher_id"], g_id.as_str(), "{}", views[1]);
    let pairs = poll_until(Duration::from_secs(3), || {
        let m = d.get_text("/metrics").1;
        let n = |from, to| metric_value(&m, "switchboard_transcodes_total", &[("from", from), ("to", to)]);
        (n("g722", "pcma").unwrap_or(0.0) >= 1.0 && n("pcma", "g722").unwrap_or(0.0) >= 1.0).then_some(())
    });
    assert!(
        pairs.is_some(),
        "switchboard_transcodes_total has no g722->pcma and pcma->g722:\n{}",
        d.get_text("/metrics").1.lines().filter(|l| l.contains("transcodes")).collect::<Vec<_>>().join("\n")
    );
    let g722 = g722.take().unwrap().wait();
    let pcma = pcma.take().unwrap().wait();
    for (who, o) in [("g722 leg", &g722), ("pcma leg", &pcma)] {
        o.expect_ok();
        assert_one_stream(who, o);
    }
    let legs_stopped =
        [&g722, &pcma].iter().map(|o| o.json["t0_unix"].as_f64().unwrap() + 24.0).fold(f64::MAX, f64::min);

    let leg = sent_db(LEG_AMPLITUDE);
    let web = sent_db(WEBRTC_AMPLITUDE);
    // Phase 1, from 2 s after the second leg joined until just before the WebRTC peer left.
    let (p1_from, p1_to) = (legs_joined + 2.0, w_left - 0.5);
    assert!(p1_to - p1_from >= 3.0, "all three were together for only {:.1} s (load?)", w_left - legs_joined);
    let (x, r) = leg_audio_between(&g722, &g_file, p1_from, p1_to);
    let info = arrivals(&g722, p1_from, p1_to);
    assert_tones(
        &format!("g722 leg, mix of PCMA + Opus ({info})"),
        &x,
        r,
        p1_to - p1_from,
        &[(660.0, leg), (880.0, web)],
        &[440.0],
        3.0,
    );
    let (x, r) = leg_audio_between(&pcma, &a_file, p1_from, p1_to);
    let info = arrivals(&pcma, p1_from, p1_to);
    assert_tones(
        &format!("pcma leg, mix of G.722 + Opus ({info})"),
        &x,
        r,
        p1_to - p1_from,
        &[(440.0, leg), (880.0, web)],
        &[660.0],
        3.0,
    );
    // The WebRTC peer: one incoming stream, the Opus mix of both legs.
    assert_eq!(wj["connection_state"], "connected", "{}", webrtc.describe());
    let streams = wj["streams"].as_array().cloned().unwrap_or_default();
    assert_eq!(streams.len(), 1, "one slot, one incoming stream: {}", webrtc.describe());
    let (x, secs) = webrtc_audio_between(&streams[0], p1_from, w_left);
    assert_tones(
        "webrtc peer, Opus mix of G.722 + PCMA",
        &x,
        48000,
        secs,
        &[(440.0, leg), (660.0, leg)],
        &[880.0],
        3.0,
    );
    // Phase 2, from 1.5 s after the WebRTC peer left until just before the legs stopped.
    let (p2_from, p2_to) = (w_left + 1.5, legs_stopped - 0.5);
    assert!(p2_to - p2_from >= 2.0, "the legs were alone for only {:.1} s (load?)", legs_stopped - w_left);
    let (x, r) = leg_audio_between(&g722, &g_file, p2_from, p2_to);
    let info = arrivals(&g722, p2_from, p2_to);
    assert_tones(
        &format!("g722 leg, PCMA->G.722 transcode ({info})"),
        &x,
        r,
        p2_to - p2_from,
        &[(660.0, leg)],
        &[440.0, 880.0],
        3.0,
    );
    let (x, r) = leg_audio_between(&pcma, &a_file, p2_from, p2_to);
    let info = arrivals(&pcma, p2_from, p2_to);
    assert_tones(
        &format!("pcma leg, G.722->PCMA transcode ({info})"),
        &x,
        r,
        p2_to - p2_from,
        &[(440.0, leg)],
        &[660.0, 880.0],
        3.0,
    );
}

#[test]
fn webrtc_subscriber_with_a_slot_per_leg_gets_each_leg_transcoded_to_opus() {
    require_rtp_leg();
    require_gstreamer();
    let room = "slots";
    let d = Daemon::start();
    let clock = Clock::new();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(d.post_json("/v1/rooms", &json!({"id": room})).0, 201);
    let sse = d.events(room);
    assert_eq!(sse.status, 200);
    // Two audio m-lines (sendrecv + recvonly) for two other publishers: a slot for each.
    let prefix = dir.path().join("webrtc");
    let mut webrtc = Some(spawn_webrtc(&d, room, &prefix, &["--recv-slots", "2", "--duration", "12"]));
    let w_id = wait_for_participants(&d, room, 1, &mut [&mut webrtc]).remove(0);
    let amp = LEG_AMPLITUDE.to_string();
    let mut g722 = Some(spawn_leg(
        &d,
        room,
        "g722",
        &["--codec", "g722", "--tone", "440", "--amplitude", &amp, "--duration", "15"],
        40,
    ));
    let mut pcma = Some(spawn_leg(
        &d,
        room,
        "pcma",
        &["--codec", "pcma", "--tone", "660", "--amplitude", &amp, "--duration", "15"],
        40,
    ));
    let ids = wait_for_participants(&d, room, 3, &mut [&mut webrtc, &mut g722, &mut pcma]);
    let (g_id, a_id) = (id_named(&d, room, &ids, "g722"), id_named(&d, room, &ids, "pcma"));
    let wv = poll_until(Duration::from_secs(10), || {
        let v = view(&d, room, &w_id);
        let subs = v["subscriptions"].as_array().cloned().unwrap_or_default();
        (subs.len() == 2 && subs.iter().all(|s| !s["publisher_id"].is_null())).then_some(v)
    })
    .unwrap_or_else(|| panic!("the WebRTC peer's two slots never both got a source: {}", view(&d, room, &w_id)));
    // The legs, one slot each and two other publishers, get mixes.
    wait_routes(&d, room, &[(&g_id, "mix", "g722"), (&a_id, "mix", "pcma")], "the legs with the WebRTC peer");
    let transcodes = poll_until(Duration::from_secs(5), || {
        let m = d.get_text("/metrics").1;
        let ok = ["g722", "pcma"].iter().all(|from| {
            metric_value(&m, "switchboard_transcodes_total", &[("from", from), ("to", "opus")]).unwrap_or(0.0) >= 1.0
        });
        ok.then_some(m)
    });
    let webrtc = webrtc.take().unwrap().wait();
    let wj = webrtc.expect_ok();
    let legs_joined =
        event_at(&sse, &clock, "participant_joined", &g_id).max(event_at(&sse, &clock, "participant_joined", &a_id));
    let w_left = event_at(&sse, &clock, "participant_left", &w_id);
    g722.take().unwrap().wait().expect_ok();
    pcma.take().unwrap().wait().expect_ok();

    // The view: each slot carries one leg's track, transcoded to Opus.
    let subs = wv["subscriptions"].as_array().cloned().unwrap();
    let leg_of = |id: &Value| -> (&'static str, f32) {
        if *id == g_id.as_str() {
            ("g722", 440.0)
        } else if *id == a_id.as_str() {
            ("pcma", 660.0)
        } else {
            panic!("slot source {id} is neither leg: {wv}")
        }
    };
    let mut sources: Vec<&str> = subs.iter().map(|s| leg_of(&s["publisher_id"]).0).collect();
    sources.sort();
    assert_eq!(sources, ["g722", "pcma"], "one slot per leg: {wv}");
    for s in &subs {
        assert_eq!(s["route"], "transcode", "the WebRTC peer negotiated only Opus: {wv}");
        assert_eq!(s["codec"], "opus", "{wv}");
    }
    assert!(
        transcodes.is_some(),
        "switchboard_transcodes_total never showed g722->opus and pcma->opus:\n{}",
        d.get_text("/metrics").1.lines().filter(|l| l.contains("transcodes")).collect::<Vec<_>>().join("\n")
    );

    // What arrived on each slot while both legs talked: that leg's tone only, at its level.
    let streams = wj["streams"].as_array().cloned().unwrap_or_default();
    assert_eq!(streams.len(), 2, "two slots, two incoming streams: {}", webrtc.describe());
    let from = legs_joined + 1.5;
    assert!(
        w_left - 0.5 - from >= 3.0,
        "the legs and the WebRTC peer were together for only {:.1} s",
        w_left - legs_joined
    );
    for s in &subs {
        let (name, hz) = leg_of(&s["publisher_id"]);
        let other = if hz == 440.0 { 660.0 } else { 440.0 };
        let st = streams
            .iter()
            .find(|x| x["mid"] == s["slot"])
            .unwrap_or_else(|| panic!("no incoming stream with mid {} among {streams:?}", s["slot"]));
        let (x, secs) = webrtc_audio_between(st, from, w_left);
        assert_tones(
            &format!("webrtc slot {} ({name} -> Opus)", s["slot"]),
            &x,
            48000,
            secs,
            &[(hz, sent_db(LEG_AMPLITUDE))],
            &[other, 880.0],
            3.0,
        );
    }
}
