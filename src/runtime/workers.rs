//! The set of media workers as the API sees it: a command about a room goes to the worker that
//! holds the room (a new room to the least loaded one, `placement`); a command about the node
//! goes to every running worker and their answers are merged; the node's health is the worst of
//! theirs.

use super::command::{Command, CommandError, Handle, Reply};
use super::placement::{Absent, Load, Placement};
use super::status::WorkerStatus;
use crate::core::view::RoomView;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_driver::RoomId;
use tokio::sync::oneshot;

/// What the workers and the API share.
#[derive(Debug)]
pub struct Shared {
    /// Each worker's status, by index.
    pub status: Vec<WorkerStatus>,
    pub placement: Placement,
    /// Each worker's WebRTC address as its candidates name it: a leg's peer policy refuses them
    /// all, so no leg can be pointed at any worker's shared socket.
    pub webrtc: Vec<SocketAddr>,
}

impl Shared {
    /// Participants on the node: `own` for the asking worker (exact), the rest as last published.
    pub fn participants(&self, worker: usize, own: usize) -> usize {
        let others: usize =
            self.status.iter().enumerate().filter(|(i, _)| *i != worker).map(|(_, s)| s.participants()).sum();
        own + others
    }
}

/// A room as the API shows it: the core's view, and the worker that holds it.
#[derive(Debug, Clone, Serialize)]
pub struct PlacedRoom {
    #[serde(flatten)]
    pub room: RoomView,
    pub worker: usize,
}

/// Why the node is not healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// The worker panicked outside any participant; its rooms were closed.
    Failed(usize),
    /// The worker has not turned its loop for this long.
    Stalled(usize, Duration),
}

#[derive(Clone)]
pub struct Workers {
    handles: Arc<[Handle]>,
    shared: Arc<Shared>,
    /// `rooms.auto_create`: whether a join may place a room.
    auto_create: bool,
    max_rooms: usize,
}

impl Workers {
    pub fn new(handles: Vec<Handle>, shared: Arc<Shared>, auto_create: bool, max_rooms: usize) -> Workers {
        Workers { handles: handles.into(), shared, auto_create, max_rooms }
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    fn loads(&self, rooms: &[usize]) -> Vec<Load> {
        self.shared
            .status
            .iter()
            .zip(rooms)
            .map(|(s, &rooms)| Load {
                running: s.is_running(),
                participants: s.participants(),
                rooms,
                cpu_permille: s.cpu_permille(),
            })
            .collect()
    }

    /// Sends a command about a room to the worker that holds it and waits for the answer.
    pub async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        self.call_placed(make).await.map(|(answer, _)| answer)
    }

    /// `call`, also saying which worker answered. A room with no worker yet is placed when the
    /// command creates it (a create, or a join with `rooms.auto_create`) and is `room_not_found`
    /// otherwise, without asking any worker.
    pub async fn call_placed<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<(T, usize), CommandError> {
        let (reply, rx) = oneshot::channel();
        let cmd = make(reply);
        let Some(room) = cmd.room().cloned() else {
            return Err(CommandError::BadRequest("this command is about the node, not a room".into()));
        };
        let absent = match &cmd {
            Command::CreateRoom { .. } => Absent::Place { max_rooms: self.max_rooms },
            Command::Join { .. } if self.auto_create => Absent::Place { max_rooms: self.max_rooms },
            _ => Absent::NotFound,
        };
        let w = self.shared.placement.route(&room, absent, |rooms| self.loads(rooms))?;
        // A worker that failed marks itself before it announces its rooms' end and before it
        // clears them from the table: in between, its rooms are gone, not "shutting down".
        if !self.shared.status[w].is_running() {
            self.shared.placement.settle(&room);
            return Err(CommandError::RoomNotFound(room.to_string()));
        }
        let handle = &self.handles[w];
        let deadline = handle.deadline();
        if let Err(e) = handle.enqueue(cmd) {
            self.shared.placement.settle(&room);
            return Err(e);
        }
        handle.wait(rx, deadline).await.map(|answer| (answer, w))
    }

    /// Which worker holds `room`, if any.
    pub fn worker_of(&self, room: &RoomId) -> Option<usize> {
        self.shared.placement.worker_of(room)
    }

    /// Every room on every running worker, by id. All are asked at once, so the answer takes as
    /// long as the slowest worker, and one that does not answer in time makes it `Busy`.
    pub async fn list_rooms(&self) -> Result<Vec<PlacedRoom>, CommandError> {
        let mut asked = Vec::new();
        for (w, handle) in self.running() {
            let (reply, rx) = oneshot::channel();
            handle.enqueue(Command::ListRooms { reply })?;
            asked.push((w, handle, rx, handle.deadline()));
        }
        let mut rooms = Vec::new();
        for (worker, handle, rx, deadline) in asked {
            rooms.extend(handle.wait(rx, deadline).await?.into_iter().map(|room| PlacedRoom { room, worker }));
        }
        rooms.sort_by(|a, b| a.room.id.cmp(&b.room.id));
        Ok(rooms)
    }

    fn running(&self) -> impl Iterator<Item = (usize, &Handle)> {
        self.handles.iter().enumerate().filter(|(w, _)| self.shared.status[*w].is_running())
    }

    fn handle(&self, worker: usize) -> Result<&Handle, CommandError> {
        self.handles
            .get(worker)
            .ok_or_else(|| CommandError::BadRequest(format!("no worker {worker}: this node runs {}", self.len())))
    }

    /// The test hooks: worker `worker` sleeps `d`, or panics.
    pub fn stall(&self, worker: usize, d: Duration, panic: bool) -> Result<(), CommandError> {
        self.handle(worker)?.enqueue(if panic { Command::Crash } else { Command::Stall(d) })
    }

    /// Closes every participant on every worker and stops them; returns once all have stopped.
    pub async fn shutdown(&self) {
        let mut stopping = Vec::new();
        for h in self.handles.iter() {
            stopping.push(h.ask_shutdown().await);
        }
        for rx in stopping {
            let _ = rx.await;
        }
    }

    /// What is wrong with the workers, if anything: a failed one first, else the running one
    /// whose loop has not turned for the longest, when that is longer than `stalled_after`.
    pub fn trouble(&self, stalled_after: Duration) -> Option<Trouble> {
        let status = &self.shared.status;
        if let Some(w) = status.iter().position(WorkerStatus::has_failed) {
            return Some(Trouble::Failed(w));
        }
        let now = Instant::now();
        let (w, age) = status
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_running())
            .map(|(w, s)| (w, s.heartbeat.age(now)))
            .max_by_key(|(_, age)| *age)?;
        (age > stalled_after).then_some(Trouble::Stalled(w, age))
    }
}

/// A room id for a create that named none: random, so no caller can guess the next one.
pub fn new_room_id() -> Result<RoomId, CommandError> {
    RoomId::new(&format!("room-{:012x}", rand::random::<u64>() >> 16))
        .ok_or_else(|| CommandError::BadRequest("could not make a room id".into()))
}
