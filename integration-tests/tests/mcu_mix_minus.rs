//! The audio MCU's mix-minus: three PCMU phone legs (peers/rtp_leg.py), each sending its own
//! sine, in one room. A leg has one audio slot and two other publishers, so each gets a mix in
//! PCMU. A mix-minus leaves the listener out: each leg hears the other two tones at their sent
//! level and its own tone not at all.
//!
//! The received audio is analysed here (harness `band_energy_db`), in 0.5 s pieces over the
//! seconds when all three legs were sending, so a dropout or a late mix fails as well.

use std::time::Duration;

use switchboard_integration_tests::*;

const ROOM: &str = "mixminus";
/// Each leg sends at 0.3 of full scale: two of them summed stay below full scale (no clipping).
const AMPLITUDE: f32 = 0.3;
const DURATION_S: f64 = 13.0;

#[test]
fn three_pcmu_legs_each_hear_the_other_two_and_not_themselves() {
    require_rtp_leg();
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let sse = d.create_and_follow(ROOM);

    let legs_spec = [("a", 440.0f32), ("b", 660.0), ("c", 880.0)];
    let (files, mut legs) =
        spawn_tone_legs(&d, ROOM, &legs_spec, AMPLITUDE, DURATION_S, dir.path(), Duration::from_secs(50));
    let ids = d.wait_for_participants(ROOM, 3, &mut legs, Duration::from_secs(20));

    // All three in the room: each one's single slot carries a mix, in PCMU, from no one
    // publisher in particular.
    let views = poll_until(Duration::from_secs(10), || {
        let v: Vec<Value> = ids.iter().map(|id| d.participant(ROOM, id)).collect();
        v.iter().all(|p| p["subscriptions"][0]["route"] == "mix").then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "not every leg's slot became a mix within 10 s: {:#?}",
            ids.iter().map(|i| d.participant(ROOM, i)["subscriptions"].clone()).collect::<Vec<_>>()
        )
    });
    for p in &views {
        let subs = p["subscriptions"].as_array().cloned().unwrap_or_default();
        assert_eq!(subs.len(), 1, "a phone leg has one slot: {p}");
        assert_eq!(subs[0]["route"], "mix", "{p}");
        assert_eq!(subs[0]["codec"], "pcmu", "the mix is encoded in the slot's codec: {p}");
        assert!(subs[0]["publisher_id"].is_null(), "a mix has no single publisher: {p}");
    }
    // The same, as events: the last route_changed each leg's slot got says "mix" (in PCMU).
    for id in &ids {
        // The views already say mix, so a mix event is on its way; an earlier forward one may
        // have arrived first.
        sse.wait_for_matching(
            "route_changed",
            |v| v["participant_id"] == id.as_str() && v["route"] == "mix",
            Duration::from_secs(5),
        );
        let last = sse
            .events()
            .into_iter()
            .rev()
            .find(|e| e.event == "route_changed" && e.data["participant_id"] == id.as_str())
            .unwrap();
        assert_eq!((&last.data["route"], &last.data["codec"]), (&json!("mix"), &json!("pcmu")), "{id}: {}", last.data);
    }

    // While all three send, the inputs' adaptive jitter buffers report what they aim for: at
    // least the configured minimum (40 ms in the harness), nowhere near the 200 ms maximum on
    // loopback. The gauge is set at the worker's 500 ms harvest.
    let target = poll_until(Duration::from_secs(3), || {
        let (_, metrics) = d.get_text("/metrics");
        metric_value(&metrics, "switchboard_mixer_jitter_target_seconds", &[]).filter(|t| *t > 0.0)
    });
    assert!(
        target.is_some_and(|t| (0.040..0.200).contains(&t)),
        "switchboard_mixer_jitter_target_seconds = {target:?} while the legs were mixed, expected 0.040 <= target < 0.200"
    );
    // Everything the legs send goes only to the mixer, so the worker reads them at its ticks.
    let paced = poll_until(Duration::from_secs(3), || {
        let (_, metrics) = d.get_text("/metrics");
        metric_value(&metrics, "switchboard_mixer_paced_legs", &[]).filter(|n| *n == 3.0)
    });
    assert_eq!(paced, Some(3.0), "switchboard_mixer_paced_legs while three legs were mixed");

    let outs: Vec<PeerOutput> = legs.iter_mut().map(|l| l.take().unwrap().wait()).collect();
    for o in &outs {
        o.expect_ok();
    }
    // The seconds in which all three were in the room and sending (joined + 2 s for the mix to
    // settle, up to 0.5 s before the first one stopped).
    let (from, to) = legs_together(&outs, DURATION_S);
    let from = from.max(to - 6.0);

    let want_db = sine_dbfs(AMPLITUDE);
    for (i, (name, own_hz)) in legs_spec.iter().enumerate() {
        let o = &outs[i];
        // One stream from the bridge, without gaps.
        assert_one_stream(name, o);
        let (x, rate) = leg_audio_between(o, &files[i], from, to);
        assert!(
            x.len() as f64 >= (to - from - 0.2) * rate as f64,
            "{name}: only {} samples of received audio for {:.1} s together: {}",
            x.len(),
            to - from,
            o.describe()
        );
        let others: Vec<f32> = legs_spec.iter().map(|(_, hz)| *hz).filter(|hz| hz != own_hz).collect();
        let whole: Vec<String> =
            legs_spec.iter().map(|(_, hz)| format!("{hz} Hz {:.1} dBFS", tone_level_db(&x, rate, *hz))).collect();
        eprintln!("{name} (sends {own_hz} Hz) hears, last 0.5 s of {:.1} s together: {whole:?}", to - from);
        for (k, piece) in x.chunks_exact(rate as usize / 2).enumerate() {
            let own = tone_level_db(piece, rate, *own_hz);
            let heard: Vec<(f32, f32)> = others.iter().map(|hz| (*hz, tone_level_db(piece, rate, *hz))).collect();
            for (hz, db) in &heard {
                assert!(
                    (db - want_db).abs() <= 3.0,
                    "{name}, 0.5 s piece #{k}: the other leg's {hz} Hz arrives at {db:.1} dBFS, sent at \
                     {want_db:.1} dBFS (all bands: own {own_hz} Hz {own:.1}, others {heard:?})"
                );
                assert!(
                    own <= db - 30.0,
                    "{name}, 0.5 s piece #{k}: its own {own_hz} Hz comes back at {own:.1} dBFS, not 30 dB \
                     below the {hz} Hz it should hear ({db:.1} dBFS): the mix is not minus the listener"
                );
            }
        }
    }
}
