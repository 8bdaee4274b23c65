use super::access::Access;
use super::body::JsonBody;
use super::error::ApiError;
use super::{participant_id, room_id, AppState};
use crate::core::{AudioPreference, MediaGrants, VideoPreference};
use crate::runtime::{Command, JoinRequest, Joined};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use switchboard_driver::{ParticipantKind, RoomId};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    kind: Option<ParticipantKind>,
    sdp: Option<String>,
    display_name: Option<String>,
    #[serde(default)]
    audio: AudioPreference,
    #[serde(default)]
    video: VideoPreference,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    sdp: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackPatch {
    muted: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dtmf {
    digits: String,
    duration_ms: Option<u32>,
}

/// The participant view with the bridge's SDP beside it.
fn with_sdp(view: impl serde::Serialize, sdp: Option<String>) -> Value {
    let mut v = serde_json::to_value(view).unwrap_or(Value::Null);
    if let (Some(obj), Some(sdp)) = (v.as_object_mut(), sdp) {
        obj.insert("sdp".into(), Value::String(sdp));
    }
    v
}

/// The participant, after checking that `access` may act on it: an admin of its room, or the
/// identity it joined with. A participant the token may not see is a 403, not a 404, only when
/// it exists: ids are random, so this tells a stranger nothing it could use.
async fn owned(
    st: &AppState,
    access: &Access,
    room: &str,
    id: &str,
) -> Result<(switchboard_driver::RoomId, switchboard_driver::ParticipantId), ApiError> {
    let (room, participant) = (room_id(room)?, participant_id(id)?);
    access.member(&room)?;
    if !access.is_admin_of(&room) {
        let r = room.clone();
        let view = st.media.call(|reply| Command::GetParticipant { room: r, participant, reply }).await?;
        access.owner(&room, view.identity.as_deref())?;
    }
    Ok((room, participant))
}

pub async fn join(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<Join>,
) -> Result<impl IntoResponse, ApiError> {
    let room = room_id(&room)?;
    let grants = access.join(&room)?;
    let request = JoinRequest {
        kind: body.kind,
        sdp: body.sdp,
        display_name: body.display_name,
        identity: Some(grants.identity),
        media: MediaGrants { publish: grants.publish, subscribe: grants.subscribe },
        audio: body.audio,
        video: body.video,
    };
    let location = format!("/v1/rooms/{room}/participants/");
    let joined = admit(&st, room, request).await?;
    let location = format!("{location}{}", joined.participant.id);
    let resp = (StatusCode::CREATED, Json(with_sdp(joined.participant, Some(joined.sdp)))).into_response();
    Ok(super::created_at(&location, resp))
}

/// The one way into a room, behind `POST .../participants` and the WHIP/WHEP adapters: refused
/// while draining, and the room's own rules (auto_create, room_full) apply in the worker.
pub(crate) async fn admit(st: &AppState, room: RoomId, request: JoinRequest) -> Result<Joined, ApiError> {
    if st.draining.load(Ordering::Relaxed) {
        return Err(crate::runtime::CommandError::ShuttingDown.into());
    }
    if request.display_name.as_ref().is_some_and(|name| name.len() > 256) {
        return Err(ApiError::bad_request("display_name is longer than 256 bytes"));
    }
    let asked = std::time::Instant::now();
    let joined = st.media.call(|reply| Command::Join { room, request, reply }).await?;
    st.metrics.join_duration.with(joined.participant.kind).observe(asked.elapsed().as_secs_f64());
    Ok(joined)
}

pub async fn get(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path((room, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (room, participant) = (room_id(&room)?, participant_id(&id)?);
    access.member(&room)?;
    Ok(Json(st.media.call(|reply| Command::GetParticipant { room, participant, reply }).await?))
}

pub async fn patch(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path((room, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<Patch>,
) -> Result<impl IntoResponse, ApiError> {
    let (room, participant) = owned(&st, &access, &room, &id).await?;
    let r = room.clone();
    let answer = st.media.call(|reply| Command::Renegotiate { room: r, participant, sdp: body.sdp, reply }).await?;
    let view = st.media.call(|reply| Command::GetParticipant { room, participant, reply }).await?;
    Ok(Json(with_sdp(view, answer)))
}

pub async fn delete(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path((room, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (room, participant) = owned(&st, &access, &room, &id).await?;
    st.media.call(|reply| Command::Leave { room, participant, reply }).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn dtmf(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path((room, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<Dtmf>,
) -> Result<impl IntoResponse, ApiError> {
    let (room, participant) = owned(&st, &access, &room, &id).await?;
    let valid = |c: char| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D');
    if body.digits.is_empty() || body.digits.len() > 64 || !body.digits.chars().all(valid) {
        return Err(ApiError::bad_request("digits must be 1 to 64 of 0-9 * # A-D"));
    }
    let duration_ms = body.duration_ms.unwrap_or(100);
    if !(40..=5000).contains(&duration_ms) {
        return Err(ApiError::bad_request("duration_ms must be between 40 and 5000"));
    }
    let digits = body.digits;
    st.media.call(|reply| Command::Dtmf { room, participant, digits, duration_ms, reply }).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))))
}

/// `PATCH .../participants/{id}/tracks/{track}` with `{"muted": bool}`: an admin operation.
pub async fn track(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path((room, id, track)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<TrackPatch>,
) -> Result<impl IntoResponse, ApiError> {
    let (room, participant) = (room_id(&room)?, participant_id(&id)?);
    access.admin(&room)?;
    let track =
        track.strip_prefix('t').and_then(|n| n.parse::<u64>().ok()).map(switchboard_driver::TrackId).ok_or_else(
            || {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "track_not_found",
                    format!("no track {track:?}: track ids are t<number>"),
                )
            },
        )?;
    let muted = body.muted;
    Ok(Json(st.media.call(|reply| Command::MuteTrack { room, participant, track, muted, reply }).await?))
}
