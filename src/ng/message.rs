//! One ng datagram: `<cookie> <bencoded dictionary>`, and the reply in the same shape. The cookie
//! is the proxy's own (it matches replies to requests and spots retransmissions).

use serde_bencode::value::Value;
use std::collections::HashMap;

/// The most an ng message may be: a few SDPs and flags. rtpengine's own buffer is 64 KiB.
pub const MAX_MESSAGE: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("no cookie: an ng message is '<cookie> <bencoded dictionary>'")]
    NoCookie,
    #[error("the message is not bencode")]
    NotBencode,
    #[error("the message is not a bencoded dictionary")]
    NotDictionary,
    #[error("message over {MAX_MESSAGE} bytes")]
    TooLong,
}

/// A parsed request: its cookie and its dictionary.
#[derive(Debug, Clone)]
pub struct Message {
    pub cookie: String,
    pub dict: Dict,
}

/// A bencoded dictionary with the look-ups the commands need: strings, and lists of strings.
#[derive(Debug, Clone, Default)]
pub struct Dict(pub HashMap<Vec<u8>, Value>);

impl Dict {
    /// `key` as UTF-8 text (a bencoded byte string); `None` when absent or another type.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.0.get(key.as_bytes())? {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// `key` as a list of strings; a single string counts as a list of one (proxies send both).
    pub fn strs(&self, key: &str) -> Vec<&str> {
        match self.0.get(key.as_bytes()) {
            Some(Value::List(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::Bytes(b) => std::str::from_utf8(b).ok(),
                    _ => None,
                })
                .collect(),
            Some(Value::Bytes(b)) => std::str::from_utf8(b).ok().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether `flag` is among the `flags` list (case-insensitive, as rtpengine reads them).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.strs("flags").iter().any(|f| f.eq_ignore_ascii_case(flag))
    }

    /// The value of a `name=value` flag, e.g. `room=conf1`.
    pub fn flag_value(&self, name: &str) -> Option<&str> {
        self.strs("flags").into_iter().find_map(|f| {
            let (k, v) = f.split_once('=')?;
            k.eq_ignore_ascii_case(name).then_some(v)
        })
    }
}

/// Splits and decodes one datagram.
pub fn parse(datagram: &[u8]) -> Result<Message, MessageError> {
    if datagram.len() > MAX_MESSAGE {
        return Err(MessageError::TooLong);
    }
    let space = datagram.iter().position(|&b| b == b' ').ok_or(MessageError::NoCookie)?;
    let cookie = std::str::from_utf8(&datagram[..space]).map_err(|_| MessageError::NoCookie)?;
    if cookie.is_empty() || cookie.len() > 256 || !cookie.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(MessageError::NoCookie);
    }
    let value: Value = serde_bencode::from_bytes(&datagram[space + 1..]).map_err(|_| MessageError::NotBencode)?;
    match value {
        Value::Dict(d) => Ok(Message { cookie: cookie.to_string(), dict: Dict(d) }),
        _ => Err(MessageError::NotDictionary),
    }
}

/// The cookie of a datagram that did not parse, if it has one, so the error reply can carry it.
pub fn cookie_of(datagram: &[u8]) -> Option<&str> {
    let space = datagram.iter().position(|&b| b == b' ')?;
    std::str::from_utf8(&datagram[..space]).ok().filter(|c| !c.is_empty() && c.len() <= 256)
}

/// Builds a reply dictionary from `(key, value)` pairs.
pub fn dict(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Dict(pairs.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect())
}

pub fn text(s: impl Into<String>) -> Value {
    Value::Bytes(s.into().into_bytes())
}

/// `<cookie> <bencoded reply>`.
pub fn encode(cookie: &str, reply: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.len() + 64);
    out.extend_from_slice(cookie.as_bytes());
    out.push(b' ');
    // Encoding a Value we built cannot fail: it has only strings, integers, lists and dicts.
    out.extend(serde_bencode::to_bytes(reply).unwrap_or_default());
    out
}

/// An error reply, as rtpengine sends one.
pub fn error(reason: impl Into<String>) -> Value {
    dict([("result", text("error")), ("error-reason", text(reason))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_parses_and_a_reply_encodes() {
        let m = parse(b"5323_1 d7:command4:pinge").unwrap();
        assert_eq!(m.cookie, "5323_1");
        assert_eq!(m.dict.str("command"), Some("ping"));
        let r = encode(&m.cookie, &dict([("result", text("pong"))]));
        assert_eq!(r, b"5323_1 d6:result4:ponge");
    }

    #[test]
    fn flags_and_lists_are_read_as_proxies_send_them() {
        let list = |v: &[&str]| Value::List(v.iter().map(|x| text(*x)).collect());
        let body = dict([
            ("command", text("offer")),
            ("flags", list(&["trust-address", "room=conf1"])),
            ("replace", text("origin")),
            ("ICE", text("remove")),
        ]);
        let mut datagram = b"c ".to_vec();
        datagram.extend(serde_bencode::to_bytes(&body).unwrap());
        let m = parse(&datagram).unwrap();
        assert!(m.dict.has_flag("TRUST-ADDRESS"));
        assert_eq!(m.dict.flag_value("room"), Some("conf1"));
        assert_eq!(m.dict.strs("replace"), vec!["origin"]);
        assert_eq!(m.dict.str("ICE"), Some("remove"));
        assert_eq!(m.dict.str("flags"), None);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert_eq!(parse(b"nocookie").unwrap_err(), MessageError::NoCookie);
        assert_eq!(parse(b"c d7:command").unwrap_err(), MessageError::NotBencode);
        assert_eq!(parse(b"c i42e").unwrap_err(), MessageError::NotDictionary);
        assert_eq!(parse(b" d7:command4:pinge").unwrap_err(), MessageError::NoCookie);
        assert_eq!(cookie_of(b"abc d7:comm"), Some("abc"));
    }
}
