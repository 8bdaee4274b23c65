//! The room's video MCU: GStreamer pipelines that decode video inputs and encode what video
//! subscribers cannot take forwarded.
//!
//! Two kinds of canvas, each one pipeline:
//! - the **composite**: every video input decoded and tiled by `compositor` into one picture
//!   (a grid, each tile keeping its input's aspect ratio), over a live black background that
//!   keeps the frame rate steady whatever the inputs do, then encoded once per codec its
//!   subscribers take;
//! - a **transcode**: one input decoded and re-encoded at its own size, for a subscriber that
//!   shares no codec with it.
//!
//! Unlike the audio mixer, which runs in the room's thread on the room's clock, these pipelines
//! run on GStreamer's own threads and clock: a video encode takes milliseconds, and would stall
//! every other room of the worker. The room's thread only hands RTP packets to each input's
//! `appsrc` (which drops the oldest when full, never blocks) and drains the encoded RTP from each
//! `appsink` on the mixer's 20 ms tick, so the output leaves at most one tick late.
//!
//! A change of inputs or output codecs builds a new pipeline; the old one is stopped on a
//! thread of its own, since stopping joins its streaming threads. Each output keeps one
//! sequence and timestamp line across rebuilds, and the new decoders ask their publishers for a
//! keyframe. A decoder error costs only its input's picture (`max-errors=-1`); an error on the
//! pipeline's bus rebuilds it, at most once a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use switchboard_driver::{Codec, CodecSpec, KeyframeKind, RtpMeta, SeqNo, SlotKey, Ssrc, TrackKey, VideoSettings};
use switchboard_rtp::{write_packet, RtpHeader};

/// At most this many inputs are tiled (a 4×4 grid); the rest are left out, latest first.
pub const MAX_TILES: usize = 16;
/// A pipeline whose bus reported an error is rebuilt, but not more often than this.
const REBUILD_BACKOFF: Duration = Duration::from_secs(1);
/// An input's decoder asks for a keyframe at most this often (a loss burst asks many times).
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// An encoder makes a forced keyframe at most this often, however many subscribers ask.
const FORCED_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);
const MTU: u32 = 1200;
/// Between a live branch and the compositor: a picture or two, the oldest dropped when late.
const QUEUE: &str = "queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream";

#[derive(Debug, thiserror::Error)]
pub enum CompositeError {
    #[error("video codec {0} cannot be decoded by the video MCU")]
    NoDecoder(&'static str),
    #[error("video codec {0} cannot be encoded by the video MCU")]
    NoEncoder(&'static str),
    #[error("GStreamer element {0} is not installed")]
    MissingElement(&'static str),
    #[error("building the pipeline failed: {0}")]
    Build(String),
    #[error("the pipeline refused to start")]
    Start,
}

/// Which pipeline a video output is served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CanvasKey {
    Composite,
    Transcode(SlotKey),
}

/// A video output as the compositor serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoOutput {
    pub track: TrackKey,
    pub codec: CodecSpec,
    pub canvas: CanvasKey,
}

/// One output's continuous RTP line: sequence numbers and timestamps carry on across pipeline
/// rebuilds, so a subscriber sees one stream.
struct Line {
    out: VideoOutput,
    seq: u64,
    /// The pipeline generation, payloader timestamp and our timestamp of this line's anchor.
    anchor: Option<(u64, u32, u32)>,
    last: Option<(Instant, u32)>,
}

struct InputPipe {
    slot: SlotKey,
    src: gst_app::AppSrc,
    /// Set from GStreamer's thread when the depayloader or decoder asks for a keyframe.
    wants_keyframe: Arc<AtomicBool>,
    last_request: Option<Instant>,
}

struct Encoding {
    codec: Codec,
    encoder: gst::Element,
    sink: gst_app::AppSink,
    last_forced: Option<Instant>,
}

/// What a canvas is built for: its inputs and its output codecs. Another shape needs another
/// pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    inputs: Vec<(SlotKey, Codec)>,
    codecs: Vec<Codec>,
}

struct Canvas {
    key: CanvasKey,
    shape: Shape,
    generation: u64,
    pipeline: gst::Pipeline,
    inputs: Vec<InputPipe>,
    encodings: Vec<Encoding>,
}

impl Drop for Canvas {
    fn drop(&mut self) {
        // Stopping joins the streaming threads (an encode may be under way): not on the
        // room's thread.
        let pipeline = self.pipeline.clone();
        let stopped = std::thread::Builder::new()
            .name("composite-stop".into())
            .spawn(move || pipeline.set_state(gst::State::Null).map(|_| ()));
        if stopped.is_err() {
            let _ = self.pipeline.set_state(gst::State::Null);
        }
    }
}

/// Counters and gauges for the mixer's stats.
#[derive(Debug, Default, Clone, Copy)]
pub struct CompositeStats {
    pub errors: u64,
    pub encoders: u64,
}

pub struct Compositor {
    settings: VideoSettings,
    /// Video inputs by slot, sorted.
    inputs: Vec<(SlotKey, CodecSpec)>,
    lines: Vec<Line>,
    canvases: Vec<Canvas>,
    generation: u64,
    /// Canvases whose pipeline failed, with when it may be rebuilt.
    broken: Vec<(CanvasKey, Instant)>,
    keyframe_requests: Vec<(SlotKey, KeyframeKind)>,
    errors: u64,
    /// Outputs nothing can serve (no encoder for their codec), reported once each.
    unserved: Vec<TrackKey>,
}

impl Compositor {
    pub fn new() -> Compositor {
        Compositor {
            settings: VideoSettings::default(),
            inputs: Vec::new(),
            lines: Vec::new(),
            canvases: Vec::new(),
            generation: 0,
            broken: Vec::new(),
            keyframe_requests: Vec::new(),
            errors: 0,
            unserved: Vec::new(),
        }
    }

    pub fn is_idle(&self) -> bool {
        self.lines.is_empty()
    }

    /// Takes the room's video inputs and outputs; builds, rebuilds or stops pipelines to match.
    pub fn configure(
        &mut self,
        now: Instant,
        inputs: &[(SlotKey, CodecSpec)],
        outputs: &[VideoOutput],
        settings: VideoSettings,
    ) {
        let mut inputs = inputs.to_vec();
        inputs.sort_by_key(|(s, _)| *s);
        self.inputs = inputs;
        let resized = settings != self.settings;
        self.settings = settings;
        self.lines.retain(|l| outputs.iter().any(|o| o.track == l.out.track));
        for o in outputs {
            match self.lines.iter_mut().find(|l| l.out.track == o.track) {
                Some(l) => l.out = o.clone(),
                None => self.lines.push(Line { out: o.clone(), seq: 1, anchor: None, last: None }),
            }
        }
        if resized {
            self.canvases.clear();
        }
        self.reconcile(now);
    }

    /// What each canvas should be: its inputs and its output codecs.
    fn wanted(&self) -> Vec<(CanvasKey, Shape)> {
        let mut keys: Vec<CanvasKey> = self.lines.iter().map(|l| l.out.canvas).collect();
        keys.sort();
        keys.dedup();
        // An input nothing here decodes (AV1) is left out, not allowed to fail the others.
        let decodable = self.inputs.iter().filter(|(_, c)| decoder(c.codec).is_ok()).map(|(s, c)| (*s, c.codec));
        let mut wanted = Vec::with_capacity(keys.len());
        for key in keys {
            let inputs: Vec<(SlotKey, Codec)> = match key {
                CanvasKey::Composite => decodable.clone().take(MAX_TILES).collect(),
                CanvasKey::Transcode(slot) => decodable.clone().filter(|(s, _)| *s == slot).collect(),
            };
            let mut codecs: Vec<Codec> =
                self.lines.iter().filter(|l| l.out.canvas == key).map(|l| l.out.codec.codec).collect();
            codecs.sort_by_key(|c| c.as_str());
            codecs.dedup();
            if !inputs.is_empty() {
                wanted.push((key, Shape { inputs, codecs }));
            }
        }
        wanted
    }

    fn reconcile(&mut self, now: Instant) {
        let wanted = self.wanted();
        self.canvases.retain(|c| wanted.iter().any(|(k, shape)| *k == c.key && *shape == c.shape));
        self.broken.retain(|(_, until)| *until > now);
        for (key, shape) in wanted {
            if self.canvases.iter().any(|c| c.key == key) || self.broken.iter().any(|(k, _)| *k == key) {
                continue;
            }
            self.generation += 1;
            let specs: Vec<(SlotKey, CodecSpec)> =
                self.inputs.iter().filter(|(s, _)| shape.inputs.iter().any(|(i, _)| i == s)).cloned().collect();
            match build(key, shape, self.generation, &specs, &self.settings) {
                Ok(canvas) => {
                    // Fresh decoders: each input's publisher is asked for a keyframe.
                    for input in &canvas.inputs {
                        self.keyframe_requests.push((input.slot, KeyframeKind::Pli));
                    }
                    for l in self.lines.iter().filter(|l| l.out.canvas == key) {
                        if !canvas.encodings.iter().any(|e| e.codec == l.out.codec.codec)
                            && !self.unserved.contains(&l.out.track)
                        {
                            tracing::warn!(codec = l.out.codec.codec.as_str(), "no video encoder for this output");
                            self.unserved.push(l.out.track);
                            self.errors += 1;
                        }
                    }
                    self.canvases.push(canvas);
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?key, "video MCU pipeline not built");
                    self.errors += 1;
                    self.broken.push((key, now + REBUILD_BACKOFF));
                }
            }
        }
    }

    /// Hands one RTP packet of input `slot` to every canvas that shows it.
    pub fn write(&mut self, slot: SlotKey, meta: &RtpMeta, payload: &[u8]) -> bool {
        if !self.inputs.iter().any(|(s, _)| *s == slot) {
            return false;
        }
        for input in self.canvases.iter().flat_map(|c| c.inputs.iter()).filter(|i| i.slot == slot) {
            let buffer = rtp_buffer(slot, meta, payload);
            // Flushing (the pipeline is starting or stopping) or a full queue: the packet is lost
            // as a network would lose it, and the depayloader asks for a keyframe.
            let _ = input.src.push_buffer(buffer);
        }
        true
    }

    /// Drains what the pipelines produced since the last call into `emit`, watches their buses
    /// and rebuilds those that failed.
    pub fn drain(&mut self, now: Instant, mut emit: impl FnMut(TrackKey, &RtpMeta, &[u8])) {
        let mut failed = Vec::new();
        for canvas in &mut self.canvases {
            // Every message is taken, so none piles up on the bus.
            while let Some(msg) = canvas.pipeline.bus().and_then(|b| b.pop()) {
                match msg.view() {
                    gst::MessageView::Error(e) => {
                        tracing::warn!(error = %e.error(), debug = ?e.debug(), key = ?canvas.key, "video MCU pipeline failed");
                        failed.push(canvas.key);
                    }
                    // A decoder's latency is known once it has caps; the compositor waits for
                    // its inputs by the pipeline's latency.
                    gst::MessageView::Latency(_) => {
                        let _ = canvas.pipeline.recalculate_latency();
                    }
                    _ => {}
                }
            }
            for input in &mut canvas.inputs {
                if input.wants_keyframe.swap(false, Ordering::Relaxed)
                    && input.last_request.is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL)
                {
                    input.last_request = Some(now);
                    self.keyframe_requests.push((input.slot, KeyframeKind::Pli));
                }
            }
            for enc in &canvas.encodings {
                while let Some(sample) = enc.sink.try_pull_sample(gst::ClockTime::ZERO) {
                    let Some(buffer) = sample.buffer() else { continue };
                    let Ok(map) = buffer.map_readable() else { continue };
                    let Ok(rtp) = RtpHeader::parse(&map) else { continue };
                    let payload = &map[rtp.header_len..rtp.payload_end];
                    for line in
                        self.lines.iter_mut().filter(|l| l.out.canvas == canvas.key && l.out.codec.codec == enc.codec)
                    {
                        let meta = line.next(now, canvas.generation, &rtp);
                        emit(line.out.track, &meta, payload);
                    }
                }
            }
        }
        if !failed.is_empty() {
            self.errors += failed.len() as u64;
            self.canvases.retain(|c| !failed.contains(&c.key));
            self.broken.extend(failed.into_iter().map(|k| (k, now + REBUILD_BACKOFF)));
        }
        if !self.broken.is_empty() && self.broken.iter().any(|(_, until)| *until <= now) {
            self.reconcile(now);
        }
    }

    /// A subscriber of `track` lost its picture: the encoder it reads makes a keyframe.
    pub fn force_keyframe(&mut self, now: Instant, track: TrackKey) {
        let Some(line) = self.lines.iter().find(|l| l.out.track == track) else { return };
        let (key, codec) = (line.out.canvas, line.out.codec.codec);
        let Some(canvas) = self.canvases.iter_mut().find(|c| c.key == key) else { return };
        let Some(enc) = canvas.encodings.iter_mut().find(|e| e.codec == codec) else { return };
        if enc.last_forced.is_some_and(|t| now.saturating_duration_since(t) < FORCED_KEYFRAME_INTERVAL) {
            return;
        }
        enc.last_forced = Some(now);
        let event = gst::event::CustomUpstream::new(
            gst::Structure::builder("GstForceKeyUnit").field("all-headers", true).build(),
        );
        enc.encoder.send_event(event);
    }

    pub fn take_keyframe_requests(&mut self) -> std::vec::Drain<'_, (SlotKey, KeyframeKind)> {
        self.keyframe_requests.drain(..)
    }

    pub fn take_stats(&mut self) -> CompositeStats {
        CompositeStats {
            errors: std::mem::take(&mut self.errors),
            encoders: self.canvases.iter().map(|c| c.encodings.len() as u64).sum(),
        }
    }
}

impl Default for Compositor {
    fn default() -> Compositor {
        Compositor::new()
    }
}

impl Line {
    fn next(&mut self, now: Instant, generation: u64, rtp: &RtpHeader) -> RtpMeta {
        let (base_pay, base_out) = match self.anchor {
            Some((g, pay, out)) if g == generation => (pay, out),
            _ => {
                // A new pipeline: carry the line on from where it stopped, by wall-clock time.
                let out = match self.last {
                    Some((at, ts)) => {
                        let elapsed = now.saturating_duration_since(at).as_micros() as u64 * 90 / 1000;
                        ts.wrapping_add(elapsed.max(1) as u32)
                    }
                    None => 0,
                };
                self.anchor = Some((generation, rtp.timestamp, out));
                (rtp.timestamp, out)
            }
        };
        let timestamp = base_out.wrapping_add(rtp.timestamp.wrapping_sub(base_pay));
        self.last = Some((now, timestamp));
        let meta = RtpMeta {
            pt: self.out.codec.pt,
            seq: SeqNo(self.seq),
            timestamp,
            marker: rtp.marker,
            ssrc: Ssrc(0),
            audio_level: None,
        };
        self.seq += 1;
        meta
    }
}

/// The room hands over the payload and the header fields; the depayloaders want a packet.
fn rtp_buffer(slot: SlotKey, meta: &RtpMeta, payload: &[u8]) -> gst::Buffer {
    let mut packet = Vec::with_capacity(12 + payload.len());
    let ssrc = 0x5b00_0000 | u32::from(slot.0);
    write_packet(&mut packet, meta.marker, meta.pt.0, meta.seq.wire(), meta.timestamp, ssrc, payload);
    gst::Buffer::from_mut_slice(packet)
}

/// Depayloader and decoder for an input codec.
fn decoder(codec: Codec) -> Result<(&'static str, &'static str, &'static str), CompositeError> {
    match codec {
        Codec::Vp8 => Ok(("VP8", "rtpvp8depay", "vp8dec")),
        Codec::Vp9 => Ok(("VP9", "rtpvp9depay", "vp9dec")),
        Codec::H264 => Ok(("H264", "rtph264depay", "avdec_h264")),
        other => Err(CompositeError::NoDecoder(other.as_str())),
    }
}

/// How one output codec is made: encoder, its settings, caps it must produce, payloader.
struct EncoderChain {
    element: &'static str,
    props: String,
    caps: &'static str,
    pay: &'static str,
    pay_props: &'static str,
}

fn encoder(codec: Codec, s: &VideoSettings) -> Result<EncoderChain, CompositeError> {
    let bps = s.kbps * 1000;
    // A keyframe every 3 s at most: a subscriber that lost one recovers without asking.
    let gop = s.fps * 3;
    let vpx = format!(
        "deadline=1 cpu-used=8 end-usage=cbr target-bitrate={bps} keyframe-max-dist={gop} lag-in-frames=0 threads=2"
    );
    match codec {
        Codec::Vp8 => Ok(EncoderChain {
            element: "vp8enc",
            props: vpx,
            caps: "video/x-vp8",
            pay: "rtpvp8pay",
            pay_props: "picture-id-mode=15-bit",
        }),
        Codec::Vp9 => Ok(EncoderChain {
            element: "vp9enc",
            props: vpx,
            caps: "video/x-vp9",
            pay: "rtpvp9pay",
            pay_props: "picture-id-mode=15-bit",
        }),
        Codec::H264 => Ok(EncoderChain {
            element: "x264enc",
            props: format!("tune=zerolatency speed-preset=ultrafast bitrate={} key-int-max={gop} threads=2", s.kbps),
            // What WebRTC peers decode everywhere (profile-level-id 42e0..).
            caps: "video/x-h264,profile=constrained-baseline",
            pay: "rtph264pay",
            pay_props: "config-interval=-1 aggregate-mode=zero-latency",
        }),
        other => Err(CompositeError::NoEncoder(other.as_str())),
    }
}

fn require(elements: &[&'static str]) -> Result<(), CompositeError> {
    match elements.iter().find(|e| gst::ElementFactory::find(e).is_none()) {
        Some(missing) => Err(CompositeError::MissingElement(missing)),
        None => Ok(()),
    }
}

/// The grid cell of tile `i` of `n`: columns first, as many rows as it takes.
pub fn tile(i: usize, n: usize, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let cols = (1..).find(|c| c * c >= n).unwrap_or(1);
    let rows = n.div_ceil(cols).max(1);
    let (w, h) = (width / cols as u32, height / rows as u32);
    ((i % cols) as u32 * w, (i / cols) as u32 * h, w, h)
}

fn build(
    key: CanvasKey,
    shape: Shape,
    generation: u64,
    inputs: &[(SlotKey, CodecSpec)],
    s: &VideoSettings,
) -> Result<Canvas, CompositeError> {
    let codecs = &shape.codecs;
    let mut desc = String::new();
    let mut encodings = Vec::new();
    for codec in codecs {
        match encoder(*codec, s).and_then(|chain| require(&[chain.element, chain.pay]).map(|()| chain)) {
            Ok(chain) => encodings.push((*codec, chain)),
            // Its outputs get nothing; the others still do.
            Err(e) => tracing::warn!(error = %e, "video output codec not served"),
        }
    }
    if encodings.is_empty() {
        return Err(CompositeError::NoEncoder(codecs.first().map(|c| c.as_str()).unwrap_or("none")));
    }
    let composite = key == CanvasKey::Composite;
    let raw = format!("video/x-raw,format=I420,width={},height={},framerate={}/1", s.width, s.height, s.fps);
    if composite {
        require(&["compositor", "videotestsrc"])?;
        desc.push_str("compositor name=canvas background=black sink_0::zorder=0");
        for i in 0..inputs.len() {
            let (x, y, w, h) = tile(i, inputs.len(), s.width, s.height);
            let pad = i + 1;
            desc.push_str(&format!(
                " sink_{pad}::xpos={x} sink_{pad}::ypos={y} sink_{pad}::width={w} sink_{pad}::height={h} \
                 sink_{pad}::zorder=1 sink_{pad}::sizing-policy=keep-aspect-ratio"
            ));
        }
        desc.push_str(&format!(" ! {raw} ! tee name=out\n"));
        // The queues give the live branches a maximum latency. Without them the aggregator
        // cannot configure its latency (max 0 < min one frame), stops timing out, and waits for
        // every input: one publisher whose video never comes stalls the whole picture.
        desc.push_str(&format!("videotestsrc is-live=true pattern=black ! {raw} ! {QUEUE} ! canvas.sink_0\n"));
    }
    let mut names = Vec::new();
    for (i, (slot, spec)) in inputs.iter().enumerate() {
        let (encoding, depay, dec) = decoder(spec.codec)?;
        require(&[depay, dec])?;
        let name = format!("in{}", slot.0);
        let caps =
            format!("application/x-rtp,media=video,clock-rate=90000,encoding-name={encoding},payload={}", spec.pt.0);
        let sink =
            if composite { format!("{QUEUE} ! canvas.sink_{}", i + 1) } else { "videoconvert ! tee name=out".into() };
        desc.push_str(&format!(
            "appsrc name={name} is-live=true do-timestamp=true format=time leaky-type=downstream \
             max-bytes=4000000 caps=\"{caps}\" ! {depay} request-keyframe=true wait-for-keyframe=true ! \
             {dec} max-errors=-1 ! {sink}\n"
        ));
        names.push((*slot, name));
    }
    for (codec, e) in &encodings {
        let c = codec.as_str();
        // A leaky queue: a slow encoder skips frames rather than delay the picture.
        desc.push_str(&format!(
            "out. ! queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! \
             {} name=enc_{c} {} ! {} ! {} mtu={MTU} {} ! appsink name=sink_{c} sync=false max-buffers=500 drop=true\n",
            e.element, e.props, e.caps, e.pay, e.pay_props
        ));
    }
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| CompositeError::Build(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| CompositeError::Build("not a pipeline".into()))?;
    let by_name = |n: &str| pipeline.by_name(n).ok_or_else(|| CompositeError::Build(format!("no element {n}")));
    let mut input_pipes = Vec::new();
    for (slot, name) in names {
        let src = by_name(&name)?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| CompositeError::Build(format!("{name} is not an appsrc")))?;
        let wants_keyframe = Arc::new(AtomicBool::new(false));
        if let Some(pad) = src.static_pad("src") {
            let flag = wants_keyframe.clone();
            pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(ev)) = &info.data {
                    if ev.structure().is_some_and(|s| s.name() == "GstForceKeyUnit") {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        input_pipes.push(InputPipe { slot, src, wants_keyframe, last_request: None });
    }
    let mut encs = Vec::new();
    for (codec, _) in &encodings {
        let c = codec.as_str();
        let sink = by_name(&format!("sink_{c}"))?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| CompositeError::Build(format!("sink_{c} is not an appsink")))?;
        encs.push(Encoding { codec: *codec, encoder: by_name(&format!("enc_{c}"))?, sink, last_forced: None });
    }
    let canvas = Canvas { key, shape, generation, pipeline, inputs: input_pipes, encodings: encs };
    canvas.pipeline.set_state(gst::State::Playing).map_err(|_| CompositeError::Start)?;
    Ok(canvas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_make_a_grid() {
        assert_eq!(tile(0, 1, 640, 360), (0, 0, 640, 360));
        assert_eq!(tile(1, 2, 640, 360), (320, 0, 320, 360));
        assert_eq!(tile(2, 3, 640, 360), (0, 180, 320, 180));
        assert_eq!(tile(4, 5, 640, 360), (213, 180, 213, 180));
        assert_eq!(tile(15, 16, 640, 360), (480, 270, 160, 90));
    }

    #[test]
    fn an_input_nothing_decodes_is_left_out_of_the_composite() {
        gst::init().unwrap();
        let spec = |codec: Codec| CodecSpec {
            codec,
            pt: switchboard_driver::Pt(96),
            clock_rate: 90_000,
            channels: 1,
            fmtp: String::new(),
        };
        let mut c = Compositor::new();
        let inputs = [(SlotKey(1), spec(Codec::Av1)), (SlotKey(2), spec(Codec::Vp8))];
        let out = VideoOutput { track: TrackKey(9), codec: spec(Codec::Vp8), canvas: CanvasKey::Composite };
        c.configure(Instant::now(), &inputs, &[out], VideoSettings::default());
        assert_eq!(c.canvases.len(), 1, "the VP8 input still gets its composite");
        assert_eq!(c.canvases[0].shape.inputs, [(SlotKey(2), Codec::Vp8)]);
        let stats = c.take_stats();
        assert_eq!((stats.errors, stats.encoders), (0, 1));
    }
}
