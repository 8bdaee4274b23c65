//! The API in a cluster: a request about a room is served by the node that owns it, whichever
//! node it entered; `GET /v1/nodes` lists the cluster's nodes.

use super::access::Access;
use super::error::ApiError;
use super::{room_id, AppState};
use crate::cluster::proxy::{self, FORWARDED};
use crate::cluster::{Cluster, Intent, Route, PART_OF};
use crate::runtime::workers::new_room_id;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

/// What the route does to its room: placement chooses a node for a room made now, and a join
/// may go to a part of the room.
fn intent(method: &Method, path: &str) -> Intent {
    match (method == Method::POST, path) {
        (true, "/v1/rooms") => Intent::Create,
        (true, "/v1/rooms/{room}/participants" | "/whip/{room}" | "/whep/{room}") => Intent::Join,
        _ => Intent::Use,
    }
}

/// Runs after the token check, before the handler: serves the request here, or passes it to the
/// room's owner. Without `[cluster]`, or for a request another node passed here, it does nothing.
pub async fn route_room(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cluster) = st.cluster.clone() else { return next.run(req).await };
    if req.headers().contains_key(FORWARDED) {
        return served_as_part(&cluster, req, next).await;
    }
    let (mut parts, body) = req.into_parts();
    let path = parts.extensions.get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let intent = intent(&parts.method, &path);
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
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    match cluster.route(&room, intent).await {
        Ok(Route::Here) => next.run(Request::from_parts(parts, Body::from(body))).await,
        Ok(Route::Owner(base)) => {
            proxy::forward(&cluster.http, &base, parts.method, &pq, &parts.headers, body, cluster.id()).await
        }
        Ok(Route::Part { at: None, owner, owner_url }) => match cluster.ensure_part(&room, &owner, &owner_url).await {
            Ok(()) => next.run(Request::from_parts(parts, Body::from(body))).await,
            Err(e) => e.into_response(),
        },
        Ok(Route::Part { at: Some(base), owner, .. }) => {
            let mut headers = parts.headers.clone();
            if let Ok(v) = HeaderValue::from_str(&owner) {
                headers.insert(PART_OF, v);
            }
            proxy::forward(&cluster.http, &base, parts.method, &pq, &headers, body, cluster.id()).await
        }
        Err(e) => e.into_response(),
    }
}

/// A request another node passed here is served here; one that asks this node to hold a part
/// of its room gets the part (and its trunk to the owner) first.
async fn served_as_part(cluster: &Cluster, req: Request, next: Next) -> Response {
    let owner = req.headers().get(PART_OF).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(owner) = owner else { return next.run(req).await };
    let (mut parts, body) = req.into_parts();
    let params = RawPathParams::from_request_parts(&mut parts, &()).await.ok();
    let room = params.and_then(|p| p.iter().find(|(k, _)| *k == "room").and_then(|(_, v)| room_id(v).ok()));
    let (Some(room), Some(owner_url)) = (room, cluster.url_of(&owner)) else {
        return ApiError::new(StatusCode::BAD_GATEWAY, "trunk_failed", "the room's owner is not a live node")
            .into_response();
    };
    match cluster.ensure_part(&room, &owner, &owner_url).await {
        Ok(()) => next.run(Request::from_parts(parts, body)).await,
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
