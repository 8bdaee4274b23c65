//! What the HTTP API asks of the media worker. Each command carries its own reply channel, so the
//! worker never blocks on the API and the API never touches a room.

use crate::core::view::{ParticipantView, RoomView, TrackView};
use crate::core::{AudioPreference, MediaGrants, VideoPreference};
use mio::Waker;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;
use switchboard_driver::{ParticipantId, ParticipantKind, RoomId, TrackId};
use tokio::sync::{broadcast, oneshot};

pub type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

/// One SSE event, serialized once for every listener.
#[derive(Debug, Clone)]
pub struct EventFrame {
    pub name: &'static str,
    pub data: String,
}

pub type EventStream = broadcast::Receiver<Arc<EventFrame>>;

#[derive(Debug)]
pub struct JoinRequest {
    pub kind: Option<ParticipantKind>,
    pub sdp: Option<String>,
    pub display_name: Option<String>,
    /// The token's `sub`: the identity that may act on this participant.
    pub identity: Option<String>,
    pub media: MediaGrants,
    pub audio: AudioPreference,
    pub video: VideoPreference,
}

#[derive(Debug)]
pub struct Joined {
    pub participant: ParticipantView,
    pub sdp: String,
}

#[derive(Debug)]
pub enum Command {
    CreateRoom {
        id: Option<RoomId>,
        max_participants: Option<usize>,
        reply: Reply<RoomView>,
    },
    ListRooms {
        reply: Reply<Vec<RoomView>>,
    },
    GetRoom {
        room: RoomId,
        reply: Reply<RoomView>,
    },
    DeleteRoom {
        room: RoomId,
        reply: Reply<()>,
    },
    Join {
        room: RoomId,
        request: JoinRequest,
        reply: Reply<Joined>,
    },
    Renegotiate {
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
        reply: Reply<Option<String>>,
    },
    GetParticipant {
        room: RoomId,
        participant: ParticipantId,
        reply: Reply<ParticipantView>,
    },
    Leave {
        room: RoomId,
        participant: ParticipantId,
        reply: Reply<()>,
    },
    Dtmf {
        room: RoomId,
        participant: ParticipantId,
        digits: String,
        duration_ms: u32,
        reply: Reply<()>,
    },
    MuteTrack {
        room: RoomId,
        participant: ParticipantId,
        track: TrackId,
        muted: bool,
        reply: Reply<TrackView>,
    },
    Subscribe {
        room: RoomId,
        reply: Reply<EventStream>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// A test hook (`debug.stall_hook`): the media thread sleeps this long.
    Stall(std::time::Duration),
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    #[error("room {0} not found")]
    RoomNotFound(String),
    #[error("room {0} already exists")]
    RoomExists(String),
    #[error("participant not found in this room")]
    ParticipantNotFound,
    #[error("the participant publishes no such track")]
    TrackNotFound,
    #[error("{0}")]
    BadSdp(String),
    #[error("{0}")]
    KindMismatch(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("room is full: it holds at most {0} participants")]
    RoomFull(usize),
    #[error("no free media ports in the configured range; try again when calls have ended")]
    NoPorts,
    #[error("{0}")]
    Unsupported(String),
    #[error("the bridge is shutting down")]
    ShuttingDown,
    #[error("the media thread is busy: {0}; try again")]
    Busy(String),
    #[error("{0}")]
    NodeFull(String),
    #[error("room already has {0} event listeners, the most it takes")]
    TooManyListeners(usize),
    #[error("the node is out of file descriptors (RLIMIT_NOFILE); try again when calls have ended")]
    NoResources,
    #[error("{0}")]
    DtmfQueueFull(String),
}

/// Lets the API reach the worker.
#[derive(Clone)]
pub struct Handle {
    tx: SyncSender<Command>,
    waker: Arc<Waker>,
    heartbeat: Arc<super::heartbeat::Heartbeat>,
    /// How long a call waits for the media thread's answer before it is `Busy`.
    timeout: Duration,
}

/// Commands waiting for the media thread at most; past it a call is answered `Busy` at once.
pub const COMMAND_QUEUE: usize = 1024;

impl Handle {
    pub fn new(
        tx: SyncSender<Command>,
        waker: Arc<Waker>,
        heartbeat: Arc<super::heartbeat::Heartbeat>,
        timeout: Duration,
    ) -> Handle {
        Handle { tx, waker, heartbeat, timeout }
    }

    fn enqueue(&self, cmd: Command) -> Result<(), CommandError> {
        match self.tx.try_send(cmd) {
            Ok(()) => {
                let _ = self.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                Err(CommandError::Busy(format!("{COMMAND_QUEUE} requests are waiting for it already")))
            }
            Err(TrySendError::Disconnected(_)) => Err(CommandError::ShuttingDown),
        }
    }

    /// How long ago the media thread last turned its loop.
    pub fn media_age(&self) -> std::time::Duration {
        self.heartbeat.age(std::time::Instant::now())
    }

    /// Sends a command that wants no reply.
    pub fn send(&self, cmd: Command) -> Result<(), CommandError> {
        self.enqueue(cmd)
    }

    /// Sends a command and waits for its answer, at most the configured time: a media thread
    /// that is stuck or swamped gets the caller a `Busy`, not a hung request. A command that
    /// times out is still carried out when the thread gets to it.
    pub async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.enqueue(make(reply))?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(answer) => answer.map_err(|_| CommandError::ShuttingDown)?,
            Err(_) => Err(CommandError::Busy(format!(
                "no answer within {} ms (http.command_timeout_ms)",
                self.timeout.as_millis()
            ))),
        }
    }

    pub async fn shutdown(&self) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let mut cmd = Command::Shutdown { reply };
        // The queue may be full of requests: the shutdown waits its turn rather than being lost.
        loop {
            match self.tx.try_send(cmd) {
                Ok(()) => break,
                Err(TrySendError::Full(c)) => {
                    cmd = c;
                    let _ = self.waker.wake();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        let _ = self.waker.wake();
        let _ = rx.await;
    }
}
