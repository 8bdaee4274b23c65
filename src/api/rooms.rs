//! The room routes: create, list, look at and delete rooms. Each room shows the worker that
//! holds it.

use super::access::Access;
use super::body::JsonBody;
use super::error::ApiError;
use super::{room_id, AppState};
use crate::cluster::proxy::FORWARDED;
use crate::runtime::workers::new_room_id;
use crate::runtime::{Command, PlacedRoom};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

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
    let view = on_node(&st, &PlacedRoom { room, worker });
    Ok(super::created_at(&location, (StatusCode::CREATED, Json(view)).into_response()))
}

/// Every room: for an admin of every room (`room: "*"`). In a cluster, every node's rooms,
/// unless another node is asking for this node's own.
pub async fn list(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    access.admin_of_all()?;
    let mut rooms: Vec<Value> = st.media.list_rooms().await?.iter().map(|r| on_node(&st, r)).collect();
    if let Some(c) = st.cluster.as_ref().filter(|_| !headers.contains_key(FORWARDED)) {
        rooms.extend(c.gather_rooms(headers.get(header::AUTHORIZATION)).await);
        rooms.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    }
    Ok(Json(json!({ "rooms": rooms })))
}

/// A room's view, with the node that holds it when the node is in a cluster.
fn on_node(st: &AppState, room: &PlacedRoom) -> Value {
    let mut v = serde_json::to_value(room).unwrap_or(Value::Null);
    if let (Some(c), Some(obj)) = (&st.cluster, v.as_object_mut()) {
        obj.insert("node".into(), Value::String(c.id().to_owned()));
    }
    v
}

pub async fn get(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path(room): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let room = room_id(&room)?;
    access.member(&room)?;
    let (room, worker) = st.media.call_placed(|reply| Command::GetRoom { room, reply }).await?;
    Ok(Json(on_node(&st, &PlacedRoom { room, worker })))
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
