//! The mix tick and the output side: every 20 ms each input plays a frame, the loudest are
//! summed, and each distinct stream (the mix, a mix-minus, a transcode) is encoded once however
//! many outputs carry it, in packets of its ptime (`packetize`).

use super::input::{input_of, play_frame};
use super::packetize::{packet_ms, Packetizer, Stamps};
use super::Mixer;
use crate::codec::FRAME;
use std::time::{Duration, Instant};
use switchboard_driver::{Codec, CodecSpec, DriverEvent, MixOutputKind, RtpMeta, SlotKey, Ssrc, TrackKey};

/// Ticks an unused encoder lives on, so a talker who pauses keeps their encoder state.
const ENCODER_IDLE_TICKS: u64 = 250;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Stream {
    Listeners,
    Minus(SlotKey),
    Transcode(SlotKey),
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct EncoderKey {
    pub(super) stream: Stream,
    codec: Codec,
    ptime_ms: u16,
}

pub(super) struct EncoderState {
    /// The encoder, the PCM it gathers toward its next packet and the packets this tick made.
    packetizer: Packetizer,
    last_used: u64,
    fed_at: u64,
    /// The worst loss (percent) the receivers of this encoder's outputs report, gathered this
    /// tick and last tick, and what the encoder was last told.
    loss_gathering: u8,
    loss_gathered: u8,
    pub(super) loss_applied: u8,
}

pub(super) struct OutputState {
    pub(super) track: TrackKey,
    pub(super) codec: CodecSpec,
    /// The packet duration sent (`packet_ms` of what the leg asked for).
    pub(super) ptime_ms: u16,
    pub(super) kind: MixOutputKind,
    stamps: Stamps,
    /// The share of packets the receiver reports losing, and when it said so.
    pub(super) loss: Option<(f32, Instant)>,
}

/// How long a receiver's loss report stands. Receivers report every few seconds (RTCP); one
/// that stops, or leaves, stops costing its encoder FEC after this.
const LOSS_REPORT_FRESH: Duration = Duration::from_secs(10);
/// The most loss an encoder is told of: beyond it, FEC's share of the bitrate starves the
/// frames it protects.
const MAX_EXPECTED_LOSS: u8 = 25;

impl OutputState {
    /// A new output, in packets of about `ptime_ms` (what the leg asked for): its stream starts at
    /// sequence number 1 and timestamp 0.
    pub(super) fn new(track: TrackKey, codec: CodecSpec, ptime_ms: u16, kind: MixOutputKind) -> OutputState {
        OutputState { track, codec, ptime_ms: packet_ms(ptime_ms), kind, stamps: Stamps::new(), loss: None }
    }

    /// The plan restated this output: it keeps its stream (`stamps`).
    pub(super) fn update(&mut self, codec: &CodecSpec, ptime_ms: u16, kind: MixOutputKind) {
        self.kind = kind;
        self.ptime_ms = packet_ms(ptime_ms);
        self.codec = codec.clone();
    }

    fn loss_percent(&self, now: Instant) -> u8 {
        match self.loss {
            Some((fraction, at)) if now.saturating_duration_since(at) < LOSS_REPORT_FRESH => {
                (fraction * 100.0).round().clamp(0.0, f32::from(MAX_EXPECTED_LOSS)) as u8
            }
            _ => 0,
        }
    }
}

/// One packet waiting for `poll`; its buffer is reused.
pub(super) struct Pending {
    pub(super) track: TrackKey,
    pub(super) meta: RtpMeta,
    pub(super) payload: Vec<u8>,
}

/// Queues a packet for `poll`, reusing the buffers of packets already polled.
pub(super) fn push_pending(
    pending: &mut Vec<Pending>,
    len: &mut usize,
    track: TrackKey,
    meta: &RtpMeta,
    payload: &[u8],
) {
    if *len == pending.len() {
        pending.push(Pending { track, meta: *meta, payload: Vec::with_capacity(256) });
    }
    let p = &mut pending[*len];
    p.track = track;
    p.meta = *meta;
    p.payload.clear();
    p.payload.extend_from_slice(payload);
    *len += 1;
}

impl Mixer {
    pub(super) fn run_tick(&mut self, now: Instant) {
        let started = Instant::now();
        self.tick += 1;
        // This frame's place in mixer time, which packets are stamped by.
        let at = self.frames * FRAME as u64;
        self.frames += 1;
        for input in &mut self.inputs {
            // An input the mix leaves out, whose sender tells its level (RFC 6464, as browsers
            // do), has no use for its PCM this tick: the level alone decides whether it joins
            // the speakers. Not decoding it saves most of an Opus room's cost, since only K of N
            // inputs are heard. It joins the mix a tick after its level wins, as it would anyway.
            let decode = input.transcoded || self.selector.contains(input.slot) || !input.reports_level(now);
            play_frame(input, now, decode, &mut self.stats);
        }
        self.levels.clear();
        self.levels.extend(self.inputs.iter().filter(|i| i.active).map(|i| (i.slot, i.level_db)));
        if self.selector.update(now, &self.levels) {
            self.events.push(DriverEvent::ActiveSpeakers { slots: self.selector.selected().to_vec() });
        }
        for input in self.inputs.iter_mut().filter(|i| i.narrow_pending) {
            input.narrow_pending = false;
            if input.transcoded || self.selector.contains(input.slot) {
                input.up.process_into(&input.narrow, &mut input.frame);
            } else {
                // Not mixed and not transcoded this tick: nothing reads `frame`.
                input.up.prime(&input.narrow);
            }
        }
        self.mix = [0; FRAME];
        for input in self.inputs.iter().filter(|i| self.selector.contains(i.slot)) {
            for (m, s) in self.mix.iter_mut().zip(input.frame.iter()) {
                *m += *s as i32;
            }
        }
        for o in 0..self.outputs.len() {
            let (key, pt, clock_rate, loss) = {
                let out = &self.outputs[o];
                let stream = match out.kind {
                    MixOutputKind::Mix { minus: Some(s) } if self.selector.contains(s) => Stream::Minus(s),
                    MixOutputKind::Mix { .. } => Stream::Listeners,
                    MixOutputKind::Transcode { input } => Stream::Transcode(input),
                    // Video outputs are the compositor's; `configure` keeps them out of `outputs`.
                    MixOutputKind::Composite => continue,
                };
                let key = EncoderKey { stream, codec: out.codec.codec, ptime_ms: out.ptime_ms };
                (key, out.codec.pt, out.codec.clock_rate, out.loss_percent(now))
            };
            if !self.feed_encoder(key, loss, at) {
                continue;
            }
            let Some(enc) = self.encoders.get(&key) else { continue };
            let out = &mut self.outputs[o];
            let samples = enc.packetizer.samples();
            for (start, payload) in enc.packetizer.packets() {
                let Some((seq, timestamp)) = out.stamps.stamp(*start, samples, clock_rate) else { continue };
                let meta = RtpMeta { pt, seq, timestamp, marker: false, ssrc: Ssrc(0), audio_level: None };
                push_pending(&mut self.pending, &mut self.pending_len, out.track, &meta, payload);
            }
        }
        let tick = self.tick;
        self.encoders.retain(|_, e| tick - e.last_used < ENCODER_IDLE_TICKS);
        self.stats.ticks += 1;
        self.stats.processing_ns += started.elapsed().as_nanos() as u64;
    }

    /// Gives the encoder of `key` this tick's PCM (mixer time `at`), once per tick however many
    /// outputs share it, and gathers the worst loss their receivers report (`loss`, percent),
    /// which the encoder is told of from the next tick on. Returns false when the encoder cannot
    /// be had.
    fn feed_encoder(&mut self, key: EncoderKey, loss: u8, at: u64) -> bool {
        let tick = self.tick;
        // Only Opus carries FEC; the other codecs' encoders are never told, nor counted.
        let loss = if key.codec == Codec::Opus { loss } else { 0 };
        if let std::collections::hash_map::Entry::Vacant(slot) = self.encoders.entry(key) {
            match Packetizer::new(key.codec, key.ptime_ms) {
                Ok(packetizer) => {
                    slot.insert(EncoderState {
                        packetizer,
                        last_used: tick,
                        fed_at: 0,
                        loss_gathering: 0,
                        loss_gathered: 0,
                        loss_applied: 0,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, codec = key.codec.as_str(), "mixer encoder unavailable");
                    self.stats.errors += 1;
                    return false;
                }
            }
        }
        let pcm: &[i16] = match key.stream {
            Stream::Listeners => {
                clamp_into(&self.mix, None, &mut self.scratch);
                &self.scratch
            }
            Stream::Minus(s) => {
                let own = input_of(&self.inputs, s).map(|i| &i.frame);
                clamp_into(&self.mix, own, &mut self.scratch);
                &self.scratch
            }
            Stream::Transcode(s) => match input_of(&self.inputs, s) {
                Some(i) => &i.frame,
                None => return false,
            },
        };
        let Some(enc) = self.encoders.get_mut(&key) else { return false };
        enc.last_used = tick;
        if enc.fed_at == tick {
            enc.loss_gathering = enc.loss_gathering.max(loss);
            return true;
        }
        enc.fed_at = tick;
        enc.loss_gathered = std::mem::replace(&mut enc.loss_gathering, loss);
        if enc.loss_gathered != enc.loss_applied {
            enc.loss_applied = enc.loss_gathered;
            if let Err(e) = enc.packetizer.encoder().set_expected_loss(enc.loss_applied) {
                tracing::warn!(error = %e, "mixer encoder refused its expected loss");
                self.stats.errors += 1;
            }
        }
        if let Err(e) = enc.packetizer.push(at, pcm) {
            tracing::warn!(error = %e, "mixer encoder failed; rebuilding it");
            self.stats.errors += 1;
            self.encoders.remove(&key);
            return false;
        }
        true
    }
}

fn clamp_into(mix: &[i32; FRAME], minus: Option<&[i16; FRAME]>, out: &mut [i16; FRAME]) {
    match minus {
        Some(own) => {
            for ((o, m), s) in out.iter_mut().zip(mix.iter()).zip(own.iter()) {
                *o = (*m - *s as i32).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
            }
        }
        None => {
            for (o, m) in out.iter_mut().zip(mix.iter()) {
                *o = (*m).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixer::spec;

    #[test]
    fn a_mix_minus_takes_out_its_own_input_and_saturates() {
        let mut mix = [0i32; FRAME];
        mix[0] = 40_000;
        mix[1] = -40_000;
        mix[2] = 1_500;
        let mut own = [0i16; FRAME];
        own[2] = 500;
        let mut out = [0i16; FRAME];
        clamp_into(&mix, None, &mut out);
        assert_eq!(out[..3], [i16::MAX, i16::MIN, 1_500]);
        clamp_into(&mix, Some(&own), &mut out);
        assert_eq!(out[..3], [i16::MAX, i16::MIN, 1_000], "the subscriber's own input is taken out");
    }

    #[test]
    fn a_loss_report_is_capped_and_goes_stale() {
        let t0 = Instant::now();
        let mut out = OutputState::new(TrackKey(1), spec(Codec::Opus, 111), 20, MixOutputKind::Mix { minus: None });
        assert_eq!(out.loss_percent(t0), 0, "no report, no loss");
        out.loss = Some((0.1, t0));
        assert_eq!(out.loss_percent(t0 + Duration::from_secs(1)), 10);
        out.loss = Some((0.9, t0));
        assert_eq!(out.loss_percent(t0), MAX_EXPECTED_LOSS);
        assert_eq!(out.loss_percent(t0 + LOSS_REPORT_FRESH), 0, "a report stands for a while only");
    }
}
