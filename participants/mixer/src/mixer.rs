//! The room's audio MCU as a driver: its input slots receive tracks from the room like any
//! subscriber's, and its output tracks go back into the room like any publisher's. Every 20 ms it
//! plays one frame of each input, picks the K loudest, and encodes each distinct mix once.
//!
//! Mixing is plain Rust on 16 kHz mono frames: summing a few frames costs less than the buffer
//! hops of a GStreamer `audiomixer` per mix, and a mix-minus per talker would need one aggregator
//! each (see docs/mixer.md for the measured cost that decided it).

use crate::codec::{Decoder, Encoder, FRAME};
use crate::compositor::{CanvasKey, Compositor, VideoOutput};
use crate::jitter::{JitterBuffer, Pop};
use crate::resample::Upsampler;
use crate::speakers::SpeakerSelector;
use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_driver::{
    Codec, CodecSpec, Driver, DriverEvent, KeyframeKind, MediaKind, MixOutputKind, MixPlan, MixerControl, MixerStats,
    Negotiated, NegotiationError, Output, ParticipantKind, Pt, RtpMeta, SdpInput, SeqNo, SlotInfo, SlotKey, Ssrc,
    TrackInfo, TrackKey, WriteError,
};

const TICK: Duration = Duration::from_millis(20);
/// Ticks an unused encoder lives on, so a talker who pauses keeps their encoder state.
const ENCODER_IDLE_TICKS: u64 = 250;
/// How far behind the mixer may fall before it skips ticks instead of catching up.
const MAX_CATCH_UP: u32 = 5;

struct Input {
    slot: SlotKey,
    codec: CodecSpec,
    jitter: JitterBuffer,
    decoder: Option<Decoder>,
    /// Samples decoded and not yet played, at the decoder's rate (8 kHz for G.711).
    pcm: Vec<i16>,
    /// The frame mixed this tick, at 16 kHz.
    frame: [i16; FRAME],
    /// A narrowband decoder's frame this tick, at 8 kHz. Its level is measured here; it is
    /// upsampled into `frame` only if this tick mixes or transcodes it (`narrow_pending`).
    /// With K speakers among N phone legs that skips N - K upsamplings a tick.
    narrow: [i16; FRAME / 2],
    narrow_pending: bool,
    up: Upsampler,
    /// Some output transcodes this input alone, so its 16 kHz frame is needed every tick. Kept
    /// by `configure`, so a tick does not search the outputs once per input.
    transcoded: bool,
    /// Smoothed level in dBov.
    level_db: f32,
    /// The sender's own RFC 6464 level, when it sends one.
    reported_db: Option<(f32, Instant)>,
    /// Packets were taken without decoding since the last decode (see `run_tick`): the
    /// decoder's state is from before the gap.
    skipped_decoding: bool,
    active: bool,
    /// Opus only: how often the packet's TOC configuration changes, smoothed. An encoder keeps
    /// its mode, bandwidth and frame size for long runs; random bytes change them nearly every
    /// packet, and decode to loud noise that would win a place among the speakers.
    toc_churn: f32,
    last_toc: Option<u8>,
}

/// Above this churn an Opus input is taken for garbage: muted, never a speaker, counted.
const GARBLED_CHURN: f32 = 0.5;

impl Input {
    fn garbled(&self) -> bool {
        self.toc_churn > GARBLED_CHURN
    }

    fn reports_level(&self, now: Instant) -> bool {
        self.reported_db.is_some_and(|(_, at)| now.saturating_duration_since(at) < REPORTED_LEVEL_FRESH)
    }
}

/// How long a sender's RFC 6464 level stands for its input's level; older, the decoded signal
/// is measured instead.
const REPORTED_LEVEL_FRESH: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Stream {
    Listeners,
    Minus(SlotKey),
    Transcode(SlotKey),
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct EncoderKey {
    stream: Stream,
    codec: Codec,
    ptime_ms: u16,
}

struct EncoderState {
    encoder: Encoder,
    /// PCM gathered toward the next packet (ptime may span several ticks).
    pending: Vec<i16>,
    /// The packet finished this tick, if any.
    packet: Vec<u8>,
    ready: bool,
    last_used: u64,
    fed_at: u64,
    /// The worst loss (percent) the receivers of this encoder's outputs report, gathered this
    /// tick and last tick, and what the encoder was last told.
    loss_gathering: u8,
    loss_gathered: u8,
    loss_applied: u8,
}

struct OutputState {
    track: TrackKey,
    codec: CodecSpec,
    ptime_ms: u16,
    kind: MixOutputKind,
    seq: u64,
    timestamp: u32,
    /// The share of packets the receiver reports losing, and when it said so.
    loss: Option<(f32, Instant)>,
}

/// How long a receiver's loss report stands. Receivers report every few seconds (RTCP); one
/// that stops, or leaves, stops costing its encoder FEC after this.
const LOSS_REPORT_FRESH: Duration = Duration::from_secs(10);
/// The most loss an encoder is told of: beyond it, FEC's share of the bitrate starves the
/// frames it protects.
const MAX_EXPECTED_LOSS: u8 = 25;

impl OutputState {
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
struct Pending {
    track: TrackKey,
    meta: RtpMeta,
    payload: Vec<u8>,
}

pub struct MixerDriver {
    plan: MixPlan,
    negotiated: Negotiated,
    inputs: Vec<Input>,
    outputs: Vec<OutputState>,
    encoders: FxHashMap<EncoderKey, EncoderState>,
    selector: SpeakerSelector,
    /// Each active input's level, gathered every tick for the selector; its buffer is reused.
    levels: Vec<(SlotKey, f32)>,
    next_tick: Instant,
    tick: u64,
    pending: Vec<Pending>,
    pending_len: usize,
    events: Vec<DriverEvent>,
    stats: MixerStats,
    mix: [i32; FRAME],
    scratch: [i16; FRAME],
    /// The video inputs and outputs, on GStreamer pipelines of their own.
    video: Compositor,
    /// The latest time the room gave; GStreamer's clock drives the video, this only paces
    /// keyframe requests.
    now: Instant,
    closed: bool,
}

impl MixerDriver {
    pub fn new(now: Instant) -> MixerDriver {
        MixerDriver {
            plan: MixPlan::default(),
            negotiated: Negotiated { tracks: Vec::new(), slots: Vec::new() },
            inputs: Vec::new(),
            outputs: Vec::new(),
            encoders: FxHashMap::default(),
            selector: SpeakerSelector::new(3),
            levels: Vec::new(),
            next_tick: now + TICK,
            tick: 0,
            pending: Vec::new(),
            pending_len: 0,
            events: Vec::new(),
            stats: MixerStats::default(),
            mix: [0; FRAME],
            scratch: [0; FRAME],
            video: Compositor::new(),
            now,
            closed: false,
        }
    }

    fn run_tick(&mut self, now: Instant) {
        let started = Instant::now();
        self.tick += 1;
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
            let (key, pt, clock_rate, ptime, loss) = {
                let out = &self.outputs[o];
                let stream = match out.kind {
                    MixOutputKind::Mix { minus: Some(s) } if self.selector.contains(s) => Stream::Minus(s),
                    MixOutputKind::Mix { .. } => Stream::Listeners,
                    MixOutputKind::Transcode { input } => Stream::Transcode(input),
                    // Video outputs are the compositor's; `configure` keeps them out of `outputs`.
                    MixOutputKind::Composite => continue,
                };
                let key = EncoderKey { stream, codec: out.codec.codec, ptime_ms: out.ptime_ms };
                (key, out.codec.pt, out.codec.clock_rate, out.ptime_ms, out.loss_percent(now))
            };
            if !self.feed_encoder(key, loss) {
                continue;
            }
            let Some(enc) = self.encoders.get(&key) else { continue };
            if !enc.ready {
                continue;
            }
            let out = &mut self.outputs[o];
            let meta = RtpMeta {
                pt,
                seq: SeqNo(out.seq),
                timestamp: out.timestamp,
                marker: false,
                ssrc: Ssrc(0),
                audio_level: None,
            };
            out.seq += 1;
            out.timestamp = out.timestamp.wrapping_add(clock_rate * ptime as u32 / 1000);
            push_pending(&mut self.pending, &mut self.pending_len, out.track, &meta, &enc.packet);
        }
        let tick = self.tick;
        self.encoders.retain(|_, e| tick - e.last_used < ENCODER_IDLE_TICKS);
        self.stats.ticks += 1;
        self.stats.processing_ns += started.elapsed().as_nanos() as u64;
    }

    /// Gives the encoder of `key` this tick's PCM, once per tick however many outputs share it,
    /// and gathers the worst loss their receivers report (`loss`, percent), which the encoder is
    /// told of from the next tick on. Returns false when the encoder cannot be had.
    fn feed_encoder(&mut self, key: EncoderKey, loss: u8) -> bool {
        let tick = self.tick;
        // Only Opus carries FEC; the other codecs' encoders are never told, nor counted.
        let loss = if key.codec == Codec::Opus { loss } else { 0 };
        if let std::collections::hash_map::Entry::Vacant(slot) = self.encoders.entry(key) {
            match Encoder::new(key.codec, key.ptime_ms as u32) {
                Ok(encoder) => {
                    slot.insert(EncoderState {
                        encoder,
                        pending: Vec::with_capacity(FRAME * 3),
                        packet: Vec::with_capacity(256),
                        ready: false,
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
        enc.ready = false;
        enc.loss_gathered = std::mem::replace(&mut enc.loss_gathering, loss);
        if enc.loss_gathered != enc.loss_applied {
            enc.loss_applied = enc.loss_gathered;
            if let Err(e) = enc.encoder.set_expected_loss(enc.loss_applied) {
                tracing::warn!(error = %e, "mixer encoder refused its expected loss");
                self.stats.errors += 1;
            }
        }
        enc.pending.extend_from_slice(pcm);
        let want = FRAME * (key.ptime_ms as usize / 20).max(1);
        if enc.pending.len() >= want {
            let result = enc.encoder.encode(&enc.pending[..want], &mut enc.packet);
            enc.pending.drain(..want);
            match result {
                Ok(()) => enc.ready = !enc.packet.is_empty(),
                Err(e) => {
                    tracing::warn!(error = %e, "mixer encoder failed; rebuilding it");
                    self.stats.errors += 1;
                    self.encoders.remove(&key);
                    return false;
                }
            }
        }
        true
    }

    fn rebuild_negotiated(&mut self) {
        self.negotiated = Negotiated {
            tracks: self
                .plan
                .outputs
                .iter()
                .map(|o| TrackInfo {
                    key: o.track,
                    kind: o.codec.codec.kind(),
                    codec: o.codec.clone(),
                    label: format!("mix{}", o.track.0),
                })
                .collect(),
            slots: self
                .plan
                .inputs
                .iter()
                .map(|i| SlotInfo {
                    key: i.slot,
                    kind: i.codec.codec.kind(),
                    label: format!("in{}", i.slot.0),
                    codecs: vec![i.codec.clone()],
                    ssrc: Ssrc(0),
                    telephone_event: None,
                    active: true,
                    ptime_ms: None,
                })
                .collect(),
        };
    }
}

/// Queues a packet for `poll`, reusing the buffers of packets already polled.
fn push_pending(pending: &mut Vec<Pending>, len: &mut usize, track: TrackKey, meta: &RtpMeta, payload: &[u8]) {
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

/// Plays one frame of `input` into `input.frame`, decoding, concealing or filling silence. With
/// `decode` false, its packets only leave the jitter buffer at their pace and it plays silence.
fn play_frame(input: &mut Input, now: Instant, decode: bool, stats: &mut MixerStats) {
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
        let (payload, following) = match input.jitter.pop(now) {
            Pop::Packet(p) => (Some(p), None),
            Pop::Lost { following } => {
                stats.concealed += 1;
                (None, following)
            }
            Pop::Empty => break,
        };
        let Some(decoder) = input.decoder.as_mut() else { break };
        if !decode {
            let samples = decoder.samples(payload);
            input.pcm.resize(input.pcm.len() + samples, 0);
            input.skipped_decoding = true;
            stats.undecoded += 1;
            continue;
        }
        if std::mem::take(&mut input.skipped_decoding) && decoder.reset().is_err() {
            stats.errors += 1;
            input.decoder = Decoder::new(input.codec.codec).ok();
            break;
        }
        let decoded = match payload {
            Some(p) => decoder.decode(Some(p), &mut input.pcm),
            None => decoder.decode_lost(following, &mut input.pcm),
        };
        if decoded.is_err() {
            // A corrupt stream costs only this input: its decoder starts afresh.
            stats.errors += 1;
            input.decoder = Decoder::new(input.codec.codec).ok();
            break;
        }
    }
    let have = input.pcm.len().min(frame_len);
    let frame: &mut [i16] = if narrow { &mut input.narrow } else { &mut input.frame };
    frame[..have].copy_from_slice(&input.pcm[..have]);
    frame[have..].fill(0);
    input.narrow_pending = narrow;
    input.pcm.drain(..have);
    // Decoders that deliver in bursts must not build up delay: keep at most two frames.
    if input.pcm.len() > frame_len * 2 {
        let extra = input.pcm.len() - frame_len * 2;
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

impl MixerControl for MixerDriver {
    fn configure(&mut self, now: Instant, plan: &MixPlan) {
        if *plan == self.plan {
            return;
        }
        let jitter_min = Duration::from_millis(plan.jitter_buffer_ms as u64);
        let jitter_max = Duration::from_millis(plan.jitter_buffer_max_ms as u64);
        let audio_inputs = || plan.inputs.iter().filter(|p| p.codec.codec.kind() == MediaKind::Audio);
        let audio_outputs = || plan.outputs.iter().filter(|o| o.codec.codec.kind() == MediaKind::Audio);
        self.inputs.retain(|i| audio_inputs().any(|p| p.slot == i.slot && p.codec == i.codec));
        for p in audio_inputs() {
            if self.inputs.iter().any(|i| i.slot == p.slot) {
                continue;
            }
            let decoder = match Decoder::new(p.codec.codec) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "mixer input cannot be decoded");
                    self.stats.errors += 1;
                    None
                }
            };
            self.inputs.push(Input {
                slot: p.slot,
                codec: p.codec.clone(),
                jitter: JitterBuffer::new(jitter_min, jitter_max, TICK),
                decoder,
                pcm: Vec::with_capacity(FRAME * 3),
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
            });
        }
        for o in audio_outputs() {
            match self.outputs.iter_mut().find(|x| x.track == o.track) {
                Some(x) => {
                    x.kind = o.kind;
                    x.ptime_ms = o.ptime_ms;
                    x.codec = o.codec.clone();
                }
                None => self.outputs.push(OutputState {
                    track: o.track,
                    codec: o.codec.clone(),
                    ptime_ms: o.ptime_ms,
                    kind: o.kind,
                    seq: 1,
                    timestamp: 0,
                    loss: None,
                }),
            }
        }
        self.outputs.retain(|x| audio_outputs().any(|o| o.track == x.track));
        let video_inputs: Vec<(SlotKey, CodecSpec)> = plan
            .inputs
            .iter()
            .filter(|p| p.codec.codec.kind() == MediaKind::Video)
            .map(|p| (p.slot, p.codec.clone()))
            .collect();
        let video_outputs: Vec<VideoOutput> = plan
            .outputs
            .iter()
            .filter(|o| o.codec.codec.kind() == MediaKind::Video)
            .filter_map(|o| {
                let canvas = match o.kind {
                    MixOutputKind::Composite => CanvasKey::Composite,
                    MixOutputKind::Transcode { input } => CanvasKey::Transcode(input),
                    MixOutputKind::Mix { .. } => return None,
                };
                Some(VideoOutput { track: o.track, codec: o.codec.clone(), canvas })
            })
            .collect();
        self.video.configure(now, &video_inputs, &video_outputs, plan.video);
        for input in &mut self.inputs {
            input.transcoded =
                self.outputs.iter().any(|o| matches!(o.kind, MixOutputKind::Transcode { input: s } if s == input.slot));
        }
        // Sorted by slot, so a packet finds its input by binary search: a linear one per packet
        // made a big room's input cost grow with the room.
        self.inputs.sort_by_key(|i| i.slot);
        self.selector.set_k(plan.speakers);
        self.plan = plan.clone();
        self.rebuild_negotiated();
        if self.next_tick < now {
            self.next_tick = now + TICK;
        }
    }

    fn take_stats(&mut self) -> MixerStats {
        let mut s = std::mem::take(&mut self.stats);
        for i in &mut self.inputs {
            s.late += std::mem::take(&mut i.jitter.stats.late);
            s.lost += std::mem::take(&mut i.jitter.stats.lost);
        }
        s.mixes = self.encoders.keys().filter(|k| !matches!(k.stream, Stream::Transcode(_))).count() as u64;
        s.encoders = self.encoders.len() as u64;
        s.decoders = self.inputs.iter().filter(|i| i.decoder.is_some()).count() as u64;
        s.jitter_target_ms = self.inputs.iter().map(|i| i.jitter.target().as_millis() as u64).max().unwrap_or(0);
        s.fec_encoders = self.encoders.values().filter(|e| e.loss_applied > 0).count() as u64;
        let video = self.video.take_stats();
        s.errors += video.errors;
        s.video_encoders = video.encoders;
        s
    }

    fn receiver_loss(&mut self, now: Instant, track: TrackKey, fraction: f32) {
        if let Some(out) = self.outputs.iter_mut().find(|o| o.track == track) {
            out.loss = Some((if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 }, now));
        }
    }
}

impl Driver for MixerDriver {
    fn kind(&self) -> ParticipantKind {
        // The mixer is internal; the room never reports it as a participant.
        ParticipantKind::Rtp
    }

    fn negotiate(&mut self, _: Instant, _: SdpInput<'_>) -> Result<Option<String>, NegotiationError> {
        Err(NegotiationError::UnexpectedState("the mixer takes a plan, not SDP".into()))
    }

    fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    fn handle_receive(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: &[u8]) {}

    fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let mut ran = 0;
        while now >= self.next_tick {
            if ran == MAX_CATCH_UP {
                // Too far behind (the thread was starved): drop the backlog rather than burst.
                self.next_tick = now + TICK;
                break;
            }
            let at = self.next_tick;
            self.run_tick(at);
            self.next_tick += TICK;
            ran += 1;
        }
        self.now = self.now.max(now);
        let (pending, len) = (&mut self.pending, &mut self.pending_len);
        self.video.drain(now, |track, meta, payload| push_pending(pending, len, track, meta, payload));
        for (slot, kind) in self.video.take_keyframe_requests() {
            self.events.push(DriverEvent::KeyframeRequest { slot, kind });
        }
    }

    fn write_media(&mut self, now: Instant, slot: SlotKey, meta: &RtpMeta, payload: &[u8]) -> Result<(), WriteError> {
        let Ok(i) = self.inputs.binary_search_by_key(&slot, |i| i.slot) else {
            return match self.video.write(slot, meta, payload) {
                true => Ok(()),
                false => Err(WriteError::NoSuchSlot),
            };
        };
        let input = &mut self.inputs[i];
        if let Some(level) = meta.audio_level {
            input.reported_db = Some((-(level.unsigned_abs() as f32), now));
        }
        if input.codec.codec == Codec::Opus {
            if let Some(toc) = payload.first().map(|b| b >> 3) {
                let changed = input.last_toc.is_some_and(|t| t != toc);
                input.toc_churn = 0.9 * input.toc_churn + if changed { 0.1 } else { 0.0 };
                input.last_toc = Some(toc);
            }
        }
        input.jitter.push(now, meta.seq.0, payload);
        Ok(())
    }

    fn request_keyframe(&mut self, track: TrackKey, _: KeyframeKind) {
        self.video.force_keyframe(self.now, track);
    }

    fn poll(&mut self, now: Instant, out: &mut dyn Output) -> Instant {
        for p in &self.pending[..self.pending_len] {
            out.media(p.track, &p.meta, &p.payload);
        }
        self.pending_len = 0;
        for ev in self.events.drain(..) {
            out.event(ev);
        }
        if self.closed || (self.outputs.is_empty() && self.video.is_idle()) {
            return now + Duration::from_secs(1);
        }
        self.next_tick
    }

    fn close(&mut self, _: Instant) {
        self.closed = true;
        self.video = Compositor::new();
    }

    fn as_mixer(&mut self) -> Option<&mut dyn MixerControl> {
        Some(self)
    }
}

/// Builds a codec spec for tests and plans.
pub fn spec(codec: Codec, pt: u8) -> CodecSpec {
    CodecSpec { codec, pt: Pt(pt), clock_rate: codec.clock_rate(), channels: 1, fmtp: String::new() }
}

/// The input for `slot`: `inputs` is kept sorted by slot (see `configure`).
fn input_of(inputs: &[Input], slot: SlotKey) -> Option<&Input> {
    inputs.binary_search_by_key(&slot, |i| i.slot).ok().map(|i| &inputs[i])
}
