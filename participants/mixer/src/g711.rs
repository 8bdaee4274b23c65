//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA) on 16-bit linear PCM.
//!
//! Decoding goes through 256-entry tables built at compile time; encoding finds the segment with
//! `leading_zeros` instead of a search loop, so both directions are a handful of instructions per
//! sample. Every function converts `min(input.len(), out.len())` samples and never allocates, so the
//! media thread can call them per frame on reused buffers.

/// µ-law works on magnitudes offset by this bias so every segment boundary is a power of two.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude that still fits the top segment once the bias is added.
const ULAW_CLIP: i32 = 32_635;

const fn ulaw_to_linear(code: u8) -> i16 {
    // Codes are stored inverted so that an idle line (all ones) means zero.
    let u = !code;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    // Decoding to the middle of the quantisation interval halves the worst-case error.
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_to_linear(code: u8) -> i16 {
    // Even bits are inverted on the wire to keep the line busy during silence.
    let a = code ^ 0x55;
    let segment = ((a >> 4) & 0x07) as i32;
    let mut magnitude = ((a & 0x0F) as i32) << 4;
    // The +8 (and +0x108 once the implicit leading one appears) decodes to the interval midpoint.
    magnitude += if segment == 0 { 8 } else { 0x108 };
    if segment > 1 {
        magnitude <<= segment - 1;
    }
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw { alaw_to_linear(i as u8) } else { ulaw_to_linear(i as u8) };
        i += 1;
    }
    table
}

static ULAW_TABLE: [i16; 256] = build_table(false);
static ALAW_TABLE: [i16; 256] = build_table(true);

#[inline]
fn linear_to_ulaw(sample: i16) -> u8 {
    let mut x = sample as i32;
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(ULAW_CLIP) + ULAW_BIAS;
    // x is in [0x84, 0x7FFF], so its top bit is bit 7..=14 and the exponent 0..=7.
    let exponent = (31 - x.leading_zeros() as i32) - 7;
    let mantissa = (x >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

#[inline]
fn linear_to_alaw(sample: i16) -> u8 {
    // A-law is defined on 13 bits; the arithmetic shift floors, so -1..-8 land on the -0 code.
    let mut x = (sample as i32) >> 3;
    let mask = if x >= 0 {
        0xD5
    } else {
        x = -x - 1;
        0x55
    };
    // x is in [0, 4095]: segment 0 covers 0..32, then one segment per further bit up to 7.
    let top_bit = 31 - (x | 1).leading_zeros() as i32;
    let segment = (top_bit - 4).max(0);
    let mantissa = if segment < 2 { (x >> 1) & 0x0F } else { (x >> segment) & 0x0F };
    ((segment << 4) | mantissa) as u8 ^ mask
}

/// Decodes µ-law bytes into linear samples.
pub fn ulaw_decode(input: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(input) {
        *o = ULAW_TABLE[c as usize];
    }
}

/// Encodes linear samples into µ-law bytes.
pub fn ulaw_encode(input: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(input) {
        *o = linear_to_ulaw(s);
    }
}

/// Decodes A-law bytes into linear samples.
pub fn alaw_decode(input: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(input) {
        *o = ALAW_TABLE[c as usize];
    }
}

/// Encodes linear samples into A-law bytes.
pub fn alaw_encode(input: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(input) {
        *o = linear_to_alaw(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulaw(s: i16) -> u8 {
        let mut o = [0u8];
        ulaw_encode(&[s], &mut o);
        o[0]
    }

    fn alaw(s: i16) -> u8 {
        let mut o = [0u8];
        alaw_encode(&[s], &mut o);
        o[0]
    }

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw(0), 0xFF);
        assert_eq!(ULAW_TABLE[0xFF], 0);
        assert_eq!(ULAW_TABLE[0x7F], 0);
        assert_eq!(ULAW_TABLE[0x80], 32_124);
        assert_eq!(ULAW_TABLE[0x00], -32_124);
        assert_eq!(ulaw(i16::MAX), 0x80);
        assert_eq!(ulaw(i16::MIN), 0x00);
        assert_eq!(ulaw(-1), 0x7F);
        // First step of segment 0: magnitudes 0..=3 share a code, 4..=11 the next one.
        assert_eq!(ulaw(4), 0xFE);
        assert_eq!(ULAW_TABLE[0xFE], 8);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw(0), 0xD5);
        assert_eq!(ALAW_TABLE[0xD5], 8);
        assert_eq!(alaw(8), 0xD5);
        assert_eq!(alaw(-1), 0x55);
        assert_eq!(ALAW_TABLE[0x55], -8);
        assert_eq!(ALAW_TABLE[0xAA], 32_256);
        assert_eq!(ALAW_TABLE[0x2A], -32_256);
        assert_eq!(alaw(i16::MAX), 0xAA);
        assert_eq!(alaw(i16::MIN), 0x2A);
    }

    /// Decoding lands on interval midpoints, so re-encoding any decoded code must give it back
    /// (except µ-law's negative zero, which the encoder folds into positive zero).
    #[test]
    fn codes_are_fixed_points() {
        for code in 0..=255u8 {
            let want = if code == 0x7F { 0xFF } else { code };
            assert_eq!(ulaw(ULAW_TABLE[code as usize]), want, "µ-law {code:#04x}");
            assert_eq!(alaw(ALAW_TABLE[code as usize]), code, "A-law {code:#04x}");
        }
    }

    #[test]
    fn round_trip_within_quantisation_error() {
        let input: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let mut codes = vec![0u8; input.len()];
        let mut back = vec![0i16; input.len()];

        ulaw_encode(&input, &mut codes);
        ulaw_decode(&codes, &mut back);
        for (&x, &y) in input.iter().zip(&back) {
            let x = x as i32;
            let err = (x - y as i32).abs();
            // Half a step of the segment the biased magnitude falls in, i.e. at most 1/32 of it;
            // beyond the clip level the error is the distance to the top code.
            let bound = if x.abs() > ULAW_CLIP { x.abs() - 32_124 } else { (x.abs() + ULAW_BIAS) / 32 };
            assert!(err <= bound, "µ-law {x} -> {y}");
        }

        alaw_encode(&input, &mut codes);
        alaw_decode(&codes, &mut back);
        for (&x, &y) in input.iter().zip(&back) {
            let x = x as i32;
            let err = (x - y as i32).abs();
            // Half a step (at most 1/32 of the magnitude, 8 in the linear segments) plus the
            // 3 bits the 13-bit A-law scale drops.
            let bound = (x.abs() / 32).max(8) + 8;
            assert!(err <= bound, "A-law {x} -> {y}");
        }
    }

    #[test]
    fn short_output_converts_only_what_fits() {
        let mut out = [0i16; 2];
        ulaw_decode(&[0x80, 0x80, 0x80], &mut out);
        assert_eq!(out, [32_124, 32_124]);
        let mut codes = [0u8; 4];
        alaw_encode(&[0], &mut codes);
        assert_eq!(codes, [0xD5, 0, 0, 0]);
    }
}
