//! `[cluster]`: the Redis that nodes share, and how this node names and announces itself.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port/db`. Unset, the node runs alone, as before clustering.
    /// It may hold a password: it is never logged.
    pub redis_url: Option<String>,
    /// This node's id in the registry. Unset: drawn at start (a restarted node is a new node).
    pub node_id: Option<String>,
    /// The URL other nodes reach this node's API on. Unset: `http://` + `http.listen`.
    pub api_url: Option<String>,
    /// How often the node writes its record (and looks for lapsed nodes).
    pub heartbeat_ms: u64,
    /// How long a record lives without a heartbeat: a node silent this long is gone.
    pub node_ttl_ms: u64,
    /// Participants this node takes before placement passes it over; unset, `node.max_participants`.
    pub capacity: Option<usize>,
    /// Prefix of every key, so several clusters can share one Redis.
    pub key_prefix: String,
    /// Trunks between nodes (cascaded rooms) are SDES-SRTP; false: plain RTP, for a trusted
    /// private network only.
    pub trunk_srtp: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: None,
            node_id: None,
            api_url: None,
            heartbeat_ms: 2000,
            node_ttl_ms: 6000,
            capacity: None,
            key_prefix: "sb".into(),
            trunk_srtp: true,
        }
    }
}

impl ClusterConfig {
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.redis_url.is_none() {
            return Ok(());
        }
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")) {
                return Err(("cluster.redis_url", "must start with redis://, rediss:// or unix://".into()));
            }
        }
        if self.heartbeat_ms < 100 {
            return Err(("cluster.heartbeat_ms", "must be at least 100".into()));
        }
        if self.node_ttl_ms < 2 * self.heartbeat_ms {
            return Err(("cluster.node_ttl_ms", "must be at least twice cluster.heartbeat_ms".into()));
        }
        if let Some(id) = &self.node_id {
            if !valid_id(id) {
                return Err(("cluster.node_id", "1 to 64 of A-Z a-z 0-9 _ . -".into()));
            }
        }
        if let Some(url) = &self.api_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(("cluster.api_url", "must start with http:// or https://".into()));
            }
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(char::is_whitespace) {
            return Err(("cluster.key_prefix", "must be non-empty, with no spaces".into()));
        }
        Ok(())
    }

    /// What other nodes call: the configured URL, else the API's own address.
    pub fn api_url_for(&self, listen: SocketAddr) -> String {
        self.api_url.clone().unwrap_or_else(|| format!("http://{listen}")).trim_end_matches('/').to_string()
    }
}

pub(crate) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
