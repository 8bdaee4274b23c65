//! Health that tells the truth: a media thread made to stall (the test-only hook) turns
//! `/healthz` and `/readyz` into 503 `media_stalled` within 3 s, and both recover when it turns
//! again. Without the hook configured, the hook's route does not exist.

use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

#[test]
fn a_stalled_media_thread_fails_healthz_within_three_seconds_and_recovers() {
    let d = Daemon::start_with(|c| {
        c.set("debug", "stall_hook", true);
    });
    assert_eq!(d.get_text("/healthz"), (200, "ok\n".to_string()));
    assert_eq!(d.get_text("/readyz"), (200, "ready\n".to_string()));
    // A room with a phone leg in it, so the thread has work besides the idle loop.
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=gw\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
    let leg = d.join("health", offer);
    assert!(leg["id"].is_string(), "{leg}");

    let asked = Instant::now();
    let (s, v) = d.post_json("/v1/debug/stall", &json!({"ms": 5000}));
    assert_eq!(s, 202, "{v}");
    let failed = poll_until(Duration::from_secs(4), || {
        let got = d.get_json("/healthz");
        (got.0 == 503).then_some((asked.elapsed(), got))
    });
    let (after, got) = failed.expect("/healthz still said ok 4 s into a 5 s stall");
    assert_api_error(&got, 503, "media_stalled");
    assert!(after <= Duration::from_secs(3), "/healthz noticed the stall only after {after:?}");
    assert_api_error(&d.get_json("/readyz"), 503, "media_stalled");
    println!("healthz turned 503 {} ms after the stall began", after.as_millis());

    let recovered = poll_until(Duration::from_secs(6), || (d.get_text("/healthz").0 == 200).then_some(()));
    assert!(recovered.is_some(), "/healthz did not recover once the media thread turned again");
    assert_eq!(d.get_text("/readyz").0, 200);
    // The API and the room survived it.
    assert_eq!(d.get_json("/v1/rooms/health").0, 200);
}

#[test]
fn the_stall_hook_exists_only_when_configured() {
    let d = Daemon::start();
    assert_api_error(&d.post_json("/v1/debug/stall", &json!({"ms": 10})), 404, "not_found");
    assert_eq!(d.get_text("/healthz").0, 200);
}
