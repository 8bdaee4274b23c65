//! The Debian package (`make deb`, cargo-deb): it holds the binary, the packaged config as a
//! conffile, a hardened systemd unit that `systemd-analyze verify` accepts, the maintainer scripts
//! that create the `switchboard` user, and the docs; and the binary taken out of it starts on the
//! packaged config, answers `/healthz` and stops on SIGTERM.
//!
//! The package is built here from the debug binary the suite already has (`cargo deb
//! --no-build --profile dev --fast`): a release build would take minutes, and what is checked
//! (the layout, the unit, the config, start and stop) does not depend on the profile. `make deb`
//! packages the release binary the same way. Building it still takes half a minute (stripping
//! and compressing the binary), so one test builds it and checks it all, part by part.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The package, built once per test process into a temp dir that lives as long as it.
fn deb() -> &'static Path {
    static DEB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DEB.get_or_init(|| {
        require_tool("dpkg-deb", "dpkg");
        let probe = Command::new("cargo").args(["deb", "--version"]).output();
        assert!(
            probe.is_ok_and(|o| o.status.success()),
            "cargo-deb is missing: scripts/install-deps.sh --test installs it (cargo install cargo-deb --locked)"
        );
        let bin = daemon_bin();
        assert!(bin.is_file(), "{} not built", bin.display());
        // cargo-deb finds the binary under <target dir>/<profile>/: the one the tests run.
        let target_dir = bin.parent().and_then(Path::parent).expect("<target>/debug/switchboard").to_path_buf();
        let dir = tempfile::Builder::new().prefix("switchboard-deb-").tempdir().unwrap();
        run(Command::new("cargo")
            .current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", &target_dir)
            .args(["deb", "--no-build", "--profile", "dev", "--fast", "--output"])
            .arg(dir.path()));
        let deb = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .expect("cargo deb wrote no .deb");
        (dir, deb)
    });
    path
}

fn dpkg_deb(args: &[&str]) -> String {
    run(Command::new("dpkg-deb").args(args).arg(deb()))
}

/// The package's files, extracted.
fn extracted() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("switchboard-deb-x-").tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("-x").arg(deb()).arg(dir.path()));
    dir
}

/// The unit's path inside the package (cargo-deb puts it under /lib or /usr/lib).
fn unit_path(root: &Path) -> PathBuf {
    ["lib/systemd/system/switchboard.service", "usr/lib/systemd/system/switchboard.service"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no switchboard.service under {}", root.display()))
}

#[test]
fn the_debian_package() {
    holds_the_binary_the_unit_the_conffile_and_the_docs();
    let root = extracted();
    the_unit_is_hardened_and_systemd_analyze_verify_accepts_it(root.path());
    the_packaged_binary_starts_on_the_packaged_config_and_stops_on_sigterm(root.path());
}

fn holds_the_binary_the_unit_the_conffile_and_the_docs() {
    let name = deb().file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("switchboard_") && name.ends_with("_amd64.deb"), "{name}");
    let info = dpkg_deb(&["--info"]);
    assert!(info.contains("Package: switchboard"), "{info}");
    for dep in ["passwd", "gstreamer1.0-plugins-good", "libgstreamer1.0-0"] {
        assert!(info.contains(dep), "Depends lacks {dep}: {info}");
    }
    for member in ["conffiles", "postinst", "postrm"] {
        assert!(info.contains(member), "no {member} in the control archive: {info}");
    }
    let conffiles = run(Command::new("dpkg-deb").arg("--info").arg(deb()).arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/switchboard/switchboard.toml");

    let contents = dpkg_deb(&["--contents"]);
    for file in [
        "./usr/bin/switchboard",
        "./etc/switchboard/switchboard.toml",
        "systemd/system/switchboard.service",
        "./usr/share/doc/switchboard/operations.md",
        "./usr/share/doc/switchboard/configuration.md",
        "./usr/share/doc/switchboard/openapi.yaml",
        "./usr/share/switchboard/monitoring/grafana/switchboard.json",
        "./usr/share/switchboard/monitoring/prometheus/alerts.yml",
    ] {
        assert!(contents.contains(file), "{file} not in the package:\n{contents}");
    }
    // The config is readable by root and the daemon's group only (it may hold keys).
    let config_line = contents.lines().find(|l| l.ends_with("./etc/switchboard/switchboard.toml")).unwrap();
    assert!(config_line.starts_with("-rw-r-----"), "{config_line}");

    let postinst = run(Command::new("dpkg-deb").arg("--info").arg(deb()).arg("postinst"));
    assert!(postinst.contains("useradd --system") && postinst.contains(" switchboard"), "{postinst}");
    assert!(postinst.contains("SWITCHBOARD_AUTH__KEYS__LOCAL") && postinst.contains("/dev/urandom"), "{postinst}");
    assert!(!postinst.contains("#DEBHELPER#"), "cargo-deb left the placeholder: {postinst}");
    assert!(postinst.contains("deb-systemd-helper"), "no systemd snippet: {postinst}");
}

fn the_unit_is_hardened_and_systemd_analyze_verify_accepts_it(root: &Path) {
    let unit_file = unit_path(root);
    let unit = fs::read_to_string(&unit_file).unwrap();
    let config = fs::read_to_string(root.join("etc/switchboard/switchboard.toml")).unwrap();
    let open_files = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("open_files = "))
        .expect("the packaged config sets node.open_files");
    for line in [
        "User=switchboard",
        "Restart=on-failure",
        &format!("LimitNOFILE={open_files}"),
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=\n",
        "AmbientCapabilities=\n",
        "ExecStart=/usr/bin/switchboard --config /etc/switchboard/switchboard.toml",
    ] {
        assert!(unit.contains(line), "the unit lacks {line:?}:\n{unit}");
    }

    // systemd-analyze verify needs the unit's world: the binary (in the package) and the units it
    // is ordered against (the host's), under one root. Its warnings go to stderr with exit 0, so
    // any line about the unit fails the test too.
    require_tool("systemd-analyze", "systemd");
    let units = unit_file.parent().unwrap().to_path_buf();
    for host_units in ["/lib/systemd/system", "/usr/lib/systemd/system"] {
        let Ok(entries) = fs::read_dir(host_units) else { continue };
        for e in entries.filter_map(Result::ok) {
            let to = units.join(e.file_name());
            if !to.exists() && e.path().is_file() {
                let _ = fs::copy(e.path(), to);
            }
        }
    }
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--root"])
        .arg(root)
        .arg("switchboard.service")
        .output()
        .expect("run systemd-analyze");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "systemd-analyze verify failed:\n{text}");
    assert!(!text.contains("switchboard.service"), "systemd-analyze verify warns:\n{text}");
}

fn the_packaged_binary_starts_on_the_packaged_config_and_stops_on_sigterm(root: &Path) {
    let bin = root.join("usr/bin/switchboard");
    let config = root.join("etc/switchboard/switchboard.toml");
    // The way the unit gives it the key (its EnvironmentFile), under the harness's key name.
    let key = ("SWITCHBOARD_AUTH__KEYS__IT", TEST_SECRET);

    // As packaged, every address is loopback.
    let checked = run(Command::new(&bin).arg("--check-config").arg("--config").arg(&config).env(key.0, key.1));
    assert!(
        checked.contains("http.listen 127.0.0.1:8080") && checked.contains("webrtc.listen 127.0.0.1:3478"),
        "{checked}"
    );
    // Without the key the env file gives it, it refuses to start rather than run unprotected.
    let o = Command::new(&bin).arg("--check-config").arg("--config").arg(&config).env_remove(key.0).output().unwrap();
    assert!(!o.status.success(), "the packaged config started with no key");

    // On the test's ports, through the environment as an operator would override them.
    let ports = reserve_ports();
    let child = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .env(key.0, key.1)
        .env("SWITCHBOARD_HTTP__LISTEN", format!("127.0.0.1:{}", ports.http))
        .env("SWITCHBOARD_WEBRTC__LISTEN", format!("127.0.0.1:{}", ports.webrtc))
        .env("SWITCHBOARD_RTP__PORT_MIN", ports.rtp_min.to_string())
        .env("SWITCHBOARD_RTP__PORT_MAX", ports.rtp_max.to_string())
        .env("SWITCHBOARD_NODE__OPEN_FILES", "4096")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the packaged binary");
    let mut child = Reaped(child);
    let base = format!("http://127.0.0.1:{}", ports.http);
    let healthy = poll_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", ports.http)).ok()?;
        let r = raw_http_with(&base, "GET", "/healthz", &[], b"");
        (r.status == 200).then_some(r.body)
    });
    assert!(healthy.is_some(), "the packaged binary did not answer /healthz within 10 s");
    // The key from the environment is the one it checks tokens with.
    assert_eq!(raw_http_with(&base, "GET", "/v1/rooms", &[], b"").status, 401);
    let admin = Some(format!("Authorization: Bearer {}", admin_token()));
    assert_eq!(raw_http_with(&base, "GET", "/v1/rooms", &[admin], b"").status, 200);

    run(Command::new("kill").arg("-TERM").arg(child.0.id().to_string()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = status.expect("the packaged binary ignored SIGTERM for 10 s");
    assert!(status.success(), "it exited {status} on SIGTERM");
}

/// The packaged binary's process, killed if the test ends (or fails) before it has exited.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
