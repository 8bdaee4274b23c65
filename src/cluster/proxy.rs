//! Passing a request to the node that owns its room, and its answer back, streamed (an event
//! stream flows through as it comes). The request keeps its token: the owner checks it again.

use crate::api::ApiError;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

/// Set on every proxied request: the node that receives it serves it itself, so a disagreement
/// between two nodes about an owner can never bounce a request between them.
pub const FORWARDED: &str = "x-switchboard-forwarded";

/// Headers that belong to one hop (RFC 9110 §7.6.1) or that the client library sets itself.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

/// Sends `method path` with `headers` and `body` to `base` (an owner's API URL) and returns its
/// answer as this node's. `me` goes in the forwarded header.
pub async fn forward(
    http: &reqwest::Client,
    base: &str,
    method: axum::http::Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
    me: &str,
) -> Response {
    let mut out = reqwest::header::HeaderMap::new();
    for (name, value) in headers.iter().filter(|(n, _)| !hop_by_hop(n)) {
        out.append(name.clone(), value.clone());
    }
    if let Ok(v) = HeaderValue::from_str(me) {
        out.insert(FORWARDED, v);
    }
    let sent = http.request(method, format!("{base}{path_and_query}")).headers(out).body(body).send().await;
    let upstream = match sent {
        Ok(r) => r,
        Err(e) => {
            // The error names the owner's address, not the request's headers.
            return ApiError::new(
                StatusCode::BAD_GATEWAY,
                "owner_unreachable",
                format!("the node that holds this room did not answer: {}", without_url(&e)),
            )
            .into_response();
        }
    };
    let mut resp = Response::builder().status(upstream.status());
    if let Some(h) = resp.headers_mut() {
        for (name, value) in upstream.headers().iter().filter(|(n, _)| !hop_by_hop(n)) {
            h.append(name.clone(), value.clone());
        }
    }
    let stream = upstream.bytes_stream().map_err(std::io::Error::other);
    resp.body(Body::from_stream(stream)).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

fn without_url(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused or unreachable".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        "request failed".into()
    }
}

impl super::Cluster {
    /// `GET /v1/rooms` of every other live node, with the caller's token: their rooms, each
    /// marked with its node. A node that does not answer is left out (and logged).
    pub async fn gather_rooms(&self, auth: Option<&HeaderValue>) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for node in self.nodes().into_iter().filter(|n| n.id != self.id) {
            let mut req = self.http.get(format!("{}/v1/rooms", node.api_url)).header(FORWARDED, self.id.as_str());
            if let Some(a) = auth {
                req = req.header(axum::http::header::AUTHORIZATION, a.clone());
            }
            let got = match req.timeout(std::time::Duration::from_secs(2)).send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.ok().and_then(|b| serde_json::from_slice(&b).ok()),
                _ => None,
            };
            match got.and_then(|mut v: serde_json::Value| v.get_mut("rooms").map(serde_json::Value::take)) {
                Some(serde_json::Value::Array(rooms)) => out.extend(rooms),
                _ => tracing::warn!(node = %node.id, "node did not list its rooms"),
            }
        }
        out
    }
}
