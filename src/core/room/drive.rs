//! Calling into a participant's driver or the room's MCU: the call runs in its span with a panic
//! guard, its output is fanned out, and what it reported is handled once it is back in place.

use super::super::events::{LeaveReason, RoomEvent};
use super::super::fanout::{Fanout, Network};
use super::super::participant::{Endpoint, ParticipantState};
use super::Room;
use std::time::Instant;
use switchboard_driver::{Driver, DriverEvent, DropReason, KeyframeKind, Mcu, TrackId};

impl Room {
    /// Runs `f` on one driver with the participant taken out of the slab, drains its output
    /// through the fan-out, puts it back and handles what it reported.
    pub(super) fn with_driver<R>(
        &mut self,
        idx: usize,
        now: Instant,
        net: &mut dyn Network,
        f: impl FnOnce(&mut dyn Driver) -> R,
    ) -> Option<R> {
        let mut p = self.slab.get_mut(idx).and_then(Option::take)?;
        // Entered in place, not cloned: this runs for every datagram, and a clone is a trip
        // through the subscriber's registry and back.
        let entered = p.span.enter();
        // A driver that panics takes down only its own participant: the room, and every other
        // participant in it, carry on.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let r = f(p.driver.as_mut());
            let mut out = Fanout {
                now,
                me: Endpoint::Participant(idx),
                kind: Some(p.kind),
                tracks: &p.tracks,
                others: &mut self.slab,
                mcu: self.mcu.as_mut(),
                net: &mut *net,
                stats: &mut self.stats,
                deferred: &mut self.deferred,
                earliest: &mut self.earliest,
            };
            let next = p.driver.poll(now, &mut out);
            (r, next)
        }));
        match outcome {
            Ok((r, next)) => {
                drop(entered);
                p.next_timeout = next;
                self.earliest = self.earliest.min(next);
                self.slab[idx] = Some(p);
                self.handle_deferred(now, net);
                Some(r)
            }
            Err(payload) => {
                let why = panic_message(payload.as_ref());
                tracing::error!(why, "driver panicked; participant removed");
                drop(entered);
                self.forget(now, p, LeaveReason::TransportFailed, net);
                self.handle_deferred(now, net);
                None
            }
        }
    }

    /// As [`Room::with_driver`], for the MCU. An MCU that panics is dropped; the next re-route
    /// builds a new one.
    pub(super) fn with_mcu<R>(
        &mut self,
        now: Instant,
        net: &mut dyn Network,
        f: impl FnOnce(&mut dyn Mcu) -> R,
    ) -> Option<R> {
        let mut m = self.mcu.take()?;
        let entered = m.span.enter();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let r = f(m.mcu.as_mut());
            let mut out = Fanout {
                now,
                me: Endpoint::Mcu,
                kind: None,
                tracks: &m.outputs,
                others: &mut self.slab,
                mcu: None,
                net: &mut *net,
                stats: &mut self.stats,
                deferred: &mut self.deferred,
                earliest: &mut self.earliest,
            };
            let next = m.mcu.poll(now, &mut out);
            (r, next)
        }));
        drop(entered);
        match outcome {
            Ok((r, next)) => {
                m.next_timeout = next;
                self.earliest = self.earliest.min(next);
                self.mcu = Some(m);
                self.handle_deferred(now, net);
                Some(r)
            }
            Err(payload) => {
                let why = panic_message(payload.as_ref());
                tracing::error!(room = %self.id, why, "MCU panicked; it is rebuilt");
                self.forget_mcu(m.outputs.iter().map(|t| t.id));
                self.reroute(now, net);
                self.handle_deferred(now, net);
                None
            }
        }
    }

    /// Drops the MCU's output tracks from the room's index, once the MCU is out of place.
    pub(super) fn forget_mcu(&mut self, outputs: impl Iterator<Item = TrackId>) {
        for t in outputs {
            self.track_owner.remove(&t);
        }
    }

    fn handle_deferred(&mut self, now: Instant, net: &mut dyn Network) {
        while let Some((from, event)) = self.deferred.pop_front() {
            match from {
                Endpoint::Participant(idx) => self.participant_event(now, idx, event, net),
                Endpoint::Mcu => self.mcu_event(now, event, net),
            }
        }
    }

    fn participant_event(&mut self, now: Instant, idx: usize, event: DriverEvent, net: &mut dyn Network) {
        let Some(Some(p)) = self.slab.get_mut(idx) else {
            return;
        };
        let id = p.id;
        match event {
            DriverEvent::Connected => {
                if p.state != ParticipantState::Closed {
                    p.state = ParticipantState::Connected;
                }
            }
            DriverEvent::Disconnected { .. } if p.state != ParticipantState::Closed => {
                self.leave(now, id, LeaveReason::TransportFailed, net);
            }
            DriverEvent::Disconnected { .. } => {}
            DriverEvent::KeyframeRequest { slot, kind } => {
                self.stats.keyframe_requests += 1;
                // What the slot receives: the publisher's track when forwarded, the MCU's output
                // (whose encoder makes the keyframe) for a composite or a transcode.
                let source = p.slots.iter().find(|s| s.info.key == slot).and_then(|s| s.wired.or(s.source));
                if let Some(track) = source {
                    self.request_keyframe(now, track, kind, net);
                }
            }
            DriverEvent::Dtmf { digit, duration_ms } => {
                self.stats.dtmf_events += 1;
                self.events.push(RoomEvent::Dtmf { participant_id: id, digit, duration_ms });
                self.relay_dtmf(now, idx, digit, duration_ms, net);
            }
            DriverEvent::Dropped { reason } => {
                self.stats.drop(reason);
                // A wrong payload type or an unrouted track still came from the peer.
                let not_the_peer = matches!(
                    reason,
                    DropReason::Malformed | DropReason::UnknownSource | DropReason::SrtpAuth | DropReason::Replay
                );
                if let Some((at, drops)) = &mut self.receiving {
                    *drops += u32::from(*at == idx && not_the_peer);
                }
            }
            DriverEvent::ActiveSpeakers { .. } => {}
            DriverEvent::ReceiverReport { slot, report } => {
                self.stats.reception(p.kind, report);
                let Some(fraction) = report.loss else { return };
                // Only a mix or transcode can do something about loss (Opus FEC); a forwarded
                // stream's sender hears of it from its own receivers' reports.
                let wired = p.slots.iter().find(|s| s.info.key == slot).and_then(|s| s.wired);
                let output = wired.and_then(|t| self.track_owner.get(&t)).filter(|(o, _)| *o == Endpoint::Mcu);
                if let (Some(&(_, track)), Some(m)) = (output, self.mcu.as_mut()) {
                    m.mcu.receiver_loss(now, track, fraction);
                }
            }
        }
    }

    fn mcu_event(&mut self, now: Instant, event: DriverEvent, net: &mut dyn Network) {
        match event {
            DriverEvent::Disconnected { .. } => {
                // The MCU broke inside a fan-out: drop it; the re-route builds a new one.
                if let Some(m) = self.mcu.take() {
                    self.forget_mcu(m.outputs.iter().map(|t| t.id));
                    self.reroute(now, net);
                }
            }
            DriverEvent::KeyframeRequest { slot, kind } => {
                self.stats.keyframe_requests += 1;
                let source = self.mcu.as_ref().and_then(|m| m.inputs.iter().find(|s| s.info.key == slot)?.wired);
                if let Some(track) = source {
                    self.request_keyframe(now, track, kind, net);
                }
            }
            DriverEvent::Dropped { reason } => self.stats.drop(reason),
            DriverEvent::ActiveSpeakers { slots } => self.speakers_changed(now, &slots, net),
            DriverEvent::Connected | DriverEvent::Dtmf { .. } | DriverEvent::ReceiverReport { .. } => {}
        }
    }

    /// Digits go on to every other participant that negotiated telephone-event, regenerated as
    /// fresh RFC 4733 events by its own driver.
    fn relay_dtmf(&mut self, now: Instant, from: usize, digit: char, duration_ms: u32, net: &mut dyn Network) {
        let mut buf = [0u8; 4];
        let digits: &str = digit.encode_utf8(&mut buf);
        for idx in 0..self.slab.len() {
            let wants = idx != from
                && matches!(&self.slab[idx], Some(p) if p.slots.iter().any(|s| s.info.active && s.info.telephone_event.is_some()));
            if wants {
                // A leg that cannot take the digit only misses it; the room carries on.
                let _ = self.with_driver(idx, now, net, |d| d.send_dtmf(now, digits, duration_ms));
            }
        }
    }

    pub(super) fn request_keyframe(&mut self, now: Instant, track: TrackId, kind: KeyframeKind, net: &mut dyn Network) {
        match self.track_owner.get(&track) {
            Some(&(Endpoint::Participant(owner), key)) => {
                self.with_driver(owner, now, net, |d| d.request_keyframe(key, kind));
            }
            Some(&(Endpoint::Mcu, key)) => {
                self.with_mcu(now, net, |m| m.request_keyframe(key, kind));
            }
            None => {}
        }
    }
}

/// What a caught panic said, for the log and for the error that reports it.
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s,
        (_, Some(s)) => s,
        _ => "no message",
    }
}
