//! The Docker files, checked without an engine (none runs here): pinned base images, a locked
//! build, a non-root user, a health check on /healthz, a restart policy on every compose service,
//! every file a service mounts present, and the dashboard provisioned where Grafana looks.

use std::fs;

use switchboard_integration_tests::*;

fn read(rel: &str) -> String {
    let p = workspace_root().join(rel);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `image:tag` is pinned: a tag with a version number, never `latest` or none.
fn pinned(image: &str) -> bool {
    let tag = image.split('@').next().unwrap_or(image).rsplit_once(':').map(|(_, t)| t);
    tag.is_some_and(|t| t != "latest" && t.chars().any(|c| c.is_ascii_digit()))
}

#[test]
fn the_dockerfile_is_pinned_locked_unprivileged_and_health_checked() {
    let file = read("docker/Dockerfile");
    let froms: Vec<&str> = file.lines().filter_map(|l| l.strip_prefix("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage: {froms:?}");
    for from in &froms {
        let image = from.split_whitespace().next().unwrap();
        assert!(pinned(image), "FROM {image} is not pinned to a version");
    }
    assert!(file.contains("cargo build --locked --release"), "the build must use Cargo.lock as it is");
    let user = file.lines().filter_map(|l| l.strip_prefix("USER ")).next_back().expect("a USER line");
    assert!(!["root", "0"].contains(&user.trim()), "runs as {user}");
    let health = file.split("HEALTHCHECK").nth(1).expect("a HEALTHCHECK");
    assert!(health.contains("/healthz"), "{health}");
    for copied in file.lines().filter_map(|l| l.strip_prefix("COPY ")).filter(|l| !l.contains("--from")) {
        let src = copied.split_whitespace().rev().nth(1).unwrap();
        if src != "." {
            assert!(workspace_root().join(src).exists(), "COPY {src}: no such file");
        }
    }
    let ignore = read(".dockerignore");
    for kept_out in [".git", "**/target", "integration-tests/node_modules"] {
        assert!(ignore.lines().any(|l| l.trim() == kept_out), ".dockerignore lacks {kept_out}");
    }
}

#[test]
fn compose_restarts_every_service_and_provisions_the_dashboard() {
    let text = read("docker/compose.yml");
    let doc: serde_norway::Value = serde_norway::from_str(&text).expect("compose.yml is YAML");
    let services = doc["services"].as_mapping().expect("services");
    for name in ["switchboard", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "no service {name}");
    }
    let docker_dir = workspace_root().join("docker");
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        assert!(svc["restart"].as_str().is_some_and(|r| r != "no"), "{name} has no restart policy");
        if let Some(image) = svc["image"].as_str().filter(|_| svc.get("build").is_none()) {
            assert!(pinned(image), "{name}: image {image} is not pinned");
        }
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let host = v.as_str().unwrap().split(':').next().unwrap();
            if host.starts_with('.') {
                assert!(docker_dir.join(host).exists(), "{name} mounts {host}, which does not exist");
            }
        }
    }
    let env = &services["switchboard"]["environment"];
    for key in ["SWITCHBOARD_WEBRTC__ADVERTISED_IPS", "SWITCHBOARD_RTP__ADVERTISED_IP", "SWITCHBOARD_AUTH__KEYS__LOCAL"]
    {
        assert!(env.get(key).is_some(), "switchboard's environment lacks {key}");
    }
    assert!(
        text.lines().take(25).any(|l| l.contains("advertised")),
        "the top of compose.yml explains the advertised addresses"
    );

    // Grafana finds the dashboard where its provider looks, and Prometheus the rules it loads.
    let provider = read("docker/grafana/provisioning/dashboards/switchboard.yml");
    let grafana_mounts: Vec<&str> =
        services["grafana"]["volumes"].as_sequence().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(
        grafana_mounts.iter().any(|m| m.starts_with("../monitoring/grafana:/var/lib/grafana/dashboards")),
        "{grafana_mounts:?}"
    );
    assert!(provider.contains("path: /var/lib/grafana/dashboards"), "{provider}");
    let prom = read("docker/prometheus.yml");
    assert!(prom.contains("/etc/prometheus/alerts.yml"), "{prom}");
    assert!(prom.contains("127.0.0.1:9100") && text.contains("SWITCHBOARD_METRICS__LISTEN: 127.0.0.1:9100"));
}
