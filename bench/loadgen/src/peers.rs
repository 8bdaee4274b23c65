//! Control protocols of the peers Switchboard is measured against: Janus's HTTP API (AudioBridge
//! and VideoRoom plugins) and rtpengine's ng protocol (bencode over UDP).

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- Janus

pub struct Janus {
    agent: ureq::Agent,
    base: String,
    pub session: u64,
    events: Vec<Value>,
    next_tx: u64,
}

impl Janus {
    pub fn connect(base: &str) -> Result<Janus> {
        let mut j = Janus {
            agent: crate::sb::agent(),
            base: base.trim_end_matches('/').to_owned(),
            session: 0,
            events: Vec::new(),
            next_tx: 1,
        };
        let r = j.post(&j.base.clone(), json!({"janus": "create"}))?;
        j.session = r["data"]["id"].as_u64().ok_or_else(|| anyhow!("janus create: {r}"))?;
        Ok(j)
    }

    fn post(&mut self, url: &str, mut body: Value) -> Result<Value> {
        let tx = format!("t{}", self.next_tx);
        self.next_tx += 1;
        body["transaction"] = json!(tx);
        let r: Value = self
            .agent
            .post(url)
            .send_json(body)
            .map_err(|e| anyhow!("janus POST {url}: {}", crate::sb::describe(e)))?
            .into_json()?;
        if r["janus"] == "error" {
            bail!("janus error: {r}");
        }
        Ok(r)
    }

    pub fn attach(&mut self, plugin: &str) -> Result<u64> {
        let url = format!("{}/{}", self.base, self.session);
        let r = self.post(&url, json!({"janus": "attach", "plugin": plugin}))?;
        r["data"]["id"].as_u64().ok_or_else(|| anyhow!("janus attach: {r}"))
    }

    /// Sends a plugin request; returns the plugin's data, waiting for the event of asynchronous
    /// requests.
    pub fn message(&mut self, handle: u64, body: Value) -> Result<Value> {
        self.message_jsep(handle, body, None).map(|(data, _)| data)
    }

    /// [`Janus::message`] with an SDP (`{"type": "offer" | "answer", "sdp": ...}`) attached;
    /// returns the plugin's data and the SDP Janus attached to its answer, if any.
    pub fn message_jsep(&mut self, handle: u64, body: Value, jsep: Option<Value>) -> Result<(Value, Option<Value>)> {
        let url = format!("{}/{}/{}", self.base, self.session, handle);
        let mut req = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            req["jsep"] = j;
        }
        let r = self.post(&url, req)?;
        let ev = match r["janus"].as_str() {
            Some("success") => r,
            Some("ack") => {
                let tx = r["transaction"].as_str().unwrap_or_default().to_owned();
                self.wait_event(&tx, Duration::from_secs(15))?
            }
            _ => bail!("janus message: unexpected {r}"),
        };
        let data = ev["plugindata"]["data"].clone();
        if data.get("error").is_some() {
            bail!("janus plugin error: {data}");
        }
        Ok((data, ev.get("jsep").cloned()))
    }

    /// Tells Janus that the handle's peer has no more ICE candidates than its SDP carried.
    pub fn trickle_done(&mut self, handle: u64) -> Result<()> {
        let url = format!("{}/{}/{}", self.base, self.session, handle);
        self.post(&url, json!({"janus": "trickle", "candidate": {"completed": true}})).map(|_| ())
    }

    fn wait_event(&mut self, tx: &str, limit: Duration) -> Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.events.iter().position(|e| e["transaction"] == tx) {
                return Ok(self.events.remove(i));
            }
            if Instant::now() > deadline {
                bail!("janus: no event for transaction {tx}");
            }
            let url = format!("{}/{}?maxev=50", self.base, self.session);
            let r: Value = self
                .agent
                .get(&url)
                .call()
                .map_err(|e| anyhow!("janus long poll: {}", crate::sb::describe(e)))?
                .into_json()?;
            match r {
                Value::Array(a) => self.events.extend(a.into_iter().filter(|e| e["janus"] != "keepalive")),
                v if v["janus"] != "keepalive" => self.events.push(v),
                _ => {}
            }
            // Unclaimed events (joins of others, talking events) must not pile up.
            if self.events.len() > 10_000 {
                self.events.drain(..5_000);
            }
        }
    }

    pub fn destroy(&mut self) {
        let url = format!("{}/{}", self.base, self.session);
        let _ = self.post(&url, json!({"janus": "destroy"}));
    }
}

// ---------------------------------------------------------------- rtpengine ng

#[derive(Debug, Clone, PartialEq)]
pub enum Bencode {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Bencode>),
    Dict(BTreeMap<Vec<u8>, Bencode>),
}

impl Bencode {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Bencode::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Bencode::List(l) => {
                out.push(b'l');
                for x in l {
                    x.encode(out);
                }
                out.push(b'e');
            }
            Bencode::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Bencode::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    pub fn decode(data: &[u8]) -> Result<(Bencode, usize)> {
        let c = *data.first().ok_or_else(|| anyhow!("bencode: empty"))?;
        match c {
            b'i' => {
                let end = data.iter().position(|&b| b == b'e').ok_or_else(|| anyhow!("bencode: int"))?;
                let v = std::str::from_utf8(&data[1..end])?.parse()?;
                Ok((Bencode::Int(v), end + 1))
            }
            b'l' => {
                let mut pos = 1;
                let mut l = Vec::new();
                while *data.get(pos).ok_or_else(|| anyhow!("bencode: list"))? != b'e' {
                    let (v, n) = Bencode::decode(&data[pos..])?;
                    l.push(v);
                    pos += n;
                }
                Ok((Bencode::List(l), pos + 1))
            }
            b'd' => {
                let mut pos = 1;
                let mut d = BTreeMap::new();
                while *data.get(pos).ok_or_else(|| anyhow!("bencode: dict"))? != b'e' {
                    let (k, n) = Bencode::decode(&data[pos..])?;
                    pos += n;
                    let (v, n) = Bencode::decode(&data[pos..])?;
                    pos += n;
                    if let Bencode::Bytes(k) = k {
                        d.insert(k, v);
                    }
                }
                Ok((Bencode::Dict(d), pos + 1))
            }
            b'0'..=b'9' => {
                let colon = data.iter().position(|&b| b == b':').ok_or_else(|| anyhow!("bencode: string"))?;
                let len: usize = std::str::from_utf8(&data[..colon])?.parse()?;
                let start = colon + 1;
                if data.len() < start + len {
                    bail!("bencode: short string");
                }
                Ok((Bencode::Bytes(data[start..start + len].to_vec()), start + len))
            }
            _ => bail!("bencode: unexpected byte {c}"),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    pub fn str(&self) -> Option<&str> {
        match self {
            Bencode::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

pub fn dict(pairs: &[(&str, Bencode)]) -> Bencode {
    Bencode::Dict(pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.clone())).collect())
}

pub fn bstr(s: &str) -> Bencode {
    Bencode::Bytes(s.as_bytes().to_vec())
}

pub struct Rtpengine {
    sock: UdpSocket,
    next: u64,
}

impl Rtpengine {
    pub fn connect(ng: SocketAddr) -> Result<Rtpengine> {
        let sock = UdpSocket::bind("127.0.0.1:0").context("ng socket")?;
        sock.connect(ng)?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Rtpengine { sock, next: 1 })
    }

    pub fn request(&mut self, msg: &Bencode) -> Result<Bencode> {
        let cookie = format!("lg{}", self.next);
        self.next += 1;
        let mut out = cookie.clone().into_bytes();
        out.push(b' ');
        msg.encode(&mut out);
        let mut buf = vec![0u8; 65536];
        for _attempt in 0..3 {
            self.sock.send(&out)?;
            let n = match self.sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    continue
                }
                Err(e) => return Err(e.into()),
            };
            let d = &buf[..n];
            let sp = d.iter().position(|&b| b == b' ').ok_or_else(|| anyhow!("ng: no cookie"))?;
            if &d[..sp] != cookie.as_bytes() {
                continue;
            }
            let (v, _) = Bencode::decode(&d[sp + 1..])?;
            if v.get("result").and_then(|r| r.str()) != Some("ok") {
                bail!("rtpengine: {:?}", v.get("error-reason").and_then(|r| r.str()).unwrap_or("error"));
            }
            return Ok(v);
        }
        bail!("rtpengine: no reply")
    }

    /// Offer from leg A, answer from leg B; returns (SDP for B, SDP for A).
    pub fn call(&mut self, call_id: &str, sdp_a: &str, sdp_b: &str) -> Result<(String, String)> {
        let offer = self.request(&dict(&[
            ("command", bstr("offer")),
            ("call-id", bstr(call_id)),
            ("from-tag", bstr("a")),
            ("sdp", bstr(sdp_a)),
        ]))?;
        let to_b = offer.get("sdp").and_then(|s| s.str()).ok_or_else(|| anyhow!("offer: no sdp"))?.to_owned();
        let answer = self.request(&dict(&[
            ("command", bstr("answer")),
            ("call-id", bstr(call_id)),
            ("from-tag", bstr("a")),
            ("to-tag", bstr("b")),
            ("sdp", bstr(sdp_b)),
        ]))?;
        let to_a = answer.get("sdp").and_then(|s| s.str()).ok_or_else(|| anyhow!("answer: no sdp"))?.to_owned();
        Ok((to_b, to_a))
    }

    pub fn delete(&mut self, call_id: &str) {
        let _ =
            self.request(&dict(&[("command", bstr("delete")), ("call-id", bstr(call_id)), ("from-tag", bstr("a"))]));
    }
}
