//! The HTTP request log: one line per request, under the target `switchboard::http`, so
//! `log.filter = "info,switchboard::http=warn"` silences it without touching the rest.
//!
//! What a line holds is fixed here and nowhere else: method (the bounded label, so a client cannot
//! write into the log through an odd method), route template, status, latency and the client's
//! address. Never a header (the Bearer token is one), the query or a body (SDP holds ICE
//! credentials and SDES keys).

use crate::metrics::{HttpMethod, Label};
use axum::http::StatusCode;
use std::net::SocketAddr;
use std::time::Duration;
use tracing::{debug, info};

/// Routes that a load balancer or Prometheus polls every few seconds: their successes would
/// drown the log, so they go out at debug. Their failures stay at info.
const POLLED: &[&str] = &["/healthz", "/readyz", "/metrics"];

pub fn request(method: HttpMethod, route: &str, status: StatusCode, took: Duration, client: Option<SocketAddr>) {
    let latency_ms = took.as_secs_f64() * 1e3;
    // `other` when the connection came from somewhere without a peer address (tests' oneshot).
    let client = client.map_or_else(|| "other".to_string(), |a| a.to_string());
    let (method, status) = (method.value(), status.as_u16());
    if POLLED.contains(&route) && status < 400 {
        debug!(target: "switchboard::http", method, route, status, latency_ms, client, "request");
    } else {
        info!(target: "switchboard::http", method, route, status, latency_ms, client, "request");
    }
}
