//! Composite recording: the room's audio mix and its video composite in one MP4 (H.264 + AAC,
//! fragmented). A webrtcbin publisher sends a 440 Hz tone and a picture, a phone leg 660 Hz;
//! the file holds both tones and the compositor's picture (640×360).

use std::path::PathBuf;
use std::time::Duration;

use switchboard_integration_tests::*;

const PEER: &str = "webrtcbin_peer.py";
const JOIN: Duration = Duration::from_secs(15);

#[test]
fn a_composite_mp4_holds_both_tones_and_the_composite_picture() {
    require_gstreamer();
    require_rtp_leg();
    require_ffprobe();
    let d = Daemon::start();
    let sse = d.create_and_follow("mix");
    let args = ["--publish-tone", "440", "--publish-video", "0xffff0000", "--keyframe-every", "5", "--duration", "40"];
    let mut browser = Some(d.join_peer(PEER, "mix", "browser", &args, JOIN * 5));
    let mut phone = Some(d.join_peer(RTP_LEG, "mix", "phone", &["--tone", "660", "--duration", "40"], JOIN * 5));
    d.wait_for_participants("mix", 2, &mut [&mut browser, &mut phone], JOIN);

    let body = json!({"kind": "composite", "outputs": [{"type": "file", "format": "mp4"}]});
    let (status, started) = d.post_json("/v1/rooms/mix/egress", &body);
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["state"], "active", "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    // The egress is served like a subscriber that asked for the mix and the composite.
    let sub = d.participant("mix", started["participant_id"].as_str().unwrap());
    let routes: Vec<&str> =
        sub["subscriptions"].as_array().unwrap().iter().filter_map(|s| s["route"].as_str()).collect();
    assert!(routes.contains(&"composite"), "{sub}");
    let path = format!("/v1/rooms/mix/egress/{id}");
    poll_until(JOIN, || {
        let f = d.get_json(&path).1["outputs"][0]["files"][0].clone();
        (f["bytes_written"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .unwrap_or_else(|| panic!("nothing was written: {}", d.get_json(&path).1));
    std::thread::sleep(Duration::from_secs(8));
    let (status, stopped) = d.delete(&path);
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["state"], "complete", "{stopped}");
    sse.wait_for("egress_ended", JOIN);
    let file = &stopped["outputs"][0]["files"][0];
    assert_eq!(file["container"], "mp4", "{file}");
    assert_eq!(file["codec"], "h264+aac", "{file}");
    let mp4 = PathBuf::from(file["path"].as_str().unwrap());

    let probe = ffprobe(mp4.to_str().unwrap());
    let codecs: Vec<&str> =
        probe["streams"].as_array().unwrap().iter().filter_map(|s| s["codec_name"].as_str()).collect();
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{probe}");
    let secs = media_duration(&mp4);
    assert!(secs > 6.0, "the MP4 lasts {secs:.2} s");
    let (frames, w, h) = decoded_video(&mp4);
    assert_eq!((w, h), (640, 360), "the composite picture's size");
    assert!(frames >= 50, "{frames} decodable frames");
    let audio = decoded_audio(&mp4, 48_000);
    let tail = &audio[audio.len() / 3..];
    let (a, b) = (tone_level_db(tail, 48_000, 440.0), tone_level_db(tail, 48_000, 660.0));
    assert!(a > -40.0 && b > -40.0, "the mix holds 440 Hz at {a:.1} dB and 660 Hz at {b:.1} dB");
}
