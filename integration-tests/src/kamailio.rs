//! Debian's Kamailio as a stateful SIP proxy whose `rtpengine` module drives the bridge over ng:
//! its config, written by the test, and the process, run in a temp dir of the test's on loopback
//! ports the test picks, killed when dropped.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{kill_group, last_lines, own_group_ended_with_us};
use crate::sipp::SIPP;

const KAMAILIO: &str = "/usr/sbin/kamailio";

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
