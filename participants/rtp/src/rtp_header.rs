//! The RTP fixed header (RFC 3550 §5.1): parsing with every length checked, and writing into a
//! reused buffer.

/// Why a datagram is not an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("shorter than the 12-byte RTP header")]
    TooShort,
    #[error("RTP version is not 2")]
    Version,
    #[error("CSRC list runs past the end of the packet")]
    CsrcOverrun,
    #[error("header extension runs past the end of the packet")]
    ExtensionOverrun,
    #[error("padding count is larger than the payload")]
    BadPadding,
}

/// The fixed size of an RTP header without CSRCs or extension.
pub const FIXED_HEADER_LEN: usize = 12;

/// A parsed RTP header. `payload` is the byte range of the payload inside the parsed slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Length of the header including CSRCs and the extension.
    pub header_len: usize,
    /// End of the payload (padding excluded). Only meaningful after [`RtpHeader::parse`].
    pub payload_end: usize,
}

impl RtpHeader {
    /// Parses a complete, decrypted RTP packet: header, CSRCs, extension and padding.
    pub fn parse(data: &[u8]) -> Result<RtpHeader, HeaderError> {
        let mut header = Self::parse_header_only(data)?;
        let mut end = data.len();
        if data[0] & 0x20 != 0 {
            // `parse_header_only` checked `data.len() >= header_len >= 12`, so `end - 1` is valid.
            let pad = usize::from(data[end - 1]);
            if pad == 0 || pad > end - header.header_len {
                return Err(HeaderError::BadPadding);
            }
            end -= pad;
        }
        header.payload_end = end;
        Ok(header)
    }

    /// Parses the header but leaves padding alone: for SRTP packets, whose padding is encrypted.
    pub fn parse_header_only(data: &[u8]) -> Result<RtpHeader, HeaderError> {
        if data.len() < FIXED_HEADER_LEN {
            return Err(HeaderError::TooShort);
        }
        if data[0] >> 6 != 2 {
            return Err(HeaderError::Version);
        }
        let csrc_count = usize::from(data[0] & 0x0f);
        let mut header_len = FIXED_HEADER_LEN + 4 * csrc_count;
        if data.len() < header_len {
            return Err(HeaderError::CsrcOverrun);
        }
        if data[0] & 0x10 != 0 {
            if data.len() < header_len + 4 {
                return Err(HeaderError::ExtensionOverrun);
            }
            let words = usize::from(u16::from_be_bytes([data[header_len + 2], data[header_len + 3]]));
            header_len += 4 + 4 * words;
            if data.len() < header_len {
                return Err(HeaderError::ExtensionOverrun);
            }
        }
        Ok(RtpHeader {
            marker: data[1] & 0x80 != 0,
            pt: data[1] & 0x7f,
            seq: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            header_len,
            payload_end: data.len(),
        })
    }
}

/// The RFC 6464 audio level in `packet`'s header extension element `id` (RFC 8285, one-byte or
/// two-byte form): 0 to 127, in -dBov. `None` when the packet has no such element or it is
/// malformed; the packet is still good media then.
pub fn audio_level(packet: &[u8], header: &RtpHeader, id: u8) -> Option<u8> {
    if packet.first()? & 0x10 == 0 {
        return None;
    }
    // The extension block ends the header: `parse_header_only` checked it lies in the packet.
    let words = packet.get(..header.header_len)?;
    let start = FIXED_HEADER_LEN + 4 * usize::from(packet[0] & 0x0f);
    let profile = u16::from_be_bytes([*words.get(start)?, *words.get(start + 1)?]);
    let mut elements = words.get(start + 4..)?;
    let two_byte = match profile {
        0xbede => false,
        p if p & 0xfff0 == 0x1000 => true,
        _ => return None,
    };
    while let Some((&first, rest)) = elements.split_first() {
        // A zero byte is padding in both forms; in the one-byte form, 15 ends the block.
        let (element, len, rest) = match (two_byte, first) {
            (_, 0) => {
                elements = rest;
                continue;
            }
            (true, element) => {
                let (&len, rest) = rest.split_first()?;
                (element, usize::from(len), rest)
            }
            (false, first) if first >> 4 == 15 => return None,
            (false, first) => (first >> 4, usize::from(first & 0x0f) + 1, rest),
        };
        let data = rest.get(..len)?;
        if element == id {
            return data.first().map(|b| b & 0x7f);
        }
        elements = &rest[len..];
    }
    None
}

/// Appends a 12-byte RTP header (no CSRC, no extension, no padding) and the payload to `buf`,
/// which the caller cleared. Reusing `buf` keeps the send path free of allocations.
pub fn write_packet(buf: &mut Vec<u8>, marker: bool, pt: u8, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) {
    buf.push(0x80);
    buf.push((u8::from(marker) << 7) | (pt & 0x7f));
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&timestamp.to_be_bytes());
    buf.extend_from_slice(&ssrc.to_be_bytes());
    buf.extend_from_slice(payload);
}

/// RFC 5761 §4: with rtcp-mux, a second byte of 192..=223 (RTCP packet types 192-223, which
/// includes SR 200 and RR 201) marks RTCP rather than RTP.
pub fn looks_like_rtcp(data: &[u8]) -> bool {
    data.len() >= 2 && (192..=223).contains(&data[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(first: u8, rest_len: usize) -> Vec<u8> {
        let mut p = vec![first, 0x80 | 8, 0x12, 0x34, 0, 0, 0x10, 0, 1, 2, 3, 4];
        p.extend(std::iter::repeat_n(0xaa, rest_len));
        p
    }

    #[test]
    fn parses_fixed_header() {
        let h = RtpHeader::parse(&packet(0x80, 160)).unwrap();
        assert!(h.marker);
        assert_eq!(h.pt, 8);
        assert_eq!(h.seq, 0x1234);
        assert_eq!(h.timestamp, 0x1000);
        assert_eq!(h.ssrc, 0x0102_0304);
        assert_eq!((h.header_len, h.payload_end), (12, 172));
    }

    #[test]
    fn skips_csrcs_and_extension() {
        let mut p = packet(0x80 | 0x10 | 2, 0);
        p.extend_from_slice(&[0; 8]); // two CSRCs
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x7f, 0, 0]); // one-word extension
        p.extend_from_slice(&[1, 2, 3]);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.header_len, 12 + 8 + 8);
        assert_eq!(&p[h.header_len..h.payload_end], &[1, 2, 3]);
    }

    /// A PCMU packet whose header extension block (profile `profile`) holds `elements`.
    fn with_extension(profile: [u8; 2], elements: &[u8]) -> Vec<u8> {
        let mut p = packet(0x80 | 0x10 | 1, 0);
        p.extend_from_slice(&[0; 4]); // one CSRC
        let words = elements.len().div_ceil(4);
        p.extend_from_slice(&profile);
        p.extend_from_slice(&(words as u16).to_be_bytes());
        p.extend_from_slice(elements);
        p.extend(std::iter::repeat_n(0, words * 4 - elements.len()));
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    #[test]
    fn reads_the_audio_level_in_either_extension_form() {
        let level = |p: &[u8], id| audio_level(p, &RtpHeader::parse(p).unwrap(), id);
        // One-byte form: a 2-byte element 2, padding, then the level (V set) as element 1.
        let one = with_extension([0xbe, 0xde], &[0x21, 0xaa, 0xbb, 0, 0x10, 0x80 | 42]);
        assert_eq!(level(&one, 1), Some(42));
        assert_eq!(level(&one, 3), None);
        // Two-byte form: element 5 with 3 bytes, padding, then element 1.
        let two = with_extension([0x10, 0x00], &[5, 3, 1, 2, 3, 0, 1, 1, 127]);
        assert_eq!(level(&two, 1), Some(127));
        // No extension at all, an unknown profile, a stop mark, elements running past the block.
        assert_eq!(level(&packet(0x80, 160), 1), None);
        assert_eq!(level(&with_extension([0x12, 0x34], &[0x10, 30]), 1), None);
        assert_eq!(level(&with_extension([0xbe, 0xde], &[0xf0, 0x10, 30]), 1), None);
        assert_eq!(level(&with_extension([0xbe, 0xde], &[0x2f, 1, 2, 3]), 2), None);
        assert_eq!(level(&with_extension([0x10, 0x00], &[1, 9, 1]), 1), None);
    }

    #[test]
    fn a_truncated_extension_never_panics() {
        let full = with_extension([0xbe, 0xde], &[0x21, 0xaa, 0xbb, 0x10, 0x80 | 42]);
        let header = RtpHeader::parse(&full).unwrap();
        for cut in 0..full.len() {
            // The header as parsed from the whole packet, applied to a shorter one: a caller's
            // mistake must still not panic.
            let _ = audio_level(&full[..cut], &header, 1);
        }
    }

    #[test]
    fn strips_padding() {
        let mut p = packet(0x80 | 0x20, 4);
        p.extend_from_slice(&[0, 0, 3]);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.payload_end - h.header_len, 4);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(RtpHeader::parse(&[0x80; 5]), Err(HeaderError::TooShort));
        assert_eq!(RtpHeader::parse(&packet(0x40, 4)), Err(HeaderError::Version));
        assert_eq!(RtpHeader::parse(&packet(0x8f, 4)), Err(HeaderError::CsrcOverrun));
        let mut ext = packet(0x90, 0);
        ext.extend_from_slice(&[0xbe, 0xde, 0, 9]);
        assert_eq!(RtpHeader::parse(&ext), Err(HeaderError::ExtensionOverrun));
        let mut pad = packet(0xa0, 2);
        pad.push(9);
        assert_eq!(RtpHeader::parse(&pad), Err(HeaderError::BadPadding));
        let mut zero_pad = packet(0xa0, 2);
        zero_pad.push(0);
        assert_eq!(RtpHeader::parse(&zero_pad), Err(HeaderError::BadPadding));
    }

    #[test]
    fn writes_what_it_parses() {
        let mut buf = Vec::new();
        write_packet(&mut buf, true, 101, 65535, 7, 0xdead_beef, &[9, 9]);
        let h = RtpHeader::parse(&buf).unwrap();
        assert_eq!((h.marker, h.pt, h.seq, h.timestamp, h.ssrc), (true, 101, 65535, 7, 0xdead_beef));
        assert_eq!(&buf[h.header_len..h.payload_end], &[9, 9]);
    }

    #[test]
    fn demultiplexes_rtcp() {
        assert!(looks_like_rtcp(&[0x80, 200]));
        assert!(looks_like_rtcp(&[0x81, 201]));
        assert!(!looks_like_rtcp(&[0x80, 0x80]));
        assert!(!looks_like_rtcp(&[0x80, 101]));
    }
}
