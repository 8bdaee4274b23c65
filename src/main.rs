//! Composition root: CLI, then config, then the media worker and the HTTP API.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use switchboard::config::{Config, HttpOverride, LogOverride, Overrides, WebrtcOverride};
use switchboard::{api, metrics::Metrics, runtime};
use tracing::{error, info};

/// Hybrid SFU/MCU media bridge: WebRTC, SDES-SRTP and plain RTP participants in rooms.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, default_value = "config/switchboard.toml")]
    config: PathBuf,
    /// HTTP API listen address (overrides http.listen).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Shared WebRTC UDP address (overrides webrtc.listen).
    #[arg(long)]
    webrtc_listen: Option<SocketAddr>,
    /// Log filter, e.g. `info,switchboard=debug` (overrides log.filter).
    #[arg(long)]
    log: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let overrides = Overrides {
        http: cli.http_listen.map(|listen| HttpOverride { listen }),
        webrtc: cli.webrtc_listen.map(|listen| WebrtcOverride { listen }),
        log: cli.log.map(|filter| LogOverride { filter }),
    };
    let cfg = Config::load(&cli.config, &overrides)?;
    tracing_subscriber::fmt()
        // Colour only on a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cfg.log.filter).context("config: log.filter")?)
        .init();
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let (worker, media) = runtime::start(cfg.clone(), metrics.clone())
        .with_context(|| format!("binding media sockets (webrtc.listen = {})", cfg.webrtc.listen))?;
    let draining = Arc::new(AtomicBool::new(false));
    let state = api::AppState { worker: worker.clone(), metrics, draining: draining.clone() };
    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("binding http.listen = {}", cfg.http.listen))?;
    info!(http = %cfg.http.listen, "switchboard ready");
    let media_failed = Arc::new(AtomicBool::new(false));
    let failed = media_failed.clone();
    let ended = media.ended;
    axum::serve(listener, api::router(state, cfg.http.max_body_bytes, cfg.debug.stall_hook))
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown_signal() => {
                    info!("shutting down: refusing joins, closing participants");
                    draining.store(true, Ordering::Relaxed);
                    worker.shutdown().await;
                }
                // Only a panic outside any participant's code ends the media thread unasked.
                // Serving an API with no media plane behind it helps nobody: stop, and exit
                // non-zero so a supervisor restarts the daemon.
                _ = ended => {
                    error!("the media thread stopped unexpectedly; exiting");
                    draining.store(true, Ordering::Relaxed);
                    failed.store(true, Ordering::Relaxed);
                }
            }
        })
        .await?;
    let _ = media.thread.join();
    if media_failed.load(Ordering::Relaxed) {
        anyhow::bail!("media thread failed");
    }
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}
