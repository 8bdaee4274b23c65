//! Tells the participant kind from an offer's transport profile, before any driver parses it.
//!
//! The reading is the rtp crate's [`offer_transport`] (webrtc-sdp, line by line); this file only
//! maps a profile to a kind.

use switchboard_driver::ParticipantKind;
use switchboard_rtp::{offer_transport, Transport};

/// The kind the first `m=` line's profile implies, or what is wrong with the SDP.
pub fn kind_of_offer(sdp: &str) -> Result<ParticipantKind, String> {
    match offer_transport(sdp).map_err(|e| e.to_string())? {
        Transport::DtlsSrtp => Ok(ParticipantKind::Webrtc),
        Transport::Sdes { keys: true, .. } => Ok(ParticipantKind::Srtp),
        Transport::Sdes { profile, keys: false } => Err(format!("profile {profile} needs a=crypto lines (SDES keys)")),
        Transport::Plain => Ok(ParticipantKind::Rtp),
        Transport::Other(other) => {
            Err(format!("unsupported transport profile {other}; use UDP/TLS/RTP/SAVPF, RTP/SAVP(F) or RTP/AVP(F)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_map_to_kinds() {
        let sdp = |m: &str, extra: &str| format!("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n{m}\r\n{extra}");
        assert_eq!(kind_of_offer(&sdp("m=audio 9 UDP/TLS/RTP/SAVPF 111", "")), Ok(ParticipantKind::Webrtc));
        assert_eq!(kind_of_offer(&sdp("m=audio 4000 RTP/AVP 0", "")), Ok(ParticipantKind::Rtp));
        assert_eq!(
            kind_of_offer(&sdp("m=audio 4000 RTP/SAVP 0", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n")),
            Ok(ParticipantKind::Srtp)
        );
        assert!(kind_of_offer(&sdp("m=audio 4000 RTP/SAVP 0", "")).is_err());
        assert!(kind_of_offer("hello").unwrap_err().contains("v="));
        assert!(kind_of_offer("v=0\r\n").unwrap_err().contains("m="));
    }
}
