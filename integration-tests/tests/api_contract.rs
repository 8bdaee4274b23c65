//! The API against its own description: every route `switchboard routes` lists is in
//! docs/openapi.yaml and every path and method there is a route; a wrong method gets the JSON
//! error body with `Allow`; a JSON body error names its field; a 201 says where the new resource
//! is; `--check-config` checks a config and exits; and the config file is optional.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use switchboard_integration_tests::*;

/// Routes that exist only when a test turns them on (`debug.*`): not part of the contract.
const TEST_ONLY: &[&str] = &["POST /v1/debug/stall"];

/// The methods OpenAPI names as operations of a path (other keys are `parameters`, `summary`...).
const OPERATIONS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn routes() -> BTreeSet<String> {
    let out = Command::new(daemon_bin()).arg("routes").output().expect("run switchboard routes");
    assert!(out.status.success(), "switchboard routes: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .filter(|r| !TEST_ONLY.contains(&r.as_str()))
        .collect()
}

fn described() -> BTreeSet<String> {
    let path = workspace_root().join("docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: serde_norway::Value = serde_norway::from_str(&text).expect("docs/openapi.yaml is YAML");
    let paths = doc["paths"].as_mapping().expect("openapi.yaml has paths");
    let mut out = BTreeSet::new();
    for (p, item) in paths {
        let p = p.as_str().expect("a path is a string");
        let item = item.as_mapping().unwrap_or_else(|| panic!("{p}: not a mapping"));
        for method in item.keys().filter_map(|k| k.as_str()).filter(|k| OPERATIONS.contains(k)) {
            out.insert(format!("{} {p}", method.to_ascii_uppercase()));
        }
    }
    out
}

#[test]
fn openapi_describes_every_route_and_only_routes() {
    let (routes, described) = (routes(), described());
    assert!(routes.len() >= 20 && described.len() >= 20, "too few: {routes:?} {described:?}");
    let undescribed: Vec<_> = routes.difference(&described).collect();
    let unrouted: Vec<_> = described.difference(&routes).collect();
    assert!(undescribed.is_empty(), "routes missing from docs/openapi.yaml: {undescribed:?}");
    assert!(unrouted.is_empty(), "docs/openapi.yaml describes what is no route: {unrouted:?}");
}

#[test]
fn a_wrong_method_is_405_with_the_error_body_and_allow() {
    let d = Daemon::start();
    for (method, path, allow) in [
        ("PUT", "/v1/rooms", ["GET", "POST"].as_slice()),
        ("POST", "/v1/rooms/r1", &["GET", "DELETE"]),
        ("DELETE", "/healthz", &["GET"]),
    ] {
        // No token: the method is refused before the token is read, and says so the same way.
        let r = raw_http_with(&d.base_url, method, path, &[], b"");
        assert_eq!(r.status, 405, "{method} {path}: {r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{method} {path}: {r:?}");
        assert_eq!(r.json()["error"]["code"], "method_not_allowed", "{method} {path}: {r:?}");
        let got: BTreeSet<&str> = r.header("allow").unwrap_or("").split(',').map(str::trim).collect();
        // axum lists HEAD beside GET: a GET route answers HEAD too.
        let want: BTreeSet<&str> = allow.iter().copied().collect();
        assert!(want.is_subset(&got), "{method} {path}: Allow {got:?}, want {want:?}");
    }
    // An unknown path stays 404.
    assert_api_error(&d.get_json("/v1/nothing"), 404, "not_found");
}

#[test]
fn a_json_body_error_names_its_field() {
    let d = Daemon::start();
    d.create_room("f1");
    let (s, v) = d.post_json("/v1/rooms/f1/participants", &json!({"kind": 5}));
    assert_api_error(&(s, v.clone()), 400, "bad_request");
    assert_eq!(v["error"]["field"], "kind", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("kind"), "{v}");
    let (s, v) = d.post_json("/v1/rooms", &json!({"id": "f2", "max_participants": "ten"}));
    assert_eq!((s, &v["error"]["field"]), (400, &json!("max_participants")), "{v}");
    let (s, v) = d.post_json("/v1/rooms", &json!({"id": "f3", "color": "red"}));
    assert_eq!((s, &v["error"]["field"]), (400, &json!("color")), "an unknown field is named: {v}");
    let r = raw_http_with(
        &d.base_url,
        "POST",
        "/v1/rooms",
        &[Some(format!("Authorization: Bearer {}", admin_token())), Some("Content-Type: application/json".into())],
        b"nope",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.json()["error"].get("field").is_none(), "JSON that does not parse names no field: {r:?}");
}

#[test]
fn a_201_says_where_the_new_resource_is() {
    let d = Daemon::start();
    let admin = format!("Authorization: Bearer {}", admin_token());
    let json_type = Some("Content-Type: application/json".to_string());
    let r = raw_http_with(&d.base_url, "POST", "/v1/rooms", &[Some(admin.clone()), json_type.clone()], b"{}");
    assert_eq!(r.status, 201, "{r:?}");
    let room = r.json()["id"].as_str().expect("the room's id").to_string();
    assert_eq!(r.header("location"), Some(format!("/v1/rooms/{room}").as_str()), "{r:?}");

    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=gw\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        phone.local_addr().unwrap().port()
    );
    let body = serde_json::to_vec(&json!({ "sdp": offer })).unwrap();
    let path = format!("/v1/rooms/{room}/participants");
    let r = raw_http_with(&d.base_url, "POST", &path, &[Some(admin), json_type], &body);
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().expect("the participant's id").to_string();
    let location = r.header("location").unwrap_or_else(|| panic!("no Location: {r:?}")).to_string();
    assert_eq!(location, format!("/v1/rooms/{room}/participants/{id}"));
    let (s, v) = d.get_json(&location);
    assert_eq!((s, v["id"].as_str()), (200, Some(id.as_str())), "GET Location: {v}");
}

fn check_config(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    let mut cmd = Command::new(daemon_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SWITCHBOARD_") || k == "RUST_LOG" {
            cmd.env_remove(&k);
        }
    }
    cmd.current_dir(dir).arg("--check-config").args(args).envs(env.iter().copied());
    cmd.output().expect("run switchboard --check-config")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn check_config_validates_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, format!("[http]\nlisten = \"127.0.0.1:1\"\n[auth.keys]\n{TEST_KID} = \"{TEST_SECRET}\"\n"))
        .unwrap();
    let o = check_config(&["--config", good.to_str().unwrap()], &[], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("config ok") && text(&o).contains("127.0.0.1:1"), "{}", text(&o));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[rtp]\nport_min = 5000\nport_max = 4000\n[auth]\nenabled = false\n").unwrap();
    let o = check_config(&["--config", bad.to_str().unwrap()], &[], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("rtp.port_min"), "the reason is named: {}", text(&o));

    // The file sets no filter: RUST_LOG is the filter, and a bad one is named.
    let o = check_config(&["--config", good.to_str().unwrap()], &[("RUST_LOG", "info,=[")], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("RUST_LOG"), "{}", text(&o));
    // A filter in the file wins over RUST_LOG, and is checked itself.
    let filtered = dir.path().join("filtered.toml");
    std::fs::write(&filtered, "[log]\nfilter = \"warn\"\n[auth]\nenabled = false\n").unwrap();
    let o = check_config(&["--config", filtered.to_str().unwrap()], &[("RUST_LOG", "info,=[")], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(&filtered, "[log]\nfilter = \"switchboard=loud\"\n[auth]\nenabled = false\n").unwrap();
    let o = check_config(&["--config", filtered.to_str().unwrap()], &[], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("log.filter"), "{}", text(&o));
}

#[test]
fn the_config_file_is_optional_unless_named() {
    let dir = tempfile::tempdir().unwrap();
    // An explicit path that is not there is a mistake, not a request for defaults.
    let o = check_config(&["--config", "/nonexistent/switchboard.toml"], &[], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("/nonexistent/switchboard.toml") && text(&o).contains("not found"), "{}", text(&o));
    // No --config, no config/switchboard.toml here: defaults and the environment serve.
    let key = ("SWITCHBOARD_AUTH__KEYS__OPS", TEST_SECRET);
    let o = check_config(&[], &[key, ("SWITCHBOARD_HTTP__LISTEN", "127.0.0.1:18080")], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("defaults and environment") && text(&o).contains("127.0.0.1:18080"), "{}", text(&o));
    // The defaults alone turn auth on with no key: that is refused, naming what to add.
    let o = check_config(&[], &[], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("[auth.keys]"), "{}", text(&o));
}
