//! The ng commands Kamailio's and OpenSIPS's `rtpengine` modules send, carried out as room
//! operations: a call is a room, the caller and the callee are its two legs, and the routing
//! policy serves them like any other participants.

use super::calls::{room_for, Call, Calls};
use super::message::{dict, error, text, Dict};
use crate::core::MediaGrants;
use crate::runtime::sdp_kind::kind_of_offer;
use crate::runtime::{Command, CommandError, JoinRequest, Workers};
use serde_bencode::value::Value;
use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_driver::{ParticipantId, ParticipantKind, RoomId};
use tracing::{info, warn};

/// Runs one command; the reply dictionary, an ng `error` reply for anything refused.
pub async fn handle(d: &Dict, worker: &Workers, calls: &mut Calls) -> Value {
    let result = match d.str("command") {
        Some("ping") => Ok(dict([("result", text("pong"))])),
        Some("offer") => offer(d, worker, calls).await,
        Some("answer") => answer(d, worker, calls).await,
        Some("delete") => delete(d, worker, calls).await,
        Some("query") => query(d, worker, calls).await,
        Some("list") => Ok(list(worker, calls).await),
        Some(other) => Err(format!("unknown command {other:?}")),
        None => Err("no command".into()),
    };
    result.unwrap_or_else(error)
}

fn call_id(d: &Dict) -> Result<&str, String> {
    d.str("call-id").filter(|c| !c.is_empty() && c.len() <= 256).ok_or_else(|| "no call-id".into())
}

fn ok(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    dict(std::iter::once(("result", text("ok"))).chain(pairs))
}

/// An `offer` or `answer` reply: the SDP, and a `warning` naming what was asked and not done.
/// Also logged: Kamailio 5.6's module does not log a reply's `warning`. (No call-id in the line:
/// call-ids carry phone numbers and addresses.)
fn sdp_reply(d: &Dict, sdp: String, codecs_not_done: Vec<String>) -> Value {
    let warning = super::flags::warning(d).into_iter().chain(codecs_not_done).reduce(|a, b| format!("{a}; {b}"));
    if let Some(w) = &warning {
        warn!(command = d.str("command").unwrap_or(""), warning = %w, "ng request asked for what the bridge does not do");
    }
    ok(std::iter::once(("sdp", text(sdp))).chain(warning.map(|w| ("warning", text(w)))))
}

fn why(e: CommandError) -> String {
    e.to_string()
}

/// Whether an error says a leg or its room is gone, rather than that the worker is busy.
fn gone(e: &CommandError) -> bool {
    matches!(e, CommandError::RoomNotFound(_) | CommandError::ParticipantNotFound)
}

fn ended(id: &str) -> String {
    format!("unknown call-id {id:?}: its room has ended")
}

/// Whether `call` still has a leg in its room. A worker that cannot say (busy) counts as yes:
/// a call is forgotten only on proof.
async fn still_there(worker: &Workers, call: &Call) -> bool {
    let room = call.room.clone();
    match worker.call(|reply| Command::GetRoom { room, reply }).await {
        Ok(view) => call.has_a_leg(|_, p| view.participants.iter().flatten().any(|v| v.id == p)),
        Err(e) => !gone(&e),
    }
}

/// The kind of the leg toward the callee: what `transport-protocol` asks for, else plain RTP
/// when ICE or DTLS are to be removed, else the caller's own kind for a phone, and plain RTP for
/// a WebRTC caller (a SIP callee).
fn callee_kind(d: &Dict, caller: ParticipantKind) -> Result<ParticipantKind, String> {
    match d.str("transport-protocol") {
        Some("RTP/AVP") | Some("RTP/AVPF") => Ok(ParticipantKind::Rtp),
        Some("RTP/SAVP") | Some("RTP/SAVPF") => Ok(ParticipantKind::Srtp),
        Some(p @ ("UDP/TLS/RTP/SAVP" | "UDP/TLS/RTP/SAVPF")) => {
            Err(format!("transport-protocol {p}: the bridge offers only RTP/AVP or RTP/SAVP toward a callee"))
        }
        Some(p) => Err(format!("transport-protocol {p:?} is not supported")),
        None if d.str("ICE") == Some("remove") || d.str("DTLS") == Some("off") => Ok(ParticipantKind::Rtp),
        None if caller == ParticipantKind::Webrtc => Ok(ParticipantKind::Rtp),
        None => Ok(caller),
    }
}

async fn join(
    worker: &Workers,
    room: &RoomId,
    kind: Option<ParticipantKind>,
    sdp: Option<String>,
    name: &str,
) -> Result<(ParticipantId, String), String> {
    let request = JoinRequest {
        kind,
        sdp,
        display_name: Some(name.to_string()),
        identity: Some("ng".into()),
        media: MediaGrants::default(),
        audio: Default::default(),
        video: Default::default(),
    };
    let room = room.clone();
    let joined = worker.call(|reply| Command::Join { room, request, reply }).await.map_err(why)?;
    Ok((joined.participant.id, joined.sdp))
}

async fn leave(worker: &Workers, room: &RoomId, participant: ParticipantId) {
    let room = room.clone();
    let _ = worker.call(|reply| Command::Leave { room, participant, reply }).await;
}

async fn offer(d: &Dict, worker: &Workers, calls: &mut Calls) -> Result<Value, String> {
    let id = call_id(d)?;
    let from = d.str("from-tag").ok_or("no from-tag")?.to_string();
    let sdp = d.str("sdp").ok_or("no sdp")?.to_string();
    if let Some(call) = calls.by_id.get(id) {
        if !still_there(worker, call).await {
            // Its room ended on its own: this offer starts the call afresh.
            calls.by_id.remove(id);
        }
    }
    if let Some(call) = calls.by_id.get_mut(id) {
        // A re-offer from the caller (re-INVITE): renegotiate its leg; the callee's offer stands.
        if call.caller.0 != from {
            return Err("a re-offer from the callee's side is not supported".into());
        }
        let (room, participant) = (call.room.clone(), call.caller.1);
        let answer = worker
            .call(|reply| Command::Renegotiate { room, participant, sdp, reply })
            .await
            .map_err(why)?
            .ok_or("the caller's re-offer produced no answer")?;
        call.caller_answer = answer;
        return Ok(sdp_reply(d, call.callee_offer.clone(), Vec::new()));
    }
    let caller_kind = kind_of_offer(&sdp)?;
    let callee_kind = callee_kind(d, caller_kind)?;
    let (room, shared) = match d.str("room").or_else(|| d.flag_value("room")) {
        Some(name) => (RoomId::new(name).ok_or("room: 1 to 64 of A-Z a-z 0-9 _ . -")?, true),
        None => (room_for(id).ok_or("call-id gives no room id")?, false),
    };
    // Made here rather than by the join, so that `rooms.auto_create = false` does not stop ng.
    let existed = {
        let r = room.clone();
        match worker.call(|reply| Command::CreateRoom { id: r, max_participants: None, reply }).await {
            Ok(_) => false,
            Err(CommandError::RoomExists(_)) => true,
            Err(e) => return Err(why(e)),
        }
    };
    let (caller, caller_answer) = join(worker, &room, Some(caller_kind), Some(sdp), "caller").await?;
    let (callee, callee_offer) = match join(worker, &room, Some(callee_kind), None, "callee").await {
        Ok(j) => j,
        Err(e) => {
            // Never a half-made call: the caller's leg goes, and the room if this made it.
            leave(worker, &room, caller).await;
            if !existed && !shared {
                let r = room.clone();
                let _ = worker.call(|reply| Command::DeleteRoom { room: r, reply }).await;
            }
            return Err(e);
        }
    };
    let first = super::codecs::first_codec(&caller_answer);
    let shaped = super::codecs::shape(&callee_offer, first.as_deref(), d);
    let callee_offer = shaped.sdp;
    calls.by_id.insert(
        id.to_string(),
        Call {
            room,
            shared_room: shared || existed,
            caller: (from, caller),
            callee: (None, callee),
            caller_answer,
            callee_offer: callee_offer.clone(),
            created: SystemTime::now(),
        },
    );
    Ok(sdp_reply(d, callee_offer, shaped.not_done))
}

async fn answer(d: &Dict, worker: &Workers, calls: &mut Calls) -> Result<Value, String> {
    let id = call_id(d)?;
    let sdp = d.str("sdp").ok_or("no sdp")?.to_string();
    let call = calls.by_id.get_mut(id).ok_or_else(|| format!("unknown call-id {id:?}"))?;
    let (room, participant) = (call.room.clone(), call.callee.1);
    if let Err(e) = worker.call(|reply| Command::Renegotiate { room, participant, sdp, reply }).await {
        if gone(&e) {
            calls.by_id.remove(id);
            return Err(ended(id));
        }
        return Err(why(e));
    }
    if let Some(to) = d.str("to-tag") {
        call.callee.0 = Some(to.to_string());
    }
    Ok(sdp_reply(d, call.caller_answer.clone(), Vec::new()))
}

async fn delete(d: &Dict, worker: &Workers, calls: &mut Calls) -> Result<Value, String> {
    let id = call_id(d)?;
    let call = calls.by_id.remove(id).ok_or_else(|| format!("unknown call-id {id:?}"))?;
    if call.shared_room {
        leave(worker, &call.room, call.caller.1).await;
        leave(worker, &call.room, call.callee.1).await;
    } else {
        let room = call.room.clone();
        // The room may be gone already (its legs timed out): the call is deleted all the same.
        let _ = worker.call(|reply| Command::DeleteRoom { room, reply }).await;
    }
    Ok(ok([]))
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// rtpengine's `query` shape: totals, and per tag one audio media with one stream's counters.
async fn query(d: &Dict, worker: &Workers, calls: &mut Calls) -> Result<Value, String> {
    let id = call_id(d)?;
    let call = calls.by_id.get(id).ok_or_else(|| format!("unknown call-id {id:?}"))?;
    let mut tags = Vec::new();
    let (mut packets, mut bytes) = (0i64, 0i64);
    let legs = [(Some(call.caller.0.clone()), call.caller.1), (call.callee.0.clone(), call.callee.1)];
    let mut legs_gone = 0;
    for (tag, participant) in legs {
        let room = call.room.clone();
        let view = match worker.call(|reply| Command::GetParticipant { room, participant, reply }).await {
            Ok(view) => view,
            Err(e) => {
                legs_gone += usize::from(gone(&e));
                continue;
            }
        };
        let (p, b) = (view.received.packets as i64, view.received.bytes as i64);
        packets += p;
        bytes += b;
        let tag = tag.unwrap_or_else(|| participant.to_string());
        let stats = dict([("packets", Value::Int(p)), ("bytes", Value::Int(b)), ("errors", Value::Int(0))]);
        let stream = dict([("stats", stats)]);
        let media = dict([
            ("index", Value::Int(1)),
            ("type", text("audio")),
            ("protocol", text(view.kind.as_str())),
            ("streams", Value::List(vec![stream])),
        ]);
        tags.push((tag.clone().into_bytes(), dict([("tag", text(tag)), ("medias", Value::List(vec![media]))])));
    }
    if legs_gone == 2 {
        calls.by_id.remove(id);
        return Err(ended(id));
    }
    let totals = dict([(
        "RTP",
        dict([("packets", Value::Int(packets)), ("bytes", Value::Int(bytes)), ("errors", Value::Int(0))]),
    )]);
    Ok(ok([
        ("created", Value::Int(secs(call.created))),
        ("totals", totals),
        ("tags", Value::Dict(tags.into_iter().collect())),
    ]))
}

/// The calls still alive: those whose room ended on its own are forgotten first (one look at
/// every worker's rooms; if a worker is busy, the table is listed as it is).
async fn list(worker: &Workers, calls: &mut Calls) -> Value {
    if !calls.by_id.is_empty() {
        if let Ok(rooms) = worker.list_rooms().await {
            let present: HashSet<(&RoomId, ParticipantId)> = rooms
                .iter()
                .flat_map(|placed| placed.room.participants.iter().flatten().map(|p| (&placed.room.id, p.id)))
                .collect();
            let ended = calls.forget_ended(|room, p| present.contains(&(room, p)));
            if !ended.is_empty() {
                info!(calls = ended.len(), "ng calls forgotten: their rooms ended without a delete");
            }
        }
    }
    let mut ids: Vec<&String> = calls.by_id.keys().collect();
    ids.sort();
    ok([("calls", Value::List(ids.into_iter().map(|c| text(c.clone())).collect()))])
}
