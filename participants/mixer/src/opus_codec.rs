//! Opus through libopus' plain, single-stream API (the `opus` crate over the system libopus),
//! called directly from the mixer's thread.
//!
//! Why not GStreamer like G.722: `opusdec` and `opusenc` always drive libopus' *multistream* API,
//! even for one mono stream, and that API calls `opus_decoder_get_size`/`opus_encoder_get_size`
//! on every packet to step through its per-stream states. In libopus 1.3.1 as Debian 12 builds it
//! (with custom modes) those go through `opus_custom_mode_create`, which starts with run-time CPU
//! feature detection, i.e. the `cpuid` instruction. On bare metal that is noise; in a VM every
//! `cpuid` traps to the hypervisor, and in the Opus MCU benchmark (docs/benchmarks.md, S4) it was
//! about 60 % of the daemon's CPU. The plain API detects the CPU once, when a state is created.
//! On the development VM a 20 ms frame now costs about 12 µs to decode or conceal and 100 µs to
//! encode, against 81, 76 and 139 µs through the elements (`bench_opus_per_frame_cost`). Both
//! paths produce the same bytes: the encoder's packets and the decoder's PCM, concealment
//! included, were checked identical to `opusenc`'s and `opusdec`'s before the switch.
//!
//! What the mixer sees is what it saw through GStreamer:
//! - the decoder outputs 16 kHz mono directly (libopus decodes at any of its rates, and a mono
//!   decoder downmixes stereo packets itself, since each packet carries its own channel count);
//!   an RTP payload is a bare Opus packet, all of it decoded at once (up to 120 ms);
//! - a lost packet becomes exactly one frame of libopus PLC, with the same fallback concealment
//!   as G.722 for what PLC cannot make (frames not a multiple of 2.5 ms, a failing state);
//! - a payload libopus rejects is concealed the same way, so garbage costs a frame, not the
//!   stream, and never panics;
//! - the encoder has `opusenc`'s settings as we configured it: VoIP application, wideband,
//!   32 kbit/s constrained VBR, complexity 5, no FEC, no DTX, one packet per ptime.
//!
//! A ptime libopus cannot encode in one call (30, 50, 80 ms …: it takes 10, 20, 40 and 60 ms
//! frames) is encoded as 10 or 20 ms frames joined into one packet by libopus' repacketizer
//! (RFC 6716 §3.2.5's code 3 packet), as a SIP phone asking for `a=ptime:30` expects. Frames join
//! only when they share a mode and bandwidth, so that encoder is told its signal is voice: with
//! the bandwidth fixed at wideband, it then stays in SILK.
//!
//! Neither direction allocates per packet: decoded PCM and encoded bytes land in buffers made with
//! the state, then are appended to the caller's vectors.

use crate::conceal::Concealer;

/// The mixer's internal rate.
const RATE: u32 = 16_000;
/// The longest Opus packet, 120 ms, at 16 kHz.
const MAX_PACKET_SAMPLES: usize = RATE as usize * 120 / 1000;
/// libopus conceals in multiples of 2.5 ms.
const PLC_STEP: usize = RATE as usize / 400;
/// Room for one encoded packet; `opusenc`'s default max-payload-size.
const MAX_PAYLOAD: usize = 4000;

/// Encoder settings for a conference mix: speech-tuned, wideband (the mix is 16 kHz, more would
/// be wasted bits), 32 kbit/s, and complexity 5 rather than the default 10, since encoding is the
/// costliest step and the MCU does it once per distinct mix every 20 ms.
const BITRATE: i32 = 32_000;
const COMPLEXITY: i32 = 5;
/// Packet durations libopus encodes in one call (those `opusenc`'s frame-size property had).
const PTIMES_MS: [u32; 5] = [5, 10, 20, 40, 60];
/// The longest packet the repacketizer makes.
const MAX_PTIME_MS: u32 = 120;
/// The largest Opus frame (RFC 6716 §3.4, R2).
const MAX_FRAME_BYTES: usize = 1275;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("libopus {what}: {error}")]
    Setup { what: &'static str, error: opus::Error },
    #[error("Opus cannot be packetised at {ptime_ms} ms")]
    Ptime { ptime_ms: u32 },
    #[error("frame of {got} samples where the encoder takes {want}")]
    FrameSize { got: usize, want: usize },
    #[error("Opus encoding failed: {0}")]
    Encode(opus::Error),
    #[error("Opus frames could not be joined into one packet: {0}")]
    Repacketize(opus::Error),
}

fn setup(what: &'static str) -> impl FnOnce(opus::Error) -> CodecError {
    move |error| CodecError::Setup { what, error }
}

/// Decodes one Opus RTP stream to 16 kHz mono.
pub struct Decoder {
    state: opus::Decoder,
    /// Room for the longest packet; what it decodes is then appended to the caller's vector.
    pcm: Box<[i16]>,
    conceal: Concealer,
}

impl Decoder {
    pub fn new() -> Result<Decoder, CodecError> {
        let state = opus::Decoder::new(RATE, opus::Channels::Mono).map_err(setup("creating a decoder"))?;
        Ok(Decoder { state, pcm: vec![0; MAX_PACKET_SAMPLES].into_boxed_slice(), conceal: Concealer::new(RATE) })
    }

    /// How many 16 kHz samples `decode` would append for this payload, read from its TOC.
    pub fn samples(payload: Option<&[u8]>, frame_samples: usize) -> usize {
        match payload.filter(|d| !d.is_empty()).map(|d| opus::packet::get_nb_samples(d, RATE)) {
            Some(Ok(n)) if n > 0 => n.min(MAX_PACKET_SAMPLES),
            _ => frame_samples,
        }
    }

    /// Starts afresh, as for a stream joined in the middle: what the state held is from before
    /// a gap in decoding and would only colour the first frames after it.
    pub fn reset(&mut self) -> Result<(), CodecError> {
        self.conceal.forget();
        self.state.reset_state().map_err(setup("resetting a decoder"))
    }

    /// Appends `frame_samples` samples standing in for a lost packet, rebuilt from the in-band
    /// FEC of `following`, the packet after it (senders that see loss add a low-rate copy of the
    /// previous frame). libopus falls back to its PLC when `following` carries none.
    pub fn decode_fec(&mut self, following: &[u8], frame_samples: usize, out: &mut Vec<i16>) -> Result<(), CodecError> {
        let n = (frame_samples - frame_samples % PLC_STEP).min(self.pcm.len());
        if n > 0 && !following.is_empty() {
            match self.state.decode(following, &mut self.pcm[..n], true) {
                Ok(got) if got > 0 => {
                    let start = out.len();
                    out.extend_from_slice(&self.pcm[..got.min(n)]);
                    self.conceal.good(&mut out[start..]);
                    let have = out.len() - start;
                    if have < frame_samples {
                        self.conceal.conceal(frame_samples - have, out);
                    }
                    return Ok(());
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(len = following.len(), %error, "Opus FEC failed; concealed"),
            }
        }
        self.decode(None, frame_samples, out)
    }

    /// Appends the 16 kHz PCM of one RTP payload to `out`, or `frame_samples` samples of
    /// concealment for a lost one (`None` or empty). A payload libopus rejects is concealed the
    /// same way rather than failing, so one bad packet costs one frame, not the stream; an error
    /// means the decoder state itself broke and should be rebuilt.
    pub fn decode(
        &mut self,
        payload: Option<&[u8]>,
        frame_samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<(), CodecError> {
        if let Some(data) = payload.filter(|d| !d.is_empty()) {
            match self.state.decode(data, &mut self.pcm, false) {
                Ok(n) if n > 0 => {
                    let start = out.len();
                    out.extend_from_slice(&self.pcm[..n.min(self.pcm.len())]);
                    self.conceal.good(&mut out[start..]);
                    return Ok(());
                }
                Ok(_) => tracing::debug!(len = data.len(), "Opus payload decoded to nothing; concealed"),
                Err(error) => tracing::debug!(len = data.len(), %error, "undecodable Opus payload concealed"),
            }
        }

        let start = out.len();
        // PLC (decoding "no data") continues the signal from the decoder's state; before any
        // packet it yields silence. It works in 2.5 ms steps, so for an odd frame length the
        // rest comes from the fallback below; the mixer always gets exactly one frame.
        let plc = (frame_samples - frame_samples % PLC_STEP).min(self.pcm.len());
        if plc > 0 {
            match self.state.decode(&[], &mut self.pcm[..plc], false) {
                Ok(n) => out.extend_from_slice(&self.pcm[..n.min(plc)]),
                Err(error) => {
                    tracing::debug!(%error, "Opus PLC failed; resetting the decoder");
                    self.state.reset_state().map_err(setup("resetting a decoder"))?;
                }
            }
        }
        let have = out.len() - start;
        if have < frame_samples {
            self.conceal.conceal(frame_samples - have, out);
        }
        Ok(())
    }
}

/// Encodes 16 kHz mono PCM into one Opus packet per ptime.
pub struct Encoder {
    state: opus::Encoder,
    frame_samples: usize,
    /// Room for one packet; what the encoder writes is then copied to the caller's vector.
    packet: Box<[u8]>,
    /// For a ptime libopus cannot encode at once: the frames it is made of.
    joined: Option<Joined>,
}

/// The frames of one packet, each encoded on its own, and the repacketizer that joins them.
struct Joined {
    repacketizer: opus::Repacketizer,
    /// 16 kHz samples per frame.
    frame_samples: usize,
    /// Frame `k` is encoded into `MAX_FRAME_BYTES` from `k * MAX_FRAME_BYTES`.
    frames: Box<[u8]>,
    lens: Box<[usize]>,
}

impl Encoder {
    pub fn new(ptime_ms: u32) -> Result<Encoder, CodecError> {
        let joined_frame_ms = match ptime_ms {
            p if PTIMES_MS.contains(&p) => None,
            p if !(10..=MAX_PTIME_MS).contains(&p) => return Err(CodecError::Ptime { ptime_ms }),
            p if p % 20 == 0 => Some(20),
            p if p % 10 == 0 => Some(10),
            _ => return Err(CodecError::Ptime { ptime_ms }),
        };
        let mut state = opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip)
            .map_err(setup("creating an encoder"))?;
        state.set_bitrate(opus::Bitrate::Bits(BITRATE)).map_err(setup("setting the bitrate"))?;
        state.set_bandwidth(opus::Bandwidth::Wideband).map_err(setup("setting the bandwidth"))?;
        state.set_complexity(COMPLEXITY).map_err(setup("setting the complexity"))?;
        // The rest are libopus' defaults, set as opusenc set them (its defaults): constrained VBR,
        // no in-band FEC, no DTX (so every frame makes a packet), no expected loss.
        state.set_vbr(true).map_err(setup("enabling VBR"))?;
        state.set_vbr_constraint(true).map_err(setup("constraining VBR"))?;
        state.set_inband_fec(false).map_err(setup("disabling FEC"))?;
        state.set_dtx(false).map_err(setup("disabling DTX"))?;
        state.set_packet_loss_perc(0).map_err(setup("setting the expected loss"))?;
        let joined = match joined_frame_ms {
            Some(frame_ms) => {
                // See the module docs: frames join only in one mode.
                state.set_signal(opus::Signal::Voice).map_err(setup("setting the signal"))?;
                let count = (ptime_ms / frame_ms) as usize;
                Some(Joined {
                    repacketizer: opus::Repacketizer::new().map_err(setup("creating a repacketizer"))?,
                    frame_samples: (frame_ms * RATE / 1000) as usize,
                    frames: vec![0; count * MAX_FRAME_BYTES].into_boxed_slice(),
                    lens: vec![0; count].into_boxed_slice(),
                })
            }
            None => None,
        };
        let frame_samples = (ptime_ms * RATE / 1000) as usize;
        Ok(Encoder { state, frame_samples, packet: vec![0; MAX_PAYLOAD].into_boxed_slice(), joined })
    }

    /// Samples `encode` takes per call.
    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    /// Tells the encoder what share of its packets (percent) its receivers lose. Above zero it
    /// adds in-band FEC: each packet carries a low-rate copy of the frame before it, which a
    /// receiver decodes when that frame's packet is lost. libopus sizes the copy to the loss.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), CodecError> {
        self.state.set_inband_fec(percent > 0).map_err(setup("switching FEC"))?;
        self.state.set_packet_loss_perc(i32::from(percent)).map_err(setup("setting the expected loss"))?;
        Ok(())
    }

    /// Replaces `out` with the Opus packet for `pcm`, which must be exactly one ptime of 16 kHz
    /// mono samples.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if pcm.len() != self.frame_samples {
            return Err(CodecError::FrameSize { got: pcm.len(), want: self.frame_samples });
        }
        out.clear();
        let n = match &mut self.joined {
            None => self.state.encode(pcm, &mut self.packet).map_err(CodecError::Encode)?,
            Some(j) => {
                let frames = pcm.chunks_exact(j.frame_samples);
                for ((frame, room), len) in
                    frames.zip(j.frames.chunks_exact_mut(MAX_FRAME_BYTES)).zip(j.lens.iter_mut())
                {
                    *len = self.state.encode(frame, room).map_err(CodecError::Encode)?;
                }
                let mut joining = j.repacketizer.begin();
                for (room, len) in j.frames.chunks_exact(MAX_FRAME_BYTES).zip(j.lens.iter()) {
                    joining.cat(&room[..*len]).map_err(CodecError::Repacketize)?;
                }
                joining.out(&mut self.packet).map_err(CodecError::Repacketize)?
            }
        };
        out.extend_from_slice(&self.packet[..n.min(self.packet.len())]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use std::f64::consts::TAU;

    test_codec!(Opus, "Opus", |ptime_ms| Encoder::new(ptime_ms), Decoder::new());

    #[test]
    fn round_trip_keeps_the_tone() {
        let _g = serial();
        let (sizes, pcm) = round_trip::<Opus>(20, 50);
        // 32 kbit/s at 20 ms is 80 bytes a packet on average; a pure tone needs less.
        assert!(sizes.iter().all(|&s| s > 0 && s <= 200), "{sizes:?}");
        check_tone(&pcm);
    }

    #[test]
    fn packets_are_wideband_voice_at_the_ptime() {
        let _g = serial();
        for ptime in [10u32, 20, 40, 60] {
            let mut enc = Encoder::new(ptime).expect("encoder");
            let mut payload = Vec::new();
            for input in tone_frames(440.0, 8000.0, enc.frame_samples(), 5) {
                enc.encode(&input, &mut payload).expect("encode");
                let packet = payload.as_slice();
                assert_eq!(opus::packet::get_bandwidth(packet).expect("toc"), opus::Bandwidth::Wideband);
                assert_eq!(opus::packet::get_nb_channels(packet).expect("toc"), opus::Channels::Mono);
                let samples = opus::packet::get_nb_samples(packet, RATE).expect("toc");
                assert_eq!(samples, (ptime * 16) as usize, "{ptime} ms");
            }
        }
    }

    #[test]
    fn other_ptimes_packetise_accordingly() {
        let _g = serial();
        for ptime in [5, 10, 40, 60] {
            let (_, pcm) = round_trip::<Opus>(ptime, 10);
            assert_eq!(pcm.len(), 10 * ptime as usize * 16);
        }
        for ptime in [0, 2, 25, 130] {
            assert!(matches!(Encoder::new(ptime), Err(CodecError::Ptime { ptime_ms }) if ptime_ms == ptime));
        }
    }

    /// Ptimes libopus cannot encode in one call come out as one packet of 10 or 20 ms frames,
    /// each packet the whole ptime, and decode to the tone.
    #[test]
    fn ptimes_of_joined_frames_make_one_packet_each() {
        let _g = serial();
        for (ptime, frames) in [(30u32, 3usize), (50, 5), (80, 4), (120, 6)] {
            let mut enc = Encoder::new(ptime).expect("encoder");
            let mut dec = Decoder::new().expect("decoder");
            let (mut payload, mut pcm) = (Vec::new(), Vec::new());
            for input in tone_frames(440.0, 8000.0, enc.frame_samples(), 20) {
                enc.encode(&input, &mut payload).expect("encode");
                assert_eq!(opus::packet::get_nb_frames(&payload).expect("toc"), frames, "{ptime} ms");
                assert_eq!(opus::packet::get_nb_samples(&payload, RATE).expect("toc"), ptime as usize * 16);
                dec.decode(Some(&payload), 320, &mut pcm).expect("decode");
            }
            assert_eq!(pcm.len(), 20 * ptime as usize * 16);
            check_tone(&pcm);
        }
    }

    #[test]
    fn encoder_rejects_partial_frames() {
        let _g = serial();
        let mut enc = Encoder::new(20).expect("encoder");
        let mut out = Vec::new();
        assert!(matches!(enc.encode(&[0; 100], &mut out), Err(CodecError::FrameSize { got: 100, want: 320 })));
        // The refusal leaves the encoder usable.
        enc.encode(&[0; 320], &mut out).expect("encode");
        assert!(!out.is_empty());
    }

    #[test]
    fn loss_is_concealed_with_exactly_one_frame() {
        let _g = serial();
        // Frames PLC cannot make whole (not a multiple of 2.5 ms) are topped up by the fallback.
        check_loss_concealment::<Opus>(&[1, 39, 330, 2000]);
    }

    #[test]
    fn a_lost_packet_is_rebuilt_from_the_next_ones_fec() {
        let _g = serial();
        // A sender that has seen loss, as a browser does: in-band FEC on, 48 kHz, 20 ms.
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).expect("encoder");
        enc.set_bitrate(opus::Bitrate::Bits(32_000)).expect("bitrate");
        enc.set_inband_fec(true).expect("fec");
        enc.set_packet_loss_perc(20).expect("loss");
        // A voice-like signal whose pitch jumps in the packet that is lost: concealment that
        // only carries the old pitch on cannot guess it.
        const LOST: usize = 30;
        let packets: Vec<Vec<u8>> = (0..40)
            .map(|k| {
                let hz = if k < LOST { 180.0 } else { 290.0 };
                let pcm: Vec<i16> = (0..960)
                    .map(|i| {
                        let w = TAU * hz * (k * 960 + i) as f64 / 48_000.0;
                        (6000.0 * w.sin() + 3000.0 * (2.0 * w).sin() + 1500.0 * (3.0 * w).sin()) as i16
                    })
                    .collect();
                let mut out = vec![0u8; 1500];
                let n = enc.encode(&pcm, &mut out).expect("encode");
                out.truncate(n);
                out
            })
            .collect();
        let lost_frame = |conceal: &dyn Fn(&mut Decoder, &mut Vec<i16>)| {
            let mut dec = Decoder::new().expect("decoder");
            let mut pcm = Vec::new();
            for p in &packets[..LOST] {
                pcm.clear();
                dec.decode(Some(p), 320, &mut pcm).expect("decode");
            }
            pcm.clear();
            conceal(&mut dec, &mut pcm);
            pcm
        };
        let heard = lost_frame(&|d, pcm| d.decode(Some(&packets[LOST]), 320, pcm).expect("decode"));
        let fec = lost_frame(&|d, pcm| d.decode_fec(&packets[LOST + 1], 320, pcm).expect("fec"));
        let plc = lost_frame(&|d, pcm| d.decode(None, 320, pcm).expect("plc"));
        assert_eq!((fec.len(), plc.len()), (320, 320));
        let off = |x: &[i16]| {
            let e: Vec<i16> = x.iter().zip(&heard).map(|(a, b)| a.saturating_sub(*b)).collect();
            rms(&e)
        };
        assert!(
            off(&fec) < 0.2 * rms(&heard) && off(&fec) < 0.2 * off(&plc),
            "FEC is {:.0} rms off what was sent, PLC {:.0} (signal {:.0})",
            off(&fec),
            off(&plc),
            rms(&heard)
        );
    }

    #[test]
    fn a_long_packet_is_decoded_whole() {
        let _g = serial();
        let mut enc = Encoder::new(60).expect("encoder");
        let mut dec = Decoder::new().expect("decoder");
        let (mut payload, mut pcm) = (Vec::new(), Vec::new());
        enc.encode(&tone_frames(440.0, 8000.0, 960, 1)[0], &mut payload).expect("encode");
        // The mixer's frame is 20 ms; a 60 ms packet still comes out whole, for the mixer to
        // play over three ticks.
        dec.decode(Some(&payload), 320, &mut pcm).expect("decode");
        assert_eq!(pcm.len(), 960);
    }

    #[test]
    fn garbage_is_survived() {
        let _g = serial();
        // A packet libopus takes is decoded whole (120 ms at most), anything else is concealed as
        // one frame.
        check_garbage_survived::<Opus>(|_, samples| samples == 320 || (samples <= 1920 && samples % 40 == 0));
    }

    /// A stereo Opus stream (as some endpoints send) must come out as a mono downmix, not as
    /// its left channel alone.
    #[test]
    fn stereo_payloads_are_downmixed() {
        let _g = serial();
        let mut stereo = opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio).expect("stereo");
        stereo.set_bitrate(opus::Bitrate::Bits(96_000)).expect("bitrate");
        let mut dec = Decoder::new().expect("decoder");
        let mut pcm = Vec::new();
        let mut interleaved = vec![0i16; 960 * 2];
        let mut packet = vec![0u8; MAX_PAYLOAD];
        for f in 0..50usize {
            for (i, pair) in interleaved.chunks_exact_mut(2).enumerate() {
                let t = (f * 960 + i) as f64 / 48_000.0;
                pair[0] = (8000.0 * (TAU * 440.0 * t).sin()) as i16;
                pair[1] = (8000.0 * (TAU * 1000.0 * t).sin()) as i16;
            }
            let n = stereo.encode(&interleaved, &mut packet).expect("encode");
            assert_eq!(opus::packet::get_nb_channels(&packet[..n]).expect("toc"), opus::Channels::Stereo);
            dec.decode(Some(&packet[..n]), 320, &mut pcm).expect("decode");
        }
        assert_eq!(pcm.len(), 50 * 320);
        let steady = &pcm[pcm.len() / 4..];
        let (l, r) = (power_at(steady, 440.0), power_at(steady, 1000.0));
        let balance = 10.0 * (l / r).log10();
        assert!(balance.abs() < 3.0, "440 Hz vs 1 kHz: {balance:.1} dB");
    }

    #[test]
    fn long_runs_hold_steady_and_keep_up() {
        let _g = serial();
        check_long_runs::<Opus>();
    }

    #[test]
    fn buffers_are_reused() {
        let _g = serial();
        let mut enc = Encoder::new(20).expect("encoder");
        let mut dec = Decoder::new().expect("decoder");
        let frames = tone_frames(440.0, 8000.0, 320, 50);
        let mut payload = Vec::with_capacity(256);
        let mut pcm = Vec::with_capacity(320);
        let (packet_at, pcm_at) = (enc.packet.as_ptr(), dec.pcm.as_ptr());
        for (i, frame) in frames.iter().cycle().take(200).enumerate() {
            enc.encode(frame, &mut payload).expect("encode");
            pcm.clear();
            dec.decode((i % 10 != 9).then_some(payload.as_slice()), 320, &mut pcm).expect("decode");
        }
        // The caller's vectors never had to grow, and the codec's own buffers are those it was
        // built with.
        assert_eq!((payload.capacity(), pcm.capacity()), (256, 320));
        assert_eq!((enc.packet.as_ptr(), dec.pcm.as_ptr()), (packet_at, pcm_at));
    }

    #[test]
    fn streams_can_be_created_and_dropped_repeatedly() {
        let _g = serial();
        check_create_and_drop::<Opus>();
    }

    /// `cargo test -p switchboard-mixer --release -- --ignored --nocapture bench`
    #[test]
    #[ignore]
    fn bench_opus_per_frame_cost() {
        let _g = serial();
        bench_per_frame_cost::<Opus>();
    }
}
