//! The IO shell: sockets, timers and the media worker thread that owns the rooms.

mod batch;
pub mod command;
mod drivers;
pub mod heartbeat;
mod ports;
pub mod sdp_kind;
mod sockets;
mod timer;
mod worker;

pub use command::{Command, CommandError, EventFrame, Handle, JoinRequest, Joined};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::webhooks::Webhooks;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The running media thread.
pub struct MediaThread {
    pub thread: JoinHandle<()>,
    /// Resolves when the thread has ended, by a `Shutdown` command or by a panic.
    pub ended: tokio::sync::oneshot::Receiver<()>,
}

/// Binds the media sockets and starts the worker thread, which offers room events to `hooks`.
pub fn start(cfg: Config, metrics: Arc<Metrics>, hooks: Webhooks) -> std::io::Result<(Handle, MediaThread)> {
    switchboard_webrtc::init();
    let cfg_timeout_ms = cfg.http.command_timeout_ms;
    let poll = mio::Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), worker::WAKER)?);
    let (tx, rx) = std::sync::mpsc::sync_channel(command::COMMAND_QUEUE);
    let heartbeat = Arc::new(heartbeat::Heartbeat::new(std::time::Instant::now()));
    let hb = heartbeat.clone();
    metrics.watch_media(move || hb.age(std::time::Instant::now()));
    let worker = worker::Worker::new(cfg, poll, rx, metrics, heartbeat.clone(), hooks)?;
    let media = spawn_watched("media", move || worker.run())?;
    let timeout = std::time::Duration::from_millis(cfg_timeout_ms);
    Ok((Handle::new(tx, waker, heartbeat, timeout), media))
}

/// Spawns `f` on a named thread whose end, however it comes, resolves `ended`: the sender is
/// dropped when the thread returns or unwinds. A participant's panic is caught inside the room;
/// this is for the rest of the media thread, whose loss would leave an API with nothing behind it.
fn spawn_watched(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<MediaThread> {
    let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
        let _ended = ended_tx;
        f();
    })?;
    Ok(MediaThread { thread, ended })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_media_thread_is_reported_as_ended() {
        let mut watched = spawn_watched("doomed", || panic!("simulated media-thread failure")).unwrap();
        assert!(watched.thread.join().is_err(), "the thread panicked");
        assert!(watched.ended.try_recv().is_err_and(|e| e == tokio::sync::oneshot::error::TryRecvError::Closed));
    }

    #[test]
    fn a_running_media_thread_is_not_reported() {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let mut watched = spawn_watched("alive", move || {
            let _ = stop_rx.recv();
        })
        .unwrap();
        assert_eq!(watched.ended.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Empty));
        drop(stop_tx);
        watched.thread.join().unwrap();
        assert_eq!(watched.ended.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Closed));
    }
}
