//! SIGTERM under load: the node stops taking joins and reports itself not ready, lets its
//! participants leave for up to `node.drain_timeout_secs`, then closes the rest. Every
//! participant gets its `participant_left`, and the daemon exits 0.

use std::time::Duration;

use switchboard_integration_tests::*;

#[test]
fn sigterm_drains_then_closes_everyone_and_exits_zero() {
    require_rtp_leg();
    let mut d = Daemon::start_with(|c| {
        c.set("node", "drain_timeout_secs", 3);
    });
    let sse = d.create_and_follow("drain");
    // Three phone legs sending tones: a mix-minus under way.
    let dir = tempfile::tempdir().unwrap();
    let (_files, mut legs) = spawn_tone_legs(
        &d,
        "drain",
        &[("a", 440.0), ("b", 660.0), ("c", 880.0)],
        0.3,
        20.0,
        dir.path(),
        Duration::from_secs(60),
    );
    let ids = d.wait_for_participants("drain", 3, &mut legs, JOIN_WAIT);
    std::thread::sleep(Duration::from_secs(1));

    d.terminate();
    let ready = poll_until(Duration::from_secs(2), || {
        let (s, v) = d.get_json("/readyz");
        (s == 503).then_some(v)
    })
    .expect("/readyz did not turn 503 on SIGTERM");
    assert_eq!(ready["error"]["code"], "draining", "{ready}");
    // Joins are refused while draining; the API still serves what leaving needs.
    let (s, v) = d.post_json("/v1/rooms/drain/participants", &json!({"kind": "rtp"}));
    assert_api_error(&(s, v), 503, "shutting_down");
    // One leaves by itself during the drain.
    assert_eq!(d.delete(&format!("/v1/rooms/drain/participants/{}", ids[0])).0, 204);

    let status = d.wait_exit(Duration::from_secs(10)).expect("the daemon did not exit within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}\n{}", d.log_tail(30));
    let left: Vec<(String, String)> = sse
        .events()
        .iter()
        .filter(|e| e.event == "participant_left")
        .map(|e| {
            (
                e.data["participant_id"].as_str().unwrap_or("").to_string(),
                e.data["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let reason = left.iter().find(|(p, _)| p == id).map(|(_, r)| r.as_str());
        let want = if i == 0 { "requested" } else { "shutdown" };
        assert_eq!(reason, Some(want), "participant {id}: {left:?}");
    }
    // The drain waited for the timeout before closing the two that stayed.
    let log = d.log();
    assert!(log.contains("draining"), "{log}");
    assert!(log.contains("drain timeout reached"), "{log}");
    drop(legs);
}
