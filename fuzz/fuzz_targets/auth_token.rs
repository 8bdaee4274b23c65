//! Every API request's Authorization header reaches the token check before anything else, so
//! any bytes must give claims or an error, never a panic, and a token that verifies must carry
//! the key it names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::auth::{Keyring, Secret};

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::new([("k".to_string(), Secret::new("fuzz-secret-0123456789"))]);
    if let Ok(token) = std::str::from_utf8(data) {
        if let Ok(claims) = ring.verify(token, 1_800_000_000) {
            assert_eq!(claims.kid, "k");
        }
    }
});
