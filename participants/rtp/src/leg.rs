//! `RtpDriver`: one plain RTP or SDES-SRTP participant, sans-IO.
//!
//! This file holds the state and the offer/answer side; `inbound.rs` and `outbound.rs` hold the
//! packet paths.

use crate::config::{LegStats, RemoteReport, RtpLegConfig};
use crate::negotiation::{self, offer_codecs, offer_suites, LocalOffer, MediaPlan};
use crate::queue::OutputQueue;
use crate::sdes::KeyMaterial;
use crate::sdp::{parse_remote_description, Direction, RemoteDescription};
use crate::sdp_write::{self, AudioLine, Section};
use crate::srtp::{SrtpInbound, SrtpOutbound};
use crate::stream::PeerStream;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_driver::dtmf::{DtmfReceiver, DtmfSender};
use switchboard_driver::{
    CodecSpec, Driver, KernelCounts, KernelLeg, KeyframeKind, MediaKind, Negotiated, NegotiationError, Output,
    ParticipantKind, RtpMeta, SdpInput, SlotInfo, SlotKey, Ssrc, TrackInfo, TrackKey, WriteError,
};

/// Seconds from 1900 (NTP) to 1970 (Unix).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// Regular RTCP report interval (RFC 3550's 5 s minimum).
pub(crate) const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// Deadline `poll` returns when nothing is scheduled.
const IDLE: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub(crate) enum Phase {
    /// Nothing negotiated yet.
    Idle,
    /// The bridge offered and waits for the answer.
    OfferSent(LocalOffer),
    Active,
    Closed,
}

/// Outbound RTP state of the slot.
#[derive(Debug)]
pub(crate) struct SendState {
    /// Next sequence number on the wire. Every packet (room media and DTMF) takes one.
    pub next_seq: u16,
    /// Added to the room's sequence numbers; recomputed after DTMF took some.
    pub seq_offset: u16,
    pub resync: bool,
    /// Last RTP timestamp sent and when, to place DTMF events and SR timestamps.
    pub last_ts: u32,
    pub last_ts_at: Instant,
    pub clock_rate: u32,
    pub packets: u64,
    pub octets: u64,
    pub last_sent_at: Option<Instant>,
}

/// A plain RTP (RTP/AVP) or SDES-SRTP (RTP/SAVP + `a=crypto`) leg: a SIP gateway or carrier.
///
/// - One audio m-line is used (the first with a port); other m-lines are answered with port 0.
///   It is published as `TrackKey(0)` (while the peer sends) and received on `SlotKey(0)`
///   (`active` while the peer receives and its address is not 0.0.0.0). Keys, labels and the
///   bridge's SSRC stay the same across re-offers.
/// - Re-offers apply hold/resume, a new address (the latch resets to it), a new codec and new
///   keys. A new peer key gets a new inbound SRTP context. The bridge keeps its own key and
///   outbound context (so its SRTP index never restarts under the same key) unless the suite
///   changes, which gets a fresh key.
/// - Before the first SDP, and after `close`, datagrams are ignored.
/// - `close` sends RTCP BYE.
pub struct RtpDriver {
    pub(crate) cfg: RtpLegConfig,
    pub(crate) kind: ParticipantKind,
    pub(crate) phase: Phase,
    pub(crate) plan: Option<MediaPlan>,
    negotiated: Negotiated,
    pub(crate) ssrc: u32,
    pub(crate) cname: String,
    session_id: u64,
    sdp_version: u64,
    last_body: Option<String>,
    pub(crate) epoch: Instant,
    /// NTP time (32.32) at `epoch`.
    pub(crate) epoch_ntp: u64,
    pub(crate) srtp_in: Option<SrtpInbound>,
    pub(crate) srtp_out: Option<SrtpOutbound>,
    /// Where the peer's media is latched (symmetric RTP), if it was.
    pub(crate) latched_rtp: Option<SocketAddr>,
    /// When the latched source last sent a valid packet: another source may take the latch of a
    /// plain-RTP leg only after it has been silent a while (`inbound::RELATCH_AFTER`).
    pub(crate) latched_rtp_seen: Instant,
    pub(crate) latched_rtcp: Option<SocketAddr>,
    pub(crate) connected: bool,
    pub(crate) tx: SendState,
    /// The peer's stream the leg takes, and its receive statistics.
    pub(crate) stream: PeerStream,
    /// Middle 32 bits of the peer's last SR and when it arrived.
    pub(crate) last_sr: Option<(u32, Instant)>,
    pub(crate) remote_report: Option<RemoteReport>,
    pub(crate) rtcp_next: Option<Instant>,
    pub(crate) dtmf_rx: DtmfReceiver,
    pub(crate) dtmf_tx: DtmfSender,
    pub(crate) queue: OutputQueue,
    pub(crate) scratch: Vec<u8>,
    pub(crate) stats: LegStats,
}

/// A random u32 from the OS. The values it makes (SSRC, ids) only need to be unlikely to
/// collide, so a failing generator falls back to the clock rather than failing the leg.
pub(crate) fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        return nanos ^ 0x5eed_1234;
    }
    u32::from_be_bytes(b)
}

fn unexpected(what: &str) -> NegotiationError {
    NegotiationError::UnexpectedState(what.into())
}

impl RtpDriver {
    pub fn new(cfg: RtpLegConfig, now: Instant) -> RtpDriver {
        // The one wall-clock read: SR NTP timestamps need an absolute origin. Everything after
        // is derived from the `now` the caller passes.
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let epoch_ntp =
            ((unix.as_secs() + NTP_UNIX_OFFSET) << 32) | ((u64::from(unix.subsec_nanos()) << 32) / 1_000_000_000);
        let ssrc = random_u32().max(1);
        RtpDriver {
            kind: cfg.kind_hint.unwrap_or(ParticipantKind::Rtp),
            cfg,
            phase: Phase::Idle,
            plan: None,
            negotiated: Negotiated { tracks: vec![], slots: vec![] },
            ssrc,
            cname: format!("sb-{:08x}{:08x}", random_u32(), random_u32()),
            session_id: u64::from(random_u32() >> 1),
            sdp_version: 0,
            last_body: None,
            epoch: now,
            epoch_ntp,
            srtp_in: None,
            srtp_out: None,
            latched_rtp: None,
            latched_rtp_seen: now,
            latched_rtcp: None,
            connected: false,
            tx: SendState {
                next_seq: random_u32() as u16,
                seq_offset: 0,
                resync: true,
                last_ts: random_u32(),
                last_ts_at: now,
                clock_rate: 8000,
                packets: 0,
                octets: 0,
                last_sent_at: None,
            },
            stream: PeerStream::default(),
            last_sr: None,
            remote_report: None,
            rtcp_next: None,
            dtmf_rx: DtmfReceiver::default(),
            dtmf_tx: DtmfSender::default(),
            queue: OutputQueue::default(),
            scratch: Vec::with_capacity(1500),
            stats: LegStats::default(),
        }
    }

    /// Counters, the bridge's view of the inbound stream and the peer's last report.
    pub fn stats(&self) -> LegStats {
        let mut s = self.stats.clone();
        s.packets_sent = self.tx.packets;
        s.bytes_sent = self.tx.octets;
        if let Some(r) = self.stream.reception() {
            s.packets_lost = i64::from(r.cumulative_lost());
            let clock = self.plan.as_ref().map_or(8000, |p| p.audio.clock_rate).max(1);
            s.jitter_ms = f64::from(r.jitter()) * 1000.0 / f64::from(clock);
        }
        s.remote = self.remote_report;
        s.queue_overflows = self.queue.overflowed;
        s
    }

    /// The SSRC the bridge sends with.
    pub fn ssrc(&self) -> Ssrc {
        Ssrc(self.ssrc)
    }

    /// NTP time (32.32) at `now`.
    pub(crate) fn ntp(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.epoch);
        let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
        self.epoch_ntp.wrapping_add((d.as_secs() << 32) + frac)
    }

    /// Where RTP goes: the latched source, else the SDP address.
    pub(crate) fn rtp_dest(&self) -> Option<SocketAddr> {
        let plan = self.plan.as_ref()?;
        if self.cfg.symmetric {
            self.latched_rtp.or(plan.remote_rtp)
        } else {
            plan.remote_rtp
        }
    }

    /// Where RTCP goes, and from which local socket.
    pub(crate) fn rtcp_route(&self) -> Option<(SocketAddr, SocketAddr)> {
        let plan = self.plan.as_ref()?;
        if plan.rtcp_mux {
            return self.rtp_dest().map(|to| (self.cfg.rtp_local, to));
        }
        let to = if self.cfg.symmetric { self.latched_rtcp.or(plan.remote_rtcp) } else { plan.remote_rtcp };
        to.map(|to| (self.cfg.rtcp_local, to))
    }

    fn offer(&mut self, now: Instant, text: &str) -> Result<String, NegotiationError> {
        let desc = parse_remote_description(text).map_err(|e| NegotiationError::BadSdp(e.to_string()))?;
        let established = self.plan.as_ref().map(|p| p.kind);
        let plan =
            negotiation::plan_offer(&desc, established.or(self.cfg.kind_hint)).map_err(|e| match (e, established) {
                (NegotiationError::KindMismatch(m), Some(k)) => NegotiationError::KindMismatch(format!(
                    "a re-offer cannot change this {} participant: {m}",
                    k.as_str()
                )),
                (e, _) => e,
            })?;
        negotiation::check_peer(&plan, &self.cfg.peers)?;
        let crypto = match &plan.remote_crypto {
            Some((tag, remote_key)) => {
                // Re-offers keep the bridge's key (and its SRTP index state) unless the suite
                // changes; a changed peer key gets a fresh inbound context.
                let out = match self.srtp_out.take() {
                    Some(o) if o.key().suite == remote_key.suite => o,
                    _ => SrtpOutbound::new(fresh_key(remote_key.suite)?).map_err(|e| unexpected(&e.to_string()))?,
                };
                let value = out.key().attribute_value(*tag);
                self.srtp_out = Some(out);
                self.set_inbound(remote_key)?;
                vec![value]
            }
            None => vec![],
        };
        let answer = self.write_sdp(&plan, &desc, crypto);
        self.apply(plan, now);
        Ok(answer)
    }

    fn set_inbound(&mut self, key: &KeyMaterial) -> Result<(), NegotiationError> {
        if self.srtp_in.as_ref().is_some_and(|i| i.key() == key) {
            return Ok(());
        }
        self.srtp_in = Some(SrtpInbound::new(key.clone()).map_err(|e| unexpected(&e.to_string()))?);
        Ok(())
    }

    fn write_sdp(&mut self, plan: &MediaPlan, desc: &RemoteDescription, crypto: Vec<String>) -> String {
        let codecs: Vec<CodecSpec> = std::iter::once(plan.audio.clone()).chain(plan.telephone_event.clone()).collect();
        let mut audio = Some(AudioLine {
            proto: desc.sections.get(plan.mline).map_or("RTP/AVP", |s| s.proto.as_str()),
            port: self.cfg.rtp_local.port(),
            codecs: &codecs,
            direction: plan.remote_direction.reversed(),
            ptime: plan.ptime,
            rtcp_mux: plan.rtcp_mux,
            rtcp_port: self.cfg.rtcp_local.port(),
            crypto,
            ssrc: self.ssrc,
            cname: &self.cname,
            audio_level_ext: plan.audio_level_ext,
        });
        let sections: Vec<Section<'_>> = desc
            .sections
            .iter()
            .enumerate()
            .map(|(i, s)| match audio.take_if(|_| i == plan.mline) {
                Some(a) => Section::Audio(a),
                None => Section::Rejected {
                    media: &s.media,
                    proto: &s.proto,
                    fmts: if s.fmts.is_empty() { "0" } else { &s.fmts },
                },
            })
            .collect();
        let body = sdp_write::body(self.cfg.advertised_ip, &sections);
        self.finish_sdp(body)
    }

    /// Adds `v=`/`o=`; the version goes up only when the body changed (RFC 3264 §8).
    fn finish_sdp(&mut self, body: String) -> String {
        if self.last_body.as_deref() != Some(body.as_str()) {
            self.sdp_version += 1;
        }
        let text = sdp_write::session(self.session_id, self.sdp_version, self.cfg.advertised_ip, &body);
        self.last_body = Some(body);
        text
    }

    fn answer(&mut self, now: Instant, text: &str) -> Result<(), NegotiationError> {
        let Phase::OfferSent(offer) = &self.phase else {
            return Err(unexpected("an answer arrived, but the bridge made no offer"));
        };
        let desc = parse_remote_description(text).map_err(|e| NegotiationError::BadSdp(e.to_string()))?;
        let plan = negotiation::plan_answer(&desc, offer)?;
        negotiation::check_peer(&plan, &self.cfg.peers)?;
        if let Some((tag, remote_key)) = &plan.remote_crypto {
            // `plan_answer` checked the tag is one the bridge offered with this suite.
            let ours = offer.keys.iter().find(|(t, _)| t == tag).map(|(_, k)| k.clone());
            let ours = ours.ok_or_else(|| unexpected("answered crypto tag was not offered"))?;
            if self.srtp_out.as_ref().is_none_or(|o| *o.key() != ours) {
                self.srtp_out = Some(SrtpOutbound::new(ours).map_err(|e| unexpected(&e.to_string()))?);
            }
            self.set_inbound(remote_key)?;
        }
        self.apply(plan, now);
        Ok(())
    }

    fn create(&mut self) -> Result<String, NegotiationError> {
        let kind = self.plan.as_ref().map(|p| p.kind).or(self.cfg.kind_hint).unwrap_or(ParticipantKind::Rtp);
        let mut keys = Vec::new();
        if kind == ParticipantKind::Srtp {
            for (tag, suite) in offer_suites() {
                let key = match &self.srtp_out {
                    Some(o) if o.key().suite == suite => o.key().clone(),
                    _ => fresh_key(suite)?,
                };
                keys.push((tag, key));
            }
        } else if kind == ParticipantKind::Webrtc {
            return Err(NegotiationError::KindMismatch("an rtp/srtp leg cannot offer for a webrtc participant".into()));
        }
        let codecs = offer_codecs();
        let audio = AudioLine {
            proto: if kind == ParticipantKind::Srtp { "RTP/SAVP" } else { "RTP/AVP" },
            port: self.cfg.rtp_local.port(),
            codecs: &codecs,
            direction: Direction::SendRecv,
            ptime: Some(20),
            rtcp_mux: true,
            rtcp_port: self.cfg.rtcp_local.port(),
            crypto: keys.iter().map(|(tag, k)| k.attribute_value(*tag)).collect(),
            ssrc: self.ssrc,
            cname: &self.cname,
            // A peer that can send levels is told it may, under the id an offer picks freely.
            audio_level_ext: Some(1),
        };
        let body = sdp_write::body(self.cfg.advertised_ip, &[Section::Audio(audio)]);
        let text = self.finish_sdp(body);
        self.phase = Phase::OfferSent(LocalOffer { kind, codecs, keys });
        Ok(text)
    }

    /// Makes `plan` the leg's state: addresses, latches, the negotiated view, timers.
    fn apply(&mut self, plan: MediaPlan, now: Instant) {
        let moved = self.plan.as_ref().is_none_or(|p| p.remote_rtp != plan.remote_rtp);
        if moved {
            // The peer announced a new media address: send there until its packets say otherwise.
            self.latched_rtp = None;
            self.latched_rtcp = None;
        }
        let resumed = self.plan.as_ref().is_some_and(|p| !p.remote_direction.sends()) && plan.remote_direction.sends();
        if resumed {
            // Its silence on hold was no sign of a rebound NAT: the latch holds for the peer's
            // first packets after it resumes as for any other talk.
            self.latched_rtp_seen = now;
        }
        let label = plan.mline.to_string();
        let tracks = plan
            .remote_direction
            .sends()
            .then(|| TrackInfo {
                key: TrackKey(0),
                kind: MediaKind::Audio,
                codec: plan.audio.clone(),
                label: label.clone(),
            })
            .into_iter()
            .collect();
        let slot = SlotInfo {
            key: SlotKey(0),
            kind: MediaKind::Audio,
            label,
            codecs: vec![plan.audio.clone()],
            ssrc: Ssrc(self.ssrc),
            telephone_event: plan.telephone_event.as_ref().map(|t| t.pt),
            active: plan.remote_receives(),
            ptime_ms: plan.ptime,
        };
        self.negotiated = Negotiated { tracks, slots: vec![slot] };
        self.kind = plan.kind;
        self.tx.clock_rate = plan.audio.clock_rate;
        self.plan = Some(plan);
        self.phase = Phase::Active;
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }
}

fn fresh_key(suite: crate::sdes::SrtpSuite) -> Result<KeyMaterial, NegotiationError> {
    KeyMaterial::random(suite).map_err(|e| unexpected(&e.to_string()))
}

impl Driver for RtpDriver {
    fn kind(&self) -> ParticipantKind {
        self.kind
    }

    fn negotiate(&mut self, now: Instant, sdp: SdpInput<'_>) -> Result<Option<String>, NegotiationError> {
        if self.is_closed() {
            return Err(unexpected("the participant is closed"));
        }
        let result = match sdp {
            SdpInput::Offer(text) => self.offer(now, text).map(Some),
            SdpInput::Answer(text) => self.answer(now, text).map(|()| None),
        };
        if result.is_ok() && self.rtcp_next.is_none() {
            // RFC 3550 §6.2: the first report after half an interval.
            self.rtcp_next = Some(now + RTCP_INTERVAL / 2);
        }
        result
    }

    fn create_offer(&mut self, _now: Instant) -> Result<String, NegotiationError> {
        if self.is_closed() {
            return Err(unexpected("the participant is closed"));
        }
        self.create()
    }

    fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    fn handle_receive(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr, data: &[u8]) {
        self.receive(now, src, dst, data);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.timeout(now);
    }

    fn write_media(&mut self, now: Instant, slot: SlotKey, meta: &RtpMeta, payload: &[u8]) -> Result<(), WriteError> {
        self.write(now, slot, meta, payload)
    }

    fn request_keyframe(&mut self, _track: TrackKey, _kind: KeyframeKind) {
        // Audio only: there are no keyframes to ask for.
    }

    fn send_dtmf(&mut self, now: Instant, digits: &str, duration_ms: u32) -> Result<(), WriteError> {
        self.dtmf(now, digits, duration_ms)
    }

    fn poll(&mut self, now: Instant, out: &mut dyn Output) -> Instant {
        self.queue.drain(out);
        [self.rtcp_next, self.dtmf_tx.deadline(), self.dtmf_rx.deadline()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + IDLE)
    }

    fn kernel_leg(&self) -> Option<KernelLeg> {
        RtpDriver::kernel_leg(self)
    }

    fn kernel_received(&mut self, counts: &KernelCounts) {
        RtpDriver::kernel_received(self, counts)
    }

    fn kernel_sent(&mut self, counts: &KernelCounts, seq: u16, ts: u32) {
        RtpDriver::kernel_sent(self, counts, seq, ts)
    }

    fn close(&mut self, now: Instant) {
        if !self.is_closed() {
            self.send_rtcp(now, true);
            self.phase = Phase::Closed;
            self.rtcp_next = None;
            self.dtmf_tx = DtmfSender::default();
            self.dtmf_rx = DtmfReceiver::default();
        }
    }
}
