//! The room routes: create, list, look at and delete rooms. Each room shows the worker that
//! holds it.

use super::access::Access;
use super::body::JsonBody;
use super::error::ApiError;
use super::{room_id, AppState};
use crate::runtime::workers::new_room_id;
use crate::runtime::{Command, PlacedRoom};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    id: Option<String>,
    max_participants: Option<usize>,
}

pub async fn create(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    JsonBody(body): JsonBody<CreateRoom>,
) -> Result<impl IntoResponse, ApiError> {
    let id = body.id.as_deref().map(room_id).transpose()?;
    match &id {
        Some(id) => access.admin(id)?,
        // The bridge draws the id: only a token for every room may have it.
        None => access.admin_of_all()?,
    }
    if body.max_participants == Some(0) {
        return Err(ApiError::bad_request("max_participants must be at least 1"));
    }
    let cap = st.limits.max_participants_cap;
    if body.max_participants.is_some_and(|m| m > cap) {
        return Err(ApiError::bad_request(format!(
            "max_participants must be at most {cap} (rooms.max_participants_cap)"
        )));
    }
    let id = match id {
        Some(id) => id,
        None => new_room_id()?,
    };
    let max_participants = body.max_participants;
    let (room, worker) = st.media.call_placed(|reply| Command::CreateRoom { id, max_participants, reply }).await?;
    let location = format!("/v1/rooms/{}", room.id);
    Ok(super::created_at(&location, (StatusCode::CREATED, Json(PlacedRoom { room, worker })).into_response()))
}

/// Every room on the node: for an admin of every room (`room: "*"`).
pub async fn list(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
) -> Result<impl IntoResponse, ApiError> {
    access.admin_of_all()?;
    let rooms = st.media.list_rooms().await?;
    Ok(Json(json!({ "rooms": rooms })))
}

pub async fn get(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path(room): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let room = room_id(&room)?;
    access.member(&room)?;
    let (room, worker) = st.media.call_placed(|reply| Command::GetRoom { room, reply }).await?;
    Ok(Json(PlacedRoom { room, worker }))
}

pub async fn delete(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path(room): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let room = room_id(&room)?;
    access.admin(&room)?;
    st.media.call(|reply| Command::DeleteRoom { room, reply }).await?;
    Ok(StatusCode::NO_CONTENT)
}
