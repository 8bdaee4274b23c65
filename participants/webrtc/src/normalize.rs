//! The offer's text rewritten before str0m parses it: what real clients send that str0m would not
//! match, and what the bridge has no use for.
//!
//! webrtc-sdp reads each line (the crate's `read_line`); the rewrite then edits the offer's own
//! text. why not webrtc-sdp's serialiser: str0m parses text, and that serialiser rewrites or drops
//! what webrtc-sdp does not model (`a=ssrc` attributes, `a=rtcp-fb`, fmtp order).

use std::borrow::Cow;

use webrtc_sdp::attribute_type::SdpAttribute;

use crate::offer::{read_line, Line};

/// Header extensions that only feed the sender's bandwidth estimation: transport-wide congestion
/// control (TWCC feedback) and absolute send time (for the receiver's REMB).
const BWE_EXTENSIONS: [&str; 2] = [
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
];

/// Fixes what real clients send that str0m would not match, and leaves out what the bridge has
/// no use for:
/// - GStreamer's webrtcbin offers `OPUS/48000` with no channel count, which RFC 7587 says must be
///   `/2`; left alone, str0m finds no common codec and the GStreamer client cannot join.
/// - TWCC and abs-send-time on m-lines where the client only receives (`recvonly`, `inactive`).
///   They serve the sender's bandwidth estimation, and the bridge runs none, but str0m 0.24
///   stamps every packet it sends with both, registers it for TWCC, and each TWCC report (every
///   100 ms or so per subscriber) scans up to 1,000 send records: the largest single cost of a
///   WebRTC fan-out (docs/benchmarks.md). Where the client sends, both stay, for its own
///   estimation. Once the bridge estimates bandwidth (simulcast layer choice), this goes.
pub(crate) fn normalize(sdp: &str) -> Cow<'_, str> {
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    let roles: Vec<Role> = lines.iter().enumerate().map(|(n, l)| Role::of(n, l)).collect();
    // An m-section without a direction takes the session's, which defaults to sendrecv.
    let direction_of =
        |range: &[Role]| range.iter().find_map(|r| if let Role::Direction(d) = r { Some(*d) } else { None });
    let first_m = roles.iter().position(|r| *r == Role::MLine).unwrap_or(roles.len());
    let session_receives_only = direction_of(&roles[..first_m]).unwrap_or(false);
    let mut drop = vec![false; lines.len()];
    let mut start = first_m;
    while start < lines.len() {
        let end = roles[start + 1..].iter().position(|r| *r == Role::MLine).map_or(lines.len(), |p| start + 1 + p);
        if direction_of(&roles[start..end]).unwrap_or(session_receives_only) {
            for i in start..end {
                drop[i] = roles[i] == Role::Bwe;
            }
        }
        start = end;
    }
    if !drop.contains(&true) && !roles.contains(&Role::OpusWithoutChannels) {
        return Cow::Borrowed(sdp);
    }
    let mut out = String::with_capacity(sdp.len() + 8);
    for ((line, role), dropped) in lines.iter().zip(&roles).zip(drop) {
        if dropped {
            continue;
        }
        let bare = line.trim_end_matches(['\r', '\n']);
        out.push_str(bare);
        if *role == Role::OpusWithoutChannels {
            out.push_str("/2");
        }
        out.push_str(&line[bare.len()..]);
    }
    Cow::Owned(out)
}

/// What a line means to `normalize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    MLine,
    /// A direction attribute: whether it says the client only receives (`recvonly`, `inactive`).
    Direction(bool),
    Bwe,
    /// `a=rtpmap:<pt> OPUS/48000`, no channel count.
    OpusWithoutChannels,
    Other,
}

impl Role {
    fn of(n: usize, text: &str) -> Role {
        let attr = match read_line(n, text) {
            Line::Media(_) => return Role::MLine,
            Line::Attribute(attr) => attr,
            Line::Other => return Role::Other,
        };
        match attr {
            SdpAttribute::Recvonly | SdpAttribute::Inactive => Role::Direction(true),
            SdpAttribute::Sendrecv | SdpAttribute::Sendonly => Role::Direction(false),
            SdpAttribute::Extmap(e) if BWE_EXTENSIONS.contains(&e.url.as_str()) => Role::Bwe,
            SdpAttribute::Rtpmap(r)
                if r.codec_name.eq_ignore_ascii_case("opus") && r.frequency == 48_000 && r.channels.is_none() =>
            {
                Role::OpusWithoutChannels
            }
            _ => Role::Other,
        }
    }
}

#[cfg(test)]
mod normalize_tests {
    use super::normalize;

    #[test]
    fn opus_without_channels_gets_two() {
        let sdp = "v=0\r\na=rtpmap:111 OPUS/48000\r\na=rtpmap:0 PCMU/8000\r\n";
        assert_eq!(normalize(sdp), "v=0\r\na=rtpmap:111 OPUS/48000/2\r\na=rtpmap:0 PCMU/8000\r\n");
        let ok = "v=0\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(matches!(normalize(ok), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn bandwidth_extensions_go_only_where_the_client_does_not_send() {
        let twcc = "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
                    a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n";
        let mid = "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n";
        let section =
            |dir: &str| format!("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{twcc}{mid}{dir}a=rtpmap:111 opus/48000/2\r\n");
        let sdp = format!(
            "v=0\r\ns=-\r\n{}{}{}{}",
            section("a=recvonly\r\n"),
            section("a=sendrecv\r\n"),
            section("a=inactive\r\n"),
            section("a=sendonly\r\n")
        );
        let out = normalize(&sdp);
        let kept: Vec<&str> =
            out.split("m=").skip(1).map(|s| if s.contains("transport-wide-cc") { "twcc" } else { "-" }).collect();
        assert_eq!(kept, ["-", "twcc", "-", "twcc"], "{out}");
        assert_eq!(out.matches("abs-send-time").count(), 2, "{out}");
        assert_eq!(out.matches("sdes:mid").count(), 4, "other extensions stay");
        // A session-level direction counts for sections without their own.
        let session_recv = format!("v=0\r\na=recvonly\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{twcc}{mid}");
        assert!(!normalize(&session_recv).contains("transport-wide-cc"));
        let untouched = format!("v=0\r\n{}", section("a=sendrecv\r\n"));
        assert!(matches!(normalize(&untouched), std::borrow::Cow::Borrowed(_)));
    }
}
