//! Real peers: the scripts under `peers/` (GStreamer webrtcbin and the phone leg through python,
//! Chromium through node), run in their own process group with a timeout, and what they report.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::paths::{crate_dir, peer_script, python};
use crate::process::{kill_group, last_lines, read_in_thread};

/// Panics with a clear message, naming `what` and what to `install`, unless [`python()`] can run
/// `imports` (which import `Gst`) and has every GStreamer element of `elements`.
pub(crate) fn require_python(what: &str, imports: &str, elements: &[&str], install: &str) {
    let py = python();
    let quoted: Vec<String> = elements.iter().map(|e| format!("'{e}'")).collect();
    let check = format!(
        "{imports}Gst.init(None)\nmissing=[e for e in ({}) if Gst.ElementFactory.find(e) is None]\n\
         print('missing:'+','.join(missing) if missing else 'ok')\n",
        quoted.join(",")
    );
    match Command::new(&py).arg("-c").arg(check).output() {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "ok" => {}
        Ok(o) => panic!(
            "{what} cannot run with {}: {}{}\nInstall: {install}",
            py.display(),
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run {}: {e} (set SWITCHBOARD_PYTHON or install python3-gi)", py.display()),
    }
}

/// Panics with a clear message unless the GStreamer peer can run here.
pub fn require_gstreamer() {
    require_python(
        "the GStreamer peer",
        "import gi\ngi.require_version('Gst','1.0')\ngi.require_version('GstWebRTC','1.0')\n\
         gi.require_version('GstSdp','1.0')\nfrom gi.repository import Gst, GstWebRTC, GstSdp\nimport numpy\n",
        &["webrtcbin", "nicesrc", "opusenc", "opusdec", "rtpopuspay", "rtpopusdepay", "audiotestsrc", "dtlssrtpenc"],
        "scripts/install-deps.sh (python3-gi gir1.2-gst-plugins-bad-1.0 python3-numpy \
         gstreamer1.0-plugins-{base,good,bad} gstreamer1.0-nice)",
    );
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
        format!(
            "status {:?}, timed out: {}, json: {}\n---- stderr tail ----\n{}",
            self.status,
            self.timed_out,
            self.json,
            last_lines(&self.stderr, 40)
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
    cmd.env(crate::tokens::TOKEN_ENV, crate::tokens::admin_token());
    cmd.args(args).current_dir(crate_dir()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own process group, so a timeout also ends what it started (Chromium's processes).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn peer {script}: {e}"));
    let out = child.stdout.take().map(read_in_thread);
    let err = child.stderr.take().map(read_in_thread);
    PeerHandle { script: script.to_string(), child: Some(child), timeout, started: Instant::now(), out, err }
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
