//! The forwarding program's map entries, laid out as `bpf/rtp_forward.bpf.c` declares them, and
//! how a core `KernelPath` becomes one.

#![allow(unsafe_code, reason = "aya::Pod is an unsafe marker trait; each impl says why it is sound")]

use crate::core::KernelPath;
use std::net::{IpAddr, SocketAddr};

/// `struct fwd_key`: the packet as it arrives. Network byte order, as the program reads it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub src_addr: [u8; 4],
    pub dst_addr: [u8; 4],
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
}

/// `struct fwd_rule`: the rewrite. Addresses, ports and SSRCs in network byte order, the offsets
/// in the host's.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub new_src_addr: [u8; 4],
    pub new_dst_addr: [u8; 4],
    pub new_src_port: [u8; 2],
    pub new_dst_port: [u8; 2],
    pub in_ssrc: [u8; 4],
    pub out_ssrc: [u8; 4],
    pub ts_offset: u32,
    pub seq_offset: u16,
    pub pad16: u16,
    pub in_pt: u8,
    pub out_pt: u8,
    pub redirect: u8,
    pub pad: u8,
}

/// `struct fwd_stats`, which the program writes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub last_ns: u64,
    pub last_seq: u32,
    pub last_ts: u32,
}

// SAFETY: plain `repr(C)` integers and byte arrays laid out without padding (checked by the
// size test below), valid for any bit pattern, `Copy` and `'static`: what `aya::Pod` asks.
unsafe impl aya::Pod for Key {}
// SAFETY: as for `Key`; the two pad fields make the layout's holes explicit.
unsafe impl aya::Pod for Rule {}
// SAFETY: as for `Key`.
unsafe impl aya::Pod for Stats {}

fn v4(a: SocketAddr) -> Option<([u8; 4], [u8; 2])> {
    match a.ip() {
        IpAddr::V4(ip) => Some((ip.octets(), a.port().to_be_bytes())),
        IpAddr::V6(_) => None,
    }
}

/// The key and rule for `path`; `None` for an IPv6 address (the program parses IPv4 only).
/// `redirect` is false on loopback, where the stack delivers the rewritten packet itself.
pub fn build(path: &KernelPath, redirect: bool) -> Option<(Key, Rule)> {
    let (src_addr, src_port) = v4(path.peer)?;
    let (dst_addr, dst_port) = v4(path.local)?;
    let (new_src_addr, new_src_port) = v4(path.new_src)?;
    let (new_dst_addr, new_dst_port) = v4(path.new_dst)?;
    let key = Key { src_addr, dst_addr, src_port, dst_port };
    let rule = Rule {
        new_src_addr,
        new_dst_addr,
        new_src_port,
        new_dst_port,
        in_ssrc: path.in_ssrc.0.to_be_bytes(),
        out_ssrc: path.out_ssrc.0.to_be_bytes(),
        ts_offset: path.ts_offset,
        seq_offset: path.seq_offset,
        pad16: 0,
        in_pt: path.in_pt.0 & 0x7f,
        out_pt: path.out_pt.0 & 0x7f,
        redirect: u8::from(redirect),
        pad: 0,
    };
    Some((key, rule))
}

/// The stats entry a new rule starts with: the program takes a packet only within the RFC 3550
/// limits of the newest number user space saw, so it starts there.
pub fn first_stats(path: &KernelPath) -> Stats {
    Stats { last_seq: u32::from(path.last_in_seq), ..Stats::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_driver::{ParticipantId, Pt, Ssrc};

    fn path() -> KernelPath {
        KernelPath {
            from: ParticipantId(1),
            to: ParticipantId(2),
            peer: "127.0.0.1:5004".parse().unwrap(),
            local: "127.0.0.1:40000".parse().unwrap(),
            in_pt: Pt(0),
            in_ssrc: Ssrc(0x1122_3344),
            last_in_seq: 65_500,
            new_src: "127.0.0.1:40002".parse().unwrap(),
            new_dst: "10.1.2.3:6000".parse().unwrap(),
            out_ssrc: Ssrc(0xaabb_ccdd),
            out_pt: Pt(8),
            seq_offset: 40_000,
            ts_offset: 0xdead_beef,
        }
    }

    #[test]
    fn layouts_match_the_programs_structs() {
        // sizeof(struct fwd_key), fwd_rule and fwd_stats in bpf/rtp_forward.bpf.c.
        assert_eq!(std::mem::size_of::<Key>(), 12);
        assert_eq!(std::mem::size_of::<Rule>(), 32);
        assert_eq!(std::mem::size_of::<Stats>(), 32);
    }

    #[test]
    fn a_path_becomes_a_key_and_rule_in_wire_order() {
        let (key, rule) = build(&path(), false).expect("IPv4");
        assert_eq!(key.src_addr, [127, 0, 0, 1]);
        assert_eq!(key.src_port, [0x13, 0x8c], "5004, big-endian");
        assert_eq!(key.dst_port, 40_000u16.to_be_bytes());
        assert_eq!(rule.new_dst_addr, [10, 1, 2, 3]);
        assert_eq!(rule.new_dst_port, 6000u16.to_be_bytes());
        assert_eq!(rule.new_src_port, 40_002u16.to_be_bytes());
        assert_eq!(rule.in_ssrc, [0x11, 0x22, 0x33, 0x44]);
        assert_eq!(rule.out_ssrc, [0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!((rule.seq_offset, rule.ts_offset), (40_000, 0xdead_beef), "offsets stay in host order");
        assert_eq!((rule.in_pt, rule.out_pt, rule.redirect), (0, 8, 0));
        assert_eq!(first_stats(&path()).last_seq, 65_500);
    }

    #[test]
    fn ipv6_is_left_to_user_space() {
        let mut p = path();
        p.new_dst = "[::1]:6000".parse().unwrap();
        assert!(build(&p, false).is_none());
    }
}
