//! Writing the bridge's SDP offers and answers: plain text, CRLF line ends, nothing fancy.
//!
//! why not webrtc-sdp's `SdpSession` and `Display`, so reading and writing would share one model:
//! that model cannot say what these legs must send. It has no `a=crypto` (an SRTP leg's keys), no
//! transport for the refused m-lines echoed at port 0 (`udptl` for T.38, `TCP/MSRP`), and it
//! writes `a=fmtp` from its parsed parameters, re-ordered, defaults dropped and unknown ones
//! joined with `,` instead of `;`, where the answer must echo the gateway's text (`annexb=no`,
//! `0-16`). Each would change what sipp, ffmpeg, GStreamer or Kamailio receive. What is written
//! here is read back with the reader in `sdp.rs` in the tests below.

use crate::sdp::{Direction, AUDIO_LEVEL_URI};
use std::fmt::Write as _;
use std::net::IpAddr;
use switchboard_driver::{Codec, CodecSpec};

/// The bridge's audio m-line.
pub struct AudioLine<'a> {
    /// `RTP/AVP` or `RTP/SAVP` (or the F variants, echoing the peer).
    pub proto: &'a str,
    pub port: u16,
    /// Written in this order; telephone-event included.
    pub codecs: &'a [CodecSpec],
    pub direction: Direction,
    pub ptime: Option<u16>,
    pub rtcp_mux: bool,
    pub rtcp_port: u16,
    /// `a=crypto` values (`<tag> <suite> inline:<key>`).
    pub crypto: Vec<String>,
    pub ssrc: u32,
    pub cname: &'a str,
    /// The id under which the bridge takes RFC 6464 audio levels (it sends none).
    pub audio_level_ext: Option<u8>,
}

/// One m-line of the SDP being written.
pub enum Section<'a> {
    Audio(AudioLine<'a>),
    /// A refused m-line: port 0, echoing the remote media, proto and formats (RFC 3264 §6).
    Rejected {
        media: &'a str,
        proto: &'a str,
        fmts: &'a str,
    },
}

fn ip_kind(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

fn encoding_name(codec: Codec) -> &'static str {
    match codec {
        Codec::Pcmu => "PCMU",
        Codec::Pcma => "PCMA",
        Codec::G722 => "G722",
        Codec::Opus => "opus",
        // The mixer and WebRTC codecs never reach an RTP leg's SDP; the name is still right.
        other => other.as_str(),
    }
}

/// Everything after the `o=` line: the part that decides whether the version must change.
pub fn body(ip: IpAddr, sections: &[Section<'_>]) -> String {
    let mut s = String::with_capacity(512);
    // `write!` into a String cannot fail; the results are ignored for that reason.
    let _ = write!(s, "s=switchboard\r\nc=IN {} {ip}\r\nt=0 0\r\n", ip_kind(ip));
    for section in sections {
        match section {
            Section::Rejected { media, proto, fmts } => {
                let _ = write!(s, "m={media} 0 {proto} {fmts}\r\n");
            }
            Section::Audio(a) => write_audio(&mut s, a),
        }
    }
    s
}

fn write_audio(s: &mut String, a: &AudioLine<'_>) {
    let pts: Vec<String> = a.codecs.iter().map(|c| c.pt.0.to_string()).collect();
    let _ = write!(s, "m=audio {} {} {}\r\n", a.port, a.proto, pts.join(" "));
    for c in a.codecs {
        let _ = write!(s, "a=rtpmap:{} {}/{}", c.pt.0, encoding_name(c.codec), c.clock_rate);
        if c.channels > 1 {
            let _ = write!(s, "/{}", c.channels);
        }
        s.push_str("\r\n");
        if !c.fmtp.is_empty() {
            let _ = write!(s, "a=fmtp:{} {}\r\n", c.pt.0, c.fmtp);
        }
    }
    if let Some(ptime) = a.ptime {
        let _ = write!(s, "a=ptime:{ptime}\r\n");
    }
    if a.rtcp_mux {
        s.push_str("a=rtcp-mux\r\n");
    } else {
        let _ = write!(s, "a=rtcp:{}\r\n", a.rtcp_port);
    }
    for c in &a.crypto {
        let _ = write!(s, "a=crypto:{c}\r\n");
    }
    if let Some(id) = a.audio_level_ext {
        let _ = write!(s, "a=extmap:{id}/recvonly {AUDIO_LEVEL_URI}\r\n");
    }
    let _ = write!(s, "a=ssrc:{} cname:{}\r\n", a.ssrc, a.cname);
    let _ = write!(s, "a={}\r\n", a.direction.attribute());
}

/// The whole SDP: `v=`, `o=` and the body.
pub fn session(session_id: u64, version: u64, ip: IpAddr, body: &str) -> String {
    format!("v=0\r\no=- {session_id} {version} IN {} {ip}\r\n{body}", ip_kind(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::negotiation::offer_codecs;
    use crate::sdp::parse_remote_description;

    #[test]
    fn written_sdp_parses_back() {
        let codecs = offer_codecs();
        let audio = AudioLine {
            proto: "RTP/AVP",
            port: 20000,
            codecs: &codecs,
            direction: Direction::SendRecv,
            ptime: Some(20),
            rtcp_mux: false,
            rtcp_port: 20001,
            crypto: vec![],
            ssrc: 7,
            cname: "abc",
            audio_level_ext: Some(3),
        };
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let rejected = Section::Rejected { media: "video", proto: "RTP/AVP", fmts: "96 97" };
        let text = session(1, 2, ip, &body(ip, &[Section::Audio(audio), rejected]));
        assert!(text.ends_with("\r\n") && !text.replace("\r\n", "").contains('\n'));
        let d = parse_remote_description(&text).unwrap();
        let (_, a) = d.first_audio().unwrap();
        assert_eq!(a.formats.len(), 5);
        assert_eq!(a.formats[3].name.as_deref(), Some("opus"));
        assert_eq!((a.formats[3].clock_rate, a.formats[3].channels), (48000, 2));
        assert_eq!((a.rtcp_port, a.ptime), (Some(20001), Some(20)));
        assert_eq!(d.sections[1].port, 0);
        assert!(text.contains("m=video 0 RTP/AVP 96 97\r\n"));
        // The bridge takes levels and sends none: read back, the SDP's writer sends no levels.
        assert!(text.contains("a=extmap:3/recvonly urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"));
        assert_eq!(a.audio_level_ext, None);
    }

    #[test]
    fn ipv6_is_written_as_ip6() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(session(1, 1, ip, &body(ip, &[])).contains("c=IN IP6 2001:db8::1\r\n"));
    }
}
