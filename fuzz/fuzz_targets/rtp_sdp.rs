//! SDP from SIP peers: telling the transport profile, parsing, and a whole offer/answer on a
//! fresh leg, must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Instant;
use switchboard_driver::{Driver, SdpInput};
use switchboard_rtp::{offer_transport, parse_remote_description, RtpDriver, RtpLegConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = offer_transport(text);
    let _ = parse_remote_description(text);
    let now = Instant::now();
    let cfg = RtpLegConfig::new("127.0.0.1:20000".parse().unwrap(), "127.0.0.1".parse().unwrap());
    let mut leg = RtpDriver::new(cfg, now);
    let _ = leg.negotiate(now, SdpInput::Offer(text));
    let _ = leg.negotiate(now, SdpInput::Offer(text));
});
