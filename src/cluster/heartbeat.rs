//! Every `cluster.heartbeat_ms`: write this node's record and the rooms it holds, give up the
//! rooms that ended here, and release (and announce) the rooms of nodes whose record lapsed.

use super::node::NodeRecord;
use super::{Cluster, ClusterError};
use crate::core::RoomEvent;
use crate::runtime::os_thread::process_cpu_time;
use crate::runtime::Workers;
use crate::webhooks::Webhooks;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_driver::RoomId;
use tracing::{info, warn};

pub(super) struct Heartbeat {
    cluster: Arc<Cluster>,
    workers: Workers,
    hooks: Webhooks,
    media: Vec<String>,
    capacity: Option<usize>,
    /// The rooms the last heartbeat wrote as held here.
    held: HashSet<String>,
    cpu: CpuClock,
    /// A failing Redis is logged once, and its return once.
    failing: bool,
}

impl Heartbeat {
    pub(super) fn new(
        cluster: Arc<Cluster>,
        workers: Workers,
        hooks: Webhooks,
        media: Vec<String>,
        capacity: Option<usize>,
    ) -> Heartbeat {
        Heartbeat {
            cluster,
            workers,
            hooks,
            media,
            capacity,
            held: HashSet::new(),
            cpu: CpuClock::new(),
            failing: false,
        }
    }

    pub(super) async fn run(mut self) {
        let every = Duration::from_millis(self.cluster.cfg.heartbeat_ms);
        let mut next = tokio::time::Instant::now() + every;
        let mut was_draining = false;
        loop {
            // Draining is told at once, not at the next beat: placement must stop choosing us.
            let draining = self.cluster.draining.load(Ordering::Relaxed);
            let due = draining != was_draining || tokio::time::Instant::now() >= next;
            if due {
                was_draining = draining;
                next = tokio::time::Instant::now() + every;
                match self.beat_once().await {
                    Ok(()) if self.failing => {
                        info!("the cluster's redis answers again");
                        self.failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !self.failing => {
                        warn!(error = %e, "cluster heartbeat failed; this node's record lapses if it goes on");
                        self.failing = true;
                    }
                    Err(_) => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(super) async fn beat_once(&mut self) -> Result<(), ClusterError> {
        let c = &self.cluster;
        let rooms = self.workers.list_rooms().await.map_err(|e| ClusterError::Data(e.to_string()))?;
        let mut held = HashMap::new();
        let mut counts = HashMap::new();
        let mut participants = 0;
        for r in &rooms {
            let list: Vec<_> = r
                .room
                .participants
                .iter()
                .flatten()
                .map(|p| json!({ "id": p.id, "kind": p.kind, "identity": p.identity, "display_name": p.display_name }))
                .collect();
            participants += list.len();
            counts.insert(r.room.id.as_str().to_string(), list.len());
            held.insert(r.room.id.as_str().to_string(), serde_json::Value::Array(list).to_string());
        }
        let rec = NodeRecord {
            id: c.id.clone(),
            api_url: c.api_url.clone(),
            media: self.media.clone(),
            capacity: self.capacity,
            participants,
            rooms: rooms.len(),
            cpu: self.cpu.cores(),
            draining: c.draining.load(Ordering::Relaxed),
            version: env!("CARGO_PKG_VERSION").to_string(),
            updated_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        };
        let ttl = Duration::from_millis(c.cfg.node_ttl_ms);
        c.registry.heartbeat(&rec, ttl, &held).await?;
        for gone in self.held.iter().filter(|r| !held.contains_key(*r)) {
            c.registry.release(gone, &c.id).await?;
        }
        self.held = held.into_keys().collect();
        c.prune_parts(&counts).await;
        let (live, lapsed) = c.registry.nodes().await?;
        if let Ok(mut view) = c.view.lock() {
            *view = live;
        }
        for dead in lapsed.iter().filter(|d| **d != c.id) {
            for lost in c.registry.reap(dead, &c.id).await? {
                info!(room = %lost.room, node = %dead, "room lost with its node; released");
                if let Some(room) = RoomId::new(&lost.room) {
                    let ev = RoomEvent::RoomLost { node: dead.clone(), participants: lost.participants };
                    self.hooks.offer(&room, &ev);
                }
            }
        }
        Ok(())
    }
}

/// The process's CPU use between two reads, in cores.
struct CpuClock {
    last: (Instant, Duration),
}

impl CpuClock {
    fn new() -> CpuClock {
        CpuClock { last: (Instant::now(), process_cpu()) }
    }

    fn cores(&mut self) -> f64 {
        let now = (Instant::now(), process_cpu());
        let wall = now.0.duration_since(self.last.0).as_secs_f64();
        let used = now.1.saturating_sub(self.last.1).as_secs_f64();
        self.last = now;
        if wall > 0.0 {
            ((used / wall) * 100.0).round() / 100.0
        } else {
            0.0
        }
    }
}

fn process_cpu() -> Duration {
    process_cpu_time().unwrap_or_default()
}
