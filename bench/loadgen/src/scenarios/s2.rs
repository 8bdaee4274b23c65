//! S2, the 1:1 phone relay: M rooms of two PCMU legs, each leg sending to the other through
//! Switchboard, rtpengine or the kernel's floor.

use super::measure::{forwarding_figures, measure, result};
use super::{floor_addr, stagger};
use crate::engine::{self, Cmd, Detect, IoSpec, LegSpec, SendCfg};
use crate::media::{self, Codec};
use crate::peers::Rtpengine;
use crate::sb::{self, Api};
use crate::util;
use crate::Common;
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

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
