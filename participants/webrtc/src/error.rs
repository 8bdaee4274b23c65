//! The webrtc driver's own failures, and how they become the driver contract's errors.
//!
//! Negotiation failures carry what the offerer must hear (the runtime answers them with a 400);
//! write refusals are static text, so refusing a packet on the packet path allocates nothing.

use str0m::media::Mid;
use switchboard_driver::{NegotiationError, WriteError};

/// Why an offer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// str0m's or webrtc-sdp's parser refused the text; the reason is already one line.
    #[error("unparseable offer: {0}")]
    Unparseable(String),
    #[error("the offer has no m-lines")]
    NoMLines,
    /// str0m disconnects a session whose offer has none.
    #[error("missing a=fingerprint (DTLS is required)")]
    NoFingerprint,
    #[error("a=ice-ufrag is {len} bytes; this bridge takes at most {max}")]
    UfragTooLong { len: usize, max: usize },
    #[error("a=mid:{0} is on more than one m-line")]
    RepeatedMid(Mid),
    /// One payload type, two formats (see `payload_types`).
    #[error("{0}")]
    PayloadType(#[from] crate::payload_types::Conflict),
    #[error(
        "m-line {mid} drops payload type {pt} ({codec}), negotiated earlier; an m-line's formats cannot change \
         in a reoffer here: offer a new m-line, or join again"
    )]
    DroppedFormat { mid: Mid, pt: u8, codec: String },
    /// `offered` lists the offer's codec names, or says there were none.
    #[error("no common codec: offered {offered}")]
    NoCommonCodec { offered: String },
    /// str0m's own refusal of an offer it parsed.
    #[error("{0}")]
    Refused(String),
    #[error("a WebRTC participant offers; the bridge only answers")]
    AnswerUnexpected,
}

/// Why `write_media` refused a packet; each has a fixed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Closed,
    NotConnected,
    NoSendStream,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Closed => "session closed",
            Refusal::NotConnected => "not connected",
            Refusal::NoSendStream => "no send stream for the slot",
        }
    }
}

impl From<Refusal> for WriteError {
    fn from(r: Refusal) -> WriteError {
        WriteError::Refused(r.as_str())
    }
}

impl From<OfferError> for NegotiationError {
    fn from(e: OfferError) -> NegotiationError {
        match e {
            OfferError::NoCommonCodec { offered } => {
                let supported: Vec<&str> = crate::offer::SUPPORTED.iter().map(|c| c.as_str()).collect();
                NegotiationError::NoCommonCodec { offered, supported: supported.join(", ") }
            }
            OfferError::AnswerUnexpected => NegotiationError::UnexpectedState(e.to_string()),
            other => NegotiationError::BadSdp(other.to_string()),
        }
    }
}
