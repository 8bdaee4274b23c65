//! Builds the driver for a participant kind. The only place the runtime names driver crates.

use super::command::CommandError;
use crate::config::Config;
use mio::net::UdpSocket;
use std::net::SocketAddr;
use std::time::Instant;
use switchboard_driver::{Driver, Mcu, ParticipantKind};
use switchboard_rtp::{RtpDriver, RtpLegConfig};
use switchboard_webrtc::WebrtcDriver;

/// The bound sockets of a new rtp/srtp leg: RTP on an even port, RTCP on the next.
pub struct LegPorts {
    pub port: u16,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
}

pub fn make(
    kind: ParticipantKind,
    now: Instant,
    cfg: &Config,
    webrtc_local: SocketAddr,
    leg: Option<&LegPorts>,
) -> Result<Box<dyn Driver>, CommandError> {
    match (kind, leg) {
        (ParticipantKind::Webrtc, _) => {
            let candidates: Vec<SocketAddr> =
                cfg.webrtc.advertised_ips.iter().map(|ip| SocketAddr::new(*ip, webrtc_local.port())).collect();
            Ok(Box::new(WebrtcDriver::new(now, &candidates)))
        }
        (ParticipantKind::Rtp | ParticipantKind::Srtp, Some(leg)) => {
            let (rtp_local, rtcp_local) = match (leg.rtp.local_addr(), leg.rtcp.local_addr()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => return Err(CommandError::NoPorts),
            };
            let cfg = RtpLegConfig {
                kind_hint: Some(kind),
                rtp_local,
                rtcp_local,
                advertised_ip: cfg.rtp.advertised_ip,
                symmetric: cfg.rtp.symmetric,
            };
            Ok(Box::new(RtpDriver::new(cfg, now)))
        }
        (ParticipantKind::Rtp | ParticipantKind::Srtp, None) => Err(CommandError::NoPorts),
    }
}

/// The room's mixer, or `None` when GStreamer cannot start: the bridge then forwards only, and
/// reports mix and transcode routes without media.
pub fn mixer_factory() -> Option<crate::core::MixerFactory> {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ready = *READY.get_or_init(|| match switchboard_mixer::gst_codec::init() {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "GStreamer unavailable: mixing and transcoding are off");
            false
        }
    });
    ready.then(|| {
        let f: crate::core::MixerFactory =
            std::sync::Arc::new(|now| Box::new(switchboard_mixer::Mixer::new(now)) as Box<dyn Mcu>);
        f
    })
}
