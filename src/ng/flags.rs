//! What an `offer` or `answer` asks for that the bridge does not carry out (the `codec`
//! dictionary is `codecs.rs`'s). The command still
//! succeeds, and the reply says so in rtpengine's `warning` key (Kamailio's module logs it as
//! "proxy replied with warning"), so nothing the proxy asked for is dropped without a word.

use super::message::Dict;

/// `flags` entries the bridge honours, or for which it already behaves as asked (see
/// docs/sip-gateway.md, "Flags").
const KNOWN_FLAGS: &[&str] = &["trust-address", "SIP-source-address", "symmetric", "asymmetric", "port-latching"];

/// The values of `ICE` and `DTLS` the bridge takes.
const ICE: &[&str] = &["remove", "force", "default"];
const DTLS: &[&str] = &["off", "no", "passive", "default"];

/// One line naming what was not done, or `None` when everything asked for was.
pub fn warning(d: &Dict) -> Option<String> {
    let mut not_done = Vec::new();
    let unknown: Vec<&str> = d
        .strs("flags")
        .into_iter()
        .filter(|f| !f.split_once('=').is_some_and(|(k, _)| k.eq_ignore_ascii_case("room")))
        .filter(|f| !f.eq_ignore_ascii_case("record-call"))
        .filter(|f| !KNOWN_FLAGS.iter().any(|k| k.eq_ignore_ascii_case(f)))
        .collect();
    if !unknown.is_empty() {
        not_done.push(format!("flags not supported, ignored: {}", unknown.join(", ")));
    }
    let recording = d.str("record-call").is_some_and(|v| matches!(v, "yes" | "on" | "true"))
        || d.strs("flags").iter().any(|f| f.eq_ignore_ascii_case("record-call"));
    if recording {
        not_done.push("record-call: recording is not supported yet".into());
    }
    for (key, allowed) in [("ICE", ICE), ("DTLS", DTLS)] {
        if let Some(v) = d.str(key).filter(|v| !allowed.iter().any(|a| a.eq_ignore_ascii_case(v))) {
            not_done.push(format!("{key}={v} is not supported, ignored"));
        }
    }
    (!not_done.is_empty()).then(|| not_done.join("; "))
}

#[cfg(test)]
mod tests {
    use super::super::message::{dict, text};
    use super::*;
    use serde_bencode::value::Value;

    fn request(pairs: Vec<(&'static str, Value)>) -> Dict {
        match dict(pairs) {
            Value::Dict(d) => Dict(d),
            _ => unreachable!("dict() builds a dictionary"),
        }
    }

    fn list(v: &[&str]) -> Value {
        Value::List(v.iter().map(|x| text(*x)).collect())
    }

    #[test]
    fn what_kamailio_sends_for_a_plain_call_warns_of_nothing() {
        // Captured from Kamailio 5.6 for rtpengine_offer("replace-origin replace-session-connection ICE=remove RTP/AVP").
        let d = request(vec![
            ("command", text("offer")),
            ("supports", list(&["load limit"])),
            ("ICE", text("remove")),
            ("replace", list(&["origin", "session-connection"])),
            ("transport-protocol", text("RTP/AVP")),
            ("received-from", list(&["IP4", "127.0.0.1"])),
            ("flags", list(&["trust-address", "symmetric", "room=conf1"])),
            ("DTLS", text("off")),
        ]);
        assert_eq!(warning(&d), None);
    }

    #[test]
    fn what_is_not_done_is_named() {
        let d = request(vec![
            ("flags", list(&["trust-address", "strict-source", "always-transcode"])),
            ("record-call", text("yes")),
            ("ICE", text("force-relay")),
        ]);
        let w = warning(&d).unwrap();
        assert!(w.contains("strict-source, always-transcode"), "{w}");
        assert!(!w.contains("trust-address"), "{w}");
        assert!(w.contains("record-call"), "{w}");
        assert!(w.contains("ICE=force-relay"), "{w}");
        let d = request(vec![("flags", list(&["RECORD-CALL"]))]);
        assert_eq!(warning(&d).unwrap(), "record-call: recording is not supported yet");
    }
}
