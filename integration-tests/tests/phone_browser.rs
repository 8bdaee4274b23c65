//! A browser and a phone in one call: headless Chromium (peers/chromium_peer.mjs, PCMU only,
//! no video) and a plain RTP leg (peers/rtp_leg.py) sending 440 Hz PCMU. Same codec, two
//! parties: the bridge relays both ways without transcoding, across WebRTC (DTLS-SRTP, ICE)
//! on one side and plain RTP on the other.

use std::time::Duration;

use switchboard_integration_tests::*;

#[test]
fn chromium_and_pcmu_leg_hear_each_other_through_forward_routes() {
    require_rtp_leg();
    require_chromium();
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("leg.s16le");
    // The phone stays in the call until the browser is done (Chromium may take a while to start).
    let stop = dir.path().join("stop");
    d.create_room("pstn");
    let (stop_arg, audio_arg) = (stop.to_str().unwrap(), audio.to_str().unwrap());
    let leg_args = ["--tone", "440", "--duration", "60", "--stop-file", stop_arg, "--save-audio", audio_arg];
    let mut leg = Some(d.join_peer(RTP_LEG, "pstn", "phone", &leg_args, Duration::from_secs(90)));
    let phone_id = d.wait_for_participants("pstn", 1, &mut [&mut leg], JOIN_WAIT).remove(0);
    let browser_args = ["--audio-codec", "pcmu", "--no-video", "--duration", "6"];
    let mut browser = d.join_peer("chromium_peer.mjs", "pstn", "browser", &browser_args, Duration::from_secs(50));
    // While both are in the call, the phone's one slot forwards the browser's PCMU track.
    let phone_view = poll_until(Duration::from_secs(45), || {
        let v = d.participant("pstn", &phone_id);
        if !v["subscriptions"][0]["publisher_id"].is_null() || browser.finished() {
            return Some(v);
        }
        None
    });
    let browser = browser.wait();
    std::fs::write(&stop, b"").unwrap();
    let phone_view = phone_view.unwrap_or_else(|| panic!("the browser never published: {}", browser.describe()));
    let leg = leg.take().unwrap().wait();
    let bj = browser.expect_ok();
    let lj = leg.expect_ok();

    // Chromium received and decoded the phone's audio.
    assert_eq!(bj["connection_state"], "connected", "{}", browser.describe());
    let inbound = &bj["inbound"]["audio"];
    let packets = inbound["packetsReceived"].as_u64().unwrap_or(0);
    assert!(packets >= 150, "Chromium received only {packets} audio packets in ~6 s: {inbound}");
    let energy = inbound["totalAudioEnergy"].as_f64().unwrap_or(0.0);
    assert!(energy > 0.0, "Chromium decoded silence (totalAudioEnergy {energy}): {inbound}");
    assert!(inbound["totalSamplesReceived"].as_u64().unwrap_or(0) > 0, "{inbound}");
    let codecs = inbound["codecs"].as_array().cloned().unwrap_or_default();
    assert_eq!(codecs, [json!("audio/PCMU")], "Chromium negotiated PCMU only: {inbound}");

    // Its slot is served by forwarding the phone's PCMU track.
    let subs = bj["join"]["subscriptions"].as_array().cloned().unwrap_or_default();
    assert_eq!(subs.len(), 1, "one audio m-line, one slot: {}", bj["join"]);
    assert_eq!(subs[0]["publisher_id"], lj["participant_id"], "{}", bj["join"]);
    assert_eq!(subs[0]["route"], "forward", "PCMU to PCMU, two parties: forward: {}", bj["join"]);
    assert_eq!(subs[0]["codec"], "pcmu", "{}", bj["join"]);

    // And the phone heard the browser (Chromium's fake microphone) on a forward route too.
    let psub = &phone_view["subscriptions"][0];
    assert_eq!(psub["publisher_id"], bj["participant_id"], "phone view: {phone_view}");
    assert_eq!(psub["route"], "forward", "phone view: {phone_view}");
    assert_eq!(psub["codec"], "pcmu", "phone view: {phone_view}");
    let r = &lj["received"];
    let from_browser = r["by_pt"]["0"].as_u64().unwrap_or(0);
    assert!(from_browser >= 150, "the phone got only {from_browser} PCMU packets from the browser: {r}");
    assert_eq!(r["ssrcs"].as_array().map(Vec::len), Some(1), "{r}");
    let samples = read_s16le(&audio);
    assert!(samples.len() >= 8000 * 3, "the phone decoded only {} samples", samples.len());
    assert!(rms(&samples) > 0.001, "the phone decoded silence from the browser (rms {})", rms(&samples));
}
