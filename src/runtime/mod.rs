//! The IO shell: sockets, timers and the media worker thread that owns the rooms.

mod batch;
pub mod command;
mod drivers;
mod ports;
pub mod sdp_kind;
mod sockets;
mod worker;

pub use command::{Command, CommandError, EventFrame, JoinRequest, Joined};
pub use worker::Handle;

use crate::config::Config;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Binds the media sockets and starts the worker thread.
pub fn start(cfg: Config, metrics: Arc<Metrics>) -> std::io::Result<(Handle, JoinHandle<()>)> {
    switchboard_webrtc::init();
    let poll = mio::Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), worker::WAKER)?);
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = worker::Worker::new(cfg, poll, rx, metrics)?;
    let thread = std::thread::Builder::new().name("media".into()).spawn(move || worker.run())?;
    Ok((Handle::new(tx, waker), thread))
}
