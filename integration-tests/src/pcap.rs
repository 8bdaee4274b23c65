//! A pcap of UDP datagrams, written at test time: what sipp's `play_pcap_audio` plays. sipp reads
//! Ethernet captures of IPv4/UDP and replays each payload at its capture time, to the address in
//! the call's remote SDP; the addresses in the capture are not used.

use std::path::Path;

/// Writes `payloads` (one UDP payload each, e.g. an RTP packet) as a classic pcap (Ethernet link
/// type), one every `every_ms`, from 10.0.0.1:`ports.0` to 10.0.0.2:`ports.1`.
pub fn write_udp_pcap(path: &Path, payloads: &[Vec<u8>], every_ms: u32, ports: (u16, u16)) -> std::io::Result<()> {
    let mut out = Vec::new();
    // Global header: magic, version 2.4, GMT offset, accuracy, snaplen, link type 1 (Ethernet).
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 65_535, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (i, payload) in payloads.iter().enumerate() {
        let frame = ethernet_frame(payload, ports);
        let at_us = i as u64 * u64::from(every_ms) * 1000;
        let len = frame.len() as u32;
        for v in [(at_us / 1_000_000) as u32, (at_us % 1_000_000) as u32, len, len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out)
}

fn ethernet_frame(payload: &[u8], (from, to): (u16, u16)) -> Vec<u8> {
    let udp_len = 8 + payload.len() as u16;
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + usize::from(ip_len));
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&ip_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&from.to_be_bytes());
    f.extend_from_slice(&to.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    // A zero UDP checksum means "none" over IPv4.
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// The IPv4 header checksum (RFC 791): the one's complement of the one's-complement sum.
fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_holds_each_payload_at_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcap");
        write_udp_pcap(&path, &[vec![1, 2, 3], vec![4; 10]], 20, (4000, 4002)).unwrap();
        let b = std::fs::read(&path).unwrap();
        assert_eq!(&b[..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(b.len(), 24 + (16 + 14 + 28 + 3) + (16 + 14 + 28 + 10));
        // The second record is stamped 20 ms after the first, and ends in its payload.
        let second = 24 + 16 + 14 + 28 + 3;
        assert_eq!(u32::from_le_bytes(b[second + 4..second + 8].try_into().unwrap()), 20_000);
        assert_eq!(&b[b.len() - 10..], &[4; 10]);
        // A header with its checksum in place sums to zero.
        let ip = &b[24 + 16 + 14..24 + 16 + 14 + 20];
        assert_eq!(checksum(ip), 0);
    }
}
