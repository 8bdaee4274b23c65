//! One decoder per input and one encoder per distinct output stream, whatever the codec: G.711
//! in Rust (a table lookup costs less than any hop through GStreamer), Opus on libopus' plain
//! single-stream API (`opus_codec`: GStreamer's opusdec/opusenc use the multistream API, whose
//! per-call `cpuid` in libopus 1.3.1 dominated the mixer's CPU in a VM), and G.722 through
//! GStreamer elements driven synchronously (`gst_codec`).

use crate::conceal::Concealer;
use crate::{g711, gst_codec, opus_codec, resample};
use switchboard_driver::Codec;

/// Samples in one 20 ms frame at the mixer's internal 16 kHz.
pub const FRAME: usize = 320;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("codec {0:?} cannot be mixed")]
    Unsupported(Codec),
    #[error(transparent)]
    Gst(#[from] gst_codec::CodecError),
    #[error(transparent)]
    Opus(#[from] opus_codec::CodecError),
}

pub enum Decoder {
    /// Decodes at 8 kHz: the mixer measures the level there and upsamples only the frames it
    /// mixes or transcodes (see `narrowband`).
    G711 {
        ulaw: bool,
        conceal: Concealer,
    },
    Opus(opus_codec::Decoder),
    Gst(gst_codec::Decoder),
}

impl Decoder {
    pub fn new(codec: Codec) -> Result<Decoder, StageError> {
        Ok(match codec {
            Codec::Pcmu | Codec::Pcma => Decoder::G711 { ulaw: codec == Codec::Pcmu, conceal: Concealer::new(8000) },
            Codec::Opus => Decoder::Opus(opus_codec::Decoder::new()?),
            Codec::G722 => Decoder::Gst(gst_codec::Decoder::new(codec)?),
            other => return Err(StageError::Unsupported(other)),
        })
    }

    /// Whether `decode` gives 8 kHz rather than 16 kHz PCM.
    pub fn narrowband(&self) -> bool {
        matches!(self, Decoder::G711 { .. })
    }

    /// How many samples `decode` would append for `payload`, without decoding it: so an input
    /// that is not decoded still takes packets from its jitter buffer at their pace.
    pub fn samples(&self, payload: Option<&[u8]>) -> usize {
        let payload = payload.filter(|p| !p.is_empty());
        match self {
            Decoder::G711 { .. } => payload.map_or(FRAME / 2, <[u8]>::len),
            Decoder::Opus(_) => opus_codec::Decoder::samples(payload, FRAME),
            // G.722 at 64 kbit/s: two 16 kHz samples per byte.
            Decoder::Gst(_) => payload.map_or(FRAME, |p| p.len() * 2),
        }
    }

    /// Forgets the stream so far, before decoding resumes after a gap.
    pub fn reset(&mut self) -> Result<(), StageError> {
        match self {
            Decoder::G711 { conceal, .. } => conceal.forget(),
            Decoder::Opus(d) => d.reset()?,
            // ADPCM re-adapts within a few milliseconds; the element has no cheap reset.
            Decoder::Gst(_) => {}
        }
        Ok(())
    }

    /// Appends `samples` samples (at the decoder's rate: the lost packet's duration) standing in
    /// for a lost packet: for Opus rebuilt from the in-band FEC of `following` (the packet after
    /// the lost one, when it is here), else concealed.
    pub fn decode_lost(
        &mut self,
        following: Option<&[u8]>,
        samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<(), StageError> {
        match (self, following) {
            (Decoder::Opus(d), Some(next)) => Ok(d.decode_fec(next, samples, out)?),
            (Decoder::Opus(d), None) => Ok(d.decode(None, samples, out)?),
            (Decoder::G711 { conceal, .. }, _) => {
                conceal.conceal(samples, out);
                Ok(())
            }
            (Decoder::Gst(d), _) => Ok(d.decode(None, samples, out)?),
        }
    }

    /// Appends one frame of PCM at the decoder's rate (16 kHz, or 8 kHz when `narrowband`):
    /// decoded from `payload`, or concealed when it is `None`.
    pub fn decode(&mut self, payload: Option<&[u8]>, out: &mut Vec<i16>) -> Result<(), StageError> {
        match self {
            Decoder::G711 { ulaw, conceal } => {
                let start = out.len();
                match payload {
                    Some(p) if !p.is_empty() => {
                        out.resize(start + p.len(), 0);
                        if *ulaw {
                            g711::ulaw_decode(p, &mut out[start..]);
                        } else {
                            g711::alaw_decode(p, &mut out[start..]);
                        }
                        conceal.good(&mut out[start..]);
                    }
                    // G.711 has no concealment of its own. Silence would gate the other
                    // talkers' voices in the mix, a click at each end; Appendix I's continued
                    // pitch period keeps the voice going and fades it.
                    _ => conceal.conceal(FRAME / 2, out),
                }
                Ok(())
            }
            Decoder::Opus(d) => Ok(d.decode(payload, FRAME, out)?),
            Decoder::Gst(d) => Ok(d.decode(payload, FRAME, out)?),
        }
    }
}

pub enum Encoder {
    G711 { ulaw: bool, down: Box<resample::Downsampler>, tmp: Vec<i16> },
    Opus(opus_codec::Encoder),
    Gst(gst_codec::Encoder),
}

impl Encoder {
    pub fn new(codec: Codec, ptime_ms: u32) -> Result<Encoder, StageError> {
        Ok(match codec {
            Codec::Pcmu | Codec::Pcma => Encoder::G711 {
                ulaw: codec == Codec::Pcmu,
                down: Box::new(resample::Downsampler::new()),
                tmp: Vec::with_capacity(FRAME * 3),
            },
            Codec::Opus => Encoder::Opus(opus_codec::Encoder::new(ptime_ms)?),
            Codec::G722 => Encoder::Gst(gst_codec::Encoder::new(codec, ptime_ms)?),
            other => return Err(StageError::Unsupported(other)),
        })
    }

    /// The share of packets (percent) the encoder's receivers report losing. Only Opus can do
    /// something with it (in-band FEC); the others carry on as they are.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), StageError> {
        match self {
            Encoder::Opus(e) => Ok(e.set_expected_loss(percent)?),
            Encoder::G711 { .. } | Encoder::Gst(_) => Ok(()),
        }
    }

    /// Encodes one packet's worth of 16 kHz PCM into `out` (cleared first).
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), StageError> {
        out.clear();
        match self {
            Encoder::G711 { ulaw, down, tmp } => {
                tmp.clear();
                down.process(pcm, tmp);
                out.resize(tmp.len(), 0);
                if *ulaw {
                    g711::ulaw_encode(tmp, out);
                } else {
                    g711::alaw_encode(tmp, out);
                }
                Ok(())
            }
            Encoder::Opus(e) => Ok(e.encode(pcm, out)?),
            Encoder::Gst(e) => Ok(e.encode(pcm, out)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_codec_goes_to_its_stage() {
        let _g = crate::test_util::serial();
        assert!(matches!(Decoder::new(Codec::Opus), Ok(Decoder::Opus(_))));
        assert!(matches!(Encoder::new(Codec::Opus, 20), Ok(Encoder::Opus(_))));
        assert!(matches!(Decoder::new(Codec::G722), Ok(Decoder::Gst(_))));
        assert!(matches!(Encoder::new(Codec::G722, 20), Ok(Encoder::Gst(_))));
        assert!(matches!(Decoder::new(Codec::Pcma), Ok(Decoder::G711 { ulaw: false, .. })));
        assert!(matches!(Decoder::new(Codec::Vp8), Err(StageError::Unsupported(Codec::Vp8))));
    }

    #[test]
    fn opus_refuses_what_no_opus_packet_can_last() {
        let err = Encoder::new(Codec::Opus, 25).err().expect("25 ms refused");
        assert!(matches!(err, StageError::Opus(opus_codec::CodecError::Ptime { ptime_ms: 25 })), "{err:?}");
        assert_eq!(err.to_string(), "Opus cannot be packetised at 25 ms");
    }

    #[test]
    fn every_codec_gives_one_frame_per_tick() {
        let _g = crate::test_util::serial();
        for codec in [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus] {
            let mut enc = Encoder::new(codec, 20).expect("encoder");
            let mut dec = Decoder::new(codec).expect("decoder");
            let (mut payload, mut pcm) = (Vec::new(), Vec::new());
            enc.encode(&[1000; FRAME], &mut payload).expect("encode");
            dec.decode(Some(&payload), &mut pcm).expect("decode");
            dec.decode(None, &mut pcm).expect("conceal");
            let frame = if dec.narrowband() { FRAME / 2 } else { FRAME };
            assert_eq!(pcm.len(), 2 * frame, "{codec:?}");
        }
    }

    #[test]
    fn g711_conceals_a_loss_by_continuing_the_voice_then_fading_it() {
        use crate::test_util::{rms, tone_frames};
        let mut enc = Encoder::new(Codec::Pcmu, 20).expect("encoder");
        let mut dec = Decoder::new(Codec::Pcmu).expect("decoder");
        // A decoder that hears the fourth frame too tells what the lost one sounded like.
        let mut heard_all = Decoder::new(Codec::Pcmu).expect("decoder");
        let (mut payload, mut pcm, mut truth) = (Vec::new(), Vec::new(), Vec::new());
        for (n, frame) in tone_frames(440.0, 8000.0, FRAME, 4).iter().enumerate() {
            enc.encode(frame, &mut payload).expect("encode");
            truth.clear();
            heard_all.decode(Some(&payload), &mut truth).expect("decode");
            if n < 3 {
                pcm.clear();
                dec.decode(Some(&payload), &mut pcm).expect("decode");
            }
        }
        let heard = rms(&pcm);
        // Four frames in a row lost (the last one as an empty payload, which is a loss too):
        // full level for 10 ms, then fading to silence at 60 ms.
        let mut levels = Vec::new();
        for (n, lost) in [None, None, None, Some(&[][..])].into_iter().enumerate() {
            pcm.clear();
            dec.decode(lost, &mut pcm).expect("conceal");
            assert_eq!(pcm.len(), FRAME / 2);
            if n == 0 {
                // Its first 10 ms, at full level, are the tone carried on in phase.
                let error: Vec<i16> = pcm[..80].iter().zip(&truth[..80]).map(|(a, b)| a - b).collect();
                assert!(rms(&error) < 0.2 * heard, "off the tone by {:.0} rms (tone {heard:.0})", rms(&error));
            }
            levels.push(rms(&pcm) / heard);
        }
        assert!(levels[0] > 0.85, "the first lost frame keeps the voice: {levels:?}");
        assert!(levels[0] > levels[1] && levels[1] > levels[2] && levels[2] > 0.0, "then fades: {levels:?}");
        assert_eq!(levels[3], 0.0, "silent after 60 ms: {levels:?}");
    }
}
