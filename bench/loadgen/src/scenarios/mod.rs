//! The benchmark scenarios (see docs/benchmarks.md). Each one sets up its legs through the target's
//! control API, runs a warm-up, opens a measurement window, and returns one JSON result.

use crate::engine::{self, Cmd, Detect, Ev, IoSpec, LegSpec, Report, SendCfg};
use crate::media::{self, Codec, Source};
use crate::peers::{Janus, Rtpengine};
use crate::sb::{self, Api};
use crate::util::{self, CpuUse};
use crate::Common;
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::Direction;

/// The measurement part shared by every scenario: warm-up, window, drain, report, CPU.
struct Measured {
    report: Report,
    cpu: CpuUse,
    /// The load generator's own CPU over the window (it must not be the bottleneck).
    gen_cpu: CpuUse,
    /// Busy % of every CPU in the window (all processes): the background load of a shared machine.
    cpus_busy_pct: Vec<f64>,
    /// Receive-buffer drops on the target's own UDP sockets in the window, and on ours.
    target_udp_drops: Option<u64>,
    gen_udp_drops: Option<u64>,
    rss_kib: Option<u64>,
}

fn measure(c: &Common, eng: &engine::Handle) -> Measured {
    std::thread::sleep(Duration::from_secs_f64(c.warmup));
    let start = util::now_ns() + 5_000_000;
    let end = start + (c.duration * 1e9) as u64;
    eng.send(Cmd::Window { start_ns: start, end_ns: end });
    std::thread::sleep(Duration::from_nanos(start.saturating_sub(util::now_ns())));
    let me = [std::process::id()];
    let drops = || (c.pid.and_then(util::udp_drops), util::udp_drops(std::process::id()));
    let (a, ga, ja, da) = (util::cpu_mark(&c.pids()), util::cpu_mark(&me), util::cpu_jiffies(), drops());
    std::thread::sleep(Duration::from_nanos(end.saturating_sub(util::now_ns())));
    let (b, gb, jb, db) = (util::cpu_mark(&c.pids()), util::cpu_mark(&me), util::cpu_jiffies(), drops());
    let diff = |x: Option<u64>, y: Option<u64>| Some(y?.saturating_sub(x?));
    let rss_kib = c.pid.and_then(util::rss_kib);
    // Late packets of the window still count.
    std::thread::sleep(Duration::from_millis(500));
    let report = eng.report();
    Measured {
        report,
        cpu: util::cpu_between(a, b),
        gen_cpu: util::cpu_between(ga, gb),
        cpus_busy_pct: util::cpu_busy_pct(&ja, &jb),
        target_udp_drops: diff(da.0, db.0),
        gen_udp_drops: diff(da.1, db.1),
        rss_kib,
    }
}

fn pct(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| 100.0 * num as f64 / den as f64)
}

/// Loss of stamped packets: expected deliveries against deliveries of packets sent in the window.
fn loss_pct(r: &Report) -> Option<f64> {
    pct(r.expected_window.saturating_sub(r.recv_stamped_window), r.expected_window)
}

fn forwarding_figures(m: &Measured) -> Value {
    let r = &m.report;
    let pkts = r.recv_stamped_window as f64;
    let cpu = m.cpu.cpu_s;
    json!({
        "forwarded_pkts": r.recv_stamped_window,
        "pkts_per_cpu_s": (cpu > 0.0).then(|| pkts / cpu),
        "pkts_per_sched_cpu_s": (m.cpu.sched_cpu_s > 0.0).then(|| pkts / m.cpu.sched_cpu_s),
        "cpu_us_per_pkt": (pkts > 0.0).then(|| cpu * 1e6 / pkts),
        "sched_cpu_us_per_pkt": (pkts > 0.0).then(|| m.cpu.sched_cpu_s * 1e6 / pkts),
        "core_pct": m.cpu.core_share * 100.0,
        "loss_pct": loss_pct(r),
        "delay_p50_ms": r.delay.p50_ms,
        "delay_p99_ms": r.delay.p99_ms,
        "send_lateness_p99_ms": r.send_lateness.p99_ms,
        "gen_core_pct": m.gen_cpu.core_share * 100.0,
        "target_rcvbuf_drops": m.target_udp_drops,
        "gen_rcvbuf_drops": m.gen_udp_drops,
    })
}

fn result(
    c: &Common,
    scenario: &str,
    params: Value,
    setup_s: f64,
    m: &Measured,
    figures: Value,
    notes: Vec<String>,
) -> Value {
    json!({
        "scenario": scenario,
        "target": c.target,
        "params": params,
        "setup_s": setup_s,
        "cpu": m.cpu,
        "gen_cpu": m.gen_cpu,
        "cpus_busy_pct": m.cpus_busy_pct,
        "target_udp_drops": m.target_udp_drops,
        "gen_udp_drops": m.gen_udp_drops,
        "rss_kib": m.rss_kib,
        "report": m.report,
        "figures": figures,
        "notes": notes,
    })
}

fn stagger(t0: u64, i: usize, n: usize) -> u64 {
    t0 + (i as u64 * 20_000_000) / n.max(1) as u64
}

/// Waits until `n` WebRTC legs reported Connected (or failed), up to `limit`.
fn wait_connected(eng: &engine::Handle, n: usize, limit: Duration) -> (usize, usize) {
    let deadline = Instant::now() + limit;
    let (mut ok, mut failed) = (0, 0);
    while ok + failed < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match eng.events.recv_timeout(left) {
            Ok(Ev::Connected { .. }) => ok += 1,
            Ok(Ev::Failed { .. }) => failed += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (ok, failed)
}

// ------------------------------------------------------------------ S1: fan-out

pub struct S1 {
    pub subs: usize,
    pub video: bool,
    /// webrtc or rtp subscribers (rtp: the plain-RTP fallback, and the Janus comparison).
    pub subs_kind: String,
    pub janus_ssrc: u32,
}

pub fn s1(c: &Common, p: &S1) -> Result<Value> {
    let codec = if p.video { Codec::Vp8 } else { Codec::Opus };
    let src: Arc<Source> =
        Arc::new(if p.video { media::vp8(&c.media, 1100)? } else { media::tone(Codec::Opus, &c.media)? });
    let params = json!({
        "subs": p.subs, "video": p.video, "subs_kind": p.subs_kind,
        "publisher_kbps": media::bitrate(&src) / 1000.0, "publisher_pps": media::packets_per_second(&src),
    });
    let eng = engine::spawn()?;
    let t_setup = Instant::now();
    let mut notes = Vec::new();
    let room = format!("s1-{}", c.tag);
    let fanout = p.subs as u32;
    match c.target.as_str() {
        "switchboard" => {
            let api = Api::new(&c.api);
            api.create_room(&room, p.subs + 5)?;
            // Publisher: a str0m client sending Opus (or VP8).
            let (sock, local) = sb::bind(c.bind_ip)?;
            let mut o = sb::rtc_offer(local, p.video, Direction::SendOnly)?;
            let j = api.join(&room, &o.offer, json!({"display_name": "publisher"}))?;
            let pt = sb::rtc_accept(&mut o, &j.answer)?;
            eng.add(LegSpec {
                id: 0,
                io: IoSpec::Rtc { sock, local, rtc: o.rtc, mid: o.mid, pt },
                // Held until every subscriber is connected: the audience joins, then the talk starts.
                send: Some(SendCfg { src: src.clone(), ssrc: 0, pt: *pt, start_ns: engine::HOLD, stamp: true, fanout }),
                detect: Detect::Off,
            });
            let mut rtc_subs = 0;
            for i in 0..p.subs {
                let (sock, local) = sb::bind(c.bind_ip)?;
                if p.subs_kind == "rtp" {
                    let (pt, direction) = (111, "recvonly");
                    let offer = sb::plain_offer(local, codec, pt, direction);
                    let j = api.join(&room, &offer, json!({}))?;
                    let remote = sb::media_addr(&j.answer)?;
                    eng.add(LegSpec {
                        id: 1 + i as u32,
                        io: IoSpec::Plain { sock, remote },
                        send: None,
                        detect: Detect::Off,
                    });
                } else {
                    let mut o = sb::rtc_offer(local, p.video, Direction::RecvOnly)?;
                    let j = api.join(&room, &o.offer, json!({}))?;
                    let pt = sb::rtc_accept(&mut o, &j.answer)?;
                    eng.add(LegSpec {
                        id: 1 + i as u32,
                        io: IoSpec::Rtc { sock, local, rtc: o.rtc, mid: o.mid, pt },
                        send: None,
                        detect: Detect::Off,
                    });
                    rtc_subs += 1;
                }
            }
            let (ok, failed) = wait_connected(&eng, rtc_subs + 1, Duration::from_secs(60));
            notes.push(format!("webrtc connected {ok}, failed {failed} of {}", rtc_subs + 1));
            eng.send(Cmd::StartAll { at_ns: util::now_ns() + 10_000_000 });
            let setup_s = t_setup.elapsed().as_secs_f64();
            let m = measure(c, &eng);
            api.delete_room(&room);
            eng.stop();
            Ok(result(c, "s1", params, setup_s, &m, forwarding_figures(&m), notes))
        }
        "floor" => {
            // kernel-floor's fan-out: the publisher sends to its first port; every subscriber
            // says hello once to the second, whose source it then sends each packet to.
            if p.subs_kind != "rtp" {
                bail!("the floor's subscribers are plain RTP (it has no WebRTC stack): pass --subs-kind rtp");
            }
            for i in 0..p.subs {
                let (sock, _) = sb::bind(c.bind_ip)?;
                let mut hello = [0u8; 12];
                hello[0] = 0x80;
                hello[8..12].copy_from_slice(&(0x5000_0000 + i as u32).to_be_bytes());
                sock.send_to(&hello, floor_addr(c, 1))?;
                add_listener(&eng, 1 + i as u32, sock, floor_addr(c, 1));
            }
            add_plain_publisher(c, &eng, src, floor_addr(c, 0), 0x6000_0000, p.video, fanout)?;
            let setup_s = t_setup.elapsed().as_secs_f64();
            let m = measure(c, &eng);
            eng.stop();
            Ok(result(c, "s1", params, setup_s, &m, forwarding_figures(&m), notes))
        }
        "janus" => {
            if p.subs_kind != "rtp" {
                bail!("the Janus comparison uses plain RTP subscribers (rtp_forward): pass --subs-kind rtp");
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
                add_listener(&eng, 1 + i as u32, sock, local);
            }
            add_plain_publisher(c, &eng, src, remote, p.janus_ssrc, p.video, fanout)?;
            let setup_s = t_setup.elapsed().as_secs_f64();
            let m = measure(c, &eng);
            let _ = jn.message(h, json!({"request": "destroy", "room": room_id}));
            jn.destroy();
            eng.stop();
            notes.push("Janus VideoRoom: remote publisher (plain RTP in) + one rtp_forward per subscriber".into());
            Ok(result(c, "s1", params, setup_s, &m, forwarding_figures(&m), notes))
        }
        t => bail!("s1: unsupported target {t}"),
    }
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

// ------------------------------------------------------------------ S2: 1:1 relay

pub fn s2(c: &Common, rooms: usize) -> Result<Value> {
    let src = Arc::new(media::tone(Codec::Pcmu, &c.media)?);
    let eng = engine::spawn()?;
    let t_setup = Instant::now();
    let t0 = util::now_ns() + 200_000_000;
    let legs = rooms * 2;
    let mut notes = Vec::new();
    let mut answer_ms = Vec::new();
    let mut rtpe = None;
    let api = Api::new(&c.api);
    for m in 0..rooms {
        let (sa, la) = sb::bind(c.bind_ip)?;
        let (sb_, lb) = sb::bind(c.bind_ip)?;
        let offer_a = sb::plain_offer(la, Codec::Pcmu, 0, "sendrecv");
        let offer_b = sb::plain_offer(lb, Codec::Pcmu, 0, "sendrecv");
        let (ra, rb) = match c.target.as_str() {
            "switchboard" => {
                let room = format!("s2-{}-{m}", c.tag);
                let ja = api.join(&room, &offer_a, json!({}))?;
                let jb = api.join(&room, &offer_b, json!({}))?;
                answer_ms.push(ja.took.as_secs_f64() * 1e3);
                answer_ms.push(jb.took.as_secs_f64() * 1e3);
                (sb::media_addr(&ja.answer)?, sb::media_addr(&jb.answer)?)
            }
            "rtpengine" => {
                if rtpe.is_none() {
                    rtpe = Some(Rtpengine::connect(c.ng)?);
                }
                let r = rtpe.as_mut().ok_or_else(|| anyhow!("ng"))?;
                let t = Instant::now();
                let (to_b, to_a) = r.call(&format!("s2-{}-{m}", c.tag), &offer_a, &offer_b)?;
                answer_ms.push(t.elapsed().as_secs_f64() * 1e3 / 2.0);
                // A sends to the address in the SDP rtpengine gave A (the answer), B to B's.
                (sb::media_addr(&to_a)?, sb::media_addr(&to_b)?)
            }
            // No signalling: room m's legs are the floor's ports 2m and 2m+1.
            "floor" => (floor_addr(c, 2 * m), floor_addr(c, 2 * m + 1)),
            t => bail!("s2: unsupported target {t}"),
        };
        for (k, (sock, remote)) in [(sa, ra), (sb_, rb)].into_iter().enumerate() {
            let i = 2 * m + k;
            eng.add(LegSpec {
                id: i as u32,
                io: IoSpec::Plain { sock, remote },
                send: Some(SendCfg {
                    src: src.clone(),
                    ssrc: 0x1000_0000 + i as u32,
                    pt: 0,
                    start_ns: stagger(t0.max(util::now_ns()), i, legs),
                    stamp: true,
                    fanout: 1,
                }),
                detect: Detect::Off,
            });
        }
    }
    let setup_s = t_setup.elapsed().as_secs_f64();
    let m = measure(c, &eng);
    eng.send(Cmd::Quiet);
    for i in 0..rooms {
        match c.target.as_str() {
            "switchboard" => api.delete_room(&format!("s2-{}-{i}", c.tag)),
            "floor" => {}
            _ => {
                if let Some(r) = rtpe.as_mut() {
                    r.delete(&format!("s2-{}-{i}", c.tag));
                }
            }
        }
    }
    eng.stop();
    let mut figs = forwarding_figures(&m);
    let ans = util::percentiles_ms(&answer_ms);
    figs["answer_p50_ms"] = json!(ans.p50_ms);
    figs["answer_p99_ms"] = json!(ans.p99_ms);
    if m.report.legs_with_media < legs {
        notes.push(format!("only {} of {legs} legs received media", m.report.legs_with_media));
    }
    Ok(result(c, "s2", json!({"rooms": rooms, "legs": legs, "codec": "pcmu"}), setup_s, &m, figs, notes))
}

/// Where `kernel-floor` listens for leg `i`.
fn floor_addr(c: &Common, i: usize) -> SocketAddr {
    let i = if c.floor_shared { 0 } else { i as u16 };
    SocketAddr::from(([127, 0, 0, 1], c.floor_base + i))
}

// ------------------------------------------------------------------ S3/S4: audio MCU

pub struct Mcu {
    pub legs: usize,
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
    let room = format!("{scenario}-{}", c.tag);
    let mut notes = Vec::new();
    let mut janus: Option<(Janus, u64, u64)> = None;
    let api = Api::new(&c.api);
    if c.target == "switchboard" {
        api.create_room(&room, p.legs + 5)?;
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
        let talker = i < p.talkers;
        let remote = match janus.as_mut() {
            None if c.target == "floor" => floor_addr(c, i),
            None => {
                let offer = sb::plain_offer(local, p.codec, pt, "sendrecv");
                let j = api.join(&room, &offer, json!({}))?;
                sb::media_addr(&j.answer)?
            }
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
        // Talkers' bursts are spread over the second so each onset is attributable.
        let phase = if talker { i as u64 * 1_000_000_000 / p.talkers.max(1) as u64 } else { 0 };
        let start = if talker { t0 + phase } else { stagger(t0, i, p.legs) };
        let detect_here = talker || i < p.talkers + p.sample;
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
    let m = measure(c, &eng);
    eng.send(Cmd::Quiet);
    let mut routes = Value::Null;
    if let Some((mut jn, h, room_id)) = janus.take() {
        let _ = jn.message(h, json!({"request": "destroy", "room": room_id}));
        jn.destroy();
    } else if c.target == "switchboard" {
        if let Ok(v) = api.room(&room) {
            let mut counts = std::collections::BTreeMap::<String, usize>::new();
            for part in v["participants"].as_array().into_iter().flatten() {
                for s in part["subscriptions"].as_array().into_iter().flatten() {
                    *counts.entry(s["route"].as_str().unwrap_or("none").to_owned()).or_default() += 1;
                }
            }
            routes = json!(counts);
        }
        api.delete_room(&room);
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
        "rss_kib": m.rss_kib,
        "gen_core_pct": m.gen_cpu.core_share * 100.0,
    });
    Ok(result(
        c,
        scenario,
        json!({"legs": p.legs, "codec": codec_name, "talkers": p.talkers, "sampled_listeners": p.sample,
               "janus_sampling_rate": (c.target == "janus").then_some(p.janus_rate)}),
        setup_s,
        &m,
        figs,
        notes,
    ))
}

// ------------------------------------------------------------------ S5: joins

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
        let offer = sb::plain_offer(local, Codec::Pcmu, 0, "sendrecv");
        let j = api.join(&room, &offer, json!({}))?;
        phone_ms.push(j.took.as_secs_f64() * 1e3);
        eng.add(LegSpec {
            id: i as u32,
            io: IoSpec::Plain { sock, remote: sb::media_addr(&j.answer)? },
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
    let mut o = sb::rtc_offer(local, false, Direction::SendOnly)?;
    let j = api.join(&room, &o.offer, json!({}))?;
    let pt = sb::rtc_accept(&mut o, &j.answer)?;
    let pub_id = 1_000_000u32;
    eng.add(LegSpec {
        id: pub_id,
        io: IoSpec::Rtc { sock, local, rtc: o.rtc, mid: o.mid, pt },
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
        let mut o = sb::rtc_offer(local, false, Direction::RecvOnly)?;
        let j = api.join(&room, &o.offer, json!({}))?;
        webrtc_ms.push(j.took.as_secs_f64() * 1e3);
        let pt = sb::rtc_accept(&mut o, &j.answer)?;
        eng.add(LegSpec {
            id,
            io: IoSpec::Rtc { sock, local, rtc: o.rtc, mid: o.mid, pt },
            send: None,
            detect: Detect::Off,
        });
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
