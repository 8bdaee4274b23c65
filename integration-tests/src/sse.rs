//! The event stream reader: follows `/v1/rooms/{room}/events` in a thread and lets a test wait
//! for an event by name and content.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::{chunk_size, host_of, is_chunked_header};

/// One server-sent event.
#[derive(Clone, Debug)]
pub struct SseEvent {
    pub event: String,
    /// `data:` parsed as JSON (a JSON string if it is not JSON).
    pub data: Value,
    pub at: Instant,
}

#[derive(Default)]
struct SseState {
    events: Vec<SseEvent>,
    closed: Option<String>,
}

/// Follows an SSE endpoint in a background thread and collects `(event, data)`.
pub struct SseClient {
    pub status: u16,
    pub content_type: String,
    path: String,
    state: Arc<(Mutex<SseState>, Condvar)>,
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
}

impl SseClient {
    /// Connects and returns once the response headers arrived (so the subscription is live).
    /// Panics if the endpoint does not answer.
    pub fn connect(base_url: &str, path: &str) -> SseClient {
        SseClient::connect_as(base_url, path, crate::tokens::admin_token())
    }

    /// [`SseClient::connect`] with `token` instead of the harness's admin token.
    pub fn connect_as(base_url: &str, path: &str, token: &str) -> SseClient {
        let host = host_of(base_url).to_string();
        let stream = TcpStream::connect(&host).unwrap_or_else(|e| panic!("SSE connect {host}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut w = stream.try_clone().expect("clone socket");
        write!(
            w,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .expect("send SSE request");
        let mut reader = BufReader::new(stream.try_clone().expect("clone socket"));
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap_or_else(|e| panic!("SSE {path}: no response: {e}"));
        let status: u16 = status_line.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
        let mut content_type = String::new();
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-type") {
                    content_type = v.trim().to_string();
                }
                chunked |= is_chunked_header(k, v);
            }
        }
        // Events may be minutes apart; the reader thread blocks until the socket is shut down.
        stream.set_read_timeout(None).ok();
        let state: Arc<(Mutex<SseState>, Condvar)> = Arc::default();
        let st = state.clone();
        let thread = if status == 200 { Some(thread::spawn(move || sse_reader(reader, chunked, st))) } else { None };
        SseClient { status, content_type, path: path.to_string(), state, stream, thread }
    }

    /// All events received so far.
    pub fn events(&self) -> Vec<SseEvent> {
        self.state.0.lock().unwrap().events.clone()
    }

    /// Names of the events received so far, in order.
    pub fn names(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.event).collect()
    }

    /// Waits for the first event named `name` (received at any time) and returns its data.
    /// Panics after `timeout`, listing what did arrive.
    pub fn wait_for(&self, name: &str, timeout: Duration) -> Value {
        self.wait_for_matching(name, |_| true, timeout)
    }

    /// Waits for the first event named `name` whose data satisfies `pred`.
    pub fn wait_for_matching(&self, name: &str, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        self.wait_for_event_matching(name, pred, timeout).data
    }

    /// Waits for the first event named `name` about participant `id` (see
    /// [`event_participant_id`]) and returns it, with its arrival time.
    pub fn wait_for_participant_event(&self, name: &str, id: &str, timeout: Duration) -> SseEvent {
        self.wait_for_event_matching(name, |v| event_participant_id(v).as_deref() == Some(id), timeout)
    }

    /// Like [`SseClient::wait_for_matching`], returning the whole event.
    pub fn wait_for_event_matching(&self, name: &str, pred: impl Fn(&Value) -> bool, timeout: Duration) -> SseEvent {
        match self.try_wait_for_event(name, pred, timeout) {
            Some(e) => e,
            None => {
                let st = self.state.0.lock().unwrap();
                let seen: Vec<String> = st.events.iter().map(|e| format!("{}: {}", e.event, e.data)).collect();
                panic!(
                    "no SSE event {name:?} (matching) on {} within {timeout:?}; HTTP status {}; stream closed: {:?}; received: {seen:#?}",
                    self.path, self.status, st.closed
                );
            }
        }
    }

    pub fn try_wait_for_matching(&self, name: &str, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        self.try_wait_for_event(name, pred, timeout).map(|e| e.data)
    }

    fn try_wait_for_event(&self, name: &str, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.state;
        let mut st = lock.lock().unwrap();
        loop {
            if let Some(e) = st.events.iter().find(|e| e.event == name && pred(&e.data)) {
                return Some(e.clone());
            }
            let now = Instant::now();
            if now >= deadline || st.closed.is_some() {
                return None;
            }
            st = cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Changes the shared state and wakes every test waiting on it.
fn publish(state: &(Mutex<SseState>, Condvar), change: impl FnOnce(&mut SseState)) {
    let (lock, cv) = state;
    change(&mut lock.lock().unwrap());
    cv.notify_all();
}

/// Reads the body (de-chunking if needed) line by line and dispatches events.
fn sse_reader(mut reader: BufReader<TcpStream>, chunked: bool, state: Arc<(Mutex<SseState>, Condvar)>) {
    let mut pending = String::new(); // de-chunked bytes not yet split into lines
    let mut event = String::new();
    let mut data: Vec<String> = Vec::new();
    let close = |why: String| publish(&state, |st| st.closed = Some(why));
    loop {
        // Get more body text.
        let piece = if chunked {
            let mut size_line = String::new();
            match reader.read_line(&mut size_line) {
                Ok(0) => return close("eof".into()),
                Err(e) => return close(e.to_string()),
                Ok(_) => {}
            }
            let Some(size) = chunk_size(&size_line) else {
                return close(format!("bad chunk size line {size_line:?}"));
            };
            if size == 0 {
                return close("end of chunked body".into());
            }
            let mut buf = vec![0u8; size + 2];
            if let Err(e) = reader.read_exact(&mut buf) {
                return close(e.to_string());
            }
            buf.truncate(size);
            String::from_utf8_lossy(&buf).into_owned()
        } else {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return close("eof".into()),
                Err(e) => return close(e.to_string()),
                Ok(_) => line,
            }
        };
        pending.push_str(&piece);
        while let Some(pos) = pending.find('\n') {
            let line: String = pending.drain(..=pos).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() || !event.is_empty() {
                    let raw = data.join("\n");
                    let ev = SseEvent {
                        event: if event.is_empty() { "message".into() } else { std::mem::take(&mut event) },
                        data: serde_json::from_str(&raw).unwrap_or(Value::String(raw)),
                        at: Instant::now(),
                    };
                    event.clear();
                    data.clear();
                    publish(&state, |st| st.events.push(ev));
                }
            } else if line.starts_with(':') {
                // comment / keep-alive
            } else {
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "event" => event = value.to_string(),
                    "data" => data.push(value.to_string()),
                    _ => {}
                }
            }
        }
    }
}

/// The participant id an event's data refers to: `participant_id`, `participant.id` or `id`.
pub fn event_participant_id(data: &Value) -> Option<String> {
    data["participant_id"]
        .as_str()
        .or_else(|| data["participant"]["id"].as_str())
        .or_else(|| data["id"].as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::serve_once;

    #[test]
    fn sse_parser_handles_chunked_events() {
        // A tiny server that speaks SSE over chunked encoding, with a split event and a comment.
        let (base, srv) = serve_once(|s| {
            let chunks = [
                ": keep-alive\n\n",
                "event: participant_joined\ndata: {\"id\":",
                "\"p1\"}\n\n",
                "event: participant_left\r\ndata: {\"id\":\"p1\"}\r\n\r\n",
            ];
            write!(s, "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                .unwrap();
            for c in chunks {
                write!(s, "{:x}\r\n{}\r\n", c.len(), c).unwrap();
                s.flush().unwrap();
                thread::sleep(Duration::from_millis(20));
            }
            thread::sleep(Duration::from_millis(300));
        });
        let sse = SseClient::connect(&base, "/v1/rooms/r/events");
        assert_eq!(sse.status, 200);
        assert_eq!(sse.content_type, "text/event-stream");
        let j = sse.wait_for("participant_joined", Duration::from_secs(2));
        assert_eq!(j["id"], "p1");
        let l = sse.wait_for("participant_left", Duration::from_secs(2));
        assert_eq!(l["id"], "p1");
        assert_eq!(sse.names(), vec!["participant_joined", "participant_left"]);
        srv.join().unwrap();
    }
}
