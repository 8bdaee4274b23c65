use super::access::Access;
use super::body::JsonBody;
use super::error::ApiError;
use super::{room_id, AppState};
use crate::runtime::Command;
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
    let room =
        st.worker.call(|reply| Command::CreateRoom { id, max_participants: body.max_participants, reply }).await?;
    let location = format!("/v1/rooms/{}", room.id);
    Ok(super::created_at(&location, (StatusCode::CREATED, Json(room)).into_response()))
}

/// Every room on the node: for an admin of every room (`room: "*"`).
pub async fn list(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
) -> Result<impl IntoResponse, ApiError> {
    access.admin_of_all()?;
    let rooms = st.worker.call(|reply| Command::ListRooms { reply }).await?;
    Ok(Json(json!({ "rooms": rooms })))
}

pub async fn get(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path(room): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let room = room_id(&room)?;
    access.member(&room)?;
    Ok(Json(st.worker.call(|reply| Command::GetRoom { room, reply }).await?))
}

pub async fn delete(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path(room): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let room = room_id(&room)?;
    access.admin(&room)?;
    st.worker.call(|reply| Command::DeleteRoom { room, reply }).await?;
    Ok(StatusCode::NO_CONTENT)
}
