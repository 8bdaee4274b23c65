//! The RTP header parser must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_rtp::RtpHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = RtpHeader::parse(data) {
        assert!(h.header_len <= h.payload_end && h.payload_end <= data.len());
    }
    let _ = RtpHeader::parse_header_only(data);
});
