//! The API in a cluster: a request about a room is served by the node that owns it, whichever
//! node it entered; `GET /v1/nodes` lists the cluster's nodes.

use super::access::Access;
use super::error::ApiError;
use super::{room_id, AppState};
use crate::cluster::proxy::{self, FORWARDED};
use crate::cluster::Route;
use crate::runtime::workers::new_room_id;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

/// Routes that make their room when it is missing: placement chooses its node now.
fn creates(method: &Method, path: &str) -> bool {
    method == Method::POST
        && matches!(path, "/v1/rooms" | "/v1/rooms/{room}/participants" | "/whip/{room}" | "/whep/{room}")
}

/// Runs after the token check, before the handler: serves the request here, or passes it to the
/// room's owner. Without `[cluster]`, or for a request another node passed here, it does nothing.
pub async fn route_room(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cluster) = st.cluster.clone() else { return next.run(req).await };
    if req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let path = parts.extensions.get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let creating = creates(&parts.method, &path);
    let mut body = match axum::body::to_bytes(body, st.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is too large")
                .into_response()
        }
    };
    let room = if path == "/v1/rooms" {
        match create_body_room(&body) {
            Some((room, rewritten)) => {
                body = rewritten;
                room
            }
            // Not a JSON object with a usable id: the handler says what is wrong.
            None => return next.run(Request::from_parts(parts, Body::from(body))).await,
        }
    } else {
        let params = RawPathParams::from_request_parts(&mut parts, &st).await.ok();
        let raw = params.and_then(|p| p.iter().find(|(k, _)| *k == "room").map(|(_, v)| v.to_owned()));
        match raw.as_deref().map(room_id) {
            Some(Ok(room)) => room,
            _ => return next.run(Request::from_parts(parts, Body::from(body))).await,
        }
    };
    // The token is checked where the request enters: one for another room stops here.
    if let Some(access) = parts.extensions.get::<Access>() {
        if let Err(e) = access.member(&room) {
            return e.into_response();
        }
    }
    match cluster.route(&room, creating).await {
        Ok(Route::Here) => next.run(Request::from_parts(parts, Body::from(body))).await,
        Ok(Route::Owner(base)) => {
            let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
            proxy::forward(&cluster.http, &base, parts.method, &pq, &parts.headers, body, cluster.id()).await
        }
        Err(e) => e.into_response(),
    }
}

/// The room a `POST /v1/rooms` body names, drawing one (and writing it into the body) when it
/// names none, so that the owner makes the room under the id placement used.
fn create_body_room(body: &Bytes) -> Option<(switchboard_driver::RoomId, Bytes)> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    match obj.get("id") {
        Some(Value::String(id)) => Some((room_id(id).ok()?, body.clone())),
        None | Some(Value::Null) => {
            let id = new_room_id().ok()?;
            obj.insert("id".into(), Value::String(id.as_str().to_owned()));
            Some((id, Bytes::from(serde_json::to_vec(&v).ok()?)))
        }
        Some(_) => None,
    }
}

/// `GET /v1/nodes`: the cluster's live nodes, for an admin of every room.
pub async fn nodes(State(st): State<AppState>, Extension(access): Extension<Access>) -> Result<Response, ApiError> {
    access.admin_of_all()?;
    Ok(match &st.cluster {
        Some(c) => Json(json!({ "cluster": true, "node": c.id(), "nodes": c.nodes() })).into_response(),
        None => Json(json!({ "cluster": false, "nodes": [] })).into_response(),
    })
}
