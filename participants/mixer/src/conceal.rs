//! Loss concealment for codecs without their own (G.711, G.722) and for the rare frame Opus PLC
//! cannot make, after ITU-T G.711 Appendix I: a lost frame continues the last pitch period of
//! what was heard, widened to the last two periods after 10 ms and three after 20 ms (one period
//! looped for long buzzes), at full level for 10 ms and then fading to silence at 60 ms. Each
//! loop's end is faded into what came before its start, each widening is cross-faded over a
//! quarter period, and so is the first frame after the loss.
//!
//! Where it differs from the Appendix: the Appendix delays its output by 3.75 ms so it can also
//! smooth the seam between the last sample heard and the first one made up. A mixer input is
//! not worth 3.75 ms more delay for every talker, so that one seam relies on the pitch match.

/// What `Concealer` keeps of the signal: three of the longest periods and a quarter of one (the
/// Appendix's 48.75 ms), so the widest loop can fade into what came before it.
const HISTORY_MS: usize = 50;
/// The pitch periods tried, as in the Appendix: 5 to 15 ms (200 to 66 Hz; a higher voice repeats
/// as two of its periods).
const PERIOD_MIN_MS: f32 = 5.0;
const PERIOD_MAX_MS: f32 = 15.0;
/// The stretch at the end of the history that the period is matched on.
const MATCH_MS: f32 = 10.0;
/// When the loop widens to two periods, then to three.
const WIDEN_MS: [usize; 2] = [10, 20];
/// Full level this long into a loss, then a linear fade to silence at `SILENT_AFTER_MS`.
const FULL_MS: usize = 10;
const SILENT_AFTER_MS: usize = 60;

use std::collections::VecDeque;

pub(crate) struct Concealer {
    rate: usize,
    /// The last `HISTORY_MS` of output, concealment included, oldest first. A ring: every good
    /// frame of every input passes through it, and shifting a flat buffer down by a frame each
    /// tick was 3.5 % of a 200-leg mixer's CPU; only a loss needs it in one piece.
    history: VecDeque<i16>,
    /// `HISTORY_MS` in samples.
    cap: usize,
    /// The end of the history when the loss began: the periods looped, and the quarter period
    /// before them.
    past: Vec<i16>,
    /// The pitch period in samples; 0 when not concealing.
    period: usize,
    /// How many periods `past` holds (1 to 3: fewer when little was heard before the loss).
    periods: usize,
    /// Samples concealed since the last good frame.
    concealed: usize,
}

impl Concealer {
    /// For a decoder that delivers `rate` samples a second.
    pub(crate) fn new(rate: u32) -> Concealer {
        let rate = rate as usize;
        let cap = (rate * HISTORY_MS / 1000).max(1);
        let history = VecDeque::with_capacity(cap);
        let past = Vec::with_capacity(cap);
        Concealer { rate, history, cap, past, period: 0, periods: 0, concealed: 0 }
    }

    /// Takes `decoded` as heard. After a loss its start is cross-faded, in place, from the
    /// continuation of the concealment, so the seam does not click.
    pub(crate) fn good(&mut self, decoded: &mut [i16]) {
        if self.period > 0 && self.concealed < self.rate * SILENT_AFTER_MS / 1000 {
            let fade = (self.period / 4).min(decoded.len());
            let start = self.concealed;
            for (i, s) in decoded[..fade].iter_mut().enumerate() {
                let w = (i + 1) as f32 / (fade + 1) as f32;
                let cont = self.continuation(start + i);
                *s = (*s as f32 * w + cont * (1.0 - w)) as i16;
            }
        }
        self.period = 0;
        self.concealed = 0;
        self.remember(decoded);
    }

    /// Forgets the signal: after a gap in decoding it is not the stream's last sound.
    pub(crate) fn forget(&mut self) {
        self.history.clear();
        self.period = 0;
        self.concealed = 0;
    }

    /// Appends `samples` samples of concealment to `out`.
    pub(crate) fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        if self.concealed == 0 {
            let history: &[i16] = self.history.make_contiguous();
            self.period = find_period(history, self.rate);
            self.past.clear();
            if self.period > 0 {
                // `find_period` asks for more than a period and a quarter of history.
                let quarter = self.period / 4;
                self.periods = ((history.len() - quarter) / self.period).min(3);
                let from = history.len() - self.periods * self.period - quarter;
                self.past.extend_from_slice(&history[from..]);
            }
        }
        let start = out.len();
        let first = self.concealed;
        out.extend((0..samples).map(|i| self.continuation(first + i) as i16));
        self.concealed += samples;
        // Concealment is history too: a loss soon after this one matches on what was played.
        self.remember(&out[start..]);
    }

    /// Sample `n` of the concealment, faded.
    fn continuation(&self, n: usize) -> f32 {
        if self.period == 0 {
            return 0.0;
        }
        let full = self.rate * FULL_MS / 1000;
        let silent = self.rate * SILENT_AFTER_MS / 1000;
        let gain = match n {
            n if n < full => 1.0,
            n if n >= silent => return 0.0,
            n => (silent - n) as f32 / (silent - full) as f32,
        };
        self.unfaded(n) * gain
    }

    /// Sample `n` of the concealment before the fade: the widest loop begun by then, cross-faded
    /// from the narrower one for a quarter period after it begins.
    fn unfaded(&self, n: usize) -> f32 {
        let starts = [0, self.rate * WIDEN_MS[0] / 1000, self.rate * WIDEN_MS[1] / 1000];
        let k = (1..=self.periods).rev().find(|&k| n >= starts[k - 1]).unwrap_or(1);
        // Each loop is entered at the phase the narrower one had reached: its start lies whole
        // periods back from the end, so the offset into it is `n` less whole periods.
        let at = |k: usize| self.looped(k, n - starts[k - 1] / self.period * self.period);
        let fade = self.period / 4;
        let since = n - starts[k - 1];
        if k > 1 && since < fade {
            let w = (since + 1) as f32 / (fade + 1) as f32;
            return at(k - 1) * (1.0 - w) + at(k) * w;
        }
        at(k)
    }

    /// Sample `j` of the last `k` periods heard, looped. The loop's last quarter period fades
    /// into the quarter period before its start, so going round does not click.
    fn looped(&self, k: usize, j: usize) -> f32 {
        let len = k * self.period;
        let fade = self.period / 4;
        let start = self.past.len() - len;
        let j = j % len;
        let s = self.past[start + j] as f32;
        match j.checked_sub(len - fade) {
            Some(i) => {
                let w = (i + 1) as f32 / (fade + 1) as f32;
                s * (1.0 - w) + self.past[start - fade + i] as f32 * w
            }
            None => s,
        }
    }

    fn remember(&mut self, samples: &[i16]) {
        let cap = self.cap;
        if samples.len() >= cap {
            self.history.clear();
            self.history.extend(&samples[samples.len() - cap..]);
            return;
        }
        let overflow = (self.history.len() + samples.len()).saturating_sub(cap);
        // Dropping from a ring's front moves its head, not its samples.
        self.history.drain(..overflow);
        self.history.extend(samples);
    }
}

/// The pitch period of the history's end, by normalised correlation; 0 when the history is
/// too short or silent.
fn find_period(h: &[i16], rate: usize) -> usize {
    let ms = |ms: f32| (rate as f32 * ms / 1000.0) as usize;
    let (min, max, window) = (ms(PERIOD_MIN_MS), ms(PERIOD_MAX_MS), ms(MATCH_MS));
    if min == 0 || h.len() < max + window {
        return 0;
    }
    let end = &h[h.len() - window..];
    let energy: f64 = end.iter().map(|s| f64::from(*s).powi(2)).sum();
    if energy < 1.0 {
        return 0;
    }
    // Above 8 kHz every other sample matches as well and costs half: a wideband decoder's
    // losses in a large room come many a tick.
    let step = (rate / 8000).max(1);
    let mut best = (0, 0.0f64);
    for p in min..=max {
        let past = &h[h.len() - window - p..h.len() - p];
        let pairs = end.iter().zip(past).step_by(step);
        let cross: f64 = pairs.map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        let norm: f64 = past.iter().step_by(step).map(|s| f64::from(*s).powi(2)).sum::<f64>().max(1.0);
        let score = cross / norm.sqrt();
        if score > best.1 {
            best = (p, score);
        }
    }
    if best.1 > 0.0 {
        best.0
    } else {
        min
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A voiced-like 8 kHz signal: 150 Hz with two harmonics, so one period is not a sine's.
    fn voice(n: usize) -> i16 {
        let t = n as f32 / 8000.0;
        let w = std::f32::consts::TAU * 150.0 * t;
        (6000.0 * w.sin() + 3000.0 * (2.0 * w).sin() + 1500.0 * (3.0 * w + 1.0).sin()) as i16
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    #[test]
    fn nothing_heard_yet_is_concealed_as_silence() {
        let mut c = Concealer::new(8000);
        let mut out = Vec::new();
        c.conceal(160, &mut out);
        assert_eq!(out, [0; 160]);
    }

    /// 100 ms of the voice heard, then one 20 ms frame lost: the concealer and what it played.
    fn voice_then_a_loss() -> (Concealer, Vec<i16>) {
        let mut c = Concealer::new(8000);
        for f in 0..5 {
            let mut frame: Vec<i16> = (f * 160..(f + 1) * 160).map(voice).collect();
            c.good(&mut frame);
        }
        let mut out = Vec::new();
        c.conceal(160, &mut out);
        (c, out)
    }

    #[test]
    fn a_lost_frame_carries_the_voice_on_in_phase() {
        let (_, out) = voice_then_a_loss();
        // The first 10 ms are at full level: compare them with what the voice went on to be.
        let error: Vec<f32> = (0..80).map(|i| out[i] as f32 - voice(800 + i) as f32).collect();
        let signal: Vec<f32> = (0..80).map(|i| voice(800 + i) as f32).collect();
        let snr = 20.0 * (rms(&signal) / rms(&error).max(1.0)).log10();
        assert!(snr > 20.0, "the continuation is {snr:.1} dB from the voice");
    }

    /// The voice with its level swelling and ebbing at 7 Hz, so no two periods are the same.
    fn swelling_voice(n: usize) -> i16 {
        let t = n as f32 / 8000.0;
        (voice(n) as f32 * (1.0 + 0.5 * (std::f32::consts::TAU * 7.0 * t).sin()) * 0.6) as i16
    }

    /// 100 ms of the swelling voice heard, then 60 ms lost.
    fn a_long_loss() -> (Concealer, Vec<i16>) {
        let mut c = Concealer::new(8000);
        for f in 0..5 {
            let mut frame: Vec<i16> = (f * 160..(f + 1) * 160).map(swelling_voice).collect();
            c.good(&mut frame);
        }
        let mut out = Vec::new();
        c.conceal(480, &mut out);
        (c, out)
    }

    #[test]
    fn a_long_loss_loops_three_periods_not_one() {
        let (c, _) = a_long_loss();
        let p = c.period;
        assert_eq!(c.periods, 3, "period {p}");
        // Past the second widening and its cross-fade, the loop is three periods long...
        // (Looked at over one loop's length, past the 60 ms that are heard when the period is
        // long: the fade to silence would hide what is compared.)
        let late = 160 + p / 4 + 3 * p..160 + p / 4 + 6 * p;
        let level: Vec<f32> = late.clone().map(|n| c.unfaded(n)).collect();
        let three_back: Vec<f32> = late.clone().map(|n| c.unfaded(n) - c.unfaded(n - 3 * p)).collect();
        assert!(rms(&three_back) < 1.0, "not a loop of three periods: {}", rms(&three_back));
        // ...so it is not one period repeated, which would buzz.
        let one_back: Vec<f32> = late.map(|n| c.unfaded(n) - c.unfaded(n - p)).collect();
        let ratio = rms(&one_back) / rms(&level);
        assert!(ratio > 0.05, "a period apart the loop differs by only {ratio:.3} of its level");
    }

    #[test]
    fn a_long_loss_bends_no_sharper_than_the_voice() {
        let (c, _) = a_long_loss();
        let heard: Vec<f32> = (0..800).map(|n| swelling_voice(n) as f32).collect();
        // A click is a bend sharper than the signal makes: a large second difference. Going
        // round a loop without its fade bends at 4x the voice's sharpest, and so does a
        // widening without its cross-fade.
        let sharpest = |x: &[f32]| x.windows(3).map(|w| (w[2] - 2.0 * w[1] + w[0]).abs()).fold(0.0, f32::max);
        // The first samples made follow the last ones heard as well as the pitch match allows.
        let mut made = heard[798..].to_vec();
        made.extend((0..480).map(|n| c.unfaded(n)));
        let (voice, concealment) = (sharpest(&heard), sharpest(&made));
        assert!(concealment < 1.2 * voice, "a bend of {concealment:.0} where the voice's sharpest is {voice:.0}");
    }

    #[test]
    fn the_frame_after_a_loss_is_cross_faded_not_cut_in() {
        let (mut c, _) = voice_then_a_loss();
        // The next frame arrives 8,000 above where the concealment was heading: cut in, that
        // is a step of 8,000 at the seam.
        let heading: Vec<f32> = (0..160).map(|i| c.continuation(160 + i)).collect();
        let mut next: Vec<i16> = heading.iter().map(|v| (v + 8000.0) as i16).collect();
        let raw = next.clone();
        c.good(&mut next);
        let seam = (next[0] as f32 - heading[0]).abs();
        assert!(seam < 1000.0, "the frame starts {seam:.0} off the concealment's course");
        let offsets: Vec<f32> = (0..8).map(|i| next[i] as f32 - heading[i]).collect();
        assert!(offsets.windows(2).all(|w| w[1] > w[0]), "and moves over to its own: {offsets:?}");
        assert_eq!(next[100..], raw[100..], "past the fade the frame is as decoded");
    }
}
