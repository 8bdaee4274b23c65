//! The IO shell: sockets, timers and the media workers, each a thread that owns its rooms.
//!
//! `start` builds the node's workers (`worker`), the API's way to them (`workers`: routing by
//! room, `placement`: which worker a new room goes to) and what they share (`status`).

mod batch;
pub mod command;
mod drivers;
pub mod heartbeat;
pub mod kernel;
pub(crate) mod os_thread;
pub mod placement;
pub(crate) mod ports;
pub mod sdp_kind;
mod sockets;
pub mod status;
mod timer;
mod worker;
pub mod workers;

pub use command::{Command, CommandError, EventFrame, Handle, JoinRequest, Joined};
pub use workers::{PlacedRoom, Trouble, Workers};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::webhooks::Webhooks;
use mio::net::UdpSocket;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The running media threads, one per worker.
pub struct MediaThreads {
    pub threads: Vec<JoinHandle<()>>,
    /// One per thread, each resolving when its thread has ended, by a `Shutdown` command or by a
    /// panic (see `all_ended`).
    pub ended: Vec<tokio::sync::oneshot::Receiver<()>>,
}

/// Resolves once every one of `ended` has: the node has no media plane left.
pub async fn all_ended(ended: Vec<tokio::sync::oneshot::Receiver<()>>) {
    for e in ended {
        let _ = e.await;
    }
}

/// Binds every worker's WebRTC socket and starts the workers (`media.workers` of them), which
/// offer room events to `hooks`.
pub fn start(cfg: Config, metrics: Arc<Metrics>, hooks: Webhooks) -> std::io::Result<(Workers, MediaThreads)> {
    switchboard_webrtc::init();
    let n = cfg.worker_count();
    // Every socket before any worker: each leg's peer policy names every worker's address.
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let addr = SocketAddr::new(cfg.webrtc.listen.ip(), cfg.webrtc_port(i));
        let sock = UdpSocket::bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("worker {i}'s WebRTC socket {addr}: {e}")))?;
        sockets.push(sock);
    }
    let webrtc =
        sockets.iter().map(|s| s.local_addr().map(|a| worker::local_webrtc(&cfg, a))).collect::<Result<_, _>>()?;
    let now = Instant::now();
    let shared = Arc::new(workers::Shared {
        status: (0..n).map(|_| status::WorkerStatus::new(now)).collect(),
        placement: placement::Placement::new(n),
        webrtc,
    });
    // `media_loop_age_seconds`, read at each scrape: the oldest heartbeat of the running workers.
    let watched = shared.clone();
    metrics.watch_media(move || {
        let now = Instant::now();
        watched.status.iter().filter(|s| s.is_running()).map(|s| s.heartbeat.age(now)).max().unwrap_or_default()
    });
    let kernel = kernel::KernelForwarder::start(&cfg, &metrics);
    let timeout = Duration::from_millis(cfg.http.command_timeout_ms);
    let mut handles = Vec::with_capacity(n);
    let mut media = MediaThreads { threads: Vec::with_capacity(n), ended: Vec::with_capacity(n) };
    for (index, webrtc) in sockets.into_iter().enumerate() {
        metrics.init_worker(index);
        let poll = mio::Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), worker::WAKER)?);
        let (tx, commands) = std::sync::mpsc::sync_channel(command::COMMAND_QUEUE);
        let w = worker::Worker::new(worker::Setup {
            index,
            cfg: cfg.clone(),
            poll,
            webrtc,
            leg_ports: ports::slice(cfg.rtp.port_min, cfg.rtp.port_max, n, index),
            commands,
            shared: shared.clone(),
            metrics: metrics.clone(),
            hooks: hooks.clone(),
            kernel: kernel.clone(),
        })?;
        let pin = cfg.media.pin_workers;
        let done = EndMark(shared.clone(), index);
        let (thread, ended) = spawn_watched(&format!("media-{index}"), move || {
            let _done = done;
            if pin {
                match os_thread::pin_to(index) {
                    Ok(core) => info!(worker = index, core, "media worker pinned"),
                    Err(e) => warn!(worker = index, error = %e, "media worker not pinned"),
                }
            }
            w.run();
        })?;
        media.threads.push(thread);
        media.ended.push(ended);
        handles.push(Handle::new(tx, waker, timeout));
    }
    info!(workers = n, "media workers started");
    Ok((Workers::new(handles, shared, cfg.rooms.auto_create, cfg.node.max_rooms), media))
}

/// Marks worker `.1` ended when its thread ends, by return or unwind, so nothing is placed on it
/// or asked of it any more.
struct EndMark(Arc<workers::Shared>, usize);

impl Drop for EndMark {
    fn drop(&mut self) {
        self.0.status[self.1].set_ended();
    }
}

type Watched = (JoinHandle<()>, tokio::sync::oneshot::Receiver<()>);

/// Spawns `f` on a named thread whose end, however it comes, resolves the receiver: the sender is
/// dropped when the thread returns or unwinds. A participant's panic is caught inside its room,
/// and the rest of a worker's inside the worker (`Worker::run`); this is the last line, for a
/// thread that ends all the same.
fn spawn_watched(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<Watched> {
    let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
        let _ended = ended_tx;
        f();
    })?;
    Ok((thread, ended))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_media_thread_is_reported_as_ended() {
        let (thread, mut ended) = spawn_watched("doomed", || panic!("simulated media-thread failure")).unwrap();
        assert!(thread.join().is_err(), "the thread panicked");
        assert!(ended.try_recv().is_err_and(|e| e == tokio::sync::oneshot::error::TryRecvError::Closed));
    }

    #[test]
    fn a_running_media_thread_is_not_reported() {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (thread, mut ended) = spawn_watched("alive", move || {
            let _ = stop_rx.recv();
        })
        .unwrap();
        assert_eq!(ended.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Empty));
        drop(stop_tx);
        thread.join().unwrap();
        assert_eq!(ended.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Closed));
    }
}
