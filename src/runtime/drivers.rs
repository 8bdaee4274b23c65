//! Builds the driver for a participant kind. The only place the runtime names driver crates.

use super::command::CommandError;
use crate::config::Config;
use mio::net::UdpSocket;
use std::net::SocketAddr;
use std::time::Instant;
use switchboard_driver::{Driver, Mcu, ParticipantKind};
use switchboard_rtp::{OwnAddress, PeerPolicy, RtpDriver, RtpLegConfig};
use switchboard_webrtc::WebrtcDriver;

/// The bound sockets of a new rtp/srtp leg: RTP on an even port, RTCP on the next.
pub struct LegPorts {
    pub port: u16,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
}

/// `webrtc_local` is the joining worker's WebRTC address (a WebRTC participant's candidates
/// name it); `node_webrtc` is every worker's, which no leg may send to.
pub fn make(
    kind: ParticipantKind,
    now: Instant,
    cfg: &Config,
    webrtc_local: SocketAddr,
    node_webrtc: &[SocketAddr],
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
                peers: peer_policy(cfg, node_webrtc),
            };
            Ok(Box::new(RtpDriver::new(cfg, now)))
        }
        (ParticipantKind::Rtp | ParticipantKind::Srtp, None) => Err(CommandError::NoPorts),
    }
}

/// Where a plain/SDES leg's media may go: into `rtp.allowed_peers`, and never back to one of the
/// bridge's own media sockets: the whole leg range (every worker's slice) on the bind and
/// advertised IPs, and every worker's WebRTC port.
pub fn peer_policy(cfg: &Config, node_webrtc: &[SocketAddr]) -> PeerPolicy {
    let legs = cfg.rtp.port_min..=cfg.rtp.port_max;
    let mut own: Vec<OwnAddress> =
        [cfg.rtp.bind_ip, cfg.rtp.advertised_ip].into_iter().map(|ip| OwnAddress { ip, ports: legs.clone() }).collect();
    for w in node_webrtc {
        own.extend(
            std::iter::once(w.ip())
                .chain(cfg.webrtc.advertised_ips.iter().copied())
                .map(|ip| OwnAddress { ip, ports: w.port()..=w.port() }),
        );
    }
    // `validate` parsed the list at start-up; should it ever fail here, no peer is allowed
    // rather than every one.
    let allowed = cfg.rtp.allowed_networks().unwrap_or_default();
    PeerPolicy { allowed, own }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_covers_the_bridges_own_sockets() {
        let mut cfg = Config::default();
        cfg.rtp.advertised_ip = "203.0.113.1".parse().unwrap();
        cfg.rtp.allowed_peers = vec!["127.0.0.0/8".into(), "203.0.113.0/24".into()];
        let p = peer_policy(&cfg, &["127.0.0.1:3478".parse().unwrap(), "127.0.0.1:3479".parse().unwrap()]);
        let refused = |a: &str| p.check(a.parse().unwrap()).err().map(|e| e.to_string());
        assert!(refused("127.0.0.1:40002").unwrap().contains("no loops"));
        assert!(refused("203.0.113.1:40998").unwrap().contains("no loops"));
        assert!(refused("127.0.0.1:3478").unwrap().contains("no loops"));
        assert!(refused("127.0.0.1:3479").unwrap().contains("no loops"), "another worker's WebRTC port");
        assert!(refused("192.0.2.10:30000").unwrap().contains("allowed_peers"));
        assert_eq!(refused("127.0.0.1:30000"), None);
        assert_eq!(refused("203.0.113.9:40002"), None);
    }
}
