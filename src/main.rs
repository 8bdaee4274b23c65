//! Composition root: CLI, then config, then the media workers and the HTTP API.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard::auth::{Grant, RoomScope};
use switchboard::config::{Config, HttpOverride, LogOverride, Overrides, WebrtcOverride};
use switchboard::{api, logging, metrics::Metrics, runtime, webhooks};
use tracing::{error, info, warn};

/// How long webhook events still queued at shutdown may take to go out.
const WEBHOOK_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Read when `--config` is not given, if it exists (relative to the working directory).
const DEFAULT_CONFIG: &str = "config/switchboard.toml";

/// Hybrid SFU/MCU media bridge: WebRTC, SDES-SRTP and plain RTP participants in rooms.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; it must exist. Without it, `config/switchboard.toml` is read if
    /// it exists, else the defaults and SWITCHBOARD_* variables alone. Global, so
    /// `switchboard token --config FILE ...` reads it too.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Load and check the configuration (file, environment, flags, log filter), print what was
    /// checked, and exit: 0 when it would start, 1 with the reason when not.
    #[arg(long)]
    check_config: bool,
    /// HTTP API listen address (overrides http.listen).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Shared WebRTC UDP address (overrides webrtc.listen).
    #[arg(long)]
    webrtc_listen: Option<SocketAddr>,
    /// Log filter, e.g. `info,switchboard=debug` (overrides log.filter).
    #[arg(long)]
    log: Option<String>,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Print an access token signed with a key from the config's [auth.keys].
    Token {
        /// The room it reaches, or '*' for every room.
        #[arg(long)]
        room: String,
        /// The identity (`sub`): the participant's or the server's name.
        #[arg(long)]
        identity: String,
        /// Comma-separated grants: publish, subscribe, admin.
        #[arg(long, default_value = "publish,subscribe")]
        grant: String,
        /// How long it is valid: seconds, or a number with s, m, h or d.
        #[arg(long, default_value = "6h")]
        ttl: String,
        /// The key to sign with (its name in [auth.keys]); the first one when there is one.
        #[arg(long)]
        key: Option<String>,
    },
    /// Print every HTTP route, its method and whether it needs a token.
    Routes,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Sub::Routes) = cli.command {
        let mut out = String::new();
        for r in api::routes(true) {
            let guard = if r.guard == api::Guard::Open { "open" } else { "token" };
            out.push_str(&format!("{} {} {guard}\n", r.method, r.path));
        }
        return print(&out);
    }
    let overrides = Overrides {
        http: cli.http_listen.map(|listen| HttpOverride { listen }),
        webrtc: cli.webrtc_listen.map(|listen| WebrtcOverride { listen }),
        log: cli.log.map(|filter| LogOverride { filter }),
    };
    let path = config_path(cli.config.as_deref());
    let cfg = match &path {
        Some(p) => Config::load(p, &overrides)?,
        None => Config::load_optional(None, &overrides)?,
    };
    if cli.check_config {
        logging::check(&cfg.log)?;
        let from = path.map_or_else(|| "no file: defaults and environment".to_string(), |p| p.display().to_string());
        return print(&format!(
            "config ok ({from}): http.listen {}, webrtc.listen {}, auth {}\n",
            cfg.http.listen,
            cfg.webrtc.listen,
            if cfg.auth.enabled { "on" } else { "off" }
        ));
    }
    if let Some(Sub::Token { room, identity, grant, ttl, key }) = cli.command {
        return print(&format!("{}\n", token(&cfg, &room, &identity, &grant, &ttl, key.as_deref())?));
    }
    logging::init(&cfg.log)?;
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(serve(cfg))
}

/// Where the config comes from. An explicit `--config` must exist (a typo must not start a
/// daemon on defaults); without one, the repository's default path is read when present, and
/// otherwise the defaults and the environment serve.
fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()),
    }
}

/// The subcommands' output is what they are for: printed to stdout, not logged.
#[allow(clippy::print_stdout)]
fn print(s: &str) -> anyhow::Result<()> {
    print!("{s}");
    Ok(())
}

fn token(
    cfg: &Config,
    room: &str,
    identity: &str,
    grants: &str,
    ttl: &str,
    key: Option<&str>,
) -> anyhow::Result<String> {
    let room = RoomScope::parse(room).context("--room: a room id (1 to 64 of A-Z a-z 0-9 _ . -) or '*'")?;
    let grants = grants
        .split(',')
        .map(|g| Grant::parse(g).with_context(|| format!("--grant: {g:?} is not publish, subscribe or admin")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ttl = parse_ttl(ttl).context("--ttl: seconds, or a number followed by s, m, h or d (e.g. 6h)")?;
    let ring = cfg.auth.keyring();
    let names: Vec<&str> = ring.names().collect();
    let kid = match key {
        Some(k) => k,
        None if names.len() == 1 => names[0],
        None if names.is_empty() => anyhow::bail!("the config has no [auth.keys]: add one"),
        None => anyhow::bail!("the config has several keys ({}): choose one with --key", names.join(", ")),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    Ok(ring.mint(kid, identity, &room, &grants, now, ttl)?)
}

fn parse_ttl(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&t| t > 0)
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    match switchboard::limits::raise_open_files(cfg.node.open_files) {
        Ok(n) => info!(open_files = n, "open-file limit"),
        Err(e) => warn!(error = %e, "could not raise the open-file limit"),
    }
    let metrics = Arc::new(Metrics::new());
    let (hooks, deliveries) = webhooks::start(&cfg.webhooks, &cfg.auth.keyring(), metrics.clone())?;
    let (workers, media) = runtime::start(cfg.clone(), metrics.clone(), hooks.clone())
        .with_context(|| format!("binding media sockets (webrtc.listen = {})", cfg.webrtc.listen))?;
    let draining = Arc::new(AtomicBool::new(false));
    let egress =
        switchboard::egress::Egresses::new(cfg.egress.clone(), workers.clone(), hooks.clone(), metrics.clone());
    let cluster = switchboard::cluster::Cluster::start(&cfg, workers.clone(), hooks, draining.clone())
        .await
        .context("joining the cluster (cluster.redis_url)")?;
    let auth = if cfg.auth.enabled {
        api::Auth::new(cfg.auth.keyring())
    } else {
        warn!(http = %cfg.http.listen, "auth.enabled = false: every request may do everything (loopback only)");
        api::Auth::disabled()
    };
    let ng =
        switchboard::ng::bind(&cfg.ng).await.with_context(|| format!("binding ng.listen = {:?}", cfg.ng.listen))?;
    if let Some(ng) = ng {
        tokio::spawn(switchboard::ng::serve(ng, workers.clone()));
    }
    if let Some(addr) = cfg.metrics.listen {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding metrics.listen = {addr}"))?;
        let router = api::metrics_router(metrics.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                error!(error = %e, "the metrics listener stopped");
            }
        });
        info!(metrics = %addr, "metrics on their own address, with no token");
    }
    let limits = api::ApiLimits {
        max_participants_cap: cfg.rooms.max_participants_cap,
        request_timeout: Duration::from_secs(cfg.http.request_timeout_secs),
        max_body_bytes: cfg.http.max_body_bytes,
    };
    let state = api::AppState {
        media: workers.clone(),
        metrics,
        draining: draining.clone(),
        auth: Arc::new(auth),
        limits: Arc::new(limits),
        cluster: cluster.clone(),
        egress: egress.clone(),
    };
    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("binding http.listen = {}", cfg.http.listen))?;
    info!(http = %cfg.http.listen, "switchboard ready");
    let media_failed = Arc::new(AtomicBool::new(false));
    let failed = media_failed.clone();
    // Checked by Config::validate already; parsed here into the router's form.
    let cors =
        api::CorsOrigins::parse(&cfg.http.cors_origins).map_err(|e| anyhow::anyhow!("http.cors_origins: {e}"))?;
    let router = api::router(state, cfg.http.max_body_bytes, cfg.debug.stall_hook, &cors);
    let serve_limits = api::serve::ServeLimits {
        max_connections: cfg.http.max_connections,
        header_timeout: Duration::from_secs(cfg.http.header_timeout_secs),
    };
    let drain_timeout = cfg.node.drain_timeout();
    // Only a panic outside any participant's code ends a worker unasked, and that worker closes
    // its own rooms; the others go on. With none left, serving an API with no media plane behind
    // it helps nobody: stop, and exit non-zero so a supervisor restarts the daemon.
    let ended = runtime::all_ended(media.ended);
    let shutdown = async move {
        tokio::pin!(ended);
        tokio::select! {
            _ = shutdown_signal() => {
                draining.store(true, Ordering::Relaxed);
                // Recordings are finalised first: their subscribers would hold the drain open.
                switchboard::egress::stop_all(&egress, "shutdown").await;
                info!(timeout_secs = drain_timeout.as_secs(), "draining: refusing joins, waiting for participants to leave");
                tokio::select! {
                    _ = drain(&workers, drain_timeout) => {}
                    // A second signal cuts the drain short.
                    _ = shutdown_signal() => info!("second signal: not waiting any longer"),
                    _ = &mut ended => {
                        error!("every media worker stopped unexpectedly while draining; exiting");
                        failed.store(true, Ordering::Relaxed);
                        return;
                    }
                }
                info!("closing the participants still here");
                workers.shutdown().await;
            }
            _ = &mut ended => {
                error!("every media worker stopped unexpectedly; exiting");
                draining.store(true, Ordering::Relaxed);
                failed.store(true, Ordering::Relaxed);
            }
        }
    };
    api::serve::serve(listener, router, serve_limits, shutdown).await;
    if let Some(c) = &cluster {
        c.leave().await;
    }
    for thread in media.threads {
        let _ = thread.join();
    }
    // The workers are gone, and with them the webhook queues' senders: what is queued gets a
    // moment to go out, room_finished included.
    deliveries.drain(WEBHOOK_DRAIN).await;
    if media_failed.load(Ordering::Relaxed) {
        anyhow::bail!("media workers failed");
    }
    info!("stopped");
    Ok(())
}

/// Waits until no participant is left on the node, or `timeout`. Joins are refused meanwhile
/// (`draining`), so the count only falls.
async fn drain(workers: &runtime::Workers, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = match workers.list_rooms().await {
            Ok(rooms) => rooms.iter().map(|r| r.room.participants.as_ref().map_or(0, Vec::len)).sum::<usize>(),
            Err(e) => {
                warn!(error = %e, "drain: could not count the participants left; closing them now");
                return;
            }
        };
        if left == 0 {
            info!("drained: no participant left");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            info!(participants = left, "drain timeout reached");
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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
