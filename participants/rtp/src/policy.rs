//! Where a leg's media may go: the peer addresses an SDP may name and a packet may latch to.
//!
//! A plain RTP bridge sends wherever the peer's SDP (or its packets) point. Without a check, an
//! offer naming the bridge's own leg ports makes it feed itself (a loop that grows with every
//! packet), one naming a multicast or broadcast group sprays a network, and one naming any host
//! at all turns the bridge into a reflector aimed at a victim. The same rules hold for a latched
//! source, since latching moves the send address just as SDP does.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

/// One of the bridge's own media addresses: an IP together with the ports it receives on there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnAddress {
    /// An unspecified IP (a socket bound to `0.0.0.0` or `::`) stands for every loopback
    /// address, which is how the host reaches such a socket without leaving itself.
    pub ip: IpAddr,
    pub ports: RangeInclusive<u16>,
}

/// The rules one leg applies to the peer's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    /// The peer must sit inside one of these networks.
    pub allowed: Vec<IpNet>,
    /// The bridge's own media addresses, which no peer may name.
    pub own: Vec<OwnAddress>,
}

/// Why a peer address is refused. The text ends up in a 400 `bad_sdp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    #[error("it is one of the bridge's own media addresses (no loops)")]
    OwnAddress,
    #[error("it is a multicast address (unicast peers only)")]
    Multicast,
    #[error("it is the broadcast address (unicast peers only)")]
    Broadcast,
    #[error("it is unspecified (only c=0.0.0.0, hold, may be)")]
    Unspecified,
    #[error("it is outside rtp.allowed_peers")]
    NotAllowed,
}

impl PeerPolicy {
    /// Any unicast peer, and no own addresses: for tests and tools that run a lone leg.
    pub fn allow_all() -> PeerPolicy {
        let any = |s: &str| s.parse::<IpNet>().expect("a literal CIDR that parses");
        PeerPolicy { allowed: vec![any("0.0.0.0/0"), any("::/0")], own: Vec::new() }
    }

    /// Whether the peer may be at `addr`. Runs on every inbound datagram: no allocation.
    pub fn check(&self, addr: SocketAddr) -> Result<(), PeerRefusal> {
        // why canonical: `::ffff:a.b.c.d` is the same IPv4 host and must meet the same rules.
        let ip = addr.ip().to_canonical();
        if ip.is_unspecified() {
            return Err(PeerRefusal::Unspecified);
        }
        if ip.is_multicast() {
            return Err(PeerRefusal::Multicast);
        }
        if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
            return Err(PeerRefusal::Broadcast);
        }
        if self.own.iter().any(|o| o.covers(ip, addr.port())) {
            return Err(PeerRefusal::OwnAddress);
        }
        if !self.allowed.iter().any(|net| net.contains(&ip)) {
            return Err(PeerRefusal::NotAllowed);
        }
        Ok(())
    }

    /// Whether a datagram from `src` may be taken (and so latched to).
    pub fn permits(&self, src: SocketAddr) -> bool {
        self.check(src).is_ok()
    }
}

impl OwnAddress {
    fn covers(&self, ip: IpAddr, port: u16) -> bool {
        let own = self.ip.to_canonical();
        let same_host = own == ip || (own.is_unspecified() && ip.is_loopback());
        same_host && self.ports.contains(&port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> PeerPolicy {
        PeerPolicy {
            allowed: allowed.iter().map(|s| s.parse().unwrap()).collect(),
            own: vec![
                OwnAddress { ip: "127.0.0.1".parse().unwrap(), ports: 40000..=40999 },
                OwnAddress { ip: "203.0.113.1".parse().unwrap(), ports: 40000..=40999 },
                OwnAddress { ip: "0.0.0.0".parse().unwrap(), ports: 3478..=3478 },
            ],
        }
    }

    #[test]
    fn the_rules_in_a_table() {
        use PeerRefusal::*;
        let all = policy(&["0.0.0.0/0", "::/0"]);
        let lab = policy(&["127.0.0.0/8", "10.0.0.0/8"]);
        let cases: &[(&PeerPolicy, &str, Result<(), PeerRefusal>)] = &[
            (&all, "192.0.2.10:30000", Ok(())),
            (&all, "[2001:db8::1]:30000", Ok(())),
            (&all, "127.0.0.1:40002", Err(OwnAddress)),
            (&all, "127.0.0.1:40999", Err(OwnAddress)),
            (&all, "127.0.0.1:41000", Ok(())),
            (&all, "127.0.0.1:39999", Ok(())),
            (&all, "[::ffff:127.0.0.1]:40010", Err(OwnAddress)),
            (&all, "203.0.113.1:40500", Err(OwnAddress)),
            (&all, "203.0.113.1:5060", Ok(())),
            // A socket bound to 0.0.0.0 is reached over any loopback address.
            (&all, "127.0.0.9:3478", Err(OwnAddress)),
            (&all, "192.0.2.1:3478", Ok(())),
            (&all, "239.1.2.3:30000", Err(Multicast)),
            (&all, "224.0.0.1:30000", Err(Multicast)),
            (&all, "[ff02::1]:30000", Err(Multicast)),
            (&all, "255.255.255.255:30000", Err(Broadcast)),
            (&all, "0.0.0.0:30000", Err(Unspecified)),
            (&all, "[::]:30000", Err(Unspecified)),
            (&lab, "127.0.0.1:30000", Ok(())),
            (&lab, "10.1.2.3:30000", Ok(())),
            (&lab, "192.0.2.10:30000", Err(NotAllowed)),
            (&lab, "[2001:db8::1]:30000", Err(NotAllowed)),
            (&lab, "239.1.2.3:30000", Err(Multicast)),
        ];
        for (p, addr, want) in cases {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(p.check(addr), *want, "{addr}");
            assert_eq!(p.permits(addr), want.is_ok(), "{addr}");
        }
    }

    #[test]
    fn allow_all_takes_any_unicast_peer() {
        let p = PeerPolicy::allow_all();
        assert!(p.permits("127.0.0.1:40002".parse().unwrap()));
        assert!(p.permits("[2001:db8::1]:9".parse().unwrap()));
        assert!(!p.permits("239.1.2.3:9".parse().unwrap()));
    }
}
