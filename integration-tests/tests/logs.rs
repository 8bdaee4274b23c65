//! The daemon's log as an operator's log shipper reads it: in JSON mode every line is a JSON
//! object; each request has a line with its method, route template, status, latency and client
//! address, and no line holds a token or a byte of SDP. `RUST_LOG` is the filter when the
//! config sets none.

use std::time::Duration;

use switchboard_integration_tests::*;

/// The request lines of a JSON log: `(method, route, status)` and the line itself.
fn requests(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "switchboard::http" && v["message"] == "request")
        .collect()
}

fn find<'a>(lines: &'a [Value], method: &str, route: &str, status: u64) -> &'a Value {
    lines
        .iter()
        .find(|v| v["method"] == method && v["route"] == route && v["status"] == status)
        .unwrap_or_else(|| panic!("no request line for {method} {route} {status} in {lines:#?}"))
}

#[test]
fn json_lines_with_one_line_per_request_and_no_secret() {
    let mut d = Daemon::start_with(|c| {
        c.set("log", "format", "json");
    });
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let offer = pcmu_offer(phone.local_addr().unwrap().port());
    let joined = d.join("logged", &offer);
    let id = joined["id"].as_str().unwrap().to_string();
    let answer = joined["sdp"].as_str().unwrap().to_string();
    assert_eq!(d.get_json(&format!("/v1/rooms/logged/participants/{id}")).0, 200);
    let bad = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.not-a-signature";
    assert_eq!(d.call_as(Some(bad), "GET", "/v1/rooms", None).0, 401);
    assert_eq!(d.get_json("/v1/nothing/here").0, 404);
    assert_eq!(d.get_text("/healthz").0, 200);
    d.stop();

    let log = d.log();
    assert!(log.lines().count() >= 5, "{log}");
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{line}");
    }
    let lines = requests(&log);
    let join = find(&lines, "POST", "/v1/rooms/{room}/participants", 201);
    assert!(join["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{join}");
    assert!(join["client"].as_str().is_some_and(|c| c.starts_with("127.0.0.1:")), "{join}");
    find(&lines, "GET", "/v1/rooms/{room}/participants/{id}", 200);
    find(&lines, "GET", "/v1/rooms", 401);
    // An unknown path is `other`: the concrete path is the client's, and could be anything.
    find(&lines, "GET", "other", 404);
    // The routine poll is below info; the log's filter is `info`.
    assert!(lines.iter().all(|v| v["route"] != "/healthz"), "{lines:#?}");

    for (what, secret) in [
        ("the admin token", admin_token()),
        ("the bad token", bad),
        ("an Authorization header", "Bearer"),
        ("the offer's SDP", "a=rtpmap:0 PCMU/8000"),
        ("the answer's SDP", answer.lines().nth(1).unwrap_or("o=")),
        ("a concrete participant path", &format!("participants/{id}")),
    ] {
        assert!(!log.contains(secret), "the log holds {what} ({secret:?}):\n{log}");
    }
}

#[test]
fn rust_log_is_the_filter_when_the_config_sets_none() {
    // No log.filter: RUST_LOG says debug for the request log, so even health polls are logged.
    let mut d = Daemon::start_with_env(&[("RUST_LOG", "warn,switchboard::http=debug")], |c| {
        c.remove("log", "filter");
        c.set("log", "format", "json");
    });
    assert_eq!(d.get_text("/healthz").0, 200);
    d.stop();
    let log = d.log();
    assert!(requests(&log).iter().any(|v| v["route"] == "/healthz"), "{log}");
    assert!(!log.contains("switchboard ready"), "RUST_LOG's `warn` should hide the info lines: {log}");

    // A filter in the config wins over RUST_LOG.
    let mut d = Daemon::start_with_env(&[("RUST_LOG", "warn,switchboard::http=debug")], |c| {
        c.set("log", "filter", "info");
    });
    assert_eq!(d.get_text("/healthz").0, 200);
    std::thread::sleep(Duration::from_millis(100));
    d.stop();
    let log = d.log();
    assert!(log.contains("switchboard ready") && !log.contains("route=/healthz"), "{log}");
}
