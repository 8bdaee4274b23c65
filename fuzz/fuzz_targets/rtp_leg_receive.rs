//! Arbitrary datagrams into a negotiated rtp leg (RTP port and RTCP port), then a timeout:
//! every input is dropped or delivered, never a panic. The leg took RFC 6464 levels, so each
//! RTP packet's header extension is read too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_driver::{Driver, DriverEvent, Output, RtpMeta, SdpInput, TrackKey};
use switchboard_rtp::{RtpDriver, RtpLegConfig};

const OFFER: &str = "v=0\r\no=gw 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
    m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n\
    a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n";

struct Null;

impl Output for Null {
    fn transmit(&mut self, _: SocketAddr, _: SocketAddr, _: &[u8]) {}
    fn media(&mut self, _: TrackKey, _: &RtpMeta, _: &[u8]) {}
    fn event(&mut self, _: DriverEvent) {}
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let local: SocketAddr = "127.0.0.1:20000".parse().unwrap();
    let cfg = RtpLegConfig::new(local, "127.0.0.1".parse().unwrap());
    let rtcp_local = cfg.rtcp_local;
    let mut leg = RtpDriver::new(cfg, now);
    leg.negotiate(now, SdpInput::Offer(OFFER)).unwrap();
    let peer: SocketAddr = "127.0.0.2:30000".parse().unwrap();
    // The first byte picks the port; the rest is split into datagrams at 0xfe bytes.
    let (dst, rest) = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => (rtcp_local, rest),
        Some((_, rest)) => (local, rest),
        None => return,
    };
    for chunk in rest.split(|b| *b == 0xfe) {
        leg.handle_receive(now, peer, dst, chunk);
    }
    leg.handle_timeout(now + Duration::from_secs(6));
    leg.poll(now + Duration::from_secs(6), &mut Null);
});
