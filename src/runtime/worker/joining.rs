//! Joining: a room's creation on this worker, and a participant's way into one of its rooms
//! (the kind read from the offer, the node's limits, a leg's ports, the driver, the room's word).

use super::commands::map_room_error;
use super::{RoomEntry, Worker};
use crate::core::{Joining, MixerSettings, Room, RoomConfig};
use crate::runtime::command::{CommandError, JoinRequest, Joined};
use crate::runtime::drivers;
use crate::runtime::sdp_kind::kind_of_offer;
use std::time::Instant;
use switchboard_driver::{ParticipantId, ParticipantKind, RoomId};
use tokio::sync::broadcast;
use tracing::{info, info_span};

impl Worker {
    /// A new room on this worker. `node.max_rooms` was checked when the API placed it here
    /// (`Placement::route`), over the whole node.
    pub(super) fn create_room(&mut self, id: RoomId, max: Option<usize>) -> Result<usize, CommandError> {
        if self.shutting_down {
            return Err(CommandError::ShuttingDown);
        }
        if self.room_index.contains_key(&id) {
            return Err(CommandError::RoomExists(id.to_string()));
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
        self.rooms[idx] = Some(RoomEntry {
            room,
            events,
            pacing_seen: 0,
            paced: Vec::new(),
            started: false,
            kernel: Vec::new(),
            kernel_retry: None,
        });
        self.shared.placement.held(&id, self.index);
        self.room_index.insert(id, idx);
        Ok(idx)
    }

    pub(super) fn join(&mut self, room: RoomId, req: JoinRequest) -> Result<Joined, CommandError> {
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
        // Exact for this worker, as last published for the others: joins on two workers at once
        // may pass the limit by one each.
        let total = self.shared.participants(self.index, self.participant_count());
        if total >= self.cfg.node.max_participants {
            return Err(CommandError::NodeFull(format!(
                "this node holds {total} participants, the most it takes (node.max_participants); use another node"
            )));
        }
        let (idx, created) = match self.room_idx(&room) {
            Ok(idx) => (idx, false),
            Err(_) if self.cfg.rooms.auto_create => (self.create_room(room.clone(), None)?, true),
            Err(e) => return Err(e),
        };
        let result = self.join_in(idx, kind, req);
        if result.is_err() && created {
            // A failed join creates nothing, not even the room it would have created.
            self.rooms[idx] = None;
            self.room_index.remove(&room);
            self.shared.placement.released(&room);
        }
        // Before the answer goes out: the next join, on any worker, counts this one.
        self.status().set_participants(self.participant_count());
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
        let driver = match drivers::make(kind, now, &self.cfg, self.webrtc_local, &self.shared.webrtc, leg.as_ref()) {
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
