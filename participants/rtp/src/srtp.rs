//! SRTP and SRTCP protection for SDES legs, on top of `rtc-srtp`.
//!
//! Why `rtc-srtp` (0.21, webrtc-rs): it is sans-IO (no tokio, no threads, no clock), which fits a
//! driver that only sees bytes and time; it supports the three suites SIP peers offer
//! (AES_CM_128_HMAC_SHA1_80/_32 and AEAD_AES_128_GCM) and was checked against ffmpeg on these
//! machines, across a sequence-number wrap; and it is actively kept, unlike the libsrtp2-based
//! `srtp` crate. `webrtc-srtp` shares its code but pulls in the async `webrtc-util` stack.
//!
//! Cost: `rtc-srtp` returns a fresh `BytesMut` per protected or unprotected packet, so the SRTP
//! path makes one heap allocation per packet, forged ones included (it allocates before it checks
//! the tag); the plain RTP path makes none. What forged SSRCs can make it hold is bounded: see
//! [`SrtpInbound`].

use crate::sdes::{KeyMaterial, SrtpSuite};
use rtc_shared::error::Error as SrtpLibError;
use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;

/// Size of the replay window, in packets (RFC 3711 §3.3.2 asks for at least 64).
const REPLAY_WINDOW: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("packet too short for SRTP")]
    Malformed,
    #[error("authentication failed")]
    Auth,
    #[error("replayed or too old")]
    Replay,
    #[error("could not set up the SRTP context: {0}")]
    Setup(String),
    #[error("could not protect the packet: {0}")]
    Protect(String),
}

fn profile(suite: SrtpSuite) -> ProtectionProfile {
    match suite {
        SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        SrtpSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
    }
}

/// The bytes an SRTP packet carries beyond its RTP header and payload (auth tag or AEAD tag).
pub fn rtp_overhead(suite: SrtpSuite) -> usize {
    let p = profile(suite);
    p.rtp_auth_tag_len() + p.aead_auth_tag_len()
}

fn classify(e: SrtpLibError) -> SrtpError {
    match e {
        SrtpLibError::SrtpSsrcDuplicated(..) | SrtpLibError::SrtcpSsrcDuplicated(..) | SrtpLibError::ErrDuplicated => {
            SrtpError::Replay
        }
        SrtpLibError::ErrFailedToVerifyAuthTag
        | SrtpLibError::RtpFailedToVerifyAuthTag
        | SrtpLibError::RtcpFailedToVerifyAuthTag => SrtpError::Auth,
        // Anything else on receive is a packet the library could not take apart.
        _ => SrtpError::Malformed,
    }
}

fn context(key: &KeyMaterial, inbound: bool) -> Result<Context, SrtpError> {
    let provider = rtc_srtp::crypto::default_provider().map_err(|e| SrtpError::Setup(e.to_string()))?;
    let (rtp_opt, rtcp_opt) = if inbound {
        (Some(srtp_replay_protection(REPLAY_WINDOW)), Some(srtcp_replay_protection(REPLAY_WINDOW)))
    } else {
        (None, None)
    };
    Context::new(key.key(), key.salt(), profile(key.suite), rtp_opt, rtcp_opt, provider.crypto())
        .map_err(|e| SrtpError::Setup(e.to_string()))
}

/// SSRCs (RTP and RTCP apart) whose packets go straight to the receive context.
const KNOWN_SSRCS: usize = 8;
/// Failed trials after which the trial context is rebuilt, forgetting what strangers made it hold.
const TRIAL_RESET: u32 = 64;

/// Receive side: one context for the peer's key, with replay protection.
///
/// rtc-srtp keeps state for every SSRC it is shown (rollover counter and a replay window on the
/// heap), and makes it before it checks the packet's tag. Shown a flood of forged packets with
/// random SSRCs, one context would grow without end. So only SSRCs that have authenticated reach
/// `ctx`; a packet of any other SSRC is tried on `trial` first, which is thrown away and rebuilt
/// after [`TRIAL_RESET`] failures. A peer's new SSRC (a restarted stream) costs one extra
/// decryption, of its first packet.
pub struct SrtpInbound {
    key: KeyMaterial,
    ctx: Context,
    known_rtp: Vec<u32>,
    known_rtcp: Vec<u32>,
    trial: Option<Context>,
    trial_failures: u32,
}

/// The SSRC field of an RTP (bytes 8 to 11) or RTCP (4 to 7) header.
fn ssrc_at(packet: &[u8], at: usize) -> Result<u32, SrtpError> {
    let b = packet.get(at..at + 4).ok_or(SrtpError::Malformed)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl SrtpInbound {
    pub fn new(key: KeyMaterial) -> Result<SrtpInbound, SrtpError> {
        let ctx = context(&key, true)?;
        Ok(SrtpInbound {
            key,
            ctx,
            known_rtp: Vec::with_capacity(KNOWN_SSRCS),
            known_rtcp: Vec::with_capacity(KNOWN_SSRCS),
            trial: None,
            trial_failures: 0,
        })
    }

    pub fn key(&self) -> &KeyMaterial {
        &self.key
    }

    /// Authenticates and decrypts an SRTP packet into `out` (cleared first).
    pub fn unprotect_rtp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        let ssrc = ssrc_at(packet, 8)?;
        if !self.known_rtp.contains(&ssrc) {
            self.try_stranger(|c| c.decrypt_rtp(packet).map(drop))?;
            remember(&mut self.known_rtp, ssrc);
        }
        let plain = self.ctx.decrypt_rtp(packet).map_err(classify)?;
        out.clear();
        out.extend_from_slice(&plain);
        Ok(())
    }

    pub fn unprotect_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        // rtc-srtp 0.21 returns an AES-CM SRTCP packet whose E flag is clear without checking its
        // auth tag, so anyone could feed the leg's reports. Unencrypted SRTCP is never
        // negotiated here (`UNENCRYPTED_SRTCP` is refused in `sdes.rs`): a clear E flag is forged.
        let p = profile(self.key.suite);
        let e_at = packet.len().checked_sub(p.rtcp_auth_tag_len() + 4).ok_or(SrtpError::Malformed)?;
        if packet.get(e_at).is_none_or(|b| b & 0x80 == 0) {
            return Err(SrtpError::Auth);
        }
        let ssrc = ssrc_at(packet, 4)?;
        if !self.known_rtcp.contains(&ssrc) {
            self.try_stranger(|c| c.decrypt_rtcp(packet).map(drop))?;
            remember(&mut self.known_rtcp, ssrc);
        }
        let plain = self.ctx.decrypt_rtcp(packet).map_err(classify)?;
        out.clear();
        out.extend_from_slice(&plain);
        Ok(())
    }

    /// Tries a packet of an SSRC not yet known on the trial context.
    fn try_stranger(
        &mut self,
        decrypt: impl FnOnce(&mut Context) -> Result<(), SrtpLibError>,
    ) -> Result<(), SrtpError> {
        let trial = match &mut self.trial {
            Some(t) if self.trial_failures < TRIAL_RESET => t,
            slot => {
                self.trial_failures = 0;
                slot.insert(context(&self.key, true)?)
            }
        };
        decrypt(trial).map_err(|e| {
            self.trial_failures += 1;
            classify(e)
        })
    }
}

/// Adds `ssrc` to a known list, forgetting the oldest past [`KNOWN_SSRCS`]: its state stays in
/// the context, but only SSRCs that authenticated ever made any there.
fn remember(known: &mut Vec<u32>, ssrc: u32) {
    if known.len() == KNOWN_SSRCS {
        known.remove(0);
    }
    known.push(ssrc);
}

/// Send side: the bridge's own key.
pub struct SrtpOutbound {
    key: KeyMaterial,
    ctx: Context,
}

impl SrtpOutbound {
    pub fn new(key: KeyMaterial) -> Result<SrtpOutbound, SrtpError> {
        let ctx = context(&key, false)?;
        Ok(SrtpOutbound { key, ctx })
    }

    pub fn key(&self) -> &KeyMaterial {
        &self.key
    }

    /// Encrypts and authenticates the RTP packet in `buf` in place (by replacement).
    pub fn protect_rtp(&mut self, buf: &mut Vec<u8>) -> Result<(), SrtpError> {
        let sealed = self.ctx.encrypt_rtp(buf).map_err(|e| SrtpError::Protect(e.to_string()))?;
        buf.clear();
        buf.extend_from_slice(&sealed);
        Ok(())
    }

    pub fn protect_rtcp(&mut self, buf: &mut Vec<u8>) -> Result<(), SrtpError> {
        let sealed = self.ctx.encrypt_rtcp(buf).map_err(|e| SrtpError::Protect(e.to_string()))?;
        buf.clear();
        buf.extend_from_slice(&sealed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp_header::write_packet;

    fn pair(suite: SrtpSuite) -> (SrtpOutbound, SrtpInbound) {
        let key = KeyMaterial::random(suite).unwrap();
        (SrtpOutbound::new(key.clone()).unwrap(), SrtpInbound::new(key).unwrap())
    }

    #[test]
    fn every_suite_round_trips_rtp_and_rtcp() {
        for suite in SrtpSuite::ALL {
            let (mut tx, mut rx) = pair(suite);
            let mut buf = Vec::new();
            write_packet(&mut buf, false, 0, 1, 160, 42, &[7; 160]);
            let plain = buf.clone();
            tx.protect_rtp(&mut buf).unwrap();
            assert_eq!(buf.len(), plain.len() + rtp_overhead(suite));
            let mut out = Vec::new();
            rx.unprotect_rtp(&buf, &mut out).unwrap();
            assert_eq!(out, plain);

            let rr = [0x80, 201, 0, 1, 0, 0, 0, 42];
            let mut rtcp = rr.to_vec();
            tx.protect_rtcp(&mut rtcp).unwrap();
            rx.unprotect_rtcp(&rtcp, &mut out).unwrap();
            assert_eq!(out, rr);
        }
    }

    #[test]
    fn tamper_replay_and_truncation_are_told_apart() {
        let (mut tx, mut rx) = pair(SrtpSuite::AesCm128HmacSha1_80);
        let mut buf = Vec::new();
        write_packet(&mut buf, false, 0, 9, 160, 42, &[7; 20]);
        tx.protect_rtp(&mut buf).unwrap();
        let mut out = Vec::new();
        let mut tampered = buf.clone();
        tampered[14] ^= 1;
        assert_eq!(rx.unprotect_rtp(&tampered, &mut out), Err(SrtpError::Auth));
        rx.unprotect_rtp(&buf, &mut out).unwrap();
        assert_eq!(rx.unprotect_rtp(&buf, &mut out), Err(SrtpError::Replay));
        assert_eq!(rx.unprotect_rtp(&buf[..13], &mut out), Err(SrtpError::Malformed));
        assert_eq!(rx.unprotect_rtcp(&[0x80, 201, 0], &mut out), Err(SrtpError::Malformed));
    }

    #[test]
    fn forged_ssrcs_never_reach_the_receive_context_and_a_new_real_one_does() {
        let (mut tx, mut rx) = pair(SrtpSuite::AesCm128HmacSha1_80);
        let mut out = Vec::new();
        let mut first = Vec::new();
        write_packet(&mut first, false, 0, 1, 160, 42, &[7; 20]);
        tx.protect_rtp(&mut first).unwrap();
        rx.unprotect_rtp(&first, &mut out).unwrap();
        for ssrc in 0..1000u32 {
            let mut forged = Vec::new();
            write_packet(&mut forged, false, 0, 1, 160, 0x1000_0000 + ssrc, &[7; 30]);
            assert_eq!(rx.unprotect_rtp(&forged, &mut out), Err(SrtpError::Auth));
        }
        assert_eq!(rx.known_rtp, [42], "only the SSRC that authenticated");
        // The trial context was rebuilt every 64 failures: 1000 = 15 × 64 + 40.
        assert_eq!(rx.trial_failures, 40, "failures since the trial context was last rebuilt");
        // The peer restarts its stream under a new SSRC: its first packet gets through.
        let mut restarted = Vec::new();
        write_packet(&mut restarted, false, 0, 5000, 9_000, 77, &[8; 20]);
        tx.protect_rtp(&mut restarted).unwrap();
        rx.unprotect_rtp(&restarted, &mut out).unwrap();
        assert_eq!(rx.known_rtp, [42, 77]);
        assert_eq!(rx.unprotect_rtp(&restarted, &mut out), Err(SrtpError::Replay), "and is replay-protected");
    }

    #[test]
    fn srtcp_with_the_e_flag_cleared_is_refused_not_trusted() {
        for suite in SrtpSuite::ALL {
            let (mut tx, mut rx) = pair(suite);
            let forged_rr = [0x81, 201, 0, 7, 0, 0, 0, 42, 0, 0, 0, 1, 255, 0, 0, 50, 0, 0, 0, 0, 0, 0, 0, 0];
            let mut rtcp = forged_rr.to_vec();
            tx.protect_rtcp(&mut rtcp).unwrap();
            // An attacker without the key: the report in clear, a made-up index with E = 0 and a
            // junk tag, laid out as the suite's packets are (AEAD puts its tag before the index).
            let p = profile(suite);
            let mut forged = forged_rr.to_vec();
            forged.extend(std::iter::repeat_n(0xAB, p.aead_auth_tag_len()));
            forged.extend_from_slice(&[0, 0, 0, 9]);
            forged.extend(std::iter::repeat_n(0xAB, p.rtcp_auth_tag_len()));
            let mut out = Vec::new();
            assert_eq!(rx.unprotect_rtcp(&forged, &mut out), Err(SrtpError::Auth), "{suite:?}");
            // The genuine one still passes.
            rx.unprotect_rtcp(&rtcp, &mut out).unwrap();
            assert_eq!(out, forged_rr, "{suite:?}");
        }
    }
}
