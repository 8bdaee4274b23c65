//! The room's MCU: [`Mixer`] takes tracks in on the plan's input slots and publishes the plan's
//! outputs, as the [`Mcu`] contract says. Every 20 ms it plays one frame of each audio input,
//! picks the K loudest, and encodes each distinct mix once; video goes to the compositor.
//!
//! Mixing is plain Rust on 16 kHz mono frames: summing a few frames costs less than the buffer
//! hops of a GStreamer `audiomixer` per mix, and a mix-minus per talker would need one aggregator
//! each (see docs/mixer.md for the measured cost that decided it).

mod input;
mod packetize;
mod plan;
mod tick;

pub use plan::spec;

use crate::codec::FRAME;
use crate::compositor::Compositor;
use crate::speakers::SpeakerSelector;
use input::Input;
use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};
use switchboard_driver::{
    DriverEvent, KeyframeKind, Mcu, MixPlan, MixerStats, Output, RtpMeta, SlotKey, TrackKey, WriteError,
};
use tick::{push_pending, EncoderKey, EncoderState, OutputState, Pending, Stream};

const TICK: Duration = Duration::from_millis(20);
/// How far behind the mixer may fall before it skips ticks instead of catching up.
const MAX_CATCH_UP: u32 = 5;

/// The room's audio mixer and video compositor: see the module docs.
pub struct Mixer {
    /// The plan last applied, so restating it changes nothing.
    plan: MixPlan,
    /// The audio inputs, sorted by slot.
    inputs: Vec<Input>,
    outputs: Vec<OutputState>,
    encoders: FxHashMap<EncoderKey, EncoderState>,
    selector: SpeakerSelector,
    /// Each active input's level, gathered every tick for the selector; its buffer is reused.
    levels: Vec<(SlotKey, f32)>,
    next_tick: Instant,
    tick: u64,
    /// Mixer time in 20 ms frames: the frames mixed, and those skipped while the thread was
    /// starved, so an output's timestamps show such a gap (`packetize`).
    frames: u64,
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

impl Mixer {
    pub fn new(now: Instant) -> Mixer {
        Mixer {
            plan: MixPlan::default(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            encoders: FxHashMap::default(),
            selector: SpeakerSelector::new(3),
            levels: Vec::new(),
            next_tick: now + TICK,
            tick: 0,
            frames: 0,
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
}

impl Mcu for Mixer {
    fn configure(&mut self, now: Instant, plan: &MixPlan) {
        self.apply_plan(now, plan);
    }

    fn write_media(&mut self, now: Instant, input: SlotKey, meta: &RtpMeta, payload: &[u8]) -> Result<(), WriteError> {
        let Ok(i) = self.inputs.binary_search_by_key(&input, |i| i.slot) else {
            return match self.video.write(input, meta, payload) {
                true => Ok(()),
                false => Err(WriteError::NoSuchSlot),
            };
        };
        self.inputs[i].receive(now, meta, payload);
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let mut ran = 0;
        while now >= self.next_tick {
            if ran == MAX_CATCH_UP {
                // Too far behind (the thread was starved): drop the backlog rather than burst.
                let behind = now.saturating_duration_since(self.next_tick).as_micros() / TICK.as_micros() + 1;
                self.frames = self.frames.saturating_add(u64::try_from(behind).unwrap_or(u64::MAX));
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

    fn request_keyframe(&mut self, output: TrackKey, _: KeyframeKind) {
        self.video.force_keyframe(self.now, output);
    }

    fn receiver_loss(&mut self, now: Instant, output: TrackKey, fraction: f32) {
        if let Some(out) = self.outputs.iter_mut().find(|o| o.track == output) {
            out.loss = Some((if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 }, now));
        }
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

    fn close(&mut self, _: Instant) {
        self.closed = true;
        self.video = Compositor::new();
    }
}
