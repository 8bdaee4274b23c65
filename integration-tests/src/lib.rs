//! Integration-test harness for the Switchboard daemon.
//!
//! It starts the real `switchboard` binary with a generated config on ports nobody else uses,
//! talks to its HTTP API, follows its SSE event stream, runs real peers (GStreamer webrtcbin
//! through Python, headless Chromium through node + playwright-core) and analyses received audio.
//!
//! Nothing here is mocked: a test that uses this crate exercises the daemon over real sockets.
//!
//! Environment:
//! - `SWITCHBOARD_BIN`: the daemon binary (default `<workspace>/target/debug/switchboard`).
//! - `SWITCHBOARD_PYTHON`: the python for the GStreamer peer (default `/usr/bin/python3`,
//!   Debian's, which has `gi` and `numpy`).
//! - `SWITCHBOARD_IT_KEEP=1`: keep each daemon's temp dir (config + log) and print its path.

#![allow(unsafe_code, reason = "flock and kill through libc, on our own lock files and children")]

use std::borrow::BorrowMut;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use serde_json::{json, Value};

// ------------------------------------------------------------------------------------------
// Paths
// ------------------------------------------------------------------------------------------

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

/// A file under `integration-tests/tests/fixtures/`, read as text.
pub fn fixture(name: &str) -> String {
    let p = crate_dir().join("tests/fixtures").join(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

// ------------------------------------------------------------------------------------------
// Ports
// ------------------------------------------------------------------------------------------

/// Ports of one daemon: a block of [`PORT_BLOCK`] consecutive ports below the kernel's ephemeral
/// range, held under an `flock` for as long as the daemon lives, so tests in one process (threads)
/// and in several processes (parallel test binaries) never share one. The first port is the HTTP
/// (TCP) port, the second the WebRTC (UDP) port, the rest the RTP range.
pub const PORT_BLOCK: u16 = 64;
const PORT_BASE: u16 = 20000;
const PORT_BLOCKS: u32 = 180; // 20000 .. 31520, below 32768 (Linux's default ephemeral start)

pub struct PortBlock {
    pub http: u16,
    pub webrtc: u16,
    pub rtp_min: u16,
    pub rtp_max: u16,
    _lock: File,
}

impl std::fmt::Debug for PortBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PortBlock(http {}, webrtc {}, rtp {}-{})", self.http, self.webrtc, self.rtp_min, self.rtp_max)
    }
}

fn port_free_tcp(p: u16) -> bool {
    TcpListener::bind(("127.0.0.1", p)).is_ok()
}

fn port_free_udp(p: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", p)).is_ok()
}

/// Reserve a block of ports (see [`PortBlock`]).
pub fn reserve_ports() -> PortBlock {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let dir = std::env::temp_dir().join("switchboard-it-ports");
    fs::create_dir_all(&dir).expect("create port lock dir");
    // Start somewhere that depends on the pid and the time, so parallel processes spread out.
    let seed = std::process::id() ^ SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let _ = NEXT.compare_exchange(u32::MAX, seed % PORT_BLOCKS, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..PORT_BLOCKS * 2 {
        let idx = NEXT.fetch_add(1, Ordering::SeqCst) % PORT_BLOCKS;
        let base = PORT_BASE + (idx as u16) * PORT_BLOCK;
        let lock_path = dir.join(format!("{base}.lock"));
        let Ok(file) = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path) else {
            continue;
        };
        // SAFETY: flock on a file descriptor we own; released when the File is dropped or the
        // process dies.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            continue;
        }
        let all_free =
            port_free_tcp(base) && port_free_udp(base + 1) && (base + 2..base + PORT_BLOCK).all(port_free_udp);
        if !all_free {
            continue; // something outside the harness uses it; the lock is dropped here
        }
        return PortBlock {
            http: base,
            webrtc: base + 1,
            rtp_min: base + 2,
            rtp_max: base + PORT_BLOCK - 1,
            _lock: file,
        };
    }
    panic!(
        "no free block of {PORT_BLOCK} ports in {PORT_BASE}..{}",
        PORT_BASE as u32 + PORT_BLOCKS * PORT_BLOCK as u32
    );
}

// ------------------------------------------------------------------------------------------
// Config
// ------------------------------------------------------------------------------------------

/// The daemon's TOML config as `section -> key -> value`. Values are JSON values rendered as
/// TOML (strings, numbers, booleans and arrays of those render the same in both).
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub sections: BTreeMap<String, BTreeMap<String, Value>>,
}

impl Config {
    /// The default test config for a reserved port block.
    pub fn for_ports(p: &PortBlock) -> Config {
        let mut c = Config::default();
        c.set("http", "listen", format!("127.0.0.1:{}", p.http));
        c.set("webrtc", "listen", format!("127.0.0.1:{}", p.webrtc));
        c.set("webrtc", "advertised_ips", json!(["127.0.0.1"]));
        c.set("rtp", "bind_ip", "127.0.0.1");
        c.set("rtp", "advertised_ip", "127.0.0.1");
        c.set("rtp", "port_min", p.rtp_min);
        c.set("rtp", "port_max", p.rtp_max);
        c.set("rtp", "symmetric", true);
        c.set("media", "inactivity_timeout_secs", 30);
        c.set("rooms", "auto_create", true);
        c.set("rooms", "max_participants", 100);
        c.set("rooms", "empty_timeout_secs", 60);
        c.set("mixer", "speakers", 3);
        c.set("mixer", "jitter_buffer_ms", 40);
        c.set("log", "filter", "info");
        c
    }

    /// Set (or override) one key.
    pub fn set(&mut self, section: &str, key: &str, value: impl Into<Value>) -> &mut Self {
        self.sections.entry(section.to_string()).or_default().insert(key.to_string(), value.into());
        self
    }

    /// Remove one key (to test the daemon's default).
    pub fn remove(&mut self, section: &str, key: &str) -> &mut Self {
        if let Some(s) = self.sections.get_mut(section) {
            s.remove(key);
        }
        self
    }

    pub fn get(&self, section: &str, key: &str) -> Option<&Value> {
        self.sections.get(section).and_then(|s| s.get(key))
    }

    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for (name, keys) in &self.sections {
            out.push_str(&format!("[{name}]\n"));
            for (k, v) in keys {
                assert!(!matches!(v, Value::Object(_) | Value::Null), "config {name}.{k}: tables/null not supported");
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        out
    }
}

// ------------------------------------------------------------------------------------------
// Daemon
// ------------------------------------------------------------------------------------------

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
    agent: ureq::Agent,
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

    /// Like [`Daemon::start_with`], returning what went wrong instead of panicking.
    pub fn try_start_with(f: impl FnOnce(&mut Config)) -> Result<Daemon, String> {
        let bin = daemon_bin();
        if !bin.is_file() {
            return Err(format!(
                "daemon binary {} not found: build it first (`cargo build -p switchboard`) or set SWITCHBOARD_BIN",
                bin.display()
            ));
        }
        let ports = reserve_ports();
        let mut config = Config::for_ports(&ports);
        f(&mut config);
        let dir = tempfile::Builder::new().prefix("switchboard-it-").tempdir().map_err(|e| e.to_string())?;
        let config_path = dir.path().join("switchboard.toml");
        let log_path = dir.path().join("switchboard.log");
        fs::write(&config_path, config.to_toml()).map_err(|e| e.to_string())?;
        let log = File::create(&log_path).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&bin);
        // The daemon reads SWITCHBOARD_* variables as config overrides: the test's config is
        // the whole truth, so none of the harness's own (SWITCHBOARD_BIN, ...) may leak in.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SWITCHBOARD_") {
                cmd.env_remove(&k);
            }
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
        let agent =
            ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(2)).timeout(Duration::from_secs(15)).build();
        let mut d = Daemon {
            child: Some(child),
            ports,
            config,
            base_url: format!("http://{http_host}"),
            log_path,
            config_path,
            dir: Some(dir),
            agent,
        };
        d.wait_healthy(Duration::from_secs(10))?;
        Ok(d)
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
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

    /// The UDP port all WebRTC participants share.
    pub fn webrtc_port(&self) -> u16 {
        self.ports.webrtc
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
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    // ---- HTTP helpers: (status, body as JSON; Null when empty, a String when not JSON) ----

    pub fn get_json(&self, path: &str) -> (u16, Value) {
        http_call(&self.agent, "GET", &self.url(path), None)
    }
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        http_call(&self.agent, "POST", &self.url(path), Some(body))
    }
    pub fn patch_json(&self, path: &str, body: &Value) -> (u16, Value) {
        http_call(&self.agent, "PATCH", &self.url(path), Some(body))
    }
    pub fn delete(&self, path: &str) -> (u16, Value) {
        http_call(&self.agent, "DELETE", &self.url(path), None)
    }
    /// GET returning the raw text (e.g. `/metrics`).
    pub fn get_text(&self, path: &str) -> (u16, String) {
        match self.agent.get(&self.url(path)).call() {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }
    /// A raw request over a fresh TCP connection; see [`raw_http`].
    pub fn raw(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> RawResponse {
        raw_http(&self.base_url, method, path, content_type, body)
    }

    /// Join `room` with an SDP offer; panics unless the answer is 201 with an `sdp`.
    pub fn join(&self, room: &str, offer: &str) -> Value {
        let (s, v) = self.post_json(&format!("/v1/rooms/{room}/participants"), &json!({ "sdp": offer }));
        assert_eq!(s, 201, "join {room}: expected 201, got {s} {v}");
        assert!(v["sdp"].is_string(), "join {room}: response has no sdp: {v}");
        v
    }

    /// Follow `/v1/rooms/{room}/events`.
    pub fn events(&self, room: &str) -> SseClient {
        SseClient::connect(&self.base_url, &format!("/v1/rooms/{room}/events"))
    }

    /// Create `room` (`POST /v1/rooms`); panics unless the answer is 201.
    pub fn create_room(&self, room: &str) {
        let (s, v) = self.post_json("/v1/rooms", &json!({ "id": room }));
        assert_eq!(s, 201, "create room {room}: expected 201, got {s} {v}");
    }

    /// Create `room` and follow its events from the start ([`Daemon::events`]); panics unless
    /// the room was created (201) and the event stream answered 200.
    pub fn create_and_follow(&self, room: &str) -> SseClient {
        self.create_room(room);
        let sse = self.events(room);
        assert_eq!(sse.status, 200, "GET /v1/rooms/{room}/events");
        sse
    }

    /// One participant's view (`GET /v1/rooms/{room}/participants/{id}`); panics unless it is 200.
    pub fn participant(&self, room: &str, id: &str) -> Value {
        let (s, v) = self.get_json(&format!("/v1/rooms/{room}/participants/{id}"));
        assert_eq!(s, 200, "GET participant {id}: {v}");
        v
    }

    /// The ids of `room`'s participants, sorted; panics unless `GET /v1/rooms/{room}` is 200.
    pub fn participants_of(&self, room: &str) -> Vec<String> {
        let (s, v) = self.get_json(&format!("/v1/rooms/{room}"));
        assert_eq!(s, 200, "GET room {room}: {v}");
        participant_ids(&v)
    }

    /// Starts peer `script` (see [`spawn_peer`]) joining `room` of this daemon as `name`
    /// (`--api`, `--room`, `--display-name`), with the `extra` arguments after those.
    pub fn join_peer(
        &self,
        script: &str,
        room: &str,
        name: &str,
        extra: &[impl AsRef<str>],
        timeout: Duration,
    ) -> PeerHandle {
        let mut args = vec!["--api", &self.base_url, "--room", room, "--display-name", name];
        args.extend(extra.iter().map(AsRef::as_ref));
        spawn_peer(script, &args, timeout)
    }

    /// The one among `ids` (participants of `room`) whose display name is `name`.
    pub fn participant_named(&self, room: &str, ids: &[String], name: &str) -> String {
        ids.iter()
            .find(|id| self.participant(room, id)["display_name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no participant named {name} among {ids:?}"))
    }

    /// Waits up to `timeout` until `room` lists exactly `n` participants and returns their ids,
    /// sorted. Fails at once, with that peer's own report, if one of `peers` exits first (it
    /// could not join).
    pub fn wait_for_participants(
        &self,
        room: &str,
        n: usize,
        peers: &mut [impl BorrowMut<Option<PeerHandle>>],
        timeout: Duration,
    ) -> Vec<String> {
        let got = poll_until(timeout, || {
            let (s, v) = self.get_json(&format!("/v1/rooms/{room}"));
            if s == 200 && participant_ids(&v).len() == n {
                return Some(Ok(participant_ids(&v)));
            }
            peers.iter_mut().position(|p| p.borrow_mut().as_mut().is_some_and(PeerHandle::finished)).map(Err)
        });
        match got {
            Some(Ok(ids)) => ids,
            Some(Err(i)) => {
                let out = peers[i].borrow_mut().take().unwrap().wait();
                panic!("peer #{i} ({}) ended before room {room} had {n} participants: {}", out.script, out.describe())
            }
            None => panic!("room {room} never had {n} participants: {:?}", self.get_json(&format!("/v1/rooms/{room}"))),
        }
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

// ------------------------------------------------------------------------------------------
// HTTP
// ------------------------------------------------------------------------------------------

fn body_to_json(text: String) -> Value {
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

/// One JSON request. Returns (status, body); panics only on transport errors.
pub fn http_call(agent: &ureq::Agent, method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let req = agent.request(method, url);
    let res = match body {
        Some(b) => req.send_json(b.clone()),
        None => req.call(),
    };
    match res {
        Ok(r) => (r.status(), body_to_json(r.into_string().unwrap_or_default())),
        Err(ureq::Error::Status(s, r)) => (s, body_to_json(r.into_string().unwrap_or_default())),
        Err(e) => panic!("{method} {url}: transport error: {e}"),
    }
}

fn default_agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(2)).timeout(Duration::from_secs(15)).build()
}

pub fn get_json(url: &str) -> (u16, Value) {
    http_call(&default_agent(), "GET", url, None)
}
pub fn post_json(url: &str, body: &Value) -> (u16, Value) {
    http_call(&default_agent(), "POST", url, Some(body))
}
pub fn patch_json(url: &str, body: &Value) -> (u16, Value) {
    http_call(&default_agent(), "PATCH", url, Some(body))
}
pub fn delete(url: &str) -> (u16, Value) {
    http_call(&default_agent(), "DELETE", url, None)
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Set when the upload could not be completed (the server answered and closed early).
    pub write_error: Option<String>,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        body_to_json(self.body.clone())
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP/1.1 request on a fresh connection (`Connection: close`). Unlike an HTTP client
/// library it keeps reading after a failed upload, so an early answer to an oversized body
/// (413) is still seen. Panics if no status line could be read.
pub fn raw_http(base_url: &str, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> RawResponse {
    let host = base_url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(15))).ok();
    s.set_write_timeout(Some(Duration::from_secs(15))).ok();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    let mut write_error = None;
    if let Err(e) = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body)) {
        write_error = Some(e.to_string());
    }
    let mut raw = Vec::new();
    let read_res = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        panic!(
            "{method} {path}: no HTTP response (read: {read_res:?}, write error: {write_error:?}, got {} bytes: {:?})",
            raw.len(),
            &text[..text.len().min(200)]
        );
    };
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))).collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    RawResponse { status, headers, body, write_error }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, rest)) = s.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            out.push_str(&rest[..rest.len().min(size)]);
            break;
        }
        out.push_str(&rest[..size]);
        s = rest[size..].trim_start_matches("\r\n");
    }
    out
}

// ------------------------------------------------------------------------------------------
// SSE
// ------------------------------------------------------------------------------------------

/// One server-sent event.
#[derive(Clone, Debug)]
pub struct SseEvent {
    pub event: String,
    /// `data:` parsed as JSON (a JSON string if it is not JSON).
    pub data: Value,
    pub at: Instant,
}

#[derive(Default)]
struct SseState {
    events: Vec<SseEvent>,
    closed: Option<String>,
}

/// Follows an SSE endpoint in a background thread and collects `(event, data)`.
pub struct SseClient {
    pub status: u16,
    pub content_type: String,
    path: String,
    state: Arc<(Mutex<SseState>, Condvar)>,
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
}

impl SseClient {
    /// Connects and returns once the response headers arrived (so the subscription is live).
    /// Panics if the endpoint does not answer.
    pub fn connect(base_url: &str, path: &str) -> SseClient {
        let host = base_url.trim_start_matches("http://").trim_end_matches('/').to_string();
        let stream = TcpStream::connect(&host).unwrap_or_else(|e| panic!("SSE connect {host}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut w = stream.try_clone().expect("clone socket");
        write!(
            w,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        )
        .expect("send SSE request");
        let mut reader = BufReader::new(stream.try_clone().expect("clone socket"));
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap_or_else(|e| panic!("SSE {path}: no response: {e}"));
        let status: u16 = status_line.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
        let mut content_type = String::new();
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-type") {
                    content_type = v.trim().to_string();
                }
                if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
                    chunked = true;
                }
            }
        }
        // Events may be minutes apart; the reader thread blocks until the socket is shut down.
        stream.set_read_timeout(None).ok();
        let state: Arc<(Mutex<SseState>, Condvar)> = Arc::default();
        let st = state.clone();
        let thread = if status == 200 { Some(thread::spawn(move || sse_reader(reader, chunked, st))) } else { None };
        SseClient { status, content_type, path: path.to_string(), state, stream, thread }
    }

    /// All events received so far.
    pub fn events(&self) -> Vec<SseEvent> {
        self.state.0.lock().unwrap().events.clone()
    }

    /// Names of the events received so far, in order.
    pub fn names(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.event).collect()
    }

    /// Waits for the first event named `name` (received at any time) and returns its data.
    /// Panics after `timeout`, listing what did arrive.
    pub fn wait_for(&self, name: &str, timeout: Duration) -> Value {
        self.wait_for_matching(name, |_| true, timeout)
    }

    /// Waits for the first event named `name` whose data satisfies `pred`.
    pub fn wait_for_matching(&self, name: &str, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        self.wait_for_event_matching(name, pred, timeout).data
    }

    /// Waits for the first event named `name` about participant `id` (see
    /// [`event_participant_id`]) and returns it, with its arrival time.
    pub fn wait_for_participant_event(&self, name: &str, id: &str, timeout: Duration) -> SseEvent {
        self.wait_for_event_matching(name, |v| event_participant_id(v).as_deref() == Some(id), timeout)
    }

    /// Like [`SseClient::wait_for_matching`], returning the whole event.
    pub fn wait_for_event_matching(&self, name: &str, pred: impl Fn(&Value) -> bool, timeout: Duration) -> SseEvent {
        match self.try_wait_for_event(name, pred, timeout) {
            Some(e) => e,
            None => {
                let st = self.state.0.lock().unwrap();
                let seen: Vec<String> = st.events.iter().map(|e| format!("{}: {}", e.event, e.data)).collect();
                panic!(
                    "no SSE event {name:?} (matching) on {} within {timeout:?}; HTTP status {}; stream closed: {:?}; received: {seen:#?}",
                    self.path, self.status, st.closed
                );
            }
        }
    }

    pub fn try_wait_for_matching(&self, name: &str, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        self.try_wait_for_event(name, pred, timeout).map(|e| e.data)
    }

    fn try_wait_for_event(&self, name: &str, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.state;
        let mut st = lock.lock().unwrap();
        loop {
            if let Some(e) = st.events.iter().find(|e| e.event == name && pred(&e.data)) {
                return Some(e.clone());
            }
            let now = Instant::now();
            if now >= deadline || st.closed.is_some() {
                return None;
            }
            st = cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads the body (de-chunking if needed) line by line and dispatches events.
fn sse_reader(mut reader: BufReader<TcpStream>, chunked: bool, state: Arc<(Mutex<SseState>, Condvar)>) {
    let mut pending = String::new(); // de-chunked bytes not yet split into lines
    let mut event = String::new();
    let mut data: Vec<String> = Vec::new();
    let close = |why: String| {
        let (lock, cv) = &*state;
        lock.lock().unwrap().closed = Some(why);
        cv.notify_all();
    };
    loop {
        // Get more body text.
        let piece = if chunked {
            let mut size_line = String::new();
            match reader.read_line(&mut size_line) {
                Ok(0) => return close("eof".into()),
                Err(e) => return close(e.to_string()),
                Ok(_) => {}
            }
            let size = match usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16) {
                Ok(n) => n,
                Err(_) => return close(format!("bad chunk size line {size_line:?}")),
            };
            if size == 0 {
                return close("end of chunked body".into());
            }
            let mut buf = vec![0u8; size + 2];
            if let Err(e) = reader.read_exact(&mut buf) {
                return close(e.to_string());
            }
            buf.truncate(size);
            String::from_utf8_lossy(&buf).into_owned()
        } else {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return close("eof".into()),
                Err(e) => return close(e.to_string()),
                Ok(_) => line,
            }
        };
        pending.push_str(&piece);
        while let Some(pos) = pending.find('\n') {
            let line: String = pending.drain(..=pos).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() || !event.is_empty() {
                    let raw = data.join("\n");
                    let ev = SseEvent {
                        event: if event.is_empty() { "message".into() } else { std::mem::take(&mut event) },
                        data: serde_json::from_str(&raw).unwrap_or(Value::String(raw)),
                        at: Instant::now(),
                    };
                    event.clear();
                    data.clear();
                    let (lock, cv) = &*state;
                    lock.lock().unwrap().events.push(ev);
                    cv.notify_all();
                }
            } else if line.starts_with(':') {
                // comment / keep-alive
            } else {
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "event" => event = value.to_string(),
                    "data" => data.push(value.to_string()),
                    _ => {}
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Peers
// ------------------------------------------------------------------------------------------

/// The python that has `gi` and `numpy` (Debian's).
pub fn python() -> PathBuf {
    std::env::var_os("SWITCHBOARD_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/python3"))
}

/// Panics with a clear message unless the GStreamer peer can run here.
pub fn require_gstreamer() {
    let py = python();
    let check = "import gi\ngi.require_version('Gst','1.0')\ngi.require_version('GstWebRTC','1.0')\n\
                 gi.require_version('GstSdp','1.0')\nfrom gi.repository import Gst, GstWebRTC, GstSdp\n\
                 import numpy\nGst.init(None)\n\
                 missing=[e for e in ('webrtcbin','nicesrc','opusenc','opusdec','rtpopuspay','rtpopusdepay','audiotestsrc','dtlssrtpenc') \
                 if Gst.ElementFactory.find(e) is None]\nprint('missing:'+','.join(missing) if missing else 'ok')\n";
    let out = Command::new(&py).arg("-c").arg(check).output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "ok" => {}
        Ok(o) => panic!(
            "the GStreamer peer cannot run with {}: {}{}\nInstall: scripts/install-deps.sh \
             (python3-gi gir1.2-gst-plugins-bad-1.0 python3-numpy gstreamer1.0-plugins-{{base,good,bad}} gstreamer1.0-nice)",
            py.display(),
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run {}: {e} (set SWITCHBOARD_PYTHON or install python3-gi)", py.display()),
    }
}

/// Panics with a clear message unless the Chromium peer can run here.
pub fn require_chromium() {
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} not found: apt-get install chromium (scripts/install-deps.sh --test)"
    );
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!("node not found on PATH: the Chromium peer is a node script (install nodejs >= 20)"),
    }
    let pw = crate_dir().join("node_modules/playwright-core/package.json");
    assert!(
        pw.exists(),
        "{} missing: run `npm install` in integration-tests/ (scripts/install-deps.sh --test does it)",
        pw.display()
    );
}

/// What a peer printed.
#[derive(Debug, Clone)]
pub struct PeerOutput {
    pub script: String,
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    /// The last non-empty stdout line as JSON (`Null` if none parsed).
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl PeerOutput {
    /// Panics (with the peer's stderr tail) if the peer failed or printed an `error`.
    pub fn expect_ok(&self) -> &Value {
        if self.timed_out
            || self.json.is_null()
            || !self.json["error"].is_null()
            || !self.status.is_some_and(|s| s.success())
        {
            panic!("peer {} failed: {}", self.script, self.describe());
        }
        &self.json
    }

    pub fn describe(&self) -> String {
        let tail: Vec<&str> = self.stderr.lines().collect();
        format!(
            "status {:?}, timed out: {}, json: {}\n---- stderr tail ----\n{}",
            self.status,
            self.timed_out,
            self.json,
            tail[tail.len().saturating_sub(40)..].join("\n")
        )
    }
}

/// A running peer; see [`spawn_peer`].
pub struct PeerHandle {
    script: String,
    child: Option<Child>,
    timeout: Duration,
    started: Instant,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

/// Starts a peer script from `integration-tests/peers/` (`*.py` with [`python()`], `*.mjs` with
/// node) with `args`. It is killed if it runs longer than `timeout`.
pub fn spawn_peer(script: &str, args: &[&str], timeout: Duration) -> PeerHandle {
    let path = peer_script(script);
    assert!(path.exists(), "peer script {} not found", path.display());
    let mut cmd = if script.ends_with(".py") {
        let mut c = Command::new(python());
        c.arg(&path);
        c
    } else if script.ends_with(".mjs") || script.ends_with(".js") {
        let mut c = Command::new("node");
        c.arg(&path);
        c
    } else {
        Command::new(&path)
    };
    cmd.args(args).current_dir(crate_dir()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own process group, so a timeout also ends what it started (Chromium's processes).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn peer {script}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    PeerHandle {
        script: script.to_string(),
        child: Some(child),
        timeout,
        started: Instant::now(),
        out: Some(out),
        err: Some(err),
    }
}

/// SIGKILL the process group led by `child` (created by [`spawn_peer`]), then reap the child.
fn kill_group(child: &mut Child) -> Option<ExitStatus> {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: a negative pid signals the process group we created with process_group(0),
    // whose id is our child's pid; the child is not reaped yet, so the id is still ours.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    child.wait().ok()
}

impl Drop for PeerHandle {
    fn drop(&mut self) {
        // Dropped without wait() (a test panicked first): do not leave the peer running.
        if let Some(mut c) = self.child.take() {
            if c.try_wait().ok().flatten().is_none() {
                kill_group(&mut c);
            }
        }
    }
}

impl PeerHandle {
    /// True once the peer process has exited (it has then printed its JSON line).
    pub fn finished(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    pub fn wait(mut self) -> PeerOutput {
        let deadline = self.started + self.timeout;
        let mut timed_out = false;
        let mut child = self.child.take().expect("child");
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    break kill_group(&mut child);
                }
                Ok(None) => thread::sleep(Duration::from_millis(50)),
                Err(_) => break None,
            }
        };
        let stdout = self.out.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = self.err.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let json = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        PeerOutput { script: self.script.clone(), status, timed_out, json, stdout, stderr }
    }
}

/// Runs a peer to completion (see [`spawn_peer`]).
pub fn peer(script: &str, args: &[&str], timeout: Duration) -> PeerOutput {
    spawn_peer(script, args, timeout).wait()
}

// ------------------------------------------------------------------------------------------
// Audio analysis (FFT-free)
// ------------------------------------------------------------------------------------------

/// Power of the frequency `hz` in `x` (Goertzel), with a Hann window applied on the fly.
/// Scaled so that a full-scale sine at `hz` gives about 1/8 (Hann coherent gain 0.5).
fn goertzel_power(x: &[f32], rate: f32, hz: f32, window: &[f32]) -> f64 {
    let n = x.len();
    let w = 2.0 * std::f64::consts::PI * hz as f64 / rate as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for i in 0..n {
        let s0 = x[i] as f64 * window[i] as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    p / (n as f64 * n as f64)
}

fn hann(n: usize) -> Vec<f32> {
    if n < 2 {
        return vec![1.0; n];
    }
    (0..n).map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos()) as f32).collect()
}

fn normalized(samples: &[i16]) -> Vec<f32> {
    let mean = samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len().max(1) as f64;
    samples.iter().map(|&s| ((s as f64 - mean) / 32768.0) as f32).collect()
}

/// The dominant frequency (Hz) of a mono signal, between 20 Hz and `min(rate/2, 8 kHz)`.
///
/// Scans a window of at most 0.25 s (the last samples given) with Goertzel filters in 5 Hz steps,
/// then refines around the best one in 0.25 Hz steps. Returns 0.0 for silence or fewer than 64
/// samples.
pub fn dominant_frequency(samples: &[i16], rate: u32) -> f32 {
    let take = samples.len().min(rate as usize / 4);
    if take < 64 {
        return 0.0;
    }
    let x = normalized(&samples[samples.len() - take..]);
    if x.iter().all(|&v| v.abs() < 1e-6) {
        return 0.0;
    }
    let w = hann(x.len());
    let r = rate as f32;
    let top = (r / 2.0 - 1.0).min(8000.0);
    let mut best = (0.0f32, -1.0f64);
    let mut f = 20.0f32;
    while f <= top {
        let p = goertzel_power(&x, r, f, &w);
        if p > best.1 {
            best = (f, p);
        }
        f += 5.0;
    }
    let centre = best.0;
    let mut f = (centre - 5.0).max(1.0);
    while f <= (centre + 5.0).min(top) {
        let p = goertzel_power(&x, r, f, &w);
        if p > best.1 {
            best = (f, p);
        }
        f += 0.25;
    }
    best.0
}

/// Level (dBFS, where a full-scale square wave is 0 dB and a full-scale sine about -3 dB) of
/// the part of the signal between `lo_hz` and `hi_hz`, computed from DFT bins (rectangular
/// window, Parseval) over at most the last 0.5 s. Returns -200.0 for no energy.
pub fn band_energy_db(samples: &[i16], rate: u32, lo_hz: f32, hi_hz: f32) -> f32 {
    assert!(lo_hz < hi_hz, "band_energy_db: lo {lo_hz} >= hi {hi_hz}");
    let mut n = samples.len().min(rate as usize / 2);
    // Keep the cost bounded for wide bands: bins * n <= ~8M.
    let bins_per_hz = |n: usize| n as f32 / rate as f32;
    while n > 256 && ((hi_hz - lo_hz) * bins_per_hz(n)) as f64 * n as f64 > 8.0e6 {
        n /= 2;
    }
    if n < 16 {
        return -200.0;
    }
    let x = normalized(&samples[samples.len() - n..]);
    let ones = vec![1.0f32; n];
    let k_lo = ((lo_hz * bins_per_hz(n)).ceil() as usize).max(1);
    let k_hi = ((hi_hz * bins_per_hz(n)).floor() as usize).min((n - 1) / 2);
    let mut ms = 0.0f64; // mean square of the band-limited signal
    for k in k_lo..=k_hi {
        let hz = k as f32 * rate as f32 / n as f32;
        // goertzel_power = |X_k|^2 / n^2; both the +k and -k bins count.
        ms += 2.0 * goertzel_power(&x, rate as f32, hz, &ones);
    }
    if ms <= 1e-20 {
        -200.0
    } else {
        (10.0 * ms.log10()) as f32
    }
}

/// RMS of a signal relative to full scale (0.0 ..= 1.0).
pub fn rms(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let ms = samples.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum::<f64>() / samples.len() as f64;
    ms.sqrt() as f32
}

/// The level (dBFS) of the ±25 Hz band around `hz` (see [`band_energy_db`]): how loud a tone of
/// `hz` is in `samples`.
pub fn tone_level_db(samples: &[i16], rate: u32, hz: f32) -> f32 {
    band_energy_db(samples, rate, hz - 25.0, hz + 25.0)
}

/// The level (dBFS, as [`band_energy_db`] measures it) of a sine at `amplitude` (0..1 of full
/// scale): 20·log10(amplitude) - 3.01.
pub fn sine_dbfs(amplitude: f32) -> f32 {
    20.0 * amplitude.log10() - 3.01
}

/// A sine of `hz` at `amplitude` (0..1 of full scale), for tests.
pub fn sine(hz: f32, rate: u32, seconds: f32, amplitude: f32) -> Vec<i16> {
    let n = (rate as f32 * seconds) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            ((2.0 * std::f64::consts::PI * hz as f64 * t).sin() * amplitude as f64 * 32767.0) as i16
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// Small helpers for tests
// ------------------------------------------------------------------------------------------

/// Now, in seconds since the unix epoch (what the peers report their times in).
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is past 1970").as_secs_f64()
}

/// Converts `Instant`s (e.g. [`SseEvent::at`]) to unix seconds, as the peers report times.
#[derive(Clone, Copy, Debug)]
pub struct UnixClock {
    wall: f64,
    at: Instant,
}

impl UnixClock {
    /// Anchored now: `Instant::now()` is `unix_now()`.
    pub fn new() -> UnixClock {
        UnixClock { wall: unix_now(), at: Instant::now() }
    }

    /// `t` in unix seconds.
    pub fn unix(&self, t: Instant) -> f64 {
        self.wall + t.saturating_duration_since(self.at).as_secs_f64()
    }

    /// When (unix seconds) `sse` received the first event `name` about participant `id`; waits
    /// up to 5 s for it (see [`SseClient::wait_for_participant_event`]).
    pub fn event_at(&self, sse: &SseClient, name: &str, id: &str) -> f64 {
        self.unix(sse.wait_for_participant_event(name, id, Duration::from_secs(5)).at)
    }
}

impl Default for UnixClock {
    fn default() -> Self {
        UnixClock::new()
    }
}

/// How long a test usually waits for its peers to join (see [`Daemon::wait_for_participants`]):
/// they start GStreamer or Chromium first, which takes seconds on a loaded machine.
pub const JOIN_WAIT: Duration = Duration::from_secs(30);

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts an API error: `status` and `{"error": {"code": code, "message": <non-empty>}}`.
#[track_caller]
pub fn assert_api_error(got: &(u16, Value), status: u16, code: &str) {
    let (s, v) = got;
    assert_eq!(*s, status, "expected {status} {code}, got {s} {v}");
    assert_eq!(v["error"]["code"], json!(code), "expected error code {code:?} in {v}");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(!msg.trim().is_empty(), "error {code} has no message: {v}");
}

/// The ids of a room's participants (`GET /v1/rooms/{room}`), sorted.
pub fn participant_ids(room: &Value) -> Vec<String> {
    let mut ids: Vec<String> = room["participants"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

// ------------------------------------------------------------------------------------------
// SDP (just enough to check answers)
// ------------------------------------------------------------------------------------------

/// One m-line of an SDP, as far as the tests care.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaSection {
    /// `audio`, `video`, `application`
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub mid: Option<String>,
    /// `sendrecv`, `sendonly`, `recvonly`, `inactive` (`sendrecv` when absent)
    pub direction: String,
    /// Encoding names from `a=rtpmap`, lower case, in m-line order (`opus`, `pcmu`, `vp8`, ...).
    pub codecs: Vec<String>,
    pub ssrcs: Vec<u32>,
    /// The lines of the section (session-level lines are not included).
    pub lines: Vec<String>,
}

/// A parsed SDP: session-level lines and the m-line sections.
#[derive(Clone, Debug, Default)]
pub struct Sdp {
    pub session: Vec<String>,
    pub media: Vec<MediaSection>,
}

impl Sdp {
    pub fn parse(text: &str) -> Sdp {
        let mut sdp = Sdp::default();
        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            if let Some(m) = line.strip_prefix("m=") {
                let mut it = m.split_whitespace();
                let kind = it.next().unwrap_or_default().to_string();
                let port = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let proto = it.next().unwrap_or_default().to_string();
                sdp.media.push(MediaSection { kind, port, proto, direction: "sendrecv".into(), ..Default::default() });
            }
            match sdp.media.last_mut() {
                None => sdp.session.push(line.to_string()),
                Some(m) => {
                    m.lines.push(line.to_string());
                    if let Some(mid) = line.strip_prefix("a=mid:") {
                        m.mid = Some(mid.trim().to_string());
                    } else if let Some(r) = line.strip_prefix("a=rtpmap:") {
                        if let Some(name) = r.split_whitespace().nth(1).and_then(|e| e.split('/').next()) {
                            m.codecs.push(name.to_ascii_lowercase());
                        }
                    } else if let Some(r) = line.strip_prefix("a=ssrc:") {
                        if let Some(ssrc) = r.split_whitespace().next().and_then(|x| x.parse().ok()) {
                            if !m.ssrcs.contains(&ssrc) {
                                m.ssrcs.push(ssrc);
                            }
                        }
                    } else if let Some(d) =
                        ["sendrecv", "sendonly", "recvonly", "inactive"].iter().find(|d| line == format!("a={d}"))
                    {
                        m.direction = d.to_string();
                    }
                }
            }
        }
        sdp
    }

    /// True if the session level or any m-line has `line` (exact match).
    pub fn has_line(&self, line: &str) -> bool {
        self.session.iter().chain(self.media.iter().flat_map(|m| m.lines.iter())).any(|l| l == line)
    }

    /// Lines starting with `prefix`, session level and m-lines.
    pub fn lines_starting(&self, prefix: &str) -> Vec<String> {
        self.session
            .iter()
            .chain(self.media.iter().flat_map(|m| m.lines.iter()))
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// Checks a WebRTC answer from the bridge against the offer it answers: same m-lines in the same
/// order with the same mids, full ICE (no `a=ice-lite`: the bridge checks the pair itself, see
/// `a_webrtcbin_publisher_stays_past_fifteen_seconds`), DTLS role chosen (not `actpass`), a fingerprint, a host
/// candidate on the bridge's WebRTC port at 127.0.0.1, and for each offered `recvonly` m-line a
/// `sendonly` answer declaring its SSRC (a pre-negotiated slot) without the bandwidth-estimation
/// header extensions (TWCC, abs-send-time: the bridge runs no send-side estimation), which an
/// m-line where the client sends keeps when offered.
#[track_caller]
pub fn assert_webrtc_answer(offer: &str, answer: &str, webrtc_port: u16) {
    assert!(answer.starts_with("v=0"), "answer does not start with v=0:\n{answer}");
    let o = Sdp::parse(offer);
    let a = Sdp::parse(answer);
    let okinds: Vec<(&str, Option<&str>)> = o.media.iter().map(|m| (m.kind.as_str(), m.mid.as_deref())).collect();
    let akinds: Vec<(&str, Option<&str>)> = a.media.iter().map(|m| (m.kind.as_str(), m.mid.as_deref())).collect();
    assert_eq!(akinds, okinds, "answer m-lines (kind, mid) differ from the offer's:\n{answer}");
    assert!(!a.has_line("a=ice-lite"), "answer says a=ice-lite (the bridge runs full ICE):\n{answer}");
    let setups = a.lines_starting("a=setup:");
    assert!(!setups.is_empty(), "answer has no a=setup:\n{answer}");
    assert!(
        setups.iter().all(|s| s == "a=setup:active" || s == "a=setup:passive"),
        "answer must pick a DTLS role (active/passive), has {setups:?}"
    );
    assert!(!a.lines_starting("a=fingerprint:").is_empty(), "answer has no a=fingerprint:\n{answer}");
    let cands = a.lines_starting("a=candidate:");
    assert!(
        cands.iter().any(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            f.len() >= 8
                && f[2].eq_ignore_ascii_case("udp")
                && f[4] == "127.0.0.1"
                && f[5] == webrtc_port.to_string()
                && f[7] == "host"
        }),
        "answer has no UDP host candidate 127.0.0.1:{webrtc_port}: {cands:?}"
    );
    for (om, am) in o.media.iter().zip(&a.media) {
        if am.port == 0 {
            continue; // rejected m-line; checked by callers that care
        }
        let bwe = |lines: &[String]| {
            lines
                .iter()
                .filter(|l| {
                    l.starts_with("a=extmap:") && (l.contains("transport-wide-cc") || l.contains("abs-send-time"))
                })
                .count()
        };
        if om.direction == "recvonly" {
            assert_eq!(am.direction, "sendonly", "offered recvonly m-line {:?} must be answered sendonly", om.mid);
            assert!(!am.ssrcs.is_empty(), "slot {:?} answer declares no a=ssrc:\n{}", om.mid, am.lines.join("\n"));
            assert_eq!(
                bwe(&am.lines),
                0,
                "slot {:?} answer negotiates TWCC or abs-send-time:\n{}",
                om.mid,
                am.lines.join("\n")
            );
        } else if om.direction != "inactive" {
            assert_eq!(
                bwe(&am.lines),
                bwe(&om.lines),
                "m-line {:?}: the client's own estimation lost its extensions",
                om.mid
            );
        }
        let common: Vec<&String> = am.codecs.iter().filter(|c| om.codecs.contains(c)).collect();
        assert!(
            !am.codecs.is_empty() && common.len() == am.codecs.len(),
            "m-line {:?}: answer codecs {:?} not a subset of offer's {:?}",
            om.mid,
            am.codecs,
            om.codecs
        );
    }
}

/// The participant id an event's data refers to: `participant_id`, `participant.id` or `id`.
pub fn event_participant_id(data: &Value) -> Option<String> {
    data["participant_id"]
        .as_str()
        .or_else(|| data["participant"]["id"].as_str())
        .or_else(|| data["id"].as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, amp: f32, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                ((s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * amp
            })
            .collect()
    }

    #[test]
    fn dominant_frequency_finds_tones() {
        for &(hz, rate) in &[(440.0f32, 48000u32), (1000.0, 48000), (300.0, 8000), (3400.0, 16000), (97.0, 48000)] {
            let got = dominant_frequency(&sine(hz, rate, 1.0, 0.5), rate);
            assert!((got - hz).abs() < 2.0, "{hz} Hz at {rate}: got {got}");
        }
    }

    #[test]
    fn dominant_frequency_with_noise_and_a_weaker_tone() {
        let rate = 48000;
        let a = sine(440.0, rate, 0.5, 0.4);
        let b = sine(1200.0, rate, 0.5, 0.1);
        let nz = noise(a.len(), 0.1, 7);
        let mix: Vec<i16> = (0..a.len()).map(|i| a[i] + b[i] + (nz[i] * 32767.0) as i16).collect();
        let got = dominant_frequency(&mix, rate);
        assert!((got - 440.0).abs() < 2.0, "got {got}");
        // A different tone is not mistaken for 440.
        let got = dominant_frequency(&sine(523.25, rate, 0.5, 0.4), rate);
        assert!((got - 523.25).abs() < 2.0 && (got - 440.0).abs() > 10.0, "got {got}");
    }

    #[test]
    fn dominant_frequency_of_silence_and_short_input_is_zero() {
        assert_eq!(dominant_frequency(&vec![0i16; 48000], 48000), 0.0);
        assert_eq!(dominant_frequency(&[1000i16; 10], 48000), 0.0);
        assert_eq!(dominant_frequency(&vec![1234i16; 4800], 48000), 0.0, "DC only");
    }

    #[test]
    fn band_energy_of_a_sine() {
        let rate = 48000;
        let s = sine(440.0, rate, 1.0, 1.0);
        let in_band = band_energy_db(&s, rate, 400.0, 480.0);
        assert!((in_band + 3.01).abs() < 0.5, "full-scale sine should be ~-3 dBFS in band, got {in_band}");
        let half = band_energy_db(&sine(440.0, rate, 1.0, 0.5), rate, 400.0, 480.0);
        assert!((in_band - half - 6.02).abs() < 0.5, "halving amplitude is -6 dB: {in_band} vs {half}");
        let out = band_energy_db(&s, rate, 1000.0, 4000.0);
        assert!(out < in_band - 40.0, "out of band {out} dB vs in band {in_band} dB");
        assert_eq!(band_energy_db(&vec![0i16; 4800], rate, 100.0, 1000.0), -200.0);
        // 8 kHz telephony rate.
        let t = band_energy_db(&sine(1000.0, 8000, 0.5, 0.5), 8000, 900.0, 1100.0);
        assert!((t + 9.03).abs() < 0.7, "0.5 FS sine ~ -9 dBFS, got {t}");
    }

    #[test]
    fn sdp_parser_reads_fixtures() {
        let c = Sdp::parse(&fixture("chromium_offer.sdp"));
        assert_eq!(c.media.len(), 2);
        assert_eq!((c.media[0].kind.as_str(), c.media[0].mid.as_deref()), ("audio", Some("0")));
        assert_eq!(c.media[0].codecs[0], "opus");
        assert!(c.media[0].codecs.contains(&"pcmu".to_string()));
        assert_eq!(c.media[1].codecs[0], "vp8");
        assert_eq!(c.media[1].direction, "sendrecv");
        assert_eq!(c.media[1].proto, "UDP/TLS/RTP/SAVPF");
        let w = Sdp::parse(&fixture("webrtcbin_recvonly_offer.sdp"));
        assert_eq!(w.media.len(), 1);
        assert_eq!(w.media[0].direction, "recvonly");
        assert_eq!(w.media[0].codecs, vec!["opus"]);
        assert!(w.has_line("a=rtcp-mux"));
    }

    #[test]
    #[should_panic(expected = "a=setup")]
    fn answer_check_rejects_a_plain_echo() {
        // Echoing the offer back is not an answer: it leaves the DTLS role open (setup:actpass).
        let o = fixture("chromium_offer.sdp");
        assert_webrtc_answer(&o, &o, 3478);
    }

    #[test]
    fn rms_of_sine() {
        let r = rms(&sine(440.0, 48000, 1.0, 1.0));
        assert!((r - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.01, "{r}");
        assert_eq!(rms(&[]), 0.0);
    }

    #[test]
    fn config_renders_toml() {
        let p = reserve_ports();
        let mut c = Config::for_ports(&p);
        c.set("rooms", "auto_create", false).set("log", "filter", "debug,str0m=info");
        let t = c.to_toml();
        assert!(t.contains("[rooms]\nauto_create = false\n"), "{t}");
        assert!(t.contains(&format!("listen = \"127.0.0.1:{}\"", p.http)), "{t}");
        assert!(t.contains("advertised_ips = [\"127.0.0.1\"]"), "{t}");
        assert!(t.contains(&format!("port_min = {}", p.rtp_min)), "{t}");
    }

    #[test]
    fn port_blocks_do_not_overlap() {
        let blocks: Vec<PortBlock> = (0..4).map(|_| reserve_ports()).collect();
        for (i, a) in blocks.iter().enumerate() {
            assert!(a.rtp_min > a.webrtc && a.webrtc > a.http && a.rtp_max < 32768);
            for b in &blocks[i + 1..] {
                assert!(a.rtp_max < b.http || b.rtp_max < a.http, "{a:?} overlaps {b:?}");
            }
        }
    }

    /// A server for one connection: reads the request (one read), then lets `respond` answer.
    /// Returns its base URL and its thread.
    fn serve_once(respond: impl FnOnce(&mut TcpStream) + Send + 'static) -> (String, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let srv = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            respond(&mut s);
        });
        (base, srv)
    }

    #[test]
    fn sse_parser_handles_chunked_events() {
        // A tiny server that speaks SSE over chunked encoding, with a split event and a comment.
        let (base, srv) = serve_once(|s| {
            let chunks = [
                ": keep-alive\n\n",
                "event: participant_joined\ndata: {\"id\":",
                "\"p1\"}\n\n",
                "event: participant_left\r\ndata: {\"id\":\"p1\"}\r\n\r\n",
            ];
            write!(s, "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                .unwrap();
            for c in chunks {
                write!(s, "{:x}\r\n{}\r\n", c.len(), c).unwrap();
                s.flush().unwrap();
                thread::sleep(Duration::from_millis(20));
            }
            thread::sleep(Duration::from_millis(300));
        });
        let sse = SseClient::connect(&base, "/v1/rooms/r/events");
        assert_eq!(sse.status, 200);
        assert_eq!(sse.content_type, "text/event-stream");
        let j = sse.wait_for("participant_joined", Duration::from_secs(2));
        assert_eq!(j["id"], "p1");
        let l = sse.wait_for("participant_left", Duration::from_secs(2));
        assert_eq!(l["id"], "p1");
        assert_eq!(sse.names(), vec!["participant_joined", "participant_left"]);
        srv.join().unwrap();
    }

    #[test]
    fn raw_http_reads_chunked_body() {
        let (base, srv) = serve_once(|s| {
            write!(s, "HTTP/1.1 413 Payload Too Large\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{{\"a\":\r\n2\r\n1}}\r\n0\r\n\r\n").unwrap();
        });
        let r = raw_http(&base, "POST", "/x", Some("application/json"), b"{}");
        assert_eq!(r.status, 413);
        assert_eq!(r.json(), json!({"a": 1}));
        srv.join().unwrap();
    }
}

// ------------------------------------------------------------------------------------------
// Phone legs (peers/rtp_leg.py) and what they leave behind
// ------------------------------------------------------------------------------------------

pub use phone_legs::{
    assert_one_stream, leg_audio_between, leg_heard_all, leg_joined_at, legs_together, metric_value, read_s16le,
    require_rtp_leg, spawn_tone_legs, tone_leg_args, RTP_LEG,
};

/// Helpers for tests with phone legs: the plain RTP / SDES-SRTP peer (peers/rtp_leg.py), the raw
/// audio it saves, and the metrics its tests read. (A module, so that these items, added after
/// the unit tests above, stay out of clippy's `items_after_test_module`.)
pub mod phone_legs {
    use super::*;

    /// Panics with a clear message unless the plain RTP / SDES-SRTP phone leg (peers/rtp_leg.py)
    /// can run here: GStreamer's G.711/G.722/Opus coders and payloaders, srtpenc, rtpdtmfsrc, and
    /// Python's `cryptography` (the leg checks received SRTP itself).
    pub fn require_rtp_leg() {
        let py = python();
        let check = "import gi\ngi.require_version('Gst','1.0')\nfrom gi.repository import Gst\n\
                     import numpy, cryptography\nGst.init(None)\n\
                     missing=[e for e in ('audiotestsrc','mulawenc','mulawdec','alawenc','alawdec','rtppcmupay',\
                     'rtppcmudepay','rtppcmapay','rtppcmadepay','avenc_g722','avdec_g722','rtpg722pay','rtpg722depay',\
                     'opusenc','opusdec','rtpopuspay','rtpopusdepay','srtpenc','rtpdtmfsrc','appsrc','appsink') \
                     if Gst.ElementFactory.find(e) is None]\nprint('missing:'+','.join(missing) if missing else 'ok')\n";
        match Command::new(&py).arg("-c").arg(check).output() {
            Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "ok" => {}
            Ok(o) => panic!(
                "the phone leg (peers/rtp_leg.py) cannot run with {}: {}{}\nInstall: python3-gi python3-numpy \
                 python3-cryptography gstreamer1.0-plugins-{{base,good,bad,ugly}} gstreamer1.0-libav",
                py.display(),
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("cannot run {}: {e} (set SWITCHBOARD_PYTHON or install python3-gi)", py.display()),
        }
    }

    /// The phone leg's script.
    pub const RTP_LEG: &str = "rtp_leg.py";

    /// The leg's arguments to send a sine of `hz` at `amplitude` for `seconds`, log every packet
    /// it receives and save what it hears to `file`: what [`leg_audio_between`] reads.
    pub fn tone_leg_args(hz: f32, amplitude: f32, seconds: f64, file: &Path) -> Vec<String> {
        let path = file.to_str().expect("a UTF-8 path");
        let (hz, amplitude, seconds) = (hz.to_string(), amplitude.to_string(), seconds.to_string());
        ["--tone", &hz, "--amplitude", &amplitude, "--duration", &seconds, "--packet-log", "--save-audio", path]
            .map(String::from)
            .to_vec()
    }

    /// Starts a leg per `(name, hz)` in `room`, each sending its tone at `amplitude` for
    /// `seconds` and saving what it hears to `<dir>/<name>.s16le` (see [`tone_leg_args`]).
    /// Returns the files and the legs, in the order of `legs`.
    pub fn spawn_tone_legs(
        d: &Daemon,
        room: &str,
        legs: &[(&str, f32)],
        amplitude: f32,
        seconds: f64,
        dir: &Path,
        timeout: Duration,
    ) -> (Vec<PathBuf>, Vec<Option<PeerHandle>>) {
        let files: Vec<PathBuf> = legs.iter().map(|(name, _)| dir.join(format!("{name}.s16le"))).collect();
        let handles = legs
            .iter()
            .zip(&files)
            .map(|((name, hz), file)| {
                Some(d.join_peer(RTP_LEG, room, name, &tone_leg_args(*hz, amplitude, seconds, file), timeout))
            })
            .collect();
        (files, handles)
    }

    /// When (unix seconds) the leg joined, from its timeline.
    pub fn leg_joined_at(out: &PeerOutput) -> f64 {
        let t0 = out.json["t0_unix"].as_f64().unwrap_or_else(|| panic!("no t0_unix: {}", out.describe()));
        let joined = out.json["timeline"]
            .as_array()
            .and_then(|t| t.iter().find(|e| e[1].as_str().is_some_and(|s| s.starts_with("joined"))))
            .and_then(|e| e[0].as_f64())
            .unwrap_or_else(|| panic!("no join in the leg's timeline: {}", out.describe()));
        t0 + joined
    }

    /// The stretch (unix seconds) when every leg of `outs`, each sending for `duration_s`, was in
    /// the room: from 2 s after the last join (the mix settles) to 0.5 s before the first stop.
    #[track_caller]
    pub fn legs_together(outs: &[PeerOutput], duration_s: f64) -> (f64, f64) {
        let from = outs.iter().map(leg_joined_at).fold(f64::MIN, f64::max) + 2.0;
        let to = outs.iter().map(|o| o.json["t0_unix"].as_f64().unwrap() + duration_s).fold(f64::MAX, f64::min) - 0.5;
        assert!(to - from >= 4.0, "the legs were together for only {:.1} s (load?); from {from} to {to}", to - from);
        (from, to)
    }

    /// What the leg `out` heard from `from` to `to`, as [`leg_audio_between`] gives it, asserting
    /// it heard all of it.
    #[track_caller]
    pub fn leg_heard_all(out: &PeerOutput, path: &Path, (from, to): (f64, f64)) -> (Vec<i16>, u32) {
        let (heard, rate) = leg_audio_between(out, path, from, to);
        assert!(heard.len() as f64 >= (to - from - 0.2) * rate as f64, "the leg heard too little: {}", out.describe());
        (heard, rate)
    }

    /// The leg received one stream from the bridge (one SSRC) without sequence gaps.
    #[track_caller]
    pub fn assert_one_stream(who: &str, out: &PeerOutput) {
        let r = &out.json["received"];
        assert_eq!(r["ssrcs"].as_array().map(Vec::len), Some(1), "{who}: {r}");
        assert_eq!(r["seq_steps_not_1"], 0, "{who}: sequence gaps: {}", r["seq_step_examples"]);
    }

    /// Raw signed 16-bit little-endian samples, as `rtp_leg.py --save-audio` writes them.
    pub fn read_s16le(path: &Path) -> Vec<i16> {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
    }

    /// The value of one sample in Prometheus text format: `name{labels...} value` whose labels
    /// include all of `labels`. `None` when no such line exists.
    pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let have: Vec<(&str, &str)> = rest
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim_matches('"')))
                .collect();
            labels.iter().all(|want| have.contains(want)).then(|| value.parse().ok()).flatten()
        })
    }

    /// What a leg (run with --packet-log and --save-audio) heard between two unix times, and its
    /// sample rate. The saved file is the decoded audio of its audio packets in arrival order, each
    /// worth (payload bytes × rate / 8000) samples (G.711: a sample a byte; G.722: two at 16 kHz;
    /// Opus: 20 ms whatever its length),
    /// so the packet log places the times in the file exactly, whatever the decoder's lag.
    pub fn leg_audio_between(out: &PeerOutput, path: &Path, from: f64, to: f64) -> (Vec<i16>, u32) {
        let j = &out.json;
        let rate = j["audio"]["rate"].as_u64().unwrap_or(8000) as u32;
        let per_byte = (rate / 8000) as usize;
        let opus = j["codec"] == "opus";
        let t0 = j["t0_unix"].as_f64().unwrap_or_else(|| panic!("no t0_unix: {}", out.describe()));
        let log = j["packet_log"]
            .as_array()
            .unwrap_or_else(|| panic!("the leg ran without --packet-log: {}", out.describe()));
        // Packets that overtook the answer to the join were logged but not decoded (PT unknown yet).
        let mut skip = j["received"]["unknown_pt"].as_u64().unwrap_or(0);
        let all = read_s16le(path);
        let (mut pos, mut start, mut end) = (0usize, None, None);
        for e in log.iter().filter(|e| e[1] == j["audio_pt"]) {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let t = t0 + e[0].as_f64().unwrap_or(0.0);
            if start.is_none() && t >= from {
                start = Some(pos);
            }
            if t > to {
                end = Some(pos);
                break;
            }
            // The log's last field is the payload length; G.711 and G.722 carry 8,000 bytes a second.
            // An Opus packet's length says nothing of its duration: the bridge sends 20 ms each.
            pos += if opus { rate as usize / 50 } else { e[6].as_u64().unwrap_or(0) as usize * per_byte };
        }
        let a = start.unwrap_or(pos).min(all.len());
        let b = end.unwrap_or(pos).min(all.len());
        (all[a..b.max(a)].to_vec(), rate)
    }
}
