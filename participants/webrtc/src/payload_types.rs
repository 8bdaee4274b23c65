//! One meaning per payload type: within an offer, and for the whole session.
//!
//! The m-lines of one offer share one payload type space (BUNDLE, RFC 8843 section 9.1), and a
//! mapping holds for the whole session (RFC 3264 section 8.3.2). str0m 0.24.1 takes neither for
//! granted: two formats on one number in one offer, or a new format for a number on a new
//! m-line, panic in its payload type bookkeeping (`Pt locked multiple times`), and a new format
//! for a number on an old m-line is answered with the old one. So the driver checks first.
//!
//! "Format" is what str0m tells apart: the `a=rtpmap` value, and for the codecs str0m matches
//! by `a=fmtp` (H.264 profile and packetization mode, VP9 and AV1 profiles, RTX's associated
//! type), those parameters. Other fmtp differences are one format to str0m, and real clients
//! make them: webrtcbin puts Opus's `sprop-stereo` on its sending m-line and no fmtp on its
//! receiving one, under the same number.

use crate::offer::OfferScan;

/// A payload type given two formats, said for the offerer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error(
        "payload type {pt} is {first} on m-line {first_line} and {then} on m-line {line}; the m-lines of one \
         offer must give a payload type one meaning"
    )]
    InOffer { pt: u8, first: String, first_line: usize, then: String, line: usize },
    #[error(
        "payload type {pt} was {first} earlier in this session and is {then} on m-line {line}; a payload type \
         keeps its meaning for the whole session"
    )]
    AcrossOffers { pt: u8, first: String, then: String, line: usize },
}

/// The first payload type given two formats; `earlier` is the session's last accepted offer
/// (empty before the first).
pub(crate) fn conflict(offer: &OfferScan, earlier: &OfferScan) -> Option<Conflict> {
    let mut seen: Vec<(u8, Format<'_>, usize, bool)> = Vec::new();
    for (scan, is_earlier) in [(earlier, true), (offer, false)] {
        for (line_no, line) in scan.lines.iter().enumerate() {
            for (pt, rtpmap, fmtp) in line.descriptions() {
                let format = Format { rtpmap, fmtp };
                let Some((_, first, first_line, first_earlier)) = seen.iter().find(|s| s.0 == pt) else {
                    seen.push((pt, format, line_no, is_earlier));
                    continue;
                };
                if first.same_as(&format) {
                    continue;
                }
                let (first, then) = (first.to_string(), format.to_string());
                return Some(if *first_earlier {
                    Conflict::AcrossOffers { pt, first, then, line: line_no }
                } else {
                    Conflict::InOffer { pt, first, first_line: *first_line, then, line: line_no }
                });
            }
        }
    }
    None
}

/// A payload type's description on one m-line: `opus/48000/2`, or a static type's bare name,
/// and its `a=fmtp` texts.
struct Format<'a> {
    rtpmap: &'a str,
    fmtp: Vec<&'a str>,
}

impl Format<'_> {
    fn name(&self) -> &str {
        self.rtpmap.split('/').next().unwrap_or_default().trim()
    }

    fn same_as(&self, other: &Format<'_>) -> bool {
        // A static type named without a rate agrees with any rtpmap of that name.
        let maps_agree = if self.rtpmap.contains('/') && other.rtpmap.contains('/') {
            self.rtpmap.eq_ignore_ascii_case(other.rtpmap)
        } else {
            self.name().eq_ignore_ascii_case(other.name())
        };
        let name = self.name().to_ascii_lowercase();
        // RED's fmtp is its primary types (`111/111`), which str0m ties the RED type to.
        if name == "red" {
            return maps_agree && self.fmtp.concat().trim() == other.fmtp.concat().trim();
        }
        maps_agree
            && significant(&name).iter().all(|(key, default)| self.param(key, default) == other.param(key, default))
    }

    /// An fmtp parameter as str0m compares it, lower-cased. H.264's `profile-level-id` counts by
    /// its first two bytes (profile_idc and the constraint flags), since str0m treats the level
    /// as negotiable; a little stricter than str0m, which folds a few flag combinations into one
    /// profile.
    fn param(&self, key: &str, default: &str) -> String {
        // str0m merges every fmtp line of the type, a later value winning.
        let value = self
            .fmtp
            .iter()
            .rev()
            .flat_map(|f| f.split(';').rev())
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            .map_or(default, |(_, v)| v.trim())
            .to_ascii_lowercase();
        if key == "profile-level-id" {
            value.get(..4).unwrap_or(&value).to_owned()
        } else {
            value
        }
    }
}

/// The fmtp parameters, with their defaults, by which str0m tells two formats of a codec apart.
fn significant(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        // Absent: packetization-mode 0 (RFC 6184), and the Baseline profile str0m assumes.
        "h264" => &[("packetization-mode", "0"), ("profile-level-id", "42001f")],
        "vp9" => &[("profile-id", "0")],
        "av1" => &[("profile", "0"), ("level-idx", "5"), ("tier", "0")],
        "rtx" => &[("apt", "")],
        _ => &[],
    }
}

impl std::fmt::Display for Format<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.fmtp.is_empty() {
            write!(f, "{} (no fmtp)", self.rtpmap)
        } else {
            write!(f, "{} ({})", self.rtpmap, self.fmtp.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: &str, pts: &str, attrs: &str) -> String {
        format!("m={kind} 9 UDP/TLS/RTP/SAVPF {pts}\r\n{attrs}")
    }

    fn check(lines: &[String], earlier: &[String]) -> Option<String> {
        conflict(&OfferScan::parse(&lines.concat()), &OfferScan::parse(&earlier.concat())).map(|c| c.to_string())
    }

    const H264_42: &str = "a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;\
                           profile-level-id=42e01f\r\n";
    const H264_4D: &str = "a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;\
                           profile-level-id=4d001f\r\n";

    #[test]
    fn one_format_on_several_m_lines_is_fine() {
        let opus_send = line("audio", "111", "a=rtpmap:111 OPUS/48000/2\r\na=fmtp:111 sprop-stereo=0\r\n");
        let opus_recv = line("audio", "111", "a=rtpmap:111 opus/48000/2\r\n");
        assert_eq!(check(&[opus_send, opus_recv], &[]), None, "Opus fmtp is one format to str0m");
        let h264_level = H264_42.replace("42e01f", "42e034");
        assert_eq!(check(&[line("video", "102", H264_42), line("video", "102", &h264_level)], &[]), None);
        let pcmu = line("audio", "0", "");
        assert_eq!(check(&[pcmu.clone(), line("audio", "0", "a=rtpmap:0 PCMU/8000\r\n")], &[pcmu]), None);
    }

    #[test]
    fn two_formats_on_one_number_in_one_offer_are_named() {
        let audio = line("audio", "96", "a=rtpmap:96 opus/48000/2\r\n");
        let video = line("video", "96", "a=rtpmap:96 VP8/90000\r\n");
        assert_eq!(
            check(&[audio, video], &[]).as_deref(),
            Some(
                "payload type 96 is opus/48000/2 (no fmtp) on m-line 0 and VP8/90000 (no fmtp) on m-line 1; the \
                 m-lines of one offer must give a payload type one meaning"
            )
        );
        let profiles = check(&[line("video", "102", H264_42), line("video", "102", H264_4D)], &[]);
        assert!(profiles.is_some_and(|why| why.contains("profile-level-id=4d001f) on m-line 1")));
        // An rtpmap the m= line does not list still counts: str0m reads it.
        let stray = line("audio", "111", "a=rtpmap:111 opus/48000/2\r\na=rtpmap:102 H264/90000\r\n");
        assert!(check(&[stray, line("video", "102", H264_4D)], &[]).is_some());
        let rtx = |apt: u8| {
            line(
                "video",
                "96 97",
                &format!("a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt={apt}\r\n"),
            )
        };
        assert!(check(&[rtx(96), rtx(98)], &[]).is_some());
        // Two fmtp lines merge, the later value winning, as str0m reads them.
        let merged = line("video", "102", &H264_42.replace("a=fmtp:102", "a=fmtp:102 x=1\r\na=fmtp:102"));
        let main = format!("{H264_42}a=fmtp:102 profile-level-id=4d001f\r\n");
        assert_eq!(check(&[merged, line("video", "102", H264_42)], &[]), None);
        assert!(check(&[line("video", "102", &main), line("video", "102", H264_42)], &[]).is_some());
        let red = |primary: u8| {
            line(
                "audio",
                "111 63",
                &format!("a=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 {primary}/{primary}\r\n"),
            )
        };
        assert!(check(&[red(111), red(96)], &[]).is_some());
        assert_eq!(check(&[red(111), red(111)], &[]), None);
        let static_pt = line("audio", "0", "");
        assert!(check(&[static_pt, line("audio", "0", "a=rtpmap:0 opus/48000/2\r\n")], &[]).is_some());
    }

    #[test]
    fn a_number_keeps_its_format_across_offers() {
        let pcmu = line("audio", "111 96", "a=rtpmap:111 opus/48000/2\r\na=rtpmap:96 PCMU/8000\r\n");
        let pcma = line("audio", "111 96", "a=rtpmap:111 opus/48000/2\r\na=rtpmap:96 PCMA/8000\r\n");
        assert_eq!(
            check(&[pcma], std::slice::from_ref(&pcmu)).as_deref(),
            Some(
                "payload type 96 was PCMU/8000 (no fmtp) earlier in this session and is PCMA/8000 (no fmtp) on \
                 m-line 0; a payload type keeps its meaning for the whole session"
            )
        );
        assert_eq!(check(&[pcmu.clone(), line("video", "97", "a=rtpmap:97 VP8/90000\r\n")], &[pcmu]), None);
    }
}
