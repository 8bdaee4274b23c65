//! A one-connection HTTP server for the harness's own unit tests of its HTTP and SSE readers.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

/// A server for one connection: reads the request (one read), then lets `respond` answer.
/// Returns its base URL and its thread.
pub(crate) fn serve_once(respond: impl FnOnce(&mut TcpStream) + Send + 'static) -> (String, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let srv = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        respond(&mut s);
    });
    (base, srv)
}
