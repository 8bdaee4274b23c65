//! The transport an offer's first m-line asks for, read before any driver parses the offer: the
//! runtime picks the participant kind (and so the driver) from it.
//!
//! webrtc-sdp reads the lines one at a time (`parse_sdp_line`), so only the `v=` line and the
//! first m-line can fail here; the driver chosen judges the rest.

use webrtc_sdp::error::SdpParserError;
use webrtc_sdp::media_type::SdpProtocolValue;
use webrtc_sdp::SdpType;

/// What the first m-line's profile says about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// UDP/TLS/RTP/SAVP(F): a WebRTC (DTLS-SRTP) peer.
    DtlsSrtp,
    /// RTP/SAVP(F), as written; `keys` says whether any `a=crypto` line came with it.
    Sdes { profile: String, keys: bool },
    /// RTP/AVP(F).
    Plain,
    /// Any other profile, upper-cased (`UDPTL`, `TCP/DTLS/RTP/SAVPF`, `UDP/DTLS/SCTP`).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("SDP must start with a v= line")]
    NoVersion,
    #[error("SDP has no m= line: nothing to send or receive")]
    NoMediaLine,
    #[error("malformed m= line: {0:?}")]
    MalformedMediaLine(String),
}

/// Reads the first m-line's transport profile, and whether the offer carries SDES keys.
pub fn offer_transport(sdp: &str) -> Result<Transport, TransportError> {
    let mut lines = sdp.lines().enumerate().map(|(n, l)| (n, l.trim())).filter(|(_, l)| !l.is_empty());
    match lines.next().map(|(n, l)| webrtc_sdp::parse_sdp_line(l, n)) {
        Some(Ok(line)) if matches!(line.sdp_type, SdpType::Version(_)) => {}
        _ => return Err(TransportError::NoVersion),
    }
    // why text: webrtc-sdp does not model `a=crypto` (RFC 4568); it would only warn about it.
    let keys = sdp.lines().any(|l| l.trim_start().starts_with("a=crypto:"));
    // A line that starts `m=` is the first m-line, whether or not webrtc-sdp can read it.
    let (n, mline) = lines.find(|(_, l)| l.starts_with("m=")).ok_or(TransportError::NoMediaLine)?;
    let proto = match webrtc_sdp::parse_sdp_line(mline, n) {
        Ok(line) => match line.sdp_type {
            SdpType::Media(m) => m.proto,
            _ => return Err(TransportError::MalformedMediaLine(mline.to_owned())),
        },
        // why the token: webrtc-sdp refuses a profile it does not know without handing it back.
        Err(SdpParserError::Unsupported { .. }) => {
            let token = mline.split_whitespace().nth(2).unwrap_or_default();
            return Ok(Transport::Other(token.to_ascii_uppercase()));
        }
        Err(_) => return Err(TransportError::MalformedMediaLine(mline.to_owned())),
    };
    Ok(match proto {
        SdpProtocolValue::UdpTlsRtpSavp | SdpProtocolValue::UdpTlsRtpSavpf => Transport::DtlsSrtp,
        SdpProtocolValue::RtpSavp | SdpProtocolValue::RtpSavpf => Transport::Sdes { profile: proto.to_string(), keys },
        SdpProtocolValue::RtpAvp | SdpProtocolValue::RtpAvpf => Transport::Plain,
        other => Transport::Other(other.to_string().to_ascii_uppercase()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(m: &str, extra: &str) -> String {
        format!("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n{m}\r\n{extra}")
    }

    #[test]
    fn profiles_read_from_the_first_m_line() {
        assert_eq!(offer_transport(&sdp("m=audio 9 UDP/TLS/RTP/SAVPF 111", "")), Ok(Transport::DtlsSrtp));
        assert_eq!(offer_transport(&sdp("m=audio 4000 rtp/avp 0", "")), Ok(Transport::Plain));
        let keys = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n";
        assert_eq!(
            offer_transport(&sdp("m=audio 4000 RTP/SAVP 0", keys)),
            Ok(Transport::Sdes { profile: "RTP/SAVP".into(), keys: true })
        );
        assert_eq!(
            offer_transport(&sdp("m=audio 4000 RTP/SAVPF 0", "")),
            Ok(Transport::Sdes { profile: "RTP/SAVPF".into(), keys: false })
        );
        assert_eq!(offer_transport(&sdp("m=image 4000 udptl t38", "")), Ok(Transport::Other("UDPTL".into())));
        assert_eq!(
            offer_transport(&sdp("m=audio 9 TCP/DTLS/RTP/SAVPF 111", "")),
            Ok(Transport::Other("TCP/DTLS/RTP/SAVPF".into()))
        );
        // Only the first m-line counts; what follows it is the driver's to judge.
        let later = sdp("m=audio 4000 RTP/AVP 0", "a=rtpmap:x\r\nm=video 0 udptl t38\r\n");
        assert_eq!(offer_transport(&later), Ok(Transport::Plain));
    }

    #[test]
    fn what_is_missing_is_said() {
        assert_eq!(offer_transport("hello"), Err(TransportError::NoVersion));
        assert_eq!(offer_transport(""), Err(TransportError::NoVersion));
        assert_eq!(offer_transport("v=0\r\n"), Err(TransportError::NoMediaLine));
        assert!(matches!(offer_transport(&sdp("m=audio", "")), Err(TransportError::MalformedMediaLine(_))));
    }
}
