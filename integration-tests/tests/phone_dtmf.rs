//! RFC 4733 DTMF on phone legs (peers/rtp_leg.py), both ways.
//!
//! In: a leg sends telephone-events three ways, each a different real-world shape:
//! - replayed from sipp's captures (dtmf_2833_*.pcap: marker on the first packet, the three end
//!   packets repeating one sequence number), moved into the leg's own SSRC/seq/timestamps;
//! - hand-built with the marker bit never set (carriers leave it unset) and three end packets
//!   with their own sequence numbers;
//! - GStreamer's rtpdtmfsrc.
//!
//! The room's SSE stream must show each digit exactly once, in order, with the duration that
//! was on the wire; a second leg that negotiated telephone-event gets them relayed.
//!
//! Out: `POST .../dtmf` makes the bridge play digits to a leg, which decodes them.

use std::path::Path;
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

const PCAPS: &str = "/usr/share/sip-tester";

fn spawn_leg(d: &Daemon, room: &str, name: &str, extra: &[&str]) -> Option<PeerHandle> {
    Some(d.join_peer(RTP_LEG, room, name, extra, Duration::from_secs(45)))
}

/// The `dtmf` events of `from` seen so far: (digit, duration_ms).
fn dtmf_events(sse: &SseClient, from: &str) -> Vec<(String, u64)> {
    sse.events()
        .into_iter()
        .filter(|e| e.event == "dtmf" && event_participant_id(&e.data).as_deref() == Some(from))
        .map(|e| (e.data["digit"].as_str().unwrap_or("?").to_string(), e.data["duration_ms"].as_u64().unwrap_or(0)))
        .collect()
}

/// Waits until `from` has `n` dtmf events, then a further 1.5 s (longer than the bridge's
/// 1 s end-of-event timeout) so that a duplicate report would have arrived too.
fn settle_dtmf(sse: &SseClient, from: &str, n: usize) -> Vec<(String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(6);
    while dtmf_events(sse, from).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    dtmf_events(sse, from)
}

/// What the leg says it put on the wire: (digit, duration_ms) per event.
fn sent_events(out: &PeerOutput) -> Vec<(String, f64)> {
    out.json["sent"]["dtmf_events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| (e["digit"].as_str().unwrap_or("?").to_string(), e["duration_ms"].as_f64().unwrap_or(-1.0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Digit events the leg decoded from what the bridge sent it.
fn received_events(out: &PeerOutput) -> Vec<Value> {
    out.json["dtmf"]["events"].as_array().cloned().unwrap_or_default()
}

/// Each SSE digit matches what was sent, in order, once, with the duration that was on the wire.
#[track_caller]
fn assert_reported_as_sent(sse_events: &[(String, u64)], sent: &[(String, f64)], want: &str) {
    let digits: String = sse_events.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(digits, want, "dtmf events on SSE (each digit exactly once, in order): {sse_events:?}");
    let sent_digits: String = sent.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(sent_digits, want, "the leg did not send what the test asked for: {sent:?}");
    for ((d, ms), (_, sent_ms)) in sse_events.iter().zip(sent) {
        // The event's duration field counts 8 kHz ticks; a reported duration is exact to 1 ms.
        assert!((*ms as f64 - sent_ms).abs() <= 1.0, "digit {d}: reported {ms} ms, {sent_ms} ms on the wire");
    }
}

#[test]
fn dtmf_replayed_from_sipp_pcaps_is_reported_once_each_and_relayed() {
    require_rtp_leg();
    let pcaps: Vec<String> = ["1", "2", "3"].iter().map(|d| format!("{PCAPS}/dtmf_2833_{d}.pcap")).collect();
    assert!(pcaps.iter().all(|p| Path::new(p).exists()), "sipp's pcaps are missing: apt-get install sip-tester");
    let d = Daemon::start();
    let sse = d.create_and_follow("ivr");
    // B only listens for relayed digits (and stays until the test is done with it); A talks
    // (440 Hz) and presses 1, 2, 3 from t = 2 s.
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    let stop_arg = stop.to_str().unwrap();
    let mut b =
        spawn_leg(&d, "ivr", "ivr", &["--tone", "660", "--duration", "30", "--stop-file", stop_arg, "--dtmf-listen"]);
    d.wait_for_participants("ivr", 1, &mut [&mut b], JOIN_WAIT);
    let pcap_arg = pcaps.join(",");
    let mut a = spawn_leg(
        &d,
        "ivr",
        "caller",
        &["--tone", "440", "--duration", "5", "--dtmf-pcap", &pcap_arg, "--dtmf-at", "2"],
    );
    d.wait_for_participants("ivr", 2, &mut [&mut a, &mut b], JOIN_WAIT);
    let a = a.take().unwrap().wait();
    let aj = a.expect_ok();
    let a_id = aj["participant_id"].as_str().unwrap().to_string();
    let events = settle_dtmf(&sse, &a_id, 3);
    std::fs::write(&stop, b"").unwrap();
    let b = b.take().unwrap().wait();
    b.expect_ok();

    // Each capture is one 280 ms event: 2240 ticks in its final packets.
    let sent = sent_events(&a);
    assert_eq!(sent.iter().map(|(_, ms)| *ms).collect::<Vec<_>>(), [280.0, 280.0, 280.0], "{sent:?}");
    assert_reported_as_sent(&events, &sent, "123");
    let metric = metric_value(&d.get_text("/metrics").1, "switchboard_dtmf_events_total", &[]);
    assert_eq!(metric, Some(3.0), "switchboard_dtmf_events_total");

    // Relayed to B (it negotiated telephone-event): the same digits, each one event.
    let got = received_events(&b);
    let digits: String = got.iter().map(|e| e["digit"].as_str().unwrap_or("?")).collect();
    assert_eq!(digits, "123", "B decoded {got:?}");
    for e in &got {
        assert!(e["end_packets"].as_u64().unwrap_or(0) >= 1, "relayed event without an end packet: {e}");
        let ms = e["duration_ms"].as_f64().unwrap_or(0.0);
        assert!((ms - 280.0).abs() <= 20.0, "relayed digit {} lasts {ms} ms, sent 280: {e}", e["digit"]);
    }
}

#[test]
fn dtmf_without_marker_bit_and_from_rtpdtmfsrc_is_reported_once_each() {
    require_rtp_leg();
    let d = Daemon::start();
    let sse = d.create_and_follow("keys");
    // Two callers in two rooms would prove nothing more; the two senders share one room and
    // run one after the other, each with its own digits.
    let mut plain = spawn_leg(
        &d,
        "keys",
        "carrier",
        &["--tone", "440", "--duration", "5", "--dtmf-digits", "4*7#0D", "--dtmf-duration-ms", "120", "--dtmf-at", "1"],
    );
    let mut gst = spawn_leg(
        &d,
        "keys",
        "rtpdtmfsrc",
        &["--tone", "660", "--duration", "6", "--dtmf-digits", "95A", "--dtmf-source", "gst", "--dtmf-at", "1.5"],
    );
    d.wait_for_participants("keys", 2, &mut [&mut plain, &mut gst], JOIN_WAIT);
    let plain = plain.take().unwrap().wait();
    let gst = gst.take().unwrap().wait();
    let (pj, gj) = (plain.expect_ok(), gst.expect_ok());

    // The hand-built events: no marker anywhere, three end packets each.
    for e in pj["sent"]["dtmf_events"].as_array().unwrap() {
        assert_eq!(e["markers"], 0, "the carrier-style sender set a marker: {e}");
        assert_eq!(e["end_packets"], 3, "{e}");
    }
    let p_id = pj["participant_id"].as_str().unwrap();
    let g_id = gj["participant_id"].as_str().unwrap();
    let p_events = settle_dtmf(&sse, p_id, 6);
    assert_reported_as_sent(&p_events, &sent_events(&plain), "4*7#0D");
    let g_events = settle_dtmf(&sse, g_id, 3);
    assert_reported_as_sent(&g_events, &sent_events(&gst), "95A");
}

#[test]
fn dtmf_posted_to_a_leg_is_played_as_rfc4733_events() {
    require_rtp_leg();
    let d = Daemon::start();
    // The listener also gets the other leg's 440 Hz, so the bridge has to fit its events into a
    // running stream.
    // Both stay until the test has heard back everything (the stop file).
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    let stop_arg = stop.to_str().unwrap();
    let mut rx = spawn_leg(
        &d,
        "out",
        "phone",
        &["--tone", "660", "--duration", "30", "--stop-file", stop_arg, "--dtmf-listen", "--packet-log"],
    );
    let mut talker = spawn_leg(&d, "out", "talker", &["--tone", "440", "--duration", "30", "--stop-file", stop_arg]);
    let ids = d.wait_for_participants("out", 2, &mut [&mut rx, &mut talker], JOIN_WAIT);
    // Which id is the listener: the one whose display name is "phone".
    let phone = d.participant_named("out", &ids, "phone");
    std::thread::sleep(Duration::from_millis(1000));
    let path = format!("/v1/rooms/out/participants/{phone}/dtmf");
    let (s, v) = d.post_json(&path, &json!({"digits": "159#"}));
    assert_eq!(s, 202, "POST {path}: {v}");
    // Invalid digits are refused as a whole, with nothing sent.
    let bad = d.post_json(&path, &json!({"digits": "12x"}));
    assert_eq!(bad.0, 400, "digits 12x: {:?}", bad);
    assert!(bad.1["error"]["code"].is_string(), "{:?}", bad);
    std::thread::sleep(Duration::from_millis(1500));
    let (s, v) = d.post_json(&path, &json!({"digits": "*0", "duration_ms": 250}));
    assert_eq!(s, 202, "POST {path} with duration_ms: {v}");
    // Two digits of 250 ms and a gap take 0.6 s; then some more audio.
    std::thread::sleep(Duration::from_millis(2000));
    std::fs::write(&stop, b"").unwrap();
    let rx = rx.take().unwrap().wait();
    talker.take().unwrap().wait().expect_ok();
    let j = rx.expect_ok();

    let events = received_events(&rx);
    let digits: String = events.iter().map(|e| e["digit"].as_str().unwrap_or("?")).collect();
    assert_eq!(digits, "159#*0", "digits decoded by the leg: {events:?}");
    let te_pt = j["te_pt"].as_u64().unwrap();
    assert_eq!(te_pt, 101, "telephone-event PT from the leg's offer");
    let mut last_ts: Option<u64> = None;
    for (e, want_ms) in events.iter().zip([100.0, 100.0, 100.0, 100.0, 250.0, 250.0]) {
        let ms = e["duration_ms"].as_f64().unwrap_or(0.0);
        assert!((ms - want_ms).abs() <= 20.0, "digit {} lasted {ms} ms, asked for {want_ms}: {e}", e["digit"]);
        assert_eq!(e["end_packets"], 3, "RFC 4733: the final packet is sent three times: {e}");
        assert!(e["markers"].as_u64().unwrap_or(0) <= 1, "{e}");
        // One event per digit, each with its own (later) timestamp.
        let ts = e["ts"].as_u64().unwrap();
        if let Some(prev) = last_ts {
            let step = (ts.wrapping_sub(prev)) & 0xffff_ffff;
            assert!(step > 0 && step < 0x8000_0000, "event timestamps do not advance: {prev} then {ts}");
        }
        last_ts = Some(ts);
    }
    // The events went into the same stream as the relayed audio without breaking it.
    let r = &j["received"];
    assert_eq!(r["ssrcs"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(r["seq_steps_not_1"], 0, "DTMF broke the sequence numbering: {}", r["seq_step_examples"]);
    // Audio is held back while a digit plays (RFC 4733 2.5.1.5), and comes back after it.
    let last_digit = events.last().unwrap()["last_at"].as_f64().unwrap();
    let audio_after = j["packet_log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[1] == 0 && p[0].as_f64().unwrap() > last_digit + 0.1)
        .count();
    let left = (j["received"]["last_at"].as_f64().unwrap() - last_digit).max(0.0);
    assert!(
        audio_after as f64 >= (left - 0.3) * 50.0 * 0.8,
        "only {audio_after} audio packets in the {left:.1} s after the last digit: {r}"
    );
}

/// A browser user keys digits into an IVR on a phone leg: Chromium's `RTCDTMFSender` sends
/// telephone-event in its SRTP, the room reports each digit once and regenerates it as RFC 4733
/// on the phone leg. Nothing of the digits reaches the phone as audio.
#[test]
fn digits_pressed_in_chromium_are_reported_once_each_and_relayed_to_the_phone() {
    require_rtp_leg();
    require_chromium();
    let d = Daemon::start();
    let sse = d.create_and_follow("webivr");
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    let stop_arg = stop.to_str().unwrap();
    let mut ivr = spawn_leg(
        &d,
        "webivr",
        "ivr",
        &["--tone", "660", "--duration", "90", "--stop-file", stop_arg, "--dtmf-listen"],
    );
    d.wait_for_participants("webivr", 1, &mut [&mut ivr], JOIN_WAIT);
    let browser_args = ["--audio-codec", "pcmu", "--no-video", "--duration", "6", "--dtmf", "159#", "--dtmf-at", "2"];
    let browser = d.join_peer("chromium_peer.mjs", "webivr", "browser", &browser_args, Duration::from_secs(60)).wait();
    let bj = browser.expect_ok();
    let browser_id = bj["participant_id"].as_str().unwrap().to_string();
    let events = settle_dtmf(&sse, &browser_id, 4);
    std::fs::write(&stop, b"").unwrap();
    let ivr = ivr.take().unwrap().wait();
    let ij = ivr.expect_ok();

    assert_eq!(bj["dtmf"]["tones"], "159#", "Chromium did not play all the digits: {}", bj["dtmf"]);
    let digits: String = events.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(digits, "159#", "dtmf events of the browser on SSE (each once, in order): {events:?}");
    for (digit, ms) in &events {
        // 120 ms tones; Chromium counts the duration in whole packets.
        assert!((100..=200).contains(ms), "digit {digit}: {ms} ms, Chromium played 120 ms");
    }
    let metric = metric_value(&d.get_text("/metrics").1, "switchboard_dtmf_events_total", &[]);
    assert_eq!(metric, Some(4.0), "switchboard_dtmf_events_total");

    // The phone decoded the same digits from the bridge's own telephone-event packets.
    let got = received_events(&ivr);
    let relayed: String = got.iter().map(|e| e["digit"].as_str().unwrap_or("?")).collect();
    assert_eq!(relayed, "159#", "the phone decoded {got:?}");
    // And heard the browser as audio, on PCMU only: a digit forwarded as media would arrive
    // under the audio payload type with a 4-byte payload.
    let r = &ij["received"];
    assert!(r["by_pt"]["0"].as_u64().unwrap_or(0) >= 150, "the phone got little audio from the browser: {r}");
    assert_eq!(r["short_audio"].as_u64(), Some(0), "telephone-event leaked into the audio: {r}");
}
