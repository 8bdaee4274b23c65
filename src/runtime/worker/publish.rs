//! A room's events out of the worker: to the room's SSE listeners and to the webhook queues,
//! and a room's start and end, which the worker decides and the room does not know of.
//!
//! Both ways out are non-blocking: a broadcast send, and a `try_send` per webhook receiver.

use super::Worker;
use crate::core::{FinishReason, RoomEvent};
use crate::runtime::command::EventFrame;
use crate::webhooks::Webhooks;
use std::sync::Arc;
use switchboard_driver::{ParticipantId, RoomId};
use tokio::sync::broadcast;
use tracing::info;

impl Worker {
    /// Publishes what a room reported and frees what its departed participants held. A room's
    /// first publication starts with `room_started`: a room whose creating join failed was
    /// dropped before it, so it never starts (nor finishes).
    pub(super) fn publish(&mut self, idx: usize) {
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if !entry.started {
            entry.started = true;
            let ev = RoomEvent::RoomStarted { max_participants: entry.room.max_participants() };
            emit(entry.room.id(), &entry.events, &self.hooks, &ev);
        }
        if !entry.room.has_news() {
            return;
        }
        let room_id = entry.room.id().clone();
        for ev in entry.room.take_events() {
            if let RoomEvent::ParticipantLeft { reason, participant_id } = &ev {
                self.metrics.participants_left.with(*reason).inc();
                let reason = serde_json::to_value(reason).ok();
                let reason = reason.as_ref().and_then(|v| v.as_str()).unwrap_or("unknown");
                info!(room = %room_id, participant = %participant_id, reason, "participant left");
            }
            emit(&room_id, &entry.events, &self.hooks, &ev);
        }
        let closed: Vec<ParticipantId> = entry.room.take_closed().collect();
        if closed.is_empty() {
            return;
        }
        for pid in closed {
            self.forget_peer(pid);
            self.free_leg(pid);
        }
        self.status().set_participants(self.participant_count());
    }

    /// Removes a room: what it still had to say, then `room_finished`, then it is gone (its
    /// counters harvested), and with its event sender its SSE streams end.
    pub(super) fn finish_room(&mut self, idx: usize, reason: FinishReason) {
        self.publish(idx);
        self.kernel_forget(idx);
        if let Some(mut entry) = self.rooms.get_mut(idx).and_then(Option::take) {
            self.metrics.add_room_stats(&entry.room.take_stats());
            emit(entry.room.id(), &entry.events, &self.hooks, &RoomEvent::RoomFinished { reason });
            self.room_index.remove(entry.room.id());
            self.shared.placement.released(entry.room.id());
        }
    }
}

/// One event to the room's SSE listeners (serialized once, only when someone listens) and to
/// the webhook receivers that want it.
pub(super) fn emit(room: &RoomId, sse: &broadcast::Sender<Arc<EventFrame>>, hooks: &Webhooks, ev: &RoomEvent) {
    hooks.offer(room, ev);
    if sse.receiver_count() > 0 {
        // RoomEvent is plain data; serializing it cannot fail.
        let data = serde_json::to_string(ev).unwrap_or_default();
        let _ = sse.send(Arc::new(EventFrame { name: ev.name(), data }));
    }
}
