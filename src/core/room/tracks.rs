//! Bringing a participant's tracks and slots in line with what its driver negotiated, and the
//! room's index of who publishes each track.

use super::super::events::RoomEvent;
use super::super::fanout::Network;
use super::super::participant::{Endpoint, PublishedTrack, Slot};
use super::super::view::TrackView;
use super::{Room, RoomError};
use std::time::Instant;
use switchboard_driver::{ParticipantId, TrackId};

impl Room {
    /// Mutes or unmutes a published track: a muted track stays published and is routed to no
    /// one, mixes included. Says so in a `track_muted` / `track_unmuted` event when it changes.
    pub fn set_muted(
        &mut self,
        now: Instant,
        id: ParticipantId,
        track: TrackId,
        muted: bool,
        net: &mut dyn Network,
    ) -> Result<TrackView, RoomError> {
        let idx = self.slot_of(id).ok_or(RoomError::ParticipantNotFound)?;
        let p = self.slab[idx].as_mut().ok_or(RoomError::ParticipantNotFound)?;
        let t = p.tracks.iter_mut().find(|t| t.id == track).ok_or(RoomError::TrackNotFound)?;
        let changed = t.muted != muted;
        t.muted = muted;
        let view = TrackView::of(t);
        if changed {
            self.events.push(if muted {
                RoomEvent::TrackMuted { participant_id: id, track_id: track }
            } else {
                RoomEvent::TrackUnmuted { participant_id: id, track_id: track }
            });
            self.reroute(now, net);
        }
        Ok(view)
    }

    /// Brings participant `idx`'s tracks and slots in line with what its driver negotiated.
    pub(super) fn sync_negotiated(&mut self, idx: usize) {
        let Some(neg) = self.slab.get(idx).and_then(Option::as_ref).map(|p| p.driver.negotiated().clone()) else {
            return;
        };
        let mut fresh = Vec::new();
        for n in &neg.tracks {
            let known = self.slab[idx].as_ref().is_some_and(|p| p.tracks.iter().any(|t| t.key == n.key));
            if !known {
                fresh.push(self.next_track());
            }
        }
        let Some(p) = self.slab[idx].as_mut() else { return };
        let pid = p.id;
        p.tracks.retain(|t| {
            let keep = neg.tracks.iter().any(|n| n.key == t.key && n.kind == t.kind);
            if !keep {
                self.track_owner.remove(&t.id);
                self.events.push(RoomEvent::TrackUnpublished { participant_id: pid, track_id: t.id });
            }
            keep
        });
        let mut fresh = fresh.into_iter();
        for n in &neg.tracks {
            match p.tracks.iter_mut().find(|t| t.key == n.key) {
                Some(t) => {
                    t.codec = n.codec.codec;
                    t.spec = n.codec.clone();
                }
                None => {
                    // One id was drawn above for each track not yet known.
                    let Some(id) = fresh.next() else { continue };
                    self.track_owner.insert(id, (Endpoint::Participant(idx), n.key));
                    self.events.push(RoomEvent::TrackPublished {
                        participant_id: pid,
                        track_id: id,
                        kind: n.kind,
                        codec: n.codec.codec,
                    });
                    p.tracks.push(PublishedTrack {
                        key: n.key,
                        id,
                        kind: n.kind,
                        codec: n.codec.codec,
                        spec: n.codec.clone(),
                        label: n.label.clone(),
                        muted: false,
                        fanout: Vec::new(),
                    });
                }
            }
        }
        // Sorted by key: the packet path finds a track by binary search.
        p.tracks.sort_by_key(|t| t.key);
        p.slots.retain(|s| neg.slots.iter().any(|n| n.key == s.info.key));
        for n in &neg.slots {
            match p.slots.iter_mut().find(|s| s.info.key == n.key) {
                Some(s) => {
                    if s.info.active && !n.active {
                        s.forwarder.pause();
                    }
                    s.info = n.clone();
                }
                None => p.slots.push(Slot::new(n.clone())),
            }
        }
    }

    /// Who publishes `track`, as the API names them: the MCU's outputs have no publisher.
    pub(super) fn publisher_of(&self, track: TrackId) -> Option<ParticipantId> {
        match self.track_owner.get(&track)? {
            (Endpoint::Participant(idx), _) => self.slab.get(*idx)?.as_ref().map(|p| p.id),
            (Endpoint::Mcu, _) => None,
        }
    }
}
