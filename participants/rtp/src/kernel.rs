//! The leg's side of in-kernel forwarding (see `switchboard_driver::KernelLeg`): what a rule
//! needs to know of the leg, and taking back what the kernel did.

use crate::leg::{Phase, RtpDriver};
use switchboard_driver::{KernelCounts, KernelLeg, ParticipantKind, Pt, Ssrc};

impl RtpDriver {
    pub(crate) fn kernel_leg(&self) -> Option<KernelLeg> {
        // Plain RTP only: SRTP needs a new authentication tag per packet, which the kernel
        // program cannot make.
        if self.kind != ParticipantKind::Rtp || self.srtp_in.is_some() || self.srtp_out.is_some() {
            return None;
        }
        if !matches!(self.phase, Phase::Active) {
            return None;
        }
        let plan = self.plan.as_ref()?;
        let latched = if self.cfg.symmetric { self.latched_rtp } else { plan.remote_rtp };
        let dest = if plan.remote_receives() { self.rtp_dest() } else { None };
        let playing = self.dtmf_tx.is_playing();
        Some(KernelLeg {
            local: self.cfg.rtp_local,
            latched,
            dest,
            in_pt: Pt(plan.audio.pt.0),
            in_stream: self.stream.reception().map(|r| (Ssrc(r.ssrc), r.max_seq())),
            out_ssrc: Ssrc(self.ssrc),
            out_seq_offset: (!self.tx.resync && !playing).then_some(self.tx.seq_offset),
        })
    }

    pub(crate) fn kernel_received(&mut self, c: &KernelCounts) {
        if c.packets == 0 {
            return;
        }
        self.stream.kernel_advance(c.at, c.ssrc.0, c.seq, c.packets);
        self.stats.packets_received += c.packets;
        // The kernel counts UDP payload bytes; RTCP and the leg's stats count RTP payload. The
        // kernel takes only packets with the 12-byte fixed header and nothing else.
        self.stats.bytes_received += c.bytes.saturating_sub(12 * c.packets);
        if self.latched_rtp.is_some() {
            self.latched_rtp_seen = self.latched_rtp_seen.max(c.at);
        }
    }

    pub(crate) fn kernel_sent(&mut self, c: &KernelCounts, seq: u16, ts: u32) {
        if c.packets == 0 {
            return;
        }
        if seq.wrapping_sub(self.tx.next_seq) as i16 >= 0 {
            self.tx.next_seq = seq.wrapping_add(1);
        }
        self.tx.last_ts = ts;
        self.tx.last_ts_at = c.at;
        self.tx.packets += c.packets;
        self.tx.octets += c.bytes.saturating_sub(12 * c.packets);
        self.tx.last_sent_at = Some(c.at);
    }
}
