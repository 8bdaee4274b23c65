//! Where the harness finds what it runs: the daemon binary, the peer scripts and their python,
//! and the canned fixtures.

use std::fs;
use std::path::PathBuf;

/// `integration-tests/` itself.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Cargo workspace root.
pub fn workspace_root() -> PathBuf {
    crate_dir().parent().expect("integration-tests has a parent").to_path_buf()
}

/// The daemon binary: `$SWITCHBOARD_BIN`, or `<workspace>/target/debug/switchboard`.
pub fn daemon_bin() -> PathBuf {
    match std::env::var_os("SWITCHBOARD_BIN") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/debug/switchboard"),
    }
}

/// A peer script under `integration-tests/peers/`.
pub fn peer_script(name: &str) -> PathBuf {
    crate_dir().join("peers").join(name)
}

/// The python that has `gi` and `numpy` (Debian's).
pub fn python() -> PathBuf {
    std::env::var_os("SWITCHBOARD_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/python3"))
}

/// A file under `integration-tests/tests/fixtures/`, read as text.
pub fn fixture(name: &str) -> String {
    let p = crate_dir().join("tests/fixtures").join(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}
