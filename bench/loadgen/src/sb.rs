//! Switchboard's HTTP API v1 (docs/api.md), plain RTP offers, and str0m clients.

use crate::media::Codec;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::{Candidate, Rtc};

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).max_idle_connections_per_host(4).build()
}

pub struct Api {
    pub agent: ureq::Agent,
    pub base: String,
    /// `Authorization` for every call: `Bearer $SB_API_TOKEN` when the variable is set (the
    /// bench harness mints an admin token with `switchboard token`).
    pub auth: Option<String>,
}

pub struct Joined {
    pub answer: String,
    /// POST sent to answer parsed.
    pub took: Duration,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let auth = std::env::var("SB_API_TOKEN").ok().filter(|t| !t.is_empty()).map(|t| format!("Bearer {t}"));
        Api { agent: agent(), base: base.trim_end_matches('/').to_owned(), auth }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let r = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.auth {
            Some(a) => r.set("Authorization", a),
            None => r,
        }
    }

    /// Creates a room; an existing one is fine.
    pub fn create_room(&self, id: &str, max_participants: usize) -> Result<()> {
        let r = self.request("POST", "/v1/rooms").send_json(json!({"id": id, "max_participants": max_participants}));
        match r {
            Ok(_) | Err(ureq::Error::Status(409, _)) => Ok(()),
            Err(e) => Err(anyhow!("POST /v1/rooms {id}: {}", describe(e))),
        }
    }

    pub fn delete_room(&self, id: &str) {
        let _ = self.request("DELETE", &format!("/v1/rooms/{id}")).call();
    }

    pub fn join(&self, room: &str, offer: &str, extra: Value) -> Result<Joined> {
        let mut body = json!({"sdp": offer});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let start = Instant::now();
        let resp = self
            .request("POST", &format!("/v1/rooms/{room}/participants"))
            .send_json(body)
            .map_err(|e| anyhow!("join {room}: {}", describe(e)))?;
        let view: Value = resp.into_json().context("join: response body")?;
        let took = start.elapsed();
        let answer = view["sdp"].as_str().ok_or_else(|| anyhow!("join {room}: no sdp in {view}"))?.to_owned();
        Ok(Joined { answer, took })
    }

    /// `GET /metrics`, the Prometheus text.
    pub fn metrics(&self) -> Result<String> {
        let r = self.request("GET", "/metrics").call().map_err(describe_err)?;
        Ok(r.into_string()?)
    }

    pub fn room(&self, id: &str) -> Result<Value> {
        let r = self.request("GET", &format!("/v1/rooms/{id}")).call().map_err(describe_err)?;
        Ok(r.into_json()?)
    }
}

fn describe_err(e: ureq::Error) -> anyhow::Error {
    anyhow!(describe(e))
}

pub fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, r) => format!("HTTP {code}: {}", r.into_string().unwrap_or_default()),
        other => other.to_string(),
    }
}

/// Binds a UDP socket on `ip` with an OS-chosen port.
pub fn bind(ip: IpAddr) -> Result<(UdpSocket, SocketAddr)> {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0)).context("binding a leg socket")?;
    let a = s.local_addr()?;
    Ok((s, a))
}

/// A plain RTP audio offer as a SIP gateway would send it.
pub fn plain_offer(local: SocketAddr, codec: Codec, pt: u8, direction: &str) -> String {
    let sid = 1_000_000 + local.port() as u64;
    let ip = local.ip();
    let rtpmap = match codec {
        Codec::Pcmu => format!("a=rtpmap:{pt} PCMU/8000\r\n"),
        Codec::Opus => format!("a=rtpmap:{pt} opus/48000/2\r\na=fmtp:{pt} minptime=10;useinbandfec=0\r\n"),
        Codec::Vp8 => format!("a=rtpmap:{pt} VP8/90000\r\n"),
    };
    let media = if codec == Codec::Vp8 { "video" } else { "audio" };
    format!(
        "v=0\r\no=- {sid} 1 IN IP4 {ip}\r\ns=loadgen\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m={media} {port} RTP/AVP {pt}\r\n{rtpmap}a=ptime:20\r\na={direction}\r\n",
        port = local.port()
    )
}

/// The media address of the first m-line of an SDP (its c= line, session or media level).
pub fn media_addr(sdp: &str) -> Result<SocketAddr> {
    let mut ip: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    for line in sdp.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix("c=IN IP4 ").or_else(|| line.strip_prefix("c=IN IP6 ")) {
            if port.is_none() || ip.is_none() {
                ip = c.split('/').next().and_then(|s| s.trim().parse().ok());
            }
        } else if let Some(m) = line.strip_prefix("m=") {
            if port.is_some() {
                break;
            }
            port = m.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        }
    }
    match (ip, port) {
        (Some(ip), Some(p)) if p != 0 => Ok(SocketAddr::new(ip, p)),
        _ => bail!("no media address in SDP:\n{sdp}"),
    }
}

/// A str0m client in RTP mode with one m-line, its offer, and the pending change.
pub struct RtcOffer {
    pub rtc: Box<Rtc>,
    pub offer: String,
    pub pending: Option<SdpPendingOffer>,
    pub mid: Mid,
}

pub fn rtc_offer(local: SocketAddr, video: bool, dir: Direction) -> Result<RtcOffer> {
    let now = Instant::now();
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(!video, false)
        .enable_vp8(video)
        .set_stats_interval(None)
        .build(now);
    let c = Candidate::host(local, "udp").map_err(|e| anyhow!("host candidate: {e}"))?;
    rtc.add_local_candidate(c);
    let mut api = rtc.sdp_api();
    let kind = if video { MediaKind::Video } else { MediaKind::Audio };
    let mid = api.add_media(kind, dir, None, None, None);
    let (offer, pending) = api.apply().ok_or_else(|| anyhow!("str0m made no offer"))?;
    Ok(RtcOffer { rtc: Box::new(rtc), offer: offer.to_sdp_string(), pending: Some(pending), mid })
}

/// Applies the bridge's answer; returns the payload type to send with on `mid`.
pub fn rtc_accept(o: &mut RtcOffer, answer: &str) -> Result<Pt> {
    let pending = o.pending.take().ok_or_else(|| anyhow!("offer already answered"))?;
    let a = SdpAnswer::from_sdp_string(answer).map_err(|e| anyhow!("answer: {e}"))?;
    o.rtc.sdp_api().accept_answer(pending, a).map_err(|e| anyhow!("accept_answer: {e}"))?;
    let pt = o.rtc.media(o.mid).and_then(|m| m.remote_pts().first().copied());
    Ok(pt.unwrap_or_else(|| Pt::from(111)))
}

/// A str0m client in RTP mode that answers a server's audio offer (Janus's subscriber offers):
/// the client, its answer and the mid of the offer's first audio m-line.
pub fn rtc_answer(local: SocketAddr, offer: &str) -> Result<(Box<Rtc>, String, Mid)> {
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .set_stats_interval(None)
        .build(Instant::now());
    let c = Candidate::host(local, "udp").map_err(|e| anyhow!("host candidate: {e}"))?;
    rtc.add_local_candidate(c);
    let o = SdpOffer::from_sdp_string(offer).map_err(|e| anyhow!("offer: {e}"))?;
    let answer = rtc.sdp_api().accept_offer(o).map_err(|e| anyhow!("accept_offer: {e}"))?;
    let mid = audio_mid(offer).ok_or_else(|| anyhow!("no audio m-line with a mid in the offer:\n{offer}"))?;
    Ok((Box::new(rtc), answer.to_sdp_string(), Mid::from(mid.as_str())))
}

/// The `a=mid` of an SDP's first audio m-line.
fn audio_mid(sdp: &str) -> Option<String> {
    let mut in_audio = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio ");
        } else if in_audio {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                return Some(mid.to_owned());
            }
        }
    }
    None
}

/// The mixer ticks a scrape has counted: all of them, and those later than 10 ms and 20 ms
/// (`switchboard_mixer_tick_lateness_seconds`, summed over every series, so over every worker).
#[derive(Debug, Default, Clone, Copy)]
pub struct Ticks {
    pub all: u64,
    pub over_10ms: u64,
    pub over_20ms: u64,
}

impl Ticks {
    pub fn parse(metrics: &str) -> Ticks {
        let (mut all, mut le10, mut le20) = (0u64, 0u64, 0u64);
        for line in metrics.lines() {
            let Some(rest) = line.strip_prefix("switchboard_mixer_tick_lateness_seconds_") else { continue };
            let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as u64;
            if rest.starts_with("count") {
                all += value;
            } else if rest.starts_with("bucket") {
                let le = rest.split("le=\"").nth(1).and_then(|v| v.split('"').next());
                match le.and_then(|v| v.parse::<f64>().ok()) {
                    Some(x) if (x - 0.01).abs() < 1e-9 => le10 += value,
                    Some(x) if (x - 0.02).abs() < 1e-9 => le20 += value,
                    _ => {}
                }
            }
        }
        Ticks { all, over_10ms: all.saturating_sub(le10), over_20ms: all.saturating_sub(le20) }
    }

    pub fn since(self, before: Ticks) -> Ticks {
        Ticks {
            all: self.all.saturating_sub(before.all),
            over_10ms: self.over_10ms.saturating_sub(before.over_10ms),
            over_20ms: self.over_20ms.saturating_sub(before.over_20ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_sum_every_series_and_count_the_late_ones() {
        let text = "\
# TYPE switchboard_mixer_tick_lateness_seconds histogram
switchboard_mixer_tick_lateness_seconds_bucket{worker=\"0\",le=\"0.005\"} 90
switchboard_mixer_tick_lateness_seconds_bucket{worker=\"0\",le=\"0.01\"} 95
switchboard_mixer_tick_lateness_seconds_bucket{worker=\"0\",le=\"0.02\"} 99
switchboard_mixer_tick_lateness_seconds_bucket{worker=\"0\",le=\"+Inf\"} 100
switchboard_mixer_tick_lateness_seconds_count{worker=\"0\"} 100
switchboard_mixer_tick_lateness_seconds_bucket{worker=\"1\",le=\"0.01\"} 50
switchboard_mixer_tick_lateness_seconds_bucket{worker=\"1\",le=\"0.02\"} 50
switchboard_mixer_tick_lateness_seconds_count{worker=\"1\"} 50
switchboard_mixer_ticks_total 150
";
        let t = Ticks::parse(text);
        assert_eq!((t.all, t.over_10ms, t.over_20ms), (150, 5, 1));
        let later = Ticks { all: 250, over_10ms: 6, over_20ms: 1 };
        let d = later.since(t);
        assert_eq!((d.all, d.over_10ms, d.over_20ms), (100, 1, 0));
    }

    #[test]
    fn the_audio_mid_is_the_first_audio_m_lines() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=mid:a1\r\n";
        assert_eq!(audio_mid(sdp).as_deref(), Some("a1"));
        assert_eq!(audio_mid("v=0\r\nm=video 9 RTP/AVP 96\r\na=mid:0\r\n"), None);
    }
}
