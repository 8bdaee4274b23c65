//! rtpengine's ng control protocol, so Kamailio's and OpenSIPS's `rtpengine` modules drive the
//! bridge unchanged: `<cookie> <bencoded dictionary>` over UDP at `ng.listen`. Off by default.
//!
//! The protocol has no authentication: a request is trusted for its source address. Only
//! `ng.allowed_sources` (loopback by default) are answered; the rest are dropped and counted.

mod calls;
mod codecs;
mod commands;
mod flags;
pub mod message;

use crate::runtime::Workers;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tracing::{info, warn};

/// `[ng]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NgConfig {
    /// The UDP address the ng protocol listens on; unset, it is off.
    pub listen: Option<SocketAddr>,
    /// CIDRs whose requests are answered: the SIP proxies.
    pub allowed_sources: Vec<String>,
}

impl Default for NgConfig {
    fn default() -> Self {
        NgConfig { listen: None, allowed_sources: vec!["127.0.0.0/8".into(), "::1/128".into()] }
    }
}

impl NgConfig {
    pub fn networks(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.allowed_sources
            .iter()
            .map(|s| s.trim().parse().map_err(|_| format!("{s:?} is not a CIDR such as \"10.0.0.0/8\"")))
            .collect()
    }
}

/// Replies kept for retransmitted requests (same cookie): the proxy resends after a timeout, and
/// an `offer` carried out twice would make two calls.
const REPLY_CACHE: usize = 4096;
const REPLY_TTL: Duration = Duration::from_secs(30);

struct ReplyCache {
    replies: HashMap<String, (Instant, Arc<[u8]>)>,
    order: VecDeque<String>,
}

impl ReplyCache {
    fn get(&self, cookie: &str, now: Instant) -> Option<Arc<[u8]>> {
        self.replies.get(cookie).filter(|(at, _)| now.duration_since(*at) < REPLY_TTL).map(|(_, r)| r.clone())
    }

    fn put(&mut self, cookie: String, reply: Arc<[u8]>, now: Instant) {
        while self.order.len() >= REPLY_CACHE {
            if let Some(old) = self.order.pop_front() {
                self.replies.remove(&old);
            }
        }
        self.order.push_back(cookie.clone());
        self.replies.insert(cookie, (now, reply));
    }
}

/// The bound ng socket, before it serves: binding at start-up makes a taken port a start-up error.
pub struct NgServer {
    socket: UdpSocket,
    allowed: Vec<ipnet::IpNet>,
}

/// Binds `ng.listen`; `None` when it is not set.
pub async fn bind(cfg: &NgConfig) -> std::io::Result<Option<NgServer>> {
    let Some(listen) = cfg.listen else { return Ok(None) };
    let allowed = cfg.networks().map_err(std::io::Error::other)?;
    let socket = UdpSocket::bind(listen).await?;
    info!(ng = %listen, "ng control protocol listening");
    Ok(Some(NgServer { socket, allowed }))
}

/// Serves until the process ends. Commands are carried out one at a time, in arrival order, as a
/// proxy expects of one rtpengine.
pub async fn serve(server: NgServer, worker: Workers) {
    let NgServer { socket, allowed } = server;
    let mut buf = vec![0u8; message::MAX_MESSAGE + 1];
    let mut calls = calls::Calls::default();
    let mut cache = ReplyCache { replies: HashMap::new(), order: VecDeque::new() };
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "ng receive failed");
                continue;
            }
        };
        if !allowed.iter().any(|net| net.contains(&from.ip())) {
            continue;
        }
        let now = Instant::now();
        let datagram = &buf[..n];
        let reply = match message::parse(datagram) {
            Ok(m) => match cache.get(&m.cookie, now) {
                Some(r) => r,
                None => {
                    let value = commands::handle(&m.dict, &worker, &mut calls).await;
                    let r: Arc<[u8]> = Arc::from(message::encode(&m.cookie, &value));
                    cache.put(m.cookie, r.clone(), now);
                    r
                }
            },
            // Without a cookie there is no one to answer: the proxy matches replies by it.
            Err(e) => match message::cookie_of(datagram) {
                Some(cookie) => Arc::from(message::encode(cookie, &message::error(e.to_string()))),
                None => continue,
            },
        };
        let _ = socket.send_to(&reply, from).await;
    }
}
