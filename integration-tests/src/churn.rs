//! Participants made by the dozen for the leak and soak tests: joins of every kind from offers
//! the test writes itself (plain RTP, SDES-SRTP) or canned ones (WebRTC, `tests/fixtures/`),
//! retried while the node is out of leg ports, and the PCMU packets a phone socket sends.

use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::daemon::Daemon;

/// A participant's kind, as the churn makes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegKind {
    Rtp,
    Srtp,
    Webrtc,
}

/// Kinds in the proportions the churn uses: two plain, two SRTP, one WebRTC in five.
pub const CHURN_KINDS: [LegKind; 5] = [LegKind::Rtp, LegKind::Srtp, LegKind::Rtp, LegKind::Webrtc, LegKind::Srtp];

/// The offer of a join of `kind`: one for a phone at 127.0.0.1:`port`, or for WebRTC the canned
/// offer `webrtc`.
pub fn churn_offer(kind: LegKind, port: u16, webrtc: &str) -> String {
    let head = "v=0\r\no=- 9 1 IN IP4 127.0.0.1\r\ns=churn\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n";
    match kind {
        LegKind::Rtp => format!(
            "{head}m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=rtcp-mux\r\na=sendrecv\r\n"
        ),
        LegKind::Srtp => format!(
            "{head}m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtcp-mux\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na=sendrecv\r\n"
        ),
        LegKind::Webrtc => webrtc.to_string(),
    }
}

/// A 20 ms PCMU packet (silence) of sequence `seq` from `ssrc`.
pub fn pcmu_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

/// Joins `room` with `sdp`; while the node has no leg ports free (legs waiting for their
/// inactivity timeout hold them), waits 50 ms and tries again. Returns the participant and how
/// many times it waited; panics on any other refusal.
pub fn join_retrying(d: &Daemon, room: &str, sdp: &str) -> (Value, usize) {
    let path = format!("/v1/rooms/{room}/participants");
    let body = json!({ "sdp": sdp });
    let mut waited = 0;
    loop {
        match d.post_json(&path, &body) {
            (201, v) => return (v, waited),
            (503, v) if v["error"]["code"] == "no_ports" && waited < 600 => {
                waited += 1;
                thread::sleep(Duration::from_millis(50));
            }
            (status, v) => panic!("join {room}: {status} {v}"),
        }
    }
}

/// The bridge's media port in a join's answer.
pub fn answer_port(joined: &Value) -> u16 {
    let sdp = joined["sdp"].as_str().unwrap_or_else(|| panic!("no sdp in {joined}"));
    crate::sdp::Sdp::parse(sdp).media[0].port
}
