//! The HTTP API client: JSON calls that answer `(status, body)`, and a raw request that still
//! reads the answer after a refused upload.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::daemon::Daemon;
use crate::tokens::admin_token;

/// The body as JSON: `Null` when empty, a JSON string when it is not JSON, so a test can print
/// whatever came back.
fn body_to_json(text: String) -> Value {
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

/// The agent every JSON call uses: short connect, generous answer (the daemon may be loaded).
pub(crate) fn default_agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(2)).timeout(Duration::from_secs(15)).build()
}

/// `host:port` of `http://host:port/`.
pub(crate) fn host_of(base_url: &str) -> &str {
    base_url.trim_start_matches("http://").trim_end_matches('/')
}

/// True for a `Transfer-Encoding: chunked` header.
pub(crate) fn is_chunked_header(name: &str, value: &str) -> bool {
    name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked")
}

/// The size of a chunk from its size line (extensions after `;` ignored), `None` if unreadable.
pub(crate) fn chunk_size(line: &str) -> Option<usize> {
    usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).ok()
}

/// An error status is an answer like any other here: only a transport error is an `Err` (boxed,
/// as ureq's error is large).
fn status_and_text(res: Result<ureq::Response, ureq::Error>) -> Result<(u16, String), Box<ureq::Error>> {
    match res {
        Ok(r) => Ok((r.status(), r.into_string().unwrap_or_default())),
        Err(ureq::Error::Status(s, r)) => Ok((s, r.into_string().unwrap_or_default())),
        Err(e) => Err(Box::new(e)),
    }
}

/// One JSON request with the harness's admin token. Returns (status, body); panics only on
/// transport errors.
pub fn http_call(agent: &ureq::Agent, method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    http_call_as(agent, Some(admin_token()), method, url, body)
}

/// One JSON request with `token` as its Bearer token, or none.
pub fn http_call_as(
    agent: &ureq::Agent,
    token: Option<&str>,
    method: &str,
    url: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = agent.request(method, url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some(b) => req.send_json(b.clone()),
        None => req.call(),
    };
    match status_and_text(res) {
        Ok((status, text)) => (status, body_to_json(text)),
        Err(e) => panic!("{method} {url}: transport error: {e}"),
    }
}

pub fn get_json(url: &str) -> (u16, Value) {
    http_call(&default_agent(), "GET", url, None)
}
pub fn post_json(url: &str, body: &Value) -> (u16, Value) {
    http_call(&default_agent(), "POST", url, Some(body))
}
pub fn patch_json(url: &str, body: &Value) -> (u16, Value) {
    http_call(&default_agent(), "PATCH", url, Some(body))
}
pub fn delete(url: &str) -> (u16, Value) {
    http_call(&default_agent(), "DELETE", url, None)
}

/// The daemon's API: (status, body as JSON; Null when empty, a String when not JSON).
impl Daemon {
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        http_call(&self.agent, "GET", &self.url(path), None)
    }
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        http_call(&self.agent, "POST", &self.url(path), Some(body))
    }
    pub fn patch_json(&self, path: &str, body: &Value) -> (u16, Value) {
        http_call(&self.agent, "PATCH", &self.url(path), Some(body))
    }
    pub fn delete(&self, path: &str) -> (u16, Value) {
        http_call(&self.agent, "DELETE", &self.url(path), None)
    }
    /// A JSON call with `token` (or none) instead of the harness's admin token.
    pub fn call_as(&self, token: Option<&str>, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        http_call_as(&self.agent, token, method, &self.url(path), body)
    }
    /// GET returning the raw text (e.g. `/metrics`).
    pub fn get_text(&self, path: &str) -> (u16, String) {
        let req = self.agent.get(&self.url(path)).set("Authorization", &format!("Bearer {}", admin_token()));
        status_and_text(req.call()).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }
    /// A raw request over a fresh TCP connection; see [`raw_http`].
    pub fn raw(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> RawResponse {
        raw_http(&self.base_url, method, path, content_type, body)
    }
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Set when the upload could not be completed (the server answered and closed early).
    pub write_error: Option<String>,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        body_to_json(self.body.clone())
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP/1.1 request on a fresh connection (`Connection: close`). Unlike an HTTP client
/// library it keeps reading after a failed upload, so an early answer to an oversized body
/// (413) is still seen. Panics if no status line could be read.
pub fn raw_http(base_url: &str, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> RawResponse {
    let auth = format!("Authorization: Bearer {}", admin_token());
    raw_http_with(base_url, method, path, &[content_type.map(|c| format!("Content-Type: {c}")), Some(auth)], body)
}

/// [`raw_http`] with the given header lines (`Name: value`) and no others.
pub fn raw_http_with(base_url: &str, method: &str, path: &str, headers: &[Option<String>], body: &[u8]) -> RawResponse {
    let host = host_of(base_url);
    let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(15))).ok();
    s.set_write_timeout(Some(Duration::from_secs(15))).ok();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for h in headers.iter().flatten() {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut write_error = None;
    if let Err(e) = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body)) {
        write_error = Some(e.to_string());
    }
    let mut raw = Vec::new();
    let read_res = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        panic!(
            "{method} {path}: no HTTP response (read: {read_res:?}, write error: {write_error:?}, got {} bytes: {:?})",
            raw.len(),
            &text[..text.len().min(200)]
        );
    };
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))).collect();
    let chunked = headers.iter().any(|(k, v)| is_chunked_header(k, v));
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    RawResponse { status, headers, body, write_error }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, rest)) = s.split_once("\r\n") {
        let size = chunk_size(size_line).unwrap_or(0);
        if size == 0 || rest.len() < size {
            out.push_str(&rest[..rest.len().min(size)]);
            break;
        }
        out.push_str(&rest[..size]);
        s = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde_json::json;

    use super::*;
    use crate::fake_server::serve_once;

    #[test]
    fn raw_http_reads_chunked_body() {
        let (base, srv) = serve_once(|s| {
            write!(s, "HTTP/1.1 413 Payload Too Large\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{{\"a\":\r\n2\r\n1}}\r\n0\r\n\r\n").unwrap();
        });
        let r = raw_http(&base, "POST", "/x", Some("application/json"), b"{}");
        assert_eq!(r.status, 413);
        assert_eq!(r.json(), json!({"a": 1}));
        srv.join().unwrap();
    }
}
