//! RTMP: the room's composite (H.264 + AAC in FLV) pushed to nginx-rtmp, read back by ffprobe
//! from the server. Then nginx goes away mid-stream: the egress fails with the reason (and
//! never the stream key), and the call in the room goes on, its tone heard before and after.

use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

const PEER: &str = "webrtcbin_peer.py";
const JOIN: Duration = Duration::from_secs(15);
const KEY: &str = "s3cret-stream-key";

#[test]
fn the_composite_goes_to_an_rtmp_server_and_losing_it_fails_only_the_egress() {
    require_gstreamer();
    require_rtp_leg();
    require_ffprobe();
    require_nginx_rtmp();
    let mut nginx = NginxRtmp::start();
    let d = Daemon::start();
    let sse = d.create_and_follow("live");
    let tmp = tempfile::tempdir().unwrap();
    let heard = tmp.path().join("phone.s16le");
    let args = ["--publish-tone", "440", "--publish-video", "0xffff0000", "--keyframe-every", "5", "--duration", "40"];
    let mut browser = Some(d.join_peer(PEER, "live", "browser", &args, JOIN * 5));
    let mut phone = Some(d.join_peer(RTP_LEG, "live", "phone", &tone_leg_args(660.0, 0.5, 30.0, &heard), JOIN * 5));
    d.wait_for_participants("live", 2, &mut [&mut browser, &mut phone], JOIN);

    let body = json!({"kind": "composite", "outputs": [{"type": "rtmp", "url": nginx.url(KEY)}]});
    let (status, started) = d.post_json("/v1/rooms/live/egress", &body);
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["state"], "active", "{started}");
    assert_eq!(started["outputs"][0]["type"], "rtmp", "{started}");
    assert!(!started.to_string().contains(KEY), "the stream key is shown: {started}");
    let path = format!("/v1/rooms/live/egress/{}", started["id"].as_str().unwrap());
    poll_until(JOIN, || {
        let f = d.get_json(&path).1["outputs"][0]["files"][0].clone();
        (f["bytes_written"].as_u64().unwrap_or(0) > 20_000).then_some(())
    })
    .unwrap_or_else(|| panic!("nothing was pushed: {}", d.get_json(&path).1));

    // What a viewer of the stream gets: H.264 and AAC.
    let probe = ffprobe(&nginx.url(KEY));
    let codecs: Vec<&str> =
        probe["streams"].as_array().unwrap().iter().filter_map(|s| s["codec_name"].as_str()).collect();
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{probe}");

    // The server goes away mid-stream.
    std::thread::sleep(Duration::from_secs(2));
    nginx.stop();
    let lost_at = unix_now();
    let t = Instant::now();
    let failed = sse.wait_for("egress_failed", JOIN);
    assert_eq!(failed["egress_id"], started["id"], "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(!reason.is_empty() && !reason.contains(KEY), "{reason}");
    assert!(t.elapsed() < JOIN, "the failure took {:?} to show", t.elapsed());
    let (_, view) = d.get_json(&path);
    assert_eq!(view["state"], "failed", "{view}");
    assert!(!d.log().contains(KEY), "the stream key is in the daemon's log");

    // The call went on: both parties are still in the room, and the phone heard the browser's
    // tone before and after the server went.
    assert_eq!(d.participants_of("live").len(), 2);
    let out = phone.take().unwrap().wait();
    let (before, rate) = leg_audio_between(&out, &heard, lost_at - 4.0, lost_at - 0.5);
    let (after, _) = leg_audio_between(&out, &heard, lost_at + 0.5, lost_at + 4.0);
    for (when, pcm) in [("before", &before), ("after", &after)] {
        assert!(pcm.len() as f64 >= 3.0 * rate as f64, "the phone heard too little {when}: {}", out.describe());
        let hz = dominant_frequency(pcm, rate);
        assert!((hz - 440.0).abs() < 15.0, "the phone heard {hz} Hz {when} the server went");
    }
    drop(browser);
}
