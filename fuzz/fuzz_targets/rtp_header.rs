//! The RTP header parser, and the header extension reader behind it, must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_rtp::{audio_level, RtpHeader};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = RtpHeader::parse(data) {
        assert!(h.header_len <= h.payload_end && h.payload_end <= data.len());
        for id in [1, 14, 255] {
            assert!(audio_level(data, &h, id).is_none_or(|l| l <= 127));
        }
    }
    let _ = RtpHeader::parse_header_only(data);
});
