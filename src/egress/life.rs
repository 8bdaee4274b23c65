//! One egress's life: build the subscriber and join it to the room, watch it, stop it.
//!
//! GStreamer calls block (promises, ICE gathering, finalising files), so each goes to tokio's
//! blocking pool; the room is reached only by commands, as the API reaches it.

use super::{unix_now, Egress, EgressView, Egresses, State};
use crate::core::{AudioPreference, MediaGrants, RoomEvent, VideoPreference};
use crate::runtime::{Command, CommandError, JoinRequest};
use std::sync::Arc;
use std::time::Duration;
use switchboard_driver::{ParticipantId, ParticipantKind};
use switchboard_egress::{Layout, Recorder, Rtmp, Spec};
use tracing::info;

/// How often a running egress is looked at: its pipeline's health and new streams.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// An egress's subscriber joins as `egress:{id}`.
const IDENTITY_PREFIX: &str = "egress:";
/// Every this many looks, whether its subscriber is still in the room.
const PRESENCE_EVERY: u32 = 4;

/// Starts a reserved egress with `audio` and `video` receive slots; returns once it is active
/// or has failed (the view says which, and why).
pub async fn start(reg: &Arc<Egresses>, e: Arc<Egress>, audio: usize, video: usize) -> EgressView {
    let spec = Spec {
        layout: e.plan.layout,
        audio_slots: audio,
        video_slots: video,
        dir: e.dir.clone(),
        stem: e.id.clone(),
        local_ips: vec![reg.cfg.local_ip.clone()],
        rtmp: e.plan.rtmp.clone().map(|(url, shown)| Rtmp { url, shown }),
    };
    let (rec, offer) = match tokio::task::spawn_blocking(move || Recorder::start(spec)).await {
        Ok(Ok(started)) => started,
        Ok(Err(err)) => return fail(reg, &e, err.to_string()).await,
        Err(_) => return fail(reg, &e, "the egress pipeline could not be built (its thread panicked)".into()).await,
    };
    let (audio_pref, video_pref) = match e.plan.layout {
        Layout::Tracks => (AudioPreference::Forward, VideoPreference::Auto),
        Layout::Composite(_) => (AudioPreference::Mix, VideoPreference::Composite),
    };
    let request = JoinRequest {
        kind: Some(ParticipantKind::Webrtc),
        sdp: Some(offer),
        display_name: Some(format!("egress {}", e.id)),
        identity: Some(format!("{IDENTITY_PREFIX}{}", e.id)),
        media: MediaGrants { publish: false, subscribe: true },
        audio: audio_pref,
        video: video_pref,
    };
    let room = e.room.clone();
    let joined = match reg.media.call(|reply| Command::Join { room, request, reply }).await {
        Ok(j) => j,
        Err(err) => {
            discard(rec).await;
            return fail(reg, &e, format!("joining the room: {err}")).await;
        }
    };
    e.life().participant = Some(joined.participant.id);
    let answered = tokio::task::spawn_blocking(move || {
        let r = rec.accept_answer(&joined.sdp);
        (rec, r)
    })
    .await;
    let rec = match answered {
        Ok((rec, Ok(()))) => rec,
        Ok((rec, Err(err))) => {
            discard(rec).await;
            return fail(reg, &e, err.to_string()).await;
        }
        Err(_) => return fail(reg, &e, "the egress pipeline panicked applying the answer".into()).await,
    };
    {
        let mut l = e.life();
        l.recorder = Some(rec);
        l.state = State::Active;
    }
    info!(room = %e.room, egress = %e.id, kind = e.plan.kind(), "egress started");
    let ev = RoomEvent::EgressStarted {
        egress_id: e.id.clone(),
        kind: e.plan.kind().into(),
        participant_id: joined.participant.id,
    };
    reg.announce(&e.room, ev).await;
    tokio::spawn(watch(reg.clone(), e.clone()));
    e.view()
}

/// Stops an egress at the API's request; an egress that is not active is left as it is.
pub async fn stop(reg: &Arc<Egresses>, e: &Arc<Egress>) -> EgressView {
    end(reg, e, "requested").await;
    e.view()
}

/// Stops every running egress of the node (the daemon is stopping), one after the other: each
/// waits at most `egress.stop_timeout_secs`.
pub async fn stop_all(reg: &Arc<Egresses>, reason: &str) {
    for e in reg.running() {
        end(reg, &e, reason).await;
    }
}

/// Finalises the files, takes the subscriber out of the room and says so (`egress_ended`).
async fn end(reg: &Egresses, e: &Egress, reason: &str) {
    let (rec, participant) = {
        let mut l = e.life();
        if l.state != State::Active {
            return;
        }
        l.state = State::Ending;
        l.last = l.recorder.as_ref().map(Recorder::stats).unwrap_or_default();
        (l.recorder.take(), l.participant)
    };
    let timeout = Duration::from_secs(reg.cfg.stop_timeout_secs);
    if let Some(rec) = rec {
        if let Ok(stats) = tokio::task::spawn_blocking(move || rec.stop(timeout)).await {
            e.life().last = stats;
        }
    }
    leave(reg, e, participant).await;
    {
        let mut l = e.life();
        l.state = State::Complete;
        l.ended_at = Some(unix_now());
    }
    reg.retire(e, "complete");
    info!(room = %e.room, egress = %e.id, reason, "egress ended");
    let ev = RoomEvent::EgressEnded { egress_id: e.id.clone(), reason: reason.into(), files: e.files() };
    reg.announce(&e.room, ev).await;
}

/// Ends an egress that failed: what was written is kept (finalised if the pipeline still
/// can be, within a second), and `egress_failed` says why.
async fn fail(reg: &Egresses, e: &Egress, reason: String) -> EgressView {
    let (rec, participant) = {
        let mut l = e.life();
        l.state = State::Failed;
        l.error = Some(reason.clone());
        l.ended_at = Some(unix_now());
        l.last = l.recorder.as_ref().map(Recorder::stats).unwrap_or_default();
        (l.recorder.take(), l.participant)
    };
    if let Some(rec) = rec {
        if let Ok(stats) = tokio::task::spawn_blocking(move || rec.stop(Duration::from_secs(1))).await {
            e.life().last = stats;
        }
    }
    leave(reg, e, participant).await;
    reg.retire(e, "failed");
    info!(room = %e.room, egress = %e.id, reason = %reason, "egress failed");
    reg.announce(&e.room, RoomEvent::EgressFailed { egress_id: e.id.clone(), reason }).await;
    e.view()
}

/// Watches an active egress: a pipeline error fails it, a new stream is an `egress_updated`,
/// and a subscriber that has left the room (room deleted, transport failed) or is left alone
/// in it with other recordings at most ends it.
async fn watch(reg: Arc<Egresses>, e: Arc<Egress>) {
    let mut streams = 0;
    let mut looks = 0u32;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let (failure, now_streams, participant) = {
            let l = e.life();
            let Some(rec) = l.recorder.as_ref().filter(|_| l.state == State::Active) else {
                return;
            };
            (rec.failure(), rec.streams(), l.participant)
        };
        if let Some(reason) = failure {
            fail(&reg, &e, reason).await;
            return;
        }
        if now_streams != streams {
            streams = now_streams;
            let ev = RoomEvent::EgressUpdated { egress_id: e.id.clone(), state: "active".into(), files: e.files() };
            reg.announce(&e.room, ev).await;
        }
        looks += 1;
        if !looks.is_multiple_of(PRESENCE_EVERY) {
            continue;
        }
        let Some(participant) = participant else { continue };
        let room = e.room.clone();
        match reg.media.call(|reply| Command::GetRoom { room, reply }).await {
            Err(CommandError::RoomNotFound(_)) => return end(&reg, &e, "room_finished").await,
            Ok(view) => {
                let people = view.participants.unwrap_or_default();
                if !people.iter().any(|p| p.id == participant) {
                    return end(&reg, &e, "participant_left").await;
                }
                // Only recordings left: nothing more to record, and they would keep the room open.
                if people.iter().all(|p| p.identity.as_deref().is_some_and(|i| i.starts_with(IDENTITY_PREFIX))) {
                    return end(&reg, &e, "room_empty").await;
                }
            }
            Err(_) => {}
        }
    }
}

async fn leave(reg: &Egresses, e: &Egress, participant: Option<ParticipantId>) {
    let Some(participant) = participant else { return };
    let room = e.room.clone();
    let _ = reg.media.call(|reply| Command::Leave { room, participant, reply }).await;
}

/// Drops a recorder off the async threads: tearing a pipeline down joins its threads.
async fn discard(rec: Recorder) {
    let _ = tokio::task::spawn_blocking(move || drop(rec)).await;
}
