//! `GET /v1/rooms/{room}/events`: the room's events as server-sent events.

use super::error::ApiError;
use super::{room_id, AppState};
use crate::runtime::Command;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use std::convert::Infallible;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};

pub async fn stream(
    State(st): State<AppState>,
    Path(room): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let room = room_id(&room)?;
    let rx = st.worker.call(|reply| Command::Subscribe { room, reply }).await?;
    // A listener too slow to keep up loses events rather than slowing the room; it is told so.
    let events = BroadcastStream::new(rx).map(|item| {
        Ok(match item {
            Ok(frame) => Event::default().event(frame.name).data(frame.data.clone()),
            Err(_) => Event::default().event("lagged").data("{}"),
        })
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
