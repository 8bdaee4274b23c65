//! Fallback loss concealment for codecs without their own (G.722) and for the rare frame Opus PLC
//! cannot make.

/// Stands in for a lost frame: the last good frame once more, faded out so the repeat does not
/// buzz, then silence.
#[derive(Default)]
pub(crate) struct Concealer {
    last: Vec<i16>,
    lost_in_a_row: u32,
}

impl Concealer {
    /// Remembers `decoded` as the last good frame (the buffer is reused, not reallocated).
    pub(crate) fn good(&mut self, decoded: &[i16]) {
        self.last.clear();
        self.last.extend_from_slice(decoded);
        self.lost_in_a_row = 0;
    }

    /// Forgets the last good frame: after a gap in decoding it is not the stream's last sound.
    pub(crate) fn forget(&mut self) {
        self.last.clear();
        self.lost_in_a_row = 0;
    }

    /// Appends `samples` samples of concealment to `out`.
    pub(crate) fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.lost_in_a_row = self.lost_in_a_row.saturating_add(1);
        if self.lost_in_a_row > 1 || self.last.is_empty() {
            out.resize(out.len() + samples, 0);
            return;
        }
        let len = self.last.len();
        out.extend((0..samples).map(|i| {
            let gain = (samples - i) as f32 / samples as f32;
            (self.last[i % len] as f32 * gain) as i16
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_the_last_frame_faded_once_then_silence() {
        let mut c = Concealer::default();
        let mut out = Vec::new();
        c.conceal(4, &mut out);
        assert_eq!(out, [0; 4], "nothing to repeat yet");
        c.good(&[1000, -1000]);
        out.clear();
        c.conceal(4, &mut out);
        assert_eq!(out, [1000, -750, 500, -250]);
        out.clear();
        c.conceal(4, &mut out);
        assert_eq!(out, [0; 4]);
    }
}
