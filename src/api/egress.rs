//! `/v1/rooms/{room}/egress`: start, list, read and stop a room's recordings (`src/egress/`).
//! Every call needs the admin grant for the room.

use super::access::Access;
use super::body::JsonBody;
use super::error::ApiError;
use super::{room_id, AppState};
use crate::egress::{self, EgressRequest};
use crate::runtime::Command;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::atomic::Ordering;
use switchboard_driver::MediaKind;

/// `POST`: 201 with the egress once it has joined the room (`active`), or with `failed` and the
/// reason when its pipeline or its join failed; 400 for a request it cannot carry out.
pub async fn start(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<EgressRequest>,
) -> Result<Response, ApiError> {
    let room = room_id(&room)?;
    access.admin(&room)?;
    let plan = egress::plan(&body).map_err(ApiError::bad_request)?;
    if st.draining.load(Ordering::Relaxed) {
        return Err(crate::runtime::CommandError::ShuttingDown.into());
    }
    let r = room.clone();
    let view = st.media.call(|reply| Command::GetRoom { room: r, reply }).await?;
    let tracks: Vec<MediaKind> =
        view.participants.iter().flatten().flat_map(|p| p.tracks.iter().map(|t| t.kind)).collect();
    let (audio, video) = match plan.layout {
        switchboard_egress::Layout::Tracks => {
            let audio = tracks.iter().filter(|k| **k == MediaKind::Audio).count();
            (audio, tracks.len() - audio)
        }
        switchboard_egress::Layout::Composite(_) => (1, 1),
    };
    if audio + video == 0 {
        return Err(ApiError::bad_request("the room has no published track to record yet"));
    }
    let e = st
        .egress
        .reserve(&room, plan)
        .map_err(|e| ApiError::new(StatusCode::TOO_MANY_REQUESTS, "egress_limit", e.to_string()))?;
    let view = egress::start(&st.egress, e, audio, video).await;
    let location = format!("/v1/rooms/{room}/egress/{}", view.id);
    Ok(super::created_at(&location, (StatusCode::CREATED, Json(view)).into_response()))
}

pub async fn list(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path(room): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let room = room_id(&room)?;
    access.admin(&room)?;
    Ok(Json(st.egress.list(&room)))
}

pub async fn get(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path((room, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let room = room_id(&room)?;
    access.admin(&room)?;
    let e = st.egress.find(&room, &id).ok_or_else(|| not_found(&id))?;
    Ok(Json(e.view()))
}

/// `DELETE`: stops the egress and answers once its files are finalised (at most
/// `egress.stop_timeout_secs`); an egress that has already ended is answered as it is.
pub async fn stop(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path((room, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let room = room_id(&room)?;
    access.admin(&room)?;
    let e = st.egress.find(&room, &id).ok_or_else(|| not_found(&id))?;
    Ok(Json(egress::stop(&st.egress, &e).await))
}

fn not_found(id: &str) -> ApiError {
    let shown: String = id.chars().take(32).collect();
    ApiError::new(StatusCode::NOT_FOUND, "egress_not_found", format!("no egress {shown:?} in this room"))
}
