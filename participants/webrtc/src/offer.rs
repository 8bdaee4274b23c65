//! The offer as webrtc-sdp reads it, for what str0m keeps private: the m-line order (our track
//! and slot keys), the codec names offered (for a useful "no common codec" error) and the `a=fmtp`
//! text (handed on as offered, for the mixer's caps).
//!
//! str0m parses the same offer for the session; this view only adds what str0m does not show.

use std::collections::BTreeSet;

use str0m::media::Mid;
use switchboard_driver::Codec;
use webrtc_sdp::attribute_type::SdpAttribute;
use webrtc_sdp::media_type::{SdpFormatList, SdpMediaLine, SdpMediaValue};
use webrtc_sdp::SdpType;

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
    /// `audio` or `video`, not `application` or anything else.
    is_media: bool,
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
    /// Reads an offer str0m has already parsed. Never refuses: str0m is the judge of the offer.
    ///
    /// webrtc-sdp reads each line (`parse_sdp_line`) and the scan files them under their
    /// m-section itself. why not `parse_sdp`: its whole-session checks refuse offers str0m takes
    /// (no `c=` line, a session-level `a=ptime`, an fmtp value it cannot type), and a line it
    /// refuses there refuses the offer; here that line is only left out.
    pub fn parse(sdp: &str) -> OfferScan {
        let mut scan = OfferScan::default();
        for (n, text) in sdp.lines().enumerate() {
            let attr = match read_line(n, text) {
                Line::Media(m) => {
                    scan.lines.push(m.as_ref().map(MLine::new).unwrap_or_default());
                    continue;
                }
                Line::Attribute(attr) => Some(attr),
                Line::Other => None,
            };
            // why text: webrtc-sdp keeps fmtp only as parsed parameters, re-ordered and with its
            // defaults filled in, and refuses values it cannot type; the mixer's caps and the
            // payload type check need what the client wrote.
            if let Some((pt, params)) = text.trim().strip_prefix("a=fmtp:").and_then(|v| v.split_once(' ')) {
                if let (Some(m), Ok(pt)) = (scan.lines.last_mut(), pt.trim().parse()) {
                    m.fmtp.push((pt, params.trim().to_owned()));
                }
                continue;
            }
            match (attr, scan.lines.last_mut()) {
                (Some(SdpAttribute::Fingerprint(_)), _) => scan.has_fingerprint = true,
                (Some(SdpAttribute::IceUfrag(u)), _) => scan.longest_ufrag = scan.longest_ufrag.max(u.trim().len()),
                (Some(SdpAttribute::Mid(mid)), Some(m)) => m.mid = Some(Mid::from(mid.trim())),
                (Some(SdpAttribute::Rtpmap(r)), Some(m)) => {
                    let mut map = format!("{}/{}", r.codec_name, r.frequency);
                    if let Some(channels) = r.channels {
                        map.push_str(&format!("/{channels}"));
                    }
                    m.rtpmap.push((r.payload_type, map));
                }
                _ => {}
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
    fn new(m: &SdpMediaLine) -> MLine {
        let formats = match &m.formats {
            SdpFormatList::Integers(pts) => pts.iter().filter_map(|pt| u8::try_from(*pt).ok()).collect(),
            _ => Vec::new(),
        };
        MLine {
            is_media: matches!(m.media, SdpMediaValue::Audio | SdpMediaValue::Video),
            formats,
            rejected: m.port == 0,
            ..MLine::default()
        }
    }

    pub fn is_media(&self) -> bool {
        self.is_media
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

/// One line of an offer, as webrtc-sdp reads it: the crate's one idea of a line.
pub(crate) enum Line {
    /// An m-line; `None` for one webrtc-sdp refuses (a transport it does not know), which still
    /// takes its index, since str0m's keys and ours are m-line indices.
    Media(Option<SdpMediaLine>),
    Attribute(SdpAttribute),
    /// Any other line, or one webrtc-sdp refuses: left out.
    Other,
}

pub(crate) fn read_line(n: usize, text: &str) -> Line {
    match webrtc_sdp::parse_sdp_line(text, n).map(|l| l.sdp_type) {
        Ok(SdpType::Media(m)) => Line::Media(Some(m)),
        Ok(SdpType::Attribute(a)) => Line::Attribute(a),
        // why the peek: webrtc-sdp's error does not say what kind of line it refused.
        Err(_) if text.trim_start().starts_with("m=") => Line::Media(None),
        _ => Line::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
        o=- 1 1 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        t=0 0\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n\
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
        let g729 =
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nc=IN IP4 0.0.0.0\r\nm=audio 9 RTP/AVP 18\na=mid:0\n";
        let scan = OfferScan::parse(g729);
        assert!(!scan.has_supported_codec());
        assert_eq!(scan.offered_codecs(), "g729");
        assert!(!OfferScan::parse("garbage\n\0\u{1F600}").has_supported_codec());
    }

    /// The offers real clients sent (integration-tests/tests/fixtures/) read as they did before.
    #[test]
    fn real_client_offers_parse() {
        for (name, sdp, lines) in [
            ("chromium", include_str!("../../../integration-tests/tests/fixtures/chromium_offer.sdp"), 2),
            ("webrtcbin", include_str!("../../../integration-tests/tests/fixtures/webrtcbin_offer.sdp"), 1),
            (
                "webrtcbin recvonly",
                include_str!("../../../integration-tests/tests/fixtures/webrtcbin_recvonly_offer.sdp"),
                1,
            ),
        ] {
            let scan = OfferScan::parse(sdp);
            assert!(scan.has_fingerprint && scan.has_supported_codec(), "{name}");
            assert!(scan.lines.iter().all(|l| l.mid.is_some()), "{name}");
            assert_eq!(scan.lines.len(), lines, "{name}");
        }
    }

    /// Lines webrtc-sdp refuses are left out, never the offer, and never an m-line's index.
    #[test]
    fn what_webrtc_sdp_refuses_costs_nothing_else() {
        let sdp = OFFER.replace("m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "m=image 9 udptl t38");
        let scan = OfferScan::parse(&sdp);
        assert_eq!(scan.index_of(Mid::from("v")), Some(2));
        let odd = OFFER.replace("minptime=10", "minptime=abc").replace("c=IN IP4 0.0.0.0\r\n", "a=ptime:20\r\n");
        let scan = OfferScan::parse(&odd);
        assert_eq!(scan.lines[0].fmtp_for(111, Codec::Opus), Some("minptime=abc;useinbandfec=1"));
        assert!(scan.has_fingerprint && scan.has_supported_codec());
        // An unknown media type with a known transport is read, in its place.
        let text = OFFER.replace("m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "m=text 9 RTP/AVP 98");
        let scan = OfferScan::parse(&text);
        assert_eq!(scan.index_of(Mid::from("v")), Some(2));
        assert!(!scan.lines[1].is_media());
    }
}
