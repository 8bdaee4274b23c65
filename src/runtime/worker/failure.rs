//! A worker that panicked outside any participant closes what it held, so that only its own
//! rooms pay: each participant gets `participant_left` (reason `internal_error`) and each room
//! `room_finished`, its rooms leave the placement table (a later join places them afresh on a
//! worker that runs), its gauges go to zero, and its status says it failed, which `/healthz`
//! reports. The other workers never notice.
//!
//! Nothing here calls into a room's packet or timer code, which may be what panicked: the
//! participants come from the room's view, and the events are made here.

use super::publish::emit;
use super::Worker;
use crate::core::{FinishReason, LeaveReason, RoomEvent};
use crate::metrics::WorkerGauges;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tracing::error;

impl Worker {
    pub(super) fn fail(&mut self) {
        error!(worker = self.index, "media worker failed: closing its rooms; the other workers go on");
        self.status().set_failed();
        // The views are read-only, but the state they read is what a panic left behind: should
        // one panic too, the rest is still closed.
        for idx in 0..self.rooms.len() {
            let _ = catch_unwind(AssertUnwindSafe(|| self.abandon_room(idx)));
        }
        self.shared.placement.forget_worker(self.index);
        self.status().set_participants(0);
        self.metrics.set_worker_gauges(self.index, WorkerGauges::default());
    }

    fn abandon_room(&mut self, idx: usize) {
        // The kernel would go on forwarding the room's calls with nobody to count them.
        self.kernel_forget(idx);
        let Some(entry) = self.rooms.get_mut(idx).and_then(Option::take) else { return };
        let room = entry.room.id().clone();
        self.room_index.remove(&room);
        let left = entry.room.view().participants.unwrap_or_default();
        for p in &left {
            let ev = RoomEvent::ParticipantLeft { participant_id: p.id, reason: LeaveReason::InternalError };
            self.metrics.participants_left.with(LeaveReason::InternalError).inc();
            emit(&room, &entry.events, &self.hooks, &ev);
        }
        emit(&room, &entry.events, &self.hooks, &RoomEvent::RoomFinished { reason: FinishReason::InternalError });
        error!(room = %room, participants = left.len(), "room closed with its failed worker");
        // Dropping the entry ends the room's event streams.
    }
}
