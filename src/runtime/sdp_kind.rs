//! Tells the participant kind from an offer's transport profile, before any driver parses it.

use switchboard_driver::ParticipantKind;

/// The kind the first `m=` line's profile implies, or what is wrong with the SDP.
pub fn kind_of_offer(sdp: &str) -> Result<ParticipantKind, String> {
    if !sdp.trim_start().starts_with("v=") {
        return Err("SDP must start with a v= line".into());
    }
    let mline = sdp
        .lines()
        .find(|l| l.starts_with("m="))
        .ok_or_else(|| "SDP has no m= line: nothing to send or receive".to_string())?;
    let profile = mline.split_whitespace().nth(2).ok_or_else(|| format!("malformed m= line: {mline:?}"))?;
    let has_crypto = sdp.lines().any(|l| l.starts_with("a=crypto:"));
    match profile.to_ascii_uppercase().as_str() {
        "UDP/TLS/RTP/SAVPF" | "UDP/TLS/RTP/SAVP" => Ok(ParticipantKind::Webrtc),
        "RTP/SAVP" | "RTP/SAVPF" if has_crypto => Ok(ParticipantKind::Srtp),
        "RTP/SAVP" | "RTP/SAVPF" => Err(format!("profile {profile} needs a=crypto lines (SDES keys)")),
        "RTP/AVP" | "RTP/AVPF" => Ok(ParticipantKind::Rtp),
        other => {
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
