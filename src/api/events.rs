//! `GET /v1/rooms/{room}/events`: the room's events as server-sent events.

use super::access::Access;
use super::error::ApiError;
use super::{room_id, AppState};
use crate::runtime::Command;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Extension;
use std::convert::Infallible;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};

/// Any token for the room reads its events, but only an admin's stream carries `dtmf`: digits
/// can be PINs, and one caller must not read what another types.
pub async fn stream(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path(room): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let room = room_id(&room)?;
    access.member(&room)?;
    let digits = access.is_admin_of(&room);
    let rx = st.media.call(|reply| Command::Subscribe { room, reply }).await?;
    // A listener too slow to keep up loses events rather than slowing the room; it is told so.
    let events = BroadcastStream::new(rx).filter_map(move |item| match item {
        Ok(frame) if frame.name == "dtmf" && !digits => None,
        Ok(frame) => Some(Ok(Event::default().event(frame.name).data(frame.data.clone()))),
        Err(_) => Some(Ok(Event::default().event("lagged").data("{}"))),
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
