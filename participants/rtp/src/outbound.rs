//! The send path: room media onto the wire, RFC 4733 digits, and the bridge's RTCP reports.
//!
//! Sequence numbers: the driver owns the slot's outbound sequence space. Each room packet goes
//! out as `meta.seq + offset`, which keeps the room's own gaps visible to the peer's loss
//! count. DTMF packets take the next numbers of the same counter and mark the offset for
//! recomputing, so the first room packet after a digit continues right after it. Room audio is
//! held back while a digit plays (RFC 4733 §2.5.1.5: no audio and event for the same time).

use crate::leg::{RtpDriver, RTCP_INTERVAL};
use crate::rtcp::{write_bye, write_report, SenderInfo};
use crate::rtp_header::write_packet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_driver::{DriverEvent, RtpMeta, SlotKey, WriteError};

/// DTMF packet spacing when the peer set no ptime.
const DTMF_INTERVAL: Duration = Duration::from_millis(50);

fn refused(why: &'static str) -> WriteError {
    WriteError::Refused(why)
}

/// `d` in units of 1/65536 s, as RTCP's DLSR wants.
fn to_q16(d: Duration) -> u32 {
    let q = (d.as_secs() << 16) + ((u64::from(d.subsec_nanos()) << 16) / 1_000_000_000);
    u32::try_from(q).unwrap_or(u32::MAX)
}

impl RtpDriver {
    pub(crate) fn write(
        &mut self,
        now: Instant,
        slot: SlotKey,
        meta: &RtpMeta,
        payload: &[u8],
    ) -> Result<(), WriteError> {
        if self.is_closed() {
            return Err(refused("the participant is closed"));
        }
        let plan = self.plan.as_ref().ok_or(WriteError::NoSuchSlot)?;
        if slot != SlotKey(0) {
            return Err(WriteError::NoSuchSlot);
        }
        let is_event = plan.telephone_event.as_ref().is_some_and(|t| t.pt == meta.pt);
        if !is_event && plan.audio.pt != meta.pt {
            return Err(WriteError::PayloadType(meta.pt.0));
        }
        // On hold, or while the bridge plays its own digits: dropped without complaint.
        if !plan.remote_receives() || self.dtmf_tx.is_playing() {
            return Ok(());
        }
        let Some(to) = self.rtp_dest() else { return Ok(()) };
        let wire = meta.seq.wire();
        if self.tx.resync {
            self.tx.seq_offset = self.tx.next_seq.wrapping_sub(wire);
            self.tx.resync = false;
        }
        let seq = wire.wrapping_add(self.tx.seq_offset);
        if seq.wrapping_sub(self.tx.next_seq) as i16 >= 0 {
            self.tx.next_seq = seq.wrapping_add(1);
        }
        if !is_event {
            self.tx.last_ts = meta.timestamp;
            self.tx.last_ts_at = now;
        }
        self.send_rtp(now, to, meta.marker, meta.pt.0, seq, meta.timestamp, payload)
    }

    #[allow(clippy::too_many_arguments)] // the RTP header fields, one each
    fn send_rtp(
        &mut self,
        now: Instant,
        to: SocketAddr,
        marker: bool,
        pt: u8,
        seq: u16,
        ts: u32,
        payload: &[u8],
    ) -> Result<(), WriteError> {
        let mut buf = self.queue.buffer();
        write_packet(&mut buf, marker, pt, seq, ts, self.ssrc, payload);
        if let Some(ctx) = &mut self.srtp_out {
            if let Err(e) = ctx.protect_rtp(&mut buf) {
                self.queue.recycle(buf);
                // The SRTP error's detail is left out: naming it would allocate per packet.
                tracing::trace!(error = %e, "SRTP protect failed");
                return Err(WriteError::Refused("SRTP protection failed"));
            }
        }
        self.tx.packets += 1;
        self.tx.octets += payload.len() as u64;
        self.tx.last_sent_at = Some(now);
        self.queue.transmit(self.cfg.rtp_local, to, buf);
        Ok(())
    }

    /// The slot's RTP timestamp at `now`, running on from the last packet sent.
    fn ts_at(&self, now: Instant) -> u32 {
        let d = now.saturating_duration_since(self.tx.last_ts_at);
        let clock = u64::from(self.tx.clock_rate);
        let ticks = d.as_secs() * clock + u64::from(d.subsec_nanos()) * clock / 1_000_000_000;
        self.tx.last_ts.wrapping_add(ticks as u32)
    }

    pub(crate) fn dtmf(&mut self, now: Instant, digits: &str, duration_ms: u32) -> Result<(), WriteError> {
        if self.is_closed() {
            return Err(refused("the participant is closed"));
        }
        let plan = self.plan.as_ref().ok_or_else(|| refused("nothing negotiated yet"))?;
        if plan.telephone_event.is_none() {
            return Err(refused("the peer did not negotiate telephone-event"));
        }
        self.dtmf_tx.queue(now, digits, duration_ms)?;
        self.pump_dtmf(now);
        Ok(())
    }

    /// Sends every DTMF packet due at `now`.
    fn pump_dtmf(&mut self, now: Instant) {
        let Some(plan) = &self.plan else { return };
        let Some(te) = plan.telephone_event.clone() else { return };
        let interval = plan.ptime.map_or(DTMF_INTERVAL, |p| Duration::from_millis(u64::from(p)));
        let receives = plan.remote_receives();
        while let Some(p) = self.dtmf_tx.poll(now, interval, te.clock_rate, self.ts_at(now)) {
            let seq = self.tx.next_seq;
            self.tx.next_seq = seq.wrapping_add(1);
            self.tx.resync = true;
            if let (true, Some(to)) = (receives, self.rtp_dest()) {
                // A failure here is an SRTP one that write_media would report; digits go on.
                let _ = self.send_rtp(now, to, p.marker, te.pt.0, seq, p.ts, &p.payload);
            }
        }
    }

    pub(crate) fn timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.rtcp_next.is_some_and(|t| now >= t) {
            self.send_rtcp(now, false);
            self.rtcp_next = Some(now + RTCP_INTERVAL);
        }
        let mut digits = Vec::new();
        self.dtmf_rx.on_timeout(now, |d| digits.push(d));
        for (digit, duration_ms) in digits {
            self.stats.dtmf_received += 1;
            self.queue.event(DriverEvent::Dtmf { digit, duration_ms });
        }
        self.pump_dtmf(now);
    }

    /// Queues SR (if media went out lately) or RR, SDES, and BYE when closing.
    pub(crate) fn send_rtcp(&mut self, now: Instant, bye: bool) {
        let Some((from, to)) = self.rtcp_route() else { return };
        let sending = self.tx.last_sent_at.is_some_and(|t| now.saturating_duration_since(t) < 2 * RTCP_INTERVAL);
        let sender = sending.then(|| SenderInfo {
            ntp: self.ntp(now),
            rtp_ts: self.ts_at(now),
            // RFC 3550: both counters wrap modulo 2^32.
            packets: self.tx.packets as u32,
            octets: self.tx.octets as u32,
        });
        let (lsr, dlsr) = match self.last_sr {
            Some((mid, at)) => (mid, to_q16(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        let block = self.stream.reception_mut().map(|r| r.report(lsr, dlsr));
        let mut buf = self.queue.buffer();
        write_report(&mut buf, self.ssrc, sender, block, &self.cname);
        if bye {
            write_bye(&mut buf, self.ssrc);
        }
        if let Some(ctx) = &mut self.srtp_out {
            if ctx.protect_rtcp(&mut buf).is_err() {
                self.queue.recycle(buf);
                return;
            }
        }
        self.queue.transmit(from, to, buf);
    }
}
