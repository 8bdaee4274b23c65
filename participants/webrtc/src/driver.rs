//! [`WebrtcDriver`]: one WebRTC participant as a sans-IO [`Driver`] on a str0m [`Rtc`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::error::SdpError;
use str0m::format::{Codec as S0Codec, FormatParams};
use str0m::media::{Frequency, KeyframeRequestKind, MediaKind as S0Kind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output as S0Output, PacerReason, Reason, Rtc, RtcError};
use switchboard_driver::dtmf::DtmfReceiver;
use switchboard_driver::{
    DisconnectReason, Driver, DriverEvent, DropReason, KeyframeKind, Negotiated, NegotiationError, Output,
    ParticipantKind, Pt, ReceptionReport, RtpMeta, SdpInput, SeqNo, SlotKey, Ssrc, TrackKey, WriteError,
};

use crate::error::{OfferError, Refusal};
use crate::negotiated::{self, TeleFormat};
use crate::offer::OfferScan;

/// How often str0m sums up each stream, for the viewers' loss.
const STATS_INTERVAL: Duration = Duration::from_secs(2);

/// How long the pacer's queue refresh may wait for the session's next write or receive (see
/// `poll`). Longer than a 20 ms audio packet's or a 30 fps frame's interval, so a steady stream
/// always gets there first; short enough that anything else str0m had due in the meantime (an
/// RTCP report, a stats round) is barely late when the session goes quiet.
const PACER_SLACK: Duration = Duration::from_millis(50);

/// One WebRTC participant: ICE, DTLS-SRTP and raw RTP in and out, on str0m.
///
/// The bridge only answers offers. Track and slot keys are m-line indices, so they stay stable
/// across renegotiation.
pub struct WebrtcDriver {
    rtc: Rtc,
    /// The last accepted offer's layout: m-line index to mid, raw fmtp strings.
    scan: OfferScan,
    negotiated: Negotiated,
    /// Telephone-event formats of the client's tracks, and a digit receiver per track that has
    /// sent one (a browser's `RTCDTMFSender`).
    tele: Vec<TeleFormat>,
    dtmf_rx: Vec<(TrackKey, DtmfReceiver)>,
    /// Events raised outside `poll` (which alone has an [`Output`]), handed out by the next `poll`.
    pending: VecDeque<DriverEvent>,
    /// The last SSRC seen per track, for keyframe requests on streams str0m keys by rid.
    rx_ssrc: Vec<(TrackKey, str0m::rtp::Ssrc)>,
    /// Latest time seen, for `accepts`, which the trait gives no clock.
    last_now: Instant,
    /// str0m must see time before its next output: `write_media` queued packets it only releases
    /// then, or its pacer asked to refresh its view of the send queues.
    needs_tick: bool,
    closing: bool,
    /// Why the session ended, once known; reported once.
    ended: Option<DisconnectReason>,
    ended_reported: bool,
    /// The slot and payload type of the last accepted `write_media`, with what it resolved to.
    /// A fan-out writes the same slot and type packet after packet, and the slot list and its
    /// codecs are heap blocks of their own: looking them up cost two cache misses a packet, about
    /// 3 % of the S1 fan-out's CPU (docs/benchmarks.md, ninth round). Cleared whenever
    /// `negotiated` or `scan` change.
    last_write: Option<LastWrite>,
    /// The session's local ICE ufrag, read after each accepted offer (an ICE restart changes
    /// it): the runtime's index for the shared port.
    ufrag: String,
}

#[derive(Clone, Copy)]
struct LastWrite {
    slot: SlotKey,
    pt: switchboard_driver::Pt,
    mid: Mid,
    nackable: bool,
}

impl WebrtcDriver {
    /// A driver that will answer on the given local host candidates (the shared UDP socket's
    /// addresses). Addresses str0m refuses as candidates (unspecified, multicast) are skipped.
    pub fn new(now: Instant, candidates: &[SocketAddr]) -> Self {
        crate::init();
        let mut config = Rtc::builder()
            // Full ICE: libnice (GStreamer's webrtcbin) sends no consent checks once connected,
            // and str0m's lite agent drops a pair after 15 s without one (docs/interop.md).
            .set_ice_lite(false)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            // The viewers' loss (from their receiver reports) reaches the mixer, whose Opus mixes
            // add FEC for it. A stats event walks every stream, so not often; the room keeps its
            // own counters.
            .set_stats_interval(Some(STATS_INTERVAL));
        // telephone-event at both audio clocks a browser pairs it with (Opus 48 kHz, G.711 8 kHz),
        // numbered as Chromium numbers them; an answer takes the offer's numbers anyway.
        for (pt, clock) in [(110u8, Frequency::FORTY_EIGHT_KHZ), (126, Frequency::EIGHT_KHZ)] {
            config.codec_config().add_config(pt.into(), None, S0Codec::Tele, clock, Some(1), FormatParams::default());
        }
        let mut rtc = config.build(now);
        for addr in candidates {
            match Candidate::host(*addr, "udp") {
                Ok(c) => {
                    if rtc.add_local_candidate(c).is_none() {
                        tracing::warn!("str0m refused a local candidate");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "unusable local candidate"),
            }
        }
        WebrtcDriver {
            rtc,
            scan: OfferScan::default(),
            negotiated: Negotiated { tracks: Vec::new(), slots: Vec::new() },
            tele: Vec::new(),
            dtmf_rx: Vec::new(),
            pending: VecDeque::new(),
            rx_ssrc: Vec::new(),
            last_now: now,
            needs_tick: false,
            closing: false,
            ended: None,
            ended_reported: false,
            last_write: None,
            ufrag: String::new(),
        }
    }

    fn accept_offer(&mut self, sdp: &str) -> Result<String, OfferError> {
        let normalized = crate::normalize::normalize(sdp);
        let sdp: &str = &normalized;
        // str0m first: its reasons are the ones clients have seen for garbage.
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| OfferError::Unparseable(parse_error(&e)))?;
        let scan = OfferScan::parse(sdp);
        if scan.lines.is_empty() {
            return Err(OfferError::NoMLines);
        }
        // str0m disconnects the session for an offer without a fingerprint; refuse it first so a
        // bad offer leaves the driver usable.
        if !scan.has_fingerprint {
            return Err(OfferError::NoFingerprint);
        }
        // The bridge's connectivity checks carry `<client ufrag>:<own 16-byte ufrag>` as their STUN
        // USERNAME, and str0m's ICE agent panics when writing one over 128 bytes, so the session
        // would fail at its first check. RFC 8839 allows 256; real clients send 4 to 32.
        if scan.longest_ufrag > MAX_UFRAG {
            return Err(OfferError::UfragTooLong { len: scan.longest_ufrag, max: MAX_UFRAG });
        }
        if !scan.has_supported_codec() {
            return Err(OfferError::NoCommonCodec { offered: scan.offered_codecs() });
        }
        if let Some(mid) = scan.repeated_mid() {
            return Err(OfferError::RepeatedMid(mid));
        }
        if let Some(conflict) = crate::payload_types::conflict(&scan, &self.scan) {
            return Err(conflict.into());
        }
        self.check_kept_formats(&scan)?;
        let answer = self.rtc.sdp_api().accept_offer(offer).map_err(|e| match e {
            RtcError::RemoteSdp(msg) => OfferError::Refused(msg),
            other => OfferError::Refused(other.to_string()),
        })?;
        (self.negotiated, self.tele) = negotiated::build(&mut self.rtc, &scan, &self.negotiated);
        self.ufrag = self.rtc.direct_api().local_ice_credentials().ufrag;
        self.scan = scan;
        self.last_write = None;
        if !negotiated::any_media_enabled(&self.rtc, &self.scan) {
            // Names matched but str0m took no format (e.g. an H.264 profile it lacks).
            return Err(OfferError::NoCommonCodec { offered: self.scan.offered_codecs() });
        }
        Ok(answer.to_sdp_string())
    }

    /// str0m fixes an m-line's formats at its first negotiation and answers every reoffer with
    /// them, so a reoffer that drops one would get an answer naming a format the offer no longer
    /// has, and the bridge would go on sending it. Refuse it, before the session changes.
    fn check_kept_formats(&self, scan: &OfferScan) -> Result<(), OfferError> {
        for line in scan.lines.iter().filter(|l| l.is_media() && !l.rejected) {
            let Some(media) = line.mid.and_then(|mid| self.rtc.media(mid)) else {
                continue;
            };
            if media.disabled() {
                continue;
            }
            let Some(pt) = media.remote_pts().iter().find(|pt| !line.formats.contains(pt)) else {
                continue;
            };
            let name = self.rtc.codec_config().find(|p| p.pt() == *pt).map(|p| p.spec().codec.to_string());
            return Err(OfferError::DroppedFormat {
                mid: media.mid(),
                pt: **pt,
                codec: name.unwrap_or_else(|| "unknown".to_owned()),
            });
        }
        Ok(())
    }

    fn track_of(&mut self, ssrc: str0m::rtp::Ssrc) -> Option<TrackKey> {
        let mid = self.rtc.direct_api().stream_rx(&ssrc)?.mid();
        let key = TrackKey(self.scan.index_of(mid)?);
        self.negotiated.tracks.iter().any(|t| t.key == key).then_some(key)
    }

    fn on_rtp(&mut self, p: RtpPacket, out: &mut dyn Output) {
        let ssrc = p.header.ssrc;
        let Some(track) = self.track_of(ssrc) else {
            out.event(DriverEvent::Dropped { reason: DropReason::NoRoute });
            return;
        };
        match self.rx_ssrc.iter_mut().find(|(t, _)| *t == track) {
            Some(entry) => entry.1 = ssrc,
            None => self.rx_ssrc.push((track, ssrc)),
        }
        let pt = Pt(*p.header.payload_type);
        if let Some(f) = self.tele.iter().find(|f| f.track == track && f.pt == pt).copied() {
            self.on_telephone_event(&p, f, out);
            return;
        }
        let meta = RtpMeta {
            pt,
            seq: SeqNo(*p.seq_no),
            timestamp: p.header.timestamp,
            marker: p.header.marker,
            ssrc: Ssrc(*ssrc),
            // str0m keeps the level as negative dBov; the bridge keeps RFC 6464's 0..=127.
            audio_level: p.header.ext_vals.audio_level.map(|l| l.saturating_neg()),
        };
        out.media(track, &meta, &p.payload);
    }

    /// RFC 4733 digits become `Dtmf` events, reported once each; they are never media (the
    /// room would forward them under the audio codec's payload type).
    fn on_telephone_event(&mut self, p: &RtpPacket, f: TeleFormat, out: &mut dyn Output) {
        let i = self.dtmf_rx.iter().position(|(t, _)| *t == f.track).unwrap_or_else(|| {
            self.dtmf_rx.push((f.track, DtmfReceiver::default()));
            self.dtmf_rx.len() - 1
        });
        let rx = &mut self.dtmf_rx[i].1;
        let emit = |(digit, duration_ms)| out.event(DriverEvent::Dtmf { digit, duration_ms });
        if rx.on_packet(p.timestamp, p.header.timestamp, &p.payload, f.clock_rate, emit).is_err() {
            out.event(DriverEvent::Dropped { reason: DropReason::Malformed });
        }
    }

    fn on_event(&mut self, e: Event, out: &mut dyn Output) {
        match e {
            Event::Connected => out.event(DriverEvent::Connected),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.end(DisconnectReason::IceFailed);
            }
            // The peer closed DTLS; str0m drains its own close and then goes dead.
            Event::Closed => self.end(DisconnectReason::Closed),
            Event::RtpPacket(p) => self.on_rtp(p, out),
            Event::MediaEgressStats(stats) => self.on_egress_stats(&stats, out),
            Event::KeyframeRequest(req) => {
                let Some(index) = self.scan.index_of(req.mid) else {
                    return;
                };
                let kind = match req.kind {
                    KeyframeRequestKind::Pli => KeyframeKind::Pli,
                    KeyframeRequestKind::Fir => KeyframeKind::Fir,
                };
                out.event(DriverEvent::KeyframeRequest { slot: SlotKey(index), kind });
            }
            Event::MediaAdded(_) | Event::MediaChanged(_) => {
                (self.negotiated, self.tele) = negotiated::build(&mut self.rtc, &self.scan, &self.negotiated);
                self.last_write = None;
            }
            _ => {}
        }
    }

    fn end(&mut self, reason: DisconnectReason) {
        self.ended.get_or_insert(reason);
    }

    /// The browser's receiver reports on one of its slots, as str0m sums them up (about once a
    /// second): loss is `None` when fewer than two reports arrived in the interval, RTT until
    /// one echoed a sender report, jitter until the first report.
    fn on_egress_stats(&self, stats: &str0m::stats::MediaEgressStats, out: &mut dyn Output) {
        let Some(index) = self.scan.index_of(stats.mid) else { return };
        let slot = SlotKey(index);
        // The report's jitter is in the stream's RTP clock: the slot's preferred codec's, which is
        // what the bridge sends it unless a route picked another of its codecs (same clock for
        // every audio codec but G.711/G.722 against Opus, and for every video codec).
        let clock = self.negotiated.slots.iter().find(|s| s.key == slot).and_then(|s| s.codecs.first());
        let jitter = match (&stats.remote, clock) {
            (Some(remote), Some(c)) if c.clock_rate > 0 => Some(remote.jitter as f32 / c.clock_rate as f32),
            _ => None,
        };
        let report = ReceptionReport { loss: stats.loss, jitter, rtt: stats.rtt.map(|d| d.as_secs_f32()) };
        if report != ReceptionReport::default() {
            out.event(DriverEvent::ReceiverReport { slot, report });
        }
    }

    /// Checks a write's slot and payload type against the negotiation, and remembers the answer
    /// for the writes that follow (`last_write`).
    fn resolve_write(&mut self, slot: SlotKey, pt: switchboard_driver::Pt) -> Result<LastWrite, WriteError> {
        let info = self.negotiated.slots.iter().find(|s| s.key == slot).ok_or(WriteError::NoSuchSlot)?;
        if !info.codecs.iter().any(|c| c.pt == pt) {
            return Err(WriteError::PayloadType(pt.0));
        }
        let nackable = info.kind == switchboard_driver::MediaKind::Video;
        let mid = negotiated::mid_at(&self.scan, slot.0).ok_or(WriteError::NoSuchSlot)?;
        let w = LastWrite { slot, pt, mid, nackable };
        self.last_write = Some(w);
        Ok(w)
    }
}

impl Driver for WebrtcDriver {
    fn kind(&self) -> ParticipantKind {
        ParticipantKind::Webrtc
    }

    fn negotiate(&mut self, now: Instant, sdp: SdpInput<'_>) -> Result<Option<String>, NegotiationError> {
        self.last_now = self.last_now.max(now);
        match sdp {
            SdpInput::Offer(sdp) => self.accept_offer(sdp).map(Some).map_err(NegotiationError::from),
            SdpInput::Answer(_) => Err(OfferError::AnswerUnexpected.into()),
        }
    }

    fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    fn ice_ufrag(&self) -> Option<String> {
        (!self.ufrag.is_empty()).then(|| self.ufrag.clone())
    }

    fn accepts(&self, src: SocketAddr, dst: SocketAddr, data: &[u8]) -> bool {
        let Ok(recv) = Receive::new(Protocol::Udp, src, dst, data) else {
            return false;
        };
        self.rtc.accepts(&Input::Receive(self.last_now, recv))
    }

    fn handle_receive(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr, data: &[u8]) {
        self.last_now = self.last_now.max(now);
        let recv = match Receive::new(Protocol::Udp, src, dst, data) {
            Ok(r) => r,
            Err(_) => {
                self.pending.push_back(DriverEvent::Dropped { reason: DropReason::Malformed });
                return;
            }
        };
        // str0m drops bad RTP/RTCP/SRTP silently; what errors here is mostly a DTLS record it
        // could not take. One bad datagram must not end the session, so count it and go on.
        match self.rtc.handle_input(Input::Receive(now, recv)) {
            // str0m runs its own timeout after every receive, so whatever waited for time (queued
            // writes, the pacer's refresh, a NACK's resends) has had it; another on the next poll
            // would repeat the same work.
            Ok(()) => self.needs_tick = false,
            Err(e) => {
                tracing::debug!(error = %e, "datagram refused");
                self.pending.push_back(DriverEvent::Dropped { reason: DropReason::Malformed });
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.needs_tick = false;
        for (_, rx) in &mut self.dtmf_rx {
            // A digit whose end packets were all lost is over after a second without news.
            rx.on_timeout(now, |(digit, duration_ms)| self.pending.push_back(DriverEvent::Dtmf { digit, duration_ms }));
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::warn!(error = %e, "timeout handling failed; closing");
            self.rtc.disconnect();
            self.end(DisconnectReason::DtlsFailed);
        }
    }

    fn write_media(&mut self, now: Instant, slot: SlotKey, meta: &RtpMeta, payload: &[u8]) -> Result<(), WriteError> {
        self.last_now = self.last_now.max(now);
        let LastWrite { mid, nackable, .. } = match self.last_write {
            Some(w) if w.slot == slot && w.pt == meta.pt => w,
            _ => self.resolve_write(slot, meta.pt)?,
        };
        if !self.rtc.is_alive() || self.closing {
            return Err(Refusal::Closed.into());
        }
        // str0m's send queue has no bound and only drains once SRTP is up; queueing before then
        // would grow without limit and burst stale media on connect.
        if !self.rtc.is_connected() {
            return Err(Refusal::NotConnected.into());
        }
        let mut api = self.rtc.direct_api();
        let stream = api.stream_tx_by_mid(mid, None).ok_or(WriteError::from(Refusal::NoSendStream))?;
        let mut ext = ExtensionValues::default();
        if let Some(level) = meta.audio_level {
            ext.audio_level = Some(-(level.unsigned_abs().min(127) as i8));
            // str0m writes the level only with a voice-activity flag; RtpMeta has none to carry.
            ext.voice_activity = Some(false);
        }
        // why: str0m takes the payload as an owned Arc<[u8]>; this copy is the one per-packet
        // allocation on the send path, and it lives inside str0m's API.
        let payload: Arc<[u8]> = Arc::from(payload);
        let write = RtpWrite::new(meta.pt.0.into(), meta.seq.0.into(), meta.timestamp, now, payload)
            .marker(meta.marker)
            .ext_vals(ext)
            // Audio is not worth resending; video is, and str0m answers NACKs from its cache.
            .nackable(nackable);
        stream.write_rtp(write);
        self.needs_tick = true;
        Ok(())
    }

    fn request_keyframe(&mut self, track: TrackKey, kind: KeyframeKind) {
        let Some(mid) = negotiated::mid_at(&self.scan, track.0) else {
            return;
        };
        if self.rtc.media(mid).is_none_or(|m| m.kind() != S0Kind::Video) {
            return;
        }
        let kind = match kind {
            KeyframeKind::Pli => KeyframeRequestKind::Pli,
            KeyframeKind::Fir => KeyframeRequestKind::Fir,
        };
        let last_ssrc = self.rx_ssrc.iter().find(|(t, _)| *t == track).map(|(_, s)| *s);
        let mut api = self.rtc.direct_api();
        if let Some(rx) = api.stream_rx_by_mid(mid, None) {
            rx.request_keyframe(kind);
        } else if let Some(rx) = last_ssrc.and_then(|s| api.stream_rx(&s)) {
            rx.request_keyframe(kind);
        }
        // str0m writes the request at its next timeout, which may be a second away; the poll
        // that follows this call is sooner, and a viewer waits on the keyframe.
        self.needs_tick = true;
    }

    fn poll(&mut self, now: Instant, out: &mut dyn Output) -> Instant {
        self.last_now = self.last_now.max(now);
        while let Some(e) = self.pending.pop_front() {
            out.event(e);
        }
        if self.needs_tick {
            self.handle_timeout(now);
        }
        let next = loop {
            match self.rtc.poll_output() {
                // str0m's null pacer (no bandwidth estimation) asks for a timeout the moment it has
                // sent anything, only to refresh its view of the send queues. Those fill only by
                // our writes, each followed by a poll that feeds time first, and by the resends a
                // received NACK queues, after which str0m runs its timeout itself. Taken as asked,
                // it was a second full `Input::Timeout` per forwarded packet for every subscriber
                // (12 % of the fan-out profile, docs/benchmarks.md). `Reason` is not stable API:
                // str0m is pinned, and a rename fails the build here.
                Ok(S0Output::Timeout(t))
                    if t <= now && self.rtc.last_timeout_reason() == Reason::Pacer(PacerReason::Handle) =>
                {
                    self.needs_tick = true;
                    break now + PACER_SLACK;
                }
                Ok(S0Output::Timeout(t)) => break t,
                Ok(S0Output::Transmit(t)) => out.transmit(t.source, t.destination, &t.contents),
                Ok(S0Output::Event(e)) => self.on_event(e, out),
                Err(e) => {
                    // str0m's state after a failed poll is unknown (a failed DTLS handshake or a
                    // fingerprint mismatch); its own examples drop the peer, and so do we.
                    tracing::warn!(error = %e, "session failed");
                    let reason = match e {
                        RtcError::Ice(_) => DisconnectReason::IceFailed,
                        _ => DisconnectReason::DtlsFailed,
                    };
                    self.rtc.disconnect();
                    self.end(reason);
                }
            }
        };
        if !self.rtc.is_alive() {
            self.end(if self.closing { DisconnectReason::Closed } else { DisconnectReason::DtlsFailed });
        }
        if let (Some(reason), false) = (self.ended, self.ended_reported) {
            self.ended_reported = true;
            out.event(DriverEvent::Disconnected { reason });
        }
        self.dtmf_rx.iter().filter_map(|(_, rx)| rx.deadline()).fold(next, Instant::min)
    }

    fn close(&mut self, _now: Instant) {
        self.closing = true;
        self.end(DisconnectReason::Closed);
        // An orderly close sends RTCP BYE and DTLS close_notify, which `poll` drains. Before DTLS
        // is up there is nothing to tell the peer.
        if !self.rtc.is_connected() || self.rtc.close().is_err() {
            self.rtc.disconnect();
        }
    }
}

/// 128 bytes of STUN USERNAME, less the colon and the bridge's own 16-byte ufrag.
const MAX_UFRAG: usize = 128 - 1 - 16;

/// str0m's parse errors span lines and carry a memory address (`PointerOffset(0x...)`) that means
/// nothing to whoever sent the SDP; keep the rest on one line.
fn parse_error(e: &SdpError) -> String {
    let parts: Vec<String> = e
        .to_string()
        .lines()
        .map(|l| match (l.find(" at PointerOffset("), l.rfind(')')) {
            (Some(start), Some(end)) if end > start => format!("{}{}", &l[..start], &l[end + 1..]),
            _ => l.to_owned(),
        })
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    parts.join("; ")
}
