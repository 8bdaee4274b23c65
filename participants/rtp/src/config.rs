//! The small public types a runtime hands to and reads from a leg.

use crate::policy::PeerPolicy;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use switchboard_driver::ParticipantKind;

/// How the runtime set up one rtp/srtp leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpLegConfig {
    /// The kind the API asked for, if any. An offer that contradicts it is refused; without an
    /// offer (`create_offer`) it decides between RTP/AVP and RTP/SAVP (`None` means rtp).
    pub kind_hint: Option<ParticipantKind>,
    /// The bound RTP socket. Its port is the one advertised in SDP.
    pub rtp_local: SocketAddr,
    /// The bound RTCP socket (RTP port + 1), unused once rtcp-mux is negotiated.
    pub rtcp_local: SocketAddr,
    /// The address written in `c=` and `o=`.
    pub advertised_ip: IpAddr,
    /// Symmetric RTP (comedia): send to wherever the peer's valid packets come from, and
    /// follow the peer when its media moves. Off: only the SDP address is accepted.
    pub symmetric: bool,
    /// Where the peer's media may be: checked on every offer, answer and inbound datagram.
    pub peers: PeerPolicy,
}

impl RtpLegConfig {
    /// The usual set-up: RTCP on the next port, symmetric RTP on, kind from the offer, any unicast
    /// peer.
    pub fn new(rtp_local: SocketAddr, advertised_ip: IpAddr) -> RtpLegConfig {
        let rtcp_port = rtp_local.port().wrapping_add(1);
        RtpLegConfig {
            kind_hint: None,
            rtp_local,
            rtcp_local: SocketAddr::new(rtp_local.ip(), rtcp_port),
            advertised_ip,
            symmetric: true,
            peers: PeerPolicy::allow_all(),
        }
    }
}

/// What the peer said about the bridge's stream in its last SR/RR report block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteReport {
    /// Fraction of the bridge's packets lost in the peer's last interval, 0.0 to 1.0.
    pub fraction_lost: f64,
    /// Cumulative packets lost, as the peer counts them.
    pub cumulative_lost: i32,
    pub jitter_ms: f64,
    /// Round trip from the report's LSR/DLSR, once the peer has seen one of the bridge's SRs.
    pub rtt_ms: Option<f64>,
    pub received_at: Instant,
}

/// Counters and quality figures of one leg, for metrics and the API view.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LegStats {
    /// Valid RTP packets received (media and telephone-event).
    pub packets_received: u64,
    /// Their payload octets (RTP and SRTP overhead excluded, as RTCP counts them).
    pub bytes_received: u64,
    pub packets_sent: u64,
    /// Payload octets sent.
    pub bytes_sent: u64,
    /// Inbound packets lost, by the bridge's own count (RFC 3550 A.3).
    pub packets_lost: i64,
    /// Inbound interarrival jitter (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// The peer's view of the bridge's stream, from its last report.
    pub remote: Option<RemoteReport>,
    /// DTMF digits received.
    pub dtmf_received: u64,
    /// Output dropped because `poll` was not called for too long.
    pub queue_overflows: u64,
}
