//! sipp (`sip-tester`) as the phones: one scenario, one call, run in a temp dir of the test's
//! and killed when dropped; and the SIP messages it traced.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{kill_group, last_lines, own_group_ended_with_us};

pub(crate) const SIPP: &str = "/usr/bin/sipp";

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
