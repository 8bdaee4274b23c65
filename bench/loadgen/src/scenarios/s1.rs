//! S1, fan-out: one publisher to N subscribers, on Switchboard (WebRTC or plain RTP subscribers),
//! on Janus's VideoRoom (WebRTC subscribers, `s1_janus`, or one `rtp_forward` per plain RTP
//! subscriber) or on the kernel's floor.

use super::measure::{forwarding_figures, measure, result};
use super::{floor_addr, join_plain, join_rtc, wait_connected};
use crate::engine::{self, Cmd, Detect, IoSpec, LegSpec, SendCfg};
use crate::media::{self, Codec, Source};
use crate::peers::Janus;
use crate::sb::{self, Api};
use crate::util;
use crate::Common;
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::Direction;

pub struct S1 {
    pub subs: usize,
    pub video: bool,
    /// webrtc or rtp subscribers (rtp: the plain-RTP fallback, and the Janus comparison).
    pub subs_kind: String,
    pub janus_ssrc: u32,
    /// Rooms (Switchboard only): each has a publisher of its own and subs / rooms subscribers.
    pub rooms: usize,
}

/// What a target needs after the window to take its room down.
enum Teardown {
    Switchboard(Api, Vec<String>),
    Floor,
    /// The session, the VideoRoom handle and the room.
    Janus(Janus, u64, u64),
    JanusRtc(super::s1_janus::JanusRoom),
}

pub fn s1(c: &Common, p: &S1) -> Result<Value> {
    let codec = if p.video { Codec::Vp8 } else { Codec::Opus };
    let src: Arc<Source> =
        Arc::new(if p.video { media::vp8(&c.media, 1100)? } else { media::tone(Codec::Opus, &c.media)? });
    let params = json!({
        "subs": p.subs, "rooms": p.rooms, "video": p.video, "subs_kind": p.subs_kind,
        "publisher_kbps": media::bitrate(&src) / 1000.0, "publisher_pps": media::packets_per_second(&src),
    });
    if p.rooms > 1 && c.target != "switchboard" {
        bail!("s1: --rooms is for Switchboard (the scaling figures)");
    }
    let eng = engine::spawn()?;
    let t_setup = Instant::now();
    let mut notes = Vec::new();
    let fanout = (p.subs / p.rooms.max(1)) as u32;
    let teardown = match c.target.as_str() {
        "switchboard" => switchboard(c, p, &eng, src, codec, fanout, &mut notes)?,
        "floor" => floor(c, p, &eng, src, fanout)?,
        "janus" if p.subs_kind == "webrtc" => {
            if p.video {
                bail!("s1 on Janus with WebRTC subscribers is audio only");
            }
            let room = super::s1_janus::setup(c, p.subs, &eng, src, &mut notes)?;
            eng.send(Cmd::StartAll { at_ns: util::now_ns() + 10_000_000 });
            Teardown::JanusRtc(room)
        }
        "janus" => janus(c, p, &eng, src, fanout)?,
        t => bail!("s1: unsupported target {t}"),
    };
    let setup_s = t_setup.elapsed().as_secs_f64();
    let m = measure(c, &eng);
    match teardown {
        Teardown::Switchboard(api, rooms) => {
            for room in rooms {
                api.delete_room(&room)
            }
        }
        Teardown::Floor => {}
        Teardown::Janus(mut jn, h, room_id) => {
            let _ = jn.message(h, json!({"request": "destroy", "room": room_id}));
            jn.destroy();
            notes.push("Janus VideoRoom: remote publisher (plain RTP in) + one rtp_forward per subscriber".into());
        }
        Teardown::JanusRtc(room) => room.teardown(),
    }
    eng.stop();
    Ok(result(c, "s1", params, setup_s, &m, forwarding_figures(&m), notes))
}

/// A str0m publisher and N subscribers in one room (or in each of `rooms`, N / rooms to a room);
/// the publishers start once all are connected.
fn switchboard(
    c: &Common,
    p: &S1,
    eng: &engine::Handle,
    src: Arc<Source>,
    codec: Codec,
    fanout: u32,
    notes: &mut Vec<String>,
) -> Result<Teardown> {
    let rooms = p.rooms.max(1);
    let names: Vec<String> =
        (0..rooms).map(|r| if rooms == 1 { format!("s1-{}", c.tag) } else { format!("s1-{}-{r}", c.tag) }).collect();
    let api = Api::new(&c.api);
    // Created before anyone joins, so the placement spreads them over the workers.
    for room in &names {
        api.create_room(room, p.subs / rooms + 5)?;
    }
    let mut rtc_legs = 0;
    let per_room = p.subs / rooms;
    for (r, room) in names.iter().enumerate() {
        // Publisher: a str0m client sending Opus (or VP8).
        let (sock, local) = sb::bind(c.bind_ip)?;
        let (io, pt, _) =
            join_rtc(&api, room, sock, local, p.video, Direction::SendOnly, json!({"display_name": "publisher"}))?;
        let first = (r * (per_room + 1)) as u32;
        eng.add(LegSpec {
            id: first,
            io,
            // Held until every subscriber is connected: the audience joins, then the talk starts.
            send: Some(SendCfg {
                src: src.clone(),
                ssrc: r as u32,
                pt: *pt,
                start_ns: engine::HOLD,
                stamp: true,
                fanout,
            }),
            detect: Detect::Off,
        });
        rtc_legs += 1;
        for i in 0..per_room {
            let id = first + 1 + i as u32;
            let (sock, local) = sb::bind(c.bind_ip)?;
            if p.subs_kind == "rtp" {
                let (remote, _) = join_plain(&api, room, local, codec, 111, "recvonly")?;
                add_listener(eng, id, sock, remote);
            } else {
                let (io, _, _) = join_rtc(&api, room, sock, local, p.video, Direction::RecvOnly, json!({}))?;
                eng.add(LegSpec { id, io, send: None, detect: Detect::Off });
                rtc_legs += 1;
            }
        }
    }
    let (ok, failed) = wait_connected(eng, rtc_legs, Duration::from_secs(60));
    notes.push(format!("webrtc connected {ok}, failed {failed} of {rtc_legs}"));
    if rooms > 1 {
        let workers: Vec<String> =
            names.iter().map(|r| api.room(r).map(|v| v["worker"].to_string()).unwrap_or_else(|_| "?".into())).collect();
        notes.push(format!("rooms' workers: {}", workers.join(", ")));
    }
    eng.send(Cmd::StartAll { at_ns: util::now_ns() + 10_000_000 });
    Ok(Teardown::Switchboard(api, names))
}

/// kernel-floor's fan-out: the publisher sends to its first port; every subscriber says hello once
/// to the second, whose source it then sends each packet to.
fn floor(c: &Common, p: &S1, eng: &engine::Handle, src: Arc<Source>, fanout: u32) -> Result<Teardown> {
    if p.subs_kind != "rtp" {
        bail!("the floor's subscribers are plain RTP (it has no WebRTC stack): pass --subs-kind rtp");
    }
    for i in 0..p.subs {
        let (sock, _) = sb::bind(c.bind_ip)?;
        let mut hello = [0u8; 12];
        hello[0] = 0x80;
        hello[8..12].copy_from_slice(&(0x5000_0000 + i as u32).to_be_bytes());
        sock.send_to(&hello, floor_addr(c, 1))?;
        add_listener(eng, 1 + i as u32, sock, floor_addr(c, 1));
    }
    add_plain_publisher(c, eng, src, floor_addr(c, 0), 0x6000_0000, p.video, fanout)?;
    Ok(Teardown::Floor)
}

/// A VideoRoom with a remote (plain RTP) publisher, forwarded to each subscriber's port.
fn janus(c: &Common, p: &S1, eng: &engine::Handle, src: Arc<Source>, fanout: u32) -> Result<Teardown> {
    if p.subs_kind != "rtp" {
        bail!("Janus's subscribers are webrtc (s1_janus) or rtp (rtp_forward), not {}", p.subs_kind);
    }
    let mut jn = Janus::connect(&c.janus)?;
    let h = jn.attach("janus.plugin.videoroom")?;
    let room_id = 1000 + (std::process::id() as u64 % 100_000);
    jn.message(
        h,
        json!({"request": "create", "room": room_id, "publishers": 1, "audiocodec": "opus", "videocodec": "vp8",
               "bitrate": 2_000_000, "is_private": true}),
    )?;
    let kind = if p.video { "video" } else { "audio" };
    let codec_name = if p.video { "vp8" } else { "opus" };
    let pubr = jn.message(
        h,
        json!({"request": "add_remote_publisher", "room": room_id, "display": "loadgen", "iface": "127.0.0.1",
               "streams": [{"type": kind, "mindex": 0, "mid": "0", "codec": codec_name}]}),
    )?;
    let pub_id = pubr["id"].as_u64().ok_or_else(|| anyhow!("add_remote_publisher: {pubr}"))?;
    let ip = pubr["ip"].as_str().unwrap_or("127.0.0.1");
    let port = pubr["port"].as_u64().ok_or_else(|| anyhow!("add_remote_publisher: {pubr}"))? as u16;
    let remote: SocketAddr = format!("{ip}:{port}").parse()?;
    for i in 0..p.subs {
        let (sock, local) = sb::bind(c.bind_ip)?;
        jn.message(
            h,
            json!({"request": "rtp_forward", "room": room_id, "publisher_id": pub_id, "host": local.ip().to_string(),
                   "streams": [{"mid": "0", "port": local.port()}]}),
        )?;
        add_listener(eng, 1 + i as u32, sock, local);
    }
    add_plain_publisher(c, eng, src, remote, p.janus_ssrc, p.video, fanout)?;
    Ok(Teardown::Janus(jn, h, room_id))
}

/// A plain-RTP leg that only listens.
fn add_listener(eng: &engine::Handle, id: u32, sock: UdpSocket, remote: SocketAddr) {
    eng.add(LegSpec { id, io: IoSpec::Plain { sock, remote }, send: None, detect: Detect::Off });
}

/// S1's plain-RTP publisher (for Janus and the floor), sending stamped packets from now on.
fn add_plain_publisher(
    c: &Common,
    eng: &engine::Handle,
    src: Arc<Source>,
    remote: SocketAddr,
    ssrc: u32,
    video: bool,
    fanout: u32,
) -> Result<()> {
    let (sock, _) = sb::bind(c.bind_ip)?;
    let pt = if video { 96 } else { 111 };
    let send = SendCfg { src, ssrc, pt, start_ns: util::now_ns(), stamp: true, fanout };
    eng.add(LegSpec { id: 0, io: IoSpec::Plain { sock, remote }, send: Some(send), detect: Detect::Off });
    Ok(())
}
