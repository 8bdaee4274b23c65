//! What one node takes on: rooms and participants in all, how long it drains on SIGTERM, and the
//! open-file limit it sets at start.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[node]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Rooms at most; past it `POST /v1/rooms` and auto-created joins get 503 `node_full`.
    pub max_rooms: usize,
    /// Participants in all rooms at most; past it a join gets 503 `node_full`.
    pub max_participants: usize,
    /// On SIGTERM, how long the node waits for participants to leave before it closes the rest.
    pub drain_timeout_secs: u64,
    /// The soft RLIMIT_NOFILE set at start (never above the hard limit). A leg holds two
    /// sockets; an HTTP connection, an event stream and GStreamer's pipes hold the rest.
    pub open_files: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig { max_rooms: 1000, max_participants: 5000, drain_timeout_secs: 30, open_files: 65_536 }
    }
}

impl NodeConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.max_rooms == 0 || self.max_participants == 0 {
            return Err("node.max_rooms and node.max_participants must be at least 1".into());
        }
        if self.open_files < 256 {
            return Err("node.open_files must be at least 256".into());
        }
        Ok(())
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

/// Sets the soft open-file limit to `want`, or to the hard limit if that is lower: raised where
/// the distribution's default (often 1024) would run out first, lowered where an operator wants
/// the node to stop short of the machine's. Returns the soft limit now in force.
pub fn raise_open_files(want: u64) -> std::io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let target = want.min(lim.rlim_max);
    if lim.rlim_cur == target {
        return Ok(target);
    }
    lim.rlim_cur = target;
    // SAFETY: `lim` is a valid rlimit whose soft value does not exceed its hard value.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(target)
}

/// True for the errors that mean "out of file descriptors", process-wide or system-wide.
pub fn is_out_of_files(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}
