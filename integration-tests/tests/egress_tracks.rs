//! Per-track recording: a room with a webrtcbin publisher (a 440 Hz tone in Opus and a VP8
//! `videotestsrc` picture) and a phone leg (660 Hz in PCMU) is recorded for 10 s by an egress
//! of kind `tracks`. Each track goes to its own file in its own codec, with no transcoding:
//! Opus in Ogg, VP8 in WebM, PCMU in WAV. ffprobe and ffmpeg read the files back.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

const PEER: &str = "webrtcbin_peer.py";
const JOIN: Duration = Duration::from_secs(15);
const RECORD: Duration = Duration::from_secs(10);

fn files(view: &Value) -> Vec<Value> {
    view["outputs"][0]["files"].as_array().cloned().unwrap_or_default()
}

#[test]
fn each_track_is_recorded_to_its_own_file_in_its_own_codec() {
    require_gstreamer();
    require_rtp_leg();
    require_ffprobe();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("egress");
    let d = Daemon::start_with(|c| {
        c.set("egress", "dir", out_dir.to_str().unwrap());
    });
    let sse = d.create_and_follow("rec");
    // A video file starts at a keyframe: webrtcbin's vp8enc makes none on a PLI, so the
    // publisher makes one every 1/3 s (at 15 fps) and the file starts within that.
    let args = ["--publish-tone", "440", "--publish-video", "0xffff0000", "--keyframe-every", "5", "--duration", "40"];
    let mut browser = Some(d.join_peer(PEER, "rec", "browser", &args, JOIN * 5));
    let mut phone = Some(d.join_peer(RTP_LEG, "rec", "phone", &["--tone", "660", "--duration", "40"], JOIN * 5));
    d.wait_for_participants("rec", 2, &mut [&mut browser, &mut phone], JOIN);
    // Every track published before the egress starts gets a slot in its offer.
    poll_until(JOIN, || {
        let (_, room) = d.get_json("/v1/rooms/rec");
        let tracks: usize =
            room["participants"].as_array()?.iter().map(|p| p["tracks"].as_array().map_or(0, Vec::len)).sum();
        (tracks == 3).then_some(())
    })
    .expect("the browser's audio and video and the phone's audio are published");

    let (status, started) =
        d.post_json("/v1/rooms/rec/egress", &json!({"kind": "tracks", "outputs": [{"type": "file"}]}));
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["state"], "active", "{started}");
    assert_eq!(started["kind"], "tracks");
    let id = started["id"].as_str().unwrap().to_string();
    let ev = sse.wait_for("egress_started", JOIN);
    assert_eq!(ev["egress_id"], id.as_str(), "{ev}");
    // The egress is a subscriber of the room like any other, known by its identity.
    let egress_participant = started["participant_id"].as_str().unwrap();
    let view = d.participant("rec", egress_participant);
    assert_eq!(view["identity"], format!("egress:{id}"), "{view}");
    assert_eq!(view["can_publish"], false, "{view}");

    // The recording starts when the three streams have arrived; from then, 10 s.
    let path = format!("/v1/rooms/rec/egress/{id}");
    poll_until(JOIN, || (files(&d.get_json(&path).1).len() == 3).then_some(()))
        .unwrap_or_else(|| panic!("three streams never arrived: {}", d.get_json(&path).1));
    let t0 = Instant::now();
    std::thread::sleep(RECORD);
    let running = d.get_json(&path).1;
    for f in files(&running) {
        assert!(f["bytes_written"].as_u64().unwrap_or(0) > 0, "nothing written yet: {f}");
        assert!(f["buffers_in"].as_u64().unwrap_or(0) > 100, "{f}");
        assert!(f["latency_ms"].as_f64().is_some(), "{f}");
    }
    let (status, stopped) = d.delete(&path);
    let recorded = t0.elapsed().as_secs_f64();
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["state"], "complete", "{stopped}");
    let ended = sse.wait_for("egress_ended", JOIN);
    assert_eq!(ended["reason"], "requested", "{ended}");
    let (_, list) = d.get_json("/v1/rooms/rec/egress");
    assert_eq!(list[0]["state"], "complete", "{list}");
    // The subscriber has left the room.
    assert_eq!(d.participants_of("rec").len(), 2);
    let (_, m) = d.get_text("/metrics");
    let written: u64 = files(&stopped).iter().map(|f| f["bytes_written"].as_u64().unwrap()).sum();
    assert_eq!(metric_value(&m, "switchboard_egress_bytes_written_total", &[]), Some(written as f64));
    assert_eq!(metric_value(&m, "switchboard_egress_ended_total", &[("outcome", "complete")]), Some(1.0));
    assert_eq!(metric_value(&m, "switchboard_egresses", &[]), Some(0.0));

    let by_container = |c: &str| -> PathBuf {
        let f =
            files(&stopped).into_iter().find(|f| f["container"] == c).unwrap_or_else(|| panic!("no {c}: {stopped}"));
        assert_eq!(f["finished"], true, "{f}");
        PathBuf::from(f["path"].as_str().unwrap())
    };
    let (ogg, webm, wav) = (by_container("ogg"), by_container("webm"), by_container("wav"));
    for p in [&ogg, &webm, &wav] {
        assert!(p.starts_with(&out_dir), "{} is not under egress.dir", p.display());
        let secs = media_duration(p);
        assert!(
            (secs - recorded).abs() <= recorded * 0.05,
            "{} lasts {secs:.2} s, recorded {recorded:.2} s",
            p.display()
        );
    }
    let ogg_audio = decoded_audio(&ogg, 48_000);
    let hz = dominant_frequency(&ogg_audio[ogg_audio.len() / 2..], 48_000);
    assert!((hz - 440.0).abs() < 10.0, "the Ogg file's tone is {hz} Hz");
    let wav_audio = decoded_audio(&wav, 8_000);
    let hz = dominant_frequency(&wav_audio[wav_audio.len() / 2..], 8_000);
    assert!((hz - 660.0).abs() < 10.0, "the WAV file's tone is {hz} Hz");
    let (frames, w, h) = decoded_video(&webm);
    assert!(frames >= 100, "the WebM file has {frames} decodable frames");
    assert_eq!((w, h), (320, 240));
    // No transcoding: the WebM is VP8, the Ogg Opus, the WAV G.711 µ-law.
    assert_eq!(ffprobe(webm.to_str().unwrap())["streams"][0]["codec_name"], "vp8");
    assert_eq!(ffprobe(ogg.to_str().unwrap())["streams"][0]["codec_name"], "opus");
    assert_eq!(ffprobe(wav.to_str().unwrap())["streams"][0]["codec_name"], "pcm_mulaw");
}
