//! The RTCP compound parser must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = switchboard_rtp::parse_rtcp(data);
});
