//! RTCP (RFC 3550 §6): building the bridge's SR/RR + SDES (+ BYE) compound packets and reading
//! the peer's reports.

const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;
const BYE: u8 = 203;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("shorter than an RTCP header")]
    TooShort,
    #[error("RTCP version is not 2")]
    Version,
    #[error("packet length runs past the datagram")]
    Length,
    #[error("report count does not fit the packet")]
    Count,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The SSRC this block reports on.
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed on the wire.
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// In RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from `ssrc`.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

/// The sender info of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// NTP timestamp, 32.32 fixed point.
    pub ntp: u64,
    pub rtp_ts: u32,
    pub packets: u32,
    pub octets: u32,
}

/// A parsed RTCP packet. Kinds the bridge has no use for are `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport { ssrc: u32, info: SenderInfo, blocks: Vec<ReportBlock> },
    ReceiverReport { ssrc: u32, blocks: Vec<ReportBlock> },
    Bye { ssrcs: Vec<u32> },
    Other { pt: u8 },
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One 24-byte reception report block.
fn report_block(b: &[u8]) -> ReportBlock {
    let lost24 = be32(b, 4) & 0x00ff_ffff;
    // Sign-extend the 24-bit cumulative loss.
    let cumulative_lost = ((lost24 << 8) as i32) >> 8;
    ReportBlock {
        ssrc: be32(b, 0),
        fraction_lost: b[4],
        cumulative_lost,
        extended_highest_seq: be32(b, 8),
        jitter: be32(b, 12),
        lsr: be32(b, 16),
        dlsr: be32(b, 20),
    }
}

/// One packet of a compound at the front of `rest`: its count field, type, body (padding
/// removed) and its whole length.
fn frame(rest: &[u8]) -> Result<(usize, u8, &[u8], usize), RtcpError> {
    if rest.len() < 4 {
        return Err(RtcpError::TooShort);
    }
    if rest[0] >> 6 != 2 {
        return Err(RtcpError::Version);
    }
    let count = usize::from(rest[0] & 0x1f);
    let pt = rest[1];
    let len = 4 * (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1);
    if len > rest.len() {
        return Err(RtcpError::Length);
    }
    let mut body = &rest[4..len];
    if rest[0] & 0x20 != 0 {
        // Padding: the last octet counts the padding octets, itself included.
        let pad = usize::from(body.last().copied().unwrap_or(0));
        if pad == 0 || pad > body.len() {
            return Err(RtcpError::Length);
        }
        body = &body[..body.len() - pad];
    }
    Ok((count, pt, body, len))
}

/// Whether a packet's body holds what its type and count promise.
fn check(count: usize, pt: u8, body: &[u8]) -> Result<(), RtcpError> {
    let (fixed, per_item) = match pt {
        SR => (24, 24),
        RR => (4, 24),
        BYE => (0, 4),
        _ => return Ok(()),
    };
    if body.len() < fixed {
        return Err(RtcpError::TooShort);
    }
    if body.len() - fixed < count * per_item {
        return Err(RtcpError::Count);
    }
    Ok(())
}

/// A checked packet (see [`check`]), built.
fn build(count: usize, pt: u8, body: &[u8]) -> RtcpPacket {
    let blocks = |b: &[u8]| b.chunks_exact(24).take(count).map(report_block).collect();
    match pt {
        SR => {
            let info = SenderInfo {
                ntp: (u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8)),
                rtp_ts: be32(body, 12),
                packets: be32(body, 16),
                octets: be32(body, 20),
            };
            RtcpPacket::SenderReport { ssrc: be32(body, 0), info, blocks: blocks(&body[24..]) }
        }
        RR => RtcpPacket::ReceiverReport { ssrc: be32(body, 0), blocks: blocks(&body[4..]) },
        BYE => RtcpPacket::Bye { ssrcs: body.chunks_exact(4).take(count).map(|c| be32(c, 0)).collect() },
        other => RtcpPacket::Other { pt: other },
    }
}

/// Parses a (decrypted) compound RTCP packet. Also a fuzzing entry point: it never panics.
///
/// The whole compound is checked before anything is built, so a datagram that is refused costs
/// no allocation (a flood of forged RTCP is dropped for free).
pub fn parse_rtcp(data: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let mut packets = 0;
    let mut rest = data;
    while !rest.is_empty() {
        let (count, pt, body, len) = frame(rest)?;
        check(count, pt, body)?;
        packets += 1;
        rest = &rest[len..];
    }
    if packets == 0 {
        return Err(RtcpError::TooShort);
    }
    let mut out = Vec::with_capacity(packets);
    let mut rest = data;
    while let Ok((count, pt, body, len)) = frame(rest) {
        out.push(build(count, pt, body));
        rest = &rest[len..];
    }
    Ok(out)
}

/// Writes a packet header; the length is patched by `finish`.
fn start(buf: &mut Vec<u8>, count: u8, pt: u8) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0x80 | (count & 0x1f), pt, 0, 0]);
    at
}

fn finish(buf: &mut [u8], at: usize) {
    let words = (buf.len() - at) / 4 - 1;
    let words = u16::try_from(words).unwrap_or(u16::MAX).to_be_bytes();
    buf[at + 2] = words[0];
    buf[at + 3] = words[1];
}

fn write_block(buf: &mut Vec<u8>, b: &ReportBlock) {
    buf.extend_from_slice(&b.ssrc.to_be_bytes());
    let lost = (b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0x00ff_ffff;
    buf.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
    buf.extend_from_slice(&b.extended_highest_seq.to_be_bytes());
    buf.extend_from_slice(&b.jitter.to_be_bytes());
    buf.extend_from_slice(&b.lsr.to_be_bytes());
    buf.extend_from_slice(&b.dlsr.to_be_bytes());
}

/// Appends SR (when `sender` is set) or RR, then SDES with the CNAME.
pub fn write_report(buf: &mut Vec<u8>, ssrc: u32, sender: Option<SenderInfo>, block: Option<ReportBlock>, cname: &str) {
    let count = u8::from(block.is_some());
    let at = start(buf, count, if sender.is_some() { SR } else { RR });
    buf.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(info) = sender {
        buf.extend_from_slice(&info.ntp.to_be_bytes());
        buf.extend_from_slice(&info.rtp_ts.to_be_bytes());
        buf.extend_from_slice(&info.packets.to_be_bytes());
        buf.extend_from_slice(&info.octets.to_be_bytes());
    }
    if let Some(b) = &block {
        write_block(buf, b);
    }
    finish(buf, at);

    let at = start(buf, 1, SDES);
    buf.extend_from_slice(&ssrc.to_be_bytes());
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    buf.push(1); // CNAME
    buf.push(cname.len() as u8); // at most 255 by the slice above
    buf.extend_from_slice(cname);
    // The END item, then zeros to a 32-bit boundary.
    buf.push(0);
    while (buf.len() - at) & 3 != 0 {
        buf.push(0);
    }
    finish(buf, at);
}

/// Appends a BYE for `ssrc`.
pub fn write_bye(buf: &mut Vec<u8>, ssrc: u32) {
    let at = start(buf, 1, BYE);
    buf.extend_from_slice(&ssrc.to_be_bytes());
    finish(buf, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0xabcd,
            fraction_lost: 25,
            cumulative_lost: -3,
            extended_highest_seq: 70_000,
            jitter: 42,
            lsr: 0x1234_5678,
            dlsr: 65536,
        }
    }

    #[test]
    fn sr_with_sdes_and_bye_round_trips() {
        let info = SenderInfo { ntp: 0x0102_0304_0506_0708, rtp_ts: 160, packets: 10, octets: 1600 };
        let mut buf = Vec::new();
        write_report(&mut buf, 7, Some(info), Some(block()), "switchboard-cname");
        write_bye(&mut buf, 7);
        assert_eq!(buf.len() % 4, 0);
        let packets = parse_rtcp(&buf).unwrap();
        assert_eq!(packets[0], RtcpPacket::SenderReport { ssrc: 7, info, blocks: vec![block()] });
        assert_eq!(packets[1], RtcpPacket::Other { pt: SDES });
        assert_eq!(packets[2], RtcpPacket::Bye { ssrcs: vec![7] });
    }

    #[test]
    fn rr_without_blocks_round_trips() {
        let mut buf = Vec::new();
        write_report(&mut buf, 9, None, None, "x");
        let packets = parse_rtcp(&buf).unwrap();
        assert_eq!(packets[0], RtcpPacket::ReceiverReport { ssrc: 9, blocks: vec![] });
    }

    #[test]
    fn rejects_truncated_and_lying_packets() {
        let mut buf = Vec::new();
        write_report(&mut buf, 9, None, Some(block()), "x");
        for cut in [1, 3, 7, 20, buf.len() - 1] {
            assert!(parse_rtcp(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut lying = buf.clone();
        lying[0] = 0x80 | 5; // claims five blocks
        assert_eq!(parse_rtcp(&lying), Err(RtcpError::Count));
        assert_eq!(parse_rtcp(&[0x40, 201, 0, 0]), Err(RtcpError::Version));
        assert_eq!(parse_rtcp(&[]), Err(RtcpError::TooShort));
    }
}
