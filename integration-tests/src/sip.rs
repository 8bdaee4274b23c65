//! The SIP side, real: Debian's Kamailio as a stateful proxy whose `rtpengine` module drives the
//! bridge over ng, and sipp (`sip-tester`) as the phones. Each runs in its own process group in
//! a temp dir of the test's, on loopback ports the test picks, and is killed when dropped.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{kill_group, last_lines};

const KAMAILIO: &str = "/usr/sbin/kamailio";
const SIPP: &str = "/usr/bin/sipp";

/// Panics with what to install unless Kamailio, its `rtpengine` module and sipp are here.
pub fn require_sip_tools() {
    for (path, package) in [(KAMAILIO, "kamailio"), (SIPP, "sip-tester")] {
        assert!(
            Path::new(path).exists(),
            "{path} not found: apt-get install {package} (scripts/install-deps.sh --test)"
        );
    }
    // Kamailio finds its modules in its own multiarch dir (/usr/lib/<triplet>/kamailio/modules).
    let module = fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("kamailio/modules/rtpengine.so"))
        .find(|p| p.exists());
    assert!(module.is_some(), "no kamailio/modules/rtpengine.so under /usr/lib: Debian's kamailio package ships it");
}

/// Runs `cmd` in a process group of its own (so [`kill_group`] ends all it forks), and has the
/// kernel send it `signal` when the thread that started it ends, so a test killed outright leaves
/// no proxy or phone behind.
fn own_group_ended_with_us(cmd: &mut Command, signal: libc::c_int) {
    // SAFETY: setpgid and prctl are async-signal-safe and touch only the child being started.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, signal);
            Ok(())
        });
    }
}

/// A stateful proxy that relays every call to `callee` and has the bridge at `ng` relay its
/// media, as an operator would set Kamailio up in front of rtpengine: `rtpengine_offer()` on the
/// INVITE, `rtpengine_answer()` on its 2xx, `rtpengine_delete()` on BYE, CANCEL and a failed call.
pub fn kamailio_config(listen: SocketAddr, ng: SocketAddr, callee: SocketAddr) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:{listen}

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "rtpengine.so"

modparam("rtpengine", "rtpengine_sock", "udp:{ng}")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            if (is_method("BYE")) {{
                rtpengine_delete();
            }}
            t_relay();
            exit;
        }}
        if (is_method("ACK") && t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            rtpengine_delete();
            t_relay();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
        if (has_body("application/sdp")) {{
            rtpengine_offer("replace-origin replace-session-connection ICE=remove RTP/AVP");
        }}
        t_on_reply("ANSWERED");
        t_on_failure("FAILED");
    }}
    $du = "sip:{callee}";
    t_relay();
}}

onreply_route[ANSWERED] {{
    if (status =~ "^2" && has_body("application/sdp")) {{
        rtpengine_answer("replace-origin replace-session-connection");
    }}
}}

failure_route[FAILED] {{
    rtpengine_delete();
}}
"#
    )
}

/// A running Kamailio (see [`kamailio_config`]).
pub struct Kamailio {
    child: Option<Child>,
    pub log_path: PathBuf,
    pub config: String,
}

impl Kamailio {
    /// Writes the config into `dir` and starts Kamailio; returns once its `rtpengine` module has
    /// found the bridge (it pings `ng` at start-up, and a bridge that does not answer is disabled).
    pub fn start(dir: &Path, listen: SocketAddr, ng: SocketAddr, callee: SocketAddr) -> Kamailio {
        let config = kamailio_config(listen, ng, callee);
        let cfg = dir.join("kamailio.cfg");
        fs::write(&cfg, &config).expect("write kamailio.cfg");
        let run = dir.join("kamailio-run");
        fs::create_dir_all(&run).expect("create kamailio's runtime dir");
        let log_path = dir.join("kamailio.log");
        let log = File::create(&log_path).expect("create kamailio.log");
        let mut cmd = Command::new(KAMAILIO);
        // -DD: the main process stays in the foreground (ours to kill), its workers fork from it;
        // -E: log to stderr; -Y: the runtime dir, instead of /run/kamailio; small memory pools.
        cmd.arg("-f").arg(&cfg).args(["-DD", "-E", "-m", "32", "-M", "4"]).arg("-Y").arg(&run);
        cmd.arg("-P").arg(run.join("kamailio.pid")).arg("-w").arg(dir);
        cmd.stdin(Stdio::null()).stdout(Stdio::from(log.try_clone().expect("dup the log"))).stderr(Stdio::from(log));
        // SIGTERM, not SIGKILL, if the test dies first: Kamailio's main process then ends its workers.
        own_group_ended_with_us(&mut cmd, libc::SIGTERM);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {KAMAILIO}: {e}"));
        let mut k = Kamailio { child: Some(child), log_path, config };
        k.wait_for_bridge(Duration::from_secs(10));
        k
    }

    fn wait_for_bridge(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.contains("support for it enabled") {
                return;
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline || log.contains("disabling it") {
                panic!("kamailio did not find the bridge ({exited:?}):\n{}", last_lines(&log, 30));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
        if thread::panicking() {
            eprintln!("---- kamailio log tail ----\n{}", last_lines(&self.log(), 40));
        }
    }
}

/// A running sipp: one scenario, one call (`-m 1`).
pub struct Sipp {
    name: String,
    child: Option<Child>,
    screen: PathBuf,
    /// Every SIP message it sent and received (`-trace_msg`).
    pub messages: PathBuf,
}

impl Sipp {
    /// Runs `scenario` in `dir` as `name`, on `127.0.0.1:sip_port` (RTP on `media_port`), calling
    /// `remote` if given (a UAC) or waiting for one call (a UAS).
    pub fn start(
        dir: &Path,
        name: &str,
        scenario: &Path,
        sip_port: u16,
        media_port: u16,
        remote: Option<SocketAddr>,
    ) -> Sipp {
        let screen = dir.join(format!("{name}.screen"));
        let messages = dir.join(format!("{name}.messages"));
        let out = File::create(&screen).expect("create sipp's screen file");
        let mut cmd = Command::new(SIPP);
        cmd.arg("-sf").arg(scenario).args(["-i", "127.0.0.1", "-p", &sip_port.to_string()]);
        cmd.args(["-mp", &media_port.to_string(), "-m", "1", "-nostdin", "-timeout", "40s", "-trace_msg"]);
        cmd.arg("-message_file")
            .arg(&messages)
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.join(format!("{name}.errors")));
        if let Some(r) = remote {
            cmd.arg(r.to_string());
        }
        cmd.current_dir(dir).stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::null());
        own_group_ended_with_us(&mut cmd, libc::SIGKILL);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {SIPP}: {e}"));
        Sipp { name: name.to_string(), child: Some(child), screen, messages }
    }

    /// Waits up to `timeout` for the call to end; panics, with sipp's screen and errors, unless
    /// its scenario ran to the end (sipp's exit status 0: one call, successful).
    pub fn expect_success(mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("a running sipp");
        let status: Option<ExitStatus> = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() > deadline => break kill_group(&mut child).filter(|_| false),
                Ok(None) => thread::sleep(Duration::from_millis(50)),
                Err(_) => break None,
            }
        };
        if !status.is_some_and(|s| s.success()) {
            let screen = fs::read_to_string(&self.screen).unwrap_or_default();
            let errors = fs::read_to_string(self.screen.with_extension("errors")).unwrap_or_default();
            panic!(
                "sipp {} failed ({status:?}):\n{}\n---- errors ----\n{}",
                self.name,
                last_lines(&screen, 30),
                last_lines(&errors, 30)
            );
        }
    }

    /// The SIP messages sipp received, in order.
    pub fn received(&self) -> Vec<String> {
        sipp_messages(&fs::read_to_string(&self.messages).unwrap_or_default(), "received")
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
        if thread::panicking() {
            let read = |p: &Path| last_lines(&fs::read_to_string(p).unwrap_or_default(), 30);
            let errors = self.screen.with_extension("errors");
            eprintln!(
                "---- sipp {} ----\n{}\n{}\n{}",
                self.name,
                read(&self.screen),
                read(&errors),
                read(&self.messages)
            );
        }
    }
}

/// The messages of a sipp `-trace_msg` file that were `received` (or `sent`): each entry is a
/// dashed line with a time, `UDP message received [N] bytes :` (or `UDP message sent (N bytes):`),
/// a blank line, the message.
pub fn sipp_messages(trace: &str, direction: &str) -> Vec<String> {
    let marker = format!("message {direction} ");
    trace
        .split("\n----------------------------------------------- ")
        .filter_map(|entry| {
            let (_, rest) = entry.split_once(&marker)?;
            let (_, message) = rest.split_once(":\n\n")?;
            Some(message.trim_end_matches('\n').replace("\r\n", "\n"))
        })
        .collect()
}

/// The SDP body of a SIP message, if it has one.
pub fn sip_body(message: &str) -> Option<&str> {
    let (_, body) = message.split_once("\n\n")?;
    let body = body.trim();
    body.starts_with("v=0").then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_file_gives_its_messages_and_their_sdp() {
        let trace = "----------------------------------------------- 2026-12-07 21:32:28.804339\n\
                     UDP message sent (143 bytes):\n\nINVITE sip:x SIP/2.0\n\n\
                     ----------------------------------------------- 2026-12-07 21:32:28.806375\n\
                     UDP message received [435] bytes :\n\nSIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\nv=0\r\nc=IN IP4 1.2.3.4\r\n\n";
        let got = sipp_messages(trace, "received");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("SIP/2.0 200 OK"));
        assert_eq!(sip_body(&got[0]), Some("v=0\nc=IN IP4 1.2.3.4"));
        assert_eq!(sip_body("BYE sip:x SIP/2.0\nContent-Length: 0\n\n"), None);
    }
}
