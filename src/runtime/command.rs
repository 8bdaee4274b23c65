//! What the HTTP API asks of a media worker, and the handle it asks through. Each command carries
//! its own reply channel, so the worker never blocks on the API and the API never touches a room.

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
        /// Drawn by the API when the request named none, so it can be placed like any other.
        id: RoomId,
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
    /// An event about the room from outside it (an egress's), to its SSE listeners and webhooks.
    Announce {
        room: RoomId,
        event: crate::core::RoomEvent,
        reply: Reply<()>,
    },
    /// A test hook (`debug.stall_hook`): the worker sleeps this long.
    Stall(std::time::Duration),
    /// A test hook (`debug.stall_hook` with `"panic": true`): the worker panics outside any
    /// participant, as a bug in its own code would.
    Crash,
}

impl Command {
    /// The room a command is about; `None` for those that are about the worker.
    pub fn room(&self) -> Option<&RoomId> {
        match self {
            Command::CreateRoom { id: room, .. }
            | Command::GetRoom { room, .. }
            | Command::DeleteRoom { room, .. }
            | Command::Join { room, .. }
            | Command::Renegotiate { room, .. }
            | Command::GetParticipant { room, .. }
            | Command::Leave { room, .. }
            | Command::Dtmf { room, .. }
            | Command::MuteTrack { room, .. }
            | Command::Subscribe { room, .. }
            | Command::Announce { room, .. } => Some(room),
            Command::ListRooms { .. } | Command::Shutdown { .. } | Command::Stall(_) | Command::Crash => None,
        }
    }
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

/// Lets the API reach one worker. `Workers` holds one per worker and decides which to use.
#[derive(Clone)]
pub struct Handle {
    tx: SyncSender<Command>,
    waker: Arc<Waker>,
    /// How long a call waits for the worker's answer before it is `Busy`.
    timeout: Duration,
}

/// Commands waiting for one worker at most; past it a call is answered `Busy` at once.
pub const COMMAND_QUEUE: usize = 1024;

impl Handle {
    pub fn new(tx: SyncSender<Command>, waker: Arc<Waker>, timeout: Duration) -> Handle {
        Handle { tx, waker, timeout }
    }

    pub fn enqueue(&self, cmd: Command) -> Result<(), CommandError> {
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

    /// Waits for the answer to a command already enqueued, until `deadline` (`http.command_timeout_ms`
    /// after it was sent): a worker that is stuck or swamped gets the caller a `Busy`, not a hung
    /// request. A command that times out is still carried out when the worker gets to it.
    pub async fn wait<T>(
        &self,
        rx: oneshot::Receiver<Result<T, CommandError>>,
        deadline: tokio::time::Instant,
    ) -> Result<T, CommandError> {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(answer) => answer.map_err(|_| CommandError::ShuttingDown)?,
            Err(_) => Err(CommandError::Busy(format!(
                "no answer within {} ms (http.command_timeout_ms)",
                self.timeout.as_millis()
            ))),
        }
    }

    /// When an answer to a command sent now is due.
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.timeout
    }

    /// Sends a command and waits for its answer (see `wait`).
    pub async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(make(reply))?;
        self.wait(rx, self.deadline()).await
    }

    /// Asks the worker to close everything and stop; the receiver resolves when it has (or at
    /// once, if it had stopped already).
    pub async fn ask_shutdown(&self) -> oneshot::Receiver<()> {
        let (reply, rx) = oneshot::channel();
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
                // The command, and the reply sender in it, are dropped: `rx` resolves at once.
                Err(TrySendError::Disconnected(_)) => return rx,
            }
        }
        let _ = self.waker.wake();
        rx
    }
}
