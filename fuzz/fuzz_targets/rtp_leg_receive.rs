//! Arbitrary datagrams into a negotiated rtp or srtp leg (RTP port and RTCP port), then a
//! timeout: every input is dropped or delivered, never a panic. The leg took RFC 6464 levels, so
//! each RTP packet's header extension is read too; an srtp leg authenticates and decrypts first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_driver::{Driver, DriverEvent, Output, RtpMeta, SdpInput, TrackKey};
use switchboard_rtp::{RtpDriver, RtpLegConfig};

const OFFER: &str = "v=0\r\no=gw 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
    m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n\
    a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n";

const SRTP_OFFER: &str = "v=0\r\no=gw 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
    m=audio 30000 RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n\
    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n";

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
    // The first byte picks the port (bit 0) and the leg's kind (bit 1); the rest is split into
    // datagrams at 0xfe bytes.
    let Some((&first, rest)) = data.split_first() else { return };
    let offer = if first & 2 == 0 { OFFER } else { SRTP_OFFER };
    leg.negotiate(now, SdpInput::Offer(offer)).unwrap();
    let peer: SocketAddr = "127.0.0.2:30000".parse().unwrap();
    let dst = if first & 1 == 1 { rtcp_local } else { local };
    for chunk in rest.split(|b| *b == 0xfe) {
        leg.handle_receive(now, peer, dst, chunk);
    }
    leg.handle_timeout(now + Duration::from_secs(6));
    leg.poll(now + Duration::from_secs(6), &mut Null);
});
