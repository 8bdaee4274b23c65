//! SRTP and SRTCP protection for SDES legs, on top of `rtc-srtp`.
//!
//! Why `rtc-srtp` (0.21, webrtc-rs): it is sans-IO (no tokio, no threads, no clock), which fits a
//! driver that only sees bytes and time; it supports the three suites SIP peers offer
//! (AES_CM_128_HMAC_SHA1_80/_32 and AEAD_AES_128_GCM) and was checked against ffmpeg on these
//! machines, across a sequence-number wrap; and it is actively kept, unlike the libsrtp2-based
//! `srtp` crate. `webrtc-srtp` shares its code but pulls in the async `webrtc-util` stack.
//!
//! Cost: `rtc-srtp` returns a fresh `BytesMut` per protected or unprotected packet, so the SRTP
//! path makes one heap allocation per packet; the plain RTP path makes none.

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

/// Receive side: one context for the peer's key, with replay protection.
pub struct SrtpInbound {
    key: KeyMaterial,
    ctx: Context,
}

impl SrtpInbound {
    pub fn new(key: KeyMaterial) -> Result<SrtpInbound, SrtpError> {
        let ctx = context(&key, true)?;
        Ok(SrtpInbound { key, ctx })
    }

    pub fn key(&self) -> &KeyMaterial {
        &self.key
    }

    /// Authenticates and decrypts an SRTP packet into `out` (cleared first).
    pub fn unprotect_rtp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
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
        let plain = self.ctx.decrypt_rtcp(packet).map_err(classify)?;
        out.clear();
        out.extend_from_slice(&plain);
        Ok(())
    }
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
