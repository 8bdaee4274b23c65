//! A receiver's loss reaches the mixer: three Opus phone legs (peers/rtp_leg.py) in one room, two
//! talking, the third only listening and sending, every second, an RTCP receiver report that
//! claims 10 % of the bridge's packets lost. The mixer's Opus encoder for that leg's mix then
//! adds in-band FEC (`switchboard_mixer_fec_encoders`), and the listener still hears both tones
//! at their sent level. Before the listener reports anything, no encoder adds FEC.
//!
//! What FEC buys a receiver is checked in the mixer's own tests (`tests/receiver_loss.rs`): here
//! the loss is claimed, not real, so there is nothing to recover.

use std::time::Duration;

use switchboard_integration_tests::*;

const ROOM: &str = "lossy";
const DURATION_S: f64 = 12.0;
const AMPLITUDE: f32 = 0.3;

fn fec_encoders(d: &Daemon) -> f64 {
    let (_, metrics) = d.get_text("/metrics");
    metric_value(&metrics, "switchboard_mixer_fec_encoders", &[]).unwrap_or(-1.0)
}

#[test]
fn a_listener_reporting_loss_gets_its_opus_mix_with_fec() {
    require_rtp_leg();
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    d.create_room(ROOM);
    let legs_spec = [("a", 440.0f32), ("b", 660.0), ("listener", 0.0)];
    let files: Vec<_> = legs_spec.iter().map(|(name, _)| dir.path().join(format!("{name}.s16le"))).collect();
    let mut legs: Vec<Option<PeerHandle>> = Vec::new();
    for ((name, hz), file) in legs_spec.iter().zip(&files) {
        let mut args = tone_leg_args(*hz, AMPLITUDE, DURATION_S, file);
        args.extend(["--codec", "opus"].map(String::from));
        if *name == "listener" {
            // Let the talkers' mix settle before the reports start (one a second from then).
            args.extend(["--report-loss", "10"].map(String::from));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        legs.push(Some(d.join_peer(RTP_LEG, ROOM, name, &args, Duration::from_secs(50))));
        if legs.len() == 2 {
            d.wait_for_participants(ROOM, 2, &mut legs, Duration::from_secs(20));
            std::thread::sleep(Duration::from_secs(2));
            assert_eq!(fec_encoders(&d), 0.0, "nobody reported loss yet, yet an encoder adds FEC");
        }
    }
    d.wait_for_participants(ROOM, 3, &mut legs, Duration::from_secs(20));
    let fec = poll_until(Duration::from_secs(6), || Some(fec_encoders(&d)).filter(|n| *n >= 1.0));

    let outs: Vec<PeerOutput> = legs.iter_mut().map(|l| l.take().unwrap().wait()).collect();
    for o in &outs {
        o.expect_ok();
    }
    assert!(outs[2].json["sent_loss_reports"].as_u64().unwrap_or(0) >= 3, "{}", outs[2].describe());
    assert!(
        fec.is_some(),
        "switchboard_mixer_fec_encoders stayed {} while the listener reported 10 % loss",
        fec_encoders(&d)
    );

    let together = legs_together(&outs, DURATION_S);
    let (heard, rate) = leg_heard_all(&outs[2], &files[2], together);
    let want = sine_dbfs(AMPLITUDE);
    for hz in [440.0, 660.0] {
        let db = tone_level_db(&heard, rate, hz);
        eprintln!("the listener hears {hz} Hz at {db:.1} dBFS (sent {want:.1}), with FEC in its mix");
        assert!((db - want).abs() <= 3.0, "{hz} Hz arrives at {db:.1} dBFS, sent at {want:.1}");
    }
}
