//! Command handling: the API's commands as one worker carries them out on its rooms.

use super::Worker;
use crate::core::{FinishReason, LeaveReason, Room, RoomError};
use crate::runtime::command::{Command, CommandError};
use crate::runtime::sockets::Sockets;
use std::time::Instant;
use switchboard_driver::dtmf::DtmfError;
use switchboard_driver::{NegotiationError, RoomId, WriteError};
use tracing::{info, info_span};

impl Worker {
    pub(super) fn room_idx(&self, room: &RoomId) -> Result<usize, CommandError> {
        self.room_index.get(room).copied().ok_or_else(|| CommandError::RoomNotFound(room.to_string()))
    }

    fn room(&mut self, room: &RoomId) -> Result<(usize, &mut Room), CommandError> {
        let idx = self.room_idx(room)?;
        let entry = self.rooms[idx].as_mut().ok_or_else(|| CommandError::RoomNotFound(room.to_string()))?;
        Ok((idx, &mut entry.room))
    }

    /// Runs `f` on a room with the sockets beside it, then publishes what the room reported.
    fn with_room<R>(&mut self, room: &RoomId, f: impl FnOnce(&mut Room, &mut Sockets) -> R) -> Result<R, CommandError> {
        let idx = self.room_idx(room)?;
        let entry = self.rooms[idx].as_mut().ok_or_else(|| CommandError::RoomNotFound(room.to_string()))?;
        let r = f(&mut entry.room, &mut self.sockets);
        self.after_room_call(idx);
        Ok(r)
    }

    pub(super) fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::CreateRoom { id, max_participants, reply } => {
                let r = self.create_room(id, max_participants).map(|idx| {
                    // Nobody can be listening yet: this sends room_started to the webhooks.
                    self.publish(idx);
                    let mut v = self.rooms[idx].as_ref().map(|e| e.room.view()).expect("room was just created");
                    v.participants = None;
                    v
                });
                let _ = reply.send(r);
            }
            Command::ListRooms { reply } => {
                let mut rooms: Vec<_> = self.rooms.iter().flatten().map(|e| e.room.view()).collect();
                rooms.sort_by(|a, b| a.id.cmp(&b.id));
                let _ = reply.send(Ok(rooms));
            }
            Command::GetRoom { room, reply } => {
                let _ = reply.send(self.room(&room).map(|(_, r)| r.view()));
            }
            Command::DeleteRoom { room, reply } => {
                let r = self.room_idx(&room).map(|idx| {
                    if let Some(entry) = self.rooms[idx].as_mut() {
                        entry.room.close_all(Instant::now(), LeaveReason::Requested, &mut self.sockets);
                    }
                    self.after_room_call(idx);
                    self.finish_room(idx, FinishReason::Requested);
                    info!(room = %room, "room deleted");
                });
                let _ = reply.send(r);
            }
            Command::Join { room, request, reply } => {
                let _ = reply.send(self.join(room, request));
            }
            Command::Renegotiate { room, participant, sdp, reply } => {
                let span = info_span!("participant", room = %room, id = %participant);
                let _g = span.enter();
                let r = self.with_room(&room, |r, net| r.renegotiate(Instant::now(), participant, &sdp, net));
                if let (Ok(Ok(_)), Ok(idx)) = (&r, self.room_idx(&room)) {
                    self.index_ufrag(idx, participant);
                }
                let _ = reply.send(r.and_then(|o| o.map_err(map_room_error)));
            }
            Command::GetParticipant { room, participant, reply } => {
                let r = self
                    .room(&room)
                    .and_then(|(_, r)| r.participant_view(participant).ok_or(CommandError::ParticipantNotFound));
                let _ = reply.send(r);
            }
            Command::Leave { room, participant, reply } => {
                let r =
                    self.with_room(&room, |r, net| r.leave(Instant::now(), participant, LeaveReason::Requested, net));
                let r = match r {
                    Ok(true) => {
                        info!(room = %room, participant = %participant, "participant left on request");
                        Ok(())
                    }
                    Ok(false) => Err(CommandError::ParticipantNotFound),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Command::Dtmf { room, participant, digits, duration_ms, reply } => {
                let r =
                    self.with_room(&room, |r, net| r.send_dtmf(Instant::now(), participant, &digits, duration_ms, net));
                let _ = reply.send(r.and_then(|o| o.map_err(map_room_error)));
            }
            Command::MuteTrack { room, participant, track, muted, reply } => {
                let r = self.with_room(&room, |r, net| r.set_muted(Instant::now(), participant, track, muted, net));
                let _ = reply.send(r.and_then(|o| o.map_err(map_room_error)));
            }
            Command::Subscribe { room, reply } => {
                let most = self.cfg.rooms.max_event_listeners;
                let r = self.room_idx(&room).and_then(|idx| {
                    let e = self.rooms[idx].as_ref().ok_or_else(|| CommandError::RoomNotFound(room.to_string()))?;
                    if e.events.receiver_count() >= most {
                        return Err(CommandError::TooManyListeners(most));
                    }
                    Ok(e.events.subscribe())
                });
                let _ = reply.send(r);
            }
            Command::Announce { room, event, reply } => {
                let r = self.room_idx(&room).map(|idx| {
                    if let Some(e) = self.rooms[idx].as_ref() {
                        super::publish::emit(e.room.id(), &e.events, &self.hooks, &event);
                    }
                });
                let _ = reply.send(r);
            }
            Command::Shutdown { .. } => {}
            // Only sent when `debug.stall_hook` is on (the API route does not exist otherwise).
            Command::Stall(d) => std::thread::sleep(d),
            // Likewise: a bug outside any participant, which `run` contains.
            #[allow(clippy::panic, reason = "the test hook's whole purpose")]
            Command::Crash => panic!("media worker {} crashed on request (debug.stall_hook)", self.index),
        }
    }
}

pub(super) fn map_room_error(e: RoomError) -> CommandError {
    match e {
        RoomError::Full(n) => CommandError::RoomFull(n),
        RoomError::ParticipantNotFound => CommandError::ParticipantNotFound,
        RoomError::TrackNotFound => CommandError::TrackNotFound,
        RoomError::Negotiation(NegotiationError::KindMismatch(m)) => CommandError::KindMismatch(m),
        RoomError::Negotiation(NegotiationError::UnexpectedState(m)) => CommandError::BadRequest(m),
        RoomError::Negotiation(e) => CommandError::BadSdp(e.to_string()),
        RoomError::Write(WriteError::Dtmf(e @ DtmfError::QueueFull(_))) => CommandError::DtmfQueueFull(e.to_string()),
        RoomError::Write(e) => CommandError::BadRequest(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_driver::WriteError;

    #[test]
    fn room_errors_become_the_command_errors_the_api_answers_with() {
        let bad_sdp = NegotiationError::BadSdp("no m-line".into());
        let cases = [
            ("full", RoomError::Full(4), CommandError::RoomFull(4)),
            ("gone", RoomError::ParticipantNotFound, CommandError::ParticipantNotFound),
            (
                "wrong kind",
                RoomError::Negotiation(NegotiationError::KindMismatch("rtp".into())),
                CommandError::KindMismatch("rtp".into()),
            ),
            (
                "out of turn",
                RoomError::Negotiation(NegotiationError::UnexpectedState("no offer".into())),
                CommandError::BadRequest("no offer".into()),
            ),
            ("bad sdp", RoomError::Negotiation(bad_sdp.clone()), CommandError::BadSdp(bad_sdp.to_string())),
            (
                "write",
                RoomError::Write(WriteError::NoSuchSlot),
                CommandError::BadRequest(WriteError::NoSuchSlot.to_string()),
            ),
        ];
        for (name, room, want) in cases {
            assert_eq!(map_room_error(room), want, "{name}");
        }
    }
}
