//! Many nodes, one cluster: a Redis registry of nodes with heartbeats, room owners chosen
//! atomically at creation, requests for a room proxied to its owner from any node, and a lapsed
//! node's rooms released and announced (`room_lost`). See docs/cluster.md.

mod cascade;
mod config;
mod heartbeat;
mod node;
pub mod proxy;
mod registry;

pub use cascade::PART_OF;
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

/// What a request does to its room, for placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Reads or changes a room that must exist.
    Use,
    /// `POST /v1/rooms`: makes the room, so one with no owner gets one now.
    Create,
    /// A join: makes the room if it is missing, and may be served by a part of the room when
    /// its owner is full.
    Join,
}

/// Where a request about a room is served.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Here,
    /// The owner's API URL.
    Owner(String),
    /// A join for a part of the room: `at` holds it (`None`: this node), trunked to the owner.
    Part {
        at: Option<String>,
        owner: String,
        owner_url: String,
    },
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
    /// Signs the calls this node makes to others (trunks): every node has the same keys.
    keyring: crate::auth::Keyring,
    /// The parts of rooms held here, by room.
    parts: Mutex<std::collections::HashMap<String, cascade::Part>>,
    /// One trunk set up at a time: two joins at once must not make two parts.
    part_lock: tokio::sync::Mutex<()>,
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
            keyring: cfg.auth.keyring(),
            parts: Mutex::new(std::collections::HashMap::new()),
            part_lock: tokio::sync::Mutex::new(()),
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

    /// Where a request about `room` is served.
    pub async fn route(&self, room: &RoomId, intent: Intent) -> Result<Route, ApiError> {
        let owner = match self.registry.owner(room.as_str()).await? {
            Some(owner) => owner,
            None if intent == Intent::Use => {
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
                let Some(chosen) = choose(&nodes, &self.id) else {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no_capacity",
                        "no node in the cluster has room for another participant",
                    ));
                };
                self.registry.claim(room.as_str(), &chosen.id).await?
            }
        };
        let known = self.nodes().into_iter().find(|n| n.id == owner);
        let rec = match known {
            Some(rec) => Some(rec),
            None if owner == self.id => None,
            None => self.registry.node(&owner).await?,
        };
        if let Some(rec) = rec.as_ref().filter(|r| intent == Intent::Join && !r.has_room_left()) {
            if let Some(part) = self.part_for(room, rec).await? {
                return Ok(part);
            }
        }
        if owner == self.id {
            return Ok(Route::Here);
        }
        match rec {
            Some(rec) => Ok(Route::Owner(rec.api_url)),
            None => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "owner_unavailable",
                "the node that holds this room stopped answering; its rooms are released within seconds, then join again",
            )),
        }
    }

    /// The node to hold a part of `room` for a join its full owner cannot take: one that holds
    /// a part already, if it has capacity, else the least loaded other node. `None`: no node
    /// can, and the owner takes the join or refuses it by its own limits.
    async fn part_for(&self, room: &RoomId, owner: &NodeRecord) -> Result<Option<Route>, ApiError> {
        let holding = self.registry.parts(room.as_str()).await?;
        let others: Vec<NodeRecord> =
            self.nodes().into_iter().filter(|n| n.id != owner.id && !(n.id == self.id && self.draining())).collect();
        let held: Vec<NodeRecord> = others.iter().filter(|n| holding.contains(&n.id)).cloned().collect();
        let Some(at) = choose(&held, &self.id).or_else(|| choose(&others, &self.id)) else { return Ok(None) };
        let at = (at.id != self.id).then(|| at.api_url.clone());
        Ok(Some(Route::Part { at, owner: owner.id.clone(), owner_url: owner.api_url.clone() }))
    }

    /// The API URL of a live node.
    pub fn url_of(&self, id: &str) -> Option<String> {
        self.nodes().into_iter().find(|n| n.id == id).map(|n| n.api_url)
    }

    /// A clean exit: this node leaves the registry and gives up its rooms at once.
    pub async fn leave(&self) {
        if let Err(e) = self.registry.leave(&self.id).await {
            tracing::warn!(error = %e, "could not leave the cluster cleanly; the record lapses on its own");
        }
    }
}
