//! `[egress]`: where recordings go and how many may run.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Files are written under `dir/{room}/`. Created when the first egress starts.
    pub dir: PathBuf,
    /// Egresses running at once in one room, and on the node.
    pub max_per_room: usize,
    pub max_total: usize,
    /// The address the egress subscribers' ICE gathers on: one the bridge's WebRTC candidates
    /// can be reached from (loopback when `webrtc.listen` takes it).
    pub local_ip: String,
    /// How long a stop waits for the files to be finalised before the pipeline is torn down.
    pub stop_timeout_secs: u64,
    /// Ended and failed egresses kept for `GET`, per room, the oldest forgotten first.
    pub keep_finished: usize,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            dir: PathBuf::from("/var/lib/switchboard/egress"),
            max_per_room: 4,
            max_total: 16,
            local_ip: "127.0.0.1".into(),
            stop_timeout_secs: 5,
            keep_finished: 16,
        }
    }
}

impl EgressConfig {
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.max_per_room == 0 || self.max_total == 0 {
            return Err(("egress.max_per_room", "egress limits must be at least 1".into()));
        }
        if self.local_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(("egress.local_ip", format!("{:?} is not an IP address", self.local_ip)));
        }
        if !self.dir.is_absolute() {
            return Err(("egress.dir", "must be an absolute path".into()));
        }
        Ok(())
    }
}
