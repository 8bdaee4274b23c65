//! S1 on Janus VideoRoom with WebRTC on both sides, as browsers use it: a str0m publisher sends
//! Opus into the room, and N str0m subscribers, each with a Janus session of its own, take Janus's
//! offer for the publisher's feed and answer it. Media runs over ICE and DTLS-SRTP, as it does
//! for Switchboard's WebRTC subscribers in the same run.
//!
//! Sessions need no keep-alive: bench/peers/janus/janus.jcfg sets `session_timeout = 0`, and the
//! subscribers' events (none are expected after `started`) wait in Janus until the session ends.

use super::wait_connected;
use crate::engine::{self, IoSpec, LegSpec, SendCfg};
use crate::media::Source;
use crate::peers::Janus;
use crate::sb;
use crate::Common;
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use str0m::media::Direction;

/// What the run holds in Janus, to take down after the window.
pub struct JanusRoom {
    admin: Janus,
    handle: u64,
    room: u64,
    /// The publisher's and every subscriber's session.
    sessions: Vec<Janus>,
}

impl JanusRoom {
    pub fn teardown(mut self) {
        for s in &mut self.sessions {
            s.destroy();
        }
        let _ = self.admin.message(self.handle, json!({"request": "destroy", "room": self.room}));
        self.admin.destroy();
    }
}

/// Sets the room up and hands every leg to the engine; the publisher is held until all are
/// connected. Returns the room and how many WebRTC legs connected or failed.
pub fn setup(
    c: &Common,
    subs: usize,
    eng: &engine::Handle,
    src: Arc<Source>,
    notes: &mut Vec<String>,
) -> Result<JanusRoom> {
    let mut admin = Janus::connect(&c.janus)?;
    let handle = admin.attach("janus.plugin.videoroom")?;
    let room = 3000 + (std::process::id() as u64 % 100_000);
    admin.message(
        handle,
        json!({"request": "create", "room": room, "publishers": 1, "audiocodec": "opus", "is_private": true,
               "audiolevel_event": false, "audio_active_packets": 0, "notify_joining": false}),
    )?;
    let mut jr = JanusRoom { admin, handle, room, sessions: Vec::new() };

    // Publisher: join, then publish with our offer; Janus answers in the event.
    let mut ps = Janus::connect(&c.janus)?;
    let ph = ps.attach("janus.plugin.videoroom")?;
    let joined =
        ps.message(ph, json!({"request": "join", "ptype": "publisher", "room": room, "display": "loadgen"}))?;
    let feed = joined["id"].as_u64().ok_or_else(|| anyhow!("publisher join: {joined}"))?;
    let (sock, local) = sb::bind(c.bind_ip)?;
    let mut o = sb::rtc_offer(local, false, Direction::SendOnly)?;
    let (_, jsep) = ps.message_jsep(
        ph,
        json!({"request": "publish", "audio": true, "video": false}),
        Some(json!({"type": "offer", "sdp": o.offer})),
    )?;
    let answer = sdp_of(jsep, "answer")?;
    let pt = sb::rtc_accept(&mut o, &answer)?;
    ps.trickle_done(ph)?;
    jr.sessions.push(ps);
    eng.add(LegSpec {
        id: 0,
        io: IoSpec::Rtc { sock, local, rtc: o.rtc, mid: o.mid, pt },
        send: Some(SendCfg { src, ssrc: 0, pt: *pt, start_ns: engine::HOLD, stamp: true, fanout: subs as u32 }),
        detect: engine::Detect::Off,
    });

    // Janus offers a feed to subscribers only once its publisher's media is up.
    let (ok, _) = wait_connected(eng, 1, Duration::from_secs(15));
    if ok != 1 {
        bail!("the publisher's WebRTC connection to Janus did not come up in 15 s");
    }
    std::thread::sleep(Duration::from_millis(200));

    // Subscribers: a session each; Janus offers the feed, we answer with `start`.
    for i in 0..subs {
        let mut s = Janus::connect(&c.janus)?;
        let h = s.attach("janus.plugin.videoroom")?;
        let (_, jsep) = s.message_jsep(
            h,
            json!({"request": "join", "ptype": "subscriber", "room": room, "streams": [{"feed": feed}]}),
            None,
        )?;
        let offer = sdp_of(jsep, "offer")?;
        let (sock, local) = sb::bind(c.bind_ip)?;
        let (rtc, answer, mid) = sb::rtc_answer(local, &offer)?;
        s.message_jsep(h, json!({"request": "start"}), Some(json!({"type": "answer", "sdp": answer})))?;
        s.trickle_done(h)?;
        jr.sessions.push(s);
        eng.add(LegSpec {
            id: 1 + i as u32,
            io: IoSpec::Rtc { sock, local, rtc, mid, pt },
            send: None,
            detect: engine::Detect::Off,
        });
    }
    let (ok, failed) = wait_connected(eng, subs, Duration::from_secs(60));
    notes.push(format!("webrtc connected {}, failed {failed} of {}", ok + 1, subs + 1));
    notes.push("Janus VideoRoom: WebRTC publisher (str0m) + one WebRTC subscriber session per subscriber".into());
    Ok(jr)
}

/// The SDP of a Janus event's `jsep`, which must be of `kind`.
fn sdp_of(jsep: Option<Value>, kind: &str) -> Result<String> {
    let j = jsep.ok_or_else(|| anyhow!("janus sent no {kind}"))?;
    if j["type"] != kind {
        bail!("janus sent a {} where an {kind} was expected", j["type"]);
    }
    Ok(j["sdp"].as_str().ok_or_else(|| anyhow!("janus {kind} without sdp"))?.to_owned())
}
