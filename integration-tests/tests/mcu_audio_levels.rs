//! RFC 6464 audio levels from phone legs: a leg that offers them is answered with the extension,
//! and the mixer uses what it reports. The levels are real GStreamer ones: peers/rtp_leg.py
//! measures each frame with `level` and writes the extension with `rtphdrextclientaudiolevel`.
//!
//! The room mixes one speaker (`mixer.speakers = 1`). A talker sends 440 Hz loudly, a quiet leg
//! sends 660 Hz 15.6 dB quieter, both with levels; a listener sends nothing. The quiet leg never wins
//! the one place, and since its levels say so, its packets leave the jitter buffer undecoded
//! (`switchboard_mixer_undecoded_packets_total`). The listener hears the talker at its sent level
//! and the quiet leg not at all.

use std::time::Duration;

use switchboard_integration_tests::*;

const ROOM: &str = "levels";
const DURATION_S: f64 = 12.0;
const LOUD: f32 = 0.3;
/// 15.6 dB below the talker: it never wins the one place, and had it been mixed it would stand
/// 30 dB above the floor of what the listener hears at its frequency.
const QUIET: f32 = 0.05;

#[test]
fn levels_phone_legs_report_spare_the_mixer_decoding_a_leg_nobody_hears() {
    require_rtp_leg();
    let d = Daemon::start_with(|c| {
        c.set("mixer", "speakers", 1);
    });
    let dir = tempfile::tempdir().unwrap();
    d.create_room(ROOM);
    let legs_spec = [("talker", 440.0f32, LOUD), ("quiet", 660.0, QUIET), ("listener", 0.0, LOUD)];
    let files: Vec<_> = legs_spec.iter().map(|(name, ..)| dir.path().join(format!("{name}.s16le"))).collect();
    let mut legs: Vec<Option<PeerHandle>> = legs_spec
        .iter()
        .zip(&files)
        .map(|((name, hz, amplitude), file)| {
            let mut args = tone_leg_args(*hz, *amplitude, DURATION_S, file);
            if *hz > 0.0 {
                args.extend(["--audio-level-ext", "3"].map(String::from));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Some(d.join_peer(RTP_LEG, ROOM, name, &args, Duration::from_secs(50)))
        })
        .collect();
    d.wait_for_participants(ROOM, 3, &mut legs, Duration::from_secs(20));

    // Let the legs send for a while, then read the counter while all three are still in.
    std::thread::sleep(Duration::from_secs(7));
    let (_, metrics) = d.get_text("/metrics");
    let undecoded = metric_value(&metrics, "switchboard_mixer_undecoded_packets_total", &[]).unwrap_or(0.0);

    let outs: Vec<PeerOutput> = legs.iter_mut().map(|l| l.take().unwrap().wait()).collect();
    for o in &outs {
        o.expect_ok();
    }
    for (i, o) in outs.iter().enumerate().take(2) {
        assert_eq!(
            o.json["audio_level_ext"],
            json!(3),
            "{}: the bridge's answer did not take the levels: {}",
            legs_spec[i].0,
            o.json["answer_sdp"]
        );
    }
    // The quiet leg sends 50 packets a second, and about 5 s of them had passed by the scrape
    // (the first ones are decoded while the speaker set forms).
    assert!(
        undecoded >= 150.0,
        "switchboard_mixer_undecoded_packets_total = {undecoded}: the quiet leg's packets were decoded although \
         its levels kept it out of the mix"
    );

    let together = legs_together(&outs, DURATION_S);
    let (heard, rate) = leg_heard_all(&outs[2], &files[2], together);
    eprintln!(
        "undecoded packets at the scrape: {undecoded}; the listener hears 440 Hz at {:.1} dBFS (sent {:.1}) and \
         660 Hz at {:.1} dBFS (sent {:.1})",
        tone_level_db(&heard, rate, 440.0),
        sine_dbfs(LOUD),
        tone_level_db(&heard, rate, 660.0),
        sine_dbfs(QUIET)
    );
    for (k, piece) in heard.chunks_exact(rate as usize / 2).enumerate() {
        let (talker, quiet) = (tone_level_db(piece, rate, 440.0), tone_level_db(piece, rate, 660.0));
        assert!(
            (talker - sine_dbfs(LOUD)).abs() <= 3.0,
            "listener, 0.5 s piece #{k}: the talker arrives at {talker:.1} dBFS, sent at {:.1}",
            sine_dbfs(LOUD)
        );
        assert!(
            quiet <= sine_dbfs(QUIET) - 20.0,
            "listener, 0.5 s piece #{k}: the quiet leg, left out of a one-speaker mix, is heard at {quiet:.1} dBFS"
        );
    }
}
