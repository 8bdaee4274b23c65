//! A light read of the offer text for what str0m keeps private: the m-line order (our track and
//! slot keys), the codec names offered (for a useful "no common codec" error) and the raw `a=fmtp`
//! strings (handed on as offered, for the mixer's caps).
//!
//! str0m still does the real parsing and validation; this scan never rejects anything itself.

use std::collections::BTreeSet;

use str0m::media::Mid;
use switchboard_driver::Codec;

/// The codecs this driver enables in str0m, in the order the error message lists them.
pub(crate) const SUPPORTED: [Codec; 5] = [Codec::Opus, Codec::Pcmu, Codec::Pcma, Codec::Vp8, Codec::H264];

/// RFC 3551's static payload types, for m-lines that list them without `a=rtpmap`.
const STATIC_PTS: [(u8, &str); 24] = [
    (0, "PCMU"),
    (3, "GSM"),
    (4, "G723"),
    (5, "DVI4"),
    (6, "DVI4"),
    (7, "LPC"),
    (8, "PCMA"),
    (9, "G722"),
    (10, "L16"),
    (11, "L16"),
    (12, "QCELP"),
    (13, "CN"),
    (14, "MPA"),
    (15, "G728"),
    (16, "DVI4"),
    (17, "DVI4"),
    (18, "G729"),
    (25, "CelB"),
    (26, "JPEG"),
    (28, "nv"),
    (31, "H261"),
    (32, "MPV"),
    (33, "MP2T"),
    (34, "H263"),
];

/// Formats that ride along with a codec rather than being one; listing them in an error only
/// adds noise.
const NOT_CODECS: [&str; 4] = ["rtx", "red", "ulpfec", "flexfec-03"];

#[derive(Debug, Clone, Default)]
pub(crate) struct OfferScan {
    pub lines: Vec<MLine>,
    pub has_fingerprint: bool,
    /// The longest `a=ice-ufrag`, session or media level, in bytes.
    pub longest_ufrag: usize,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct MLine {
    /// `audio`, `video`, `application`, ...
    pub media: String,
    /// Converted the way str0m converts it, so lookups in str0m match.
    pub mid: Option<Mid>,
    /// Payload types listed on the `m=` line.
    pub formats: Vec<u8>,
    /// Port 0: the offerer turns the line off, whatever formats it lists.
    pub rejected: bool,
    /// `a=rtpmap` values (`opus/48000/2`), listed on the `m=` line or not: str0m reads them all.
    rtpmap: Vec<(u8, String)>,
    fmtp: Vec<(u8, String)>,
}

impl OfferScan {
    pub fn parse(sdp: &str) -> OfferScan {
        let mut scan = OfferScan::default();
        for line in sdp.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(rest) = line.strip_prefix("m=") {
                let mut parts = rest.split_ascii_whitespace();
                let media = parts.next().unwrap_or_default().to_ascii_lowercase();
                let rejected = parts.next() == Some("0");
                // Skip proto; what remains are the formats.
                let formats = parts.skip(1).filter_map(|f| f.parse().ok()).collect();
                scan.lines.push(MLine { media, formats, rejected, ..MLine::default() });
                continue;
            }
            let Some(attr) = line.strip_prefix("a=") else {
                continue;
            };
            if attr.starts_with("fingerprint:") {
                scan.has_fingerprint = true;
            } else if let Some(ufrag) = attr.strip_prefix("ice-ufrag:") {
                scan.longest_ufrag = scan.longest_ufrag.max(ufrag.trim().len());
            }
            let Some(m) = scan.lines.last_mut() else {
                continue;
            };
            if let Some(v) = attr.strip_prefix("mid:") {
                m.mid = Some(Mid::from(v.trim()));
            } else if let Some((pt, v)) = attr.strip_prefix("rtpmap:").and_then(split_pt) {
                m.rtpmap.push((pt, v.trim().to_owned()));
            } else if let Some((pt, v)) = attr.strip_prefix("fmtp:").and_then(split_pt) {
                m.fmtp.push((pt, v.trim().to_owned()));
            }
        }
        scan
    }

    /// The m-line index of `mid`, which is the driver's key for it.
    pub fn index_of(&self, mid: Mid) -> Option<u16> {
        let i = self.lines.iter().position(|l| l.mid == Some(mid))?;
        u16::try_from(i).ok()
    }

    /// A mid that names two m-lines (RFC 8843 requires them unique; str0m would take both and
    /// lose track of its payload types).
    pub fn repeated_mid(&self) -> Option<Mid> {
        let mids: Vec<Mid> = self.lines.iter().filter_map(|l| l.mid).collect();
        mids.iter().enumerate().find(|(i, m)| mids[..*i].contains(m)).map(|(_, m)| *m)
    }

    /// Whether any audio or video m-line offers a codec the driver enables.
    pub fn has_supported_codec(&self) -> bool {
        self.lines
            .iter()
            .filter(|l| l.is_media())
            .flat_map(|l| l.codec_names())
            .filter_map(Codec::from_encoding_name)
            .any(|c| SUPPORTED.contains(&c))
    }

    /// The distinct codec names offered on audio and video m-lines, for an error message.
    pub fn offered_codecs(&self) -> String {
        let names: BTreeSet<String> = self
            .lines
            .iter()
            .filter(|l| l.is_media())
            .flat_map(|l| l.codec_names())
            .filter(|n| !NOT_CODECS.iter().any(|x| x.eq_ignore_ascii_case(n)))
            .map(|n| n.to_ascii_lowercase())
            .collect();
        if names.is_empty() {
            "no audio or video codec".to_owned()
        } else {
            names.into_iter().collect::<Vec<_>>().join(", ")
        }
    }
}

impl MLine {
    pub fn is_media(&self) -> bool {
        self.media == "audio" || self.media == "video"
    }

    /// The encoding name of `pt` on this m-line, from `a=rtpmap` or the static table.
    pub fn encoding_name(&self, pt: u8) -> Option<&str> {
        if let Some((_, map)) = self.rtpmap.iter().find(|(p, _)| *p == pt) {
            return Some(map.split('/').next().unwrap_or_default().trim());
        }
        STATIC_PTS.iter().find(|(p, _)| *p == pt).map(|(_, name)| *name)
    }

    /// The `a=fmtp` text for `pt`, if the offer gave one and `pt` means `codec` here.
    pub fn fmtp_for(&self, pt: u8, codec: Codec) -> Option<&str> {
        let name = self.encoding_name(pt)?;
        if Codec::from_encoding_name(name) != Some(codec) {
            return None;
        }
        self.fmtp.iter().find(|(p, _)| *p == pt).map(|(_, v)| v.as_str())
    }

    /// Every payload type this m-line describes, as str0m reads them: each `a=rtpmap` (listed on
    /// the `m=` line or not), then each listed static type without one, by its static name. With
    /// every `a=fmtp` text for it, in order: str0m merges them, a later value winning.
    pub fn descriptions(&self) -> impl Iterator<Item = (u8, &str, Vec<&str>)> {
        let fmtp = |pt: u8| self.fmtp.iter().filter(|(p, _)| *p == pt).map(|(_, f)| f.as_str()).collect();
        let mapped = self.rtpmap.iter().map(move |(pt, map)| (*pt, map.as_str(), fmtp(*pt)));
        let unmapped = self.formats.iter().filter(|pt| !self.rtpmap.iter().any(|(p, _)| p == *pt));
        let statics = unmapped
            .filter_map(move |pt| STATIC_PTS.iter().find(|(p, _)| p == pt).map(|(_, name)| (*pt, *name, fmtp(*pt))));
        mapped.chain(statics)
    }

    fn codec_names(&self) -> impl Iterator<Item = &str> {
        self.formats.iter().filter_map(|pt| self.encoding_name(*pt))
    }
}

fn split_pt(v: &str) -> Option<(u8, &str)> {
    let (pt, rest) = v.split_once(' ')?;
    Some((pt.trim().parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
        o=- 1 1 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=fingerprint:sha-256 AB:CD\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 0 18\r\n\
        a=mid:a-0\r\n\
        a=rtpmap:111 opus/48000/2\r\n\
        a=fmtp:111 minptime=10;useinbandfec=1\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
        a=mid:d\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
        a=mid:v\r\n\
        a=rtpmap:96 VP8/90000\r\n\
        a=rtpmap:97 rtx/90000\r\n";

    #[test]
    fn reads_order_names_and_fmtp() {
        let scan = OfferScan::parse(OFFER);
        assert!(scan.has_fingerprint);
        assert_eq!(scan.lines.len(), 3);
        // str0m turns characters outside [A-Za-z0-9] into '_'; the scan must agree.
        assert_eq!(scan.index_of(Mid::from("a-0")), Some(0));
        assert_eq!(scan.index_of(Mid::from("v")), Some(2));
        let audio = &scan.lines[0];
        assert_eq!(audio.encoding_name(0), Some("PCMU"));
        assert_eq!(audio.fmtp_for(111, Codec::Opus), Some("minptime=10;useinbandfec=1"));
        assert_eq!(audio.fmtp_for(111, Codec::Vp8), None);
        assert!(scan.has_supported_codec());
        assert_eq!(scan.offered_codecs(), "g729, opus, pcmu, vp8");
    }

    #[test]
    fn unsupported_only_offer_is_detected() {
        let scan = OfferScan::parse("m=audio 9 RTP/AVP 18\na=mid:0\n");
        assert!(!scan.has_supported_codec());
        assert_eq!(scan.offered_codecs(), "g729");
        assert!(!OfferScan::parse("garbage\n\0\u{1F600}").has_supported_codec());
    }
}

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
pub fn normalize(sdp: &str) -> std::borrow::Cow<'_, str> {
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
