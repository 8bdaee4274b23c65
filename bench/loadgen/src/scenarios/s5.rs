//! S5, joins: sequential phone joins and WebRTC subscriber joins, timed from the request to the
//! answer, to connected and to first media, with the daemon's memory per phone leg.

use super::{join_plain, join_rtc, wait_connected};
use crate::engine::{self, Cmd, Detect, Ev, IoSpec, LegSpec, SendCfg};
use crate::media::{self, Codec};
use crate::sb::{self, Api};
use crate::util;
use crate::Common;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::Direction;

pub fn s5(c: &Common, joins: usize, webrtc_joins: usize) -> Result<Value> {
    if c.target != "switchboard" {
        bail!("s5 runs against switchboard only");
    }
    let api = Api::new(&c.api);
    let pcmu = Arc::new(media::tone(Codec::Pcmu, &c.media)?);
    let opus = Arc::new(media::tone(Codec::Opus, &c.media)?);
    let eng = engine::spawn()?;
    let mut notes = Vec::new();
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = c.pid.and_then(util::rss_kib);
    let cpu_a = util::cpu_mark(&c.pids());

    // 1. Phone legs: `joins` sequential joins, two per room; each leg sends as soon as it has its
    //    answer, like a real call.
    let mut phone_ms = Vec::new();
    for i in 0..joins {
        let room = format!("s5-{}-{}", c.tag, i / 2);
        let (sock, local) = sb::bind(c.bind_ip)?;
        let (remote, took) = join_plain(&api, &room, local, Codec::Pcmu, 0, "sendrecv")?;
        phone_ms.push(took.as_secs_f64() * 1e3);
        eng.add(LegSpec {
            id: i as u32,
            io: IoSpec::Plain { sock, remote },
            send: Some(SendCfg {
                src: pcmu.clone(),
                ssrc: 0x3000_0000 + i as u32,
                pt: 0,
                start_ns: util::now_ns(),
                stamp: true,
                fanout: 1,
            }),
            detect: Detect::Off,
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_phones = c.pid.and_then(util::rss_kib);
    let cpu_b = util::cpu_mark(&c.pids());

    // 2. WebRTC subscribers: one publisher, then `webrtc_joins` sequential subscriber joins; each
    //    waits for its first media packet (or 3 s) before the next join.
    let room = format!("s5w-{}", c.tag);
    api.create_room(&room, webrtc_joins + 5)?;
    let (sock, local) = sb::bind(c.bind_ip)?;
    let (io, pt, _) = join_rtc(&api, &room, sock, local, false, Direction::SendOnly, json!({}))?;
    let pub_id = 1_000_000u32;
    eng.add(LegSpec {
        id: pub_id,
        io,
        send: Some(SendCfg { src: opus, ssrc: 0, pt: *pt, start_ns: util::now_ns(), stamp: true, fanout: 0 }),
        detect: Detect::Off,
    });
    let (ok, _) = wait_connected(&eng, 1, Duration::from_secs(10));
    if ok != 1 {
        notes.push("the WebRTC publisher did not connect".into());
    }
    let mut webrtc_ms = Vec::new();
    let mut first_media_ms = Vec::new();
    let mut connect_ms = Vec::new();
    let mut no_media = 0;
    for i in 0..webrtc_joins {
        let id = 2_000_000 + i as u32;
        let (sock, local) = sb::bind(c.bind_ip)?;
        let t = Instant::now();
        let t_ns = util::ns_of(t);
        let (io, _, took) = join_rtc(&api, &room, sock, local, false, Direction::RecvOnly, json!({}))?;
        webrtc_ms.push(took.as_secs_f64() * 1e3);
        eng.add(LegSpec { id, io, send: None, detect: Detect::Off });
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut got = false;
        while let Ok(ev) = eng.events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            match ev {
                Ev::Connected { leg, ns } if leg == id => connect_ms.push((ns - t_ns) as f64 / 1e6),
                Ev::FirstMedia { leg, ns } if leg == id => {
                    first_media_ms.push((ns - t_ns) as f64 / 1e6);
                    got = true;
                    break;
                }
                Ev::Failed { leg } if leg == id => break,
                _ => {}
            }
        }
        if !got {
            no_media += 1;
        }
    }
    if no_media > 0 {
        notes.push(format!("{no_media} of {webrtc_joins} WebRTC subscribers got no media within 3 s"));
    }
    let report = eng.report();
    eng.send(Cmd::Quiet);
    for i in 0..joins.div_ceil(2) {
        api.delete_room(&format!("s5-{}-{i}", c.tag));
    }
    api.delete_room(&room);
    eng.stop();
    let phone = util::percentiles_ms(&phone_ms);
    let web = util::percentiles_ms(&webrtc_ms);
    let fm = util::percentiles_ms(&first_media_ms);
    let conn = util::percentiles_ms(&connect_ms);
    let rss_per = match (rss_before, rss_phones) {
        (Some(a), Some(b)) if joins > 0 => Some((b as f64 - a as f64) / joins as f64),
        _ => None,
    };
    let cpu = util::cpu_between(cpu_a, cpu_b);
    let figs = json!({
        "phone_answer_p50_ms": phone.p50_ms, "phone_answer_p99_ms": phone.p99_ms, "phone_answer_max_ms": phone.max_ms,
        "webrtc_answer_p50_ms": web.p50_ms, "webrtc_answer_p99_ms": web.p99_ms,
        "webrtc_connected_p50_ms": conn.p50_ms, "webrtc_connected_p99_ms": conn.p99_ms,
        "first_media_p50_ms": fm.p50_ms, "first_media_p99_ms": fm.p99_ms, "first_media_n": fm.n,
        "rss_kib_before": rss_before, "rss_kib_after_phones": rss_phones,
        "rss_kib_per_phone_leg": rss_per,
        "phone_phase_cpu_s": cpu.cpu_s,
    });
    Ok(json!({
        "scenario": "s5", "target": c.target,
        "params": {"phone_joins": joins, "webrtc_joins": webrtc_joins},
        "figures": figs, "report": report, "notes": notes,
    }))
}
