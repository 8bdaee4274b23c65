//! WebRTC to SIP through the ng protocol, as a proxy in front of a WebRTC client (JsSIP, SIP.js)
//! and a SIP phone drives it: the webrtcbin client's offer goes through ng `offer` with
//! `ICE=remove`, `DTLS=off` and `RTP/AVP`, so the bridge offers plain RTP toward the callee; a
//! plain RTP leg (the test's socket) answers through ng `answer`, and its reply, the bridge's
//! WebRTC answer, goes back to webrtcbin. The tone crosses both ways, transcoded between Opus and
//! PCMU: webrtcbin hears the leg's 880 Hz, the leg the client's 440 Hz.

use std::net::UdpSocket;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

const CALL: &str = "webrtc-to-sip-1@proxy.example";

fn wait_for_file(path: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        thread::sleep(Duration::from_millis(50));
    }
}

/// The plain leg's answer: PCMU only, at `port`.
fn phone_answer(port: u16) -> String {
    pcmu_offer(port).replace("s=phone", "s=callee")
}

#[test]
fn a_webrtc_caller_reaches_a_plain_rtp_callee_through_ng_and_the_tone_crosses_both_ways() {
    require_gstreamer();
    let ng_port = reserve_ports();
    let d = Daemon::start_with(|c| {
        c.set("ng", "listen", format!("127.0.0.1:{}", ng_port.http));
    });
    let mut ng = Ng::new(ng_port.http);
    let dir = tempfile::tempdir().unwrap();
    let (offer_file, answer_file) = (dir.path().join("offer.sdp"), dir.path().join("answer.sdp"));
    let (of, af) = (offer_file.display().to_string(), answer_file.display().to_string());
    let client = spawn_peer(
        "webrtcbin_peer.py",
        &["--publish-tone", "440", "--receive", "2", "--duration", "7", "--offer-file", &of, "--answer-file", &af],
        Duration::from_secs(60),
    );
    let webrtc_offer = wait_for_file(&offer_file, Duration::from_secs(20));
    assert!(webrtc_offer.contains("UDP/TLS/RTP/SAVPF"), "{webrtc_offer}");

    // The proxy's offer: the bridge answers it with a plain RTP offer toward the callee.
    let offer = ng.cmd(&[
        ("command", bstr("offer")),
        ("call-id", bstr(CALL)),
        ("from-tag", bstr("webrtc-caller")),
        ("sdp", bstr(&webrtc_offer)),
        ("ICE", bstr("remove")),
        ("DTLS", bstr("off")),
        ("transport-protocol", bstr("RTP/AVP")),
        ("flags", blist(&["trust-address"])),
        ("replace", blist(&["origin", "session-connection"])),
    ]);
    assert_eq!(ng_text(&offer, "result"), "ok", "{offer:?}");
    let to_callee_text = ng_text(&offer, "sdp");
    let to_callee = Sdp::parse(&to_callee_text);
    assert_eq!(to_callee.media.len(), 1, "{to_callee_text}");
    assert_eq!(to_callee.media[0].proto, "RTP/AVP", "{to_callee_text}");
    assert!(to_callee.media[0].codecs.contains(&"pcmu".to_string()), "{to_callee_text}");
    for webrtc_only in ["a=ice-", "a=candidate", "a=fingerprint", "a=setup", "a=crypto"] {
        assert!(!to_callee_text.contains(webrtc_only), "{webrtc_only} in a plain RTP offer: {to_callee_text}");
    }
    assert!(to_callee.has_line("c=IN IP4 127.0.0.1"), "{to_callee_text}");
    let bridge_port = to_callee.media[0].port;

    // The callee answers with PCMU; the reply is the bridge's WebRTC answer to the caller.
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    let answer = ng.cmd(&[
        ("command", bstr("answer")),
        ("call-id", bstr(CALL)),
        ("from-tag", bstr("webrtc-caller")),
        ("to-tag", bstr("sip-callee")),
        ("sdp", bstr(&phone_answer(phone.local_addr().unwrap().port()))),
    ]);
    assert_eq!(ng_text(&answer, "result"), "ok", "{answer:?}");
    let webrtc_answer = ng_text(&answer, "sdp");
    let (_, rooms) = d.get_json("/v1/rooms");
    let room = rooms["rooms"][0]["id"].as_str().unwrap_or_else(|| panic!("no room: {rooms}")).to_string();
    assert_webrtc_answer(&webrtc_offer, &webrtc_answer, d.webrtc_port_of(&room));
    std::fs::write(&answer_file, &webrtc_answer).unwrap();

    // The phone sends 880 Hz for as long as the client listens, and keeps what it gets.
    let sender = phone.try_clone().unwrap();
    let talking = thread::spawn(move || {
        for p in pcmu_tone_packets(880.0, 8.0, 0x0880_0880) {
            let _ = sender.send_to(&p, ("127.0.0.1", bridge_port));
            thread::sleep(Duration::from_millis(20));
        }
    });
    phone.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut heard = Vec::new();
    let mut buf = [0u8; 1500];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        if let Ok((n, _)) = phone.recv_from(&mut buf) {
            if n > 12 && buf[1] & 0x7f == 0 {
                heard.push((start.elapsed(), buf[..n].to_vec()));
            }
        }
    }
    talking.join().unwrap();
    let report = client.wait();
    let json = report.expect_ok();

    let hz = json["dominant_hz"].as_f64().unwrap_or(0.0);
    assert!((hz - 880.0).abs() < 10.0, "the WebRTC caller heard {hz} Hz: {json}");
    assert!(heard.len() > 150, "the phone got {} PCMU packets", heard.len());
    // From 2 s to 5 s after the answer: the client is connected and still talking (it hangs up
    // 7 s after it applied the answer).
    let middle = heard.iter().filter(|(at, _)| (2.0..5.0).contains(&at.as_secs_f64()));
    let pcm = pcmu_payload_samples(middle.map(|(_, p)| p.as_slice()));
    let hz = dominant_frequency(&pcm, 8000);
    assert!((hz - 440.0).abs() < 5.0, "the phone heard {hz} Hz");

    let del = ng.cmd(&[("command", bstr("delete")), ("call-id", bstr(CALL))]);
    assert_eq!(ng_text(&del, "result"), "ok", "{del:?}");
    assert_eq!(d.get_json("/v1/rooms").1["rooms"], json!([]));
}
