//! G.711 µ-law (PCMU) and A-law (PCMA), written from the standard's segment tables: what a test
//! sends as a phone and decodes of what a phone receives.

/// One 16-bit linear sample as µ-law.
pub fn ulaw_encode(x: i16) -> u8 {
    let mut v = i32::from(x);
    let sign = if v < 0 {
        v = -v;
        0x80
    } else {
        0
    };
    v = v.min(32635) + 0x84;
    let mut exp = 7;
    while exp > 0 && v & (0x80 << exp) == 0 {
        exp -= 1;
    }
    let mant = (v >> (exp + 3)) & 0x0f;
    !(sign | (exp << 4) | mant) as u8
}

/// One µ-law byte as a 16-bit linear sample.
pub fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let exp = i32::from((u >> 4) & 7);
    let mant = i32::from(u & 0x0f);
    let v = (((mant << 3) + 0x84) << exp) - 0x84;
    (if u & 0x80 != 0 { -v } else { v }) as i16
}

/// One 16-bit linear sample as A-law.
pub fn alaw_encode(x: i16) -> u8 {
    let mut v = i32::from(x) >> 3; // 13-bit magnitude range
    let sign = if v >= 0 {
        0x80
    } else {
        v = -v - 1;
        0
    };
    let v = v.min(0x0fff);
    let mut exp = 7;
    while exp > 0 && v & (0x10 << exp) == 0 {
        exp -= 1;
    }
    let mant = if exp == 0 { (v >> 1) & 0x0f } else { (v >> exp) & 0x0f };
    ((sign | (exp << 4) | mant) ^ 0x55) as u8
}

/// One A-law byte as a 16-bit linear sample.
pub fn alaw_decode(a: u8) -> i16 {
    let a = a ^ 0x55;
    let exp = i32::from((a >> 4) & 7);
    let mant = i32::from(a & 0x0f);
    let mag = if exp == 0 { (mant << 4) + 8 } else { ((mant << 4) + 0x108) << (exp - 1) };
    (if a & 0x80 != 0 { mag } else { -mag }) as i16
}

/// `seconds` of a `hz` tone at half scale as PCMU RTP packets of 20 ms (160 samples): payload
/// type 0, sequence numbers from 0, timestamps from 0, one SSRC.
pub fn pcmu_tone_packets(hz: f32, seconds: f32, ssrc: u32) -> Vec<Vec<u8>> {
    let pcm = crate::audio::sine(hz, 8000, seconds, 0.5);
    pcm.chunks_exact(160)
        .enumerate()
        .map(|(i, chunk)| {
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&(i as u16).to_be_bytes());
            p.extend_from_slice(&((i as u32) * 160).to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            p.extend(chunk.iter().map(|&s| ulaw_encode(s)));
            p
        })
        .collect()
}

/// The linear samples of PCMU RTP packets' payloads (12-byte headers, no CSRC or extension, as
/// the bridge sends them), in the order given.
pub fn pcmu_payload_samples<'a>(packets: impl IntoIterator<Item = &'a [u8]>) -> Vec<i16> {
    packets.into_iter().filter(|p| p.len() > 12).flat_map(|p| p[12..].iter().map(|&b| ulaw_decode(b))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_round_trips_within_its_step_and_a_tone_survives() {
        assert_eq!(ulaw_encode(0), 0xff);
        for x in [-32000i16, -1000, -1, 0, 1, 100, 1000, 8000, 32000] {
            let back = i32::from(ulaw_decode(ulaw_encode(x)));
            let step = (i32::from(x).abs() / 16).max(8);
            assert!((back - i32::from(x)).abs() <= step, "{x} came back {back}");
        }
        let packets = pcmu_tone_packets(440.0, 1.0, 7);
        assert_eq!(packets.len(), 50);
        assert_eq!(u16::from_be_bytes([packets[49][2], packets[49][3]]), 49);
        let pcm = pcmu_payload_samples(packets.iter().map(Vec::as_slice));
        let hz = crate::audio::dominant_frequency(&pcm, 8000);
        assert!((hz - 440.0).abs() < 2.0, "{hz}");
    }

    #[test]
    fn both_laws_round_trip_a_tone() {
        let s = crate::audio::sine(440.0, 8000, 0.5, 0.5);
        let u: Vec<i16> = s.iter().map(|x| ulaw_decode(ulaw_encode(*x))).collect();
        let a: Vec<i16> = s.iter().map(|x| alaw_decode(alaw_encode(*x))).collect();
        for (name, d) in [("ulaw", &u), ("alaw", &a)] {
            assert!((crate::audio::dominant_frequency(d, 8000) - 440.0).abs() < 2.0, "{name}");
            let err: f64 = s.iter().zip(d.iter()).map(|(x, y)| f64::from(*x - *y).abs()).sum::<f64>() / s.len() as f64;
            assert!(err < 200.0, "{name}: mean error {err}");
        }
        assert_eq!(alaw_encode(0), 0xd5);
    }
}
