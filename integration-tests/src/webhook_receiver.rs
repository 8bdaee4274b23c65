//! A webhook receiver on loopback: takes the daemon's POSTs (keep-alive or not), answers 200,
//! and keeps each request as it arrived, so a test can verify its signature against its exact
//! bytes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::clock::poll_until;

/// One POST as it arrived.
#[derive(Clone, Debug)]
pub struct WebhookPost {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The body's bytes exactly as received (what the `sha256` claim covers).
    pub body: Vec<u8>,
    /// The body parsed (`Value::Null` if it is not JSON).
    pub json: Value,
    pub at: Instant,
}

impl WebhookPost {
    /// The body's `event`.
    pub fn event(&self) -> &str {
        self.json["event"].as_str().unwrap_or("")
    }

    /// The token of `Authorization: Bearer <token>`.
    pub fn bearer(&self) -> Option<&str> {
        self.headers.get("authorization").and_then(|v| v.strip_prefix("Bearer "))
    }
}

/// Receives POSTs on `127.0.0.1:<some port>` until the test process ends.
pub struct WebhookReceiver {
    pub base_url: String,
    posts: Arc<Mutex<Vec<WebhookPost>>>,
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the webhook receiver");
        let base_url = format!("http://{}", l.local_addr().expect("its address"));
        let posts: Arc<Mutex<Vec<WebhookPost>>> = Arc::default();
        let keep = posts.clone();
        thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let keep = keep.clone();
                thread::spawn(move || serve(conn, &keep));
            }
        });
        WebhookReceiver { base_url, posts }
    }

    /// The receiver's URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Every POST so far, in arrival order.
    pub fn posts(&self) -> Vec<WebhookPost> {
        self.posts.lock().expect("receiver lock").clone()
    }

    /// Waits up to `timeout` until `done` holds for the POSTs so far, and returns them; panics
    /// with what arrived otherwise.
    #[track_caller]
    pub fn wait_until(&self, timeout: Duration, what: &str, done: impl Fn(&[WebhookPost]) -> bool) -> Vec<WebhookPost> {
        poll_until(timeout, || Some(self.posts()).filter(|p| done(p))).unwrap_or_else(|| {
            let seen: Vec<String> = self.posts().iter().map(|p| p.event().to_string()).collect();
            panic!("the webhook receiver did not get {what} within {timeout:?}; it got {seen:?}")
        })
    }
}

/// A URL on a loopback port nobody listens on: every connection is refused at once.
pub fn closed_port_url(path: &str) -> String {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    format!("http://127.0.0.1:{port}{path}")
}

fn serve(mut s: TcpStream, posts: &Mutex<Vec<WebhookPost>>) {
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    while let Some(post) = read_request(&mut s) {
        posts.lock().expect("receiver lock").push(post);
        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

fn read_request(s: &mut TcpStream) -> Option<WebhookPost> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut request_line = lines.next()?.split_whitespace();
    let (method, path) = (request_line.next()?.to_string(), request_line.next()?.to_string());
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Some(WebhookPost { method, path, headers, body, json, at: Instant::now() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_each_post_of_a_kept_alive_connection() {
        let r = WebhookReceiver::start();
        let mut s = TcpStream::connect(r.base_url.trim_start_matches("http://")).unwrap();
        for body in [r#"{"event":"a"}"#, r#"{"event":"b"}"#] {
            write!(
                s,
                "POST /in HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0k\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut answer = [0u8; 64];
            let n = s.read(&mut answer).unwrap();
            assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&answer[..n]));
        }
        let posts = r.wait_until(Duration::from_secs(2), "two posts", |p| p.len() == 2);
        assert_eq!(posts.iter().map(WebhookPost::event).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((posts[0].method.as_str(), posts[0].path.as_str(), posts[0].bearer()), ("POST", "/in", Some("t0k")));
    }
}
