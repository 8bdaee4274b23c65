//! HLS: the room's composite written as MPEG-TS segments of about 2 s and a playlist that lists
//! them all. After 10 s the playlist has at least 3 segments and ffprobe decodes each one.

use std::path::PathBuf;
use std::time::Duration;

use switchboard_integration_tests::*;

const PEER: &str = "webrtcbin_peer.py";
const JOIN: Duration = Duration::from_secs(15);

#[test]
fn hls_writes_a_playlist_of_decodable_segments() {
    require_gstreamer();
    require_rtp_leg();
    require_ffprobe();
    let d = Daemon::start();
    d.create_room("hls");
    let args = ["--publish-tone", "440", "--publish-video", "0xff00ff00", "--keyframe-every", "5", "--duration", "40"];
    let mut browser = Some(d.join_peer(PEER, "hls", "browser", &args, JOIN * 5));
    let mut phone = Some(d.join_peer(RTP_LEG, "hls", "phone", &["--tone", "660", "--duration", "40"], JOIN * 5));
    d.wait_for_participants("hls", 2, &mut [&mut browser, &mut phone], JOIN);

    let (status, started) =
        d.post_json("/v1/rooms/hls/egress", &json!({"kind": "composite", "outputs": [{"type": "hls"}]}));
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["state"], "active", "{started}");
    assert_eq!(started["outputs"][0]["type"], "hls", "{started}");
    let path = format!("/v1/rooms/hls/egress/{}", started["id"].as_str().unwrap());
    poll_until(JOIN, || {
        let f = d.get_json(&path).1["outputs"][0]["files"][0].clone();
        (f["bytes_written"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .unwrap_or_else(|| panic!("nothing was written: {}", d.get_json(&path).1));
    std::thread::sleep(Duration::from_secs(10));
    let (status, stopped) = d.delete(&path);
    assert_eq!(status, 200, "{stopped}");
    let playlist = PathBuf::from(stopped["outputs"][0]["files"][0]["path"].as_str().unwrap());
    assert_eq!(playlist.extension().and_then(|e| e.to_str()), Some("m3u8"));
    let text = std::fs::read_to_string(&playlist).unwrap_or_else(|e| panic!("{}: {e}", playlist.display()));
    let segments: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert!(segments.len() >= 3, "{} segments:\n{text}", segments.len());
    assert!(text.contains("#EXT-X-ENDLIST"), "a stopped recording's playlist is closed:\n{text}");
    let dir = playlist.parent().unwrap();
    for seg in &segments {
        let file = dir.join(seg);
        let probe = ffprobe(file.to_str().unwrap());
        let codecs: Vec<&str> =
            probe["streams"].as_array().unwrap().iter().filter_map(|s| s["codec_name"].as_str()).collect();
        assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{seg}: {probe}");
        let (frames, w, h) = decoded_video(&file);
        assert!(frames > 0 && (w, h) == (640, 360), "{seg}: {frames} frames of {w}x{h}");
    }
}
