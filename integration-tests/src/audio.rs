//! Tone analysis without an FFT: the dominant frequency, the level of a band, RMS, and test sines.

/// Power of the frequency `hz` in `x` (Goertzel), with a Hann window applied on the fly.
/// Scaled so that a full-scale sine at `hz` gives about 1/8 (Hann coherent gain 0.5).
fn goertzel_power(x: &[f32], rate: f32, hz: f32, window: &[f32]) -> f64 {
    let n = x.len();
    let w = 2.0 * std::f64::consts::PI * hz as f64 / rate as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for i in 0..n {
        let s0 = x[i] as f64 * window[i] as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    p / (n as f64 * n as f64)
}

fn hann(n: usize) -> Vec<f32> {
    if n < 2 {
        return vec![1.0; n];
    }
    (0..n).map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos()) as f32).collect()
}

fn normalized(samples: &[i16]) -> Vec<f32> {
    let mean = samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len().max(1) as f64;
    samples.iter().map(|&s| ((s as f64 - mean) / 32768.0) as f32).collect()
}

/// The dominant frequency (Hz) of a mono signal, between 20 Hz and `min(rate/2, 8 kHz)`.
///
/// Scans a window of at most 0.25 s (the last samples given) with Goertzel filters in 5 Hz steps,
/// then refines around the best one in 0.25 Hz steps. Returns 0.0 for silence or fewer than 64
/// samples.
pub fn dominant_frequency(samples: &[i16], rate: u32) -> f32 {
    let take = samples.len().min(rate as usize / 4);
    if take < 64 {
        return 0.0;
    }
    let x = normalized(&samples[samples.len() - take..]);
    if x.iter().all(|&v| v.abs() < 1e-6) {
        return 0.0;
    }
    let w = hann(x.len());
    let r = rate as f32;
    let top = (r / 2.0 - 1.0).min(8000.0);
    // The strongest of `best` and the frequencies from `f` to `to` in `step`s.
    let scan = |mut f: f32, to: f32, step: f32, mut best: (f32, f64)| {
        while f <= to {
            let p = goertzel_power(&x, r, f, &w);
            if p > best.1 {
                best = (f, p);
            }
            f += step;
        }
        best
    };
    let coarse = scan(20.0, top, 5.0, (0.0, -1.0));
    let centre = coarse.0;
    scan((centre - 5.0).max(1.0), (centre + 5.0).min(top), 0.25, coarse).0
}

/// Level (dBFS, where a full-scale square wave is 0 dB and a full-scale sine about -3 dB) of
/// the part of the signal between `lo_hz` and `hi_hz`, computed from DFT bins (rectangular
/// window, Parseval) over at most the last 0.5 s. Returns -200.0 for no energy.
pub fn band_energy_db(samples: &[i16], rate: u32, lo_hz: f32, hi_hz: f32) -> f32 {
    assert!(lo_hz < hi_hz, "band_energy_db: lo {lo_hz} >= hi {hi_hz}");
    let mut n = samples.len().min(rate as usize / 2);
    // Keep the cost bounded for wide bands: bins * n <= ~8M.
    let bins_per_hz = |n: usize| n as f32 / rate as f32;
    while n > 256 && ((hi_hz - lo_hz) * bins_per_hz(n)) as f64 * n as f64 > 8.0e6 {
        n /= 2;
    }
    if n < 16 {
        return -200.0;
    }
    let x = normalized(&samples[samples.len() - n..]);
    let ones = vec![1.0f32; n];
    let k_lo = ((lo_hz * bins_per_hz(n)).ceil() as usize).max(1);
    let k_hi = ((hi_hz * bins_per_hz(n)).floor() as usize).min((n - 1) / 2);
    let mut ms = 0.0f64; // mean square of the band-limited signal
    for k in k_lo..=k_hi {
        let hz = k as f32 * rate as f32 / n as f32;
        // goertzel_power = |X_k|^2 / n^2; both the +k and -k bins count.
        ms += 2.0 * goertzel_power(&x, rate as f32, hz, &ones);
    }
    if ms <= 1e-20 {
        -200.0
    } else {
        (10.0 * ms.log10()) as f32
    }
}

/// RMS of a signal relative to full scale (0.0 ..= 1.0).
pub fn rms(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let ms = samples.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum::<f64>() / samples.len() as f64;
    ms.sqrt() as f32
}

/// The level (dBFS) of the ±25 Hz band around `hz` (see [`band_energy_db`]): how loud a tone of
/// `hz` is in `samples`.
pub fn tone_level_db(samples: &[i16], rate: u32, hz: f32) -> f32 {
    band_energy_db(samples, rate, hz - 25.0, hz + 25.0)
}

/// The level (dBFS, as [`band_energy_db`] measures it) of a sine at `amplitude` (0..1 of full
/// scale): 20·log10(amplitude) - 3.01.
pub fn sine_dbfs(amplitude: f32) -> f32 {
    20.0 * amplitude.log10() - 3.01
}

/// A sine of `hz` at `amplitude` (0..1 of full scale), for tests.
pub fn sine(hz: f32, rate: u32, seconds: f32, amplitude: f32) -> Vec<i16> {
    let n = (rate as f32 * seconds) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            ((2.0 * std::f64::consts::PI * hz as f64 * t).sin() * amplitude as f64 * 32767.0) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, amp: f32, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                ((s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * amp
            })
            .collect()
    }

    #[test]
    fn dominant_frequency_finds_tones() {
        for &(hz, rate) in &[(440.0f32, 48000u32), (1000.0, 48000), (300.0, 8000), (3400.0, 16000), (97.0, 48000)] {
            let got = dominant_frequency(&sine(hz, rate, 1.0, 0.5), rate);
            assert!((got - hz).abs() < 2.0, "{hz} Hz at {rate}: got {got}");
        }
    }

    #[test]
    fn dominant_frequency_with_noise_and_a_weaker_tone() {
        let rate = 48000;
        let a = sine(440.0, rate, 0.5, 0.4);
        let b = sine(1200.0, rate, 0.5, 0.1);
        let nz = noise(a.len(), 0.1, 7);
        let mix: Vec<i16> = (0..a.len()).map(|i| a[i] + b[i] + (nz[i] * 32767.0) as i16).collect();
        let got = dominant_frequency(&mix, rate);
        assert!((got - 440.0).abs() < 2.0, "got {got}");
        // A different tone is not mistaken for 440.
        let got = dominant_frequency(&sine(523.25, rate, 0.5, 0.4), rate);
        assert!((got - 523.25).abs() < 2.0 && (got - 440.0).abs() > 10.0, "got {got}");
    }

    #[test]
    fn dominant_frequency_of_silence_and_short_input_is_zero() {
        assert_eq!(dominant_frequency(&vec![0i16; 48000], 48000), 0.0);
        assert_eq!(dominant_frequency(&[1000i16; 10], 48000), 0.0);
        assert_eq!(dominant_frequency(&vec![1234i16; 4800], 48000), 0.0, "DC only");
    }

    #[test]
    fn band_energy_of_a_sine() {
        let rate = 48000;
        let s = sine(440.0, rate, 1.0, 1.0);
        let in_band = band_energy_db(&s, rate, 400.0, 480.0);
        assert!((in_band + 3.01).abs() < 0.5, "full-scale sine should be ~-3 dBFS in band, got {in_band}");
        let half = band_energy_db(&sine(440.0, rate, 1.0, 0.5), rate, 400.0, 480.0);
        assert!((in_band - half - 6.02).abs() < 0.5, "halving amplitude is -6 dB: {in_band} vs {half}");
        let out = band_energy_db(&s, rate, 1000.0, 4000.0);
        assert!(out < in_band - 40.0, "out of band {out} dB vs in band {in_band} dB");
        assert_eq!(band_energy_db(&vec![0i16; 4800], rate, 100.0, 1000.0), -200.0);
        // 8 kHz telephony rate.
        let t = band_energy_db(&sine(1000.0, 8000, 0.5, 0.5), 8000, 900.0, 1100.0);
        assert!((t + 9.03).abs() < 0.7, "0.5 FS sine ~ -9 dBFS, got {t}");
    }

    #[test]
    fn rms_of_sine() {
        let r = rms(&sine(440.0, 48000, 1.0, 1.0));
        assert!((r - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.01, "{r}");
        assert_eq!(rms(&[]), 0.0);
    }
}
