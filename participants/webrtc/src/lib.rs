//! WebRTC participants for Switchboard, on str0m.
//!
//! Each [`WebrtcDriver`] is one peer connection: full ICE as the controlled agent (not lite, so
//! the bridge checks the pair itself: libnice-based clients send no consent checks), DTLS-SRTP,
//! and str0m's RTP mode so packets are forwarded as they came rather than depacketized and
//! packetized again. Many drivers share one UDP socket: the runtime finds the owner of a new
//! address's first datagram by the ICE ufrag its STUN binding request names
//! ([`binding_request_ufrag`], [`Driver::ice_ufrag`](switchboard_driver::Driver::ice_ufrag)), and
//! that session confirms it with [`Driver::accepts`](switchboard_driver::Driver::accepts).
//!
//! The driver only answers offers. Its track and slot keys are m-line indices.

#![forbid(unsafe_code)]

mod driver;
mod error;
mod negotiated;
mod normalize;
mod offer;
mod payload_types;
mod stun;

pub use driver::WebrtcDriver;
pub use error::{OfferError, Refusal};
pub use payload_types::Conflict;
pub use stun::binding_request_ufrag;

use std::sync::Once;

/// Process-wide setup: installs str0m's crypto provider (OpenSSL). With default features off,
/// str0m would otherwise build a fresh provider for every session. Safe to call any number of
/// times; [`WebrtcDriver::new`] calls it too.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}
