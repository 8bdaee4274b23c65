//! The real daemon stops cleanly on SIGTERM: joins are refused, participants closed, exit 0.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn sigterm_closes_participants_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (http, webrtc) = (free_tcp(), free_udp());
    let cfg = dir.path().join("sb.toml");
    let rtp = 20_000 + (std::process::id() % 1000) as u16 * 10;
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n[webrtc]\nlisten = \"127.0.0.1:{webrtc}\"\n\
             [rtp]\nport_min = {rtp}\nport_max = {}\n[auth]\nenabled = false\n[node]\ndrain_timeout_secs = 1\n",
            rtp + 9
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--config", cfg.to_str().unwrap()])
        .env("SWITCHBOARD_LOG__FILTER", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A phone leg, so there is someone to close.
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 5004 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let body = serde_json::json!({ "sdp": offer }).to_string();
    let req = format!(
        "POST /v1/rooms/r/participants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");

    // SIGTERM by PID: this test started the process.
    unsafe_kill(child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "daemon did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    child.stdout.take().unwrap().read_to_string(&mut log).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(log.contains("reason=\"shutdown\""), "the leg was closed for shutdown:\n{log}");
    assert!(log.contains("stopped"), "{log}");
}

fn unsafe_kill(pid: u32) {
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}
