//! SDP, just enough to check answers: a line-level reading of m-sections and the checks a
//! bridge answer to a WebRTC offer must pass.

/// One m-line of an SDP, as far as the tests care.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaSection {
    /// `audio`, `video`, `application`
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub mid: Option<String>,
    /// `sendrecv`, `sendonly`, `recvonly`, `inactive` (`sendrecv` when absent)
    pub direction: String,
    /// Encoding names from `a=rtpmap`, lower case, in m-line order (`opus`, `pcmu`, `vp8`, ...).
    pub codecs: Vec<String>,
    pub ssrcs: Vec<u32>,
    /// The lines of the section (session-level lines are not included).
    pub lines: Vec<String>,
}

/// A parsed SDP: session-level lines and the m-line sections.
#[derive(Clone, Debug, Default)]
pub struct Sdp {
    pub session: Vec<String>,
    pub media: Vec<MediaSection>,
}

impl Sdp {
    pub fn parse(text: &str) -> Sdp {
        let mut sdp = Sdp::default();
        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            if let Some(m) = line.strip_prefix("m=") {
                let mut it = m.split_whitespace();
                let kind = it.next().unwrap_or_default().to_string();
                let port = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let proto = it.next().unwrap_or_default().to_string();
                sdp.media.push(MediaSection { kind, port, proto, direction: "sendrecv".into(), ..Default::default() });
            }
            match sdp.media.last_mut() {
                None => sdp.session.push(line.to_string()),
                Some(m) => {
                    m.lines.push(line.to_string());
                    if let Some(mid) = line.strip_prefix("a=mid:") {
                        m.mid = Some(mid.trim().to_string());
                    } else if let Some(r) = line.strip_prefix("a=rtpmap:") {
                        if let Some(name) = r.split_whitespace().nth(1).and_then(|e| e.split('/').next()) {
                            m.codecs.push(name.to_ascii_lowercase());
                        }
                    } else if let Some(r) = line.strip_prefix("a=ssrc:") {
                        if let Some(ssrc) = r.split_whitespace().next().and_then(|x| x.parse().ok()) {
                            if !m.ssrcs.contains(&ssrc) {
                                m.ssrcs.push(ssrc);
                            }
                        }
                    } else if let Some(d) =
                        ["sendrecv", "sendonly", "recvonly", "inactive"].iter().find(|d| line == format!("a={d}"))
                    {
                        m.direction = d.to_string();
                    }
                }
            }
        }
        sdp
    }

    /// True if the session level or any m-line has `line` (exact match).
    pub fn has_line(&self, line: &str) -> bool {
        self.session.iter().chain(self.media.iter().flat_map(|m| m.lines.iter())).any(|l| l == line)
    }

    /// Lines starting with `prefix`, session level and m-lines.
    pub fn lines_starting(&self, prefix: &str) -> Vec<String> {
        self.session
            .iter()
            .chain(self.media.iter().flat_map(|m| m.lines.iter()))
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// Checks a WebRTC answer from the bridge against the offer it answers: same m-lines in the same
/// order with the same mids, full ICE (no `a=ice-lite`: the bridge checks the pair itself, see
/// `a_webrtcbin_publisher_stays_past_fifteen_seconds`), DTLS role chosen (not `actpass`), a fingerprint, a host
/// candidate on the bridge's WebRTC port at 127.0.0.1, and for each offered `recvonly` m-line a
/// `sendonly` answer declaring its SSRC (a pre-negotiated slot) without the bandwidth-estimation
/// header extensions (TWCC, abs-send-time: the bridge runs no send-side estimation), which an
/// m-line where the client sends keeps when offered.
#[track_caller]
pub fn assert_webrtc_answer(offer: &str, answer: &str, webrtc_port: u16) {
    assert!(answer.starts_with("v=0"), "answer does not start with v=0:\n{answer}");
    let o = Sdp::parse(offer);
    let a = Sdp::parse(answer);
    let okinds: Vec<(&str, Option<&str>)> = o.media.iter().map(|m| (m.kind.as_str(), m.mid.as_deref())).collect();
    let akinds: Vec<(&str, Option<&str>)> = a.media.iter().map(|m| (m.kind.as_str(), m.mid.as_deref())).collect();
    assert_eq!(akinds, okinds, "answer m-lines (kind, mid) differ from the offer's:\n{answer}");
    assert!(!a.has_line("a=ice-lite"), "answer says a=ice-lite (the bridge runs full ICE):\n{answer}");
    let setups = a.lines_starting("a=setup:");
    assert!(!setups.is_empty(), "answer has no a=setup:\n{answer}");
    assert!(
        setups.iter().all(|s| s == "a=setup:active" || s == "a=setup:passive"),
        "answer must pick a DTLS role (active/passive), has {setups:?}"
    );
    assert!(!a.lines_starting("a=fingerprint:").is_empty(), "answer has no a=fingerprint:\n{answer}");
    let cands = a.lines_starting("a=candidate:");
    assert!(
        cands.iter().any(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            f.len() >= 8
                && f[2].eq_ignore_ascii_case("udp")
                && f[4] == "127.0.0.1"
                && f[5] == webrtc_port.to_string()
                && f[7] == "host"
        }),
        "answer has no UDP host candidate 127.0.0.1:{webrtc_port}: {cands:?}"
    );
    for (om, am) in o.media.iter().zip(&a.media) {
        if am.port == 0 {
            continue; // rejected m-line; checked by callers that care
        }
        let bwe = |lines: &[String]| {
            lines
                .iter()
                .filter(|l| {
                    l.starts_with("a=extmap:") && (l.contains("transport-wide-cc") || l.contains("abs-send-time"))
                })
                .count()
        };
        if om.direction == "recvonly" {
            assert_eq!(am.direction, "sendonly", "offered recvonly m-line {:?} must be answered sendonly", om.mid);
            assert!(!am.ssrcs.is_empty(), "slot {:?} answer declares no a=ssrc:\n{}", om.mid, am.lines.join("\n"));
            assert_eq!(
                bwe(&am.lines),
                0,
                "slot {:?} answer negotiates TWCC or abs-send-time:\n{}",
                om.mid,
                am.lines.join("\n")
            );
        } else if om.direction != "inactive" {
            assert_eq!(
                bwe(&am.lines),
                bwe(&om.lines),
                "m-line {:?}: the client's own estimation lost its extensions",
                om.mid
            );
        }
        let common: Vec<&String> = am.codecs.iter().filter(|c| om.codecs.contains(c)).collect();
        assert!(
            !am.codecs.is_empty() && common.len() == am.codecs.len(),
            "m-line {:?}: answer codecs {:?} not a subset of offer's {:?}",
            om.mid,
            am.codecs,
            om.codecs
        );
    }
}

/// A phone's plain-RTP offer: PCMU, 20 ms, sendrecv, media at 127.0.0.1:`port`.
pub fn pcmu_offer(port: u16) -> String {
    format!(
        "v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\ns=phone\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// [`pcmu_offer`] with RFC 4733 telephone-event (payload type 101), for tests that send DTMF.
pub fn pcmu_dtmf_offer(port: u16) -> String {
    pcmu_offer(port)
        .replace("RTP/AVP 0\r\n", "RTP/AVP 0 101\r\n")
        .replace("a=rtpmap:0 PCMU/8000\r\n", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::fixture;

    #[test]
    fn sdp_parser_reads_fixtures() {
        let c = Sdp::parse(&fixture("chromium_offer.sdp"));
        assert_eq!(c.media.len(), 2);
        assert_eq!((c.media[0].kind.as_str(), c.media[0].mid.as_deref()), ("audio", Some("0")));
        assert_eq!(c.media[0].codecs[0], "opus");
        assert!(c.media[0].codecs.contains(&"pcmu".to_string()));
        assert_eq!(c.media[1].codecs[0], "vp8");
        assert_eq!(c.media[1].direction, "sendrecv");
        assert_eq!(c.media[1].proto, "UDP/TLS/RTP/SAVPF");
        let w = Sdp::parse(&fixture("webrtcbin_recvonly_offer.sdp"));
        assert_eq!(w.media.len(), 1);
        assert_eq!(w.media[0].direction, "recvonly");
        assert_eq!(w.media[0].codecs, vec!["opus"]);
        assert!(w.has_line("a=rtcp-mux"));
    }

    #[test]
    #[should_panic(expected = "a=setup")]
    fn answer_check_rejects_a_plain_echo() {
        // Echoing the offer back is not an answer: it leaves the DTLS role open (setup:actpass).
        let o = fixture("chromium_offer.sdp");
        assert_webrtc_answer(&o, &o, 3478);
    }
}
