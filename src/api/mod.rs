//! The HTTP API, version 1. Paths and field names are a contract (see docs/api.md).

mod body;
mod error;
mod events;
mod health;
mod participants;
mod rooms;

pub use error::ApiError;

use crate::metrics::{HttpMethod, Metrics};
use crate::runtime::Handle;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;
use switchboard_driver::{ParticipantId, RoomId};

#[derive(Clone)]
pub struct AppState {
    pub worker: Handle,
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM: joins are refused while participants are closed.
    pub draining: Arc<AtomicBool>,
}

/// `stall_hook` adds the test-only `POST /v1/debug/stall` (config `debug.stall_hook`).
pub fn router(state: AppState, max_body_bytes: usize, stall_hook: bool) -> Router {
    Router::new()
        .route("/v1/rooms", post(rooms::create).get(rooms::list))
        .route("/v1/rooms/{room}", get(rooms::get).delete(rooms::delete))
        .route("/v1/rooms/{room}/participants", post(participants::join))
        .route(
            "/v1/rooms/{room}/participants/{id}",
            get(participants::get).patch(participants::patch).delete(participants::delete),
        )
        .route("/v1/rooms/{room}/participants/{id}/dtmf", post(participants::dtmf))
        .route("/v1/rooms/{room}/events", get(events::stream))
        .route("/metrics", get(metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(if stall_hook { Router::new().route("/v1/debug/stall", post(health::stall)) } else { Router::new() })
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], st.metrics.render())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such path; see docs/api.md")
}

/// Counts every request by method, path template (never the concrete path: it holds ids) and status.
async fn record(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "other".into());
    let method = HttpMethod::from(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    st.metrics.http.record(method, &path, resp.status(), start.elapsed());
    resp
}

pub(crate) fn room_id(s: &str) -> Result<RoomId, ApiError> {
    RoomId::new(s).ok_or_else(|| ApiError::bad_request("room id must be 1 to 64 of A-Z a-z 0-9 _ . -"))
}

pub(crate) fn participant_id(s: &str) -> Result<ParticipantId, ApiError> {
    s.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "participant_not_found",
            format!("no participant {s:?}: ids are 16 hex digits"),
        )
    })
}
