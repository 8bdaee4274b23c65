//! The receive path: demultiplexing, source checks and latching, SRTP, RTP to the room, RFC 4733
//! events to the DTMF receiver, and the peer's RTCP reports.

use crate::config::RemoteReport;
use crate::leg::RtpDriver;
use crate::rtcp::{parse_rtcp, ReportBlock, RtcpPacket};
use crate::rtp_header::{audio_level, looks_like_rtcp, RtpHeader};
use crate::srtp::{rtp_overhead, SrtpError};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_driver::{
    DriverEvent, DropReason, ParticipantKind, Pt, ReceptionReport, RtpMeta, SeqNo, SlotKey, Ssrc, TrackKey,
};

/// How long the source a plain-RTP leg latched to must have been silent before a packet from
/// another address may take the latch. Plain RTP proves nothing about its sender: without this,
/// anyone who guessed the port could take over the call's media with one packet (RTP Bleed). A
/// NAT that rebinds mid-call costs at most this long of one-way audio.
pub(crate) const RELATCH_AFTER: Duration = Duration::from_secs(1);

fn drop_reason(e: &SrtpError) -> DropReason {
    match e {
        SrtpError::Auth => DropReason::SrtpAuth,
        SrtpError::Replay => DropReason::Replay,
        _ => DropReason::Malformed,
    }
}

impl RtpDriver {
    fn dropped(&mut self, reason: DropReason) {
        self.queue.event(DriverEvent::Dropped { reason });
    }

    pub(crate) fn receive(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr, data: &[u8]) {
        // After close, nobody listens.
        if self.is_closed() {
            return;
        }
        // Before the peer's SDP (a late-offer leg still waiting for its answer) nothing says
        // who the peer is, so nothing that arrives is known to be its: dropped as a stranger's,
        // it cannot keep the leg alive.
        if self.plan.is_none() {
            return self.dropped(DropReason::UnknownSource);
        }
        // A forbidden source is never taken, so it can never be latched to and sent back to.
        if !self.cfg.peers.permits(src) {
            return self.dropped(DropReason::UnknownSource);
        }
        let on_rtcp_port = dst.port() == self.cfg.rtcp_local.port() && dst.port() != self.cfg.rtp_local.port();
        if on_rtcp_port || looks_like_rtcp(data) {
            self.receive_rtcp(now, src, data);
        } else {
            self.receive_rtp(now, src, data);
        }
    }

    /// With symmetric RTP off, only the SDP address may send.
    fn source_allowed(&self, src: SocketAddr, rtcp: bool) -> bool {
        if self.cfg.symmetric {
            return true;
        }
        let Some(plan) = &self.plan else { return false };
        let expected = if rtcp { plan.remote_rtcp } else { plan.remote_rtp };
        expected == Some(src)
    }

    /// With symmetric RTP on, whether a plain-RTP packet from `src` may be taken (and move the
    /// latch): the latched source, the SDP's address, anyone before the first latch, and anyone
    /// once the latched source has been silent for `RELATCH_AFTER` while the peer said it sends.
    /// A peer on hold (`recvonly` or `inactive`) is silent by its own word, which says nothing of
    /// its NAT, so then the latch stays. An SRTP packet proves its sender by authenticating, so
    /// any source may send one.
    fn rtp_source_ok(&self, now: Instant, src: SocketAddr) -> bool {
        if !self.cfg.symmetric || self.kind == ParticipantKind::Srtp {
            return true;
        }
        let Some(plan) = &self.plan else { return false };
        match self.latched_rtp {
            None => true,
            Some(l) if l == src => true,
            Some(_) => {
                plan.remote_rtp == Some(src)
                    || (plan.remote_direction.sends()
                        && now.saturating_duration_since(self.latched_rtp_seen) >= RELATCH_AFTER)
            }
        }
    }

    /// The same for plain RTCP, which comes every few seconds, so silence says nothing: it is
    /// taken from the latched RTCP source, the SDP's RTCP (or, muxed, RTP) address, or the host
    /// the media is latched to (a NAT keeps the host and moves the port), or before that the
    /// SDP's host.
    fn rtcp_source_ok(&self, src: SocketAddr) -> bool {
        if !self.cfg.symmetric || self.kind == ParticipantKind::Srtp || self.latched_rtcp == Some(src) {
            return true;
        }
        let Some(plan) = &self.plan else { return false };
        if plan.remote_rtcp == Some(src) || (plan.rtcp_mux && plan.remote_rtp == Some(src)) {
            return true;
        }
        // Before any media has latched, the host the SDP named stands in for the latched one.
        // RTCP from any other host is a stranger's: taking it would let anyone who guessed the
        // port keep the leg alive, and pick where its reports go, with a forged report a second.
        let host = self.latched_rtp.or(plan.remote_rtp);
        host.is_some_and(|h| h.ip() == src.ip())
    }

    fn mark_valid(&mut self, now: Instant, src: SocketAddr, rtcp: bool) {
        if self.cfg.symmetric {
            let mux = self.plan.as_ref().is_some_and(|p| p.rtcp_mux);
            // Only media moves the media latch: RTCP is easier to forge and never carries audio.
            if !rtcp {
                self.latched_rtp = Some(src);
                self.latched_rtp_seen = now;
            }
            if rtcp && !mux {
                self.latched_rtcp = Some(src);
            }
        }
        if !self.connected {
            self.connected = true;
            self.queue.event(DriverEvent::Connected);
        }
    }

    fn receive_rtp(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        if !self.source_allowed(src, false) || !self.rtp_source_ok(now, src) {
            return self.dropped(DropReason::UnknownSource);
        }
        let Ok(header) = RtpHeader::parse_header_only(data) else {
            return self.dropped(DropReason::Malformed);
        };
        let overhead = self.srtp_in.as_ref().map_or(0, |i| rtp_overhead(i.key().suite));
        if data.len() < header.header_len + overhead {
            return self.dropped(DropReason::Malformed);
        }
        let mut plain = std::mem::take(&mut self.scratch);
        plain.clear();
        let decrypted = match &mut self.srtp_in {
            Some(ctx) => ctx.unprotect_rtp(data, &mut plain),
            None if self.kind == switchboard_driver::ParticipantKind::Srtp => Err(SrtpError::Auth),
            None => {
                plain.extend_from_slice(data);
                Ok(())
            }
        };
        match decrypted {
            Ok(()) => self.accept_rtp(now, src, &plain),
            Err(e) => self.dropped(drop_reason(&e)),
        }
        self.scratch = plain;
    }

    fn accept_rtp(&mut self, now: Instant, src: SocketAddr, packet: &[u8]) {
        let Ok(header) = RtpHeader::parse(packet) else {
            return self.dropped(DropReason::Malformed);
        };
        let Some(plan) = &self.plan else { return };
        let te = plan.telephone_event.as_ref().filter(|t| t.pt.0 == header.pt).map(|t| t.clock_rate);
        let audio_clock = (plan.audio.pt.0 == header.pt).then_some(plan.audio.clock_rate);
        if te.is_none() && audio_clock.is_none() {
            // A packet that cannot latch says nothing of who sent it: from anyone but the
            // latched source or the SDP's address (an unlatched leg takes any sender's first
            // valid packet), it is a stranger's, and must not count as the peer's activity. An
            // SRTP packet that authenticated came from the key's holder.
            let from_peer =
                self.kind == ParticipantKind::Srtp || self.latched_rtp == Some(src) || plan.remote_rtp == Some(src);
            return self.dropped(match from_peer {
                true => DropReason::UnknownPayloadType,
                false => DropReason::UnknownSource,
            });
        }
        // 0 to 127 fits an i8; the mixer skips decoding an input whose level keeps it out.
        let level = plan.audio_level_ext.and_then(|id| audio_level(packet, &header, id)).map(|l| l as i8);
        let payload = &packet[header.header_len..header.payload_end];
        // A stream the peer has left, or an unconfirmed jump in sequence number (`stream.rs`).
        let Some(seq) = self.stream.take(now, header.ssrc, header.seq) else {
            return self.dropped(DropReason::UnknownSource);
        };
        self.mark_valid(now, src, false);
        self.stats.packets_received += 1;
        self.stats.bytes_received += payload.len() as u64;

        if let (Some(clock), Some(reception)) = (audio_clock, self.stream.reception_mut()) {
            let elapsed = now.saturating_duration_since(self.epoch);
            let arrival = elapsed.as_secs() * u64::from(clock)
                + u64::from(elapsed.subsec_nanos()) * u64::from(clock) / 1_000_000_000;
            reception.update_jitter(header.timestamp, arrival);
        }

        if let Some(clock) = te {
            let mut digits = Vec::new();
            let res = self.dtmf_rx.on_packet(now, header.timestamp, payload, clock, |d| digits.push(d));
            if res.is_err() {
                self.dropped(DropReason::Malformed);
            }
            for (digit, duration_ms) in digits {
                self.stats.dtmf_received += 1;
                self.queue.event(DriverEvent::Dtmf { digit, duration_ms });
            }
            return;
        }
        // Media while the remote only receives (or is inactive) is still passed on: the room
        // decides what to do with a track it did not expect.
        let meta = RtpMeta {
            pt: Pt(header.pt),
            seq: SeqNo(seq),
            timestamp: header.timestamp,
            marker: header.marker,
            ssrc: Ssrc(header.ssrc),
            audio_level: level,
        };
        let mut buf = self.queue.buffer();
        buf.extend_from_slice(payload);
        self.queue.media(TrackKey(0), meta, buf);
    }

    fn receive_rtcp(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        if !self.source_allowed(src, true) {
            let mux = self.plan.as_ref().is_some_and(|p| p.rtcp_mux);
            if !(mux && self.source_allowed(src, false)) {
                return self.dropped(DropReason::UnknownSource);
            }
        }
        if !self.rtcp_source_ok(src) {
            return self.dropped(DropReason::UnknownSource);
        }
        let mut plain = std::mem::take(&mut self.scratch);
        plain.clear();
        let decrypted = match &mut self.srtp_in {
            Some(ctx) => ctx.unprotect_rtcp(data, &mut plain),
            None if self.kind == switchboard_driver::ParticipantKind::Srtp => Err(SrtpError::Auth),
            None => {
                plain.extend_from_slice(data);
                Ok(())
            }
        };
        match decrypted
            .map_err(|e| drop_reason(&e))
            .and_then(|()| parse_rtcp(&plain).map_err(|_| DropReason::Malformed))
        {
            Ok(packets) => {
                self.mark_valid(now, src, true);
                for p in packets {
                    self.take_report(now, p);
                }
            }
            Err(reason) => self.dropped(reason),
        }
        self.scratch = plain;
    }

    fn take_report(&mut self, now: Instant, packet: RtcpPacket) {
        let blocks = match packet {
            RtcpPacket::SenderReport { info, blocks, .. } => {
                self.last_sr = Some(((info.ntp >> 16) as u32, now));
                blocks
            }
            RtcpPacket::ReceiverReport { blocks, .. } => blocks,
            RtcpPacket::Bye { .. } | RtcpPacket::Other { .. } => return,
        };
        if let Some(b) = blocks.iter().find(|b| b.ssrc == self.ssrc) {
            let report = self.remote_report_from(now, b);
            // The room passes the loss on to the mixer when the leg hears a mix (Opus FEC), and
            // all of it to the quality metrics.
            let reception = ReceptionReport {
                loss: Some(report.fraction_lost as f32),
                jitter: Some((report.jitter_ms / 1e3) as f32),
                rtt: report.rtt_ms.map(|ms| (ms / 1e3) as f32),
            };
            self.queue.event(DriverEvent::ReceiverReport { slot: SlotKey(0), report: reception });
            self.remote_report = Some(report);
        }
    }

    fn remote_report_from(&self, now: Instant, b: &ReportBlock) -> RemoteReport {
        let clock = self.plan.as_ref().map_or(8000, |p| p.audio.clock_rate).max(1);
        let rtt_ms = (b.lsr != 0).then(|| {
            // RFC 3550 §6.4.1: RTT = A - LSR - DLSR, in 1/65536 s of the NTP middle bits.
            let a = (self.ntp(now) >> 16) as u32;
            let rtt = a.wrapping_sub(b.lsr).wrapping_sub(b.dlsr);
            f64::from(rtt) * 1000.0 / 65536.0
        });
        RemoteReport {
            fraction_lost: f64::from(b.fraction_lost) / 256.0,
            cumulative_lost: b.cumulative_lost,
            jitter_ms: f64::from(b.jitter) * 1000.0 / f64::from(clock),
            // A negative result (wrapped) means clocks or echo are off: ignore it.
            rtt_ms: rtt_ms.filter(|ms| *ms < 60_000.0),
            received_at: now,
        }
    }
}
