//! Health that tells the truth: `/healthz` fails when any media worker has stopped turning its
//! loop or has failed, `/readyz` also while the node drains; and the test hook that stalls (or
//! crashes) a worker.

use super::body::JsonBody;
use super::error::ApiError;
use super::AppState;
use crate::runtime::Trouble;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The loop turns at least every 500 ms (housekeeping); four missed turns is a hang.
const STALLED_AFTER: Duration = Duration::from_secs(2);

fn media_alive(st: &AppState) -> Result<(), ApiError> {
    let unavailable = |code, message| Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message));
    match st.media.trouble(STALLED_AFTER) {
        None => Ok(()),
        Some(Trouble::Stalled(w, age)) => {
            unavailable("media_stalled", format!("media worker {w} has not turned its loop for {} ms", age.as_millis()))
        }
        Some(Trouble::Failed(w)) => unavailable(
            "media_worker_failed",
            format!(
                "media worker {w} failed and its rooms were closed; the other workers run on (restart to recover it)"
            ),
        ),
    }
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
    #[serde(default)]
    ms: u64,
    /// Which worker; the first by default.
    #[serde(default)]
    worker: usize,
    /// Panic instead of sleeping, as a bug outside any participant would.
    #[serde(default)]
    panic: bool,
}

/// Test hook: a media worker sleeps `ms` (at most 10 s), or panics. Routed only with
/// `debug.stall_hook`.
pub async fn stall(
    State(st): State<AppState>,
    axum::Extension(access): axum::Extension<super::Access>,
    JsonBody(req): JsonBody<StallRequest>,
) -> Result<StatusCode, ApiError> {
    access.admin_of_all()?;
    if req.ms > 10_000 {
        return Err(ApiError::bad_request("ms: at most 10000"));
    }
    st.media.stall(req.worker, Duration::from_millis(req.ms), req.panic)?;
    Ok(StatusCode::ACCEPTED)
}
