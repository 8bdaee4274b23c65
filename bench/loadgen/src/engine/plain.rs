//! Plain RTP on the wire, for the legs without a WebRTC stack: the packet a plain leg sends, and
//! the payload it reads back (RTCP is counted and skipped).

use super::stats::Stats;

/// Writes one RTP packet (version 2, no CSRC, no extension) into `out`, replacing what it held.
#[inline]
pub(super) fn write(out: &mut Vec<u8>, marker: bool, pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) {
    out.clear();
    out.push(0x80);
    out.push(if marker { 0x80 } else { 0 } | (pt & 0x7f));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The payload of a plain RTP datagram; RTCP is counted and skipped.
#[inline]
pub(super) fn payload<'a>(d: &'a [u8], stats: &mut Stats) -> Option<&'a [u8]> {
    if d.len() < 12 || d[0] >> 6 != 2 {
        return None;
    }
    if (200..=206).contains(&d[1]) {
        stats.on_rtcp();
        return None;
    }
    let cc = (d[0] & 0x0f) as usize;
    let mut off = 12 + 4 * cc;
    if d[0] & 0x10 != 0 {
        if d.len() < off + 4 {
            return None;
        }
        let words = u16::from_be_bytes([d[off + 2], d[off + 3]]) as usize;
        off += 4 + 4 * words;
    }
    let mut end = d.len();
    if d[0] & 0x20 != 0 {
        let pad = *d.last()? as usize;
        end = end.checked_sub(pad)?;
    }
    (off <= end).then(|| &d[off..end])
}
