//! Egress: recordings of a room, made by a subscriber that the room serves like any other.
//!
//! An egress is a `webrtcbin` in this process (`switchboard-egress`) joined to the room through
//! the ordinary join path, receive-only, so the media workers never see anything new: they
//! forward, mix and composite to it as to a browser, over loopback. What it receives is written
//! by GStreamer on its own threads. A failing pipeline ends the egress, never the room. This
//! module keeps the egresses (bounded per room and per node), their states and their events;
//! `life` runs each one. See docs/egress.md.

mod config;
mod life;
mod request;

pub use config::EgressConfig;
pub use life::{start, stop, stop_all};
pub use request::{plan, EgressRequest, Plan};

use crate::core::RoomEvent;
use crate::metrics::{EgressTotals, Metrics};
use crate::runtime::{Command, CommandError, Workers};
use crate::webhooks::Webhooks;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_driver::{ParticipantId, RoomId};
use switchboard_egress::{Container, Layout, OutputStats, Recorder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Building the pipeline and joining the room.
    Starting,
    /// Joined; files are written as streams arrive.
    Active,
    /// Stopping: the files are being finalised.
    Ending,
    /// Stopped, every file finalised.
    Complete,
    /// Ended by a failure; `error` says why. Files written so far stay.
    Failed,
}

impl State {
    fn running(self) -> bool {
        matches!(self, State::Starting | State::Active | State::Ending)
    }
}

/// One egress as `GET` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EgressView {
    pub id: String,
    pub room_id: RoomId,
    pub kind: &'static str,
    pub state: State,
    pub error: Option<String>,
    /// The subscriber that receives the room's media for it.
    pub participant_id: Option<ParticipantId>,
    pub started_at: u64,
    pub ended_at: Option<u64>,
    pub outputs: Vec<OutputView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputView {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The directory the files go into (`file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Where the stream is pushed (`rtmp`): scheme, host and port only, never the stream key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// One entry per file, with its statistics; files appear as the streams arrive.
    pub files: Vec<OutputStats>,
}

pub(crate) struct Life {
    state: State,
    error: Option<String>,
    participant: Option<ParticipantId>,
    recorder: Option<Recorder>,
    /// The statistics the recorder gave when it stopped.
    last: Vec<OutputStats>,
    ended_at: Option<u64>,
}

/// One egress.
pub struct Egress {
    pub id: String,
    pub room: RoomId,
    plan: Plan,
    dir: PathBuf,
    started_at: u64,
    life: Mutex<Life>,
}

impl Egress {
    fn life(&self) -> MutexGuard<'_, Life> {
        // Plain data: a panic while it was held leaves nothing half-done that matters.
        self.life.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn view(&self) -> EgressView {
        let l = self.life();
        let files = l.recorder.as_ref().map_or_else(|| l.last.clone(), Recorder::stats);
        EgressView {
            id: self.id.clone(),
            room_id: self.room.clone(),
            kind: self.plan.kind(),
            state: l.state,
            error: l.error.clone(),
            participant_id: l.participant,
            started_at: self.started_at,
            ended_at: l.ended_at,
            outputs: vec![match &self.plan.rtmp {
                Some((_, shown)) => OutputView { kind: "rtmp", dir: None, url: Some(shown.clone()), files },
                None => {
                    let kind = if self.plan.layout == Layout::Composite(Container::Hls) { "hls" } else { "file" };
                    OutputView { kind, dir: Some(self.dir.display().to_string()), url: None, files }
                }
            }],
        }
    }

    fn files(&self) -> Vec<String> {
        self.view().outputs.into_iter().flat_map(|o| o.files).map(|f| f.path).collect()
    }
}

/// Why an egress could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("room {0} already has {1} egresses running, the most it takes (egress.max_per_room)")]
    RoomLimit(String, usize),
    #[error("the node already runs {0} egresses, the most it takes (egress.max_total)")]
    NodeLimit(usize),
}

/// Every egress of the node, by room.
pub struct Egresses {
    cfg: EgressConfig,
    media: Workers,
    hooks: Webhooks,
    metrics: Arc<Metrics>,
    rooms: Mutex<HashMap<RoomId, Vec<Arc<Egress>>>>,
    /// What the ended egresses wrote and dropped, so the node's totals never fall.
    retired_bytes: AtomicU64,
    retired_dropped: AtomicU64,
}

impl Egresses {
    pub fn new(cfg: EgressConfig, media: Workers, hooks: Webhooks, metrics: Arc<Metrics>) -> Arc<Egresses> {
        let reg = Arc::new(Egresses {
            cfg,
            media,
            hooks,
            metrics: metrics.clone(),
            rooms: Mutex::new(HashMap::new()),
            retired_bytes: AtomicU64::new(0),
            retired_dropped: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&reg);
        metrics.egress.set_source(move || weak.upgrade().map(|r| r.totals()).unwrap_or_default());
        reg
    }

    /// The node's totals for the metrics: the running egresses' statistics now, plus what the
    /// ended ones wrote.
    pub fn totals(&self) -> EgressTotals {
        let mut t = EgressTotals {
            bytes_written: self.retired_bytes.load(Ordering::Relaxed),
            dropped_buffers: self.retired_dropped.load(Ordering::Relaxed),
            ..EgressTotals::default()
        };
        for e in self.running() {
            t.running += 1;
            let l = e.life();
            for f in l.recorder.as_ref().map(Recorder::stats).unwrap_or_default() {
                t.bytes_written += f.bytes_written;
                t.dropped_buffers += f.dropped_buffers;
                t.queued += u64::from(f.queue_level);
                t.latency_seconds = t.latency_seconds.max(f.latency_ms.unwrap_or(0.0) / 1000.0);
            }
        }
        t
    }

    /// Counts an egress that has ended (its recorder already stopped).
    fn retire(&self, e: &Egress, outcome: &str) {
        let l = e.life();
        self.retired_bytes.fetch_add(l.last.iter().map(|f| f.bytes_written).sum(), Ordering::Relaxed);
        self.retired_dropped.fetch_add(l.last.iter().map(|f| f.dropped_buffers).sum(), Ordering::Relaxed);
        self.metrics.egress.ended.with_label_values(&[outcome]).inc();
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomId, Vec<Arc<Egress>>>> {
        self.rooms.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new egress in `starting`, within the limits. Finished egresses past
    /// `egress.keep_finished` are forgotten here, the oldest first.
    pub fn reserve(&self, room: &RoomId, plan: Plan) -> Result<Arc<Egress>, Refusal> {
        let mut rooms = self.rooms();
        let running = |v: &Vec<Arc<Egress>>| v.iter().filter(|e| e.life().state.running()).count();
        let total: usize = rooms.values().map(running).sum();
        if total >= self.cfg.max_total {
            return Err(Refusal::NodeLimit(self.cfg.max_total));
        }
        let list = rooms.entry(room.clone()).or_default();
        if running(list) >= self.cfg.max_per_room {
            return Err(Refusal::RoomLimit(room.to_string(), self.cfg.max_per_room));
        }
        let finished = list.len() - running(list);
        let mut extra = (finished + 1).saturating_sub(self.cfg.keep_finished);
        list.retain(|e| {
            let drop = extra > 0 && !e.life().state.running();
            extra -= usize::from(drop);
            !drop
        });
        let id = format!("{:016x}", rand::random::<u64>());
        let life = Life {
            state: State::Starting,
            error: None,
            participant: None,
            recorder: None,
            last: Vec::new(),
            ended_at: None,
        };
        let e = Arc::new(Egress {
            dir: self.cfg.dir.join(room.as_str()),
            id,
            room: room.clone(),
            plan,
            started_at: unix_now(),
            life: Mutex::new(life),
        });
        list.push(e.clone());
        Ok(e)
    }

    pub fn list(&self, room: &RoomId) -> Vec<EgressView> {
        self.rooms().get(room).map(|v| v.iter().map(|e| e.view()).collect()).unwrap_or_default()
    }

    pub fn find(&self, room: &RoomId, id: &str) -> Option<Arc<Egress>> {
        self.rooms().get(room)?.iter().find(|e| e.id == id).cloned()
    }

    /// Every running egress of the node, for shutdown.
    pub fn running(&self) -> Vec<Arc<Egress>> {
        self.rooms().values().flatten().filter(|e| e.life().state.running()).cloned().collect()
    }

    /// The event to the room's SSE listeners and webhooks, through the worker that holds it;
    /// once the room is gone, to the webhooks alone.
    async fn announce(&self, room: &RoomId, event: RoomEvent) {
        let r = room.clone();
        let ev = event.clone();
        match self.media.call(|reply| Command::Announce { room: r, event: ev, reply }).await {
            Err(CommandError::RoomNotFound(_)) => self.hooks.offer(room, &event),
            Err(e) => tracing::debug!(room = %room, error = %e, "egress event not announced"),
            Ok(()) => {}
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
