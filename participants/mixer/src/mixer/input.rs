//! One input of the mix: its jitter buffer, its decoder, and the frame and level it plays each
//! tick.

use crate::codec::{Decoder, FRAME};
use crate::jitter::{JitterBuffer, Pop};
use crate::resample::Upsampler;
use std::time::{Duration, Instant};
use switchboard_driver::{Codec, CodecSpec, MixerStats, RtpMeta, SlotKey};

pub(super) struct Input {
    pub(super) slot: SlotKey,
    pub(super) codec: CodecSpec,
    pub(super) jitter: JitterBuffer,
    pub(super) decoder: Option<Decoder>,
    /// Samples decoded and not yet played, at the decoder's rate (8 kHz for G.711).
    pcm: Vec<i16>,
    /// Samples (at the decoder's rate) of the last packet taken: how long a lost one is
    /// concealed for, since a sender keeps its ptime. 0 until the first.
    packet_samples: usize,
    /// The frame mixed this tick, at 16 kHz.
    pub(super) frame: [i16; FRAME],
    /// A narrowband decoder's frame this tick, at 8 kHz. Its level is measured here; it is
    /// upsampled into `frame` only if this tick mixes or transcodes it (`narrow_pending`).
    /// With K speakers among N phone legs that skips N - K upsamplings a tick.
    pub(super) narrow: [i16; FRAME / 2],
    pub(super) narrow_pending: bool,
    pub(super) up: Upsampler,
    /// Some output transcodes this input alone, so its 16 kHz frame is needed every tick. Kept
    /// by `configure`, so a tick does not search the outputs once per input.
    pub(super) transcoded: bool,
    /// Smoothed level in dBov.
    pub(super) level_db: f32,
    /// The sender's own RFC 6464 level, when it sends one.
    reported_db: Option<(f32, Instant)>,
    /// Packets were taken without decoding since the last decode (see `run_tick`): the
    /// decoder's state is from before the gap.
    skipped_decoding: bool,
    pub(super) active: bool,
    /// Opus only: how often the packet's TOC configuration changes, smoothed. An encoder keeps
    /// its mode, bandwidth and frame size for long runs; random bytes change them nearly every
    /// packet, and decode to loud noise that would win a place among the speakers.
    toc_churn: f32,
    last_toc: Option<u8>,
}

/// Above this churn an Opus input is taken for garbage: muted, never a speaker, counted.
const GARBLED_CHURN: f32 = 0.5;

/// How long a sender's RFC 6464 level stands for its input's level; older, the decoded signal
/// is measured instead.
const REPORTED_LEVEL_FRESH: Duration = Duration::from_millis(200);

impl Input {
    /// A silent input on `slot`; `decoder` is `None` when the codec cannot be decoded, and the
    /// input then only keeps its jitter buffer moving.
    pub(super) fn new(slot: SlotKey, codec: CodecSpec, jitter: JitterBuffer, decoder: Option<Decoder>) -> Input {
        Input {
            slot,
            codec,
            jitter,
            decoder,
            // The longest packet (120 ms) and the frame before it.
            pcm: Vec::with_capacity(FRAME * 7),
            packet_samples: 0,
            frame: [0; FRAME],
            narrow: [0; FRAME / 2],
            narrow_pending: false,
            up: Upsampler::new(),
            transcoded: false,
            level_db: -127.0,
            reported_db: None,
            skipped_decoding: false,
            active: true,
            toc_churn: 0.0,
            last_toc: None,
        }
    }

    fn garbled(&self) -> bool {
        self.toc_churn > GARBLED_CHURN
    }

    pub(super) fn reports_level(&self, now: Instant) -> bool {
        self.reported_db.is_some_and(|(_, at)| now.saturating_duration_since(at) < REPORTED_LEVEL_FRESH)
    }

    /// Takes one packet: notes the sender's level and, for Opus, whether the packet looks like
    /// the stream before it, then buffers it for its playout time.
    pub(super) fn receive(&mut self, now: Instant, meta: &RtpMeta, payload: &[u8]) {
        if let Some(level) = meta.audio_level {
            self.reported_db = Some((-(level.unsigned_abs() as f32), now));
        }
        if self.codec.codec == Codec::Opus {
            if let Some(toc) = payload.first().map(|b| b >> 3) {
                let changed = self.last_toc.is_some_and(|t| t != toc);
                self.toc_churn = 0.9 * self.toc_churn + if changed { 0.1 } else { 0.0 };
                self.last_toc = Some(toc);
            }
        }
        if let Some(decoder) = &self.decoder {
            let rate = if decoder.narrowband() { 8 } else { 16 };
            let samples = decoder.samples(Some(payload)) as u64;
            self.jitter.set_packet_duration(Duration::from_micros(samples * 1000 / rate));
        }
        self.jitter.push(now, meta.seq.0, payload);
    }
}

/// Plays one frame of `input` into `input.frame`, decoding, concealing or filling silence. With
/// `decode` false, its packets only leave the jitter buffer at their pace and it plays silence.
pub(super) fn play_frame(input: &mut Input, now: Instant, decode: bool, stats: &mut MixerStats) {
    if input.garbled() {
        // Keep the buffer moving, one packet a tick, but neither decode nor mix what is in it.
        if !matches!(input.jitter.pop(now), Pop::Empty) {
            stats.errors += 1;
        }
        input.pcm.clear();
        input.frame.fill(0);
        input.narrow_pending = false;
        input.level_db = -127.0;
        return;
    }
    let narrow = input.decoder.as_ref().is_some_and(Decoder::narrowband);
    let frame_len = if narrow { FRAME / 2 } else { FRAME };
    while input.pcm.len() < frame_len {
        let (payload, following, hold) = match input.jitter.pop(now) {
            Pop::Packet(p) => (Some(p), None, false),
            Pop::Lost { following } => {
                stats.concealed += 1;
                (None, following, false)
            }
            Pop::Hold => (None, None, true),
            Pop::Empty => break,
        };
        let Some(decoder) = input.decoder.as_mut() else { break };
        // A lost packet lasted as long as the one before (a sender keeps its ptime); a hold
        // adds one frame of delay.
        let missing = match input.packet_samples {
            _ if hold => frame_len,
            0 => frame_len,
            n => n,
        };
        let before = input.pcm.len();
        if !decode {
            let samples = if payload.is_some() { decoder.samples(payload) } else { missing };
            input.pcm.resize(before + samples, 0);
            input.skipped_decoding = true;
            stats.undecoded += 1;
        } else {
            if std::mem::take(&mut input.skipped_decoding) && decoder.reset().is_err() {
                stats.errors += 1;
                input.decoder = Decoder::new(input.codec.codec).ok();
                break;
            }
            let decoded = match payload {
                Some(p) => decoder.decode(Some(p), &mut input.pcm),
                None => decoder.decode_lost(following, missing, &mut input.pcm),
            };
            if decoded.is_err() {
                // A corrupt stream costs only this input: its decoder starts afresh.
                stats.errors += 1;
                input.decoder = Decoder::new(input.codec.codec).ok();
                break;
            }
        }
        if payload.is_some() {
            // Within 5 ms and 120 ms (the longest packet any codec here makes).
            input.packet_samples = (input.pcm.len() - before).clamp(frame_len / 4, frame_len * 6);
        }
    }
    let have = input.pcm.len().min(frame_len);
    let frame: &mut [i16] = if narrow { &mut input.narrow } else { &mut input.frame };
    frame[..have].copy_from_slice(&input.pcm[..have]);
    frame[have..].fill(0);
    input.narrow_pending = narrow;
    input.pcm.drain(..have);
    // Decoders that deliver in bursts must not build up delay: keep at most two frames, or what
    // is left of one long packet.
    let keep = (frame_len * 2).max(input.packet_samples);
    if input.pcm.len() > keep {
        let extra = input.pcm.len() - keep;
        input.pcm.drain(..extra);
    }
    // Upsampling keeps a tone's level, so 8 kHz and 16 kHz frames measure alike.
    let measured = frame_dbov(if narrow { &input.narrow } else { &input.frame });
    let db = match input.reported_db {
        Some((db, _)) if input.reports_level(now) => db,
        _ => measured,
    };
    // Fast attack, slow release: a talker is noticed at once and not dropped between words.
    let alpha = if db > input.level_db { 0.5 } else { 0.1 };
    input.level_db += alpha * (db - input.level_db);
}

fn frame_dbov(frame: &[i16]) -> f32 {
    let energy: f64 = frame.iter().map(|s| (*s as f64) * (*s as f64)).sum::<f64>() / frame.len() as f64;
    if energy < 1.0 {
        return -127.0;
    }
    (10.0 * (energy / (32768.0 * 32768.0)).log10()) as f32
}

/// The input for `slot`: `inputs` is kept sorted by slot (see `configure`).
pub(super) fn input_of(inputs: &[Input], slot: SlotKey) -> Option<&Input> {
    inputs.binary_search_by_key(&slot, |i| i.slot).ok().map(|i| &inputs[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixer::spec;
    use switchboard_driver::{Pt, SeqNo, Ssrc};

    fn opus_input() -> Input {
        let jitter =
            JitterBuffer::new(Duration::from_millis(20), Duration::from_millis(200), Duration::from_millis(20));
        Input::new(SlotKey(0), spec(Codec::Opus, 111), jitter, None)
    }

    fn meta(seq: u64, audio_level: Option<i8>) -> RtpMeta {
        RtpMeta { pt: Pt(111), seq: SeqNo(seq), timestamp: 960 * seq as u32, marker: false, ssrc: Ssrc(1), audio_level }
    }

    #[test]
    fn silence_and_a_full_scale_square_wave_measure_as_their_levels() {
        assert_eq!(frame_dbov(&[0; FRAME]), -127.0);
        let square: Vec<i16> = (0..FRAME).map(|i| if i % 2 == 0 { i16::MAX } else { -i16::MAX }).collect();
        assert!(frame_dbov(&square).abs() < 0.01, "{}", frame_dbov(&square));
    }

    #[test]
    fn a_reported_level_stands_only_while_fresh() {
        let t0 = Instant::now();
        let mut input = opus_input();
        assert!(!input.reports_level(t0));
        input.receive(t0, &meta(1, Some(30)), &[0x78, 0, 0]);
        assert!(input.reports_level(t0 + Duration::from_millis(100)));
        assert!(!input.reports_level(t0 + REPORTED_LEVEL_FRESH));
    }

    #[test]
    fn opus_whose_configuration_changes_every_packet_is_garbled() {
        let t0 = Instant::now();
        let mut steady = opus_input();
        let mut churning = opus_input();
        for seq in 0..50u64 {
            steady.receive(t0, &meta(seq, None), &[0x78, 1, 2]);
            // A different TOC configuration (the top five bits) every packet.
            churning.receive(t0, &meta(seq, None), &[((seq % 32) as u8) << 3, 1, 2]);
        }
        assert!(!steady.garbled());
        assert!(churning.garbled());
    }
}
