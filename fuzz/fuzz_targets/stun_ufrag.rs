//! The shared port's demultiplexer reads the ufrag of every STUN binding request from an unknown
//! address, floods included: any datagram gives a ufrag or none, never a panic, and a ufrag is
//! always a non-empty slice of the datagram's USERNAME.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_webrtc::binding_request_ufrag;

fuzz_target!(|data: &[u8]| {
    if let Some(ufrag) = binding_request_ufrag(data) {
        assert!(!ufrag.is_empty() && !ufrag.contains(':'));
    }
});
