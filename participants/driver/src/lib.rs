//! The contract between Switchboard's core and its network legs.
//!
//! A driver is one participant's protocol engine: WebRTC (str0m) or plain RTP / SDES-SRTP. The
//! room's MCU is not a participant and speaks its own trait, [`Mcu`]. Drivers are sans-IO: they
//! never own a socket, a thread or a clock. The room feeds them datagrams and time, and they answer through [`Output`], which hands out borrowed slices so the
//! packet path copies nothing it does not have to.
//!
//! Call order, per driver: `negotiate` once (and again on renegotiation), then any number of
//! `handle_receive` / `handle_timeout` / `write_media`, each followed by `poll` until it returns
//! the next deadline. `close` ends it; `poll` still drains what closing produced.

// The one `unsafe` here is the counting allocator, a test aid behind its feature.
#![cfg_attr(not(feature = "alloc-count"), forbid(unsafe_code))]

#[cfg(feature = "alloc-count")]
#[allow(unsafe_code, reason = "a GlobalAlloc is an unsafe trait")]
pub mod alloc_count;
mod codec;
pub mod dtmf;
mod ids;
mod kernel;
mod mix;
mod packet;
#[cfg(feature = "testing")]
pub mod testing;

pub use codec::{Codec, CodecSpec, MediaKind};
pub use ids::{ParticipantId, ParticipantKind, RoomId, SlotKey, TrackId, TrackKey};
pub use kernel::{extend_near, KernelCounts, KernelLeg};
pub use mix::{Mcu, MixInput, MixOutput, MixOutputKind, MixPlan, MixerStats, VideoSettings};
pub use packet::{KeyframeKind, Pt, RtpMeta, SeqNo, Ssrc};

use std::net::SocketAddr;
use std::time::Instant;

/// What the offer/answer exchange gave the driver to publish and to receive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Negotiated {
    /// Tracks this participant sends (its m-lines with a send direction).
    pub tracks: Vec<TrackInfo>,
    /// Receive positions this participant offered (its m-lines with a receive direction).
    pub slots: Vec<SlotInfo>,
}

/// A track the participant publishes, keyed by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub key: TrackKey,
    pub kind: MediaKind,
    /// The codec the participant will send (first negotiated of its kind).
    pub codec: CodecSpec,
    /// The mid or m-line index, for the API view.
    pub label: String,
}

/// One receive position of a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub key: SlotKey,
    pub kind: MediaKind,
    /// The mid or m-line index, for the API view.
    pub label: String,
    /// Codecs the subscriber accepts on this slot, in its order of preference, with its PT numbers.
    pub codecs: Vec<CodecSpec>,
    /// The slot's stable outbound SSRC, declared in the answer.
    pub ssrc: Ssrc,
    /// Payload type of telephone-event on this slot, if negotiated.
    pub telephone_event: Option<Pt>,
    /// False while the subscriber does not want media (hold: `a=sendonly`/`a=inactive` from its
    /// side). The room skips inactive slots, so sequence numbers continue unbroken on resume.
    pub active: bool,
    /// Packet duration the subscriber asked for with `a=ptime`, if it did.
    pub ptime_ms: Option<u16>,
}

impl SlotInfo {
    /// The subscriber's payload type for `codec`, if it negotiated it on this slot.
    pub fn pt_for(&self, codec: Codec) -> Option<Pt> {
        self.codecs.iter().find(|c| c.codec == codec).map(|c| c.pt)
    }
}

/// The SDP a participant hands in.
#[derive(Debug, Clone, Copy)]
pub enum SdpInput<'a> {
    /// The remote side offers; the driver answers.
    Offer(&'a str),
    /// The remote side answers an offer the driver made earlier.
    Answer(&'a str),
}

/// Events a driver reports besides media.
#[derive(Debug, Clone, PartialEq)]
pub enum DriverEvent {
    /// Transport is up (ICE + DTLS for WebRTC, first packet latched for RTP).
    Connected,
    /// Transport failed or the peer went away; the room closes the participant.
    Disconnected { reason: DisconnectReason },
    /// A subscriber asks for a keyframe on one of its slots.
    KeyframeRequest { slot: SlotKey, kind: KeyframeKind },
    /// A DTMF digit was received, reported exactly once when it ends.
    Dtmf { digit: char, duration_ms: u32 },
    /// A packet was dropped before it reached the room.
    Dropped { reason: DropReason },
    /// The mixer's current loudest speakers changed: its input slots, loudest first.
    ActiveSpeakers { slots: Vec<SlotKey> },
    /// The peer's receiver report on what the bridge sends on `slot` (RTCP RR or SR report
    /// block): loss, jitter and the round trip, as far as the report tells them.
    ReceiverReport { slot: SlotKey, report: ReceptionReport },
}

/// What a receiver reports of one stream the bridge sends it (RFC 3550 §6.4.1), in plain units.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReceptionReport {
    /// Fraction (0 to 1) of the packets lost since the receiver's previous report.
    pub loss: Option<f32>,
    /// Interarrival jitter, in seconds (the report's timestamp units over the clock rate).
    pub jitter: Option<f32>,
    /// Round trip, in seconds, from the report's LSR and DLSR; `None` until the receiver has
    /// seen one of the bridge's sender reports.
    pub rtt: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    IceFailed,
    DtlsFailed,
    Closed,
}

/// Why a packet was dropped. A small, fixed set: it becomes a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    Malformed,
    UnknownSource,
    SrtpAuth,
    Replay,
    UnknownPayloadType,
    NoRoute,
    Send,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::Malformed,
        DropReason::UnknownSource,
        DropReason::SrtpAuth,
        DropReason::Replay,
        DropReason::UnknownPayloadType,
        DropReason::NoRoute,
        DropReason::Send,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownSource => "unknown_source",
            DropReason::SrtpAuth => "srtp_auth",
            DropReason::Replay => "replay",
            DropReason::UnknownPayloadType => "unknown_payload_type",
            DropReason::NoRoute => "no_route",
            DropReason::Send => "send",
        }
    }
}

/// Where a driver's output goes. The room implements it; tests implement it too.
pub trait Output {
    /// A datagram to send from local address `from` to `to`.
    fn transmit(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]);
    /// A received media packet on one of the driver's published tracks.
    fn media(&mut self, track: TrackKey, meta: &RtpMeta, payload: &[u8]);
    fn event(&mut self, event: DriverEvent);
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NegotiationError {
    #[error("malformed SDP: {0}")]
    BadSdp(String),
    #[error("no supported codec: the offer has {offered}; the bridge takes {supported}")]
    NoCommonCodec { offered: String, supported: String },
    #[error("no supported SRTP crypto suite: offered {0}")]
    NoCommonCrypto(String),
    #[error("SDP does not fit this participant kind: {0}")]
    KindMismatch(String),
    #[error("unexpected SDP: {0}")]
    UnexpectedState(String),
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WriteError {
    #[error("no such slot")]
    NoSuchSlot,
    #[error("slot does not take payload type {0}")]
    PayloadType(u8),
    /// The reason is static text, so refusing a packet on the packet path allocates nothing.
    #[error("driver refused the packet: {0}")]
    Refused(&'static str),
    #[error(transparent)]
    Dtmf(#[from] dtmf::DtmfError),
}

/// One participant's protocol engine. See the crate docs for the call order.
pub trait Driver: Send {
    fn kind(&self) -> ParticipantKind;

    /// Applies remote SDP. Returns the driver's answer for an offer, `None` for an answer.
    fn negotiate(&mut self, now: Instant, sdp: SdpInput<'_>) -> Result<Option<String>, NegotiationError>;

    /// Makes an offer for a late-offer join. Drivers that cannot offer say so.
    fn create_offer(&mut self, _now: Instant) -> Result<String, NegotiationError> {
        Err(NegotiationError::UnexpectedState("this participant kind cannot make an offer".into()))
    }

    /// What the last negotiation gave. Valid after `negotiate` succeeded.
    fn negotiated(&self) -> &Negotiated;

    /// For drivers sharing one socket: does this datagram belong to this participant?
    fn accepts(&self, _src: SocketAddr, _dst: SocketAddr, _data: &[u8]) -> bool {
        false
    }

    /// For drivers sharing one socket: the local ICE username fragment a peer's STUN names, by
    /// which the runtime indexes the participant. Asked after each negotiation, never per packet.
    fn ice_ufrag(&self) -> Option<String> {
        None
    }

    fn handle_receive(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr, data: &[u8]);

    fn handle_timeout(&mut self, now: Instant);

    /// Sends one media packet on a slot. `meta` is already rewritten for the slot (PT, seq, ts);
    /// the driver sets the slot's SSRC.
    fn write_media(&mut self, now: Instant, slot: SlotKey, meta: &RtpMeta, payload: &[u8]) -> Result<(), WriteError>;

    /// Asks the publisher of `track` for a keyframe.
    fn request_keyframe(&mut self, track: TrackKey, kind: KeyframeKind);

    /// Sends DTMF digits as RFC 4733 events on the participant's audio slot.
    fn send_dtmf(&mut self, _now: Instant, _digits: &str, _duration_ms: u32) -> Result<(), WriteError> {
        Err(WriteError::Refused("this participant kind does not send DTMF"))
    }

    /// Drains every pending output into `out` and returns when to call `handle_timeout` next.
    fn poll(&mut self, now: Instant, out: &mut dyn Output) -> Instant;

    /// Starts an orderly close. `poll` still drains what closing produced.
    fn close(&mut self, now: Instant);

    /// A plain-RTP leg's side of an in-kernel forwarding rule; `None` for every other kind.
    fn kernel_leg(&self) -> Option<KernelLeg> {
        None
    }

    /// The kernel forwarded `counts` of the peer's stream past this driver: take them as if
    /// received (statistics, latch freshness). See the `kernel` module.
    fn kernel_received(&mut self, _counts: &KernelCounts) {}

    /// The kernel sent these on this driver's slot, numbered `seq` / `ts` on the wire for the
    /// newest: count them and continue the slot's numbering after them.
    fn kernel_sent(&mut self, _counts: &KernelCounts, _seq: u16, _ts: u32) {}
}
