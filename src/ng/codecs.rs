//! The bridge's offer toward the callee, shaped as the proxy asks: the caller's codec first, and
//! the codecs of `codec.strip` and `codec.mask` taken out.
//!
//! The callee's leg offers every codec the bridge has. A phone usually answers with the first one
//! it supports, so leading with the caller's codec makes the common case (both phones share one)
//! a `forward` with no transcoding, as a relay that passes the caller's codecs on would get.
//! Taking a codec out of the text is safe: the leg accepts any answer naming a codec it offered,
//! and the answer can only name what is left.

use super::message::Dict;
use serde_bencode::value::Value;

/// The offer as sent, and what the proxy asked of its codecs that was not done.
pub struct Shaped {
    pub sdp: String,
    pub not_done: Vec<String>,
}

/// The encoding names (lower case) of the first audio m-line's payload types, in order.
fn audio_codecs(sdp: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = sdp.lines().collect();
    let Some(m) = lines.iter().position(|l| l.starts_with("m=audio ")) else { return Vec::new() };
    let end = lines[m + 1..].iter().position(|l| l.starts_with("m=")).map_or(lines.len(), |i| m + 1 + i);
    let name_of = |pt: &str| {
        let prefix = format!("a=rtpmap:{pt} ");
        lines[m + 1..end]
            .iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split('/').next())
            .map(str::to_ascii_lowercase)
    };
    lines[m].split_whitespace().skip(3).map(|pt| (pt.to_string(), name_of(pt).unwrap_or_default())).collect()
}

/// The codec the caller's leg uses: the first in the bridge's answer to it.
pub fn first_codec(answer: &str) -> Option<String> {
    audio_codecs(answer).into_iter().map(|(_, name)| name).find(|n| !n.is_empty() && n != "telephone-event")
}

fn names(codec: &Dict, key: &str) -> Vec<String> {
    codec.strs(key).into_iter().map(str::to_ascii_lowercase).collect()
}

/// Shapes `offer` (the bridge's own, one audio m-line) for the request `d`, leading with `first`.
pub fn shape(offer: &str, first: Option<&str>, d: &Dict) -> Shaped {
    let codec = match d.0.get(b"codec".as_slice()) {
        Some(Value::Dict(c)) => Dict(c.clone()),
        _ => Dict::default(),
    };
    let mut not_done = Vec::new();
    let have = audio_codecs(offer);
    let wanted: Vec<String> = names(&codec, "offer").into_iter().chain(names(&codec, "transcode")).collect();
    for w in &wanted {
        if !have.iter().any(|(_, n)| n == w) {
            not_done.push(format!("codec {w}: the bridge has no such codec"));
        }
    }
    for (key, _) in codec.0.iter() {
        let key = String::from_utf8_lossy(key);
        if !matches!(key.as_ref(), "strip" | "mask" | "offer" | "transcode") {
            not_done.push(format!("codec {key}: not supported, ignored"));
        }
    }
    let strip: Vec<String> = names(&codec, "strip").into_iter().chain(names(&codec, "mask")).collect();
    let stripped = |name: &str| {
        // `all` spares what the proxy also asked to offer, and telephone-event (DTMF) unless named.
        strip.iter().any(|s| s == name)
            || (strip.iter().any(|s| s == "all") && name != "telephone-event" && !wanted.iter().any(|w| w == name))
    };
    let mut drop: Vec<&str> = have.iter().filter(|(_, n)| stripped(n)).map(|(pt, _)| pt.as_str()).collect();
    if have.iter().filter(|(_, n)| n != "telephone-event").all(|(pt, _)| drop.contains(&pt.as_str()))
        && !drop.is_empty()
    {
        not_done.push("codec strip/mask would leave no codec: not applied".into());
        drop.clear();
    }
    let mut order: Vec<&str> = have.iter().map(|(pt, _)| pt.as_str()).filter(|pt| !drop.contains(pt)).collect();
    if let Some(i) = first.and_then(|f| have.iter().position(|(pt, n)| n == f && order.contains(&pt.as_str()))) {
        let pt = have[i].0.as_str();
        order.retain(|p| *p != pt);
        order.insert(0, pt);
    }
    Shaped { sdp: rewrite(offer, &order, &drop), not_done }
}

/// `offer` with its audio m-line's payload types in `order`, and the attribute lines of the
/// `drop`ped ones gone.
fn rewrite(offer: &str, order: &[&str], drop: &[&str]) -> String {
    let mut out = String::with_capacity(offer.len());
    let mut done = false;
    for line in offer.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        let ending = &line[bare.len()..];
        if !done && bare.starts_with("m=audio ") {
            done = true;
            let head: Vec<&str> = bare.split_whitespace().take(3).collect();
            out.push_str(&format!("{} {}{ending}", head.join(" "), order.join(" ")));
            continue;
        }
        let names_a_dropped_pt = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"].iter().any(|p| {
            bare.strip_prefix(p).and_then(|rest| rest.split([' ', ':']).next()).is_some_and(|pt| drop.contains(&pt))
        });
        if !names_a_dropped_pt {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::message::{dict, text};
    use super::*;

    /// The bridge's offer toward a callee, as `ng_kamailio.rs` saw it.
    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=switchboard\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 0 8 9 111 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:9 G722/8000\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";

    fn request(codec: Vec<(&'static str, &[&str])>) -> Dict {
        let list = |v: &[&str]| Value::List(v.iter().map(|x| text(*x)).collect());
        let codec = dict(codec.into_iter().map(|(k, v)| (k, list(v))));
        match dict([("codec", codec)]) {
            Value::Dict(d) => Dict(d),
            _ => unreachable!("dict() builds a dictionary"),
        }
    }

    fn m_line(sdp: &str) -> &str {
        sdp.lines().find(|l| l.starts_with("m=audio")).unwrap()
    }

    #[test]
    fn the_callers_codec_leads_and_nothing_else_changes() {
        let s = shape(OFFER, Some("pcma"), &Dict::default());
        assert_eq!(m_line(&s.sdp), "m=audio 4000 RTP/AVP 8 0 9 111 101");
        assert_eq!(s.sdp.len(), OFFER.len(), "only the order moved");
        assert!(s.not_done.is_empty());
        assert_eq!(shape(OFFER, Some("pcmu"), &Dict::default()).sdp, OFFER);
        assert_eq!(shape(OFFER, None, &Dict::default()).sdp, OFFER);
        // A WebRTC caller's Opus leads too.
        assert_eq!(m_line(&shape(OFFER, Some("opus"), &Dict::default()).sdp), "m=audio 4000 RTP/AVP 111 0 8 9 101");
    }

    #[test]
    fn strip_and_mask_take_codecs_out_with_their_attributes() {
        let s = shape(
            OFFER,
            Some("pcmu"),
            &request(vec![("strip", &["PCMA"]), ("mask", &["opus"]), ("transcode", &["PCMU"])]),
        );
        assert_eq!(m_line(&s.sdp), "m=audio 4000 RTP/AVP 0 9 101");
        assert!(!s.sdp.contains("PCMA") && !s.sdp.contains("opus") && !s.sdp.contains("a=fmtp:111"), "{}", s.sdp);
        assert!(s.sdp.contains("a=fmtp:101 0-15"), "{}", s.sdp);
        assert!(s.not_done.is_empty(), "{:?}", s.not_done);
        // `all` keeps what is to be offered, and DTMF.
        let s = shape(OFFER, Some("pcmu"), &request(vec![("strip", &["all"]), ("offer", &["G722"])]));
        assert_eq!(m_line(&s.sdp), "m=audio 4000 RTP/AVP 9 101");
    }

    #[test]
    fn what_cannot_be_done_is_named_and_leaves_the_offer_whole() {
        let s = shape(OFFER, None, &request(vec![("strip", &["all"])]));
        assert_eq!(s.sdp, OFFER);
        assert_eq!(s.not_done, vec!["codec strip/mask would leave no codec: not applied"]);
        let s = shape(OFFER, None, &request(vec![("transcode", &["AMR-WB"]), ("except", &["PCMU"])]));
        assert_eq!(s.sdp, OFFER);
        assert!(s.not_done.iter().any(|w| w.contains("amr-wb")), "{:?}", s.not_done);
        assert!(s.not_done.iter().any(|w| w.contains("codec except")), "{:?}", s.not_done);
    }

    #[test]
    fn the_first_codec_of_an_answer_is_the_callers() {
        let answer = "v=0\r\nm=audio 5 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(first_codec(answer).as_deref(), Some("pcma"));
        assert_eq!(first_codec("v=0\r\n"), None);
    }
}
