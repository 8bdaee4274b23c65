//! schemathesis (PyPI) against the live daemon, from docs/openapi.yaml: OpenAPI's examples, then
//! its coverage cases (boundary and negative values), then fuzzing, all with an admin token. No
//! request may get a 5xx, and every 4xx must carry the JSON error body (`error.code`,
//! `error.message`), a check of our own in `schemathesis/hooks.py`.
//!
//! The event stream is left out: it answers with a stream that never ends. The installed
//! schemathesis is `integration-tests/.venv-schemathesis` (`scripts/install-deps.sh --test`), or
//! `$SWITCHBOARD_SCHEMATHESIS`.

use std::path::PathBuf;
use std::process::Command;

use switchboard_integration_tests::*;

fn st() -> PathBuf {
    let st = std::env::var_os("SWITCHBOARD_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join(".venv-schemathesis/bin/st"));
    assert!(
        st.is_file(),
        "{} not found: scripts/install-deps.sh --test installs schemathesis in integration-tests/.venv-schemathesis",
        st.display()
    );
    st
}

#[test]
fn schemathesis_finds_no_5xx_and_a_json_error_body_on_every_4xx() {
    let st = st();
    let mut d = Daemon::start();
    let out = Command::new(&st)
        .current_dir(workspace_root())
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", crate_dir().join("schemathesis"))
        .env("NO_COLOR", "1")
        .args(["run", "docs/openapi.yaml", "--url", &d.base_url])
        .args(["-H", &format!("Authorization: Bearer {}", admin_token())])
        .args(["--phases", "examples,coverage,fuzzing", "--max-examples", "25", "--workers", "1"])
        .args(["--checks", "not_a_server_error,error_body_on_4xx"])
        .args(["--exclude-path", "/v1/rooms/{room}/events"])
        .output()
        .expect("run schemathesis");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    // It ran for real: the phases ran and sent hundreds of requests.
    let generated = text
        .lines()
        .find_map(|l| l.trim().split_once(" generated").and_then(|(n, _)| n.trim().parse::<u64>().ok()))
        .unwrap_or_else(|| panic!("no count of generated cases:\n{text}"));
    assert!(generated >= 300, "only {generated} cases:\n{text}");
    for phase in ["Examples", "Coverage", "Fuzzing"] {
        assert!(text.contains(&format!("✅ {phase}")), "{phase} did not pass:\n{text}");
    }
    println!("schemathesis: {generated} cases");

    // The daemon is still whole, and nothing it was sent made it panic.
    assert_eq!(d.get_text("/healthz").0, 200);
    let status = d.stop();
    assert!(status.is_some_and(|s| s.success()), "exit {status:?}");
    assert!(!d.log().contains("panicked"), "{}", d.log_tail(40));
}
