//! A `redis-server` of the test's own on a loopback port, with no persistence: what a cluster
//! of test daemons shares. Killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::{reserve_ports, PortBlock};
use crate::prometheus::require_tool;

pub struct RedisServer {
    child: Child,
    pub port: u16,
    _ports: PortBlock,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        require_tool("redis-server", "redis-server");
        // A harness block's HTTP port is a TCP port no other test takes.
        let ports = reserve_ports();
        let port = ports.http;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let r = RedisServer { child, port, _ports: ports };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if r.command("PING").is_some_and(|a| a.starts_with("+PONG")) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not answer PING on 127.0.0.1:{port} within 10 s");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// One inline command, and the first reply's raw bytes as text.
    pub fn command(&self, cmd: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
