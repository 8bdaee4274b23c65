//! Offers and re-offers from WebRTC clients: a bad one is refused with an error, never a panic,
//! and the session is still there for the next offer and the next timeout.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use switchboard_driver::{Driver, SdpInput};
use switchboard_webrtc::WebrtcDriver;

fuzz_target!(|data: &[u8]| {
    // A NUL byte splits the input into the offer and a re-offer.
    let mut parts = data.splitn(2, |b| *b == 0);
    let offer = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let reoffer = parts.next().map(String::from_utf8_lossy);
    let now = Instant::now();
    let mut driver = WebrtcDriver::new(now, &["127.0.0.1:20000".parse().unwrap()]);
    let _ = driver.negotiate(now, SdpInput::Offer(&offer));
    if let Some(reoffer) = reoffer {
        let _ = driver.negotiate(now, SdpInput::Offer(&reoffer));
    }
    let _ = driver.negotiated();
    driver.handle_timeout(now + Duration::from_secs(1));
});
