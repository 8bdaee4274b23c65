//! Scenario tests: whole drivers, a fake clock and a recording `Output`.

mod drop_tests;
mod dtmf_tests;
mod media_tests;
mod peer_policy_tests;
mod restart_tests;
mod robustness_tests;
mod rtcp_tests;
mod sdp_tests;

use crate::{RtpDriver, RtpLegConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_driver::{
    Driver, DriverEvent, DropReason, Output, ParticipantKind, Pt, RtpMeta, SdpInput, SeqNo, Ssrc, TrackKey,
};

pub const LOCAL_RTP: &str = "10.0.0.1:20000";
pub const LOCAL_RTCP: &str = "10.0.0.1:20001";
pub const PEER_RTP: &str = "192.0.2.10:30000";
pub const PEER_RTCP: &str = "192.0.2.10:30001";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test addresses are valid")
}

pub use switchboard_driver::testing::Collector;

/// A simulated clock that only moves when told.
pub struct Clock(pub Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }
    pub fn advance(&mut self, ms: u64) -> Instant {
        self.0 += Duration::from_millis(ms);
        self.0
    }
}

pub fn config(hint: Option<ParticipantKind>, symmetric: bool) -> RtpLegConfig {
    RtpLegConfig {
        kind_hint: hint,
        rtp_local: addr(LOCAL_RTP),
        rtcp_local: addr(LOCAL_RTCP),
        advertised_ip: "203.0.113.1".parse().expect("valid"),
        symmetric,
        peers: crate::PeerPolicy::allow_all(),
    }
}

pub fn leg(now: Instant) -> RtpDriver {
    RtpDriver::new(config(None, true), now)
}

/// An SDP offer from a gateway at `PEER_RTP` with the given m-line tail and attributes.
pub fn offer(mline_tail: &str, attrs: &str) -> String {
    format!(
        "v=0\r\no=gw 100 1 IN IP4 192.0.2.10\r\ns=call\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 30000 {mline_tail}\r\n{attrs}"
    )
}

/// The usual SIP gateway offer: PCMU, PCMA, telephone-event, ptime 20.
pub fn gateway_offer() -> String {
    offer(
        "RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
    )
}

/// A driver that answered `offer_text`, and its answer.
pub fn answered(now: Instant, offer_text: &str) -> (RtpDriver, String) {
    let mut d = leg(now);
    let answer = d.negotiate(now, SdpInput::Offer(offer_text)).expect("offer is accepted").expect("an answer");
    (d, answer)
}

/// An RTP packet as a peer would send it.
pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    crate::rtp_header::write_packet(&mut buf, marker, pt, seq, ts, ssrc, payload);
    buf
}

/// Room media for slot 0.
pub fn meta(pt: u8, seq: u64, ts: u32) -> RtpMeta {
    RtpMeta { pt: Pt(pt), seq: SeqNo(seq), timestamp: ts, marker: false, ssrc: Ssrc(1), audio_level: None }
}

pub fn drain(d: &mut RtpDriver, now: Instant) -> Collector {
    let mut sink = Collector::default();
    d.poll(now, &mut sink);
    sink
}
