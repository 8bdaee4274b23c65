//! Monitoring used for real: the alert rules pass `promtool check rules` and their own unit tests
//! (`promtool test rules`); every metric the dashboard and the alerts read is one the daemon
//! serves; and a real Prometheus scrapes a daemon with a three-party call in it (three phone
//! legs), where PromQL through its HTTP API finds three participants, packets going out, the
//! rules loaded and every dashboard expression valid.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use switchboard_integration_tests::*;

const PREFIXES: &[&str] = &["switchboard_", "process_"];

fn alert_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(monitoring_file("prometheus/alerts.yml")).unwrap();
    let doc: serde_norway::Value = serde_norway::from_str(&text).expect("alerts.yml is YAML");
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("an alerting rule").to_string();
            let expr = rule["expr"].as_str().expect("expr").to_string();
            assert!(
                rule["annotations"]["runbook"].as_str().is_some_and(|r| r.len() > 20),
                "{name} has no runbook line"
            );
            out.push((name, expr));
        }
    }
    out
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(monitoring_file("grafana/switchboard.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

fn dashboard_exprs() -> Vec<String> {
    let mut exprs = Vec::new();
    json_exprs(&dashboard(), &mut exprs);
    exprs
}

fn promtool(args: &[&str]) -> String {
    require_tool("promtool", "prometheus");
    let dir = workspace_root().join("monitoring/prometheus");
    let o = Command::new("promtool").args(args).current_dir(&dir).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let out = promtool(&["check", "rules", "alerts.yml"]);
    assert!(out.contains("SUCCESS: 5 rules found"), "{out}");
    promtool(&["test", "rules", "alerts_test.yml"]);
    let names: BTreeSet<String> = alert_exprs().into_iter().map(|(n, _)| n).collect();
    for want in ["SwitchboardMediaThreadStalled", "SwitchboardPacketDrops", "SwitchboardPortPoolExhausted"] {
        assert!(names.contains(want), "no {want} in {names:?}");
    }
    assert!(names.iter().any(|n| n.contains("Concealment")), "{names:?}");
}

#[test]
fn every_metric_the_dashboard_and_alerts_read_is_served() {
    let d = Daemon::start();
    let (s, text) = d.get_text("/metrics");
    assert_eq!(s, 200);
    let served = served_metric_names(&text);
    let mut read = BTreeSet::new();
    let exprs = dashboard_exprs().into_iter().chain(alert_exprs().into_iter().map(|(_, e)| e));
    for expr in exprs {
        read.extend(promql_metric_names(&expr, PREFIXES).unwrap_or_else(|e| panic!("{e}")));
    }
    // The panels the issue asks for, by what they read.
    for want in [
        "switchboard_participants",
        "switchboard_packets_dropped_total",
        "switchboard_subscriptions",
        "switchboard_mixer_jitter_target_seconds",
        "switchboard_http_requests_total",
        "switchboard_join_duration_seconds_bucket",
        "switchboard_rtp_port_pairs_free",
        "switchboard_media_loop_age_seconds",
        "switchboard_rtt_seconds_bucket",
    ] {
        assert!(read.contains(want), "nothing reads {want}: {read:?}");
    }
    let missing: Vec<_> = read.difference(&served).collect();
    assert!(missing.is_empty(), "read but not served by /metrics: {missing:?}");
}

#[test]
fn the_dashboard_is_provisionable() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "switchboard");
    let panels = dash["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in
        ["Participants by kind", "Drops by reason", "Routes", "Mixer concealment", "HTTP error rate", "Join latency"]
    {
        assert!(titles.contains(&want), "no panel {want:?}: {titles:?}");
    }
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids must be unique");
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{} names a fixed datasource", p["title"]);
    }
}

/// A dashboard expression as Grafana would send it, for a range of one job and every instance.
fn as_grafana_sends(expr: &str) -> String {
    expr.replace("$__rate_interval", "5s").replace("$job", "switchboard").replace("$instance", ".*")
}

#[test]
fn a_real_prometheus_scrapes_a_three_party_call() {
    require_rtp_leg();
    let scrape = reserve_ports();
    let d = Daemon::start_with(|c| {
        c.set("metrics", "listen", format!("127.0.0.1:{}", scrape.http));
    });
    let rules = [monitoring_file("prometheus/alerts.yml")];
    let prom = PromServer::start(&format!("127.0.0.1:{}", scrape.http), &rules);

    let dir = tempfile::tempdir().unwrap();
    let mut legs: Vec<Option<PeerHandle>> = Vec::new();
    for (name, hz) in [("a", 440.0), ("b", 660.0), ("c", 880.0)] {
        let mut args = tone_leg_args(hz, 0.3, 14.0, &dir.path().join(format!("{name}.s16le")));
        if name == "c" {
            // Receiver reports every second, claiming 5 % lost and echoing the bridge's SRs.
            args.extend(["--report-loss", "5"].map(String::from));
        }
        legs.push(Some(d.join_peer(RTP_LEG, "scraped", name, &args, Duration::from_secs(40))));
    }
    d.wait_for_participants("scraped", 3, &mut legs, Duration::from_secs(20));

    let participants = "sum(switchboard_participants{job=\"switchboard\"})";
    let out_rate = "sum(rate(switchboard_packets_total{job=\"switchboard\", direction=\"out\"}[5s]))";
    let seen = poll_until(Duration::from_secs(20), || {
        let n = prom.scalar(participants)?;
        let rate = prom.scalar(out_rate)?;
        // Three phone legs, each sent a mix at 50 packets a second: well above a trickle once
        // the 5 s window holds the call.
        (n == 3.0 && rate > 50.0).then_some((n, rate))
    });
    let (n, rate) = seen.unwrap_or_else(|| {
        panic!(
            "Prometheus did not see 3 participants and 50 packets/s going out within 20 s: {:?} / {:?}",
            prom.query(participants),
            prom.query(out_rate)
        )
    });
    println!("Prometheus: {n} participants, {rate:.0} packets/s out");
    assert_eq!(prom.scalar("up{job=\"switchboard\"}"), Some(1.0));
    assert_eq!(prom.scalar("sum(switchboard_participants{job=\"switchboard\", kind=\"rtp\"})"), Some(3.0));

    // Leg c's receiver reports reach the quality histograms: its claimed 5 % loss, and a round
    // trip measured from the SRs it echoes, short on loopback.
    let reports = "sum(switchboard_receiver_loss_ratio_count{job=\"switchboard\", kind=\"rtp\"})";
    let rtts = "sum(switchboard_rtt_seconds_count{job=\"switchboard\", kind=\"rtp\"})";
    let quality = poll_until(Duration::from_secs(10), || {
        (prom.scalar(reports)? >= 2.0 && prom.scalar(rtts)? >= 1.0).then_some(())
    });
    assert!(quality.is_some(), "no receiver reports counted: {:?} {:?}", prom.query(reports), prom.query(rtts));
    let loss_bucket = "sum(switchboard_receiver_loss_ratio_bucket{job=\"switchboard\", kind=\"rtp\", le=\"0.02\"})";
    assert_eq!(prom.scalar(loss_bucket), Some(0.0), "every report claimed 5 %, none 2 % or less");
    let rtt_fast = "sum(switchboard_rtt_seconds_bucket{job=\"switchboard\", kind=\"rtp\", le=\"0.1\"}) \
                    / sum(switchboard_rtt_seconds_count{job=\"switchboard\", kind=\"rtp\"})";
    assert_eq!(prom.scalar(rtt_fast), Some(1.0), "a loopback round trip over 100 ms");

    // The alert rules are loaded and evaluate cleanly against the live series.
    let rules = prom.api("rules", &[]).unwrap_or_else(|e| panic!("{e}"));
    let loaded: Vec<&Value> =
        rules["groups"].as_array().into_iter().flatten().flat_map(|g| g["rules"].as_array().unwrap().iter()).collect();
    assert_eq!(loaded.len(), alert_exprs().len(), "{rules}");
    let health = poll_until(Duration::from_secs(5), || {
        let data = prom.api("rules", &[]).ok()?;
        let all: Vec<Value> = data["groups"][0]["rules"].as_array()?.clone();
        all.iter().all(|r| r["health"] == "ok").then_some(all)
    });
    assert!(health.is_some(), "a rule does not evaluate: {}", prom.api("rules", &[]).unwrap_or_default());
    // Nothing is wrong with this node, so nothing fires (a pending alert would show up here).
    let alerts = prom.api("alerts", &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(alerts["alerts"].as_array().map(Vec::len), Some(0), "{alerts}");

    // Every dashboard expression is valid PromQL and finds data for the call.
    for expr in dashboard_exprs().iter().filter(|e| !e.starts_with("label_values")) {
        let q = as_grafana_sends(expr);
        prom.query(&q).unwrap_or_else(|e| panic!("the dashboard's {q:?} does not run: {e}"));
    }
    let by_kind = prom
        .query(&as_grafana_sends("sum by (kind) (switchboard_participants{job=~\"$job\", instance=~\"$instance\"})"));
    assert!(by_kind.is_ok_and(|v| v.iter().any(|s| s["metric"]["kind"] == "rtp" && s["value"][1] == "3")));
    for leg in legs.iter_mut().filter_map(Option::take) {
        leg.wait();
    }
}
