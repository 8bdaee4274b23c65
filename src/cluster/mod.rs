//! Many nodes, one cluster: a Redis registry of nodes with heartbeats, room owners chosen
//! atomically at creation, requests for a room proxied to its owner from any node, and a lapsed
//! node's rooms released and announced (`room_lost`). See docs/cluster.md.

mod config;
mod heartbeat;
mod node;
pub mod proxy;
mod registry;

pub use config::ClusterConfig;
pub use node::{choose, NodeRecord};

use crate::api::ApiError;
use crate::runtime::Workers;
use crate::webhooks::Webhooks;
use axum::http::StatusCode;
use registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_driver::RoomId;
use thiserror::Error;
use tracing::info;

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("cluster.redis_url: {0}")]
    Config(String),
    /// The message of a Redis error; it names no URL and so no password.
    #[error("redis: {0}")]
    Redis(String),
    #[error("redis did not answer in time")]
    Timeout,
    #[error("bad data in redis: {0}")]
    Data(String),
}

impl From<redis::RedisError> for ClusterError {
    fn from(e: redis::RedisError) -> Self {
        ClusterError::Redis(format!("{:?}: {}", e.kind(), e.detail().unwrap_or("")))
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable", e.to_string())
    }
}

/// Where a request about a room is served.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Here,
    /// The owner's API URL.
    Owner(String),
}

/// This node's part in the cluster.
pub struct Cluster {
    id: String,
    api_url: String,
    registry: Registry,
    cfg: ClusterConfig,
    /// The live nodes at the last heartbeat, this one included.
    view: Mutex<Vec<NodeRecord>>,
    draining: Arc<AtomicBool>,
    pub(crate) http: reqwest::Client,
}

impl Cluster {
    /// Joins the cluster `[cluster]` names, or `None` when it names none.
    pub async fn start(
        cfg: &crate::config::Config,
        workers: Workers,
        hooks: Webhooks,
        draining: Arc<AtomicBool>,
    ) -> Result<Option<Arc<Cluster>>, ClusterError> {
        let c = &cfg.cluster;
        let Some(url) = c.redis_url.as_deref() else { return Ok(None) };
        let registry = Registry::connect(url, &c.key_prefix).await?;
        let id = c.node_id.clone().unwrap_or_else(|| format!("node-{:08x}", rand::random::<u32>()));
        crate::webhooks::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .map_err(|e| ClusterError::Config(format!("the proxy's HTTP client: {e}")))?;
        let cluster = Arc::new(Cluster {
            api_url: c.api_url_for(cfg.http.listen),
            id,
            registry,
            cfg: c.clone(),
            view: Mutex::new(Vec::new()),
            draining,
            http,
        });
        let media =
            vec![format!("webrtc {}", cfg.webrtc.listen), format!("rtp {}-{}", cfg.rtp.port_min, cfg.rtp.port_max)];
        let capacity = Some(c.capacity.unwrap_or(cfg.node.max_participants));
        let mut beat = heartbeat::Heartbeat::new(cluster.clone(), workers, hooks, media, capacity);
        // The first record is written before the API serves, so placement can see this node.
        beat.beat_once().await?;
        tokio::spawn(beat.run());
        info!(node = %cluster.id, api = %cluster.api_url, "joined the cluster");
        Ok(Some(cluster))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Where a request about `room` is served. `creating`: the request makes the room if it is
    /// missing (a create or a join), so a room with no owner gets one now.
    pub async fn route(&self, room: &RoomId, creating: bool) -> Result<Route, ApiError> {
        let owner = match self.registry.owner(room.as_str()).await? {
            Some(owner) => owner,
            None if !creating => {
                if let Some(stone) = self.registry.lost(room.as_str()).await? {
                    return Err(ApiError::new(
                        StatusCode::GONE,
                        "room_lost",
                        format!("the room was lost with node {}; join again to re-create it", stone["node"]),
                    ));
                }
                // No owner: the room does not exist, and this node says so.
                return Ok(Route::Here);
            }
            None => {
                // A draining node takes no new room, even before its record says so.
                let nodes: Vec<NodeRecord> =
                    self.nodes().into_iter().filter(|n| !(n.id == self.id && self.draining())).collect();
                let Some(chosen) = choose(&nodes) else {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no_capacity",
                        "no node in the cluster has room for another participant",
                    ));
                };
                self.registry.claim(room.as_str(), &chosen.id).await?
            }
        };
        if owner == self.id {
            return Ok(Route::Here);
        }
        let known = self.nodes().into_iter().find(|n| n.id == owner);
        let rec = match known {
            Some(rec) => Some(rec),
            None => self.registry.node(&owner).await?,
        };
        match rec {
            Some(rec) => Ok(Route::Owner(rec.api_url)),
            None => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "owner_unavailable",
                "the node that holds this room stopped answering; its rooms are released within seconds, then join again",
            )),
        }
    }

    /// A clean exit: this node leaves the registry and gives up its rooms at once.
    pub async fn leave(&self) {
        if let Err(e) = self.registry.leave(&self.id).await {
            tracing::warn!(error = %e, "could not leave the cluster cleanly; the record lapses on its own");
        }
    }
}
