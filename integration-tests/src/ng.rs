//! An rtpengine ng client, as Kamailio's `rtpengine` module is one: `<cookie> <bencode>` over
//! UDP, and readers for the bencoded replies.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::Duration;

use serde_bencode::value::Value as B;

/// A reply dictionary.
pub type NgReply = HashMap<Vec<u8>, B>;

/// A bencoded dictionary from `(key, value)` pairs.
pub fn bdict(pairs: &[(&str, B)]) -> B {
    B::Dict(pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.clone())).collect())
}

/// A bencoded string.
pub fn bstr(v: &str) -> B {
    B::Bytes(v.as_bytes().to_vec())
}

/// A bencoded list of strings.
pub fn blist(v: &[&str]) -> B {
    B::List(v.iter().map(|x| bstr(x)).collect())
}

pub struct Ng {
    sock: UdpSocket,
    to: String,
    n: u32,
}

impl Ng {
    /// A client of the ng server at `127.0.0.1:port`.
    pub fn new(port: u16) -> Ng {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind an ng client socket");
        sock.set_read_timeout(Some(Duration::from_secs(5))).expect("set a read timeout");
        Ng { sock, to: format!("127.0.0.1:{port}"), n: 0 }
    }

    /// Sends raw bytes with a fresh cookie (or `cookie`); returns the reply's cookie and dictionary.
    pub fn raw(&mut self, cookie: Option<&str>, body: &[u8]) -> (String, NgReply) {
        self.n += 1;
        let cookie = cookie.map(str::to_string).unwrap_or_else(|| format!("{}_{}", std::process::id(), self.n));
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend_from_slice(body);
        self.sock.send_to(&msg, &self.to).expect("send an ng request");
        let mut buf = vec![0u8; 65536];
        let (n, _) = self.sock.recv_from(&mut buf).expect("an ng reply");
        let reply = &buf[..n];
        let space = reply.iter().position(|&b| b == b' ').expect("cookie in the reply");
        let got_cookie = String::from_utf8_lossy(&reply[..space]).to_string();
        assert_eq!(got_cookie, cookie, "the reply carries the request's cookie");
        match serde_bencode::from_bytes::<B>(&reply[space + 1..]).expect("a bencoded reply") {
            B::Dict(d) => (got_cookie, d),
            other => panic!("reply is not a dictionary: {other:?}"),
        }
    }

    /// One command from `(key, value)` pairs; its reply.
    pub fn cmd(&mut self, pairs: &[(&str, B)]) -> NgReply {
        let body = serde_bencode::to_bytes(&bdict(pairs)).expect("encode an ng request");
        self.raw(None, &body).1
    }

    /// The call-ids `list` reports.
    pub fn list(&mut self) -> Vec<String> {
        let reply = self.cmd(&[("command", bstr("list"))]);
        assert_eq!(ng_text(&reply, "result"), "ok", "{reply:?}");
        match reply.get(b"calls".as_slice()) {
            Some(B::List(items)) => items
                .iter()
                .map(|v| match v {
                    B::Bytes(b) => String::from_utf8_lossy(b).to_string(),
                    other => panic!("a call-id that is not a string: {other:?}"),
                })
                .collect(),
            other => panic!("list: calls is {other:?}"),
        }
    }
}

/// `key` of a reply as text; panics, showing the reply, when it is absent or not a string.
pub fn ng_text(d: &NgReply, key: &str) -> String {
    match d.get(key.as_bytes()) {
        Some(B::Bytes(b)) => String::from_utf8_lossy(b).to_string(),
        other => panic!("{key}: {other:?} in {d:?}"),
    }
}

/// The integer at `path` (dictionary keys, or list indices) below `v`.
pub fn ng_int(v: &B, path: &[&str]) -> i64 {
    let mut cur = v;
    for k in path {
        cur = match cur {
            B::Dict(d) => d.get(k.as_bytes()).unwrap_or_else(|| panic!("no {k} in {cur:?}")),
            B::List(items) => {
                k.parse::<usize>().ok().and_then(|i| items.get(i)).unwrap_or_else(|| panic!("no {k} in {cur:?}"))
            }
            _ => panic!("{k}: not a container"),
        };
    }
    match cur {
        B::Int(i) => *i,
        other => panic!("{path:?}: {other:?}"),
    }
}
