//! Tone onset detection on received audio: how the mixer scenarios time a mix, since a mix carries
//! none of the senders' payload stamps.

use crate::media::{opus, ulaw_to_linear, Codec};

/// Onset detection on received audio (mixer scenarios, where stamps do not survive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    Off,
    Pcmu,
    Opus,
}

pub(super) struct Detector {
    codec: Codec,
    dec: Option<opus::Decoder>,
    quiet: u32,
    armed: bool,
}

impl Detector {
    pub(super) fn new(d: Detect) -> Option<Detector> {
        match d {
            Detect::Off => None,
            Detect::Pcmu => Some(Detector { codec: Codec::Pcmu, dec: None, quiet: 0, armed: false }),
            Detect::Opus => Some(Detector { codec: Codec::Opus, dec: opus::Decoder::new(), quiet: 0, armed: false }),
        }
    }

    /// Feeds one payload; returns the offset in ns of a tone onset inside it, if any. An onset is
    /// a sample above HI after at least 100 ms of samples below LO.
    #[inline]
    pub(super) fn feed(&mut self, payload: &[u8]) -> Option<u64> {
        const HI: i32 = 1500;
        const LO: i32 = 400;
        let mut tmp = [0i16; 160];
        let (samples, rate): (&[i16], u32) = match self.codec {
            Codec::Pcmu => {
                let n = payload.len().min(160);
                for (i, &b) in payload[..n].iter().enumerate() {
                    tmp[i] = ulaw_to_linear(b);
                }
                (&tmp[..n], 8000)
            }
            Codec::Opus => match self.dec.as_mut() {
                Some(d) => (d.decode(payload), 48000),
                None => return None,
            },
            Codec::Vp8 => return None,
        };
        let need_quiet = rate / 10;
        let mut onset = None;
        for (i, &s) in samples.iter().enumerate() {
            let a = (s as i32).abs();
            if a > HI {
                if self.armed && onset.is_none() {
                    onset = Some(i as u64 * 1_000_000_000 / rate as u64);
                }
                self.armed = false;
                self.quiet = 0;
            } else if a < LO {
                self.quiet += 1;
                if self.quiet >= need_quiet {
                    self.armed = true;
                }
            } else {
                self.quiet = 0;
            }
        }
        onset
    }
}
