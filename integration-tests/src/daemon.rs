//! The real daemon: started on its own ports with a written config, healthy before a test sees
//! it, and stopped (its log kept and shown) when the test ends.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Config;
use crate::http::default_agent;
use crate::paths::daemon_bin;
use crate::ports::{reserve_ports, PortBlock};
use crate::process::last_lines;

/// A running `switchboard` daemon. Stopped (SIGTERM, then SIGKILL) when dropped; if the test is
/// panicking, the tail of its log is printed.
pub struct Daemon {
    child: Option<Child>,
    pub ports: PortBlock,
    pub config: Config,
    pub base_url: String,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
    dir: Option<tempfile::TempDir>,
    pub(crate) agent: ureq::Agent,
}

impl Daemon {
    /// Start with the default test config.
    pub fn start() -> Daemon {
        Daemon::start_with(|_| {})
    }

    /// Start with the default test config changed by `f`, e.g.
    /// `Daemon::start_with(|c| { c.set("rooms", "auto_create", false); })`.
    pub fn start_with(f: impl FnOnce(&mut Config)) -> Daemon {
        match Daemon::try_start_with(f) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Daemon::start_with`], with `env` set in the daemon's environment (`RUST_LOG`,
    /// or `SWITCHBOARD_*` variables a test means to pass).
    pub fn start_with_env(env: &[(&str, &str)], f: impl FnOnce(&mut Config)) -> Daemon {
        Daemon::try_start_with_env(env, f).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Daemon::start_with`], returning what went wrong instead of panicking.
    pub fn try_start_with(f: impl FnOnce(&mut Config)) -> Result<Daemon, String> {
        Daemon::try_start_with_env(&[], f)
    }

    fn try_start_with_env(env: &[(&str, &str)], f: impl FnOnce(&mut Config)) -> Result<Daemon, String> {
        let bin = daemon_bin();
        if !bin.is_file() {
            return Err(format!(
                "daemon binary {} not found: build it first (`cargo build -p switchboard`) or set SWITCHBOARD_BIN",
                bin.display()
            ));
        }
        let ports = reserve_ports();
        let mut config = Config::for_ports(&ports);
        let dir = tempfile::Builder::new().prefix("switchboard-it-").tempdir().map_err(|e| e.to_string())?;
        // Recordings go into the daemon's own temp dir unless the test says where.
        config.set("egress", "dir", dir.path().join("egress").to_string_lossy().into_owned());
        f(&mut config);
        let config_path = dir.path().join("switchboard.toml");
        let log_path = dir.path().join("switchboard.log");
        fs::write(&config_path, config.to_toml()).map_err(|e| e.to_string())?;
        let log = File::create(&log_path).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&bin);
        // The daemon reads SWITCHBOARD_* variables as config overrides: the test's config is
        // the whole truth, so none of the harness's own (SWITCHBOARD_BIN, ...) may leak in.
        // RUST_LOG too: a test's log is what its config (or `env`) says.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SWITCHBOARD_") || k == "RUST_LOG" {
                cmd.env_remove(&k);
            }
        }
        cmd.envs(env.iter().copied());
        // A session of its own, as a service has: the scheduler's autogroups share the CPU
        // between sessions, and in the test's session the daemon would share one share with
        // every peer the test runs and any flooder it starts (tests/flood.rs). Out of the
        // test's session, a Ctrl-C no longer reaches it, so it is told to stop when the test
        // process goes, however it goes.
        // SAFETY: setsid and prctl are async-signal-safe, the only calls the child makes between
        // fork and exec, and they touch no memory of the parent's.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::setsid();
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .arg("--config")
            .arg(&config_path)
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let http_host = config
            .get("http", "listen")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("127.0.0.1:{}", ports.http));
        let mut d = Daemon {
            child: Some(child),
            ports,
            config,
            base_url: format!("http://{http_host}"),
            log_path,
            config_path,
            dir: Some(dir),
            agent: default_agent(),
        };
        d.wait_healthy(Duration::from_secs(10))?;
        Ok(d)
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "switchboard exited during start-up with {status}\nconfig:\n{}\nlog:\n{}",
                    self.config.to_toml(),
                    self.log_tail(100)
                ));
            }
            match self.agent.get(&self.url("/healthz")).timeout(Duration::from_secs(1)).call() {
                Ok(r) if r.status() == 200 => return Ok(()),
                Ok(r) => last = format!("status {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "switchboard did not answer GET /healthz with 200 within {timeout:?} (last: {last})\nlog:\n{}",
            self.log_tail(100)
        ))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Worker 0's WebRTC port, which every WebRTC participant in its rooms shares.
    pub fn webrtc_port(&self) -> u16 {
        self.ports.webrtc
    }

    /// The WebRTC port of the worker that holds `room` (which must exist).
    pub fn webrtc_port_of(&self, room: &str) -> u16 {
        self.ports.webrtc + self.worker_of(room) as u16
    }

    /// The media worker that holds `room`, as its view says.
    pub fn worker_of(&self, room: &str) -> u64 {
        let (s, v) = self.get_json(&format!("/v1/rooms/{room}"));
        assert_eq!(s, 200, "GET /v1/rooms/{room}: {v}");
        v["worker"].as_u64().unwrap_or_else(|| panic!("room {room} names no worker: {v}"))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` if the daemon has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log(&self) -> String {
        fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        last_lines(&self.log(), lines)
    }

    /// Sends SIGTERM and returns at once: the daemon starts draining (see `node.drain_timeout_secs`).
    pub fn terminate(&self) {
        if let Some(child) = self.child.as_ref() {
            // SAFETY: signalling our own child by its pid; it has not been reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }

    /// `kill -9`: the daemon gets no chance to say goodbye (a crashed node). Reaped at once.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the daemon to exit by itself; its status, or `None` if it has not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.exited() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stop the daemon now (SIGTERM, then SIGKILL after 5 s) and return how it exited.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.id() as libc::pid_t;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        // SAFETY: signalling our own child by its pid; it has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("switchboard (pid {pid}) ignored SIGTERM for 5 s; sending SIGKILL");
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let status = self.stop();
        let keep = std::env::var_os("SWITCHBOARD_IT_KEEP").is_some();
        if thread::panicking() {
            eprintln!(
                "---- switchboard log tail ({}, exit {:?}) ----\n{}\n---- end of switchboard log ----",
                self.log_path.display(),
                status,
                self.log_tail(80)
            );
        }
        if keep || thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let p = dir.keep();
                eprintln!("kept switchboard test dir {}", p.display());
            }
        }
    }
}
