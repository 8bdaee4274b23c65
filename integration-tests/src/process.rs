//! The child processes the harness starts (the daemon, the peers): their output read in a
//! thread, its tail for a failure message, and the end of a peer's whole process group.

use std::io::Read;
use std::process::{Child, Command, ExitStatus};
use std::thread::{self, JoinHandle};

/// The last `n` lines of `text`: what a failure message shows of a log.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].join("\n")
}

/// Reads `from` to its end in a thread, so a child never blocks on a full pipe.
pub(crate) fn read_in_thread(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = from.read_to_string(&mut s);
        s
    })
}

/// SIGKILL the process group led by `child` (spawned with `process_group(0)`), then reap the
/// child.
pub(crate) fn kill_group(child: &mut Child) -> Option<ExitStatus> {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: a negative pid signals the process group we created with process_group(0),
    // whose id is our child's pid; the child is not reaped yet, so the id is still ours.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    child.wait().ok()
}

/// Runs `cmd` in a process group of its own (so [`kill_group`] ends all it forks), and has the
/// kernel send it `signal` when the thread that started it ends, so a test killed outright leaves
/// no proxy or phone behind.
pub(crate) fn own_group_ended_with_us(cmd: &mut Command, signal: libc::c_int) {
    // SAFETY: setpgid and prctl are async-signal-safe and touch only the child being started.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, signal);
            Ok(())
        });
    }
}
