//! Every datagram to `ng.listen` from an allowed source is parsed before anything else: any
//! bytes give a message or an error, never a panic, and an error reply can always be encoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::ng::message;

fuzz_target!(|data: &[u8]| {
    match message::parse(data) {
        Ok(m) => {
            let _ = m.dict.str("command");
            let _ = m.dict.strs("flags");
            let _ = m.dict.flag_value("room");
        }
        Err(e) => {
            if let Some(cookie) = message::cookie_of(data) {
                assert!(!message::encode(cookie, &message::error(e.to_string())).is_empty());
            }
        }
    }
});
