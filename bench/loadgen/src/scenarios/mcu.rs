//! S3 and S4, the audio MCU: N plain RTP legs in one mix (PCMU or Opus), or spread over R rooms,
//! a few of them talking in bursts in each room, and each burst's onset timed from the talker's
//! send to the listeners' mix. On Switchboard it also reads how late the mixer ticks ran.

use super::measure::{measure_with, pct, result};
use super::{floor_addr, join_plain, stagger};
use crate::engine::{self, Cmd, Detect, IoSpec, LegSpec, SendCfg};
use crate::media::{self, Codec};
use crate::peers::Janus;
use crate::sb::{self, Api};
use crate::util;
use crate::Common;
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

pub struct Mcu {
    pub legs: usize,
    /// Rooms the legs are spread over (leg i in room i mod R), each with `talkers` talking.
    pub rooms: usize,
    pub codec: Codec,
    pub talkers: usize,
    /// Listeners (besides the talkers) whose audio is decoded for onset detection.
    pub sample: usize,
    pub janus_rate: u32,
}

pub fn mcu(c: &Common, p: &Mcu) -> Result<Value> {
    let scenario = if p.codec == Codec::Pcmu { "s3" } else { "s4" };
    if p.codec == Codec::Opus && !media::opus::available() {
        eprintln!("loadgen: libopus.so.0 not found; Opus mixes are counted but not decoded");
    }
    let talk = Arc::new(media::bursts(p.codec, &c.media, 10)?);
    let quiet = Arc::new(media::silence(p.codec, &c.media)?);
    let (pt, codec_name) = if p.codec == Codec::Pcmu { (0u8, "pcmu") } else { (111u8, "opus") };
    let detect = if p.codec == Codec::Pcmu { Detect::Pcmu } else { Detect::Opus };
    let eng = engine::spawn()?;
    let t_setup = Instant::now();
    let t0 = util::now_ns() + 300_000_000;
    let rooms = p.rooms.max(1);
    let room_ids: Vec<String> = (0..rooms)
        .map(|r| if rooms == 1 { format!("{scenario}-{}", c.tag) } else { format!("{scenario}-{}-{r}", c.tag) })
        .collect();
    let talkers = p.talkers * rooms;
    let mut notes = Vec::new();
    let mut janus: Option<(Janus, u64, u64)> = None;
    let api = Api::new(&c.api);
    if rooms > 1 && c.target != "switchboard" {
        bail!("{scenario}: --rooms is for Switchboard (the scaling figures)");
    }
    if c.target == "switchboard" {
        // Created before anyone joins, so the placement spreads them over the workers.
        for room in &room_ids {
            api.create_room(room, p.legs / rooms + 5)?;
        }
    } else if c.target == "janus" {
        let mut jn = Janus::connect(&c.janus)?;
        let h = jn.attach("janus.plugin.audiobridge")?;
        let room_id = 2000 + (std::process::id() as u64 % 100_000);
        jn.message(
            h,
            json!({"request": "create", "room": room_id, "sampling_rate": p.janus_rate, "allow_rtp_participants": true,
                   "audiolevel_event": false, "is_private": true, "record": false}),
        )?;
        janus = Some((jn, h, room_id));
    } else if c.target != "floor" {
        bail!("{scenario}: unsupported target {}", c.target);
    }
    for i in 0..p.legs {
        let (sock, local) = sb::bind(c.bind_ip)?;
        let talker = i < talkers;
        let room = &room_ids[i % rooms];
        let remote = match janus.as_mut() {
            None if c.target == "floor" => floor_addr(c, i),
            None => join_plain(&api, room, local, p.codec, pt, "sendrecv")?.0,
            Some((jn, _, room_id)) => {
                let h = jn.attach("janus.plugin.audiobridge")?;
                let d = jn.message(
                    h,
                    json!({"request": "join", "room": *room_id, "display": format!("leg{i}"), "codec": codec_name,
                           "rtp": {"ip": local.ip().to_string(), "port": local.port(), "payload_type": pt}}),
                )?;
                let ip = d["rtp"]["ip"].as_str().ok_or_else(|| anyhow!("join: no rtp in {d}"))?;
                let port = d["rtp"]["port"].as_u64().ok_or_else(|| anyhow!("join: no rtp port in {d}"))?;
                format!("{ip}:{port}").parse()?
            }
        };
        // Talkers' bursts are spread over the second so each onset is attributable (with more
        // than about 5 rooms, onsets come closer than the mix delay and the attribution fails).
        let phase = if talker { i as u64 * 1_000_000_000 / talkers.max(1) as u64 } else { 0 };
        let start = if talker { t0 + phase } else { stagger(t0, i, p.legs) };
        let detect_here = talker || i < talkers + p.sample;
        eng.add(LegSpec {
            id: i as u32,
            io: IoSpec::Plain { sock, remote },
            send: Some(SendCfg {
                src: if talker { talk.clone() } else { quiet.clone() },
                ssrc: 0x2000_0000 + i as u32,
                pt,
                start_ns: start.max(util::now_ns()),
                stamp: false,
                fanout: 0,
            }),
            detect: if detect_here { detect } else { Detect::Off },
        });
    }
    let setup_s = t_setup.elapsed().as_secs_f64();
    let mut ticks = [sb::Ticks::default(); 2];
    let sb_target = c.target == "switchboard";
    let m = measure_with(c, &eng, &mut |end| {
        if sb_target {
            ticks[end as usize] = api.metrics().map(|t| sb::Ticks::parse(&t)).unwrap_or_default();
        }
    });
    let ticks = ticks[1].since(ticks[0]);
    eng.send(Cmd::Quiet);
    let mut routes = Value::Null;
    let mut workers = Vec::new();
    if let Some((mut jn, h, room_id)) = janus.take() {
        let _ = jn.message(h, json!({"request": "destroy", "room": room_id}));
        jn.destroy();
    } else if sb_target {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for room in &room_ids {
            if let Ok(v) = api.room(room) {
                workers.push(v["worker"].clone());
                for part in v["participants"].as_array().into_iter().flatten() {
                    for s in part["subscriptions"].as_array().into_iter().flatten() {
                        *counts.entry(s["route"].as_str().unwrap_or("none").to_owned()).or_default() += 1;
                    }
                }
            }
            api.delete_room(room);
        }
        routes = json!(counts);
    }
    eng.stop();
    let r = &m.report;
    let expected_mix = (p.legs as f64 * 50.0 * r.window_s) as u64;
    let arrived = r.recv_any_window > 0;
    if !arrived {
        notes.push("no mixed media arrived: figures that need the mix are pending".into());
    }
    let figs = json!({
        "core_pct": m.cpu.core_share * 100.0,
        "cpu_pct_per_participant": m.cpu.core_share * 100.0 / p.legs as f64,
        "mix_arrived": arrived,
        "mix_pkts_received": r.recv_any_window,
        "mix_pkts_expected": expected_mix,
        "mix_received_pct": pct(r.recv_any_window, expected_mix),
        "onsets_sent": r.onsets_sent_window,
        "onsets_heard": r.onsets_heard_window,
        "mix_delay_p50_ms": r.onset_delay.p50_ms,
        "mix_delay_p99_ms": r.onset_delay.p99_ms,
        "routes": routes,
        "room_workers": workers,
        "ticks": sb_target.then_some(ticks.all),
        "tick_late_10ms_pct": sb_target.then(|| pct(ticks.over_10ms, ticks.all)).flatten(),
        "tick_late_20ms_pct": sb_target.then(|| pct(ticks.over_20ms, ticks.all)).flatten(),
        "rss_kib": m.rss_kib,
        "gen_core_pct": m.gen_cpu.core_share * 100.0,
    });
    Ok(result(
        c,
        scenario,
        json!({"legs": p.legs, "rooms": rooms, "codec": codec_name, "talkers": p.talkers, "sampled_listeners": p.sample,
               "janus_sampling_rate": (c.target == "janus").then_some(p.janus_rate)}),
        setup_s,
        &m,
        figs,
        notes,
    ))
}
