//! Interop against a real SDES-SRTP peer: ffmpeg. Ignored by default (needs `ffmpeg` on PATH):
//! `cargo test -p switchboard-rtp --test ffmpeg_interop -- --ignored`.
//!
//! The driver stays sans-IO; the test owns the UDP sockets, as the runtime would.

use base64::Engine as _;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchboard_driver::testing::Collector;
use switchboard_driver::{Driver, Pt, RtpMeta, SdpInput, SeqNo, SlotKey, Ssrc};
use switchboard_rtp::{RtpDriver, RtpLegConfig};

fn key_b64() -> String {
    let mut key = [0u8; 30];
    getrandom::fill(&mut key).unwrap();
    base64::engine::general_purpose::STANDARD.encode(key)
}

fn bind_pair() -> (UdpSocket, UdpSocket) {
    for port in (40_000..41_000).step_by(2) {
        if let (Ok(a), Ok(b)) = (UdpSocket::bind(("127.0.0.1", port)), UdpSocket::bind(("127.0.0.1", port + 1))) {
            return (a, b);
        }
    }
    panic!("no free port pair");
}

fn offer(port: u16, suite: &str, key: &str) -> String {
    format!(
        "v=0\r\no=ffmpeg 1 1 IN IP4 127.0.0.1\r\ns=ffmpeg\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:1 {suite} inline:{key}\r\n"
    )
}

/// ffmpeg encrypts 1 s of PCMU; the driver decrypts every packet.
fn ffmpeg_to_bridge(suite: &str) {
    let (rtp, rtcp) = bind_pair();
    let local = rtp.local_addr().unwrap();
    let now = Instant::now();
    let cfg = RtpLegConfig::new(local, "127.0.0.1".parse().unwrap());
    assert_eq!(cfg.rtcp_local, rtcp.local_addr().unwrap());
    let mut leg = RtpDriver::new(cfg, now);
    let key = key_b64();
    leg.negotiate(now, SdpInput::Offer(&offer(9, suite, &key))).unwrap();

    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1"])
        .args(["-ar", "8000", "-ac", "1", "-c:a", "pcm_mulaw", "-f", "rtp"])
        .args(["-srtp_out_suite", suite, "-srtp_out_params", &key])
        .arg(format!("srtp://127.0.0.1:{}?pkt_size=200", local.port()))
        .stdout(Stdio::null())
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());

    rtp.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 2048];
    let mut out = Collector::default();
    let mut datagrams = 0;
    while let Ok((n, src)) = rtp.recv_from(&mut buf) {
        datagrams += 1;
        leg.handle_receive(now, src, local, &buf[..n]);
        leg.poll(now, &mut out);
    }
    assert!(datagrams >= 40, "ffmpeg sent {datagrams} packets");
    assert_eq!(out.drops(), [], "{suite}");
    assert_eq!(out.media.len(), datagrams, "{suite}: every packet decrypted");
}

/// The driver encrypts 1.2 s of PCMU; ffmpeg decrypts and decodes it.
fn bridge_to_ffmpeg(suite: &str) {
    let (rtp, _rtcp) = bind_pair();
    let local = rtp.local_addr().unwrap();
    let (peer, peer_rtcp) = bind_pair();
    let peer_port = peer.local_addr().unwrap().port();
    drop((peer, peer_rtcp)); // ffmpeg binds them
    let now = Instant::now();
    let mut leg = RtpDriver::new(RtpLegConfig::new(local, "127.0.0.1".parse().unwrap()), now);
    let answer = leg.negotiate(now, SdpInput::Offer(&offer(peer_port, suite, &key_b64()))).unwrap().unwrap();
    let ours = answer.lines().find_map(|l| l.strip_prefix("a=crypto:")).unwrap();
    let our_key = ours.rsplit_once("inline:").unwrap().1;

    let dir = std::env::temp_dir().join(format!("sb-rtp-interop-{}-{suite}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sdp_path = dir.join("in.sdp");
    let wav = dir.join("out.wav");
    std::fs::write(&sdp_path, offer(peer_port, suite, our_key)).unwrap();
    let ffmpeg = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-protocol_whitelist", "file,udp,rtp,srtp"])
        .arg("-i")
        .arg(&sdp_path)
        .args(["-t", "1"])
        .arg(&wav)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg runs");
    std::thread::sleep(Duration::from_millis(700));

    let mut out = Collector::default();
    let mut t = now;
    for seq in 0..60u64 {
        t += Duration::from_millis(20);
        let meta = RtpMeta {
            pt: Pt(0),
            seq: SeqNo(seq),
            timestamp: seq as u32 * 160,
            marker: seq == 0,
            ssrc: Ssrc(1),
            audio_level: None,
        };
        leg.write_media(t, SlotKey(0), &meta, &[0x7f; 160]).unwrap();
        leg.poll(t, &mut out);
        for (_from, to, data) in out.transmits.drain(..) {
            rtp.send_to(&data, to).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = ffmpeg.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{suite}: {stderr}");
    let size = std::fs::metadata(&wav).map(|m| m.len()).unwrap_or(0);
    // 1 s of 8 kHz 16-bit mono is 16000 bytes plus the header.
    assert!(size > 12_000, "{suite}: wav is {size} bytes; ffmpeg said: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs ffmpeg"]
fn ffmpeg_sends_srtp_80_and_32() {
    ffmpeg_to_bridge("AES_CM_128_HMAC_SHA1_80");
    ffmpeg_to_bridge("AES_CM_128_HMAC_SHA1_32");
}

#[test]
#[ignore = "needs ffmpeg"]
fn ffmpeg_receives_srtp_80_and_32() {
    bridge_to_ffmpeg("AES_CM_128_HMAC_SHA1_80");
    bridge_to_ffmpeg("AES_CM_128_HMAC_SHA1_32");
}
