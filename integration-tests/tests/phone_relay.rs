//! Phone legs (peers/rtp_leg.py: plain RTP on one symmetric UDP socket, GStreamer coders)
//! relaying audio through the bridge: the 1:1 call a SIP gateway sets up, early and late offer,
//! and hold/resume by re-offer.
//!
//! Each leg sends a sine of its own frequency and records what it receives. The received audio
//! is analysed here with the harness's own `dominant_frequency` and `band_energy_db`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use switchboard_integration_tests::*;

/// A call between two legs: `first` joins, `second` joins once `first` is in; `first` stays until
/// the call ends, after `second` is done. Each saves what it hears.
struct Call {
    first: Option<PeerHandle>,
    second: Option<PeerHandle>,
    first_audio: PathBuf,
    second_audio: PathBuf,
    stop: PathBuf,
    /// The two participants' ids, sorted.
    ids: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Call {
    /// Starts the call in `room`: each leg is `(display name, arguments)`; `first` gets
    /// `--stop-file`, both `--save-audio`. Returns once both are in the room.
    fn start(d: &Daemon, room: &str, first: (&str, &[&str]), second: (&str, &[&str])) -> Call {
        let dir = tempfile::tempdir().unwrap();
        let (first_audio, second_audio) = (dir.path().join("first.s16le"), dir.path().join("second.s16le"));
        let stop = dir.path().join("stop");
        let spawn = |(name, args): (&str, &[&str]), extra: &[&str]| {
            Some(d.join_peer(RTP_LEG, room, name, &[args, extra].concat(), Duration::from_secs(45)))
        };
        let mut a =
            spawn(first, &["--stop-file", stop.to_str().unwrap(), "--save-audio", first_audio.to_str().unwrap()]);
        d.wait_for_participants(room, 1, &mut [&mut a], JOIN_WAIT);
        let mut b = spawn(second, &["--save-audio", second_audio.to_str().unwrap()]);
        let ids = d.wait_for_participants(room, 2, &mut [&mut a, &mut b], JOIN_WAIT);
        Call { first: a, second: b, first_audio, second_audio, stop, ids, _dir: dir }
    }

    /// Waits for `second` to finish, then ends `first`; returns their reports in that order.
    fn end(&mut self) -> (PeerOutput, PeerOutput) {
        let second = self.second.take().unwrap().wait();
        std::fs::write(&self.stop, b"").unwrap();
        (self.first.take().unwrap().wait(), second)
    }
}

/// `out` heard `want_hz` (± 10 Hz, over its last 2 s of received audio, at a real level) and
/// not `not_hz`: that band is at least 30 dB below the wanted one.
#[track_caller]
fn assert_hears(name: &str, out: &PeerOutput, audio: &Path, want_hz: f32, not_hz: f32) {
    let j = out.expect_ok();
    let (tail, rate) = received_tail(out, audio, 2.0);
    assert!(
        tail.len() as f32 >= rate as f32 * 1.9,
        "{name}: only {} samples of received audio: {}",
        tail.len(),
        out.describe()
    );
    let hz = dominant_frequency(&tail, rate);
    assert!((hz - want_hz).abs() <= 10.0, "{name}: dominant frequency {hz:.1} Hz, expected {want_hz} ± 10: {j}");
    let want_db = tone_level_db(&tail, rate, want_hz);
    let not_db = tone_level_db(&tail, rate, not_hz);
    // The legs send at half scale (-9 dBFS); a forwarded G.711 tone arrives at about that level.
    assert!(want_db > -20.0, "{name}: {want_hz} Hz band at only {want_db:.1} dBFS");
    assert!(
        not_db <= want_db - 30.0,
        "{name}: {not_hz} Hz band at {not_db:.1} dBFS, not 30 dB below the {want_hz} Hz band ({want_db:.1} dBFS): \
         it hears itself or a mix"
    );
}

/// The SSRC the bridge declared (`a=ssrc`) in an SDP it wrote.
fn declared_ssrc(sdp: &str) -> Option<u64> {
    Sdp::parse(sdp).media.first().and_then(|m| m.ssrcs.first()).map(|s| *s as u64)
}

/// The received stream is one continuous stream: one SSRC (the one the bridge declared), no
/// sequence number step other than +1.
#[track_caller]
fn assert_one_clean_stream(name: &str, out: &PeerOutput, bridge_sdp: &str) {
    let r = &out.json["received"];
    let ssrcs = r["ssrcs"].as_array().cloned().unwrap_or_default();
    assert_eq!(ssrcs.len(), 1, "{name}: the bridge sent {} SSRCs: {r}", ssrcs.len());
    assert_eq!(ssrcs[0].as_u64(), declared_ssrc(bridge_sdp), "{name}: SSRC differs from the SDP's a=ssrc: {r}");
    assert_eq!(r["seq_steps_not_1"], 0, "{name}: sequence numbers jumped: {}", r["seq_step_examples"]);
    assert_eq!(r["ts_not_increasing"], 0, "{name}: RTP timestamps went backwards: {r}");
}

#[test]
fn two_pcmu_legs_hear_each_other_through_a_forward_route() {
    require_rtp_leg();
    let d = Daemon::start();
    d.create_room("call");
    // Alice calls first and stays until Bob, who joins once she is in, has hung up.
    let mut call = Call::start(
        &d,
        "call",
        ("alice", &["--tone", "440", "--duration", "30"]),
        ("bob", &["--tone", "660", "--duration", "5", "--timeline-after-rx", "25"]),
    );
    let ids = call.ids.clone();

    // Both in the room: each one's single slot forwards the other's PCMU track.
    let views = poll_until(Duration::from_secs(5), || {
        let v: Vec<Value> = ids.iter().map(|id| d.participant("call", id)).collect();
        v.iter().all(|p| !p["subscriptions"][0]["publisher_id"].is_null()).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!("slots never got a publisher: {:?}", ids.iter().map(|i| d.participant("call", i)).collect::<Vec<_>>())
    });
    for (p, other) in views.iter().zip(ids.iter().rev()) {
        assert_eq!(p["kind"], "rtp", "{p}");
        let tracks = p["tracks"].as_array().cloned().unwrap_or_default();
        assert_eq!(tracks.len(), 1, "one published audio track: {p}");
        assert_eq!(tracks[0]["codec"], "pcmu", "{p}");
        let subs = p["subscriptions"].as_array().cloned().unwrap_or_default();
        assert_eq!(subs.len(), 1, "a phone leg has one slot: {p}");
        assert_eq!(subs[0]["publisher_id"], other.as_str(), "slot source: {p}");
        assert_eq!(subs[0]["route"], "forward", "two PCMU legs: plain relay, no transcoding: {p}");
        assert_eq!(subs[0]["codec"], "pcmu", "{p}");
    }

    let (a, b) = call.end();
    let (aj, bj) = (a.expect_ok(), b.expect_ok());
    assert_hears("alice", &a, &call.first_audio, 660.0, 440.0);
    assert_hears("bob", &b, &call.second_audio, 440.0, 660.0);
    for (name, out, j) in [("alice", &a, aj), ("bob", &b, bj)] {
        // The answer keeps the offerer's PTs and names exactly PCMU + telephone-event.
        let answer = j["answer_sdp"].as_str().unwrap();
        let m = &Sdp::parse(answer).media[0];
        assert_eq!(
            (m.proto.as_str(), m.codecs.clone()),
            ("RTP/AVP", vec!["pcmu".to_string(), "telephone-event".into()])
        );
        assert!(answer.contains("m=audio ") && answer.contains(" RTP/AVP 0 101\r\n"), "{name}: answer PTs: {answer}");
        assert!(Sdp::parse(answer).has_line("a=rtcp-mux"), "{name}: rtcp-mux offered but not answered: {answer}");
        assert_eq!(m.direction, "sendrecv");
        assert_one_clean_stream(name, out, answer);
        let received = j["received"]["packets"].as_u64().unwrap_or(0);
        assert!(received >= 200, "{name}: only {received} packets in ~5 s of 20 ms audio: {}", out.describe());
        // Symmetric RTP: the bridge sends from the port it announced.
        let src = format!("127.0.0.1:{}", m.port);
        assert_eq!(
            j["received"]["sources"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
            Some(vec![src])
        );
    }
}

#[test]
fn late_offer_leg_answers_the_bridge_and_hears_the_other_leg() {
    require_rtp_leg();
    let d = Daemon::start();
    // The late-offer leg POSTs {"kind": "rtp"} without sdp, and PATCHes an answer built from
    // the bridge's offer (PCMU, the bridge's PTs, a=rtcp-mux since the bridge offered it).
    let mut call = Call::start(
        &d,
        "late",
        ("early-offer", &["--tone", "440", "--duration", "30"]),
        ("late-offer", &["--late-offer", "--tone", "660", "--duration", "5", "--timeline-after-rx", "25"]),
    );
    let (a, b) = call.end();
    let bj = b.expect_ok();

    let offer = bj["bridge_offer_sdp"].as_str().expect("the late-offer join returned the bridge's offer");
    let o = Sdp::parse(offer);
    assert_eq!(o.media.len(), 1, "one audio m-line: {offer}");
    let m = &o.media[0];
    assert_eq!((m.kind.as_str(), m.proto.as_str(), m.direction.as_str()), ("audio", "RTP/AVP", "sendrecv"), "{offer}");
    assert!(m.port >= d.ports.rtp_min && m.port <= d.ports.rtp_max, "offer port {} outside the RTP range", m.port);
    for codec in ["pcmu", "telephone-event"] {
        assert!(m.codecs.contains(&codec.to_string()), "the bridge's offer lacks {codec}: {offer}");
    }
    assert!(o.has_line("a=rtcp-mux"), "{offer}");
    assert!(declared_ssrc(offer).is_some(), "the offer declares no a=ssrc: {offer}");
    assert_eq!(bj["join"]["kind"], "rtp");

    assert_hears("early-offer leg", &a, &call.first_audio, 660.0, 440.0);
    assert_hears("late-offer leg", &b, &call.second_audio, 440.0, 660.0);
    assert_one_clean_stream("late-offer leg", &b, offer);
    assert_eq!(call.ids.len(), 2);
}

#[test]
fn late_offer_srtp_leg_picks_one_offered_suite() {
    require_rtp_leg();
    let d = Daemon::start();
    let suite = "AEAD_AES_128_GCM";
    let mut call = Call::start(
        &d,
        "sl",
        ("early", &["--srtp", suite, "--tone", "440", "--duration", "30"]),
        ("late", &["--late-offer", "--srtp", suite, "--tone", "660", "--duration", "5", "--timeline-after-rx", "25"]),
    );
    let (a, b) = call.end();
    let bj = b.expect_ok();
    let offer = bj["bridge_offer_sdp"].as_str().unwrap();
    let o = Sdp::parse(offer);
    assert_eq!(o.media[0].proto, "RTP/SAVP", "{offer}");
    let cryptos = o.lines_starting("a=crypto:");
    let suites: Vec<&str> = cryptos.iter().filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(suites, ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"], "{offer}");
    let keys: Vec<&str> = cryptos.iter().filter_map(|l| l.split("inline:").nth(1)).collect();
    assert!(keys.iter().all(|k| !k.is_empty()), "{cryptos:?}");
    assert!(
        keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2],
        "one fresh key per offered suite: {cryptos:?}"
    );
    assert_eq!(bj["join"]["kind"], "srtp");
    assert_eq!(bj["received"]["srtp_auth_failed"], 0, "{}", b.describe());
    assert_hears("early srtp leg", &a, &call.first_audio, 660.0, 440.0);
    assert_hears("late srtp leg", &b, &call.second_audio, 440.0, 660.0);
    assert_one_clean_stream("late srtp leg", &b, offer);
}

/// Packets of a leg's `packet_log` whose arrival (wall clock) lies in `[from, to]`.
fn packets_between(out: &PeerOutput, from: f64, to: f64) -> usize {
    let t0 = out.json["t0_unix"].as_f64().unwrap();
    out.json["packet_log"]
        .as_array()
        .map(|log| log.iter().filter(|p| (from..=to).contains(&(t0 + p[0].as_f64().unwrap_or(-1e9)))).count())
        .unwrap_or(0)
}

/// A holds (re-offer `hold` on the same port) 3 s after it starts and resumes (`sendrecv`)
/// 3.5 s later, with B in the call all along; both legs log every packet they receive.
fn hold_and_resume(hold: &str, srtp: Option<&str>) {
    require_rtp_leg();
    let d = Daemon::start();
    d.create_room("hold");
    let srtp_args = srtp.map_or(vec![], |suite| vec!["--srtp", suite]);
    // B is in the call first and stays until A is done.
    let b_args = [&["--tone", "660", "--duration", "40", "--packet-log"][..], &srtp_args].concat();
    let mut a_args = vec!["--tone", "440", "--duration", "10", "--hold-after", "3", "--resume-after", "6.5"];
    // A's clock starts once B's media reaches it (0.5 s of it), however slowly either leg started.
    a_args.extend(["--timeline-after-rx", "25"]);
    a_args.extend(["--hold-direction", hold, "--packet-log"]);
    a_args.extend(&srtp_args);
    let mut call = Call::start(&d, "hold", ("held", &b_args), ("holder", &a_args));
    let (b, a) = call.end();
    let (aj, bj) = (a.expect_ok(), b.expect_ok());

    // The two re-offers were answered, mirroring the direction, on the same port and SSRC
    // (and, for srtp, with the same bridge key).
    let first_answer = aj["answer_sdp"].as_str().unwrap();
    let renegs = aj["renegotiations"].as_array().cloned().unwrap_or_default();
    assert_eq!(renegs.len(), 2, "{}", a.describe());
    let mirrored = if hold == "sendonly" { "recvonly" } else { "inactive" };
    for (r, (offered, want)) in renegs.iter().zip([(hold, mirrored), ("sendrecv", "sendrecv")]) {
        assert_eq!(r["status"], 200, "re-offer {offered}: {r}");
        let ans = r["answer_sdp"].as_str().unwrap_or("");
        let parsed = Sdp::parse(ans);
        let m = &parsed.media[0];
        assert_eq!(m.direction, want, "answer to a re-offer {offered}:\n{ans}");
        assert_eq!(m.port, Sdp::parse(first_answer).media[0].port, "the bridge's port changed:\n{ans}");
        assert_eq!(declared_ssrc(ans), declared_ssrc(first_answer), "the bridge's SSRC changed:\n{ans}");
        assert_eq!(
            parsed.lines_starting("a=crypto:"),
            Sdp::parse(first_answer).lines_starting("a=crypto:"),
            "the bridge's SRTP key changed on a re-offer:\n{ans}"
        );
    }
    if srtp.is_some() {
        for (name, j) in [("A", aj), ("B", bj)] {
            assert_eq!(j["received"]["srtp_auth_failed"], 0, "{name}: {}", j["received"]);
            assert_eq!(j["received"]["srtp_replayed"], 0, "{name}: {}", j["received"]);
        }
    }
    let t0a = aj["t0_unix"].as_f64().unwrap();
    let hold_at = t0a + renegs[0]["at"].as_f64().unwrap();
    let resume_at = t0a + renegs[1]["at"].as_f64().unwrap();

    // While on hold A gets nothing; B gets A's media only if A held with sendonly (a small
    // margin for packets in flight when the re-offer was answered).
    let window = (hold_at + 0.3, resume_at - 0.1);
    let secs = window.1 - window.0;
    let b_during = packets_between(&b, window.0, window.1);
    let a_during = packets_between(&a, window.0, window.1);
    assert!(a_during <= 2, "A got {a_during} packets from B during its own {hold} hold ({secs:.1} s)");
    if hold == "sendonly" {
        assert!(
            b_during as f64 >= secs * 50.0 * 0.8,
            "B got only {b_during} packets in {secs:.1} s of A's sendonly hold"
        );
    } else {
        assert!(b_during <= 2, "B got {b_during} packets from A during A's inactive hold ({secs:.1} s)");
    }
    // Before and after, media flows (50 packets/s).
    let b_before = packets_between(&b, hold_at - 2.0, hold_at - 0.2);
    let b_after = packets_between(&b, resume_at + 0.5, resume_at + 3.5);
    assert!(b_before >= 70, "B got only {b_before} packets in the 1.8 s before the hold");
    assert!(b_after >= 120, "B got only {b_after} packets in the 3 s after the resume: media did not come back");
    let a_after = packets_between(&a, resume_at + 0.5, resume_at + 3.5);
    assert!(a_after >= 120, "A got only {a_after} packets in the 3 s after the resume");

    // B's stream from the bridge is ONE stream across the hold: same SSRC, sequence numbers
    // stepping by exactly one, and timestamps that advanced with the wall clock across a gap.
    assert_one_clean_stream("B", &b, bj["answer_sdp"].as_str().unwrap());
    let gap = &bj["received"]["largest_gap"];
    let (wall_ms, ts_ms) = (gap["wall_ms"].as_f64().unwrap_or(0.0), gap["ts_ms"].as_f64().unwrap_or(0.0));
    if hold == "inactive" {
        assert!(wall_ms > 2500.0, "B's largest gap is {wall_ms} ms; the hold lasted ~3.5 s: {gap}");
    }
    assert!(
        (ts_ms - wall_ms).abs() < 500.0,
        "across B's largest gap the RTP timestamp advanced {ts_ms} ms for {wall_ms} ms: {gap}"
    );
    assert_hears("A after resume", &a, &call.second_audio, 660.0, 440.0);
    assert_hears("B after resume", &b, &call.first_audio, 440.0, 660.0);
}

#[test]
fn hold_and_resume_by_reoffer_keeps_one_continuous_stream() {
    hold_and_resume("inactive", None);
}

#[test]
fn srtp_sendonly_hold_keeps_the_key_and_one_stream() {
    hold_and_resume("sendonly", Some("AES_CM_128_HMAC_SHA1_80"));
}
