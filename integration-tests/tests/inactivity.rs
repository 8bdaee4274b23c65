//! Activity means the peer (issue 19, item 5): only valid packets from a participant's own peer
//! keep it alive. A stranger who keeps sending to a silent leg's ports (garbage, RTP it cannot
//! use, forged RTCP) does not hold the leg open: it is closed `inactive` on time, both when it is
//! a plain leg that has not latched yet and when it is a late-offer leg still waiting for its
//! answer. A leg whose peer talks stays, through the same stranger's traffic.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use switchboard_integration_tests::*;

const TIMEOUT_SECS: u64 = 2;

fn pcmu_offer(port: u16) -> String {
    format!(
        "v=0\r\no=- 5 1 IN IP4 127.0.0.1\r\ns=gw\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=rtcp-mux\r\na=sendrecv\r\n"
    )
}

fn rtp(pt: u8, seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

/// An RTCP receiver report from `ssrc` with one report block: well-formed, and worth nothing.
fn receiver_report(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0; 24]);
    p
}

/// The media port in the bridge's SDP (its answer, or its offer to a late-offer leg).
fn media_port(joined: &Value) -> u16 {
    Sdp::parse(joined["sdp"].as_str().unwrap_or_else(|| panic!("no sdp in {joined}"))).media[0].port
}

#[test]
fn a_strangers_packets_do_not_keep_a_silent_leg_alive() {
    let d = Daemon::start_with(|c| {
        c.set("media", "inactivity_timeout_secs", TIMEOUT_SECS);
    });
    let sse = d.create_and_follow("quiet");
    let parts = "/v1/rooms/quiet/participants";
    let (silent_phone, talking_phone) =
        (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
    let port = |s: &UdpSocket| s.local_addr().unwrap().port();
    let joined_at = Instant::now();
    // A plain leg whose phone never sends, so it never latches.
    let (s, unlatched) = d.post_json(parts, &json!({ "sdp": pcmu_offer(port(&silent_phone)) }));
    assert_eq!(s, 201, "{unlatched}");
    // A late-offer leg that never answers the bridge's offer.
    let (s, late) = d.post_json(parts, &json!({ "kind": "rtp" }));
    assert_eq!(s, 201, "{late}");
    // A leg whose phone talks all along.
    let (s, talker) = d.post_json(parts, &json!({ "sdp": pcmu_offer(port(&talking_phone)) }));
    assert_eq!(s, 201, "{talker}");
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();

    // 127.0.0.2 is this host, but not the address any SDP named.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let (unlatched_port, late_port, talker_port) = (media_port(&unlatched), media_port(&late), media_port(&talker));
    let mut seq = 0u16;
    while joined_at.elapsed() < Duration::from_secs(TIMEOUT_SECS * 2 + 1) {
        seq = seq.wrapping_add(1);
        for p in [unlatched_port, late_port, talker_port] {
            stranger.send_to(&[seq as u8; 40], at(p)).unwrap();
            // A payload type nobody negotiated: no latch, so no proof of anyone.
            stranger.send_to(&rtp(18, seq, 0x0bad), at(p)).unwrap();
            // Forged RTCP, muxed and on the RTCP port.
            stranger.send_to(&receiver_report(0x0bad), at(p)).unwrap();
            stranger.send_to(&receiver_report(0x0bad), at(p + 1)).unwrap();
        }
        // Even valid media reaches the late-offer leg only as a stranger's: it has no peer yet.
        stranger.send_to(&rtp(0, seq, 0x0bad), at(late_port)).unwrap();
        talking_phone.send_to(&rtp(0, seq, 0x7a1c), at(talker_port)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }

    for (what, joined) in [("the unlatched leg", &unlatched), ("the late-offer leg", &late)] {
        let left = sse.wait_for_participant_event("participant_left", &id(joined), Duration::from_secs(1));
        let after = left.at.duration_since(joined_at);
        let timeout = Duration::from_secs(TIMEOUT_SECS);
        assert!(
            after >= timeout - Duration::from_millis(200) && after <= timeout * 2,
            "{what} was closed {after:?} after joining; the timeout is {timeout:?}"
        );
        assert_eq!(left.data["reason"], "inactive", "{what}: {}", left.data);
    }
    assert_eq!(d.participants_of("quiet"), vec![id(&talker)], "the talking leg stays");
    // What the stranger sent was counted as what it was.
    let (_, metrics) = d.get_text("/metrics");
    let unknown = metric_value(&metrics, "switchboard_packets_dropped_total", &[("reason", "unknown_source")]);
    assert!(unknown.unwrap_or(0.0) > 100.0, "unknown_source drops: {unknown:?}");
}
