//! The offer's text rewritten before str0m parses it: what real clients send that str0m would not
//! match, and what the bridge has no use for.
//!
//! why lines: str0m parses text, and webrtc-sdp's serialiser rewrites or drops what it does not
//! model (`a=ssrc`, `a=rtcp-fb`, fmtp order), so the rewrite edits the offer's own lines.

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
pub(crate) fn normalize(sdp: &str) -> std::borrow::Cow<'_, str> {
    let opus_fix = |l: &str| {
        l.starts_with("a=rtpmap:") && {
            let enc = l.split_whitespace().nth(1).unwrap_or("");
            enc.eq_ignore_ascii_case("opus/48000")
        }
    };
    let is_bwe = |l: &str| {
        l.starts_with("a=extmap:") && l.split_whitespace().nth(1).is_some_and(|uri| BWE_EXTENSIONS.contains(&uri))
    };
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    fn bare(l: &str) -> &str {
        l.trim_end_matches(['\r', '\n'])
    }
    // The direction attribute among `range`'s lines. An m-section without one takes the
    // session's, which defaults to sendrecv.
    fn direction_of<'a>(range: &[&'a str]) -> Option<&'a str> {
        range.iter().map(|l| bare(l)).find(|l| matches!(*l, "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"))
    }
    let first_m = lines.iter().position(|l| l.starts_with("m=")).unwrap_or(lines.len());
    let session_dir = direction_of(&lines[..first_m]);
    let mut drop = vec![false; lines.len()];
    let mut start = first_m;
    while start < lines.len() {
        let end = lines[start + 1..].iter().position(|l| l.starts_with("m=")).map_or(lines.len(), |p| start + 1 + p);
        let dir = direction_of(&lines[start..end]).or(session_dir);
        if matches!(dir, Some("a=recvonly" | "a=inactive")) {
            for i in start..end {
                drop[i] = is_bwe(bare(lines[i]));
            }
        }
        start = end;
    }
    if !drop.contains(&true) && !lines.iter().any(|l| opus_fix(bare(l))) {
        return std::borrow::Cow::Borrowed(sdp);
    }
    let mut out = String::with_capacity(sdp.len() + 8);
    for (line, dropped) in lines.iter().zip(drop) {
        if dropped {
            continue;
        }
        let b = line.trim_end_matches(['\r', '\n']);
        out.push_str(b);
        if opus_fix(b) {
            out.push_str("/2");
        }
        out.push_str(&line[b.len()..]);
    }
    std::borrow::Cow::Owned(out)
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
