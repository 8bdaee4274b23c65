//! A browser and a phone with no codec in common on the browser's sending side: headless
//! Chromium (peers/chromium_peer.mjs, default codecs, so it sends Opus; no video) and a PCMU
//! phone leg (peers/rtp_leg.py, 440 Hz). The leg's only codec is PCMU, so its slot is served by
//! a transcode Opus -> PCMU; Chromium also offers PCMU, so its slot can take the leg's PCMU as
//! it is (forward).
//!
//! Chromium's fake microphone is near-silent with a short beep now and then, so what the leg
//! hears is checked against its own silence floor: 20 ms frames with the beep stand well above
//! the frames without it, several times over the run.

use std::time::Duration;

use switchboard_integration_tests::*;

const ROOM: &str = "browserphone";

/// dB of the RMS of each 20 ms frame (full scale = 0 dB; digital silence -120).
fn frame_levels(x: &[i16], rate: u32) -> Vec<f32> {
    x.chunks_exact(rate as usize / 50).map(|f| 20.0 * rms(f).max(1e-6).log10()).collect()
}

#[test]
fn chromium_opus_and_pcmu_leg_hear_each_other_through_transcode_and_forward() {
    require_rtp_leg();
    require_chromium();
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("leg.s16le");
    let sse = d.create_and_follow(ROOM);
    // The browser first: Chromium's start-up time varies most (seconds under load), and it
    // stays 14 s after joining; the leg then joins and talks for 10 s of that.
    let browser_args = ["--no-video", "--duration", "14"];
    let mut browser = Some(d.join_peer("chromium_peer.mjs", ROOM, "browser", &browser_args, Duration::from_secs(58)));
    let browser_id = d.wait_for_participants(ROOM, 1, &mut [&mut browser], Duration::from_secs(40)).remove(0);
    let mut browser = browser.unwrap();
    let leg_args = ["--tone", "440", "--duration", "10", "--save-audio", audio.to_str().unwrap()];
    let mut leg = d.join_peer(RTP_LEG, ROOM, "phone", &leg_args, Duration::from_secs(40));
    // While both are in the call: the views, as the API reports them.
    let seen = poll_until(Duration::from_secs(15), || {
        let (_, room) = d.get_json(&format!("/v1/rooms/{ROOM}"));
        if let Some(pid) = participant_ids(&room).into_iter().find(|i| *i != browser_id) {
            let pv = d.participant(ROOM, &pid);
            let bv = d.participant(ROOM, &browser_id);
            if !pv["subscriptions"][0]["route"].is_null() && !bv["subscriptions"][0]["route"].is_null() {
                return Some(Some((pid, pv, bv)));
            }
        }
        (leg.finished() || browser.finished()).then_some(None)
    });
    // Metrics while the transcode runs (the daemon folds its counters in every 0.5 s).
    let transcoding = |m: &str| {
        metric_value(m, "switchboard_transcodes_total", &[("from", "opus"), ("to", "pcmu")]).is_some_and(|v| v >= 1.0)
            && metric_value(m, "switchboard_subscriptions", &[("route", "transcode")]).is_some_and(|v| v >= 1.0)
    };
    let metrics = poll_until(Duration::from_secs(5), || {
        let (s, m) = d.get_text("/metrics");
        (s == 200 && (transcoding(&m) || leg.finished())).then_some(m)
    })
    .unwrap_or_else(|| d.get_text("/metrics").1);
    let leg = leg.wait();
    let browser = browser.wait();
    let (phone_id, phone_view, browser_view) = match seen {
        Some(Some(v)) => v,
        _ => panic!(
            "the phone and the browser never both had a route:\nphone: {}\nbrowser: {}",
            leg.describe(),
            browser.describe()
        ),
    };
    let bj = browser.expect_ok().clone();
    let lj = leg.expect_ok();
    assert_eq!(bj["participant_id"], browser_id.as_str());
    assert_eq!(lj["participant_id"], phone_id.as_str());

    // The browser published Opus; the phone's PCMU-only slot gets it transcoded.
    let btracks = browser_view["tracks"].as_array().cloned().unwrap_or_default();
    assert_eq!(btracks.len(), 1, "one audio track (no video): {browser_view}");
    assert_eq!(btracks[0]["codec"], "opus", "Chromium sends Opus by default: {browser_view}");
    let psub = &phone_view["subscriptions"][0];
    assert_eq!(psub["route"], "transcode", "the phone's slot only has PCMU; the browser sends Opus: {phone_view}");
    assert_eq!(psub["codec"], "pcmu", "{phone_view}");
    assert_eq!(psub["publisher_id"], browser_id.as_str(), "{phone_view}");
    // Chromium offered PCMU too: its slot takes the phone's PCMU unchanged.
    let bsubs = browser_view["subscriptions"].as_array().cloned().unwrap_or_default();
    assert_eq!(bsubs.len(), 1, "{browser_view}");
    assert_eq!(
        bsubs[0]["route"], "forward",
        "Chromium negotiated PCMU as well: {browser_view}\nanswer:\n{}",
        bj["answer_sdp"]
    );
    assert_eq!(bsubs[0]["codec"], "pcmu", "{browser_view}");
    assert_eq!(bsubs[0]["publisher_id"], phone_id.as_str(), "{browser_view}");
    // The same routes as events.
    for (id, route, codec) in [(&phone_id, "transcode", "pcmu"), (&browser_id, "forward", "pcmu")] {
        sse.wait_for_matching(
            "route_changed",
            |v| v["participant_id"] == id.as_str() && v["route"] == route && v["codec"] == codec,
            Duration::from_secs(2),
        );
    }
    assert!(
        transcoding(&metrics),
        "while the call ran, /metrics never showed switchboard_transcodes_total{{from=\"opus\",to=\"pcmu\"}} >= 1 \
         and switchboard_subscriptions{{route=\"transcode\"}} >= 1:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("transcode") || l.contains("subscriptions"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Chromium received and decoded the phone's PCMU.
    assert_eq!(bj["connection_state"], "connected", "{}", browser.describe());
    let inbound = &bj["inbound"]["audio"];
    let packets = inbound["packetsReceived"].as_u64().unwrap_or(0);
    // The leg talked for up to 10 s of the browser's 14: at least several seconds of 20 ms packets.
    assert!(packets >= 200, "Chromium received only {packets} audio packets from the phone: {inbound}");
    let energy = inbound["totalAudioEnergy"].as_f64().unwrap_or(0.0);
    assert!(energy > 0.0, "Chromium decoded silence (totalAudioEnergy {energy}): {inbound}");
    assert_eq!(inbound["codecs"], json!(["audio/PCMU"]), "{inbound}");

    // The phone received one stream from the bridge, transcoded from the browser's Opus.
    assert_one_stream("the phone", &leg);
    let r = &lj["received"];
    let pkts = r["by_pt"]["0"].as_u64().unwrap_or(0);
    assert!(pkts >= 250, "the phone got only {pkts} PCMU packets in its ~10 s with the browser: {r}");
    let samples = read_s16le(&audio);
    let rate = 8000;
    assert!(samples.len() >= rate * 5, "the phone decoded only {} samples", samples.len());
    let levels = frame_levels(&samples, rate as u32);
    let mut sorted = levels.clone();
    sorted.sort_by(f32::total_cmp);
    let floor = sorted[sorted.len() / 2];
    let peak = sorted[sorted.len() - 1];
    // Beeps: runs of consecutive 20 ms frames at least 20 dB above the median frame.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, l) in levels.iter().enumerate() {
        if *l < floor + 20.0 {
            continue;
        }
        match runs.last_mut() {
            Some(r) if r.1 == i => r.1 = i + 1,
            _ => runs.push((i, i + 1)),
        }
    }
    // Each beep is a frame or two of ~400 Hz with a decaying tail: its loudest frame tells.
    let f = rate / 50;
    let beep_hz: Vec<f32> = runs
        .iter()
        .map(|&(a, b)| {
            let top = (a..b).max_by(|i, j| levels[*i].total_cmp(&levels[*j])).unwrap();
            dominant_frequency(&samples[top * f..(top + 1) * f], rate as u32)
        })
        .collect();
    let at_400 = beep_hz.iter().filter(|hz| (**hz - 400.0).abs() <= 40.0).count();
    eprintln!(
        "phone: {} frames of 20 ms, median {floor:.1} dBFS, loudest {peak:.1} dBFS, beeps at {beep_hz:?} Hz",
        levels.len()
    );
    assert!(
        at_400 >= 3 && at_400 * 4 >= runs.len() * 3,
        "the phone did not hear the browser microphone's ~400 Hz beeps: {} frames of 20 ms, median {floor:.1} \
         dBFS, loudest {peak:.1} dBFS; runs of frames 20 dB above the median peak at {beep_hz:?} Hz",
        levels.len()
    );
}
