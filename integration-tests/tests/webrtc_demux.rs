//! The shared WebRTC port under strangers' traffic: STUN binding requests naming no
//! participant's ufrag, STUN naming a real ufrag without its integrity, and garbage, from an
//! address the bridge never heard from, are all dropped and counted as `unknown_source`; the
//! participant stays, and the node stays healthy.

use std::net::UdpSocket;
use std::time::Duration;

use switchboard_integration_tests::*;

fn stun_request(username: &[u8], txid: u8) -> Vec<u8> {
    let mut attr = Vec::new();
    attr.extend_from_slice(&0x0006u16.to_be_bytes());
    attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attr.extend_from_slice(username);
    attr.resize(attr.len().next_multiple_of(4), 0);
    let mut d = vec![0x00, 0x01];
    d.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    d.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    d.extend_from_slice(&[txid; 12]);
    d.extend_from_slice(&attr);
    d
}

fn unknown_source(d: &Daemon) -> f64 {
    let (_, metrics) = d.get_text("/metrics");
    metric_value(&metrics, "switchboard_packets_dropped_total", &[("reason", "unknown_source")]).unwrap_or(0.0)
}

#[test]
fn strangers_on_the_shared_port_are_dropped_and_counted() {
    let d = Daemon::start();
    let joined = d.join("demux", &fixture("chromium_offer.sdp"));
    let id = joined["id"].as_str().expect("joined").to_string();
    let answer = joined["sdp"].as_str().expect("an answer");
    let ufrag = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("the answer names its ICE ufrag")
        .trim()
        .to_string();
    let before = unknown_source(&d);

    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = d.webrtc_port();
    let mut sent = 0.0;
    for i in 0..200u32 {
        let random_name = format!("nobody{i}:x{i}");
        stranger.send_to(&stun_request(random_name.as_bytes(), i as u8), ("127.0.0.1", port)).unwrap();
        // The real participant's ufrag, but no MESSAGE-INTEGRITY: its session refuses it.
        stranger.send_to(&stun_request(format!("{ufrag}:x{i}").as_bytes(), i as u8), ("127.0.0.1", port)).unwrap();
        stranger.send_to(&[0x80, 0x00, 0x12, (i % 251) as u8, 1, 2, 3, 4, 5, 6, 7, 8], ("127.0.0.1", port)).unwrap();
        sent += 3.0;
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The worker harvests its counters every 500 ms.
    let counted = poll_until(Duration::from_secs(3), || {
        let n = unknown_source(&d) - before;
        (n >= sent).then_some(n)
    });
    assert!(counted.is_some(), "{sent} strangers' datagrams, {} counted unknown_source", unknown_source(&d) - before);
    assert_eq!(d.participant("demux", &id)["id"], id.as_str(), "the participant is still there");
    assert_eq!(d.get_text("/healthz").0, 200);
}
