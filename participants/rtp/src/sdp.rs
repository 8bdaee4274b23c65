//! Reading a SIP peer's SDP (RFC 4566 / RFC 3264) into the few facts an RTP leg needs.
//!
//! webrtc-sdp does the parsing. Two things it does not model are read from the raw text beside
//! it: `a=crypto` (RFC 4568) and the exact `a=fmtp` text, which the answer echoes. m-lines whose
//! transport webrtc-sdp does not know (`udptl` for T.38, `TCP/MSRP`, ...) are kept as raw
//! sections, hidden from webrtc-sdp, and answered with port 0.

use crate::sdes::{parse_crypto, CryptoOffer};
use std::net::IpAddr;
use webrtc_sdp::address::ExplicitlyTypedAddress;
use webrtc_sdp::attribute_type::{SdpAttribute, SdpAttributeDirection, SdpAttributeType};
use webrtc_sdp::error::SdpParserError;
use webrtc_sdp::media_type::{SdpFormatList, SdpMedia, SdpMediaValue, SdpProtocolValue};
use webrtc_sdp::SdpConnection;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("{0}")]
    Parse(String),
    #[error("c= must carry an IP address, not a host name")]
    HostName,
}

/// The media direction of an m-line, from its author's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The answer's direction for an offer with this one (RFC 3264 §6.1).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// The transport profile of an audio m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// RTP/AVP or RTP/AVPF.
    Plain,
    /// RTP/SAVP or RTP/SAVPF (SDES when `a=crypto` is present).
    Secure,
    /// UDP/TLS/RTP/SAVP(F) or TCP/DTLS/...: a WebRTC (DTLS-SRTP) peer.
    Dtls,
}

/// One payload format of an m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub pt: u8,
    /// Encoding name from `a=rtpmap`, or the static name for PTs 0-34 without one.
    pub name: Option<String>,
    pub clock_rate: u32,
    pub channels: u8,
    /// The `a=fmtp` text after the PT, as written.
    pub fmtp: String,
}

/// An audio m-line webrtc-sdp could parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSection {
    pub profile: Profile,
    pub formats: Vec<Format>,
    pub direction: Direction,
    /// Media-level `c=` or else the session's. `None` for a missing or held (0.0.0.0) address.
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub rtcp_port: Option<u16>,
    pub rtcp_addr: Option<IpAddr>,
    pub rtcp_mux: bool,
    pub ptime: Option<u16>,
    pub crypto: Vec<CryptoOffer>,
    /// `a=fingerprint` at media or session level: the mark of DTLS-SRTP.
    pub dtls_fingerprint: bool,
    /// The `a=extmap` id of RFC 6464 audio levels, when the peer says it sends them.
    pub audio_level_ext: Option<u8>,
}

/// RFC 6464: the sender's audio level in each packet's header extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// One m-line as written, whether or not webrtc-sdp understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub media: String,
    pub port: u16,
    pub proto: String,
    pub fmts: String,
    /// Present for `m=audio` lines with an RTP profile that webrtc-sdp parsed.
    pub audio: Option<AudioSection>,
}

/// A remote session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDescription {
    pub sections: Vec<Section>,
}

impl RemoteDescription {
    /// The first audio m-line with a port, as `(index, section)`.
    pub fn first_audio(&self) -> Option<(usize, &AudioSection)> {
        self.sections.iter().enumerate().find_map(|(i, s)| s.audio.as_ref().filter(|a| a.port != 0).map(|a| (i, a)))
    }
}

/// Raw facts of one m-section read straight from the text.
#[derive(Default)]
struct RawSection {
    mline: String,
    lines: Vec<String>,
    crypto: Vec<CryptoOffer>,
    fmtp: Vec<(u8, String)>,
}

/// Parses SDP text. Also the entry point for fuzzing: it must never panic.
pub fn parse_remote_description(text: &str) -> Result<RemoteDescription, SdpError> {
    let mut session_lines: Vec<&str> = Vec::new();
    let mut raw: Vec<RawSection> = Vec::new();
    let mut session_ptime = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            raw.push(RawSection { mline: line.to_owned(), ..RawSection::default() });
            continue;
        }
        let Some(section) = raw.last_mut() else {
            // webrtc-sdp refuses a session-level ptime, which some SIP stacks write; it applies
            // to every m-line (RFC 4566 leaves the level open), so it becomes their default.
            if let Some(value) = line.strip_prefix("a=ptime:") {
                session_ptime = value.trim().parse::<u16>().ok().filter(|p| *p > 0);
            } else if !line.starts_with("a=maxptime:") {
                session_lines.push(line);
            }
            continue;
        };
        section.lines.push(line.to_owned());
        if let Some(value) = line.strip_prefix("a=crypto:") {
            section.crypto.extend(parse_crypto(value));
        } else if let Some(value) = line.strip_prefix("a=fmtp:") {
            let (pt, params) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
            if let Ok(pt) = pt.parse::<u8>() {
                section.fmtp.push((pt, params.trim().to_owned()));
            }
        }
    }

    // Hide m-sections whose m-line webrtc-sdp would skip as unsupported: it would otherwise glue
    // their attributes onto the section before.
    let known: Vec<bool> = raw
        .iter()
        .map(|s| !matches!(webrtc_sdp::parse_sdp_line(&s.mline, 0), Err(SdpParserError::Unsupported { .. })))
        .collect();
    let mut filtered = session_lines.join("\r\n");
    for (section, _) in raw.iter().zip(&known).filter(|(_, k)| **k) {
        filtered.push_str("\r\n");
        filtered.push_str(&section.mline);
        for line in &section.lines {
            filtered.push_str("\r\n");
            filtered.push_str(line);
        }
    }
    filtered.push_str("\r\n");
    let session = webrtc_sdp::parse_sdp(&filtered, false).map_err(|e| SdpError::Parse(e.to_string()))?;
    let known_count = known.iter().filter(|k| **k).count();
    if session.media.len() != known_count {
        return Err(SdpError::Parse(format!("found {} m-lines but parsed {}", known_count, session.media.len())));
    }
    let session_addr = connection_addr(session.get_connection())?;
    let session_direction = direction_of(|t| session.get_attribute(t).is_some());
    let session_fingerprint = session.get_attribute(SdpAttributeType::Fingerprint).is_some();

    let mut parsed = session.media.iter();
    let mut sections = Vec::with_capacity(raw.len());
    for (rs, is_known) in raw.iter().zip(&known) {
        let mut tokens = rs.mline[2..].splitn(4, char::is_whitespace);
        let media = tokens.next().unwrap_or_default().to_owned();
        let port_token = tokens.next().unwrap_or_default();
        let port = port_token.split('/').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let proto = tokens.next().unwrap_or_default().to_owned();
        let fmts = tokens.next().unwrap_or_default().trim().to_owned();
        let audio = match is_known.then(|| parsed.next()).flatten() {
            Some(m) if *m.get_type() == SdpMediaValue::Audio => audio_section(
                m,
                rs,
                SessionDefaults {
                    addr: session_addr,
                    direction: session_direction,
                    ptime: session_ptime,
                    fingerprint: session_fingerprint,
                },
            )?,
            _ => None,
        };
        sections.push(Section { media, port, proto, fmts, audio });
    }
    Ok(RemoteDescription { sections })
}

/// Session-level values that media sections inherit.
struct SessionDefaults {
    addr: Option<IpAddr>,
    direction: Option<Direction>,
    ptime: Option<u16>,
    fingerprint: bool,
}

fn audio_section(m: &SdpMedia, raw: &RawSection, session: SessionDefaults) -> Result<Option<AudioSection>, SdpError> {
    let profile = match m.get_proto() {
        SdpProtocolValue::RtpAvp | SdpProtocolValue::RtpAvpf => Profile::Plain,
        SdpProtocolValue::RtpSavp | SdpProtocolValue::RtpSavpf => Profile::Secure,
        SdpProtocolValue::UdpTlsRtpSavp
        | SdpProtocolValue::UdpTlsRtpSavpf
        | SdpProtocolValue::TcpDtlsRtpSavp
        | SdpProtocolValue::TcpDtlsRtpSavpf => Profile::Dtls,
        _ => return Ok(None),
    };
    let SdpFormatList::Integers(pts) = m.get_formats() else {
        return Ok(None);
    };
    let formats = pts
        .iter()
        .filter_map(|pt| u8::try_from(*pt).ok().filter(|pt| *pt < 128))
        .map(|pt| format_of(m, raw, pt))
        .collect();
    let addr = match connection_addr(m.get_connection())? {
        Some(a) => Some(a),
        None if m.get_connection().is_some() => None,
        None => session.addr,
    };
    let (rtcp_port, rtcp_addr) = match m.get_attribute(SdpAttributeType::Rtcp) {
        Some(SdpAttribute::Rtcp(r)) => {
            let addr = match &r.unicast_addr {
                Some(ExplicitlyTypedAddress::Ip(ip)) if !ip.is_unspecified() => Some(*ip),
                _ => None,
            };
            (Some(r.port), addr)
        }
        _ => (None, None),
    };
    let ptime = match m.get_attribute(SdpAttributeType::Ptime) {
        Some(SdpAttribute::Ptime(p)) => u16::try_from(*p).ok().filter(|p| *p > 0),
        _ => session.ptime,
    };
    let direction = direction_of(|t| m.get_attribute(t).is_some()).or(session.direction).unwrap_or(Direction::SendRecv);
    Ok(Some(AudioSection {
        profile,
        formats,
        direction,
        addr,
        // webrtc-sdp checked the m-line port is at most 65535.
        port: u16::try_from(m.get_port()).unwrap_or(0),
        rtcp_port,
        rtcp_addr,
        rtcp_mux: m.get_attribute(SdpAttributeType::RtcpMux).is_some(),
        ptime,
        crypto: raw.crypto.clone(),
        dtls_fingerprint: session.fingerprint || m.get_attribute(SdpAttributeType::Fingerprint).is_some(),
        audio_level_ext: audio_level_ext(m),
    }))
}

/// The id the peer sends RFC 6464 levels under: an `a=extmap` for the URI whose direction lets the
/// peer send, and whose id fits the one-byte or two-byte header form (1 to 255).
fn audio_level_ext(m: &SdpMedia) -> Option<u8> {
    m.get_attributes().iter().find_map(|a| match a {
        SdpAttribute::Extmap(e)
            if e.url == AUDIO_LEVEL_URI
                && matches!(
                    e.direction,
                    None | Some(SdpAttributeDirection::Sendrecv | SdpAttributeDirection::Sendonly)
                ) =>
        {
            u8::try_from(e.id).ok().filter(|id| *id > 0)
        }
        _ => None,
    })
}

fn format_of(m: &SdpMedia, raw: &RawSection, pt: u8) -> Format {
    let rtpmap = m.get_attributes().iter().find_map(|a| match a {
        SdpAttribute::Rtpmap(r) if r.payload_type == pt => Some(r),
        _ => None,
    });
    let fmtp = raw.fmtp.iter().find(|(p, _)| *p == pt).map(|(_, f)| f.clone()).unwrap_or_default();
    match rtpmap {
        Some(r) => Format {
            pt,
            name: Some(r.codec_name.clone()),
            clock_rate: r.frequency,
            channels: r.channels.and_then(|c| u8::try_from(c).ok()).unwrap_or(1),
            fmtp,
        },
        None => {
            let (name, clock_rate) = static_payload(pt).map_or((None, 0), |(n, c)| (Some(n.to_owned()), c));
            Format { pt, name, clock_rate, channels: 1, fmtp }
        }
    }
}

/// RFC 3551 static audio payload types that SIP peers still offer without `a=rtpmap`.
pub fn static_payload(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        5 => ("DVI4", 8000),
        6 => ("DVI4", 16000),
        7 => ("LPC", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        10 | 11 => ("L16", 44100),
        12 => ("QCELP", 8000),
        13 => ("CN", 8000),
        15 => ("G728", 8000),
        18 => ("G729", 8000),
        _ => return None,
    })
}

fn direction_of(has: impl Fn(SdpAttributeType) -> bool) -> Option<Direction> {
    [
        (SdpAttributeType::Sendrecv, Direction::SendRecv),
        (SdpAttributeType::Sendonly, Direction::SendOnly),
        (SdpAttributeType::Recvonly, Direction::RecvOnly),
        (SdpAttributeType::Inactive, Direction::Inactive),
    ]
    .into_iter()
    .find(|(t, _)| has(t.clone()))
    .map(|(_, d)| d)
}

/// The IP of a `c=` line; `None` for none or for 0.0.0.0 / :: (RFC 2543 hold).
fn connection_addr(c: &Option<SdpConnection>) -> Result<Option<IpAddr>, SdpError> {
    match c {
        None => Ok(None),
        Some(c) => match &c.address {
            ExplicitlyTypedAddress::Ip(ip) if ip.is_unspecified() => Ok(None),
            ExplicitlyTypedAddress::Ip(ip) => Ok(Some(*ip)),
            ExplicitlyTypedAddress::Fqdn { .. } => Err(SdpError::HostName),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
        m=audio 30000 RTP/AVP 0 8 18 101\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-16\r\na=fmtp:18 annexb=no\r\na=ptime:20\r\na=sendrecv\r\n\
        m=image 0 udptl t38\r\na=T38FaxVersion:0\r\n\
        m=video 40000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nc=IN IP4 198.51.100.1\r\n";

    #[test]
    fn reads_a_gateway_offer() {
        let d = parse_remote_description(GATEWAY).unwrap();
        assert_eq!(d.sections.len(), 3);
        assert_eq!((d.sections[1].media.as_str(), d.sections[1].proto.as_str()), ("image", "udptl"));
        assert_eq!(d.sections[2].fmts, "96");
        let (i, a) = d.first_audio().unwrap();
        assert_eq!(i, 0);
        assert_eq!(a.profile, Profile::Plain);
        assert_eq!(a.addr, Some("192.0.2.10".parse().unwrap()));
        assert_eq!((a.port, a.ptime, a.direction, a.rtcp_mux), (30000, Some(20), Direction::SendRecv, false));
        let names: Vec<_> = a.formats.iter().map(|f| f.name.clone().unwrap()).collect();
        assert_eq!(names, ["PCMU", "PCMA", "G729", "telephone-event"]);
        assert_eq!(a.formats[3].fmtp, "0-16");
        assert_eq!(a.formats[2].fmtp, "annexb=no");
    }

    #[test]
    fn session_direction_and_hold_address() {
        let sdp =
            "v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=sendonly\r\na=ptime:30\r\n\
            m=audio 30000 RTP/AVP 0\r\na=rtcp:30011 IN IP4 192.0.2.11\r\n";
        let d = parse_remote_description(sdp).unwrap();
        let (_, a) = d.first_audio().unwrap();
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(a.ptime, Some(30));
        assert_eq!(a.addr, None);
        assert_eq!((a.rtcp_port, a.rtcp_addr), (Some(30011), Some("192.0.2.11".parse().unwrap())));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in ["", "hello", "v=0\r\nm=audio", "m=audio x RTP/AVP 0\r\n", &"a=x\r\n".repeat(40)] {
            assert!(parse_remote_description(text).is_err(), "{text:?}");
        }
    }
}
