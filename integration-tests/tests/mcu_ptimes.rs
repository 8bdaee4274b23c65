//! Phone legs whose packets are not the mixer's 20 ms: three legs in one room, each with its own
//! codec, ptime and tone (peers/rtp_leg.py --ptime): PCMU in 10 ms packets, G.722 in 30 ms and
//! Opus in 60 ms. Each hears a mix-minus of the other two, in its own codec and ptime.
//!
//! Checked per leg: the answer keeps its `a=ptime`; every packet it received lasts its ptime (by
//! payload length, or by the Opus TOC) and its timestamp steps by exactly that; one stream with
//! no sequence gap; and, by the frequencies heard, the other two tones at a real level and its
//! own well below them, through every half second of the time all three were in the room.

use std::time::Duration;

use switchboard_integration_tests::*;

const ROOM: &str = "ptimes";
const AMPLITUDE: f32 = 0.3;
const DURATION_S: f64 = 13.0;

struct Leg {
    name: &'static str,
    codec: &'static str,
    ptime_ms: u64,
    hz: f32,
    /// RTP clock rate of the codec.
    clock: u64,
}

const LEGS: [Leg; 3] = [
    Leg { name: "pcmu10", codec: "pcmu", ptime_ms: 10, hz: 440.0, clock: 8_000 },
    Leg { name: "g722_30", codec: "g722", ptime_ms: 30, hz: 660.0, clock: 8_000 },
    Leg { name: "opus60", codec: "opus", ptime_ms: 60, hz: 880.0, clock: 48_000 },
];

/// Every audio packet `leg` received lasted its ptime, and its timestamp stepped by that: by
/// exactly one packet but for a few steps of whole packets where the audio paused (the routes
/// change as the legs join: the slot moves from a transcode to the mix).
#[track_caller]
fn assert_packets_of_its_ptime(leg: &Leg, out: &PeerOutput) {
    let j = &out.json;
    let log: Vec<Value> =
        j["packet_log"].as_array().unwrap().iter().filter(|e| e[1] == j["audio_pt"]).cloned().collect();
    assert!(log.len() as u64 >= 5_000 / leg.ptime_ms, "{}: only {} packets: {}", leg.name, log.len(), j["received"]);
    let step = leg.ptime_ms * leg.clock / 1000;
    let mut pauses = Vec::new();
    for (i, e) in log.iter().enumerate() {
        let duration = match leg.codec {
            // Field 7: the Opus TOC's duration, in 48 kHz samples.
            "opus" => e[7].as_u64().map(|n| n * 1000 / 48_000),
            // One byte per 8 kHz sample (G.711), or per two 16 kHz samples (G.722).
            _ => e[6].as_u64().map(|n| n / 8),
        };
        assert_eq!(duration, Some(leg.ptime_ms), "{}: packet {i} ({e}) lasts {duration:?} ms", leg.name);
        if i > 0 {
            let ts_step =
                u64::from((e[3].as_u64().unwrap() as u32).wrapping_sub(log[i - 1][3].as_u64().unwrap() as u32));
            let whole = ts_step % step == 0 && (step..=leg.clock).contains(&ts_step);
            assert!(
                whole,
                "{}: packet {i} stamped {ts_step} after the one before, not whole packets of {step}",
                leg.name
            );
            if ts_step != step {
                pauses.push((i, ts_step));
            }
        }
    }
    assert!(pauses.len() <= 5, "{}: the timestamp skipped ahead at {pauses:?}", leg.name);
}

#[test]
fn legs_of_10_30_and_60_ms_in_three_codecs_hear_the_mix_in_their_own_ptime() {
    require_rtp_leg();
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    d.create_room(ROOM);
    let files: Vec<_> = LEGS.iter().map(|l| dir.path().join(format!("{}.s16le", l.name))).collect();
    let mut legs: Vec<Option<PeerHandle>> = LEGS
        .iter()
        .zip(&files)
        .map(|(l, file)| {
            let mut args = tone_leg_args(l.hz, AMPLITUDE, DURATION_S, file);
            args.extend(["--codec", l.codec, "--ptime", &l.ptime_ms.to_string()].map(String::from));
            Some(d.join_peer(RTP_LEG, ROOM, l.name, &args, Duration::from_secs(60)))
        })
        .collect();
    let ids = d.wait_for_participants(ROOM, 3, &mut legs, Duration::from_secs(20));
    let mixed = poll_until(Duration::from_secs(10), || {
        let v: Vec<Value> = ids.iter().map(|id| d.participant(ROOM, id)).collect();
        v.iter().all(|p| p["subscriptions"][0]["route"] == "mix").then_some(v)
    });
    assert!(
        mixed.is_some(),
        "not every leg got the mix: {:?}",
        ids.iter().map(|i| d.participant(ROOM, i)).collect::<Vec<_>>()
    );

    let outs: Vec<PeerOutput> = legs.iter_mut().map(|l| l.take().unwrap().wait()).collect();
    for o in &outs {
        o.expect_ok();
    }
    let (from, to) = legs_together(&outs, DURATION_S);
    let want_db = sine_dbfs(AMPLITUDE);
    for ((leg, out), file) in LEGS.iter().zip(&outs).zip(&files) {
        let answer = out.json["answer_sdp"].as_str().unwrap_or_default();
        assert!(answer.contains(&format!("a=ptime:{}\r\n", leg.ptime_ms)), "{}: the answer: {answer}", leg.name);
        assert_one_stream(leg.name, out);
        assert_packets_of_its_ptime(leg, out);
        let (heard, rate) = leg_heard_all(out, file, (from, to));
        let others: Vec<f32> = LEGS.iter().map(|l| l.hz).filter(|hz| *hz != leg.hz).collect();
        for (k, piece) in heard.chunks_exact(rate as usize / 2).enumerate() {
            let own = tone_level_db(piece, rate, leg.hz);
            for hz in &others {
                let db = tone_level_db(piece, rate, *hz);
                assert!(
                    (db - want_db).abs() <= 4.0,
                    "{}, 0.5 s piece #{k}: {hz} Hz heard at {db:.1} dBFS, sent at {want_db:.1} dBFS",
                    leg.name
                );
                assert!(own <= db - 25.0, "{}, piece #{k}: its own {} Hz at {own:.1} dBFS", leg.name, leg.hz);
            }
        }
    }
}
