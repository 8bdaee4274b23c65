//! Plain RTP and SDES-SRTP participants (`rtp` and `srtp` kinds): SIP gateways and carriers.
//!
//! [`RtpDriver`] is a sans-IO [`switchboard_driver::Driver`]. The runtime owns the leg's two UDP
//! sockets (RTP and RTP + 1 for RTCP), passes every datagram in with its destination, calls
//! `handle_timeout` at the deadline `poll` returned, and sends what `poll` hands out. The driver
//! never reads a clock after construction (one wall-clock read anchors RTCP NTP timestamps).
//!
//! What a leg does:
//! - SDP offer/answer with webrtc-sdp: RTP/AVP(F) is `rtp`, RTP/SAVP(F) with `a=crypto` is
//!   `srtp`. The answer names one audio codec (PCMU, PCMA, G722 or opus, the offerer's first,
//!   with its PT) plus telephone-event, so the gateway knows exactly what flows both ways.
//! - SRTP with AES_CM_128_HMAC_SHA1_80/_32 and AEAD_AES_128_GCM through `rtc-srtp`.
//! - Symmetric RTP (latching) on by default, rtcp-mux when offered, SR/RR every 5 s.
//! - A [`PeerPolicy`] says where media may go: no own addresses, multicast or broadcast, and only
//!   allowed networks, both for the SDP's addresses and for a latched source.
//! - RFC 4733 DTMF both ways: received digits reported once, sent digits paced by `poll`.
//!
//! Fuzzing entry points: [`parse_remote_description`], [`offer_transport`], [`RtpHeader::parse`],
//! [`parse_rtcp`].

#![forbid(unsafe_code)]

mod config;
mod inbound;
mod kernel;
mod leg;
mod negotiation;
mod outbound;
mod policy;
mod queue;
mod reception;
mod rtcp;
mod rtp_header;
mod sdes;
mod sdp;
mod sdp_write;
mod srtp;
mod stream;
mod transport;

pub use config::{LegStats, RemoteReport, RtpLegConfig};
pub use leg::RtpDriver;
pub use policy::{OwnAddress, PeerPolicy, PeerRefusal};
pub use rtcp::{parse_rtcp, RtcpError, RtcpPacket};
pub use rtp_header::{audio_level, write_packet, HeaderError, RtpHeader};
pub use sdes::SrtpSuite;
pub use sdp::{parse_remote_description, RemoteDescription, SdpError};
pub use transport::{offer_transport, Transport, TransportError};

#[cfg(test)]
mod tests;
