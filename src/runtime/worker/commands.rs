//! Command handling: the API's commands as one worker carries them out on its rooms.

use super::{RoomEntry, Worker};
use crate::core::{Joining, LeaveReason, MixerSettings, Room, RoomConfig, RoomError};
use crate::runtime::command::{Command, CommandError, JoinRequest, Joined};
use crate::runtime::drivers;
use crate::runtime::sdp_kind::kind_of_offer;
use crate::runtime::sockets::Sockets;
use std::time::Instant;
use switchboard_driver::dtmf::DtmfError;
use switchboard_driver::{NegotiationError, ParticipantId, ParticipantKind, RoomId, WriteError};
use tokio::sync::broadcast;
use tracing::{info, info_span};

impl Worker {
    fn room_idx(&self, room: &RoomId) -> Result<usize, CommandError> {
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

    fn create_room(&mut self, id: Option<RoomId>, max: Option<usize>) -> Result<usize, CommandError> {
        if self.shutting_down {
            return Err(CommandError::ShuttingDown);
        }
        let id = match id {
            Some(id) => id,
            None => RoomId::new(&format!("room-{:012x}", rand::random::<u64>() >> 16))
                .ok_or_else(|| CommandError::BadRequest("could not make a room id".into()))?,
        };
        if self.room_index.contains_key(&id) {
            return Err(CommandError::RoomExists(id.to_string()));
        }
        if self.room_index.len() >= self.cfg.node.max_rooms {
            return Err(CommandError::NodeFull(format!(
                "this node holds {} rooms, the most it takes (node.max_rooms); use another node",
                self.cfg.node.max_rooms
            )));
        }
        let cfg = RoomConfig {
            max_participants: max.unwrap_or(self.cfg.rooms.max_participants),
            inactivity_timeout: self.cfg.inactivity_timeout(),
            empty_timeout: self.cfg.empty_room_timeout(),
            mixer: MixerSettings {
                factory: drivers::mixer_factory(),
                speakers: self.cfg.mixer.speakers,
                jitter_buffer_ms: self.cfg.mixer.jitter_buffer_ms,
                jitter_buffer_max_ms: self.cfg.mixer.jitter_buffer_max_ms,
                video: switchboard_driver::VideoSettings {
                    width: self.cfg.mixer.composite_width,
                    height: self.cfg.mixer.composite_height,
                    fps: self.cfg.mixer.composite_fps,
                    kbps: self.cfg.mixer.composite_kbps,
                },
            },
        };
        info!(room = %id, "room created");
        let room = Room::new(id.clone(), cfg, Instant::now());
        let (events, _) = broadcast::channel(1024);
        let idx = match self.rooms.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.rooms.push(None);
                self.rooms.len() - 1
            }
        };
        self.rooms[idx] = Some(RoomEntry { room, events, pacing_seen: 0, paced: Vec::new() });
        self.room_index.insert(id, idx);
        Ok(idx)
    }

    pub(super) fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::CreateRoom { id, max_participants, reply } => {
                let r = self.create_room(id, max_participants).map(|idx| {
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
                        self.metrics.add_room_stats(&entry.room.take_stats());
                    }
                    self.after_room_call(idx);
                    self.rooms[idx] = None;
                    self.room_index.remove(&room);
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
            Command::Shutdown { .. } => {}
            // Only sent when `debug.stall_hook` is on (the API route does not exist otherwise).
            Command::Stall(d) => std::thread::sleep(d),
        }
    }

    fn join(&mut self, room: RoomId, req: JoinRequest) -> Result<Joined, CommandError> {
        if self.shutting_down {
            return Err(CommandError::ShuttingDown);
        }
        let kind = match (&req.sdp, req.kind) {
            (Some(sdp), hint) => {
                let found = kind_of_offer(sdp).map_err(CommandError::BadSdp)?;
                if let Some(hint) = hint.filter(|h| *h != found) {
                    return Err(CommandError::KindMismatch(format!(
                        "kind is {} but the offer's transport profile is {}'s",
                        hint.as_str(),
                        found.as_str()
                    )));
                }
                found
            }
            (None, Some(kind)) => kind,
            (None, None) => {
                return Err(CommandError::BadRequest(
                    "a join without sdp must name its kind (rtp or srtp), and the bridge makes the offer".into(),
                ))
            }
        };
        let total: usize = self.rooms.iter().flatten().map(|e| e.room.len()).sum();
        if total >= self.cfg.node.max_participants {
            return Err(CommandError::NodeFull(format!(
                "this node holds {total} participants, the most it takes (node.max_participants); use another node"
            )));
        }
        let (idx, created) = match self.room_idx(&room) {
            Ok(idx) => (idx, false),
            Err(_) if self.cfg.rooms.auto_create => (self.create_room(Some(room.clone()), None)?, true),
            Err(e) => return Err(e),
        };
        let result = self.join_in(idx, kind, req);
        if result.is_err() && created {
            // A failed join creates nothing, not even the room it would have created.
            self.rooms[idx] = None;
            self.room_index.remove(&room);
        }
        result
    }

    fn join_in(&mut self, idx: usize, kind: ParticipantKind, req: JoinRequest) -> Result<Joined, CommandError> {
        let now = Instant::now();
        // Random, so no sender can aim at another participant's id; never zero, which reads as
        // "no participant" in logs.
        let id = ParticipantId(rand::random::<u64>().max(1));
        let room_id = self.rooms[idx].as_ref().map(|e| e.room.id().clone()).ok_or(CommandError::ParticipantNotFound)?;
        let span = info_span!("participant", room = %room_id, id = %id, kind = kind.as_str());
        let _g = span.enter();
        let leg = match kind {
            ParticipantKind::Webrtc => None,
            ParticipantKind::Rtp | ParticipantKind::Srtp => Some(self.open_leg()?),
        };
        let driver = match drivers::make(kind, now, &self.cfg, self.webrtc_local, leg.as_ref()) {
            Ok(d) => d,
            Err(e) => {
                if let Some(leg) = leg {
                    self.close_leg(leg);
                }
                return Err(e);
            }
        };
        let joining = Joining {
            id,
            kind,
            display_name: req.display_name,
            identity: req.identity,
            media: req.media,
            audio: req.audio,
            video: req.video,
            driver,
        };
        let entry = self.rooms[idx].as_mut().ok_or(CommandError::ParticipantNotFound)?;
        match entry.room.join(now, joining, req.sdp.as_deref(), &mut self.sockets) {
            Ok(sdp) => {
                let participant = entry.room.participant_view(id).ok_or(CommandError::ParticipantNotFound)?;
                if let Some(leg) = leg {
                    self.adopt_leg(idx, id, leg);
                }
                self.index_ufrag(idx, id);
                info!("participant joined");
                self.after_room_call(idx);
                Ok(Joined { participant, sdp })
            }
            Err(e) => {
                if let Some(leg) = leg {
                    self.close_leg(leg);
                }
                info!(error = %e, "join refused");
                Err(map_room_error(e))
            }
        }
    }
}

fn map_room_error(e: RoomError) -> CommandError {
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
