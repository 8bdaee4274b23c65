//! Health that tells the truth: `/healthz` fails when the media thread has stopped turning its
//! loop, `/readyz` also while the node drains; and the test hook that stalls the thread.

use super::body::JsonBody;
use super::error::ApiError;
use super::AppState;
use crate::runtime::Command;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The loop turns at least every 500 ms (housekeeping); four missed turns is a hang.
const STALLED_AFTER: Duration = Duration::from_secs(2);

fn media_alive(st: &AppState) -> Result<(), ApiError> {
    let age = st.worker.media_age();
    if age > STALLED_AFTER {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "media_stalled",
            format!("the media thread has not turned its loop for {} ms", age.as_millis()),
        ));
    }
    Ok(())
}

pub async fn healthz(State(st): State<AppState>) -> Result<&'static str, ApiError> {
    media_alive(&st)?;
    Ok("ok\n")
}

pub async fn readyz(State(st): State<AppState>) -> Result<&'static str, ApiError> {
    if st.draining.load(Ordering::Relaxed) {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "draining", "the node is draining: join another"));
    }
    media_alive(&st)?;
    Ok("ready\n")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StallRequest {
    ms: u64,
}

/// Test hook: the media thread sleeps `ms` (at most 10 s). Routed only with `debug.stall_hook`.
pub async fn stall(
    State(st): State<AppState>,
    axum::Extension(access): axum::Extension<super::Access>,
    JsonBody(req): JsonBody<StallRequest>,
) -> Result<StatusCode, ApiError> {
    access.admin_of_all()?;
    if req.ms > 10_000 {
        return Err(ApiError::bad_request("ms: at most 10000"));
    }
    st.worker.send(Command::Stall(Duration::from_millis(req.ms)))?;
    Ok(StatusCode::ACCEPTED)
}
