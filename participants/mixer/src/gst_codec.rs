//! G.722 through GStreamer elements (`avdec_g722`, `avenc_g722`), driven synchronously from the
//! caller's thread.
//!
//! Opus used to go through `opusdec`/`opusenc` here too. It now has its own module,
//! `opus_codec`, on libopus' plain API: those elements always use libopus' multistream API,
//! which in libopus 1.3.1 (Debian 12) repeats CPU feature detection, i.e. the `cpuid`
//! instruction, on every call, and in a VM, where each `cpuid` traps to the hypervisor, that
//! dominated the mixer's cost. G.722 (libavcodec) has no such overhead, and stays here.
//!
//! Each codec is one bare element (no pipeline, no bin): we own a source pad linked to its sink
//! pad and a sink pad linked from its source pad, the way `GstHarness` drives elements in tests.
//! `Pad::push` runs the element's chain function in our thread, and every element used here
//! finishes a frame inside that call, so the output is sitting in our sink pad's store when
//! `push` returns: no streaming thread, no queue, no added frame of latency. An appsrc/appsink
//! pipeline per stream would cost a thread each and a hand-off per frame.
//!
//! Formats are forced at the pads instead of with converter elements: `avdec_g722` produces
//! 16 kHz mono S16 by nature, and `avenc_g722` accepts it as is.
//!
//! Neither direction adds buffering: a payload comes out of each `encode`, and PCM out of each
//! `decode`. The codec's own algorithmic delay remains (under 2 ms, encoder plus decoder).
//!
//! Elements that are not in a bin have no bus, so each gets a private one whose sync handler
//! keeps only the last error or warning text (for error reports) and drops every message;
//! nothing accumulates.

use std::sync::{Arc, Mutex, OnceLock};

use crate::conceal::Concealer;
use gstreamer as gst;
use gstreamer::prelude::*;
use switchboard_driver::Codec;

/// The mixer's internal rate.
const RATE: u32 = 16_000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CodecError {
    #[error("GStreamer failed to initialise: {0}")]
    Init(String),
    #[error("codec {0:?} has no GStreamer stage")]
    Unsupported(Codec),
    #[error("GStreamer element {0} is not installed")]
    MissingElement(&'static str),
    #[error("{codec:?} cannot be packetised at {ptime_ms} ms")]
    Ptime { codec: Codec, ptime_ms: u32 },
    #[error("{element}: {what}")]
    Setup { element: &'static str, what: String },
    #[error("{element} failed ({flow:?}){detail}")]
    Flow { element: &'static str, flow: gst::FlowError, detail: String },
    #[error("{element}: no buffer for {len} bytes")]
    Buffer { element: &'static str, len: usize },
    #[error("{element} output unreadable")]
    Map { element: &'static str },
    #[error("frame of {got} samples where the encoder takes {want}")]
    FrameSize { got: usize, want: usize },
    #[error("{element} produced {packets} packets for one frame")]
    Packets { element: &'static str, packets: usize },
}

/// Initialises GStreamer once; later calls return the first outcome.
pub fn init() -> Result<(), CodecError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| gst::init().map_err(|e| e.to_string())).clone().map_err(CodecError::Init)
}

fn raw_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "S16LE")
        .field("layout", "interleaved")
        .field("rate", RATE as i32)
        .field("channels", 1i32)
        .build()
}

fn samples_to_time(samples: usize) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(samples as u64 * 1_000_000_000 / RATE as u64)
}

/// What our sink pad received during one push.
#[derive(Default)]
struct Store {
    buffers: Vec<gst::Buffer>,
    /// Last error or warning the element posted, for error reports.
    message: Option<String>,
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    // The store holds plain data that stays consistent even if a holder panicked.
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// One element between our two pads.
struct Stage {
    name: &'static str,
    element: gst::Element,
    src: gst::Pad,
    sink: gst::Pad,
    store: Arc<Mutex<Store>>,
    /// Running time of the next buffer we push; elements want a monotonic timeline.
    pts: gst::ClockTime,
}

impl Stage {
    fn new(
        name: &'static str,
        element: gst::Element,
        in_caps: &gst::Caps,
        out_template: &gst::Caps,
    ) -> Result<Stage, CodecError> {
        let setup = |what: &str| CodecError::Setup { element: name, what: what.to_string() };
        let store = Arc::new(Mutex::new(Store::default()));

        let bus = gst::Bus::new();
        let bus_store = store.clone();
        bus.set_sync_handler(move |_, msg| {
            let (error, debug) = match msg.view() {
                gst::MessageView::Error(e) => (e.error(), e.debug()),
                gst::MessageView::Warning(w) => (w.error(), w.debug()),
                _ => return gst::BusSyncReply::Drop,
            };
            let text = match debug {
                Some(debug) => format!("{error} ({})", debug.replace('\n', " ")),
                None => error.to_string(),
            };
            lock(&bus_store).message = Some(text);
            gst::BusSyncReply::Drop
        });
        element.set_bus(Some(&bus));

        let src_template = gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, in_caps)
            .map_err(|_| setup("source pad template"))?;
        let sink_template =
            gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, out_template)
                .map_err(|_| setup("sink pad template"))?;
        // The templates are named "src"/"sink", not wildcards, so `build` cannot panic on naming.
        let src = gst::Pad::builder_from_template(&src_template).build();
        let chain_store = store.clone();
        let sink = gst::Pad::builder_from_template(&sink_template)
            .chain_function(move |_, _, buffer| {
                lock(&chain_store).buffers.push(buffer);
                Ok(gst::FlowSuccess::Ok)
            })
            // Caps, segment, tags and gaps downstream of the codec need no action of ours; caps
            // are still checked against the template by the core before they get here.
            .event_function(|_, _, _| true)
            .build();

        let element_sink = element.static_pad("sink").ok_or_else(|| setup("no sink pad"))?;
        let element_src = element.static_pad("src").ok_or_else(|| setup("no src pad"))?;
        src.link(&element_sink).map_err(|e| setup(&format!("linking input: {e:?}")))?;
        element_src.link(&sink).map_err(|e| setup(&format!("linking output: {e:?}")))?;

        // From here on Drop tears down whatever was started.
        let stage = Stage { name, element, src, sink, store, pts: gst::ClockTime::ZERO };
        stage.sink.set_active(true).map_err(|_| setup("activating our sink pad"))?;
        stage.element.set_state(gst::State::Playing).map_err(|_| stage.error(setup("refused to start")))?;
        stage.src.set_active(true).map_err(|_| setup("activating our source pad"))?;

        static STREAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stream_start = gst::event::StreamStart::builder(&format!("switchboard-{name}-{id}"))
            .group_id(gst::GroupId::next())
            .build();
        if !stage.src.push_event(stream_start) {
            return Err(stage.error(setup("rejected stream-start")));
        }
        if !stage.src.push_event(gst::event::Caps::new(in_caps)) {
            return Err(stage.error(setup(&format!("rejected caps {in_caps}"))));
        }
        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
        if !stage.src.push_event(gst::event::Segment::new(&segment)) {
            return Err(stage.error(setup("rejected segment")));
        }
        Ok(stage)
    }

    /// Adds whatever the element posted on its bus to `err`.
    fn error(&self, err: CodecError) -> CodecError {
        let Some(message) = lock(&self.store).message.take() else { return err };
        match err {
            CodecError::Setup { element, what } => CodecError::Setup { element, what: format!("{what}: {message}") },
            CodecError::Flow { element, flow, detail } => {
                CodecError::Flow { element, flow, detail: format!("{detail}: {message}") }
            }
            other => other,
        }
    }

    /// Pushes `data` stamped at the running timeline; the output is in the store on return.
    fn push(&mut self, data: &[u8], duration: Option<gst::ClockTime>) -> Result<(), CodecError> {
        let no_buffer = || CodecError::Buffer { element: self.name, len: data.len() };
        let mut buffer = gst::Buffer::with_size(data.len()).map_err(|_| no_buffer())?;
        {
            // A buffer we have just created has no other owner, so it is writable.
            let b = buffer.get_mut().expect("fresh buffer is uniquely owned");
            b.copy_from_slice(0, data).map_err(|_| no_buffer())?;
            b.set_pts(self.pts);
            b.set_duration(duration);
        }
        match self.src.push(buffer) {
            Ok(_) => Ok(()),
            Err(flow) => Err(self.error(CodecError::Flow { element: self.name, flow, detail: String::new() })),
        }
    }

    /// Hands every output buffer of the last push to `f`, in order, and empties the store.
    fn drain(&self, mut f: impl FnMut(&[u8])) -> Result<usize, CodecError> {
        let mut store = lock(&self.store);
        let count = store.buffers.len();
        let mut result = Ok(count);
        for buffer in store.buffers.drain(..) {
            match buffer.map_readable() {
                Ok(map) => f(map.as_slice()),
                Err(_) => result = Err(CodecError::Map { element: self.name }),
            }
        }
        result
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // Failures here leave nothing to recover: the objects are released either way.
        let _ = self.src.set_active(false);
        let _ = self.element.set_state(gst::State::Null);
        let _ = self.sink.set_active(false);
        if let Some(pad) = self.element.static_pad("sink") {
            let _ = self.src.unlink(&pad);
        }
        if let Some(pad) = self.element.static_pad("src") {
            let _ = pad.unlink(&self.sink);
        }
        self.element.set_bus(None);
    }
}

fn make(factory: &'static str) -> Result<gst::element_factory::ElementBuilder<'static>, CodecError> {
    init()?;
    if gst::ElementFactory::find(factory).is_none() {
        return Err(CodecError::MissingElement(factory));
    }
    Ok(gst::ElementFactory::make(factory))
}

fn build(factory: &'static str, builder: gst::element_factory::ElementBuilder<'_>) -> Result<gst::Element, CodecError> {
    builder.build().map_err(|_| CodecError::MissingElement(factory))
}

/// Decodes one RTP stream to 16 kHz mono.
pub struct Decoder {
    codec: Codec,
    stage: Stage,
    conceal: Concealer,
}

impl Decoder {
    pub fn new(codec: Codec) -> Result<Decoder, CodecError> {
        let (factory, element, caps) = match codec {
            Codec::G722 => {
                let element = build("avdec_g722", make("avdec_g722")?)?;
                // G.722 is 16 kHz audio whatever its RTP clock says.
                let caps = gst::Caps::builder("audio/G722").field("rate", RATE as i32).field("channels", 1i32).build();
                ("avdec_g722", element, caps)
            }
            other => return Err(CodecError::Unsupported(other)),
        };
        let stage = Stage::new(factory, element, &caps, &raw_caps())?;
        Ok(Decoder { codec, stage, conceal: Concealer::new(16_000) })
    }

    /// Appends the 16 kHz PCM of one RTP payload to `out`, or `frame_samples_16k` samples of
    /// concealment for a lost one (`None`). A payload the codec rejects is concealed the same
    /// way rather than failing, so one bad packet costs one frame, not the stream; errors mean
    /// the element itself broke and the decoder should be rebuilt.
    pub fn decode(
        &mut self,
        payload: Option<&[u8]>,
        frame_samples_16k: usize,
        out: &mut Vec<i16>,
    ) -> Result<(), CodecError> {
        let start = out.len();
        // An empty buffer means "conceal" to GStreamer's audio decoders, so treat it as a loss.
        if let Some(data) = payload.filter(|d| !d.is_empty()) {
            self.stage.push(data, None)?;
            self.stage.drain(|bytes| {
                out.extend(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
            })?;
            if out.len() > start {
                self.stage.pts += samples_to_time(out.len() - start);
                self.conceal.good(&mut out[start..]);
                return Ok(());
            }
            let message = lock(&self.stage.store).message.take();
            tracing::debug!(codec = self.codec.as_str(), len = data.len(), ?message, "undecodable payload concealed");
        }
        // G.722 has no concealment of its own, and libavcodec's decoder none either.
        self.conceal.conceal(frame_samples_16k, out);
        self.stage.pts += samples_to_time(frame_samples_16k);
        Ok(())
    }
}

/// Encodes 16 kHz mono PCM into one RTP payload per ptime.
pub struct Encoder {
    stage: Stage,
    frame_samples: usize,
    /// Reused staging area for the little-endian input bytes.
    bytes: Vec<u8>,
}

impl Encoder {
    pub fn new(codec: Codec, ptime_ms: u32) -> Result<Encoder, CodecError> {
        let (factory, element, out_caps) = match codec {
            Codec::G722 => {
                if !(5..=200).contains(&ptime_ms) {
                    return Err(CodecError::Ptime { codec, ptime_ms });
                }
                // libavcodec's G.722 encoder takes its frame length from the context (320 by
                // default); setting it to the ptime makes every push yield exactly one payload.
                let element =
                    build("avenc_g722", make("avenc_g722")?.property("frame-size", (ptime_ms * RATE / 1000) as i32))?;
                ("avenc_g722", element, gst::Caps::builder("audio/G722").build())
            }
            other => return Err(CodecError::Unsupported(other)),
        };
        let stage = Stage::new(factory, element, &raw_caps(), &out_caps)?;
        let frame_samples = (ptime_ms * RATE / 1000) as usize;
        Ok(Encoder { stage, frame_samples, bytes: Vec::with_capacity(frame_samples * 2) })
    }

    /// Samples `encode` takes per call.
    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    /// Replaces `out` with the RTP payload for `pcm`, which must be exactly one ptime of 16 kHz
    /// mono samples.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if pcm.len() != self.frame_samples {
            return Err(CodecError::FrameSize { got: pcm.len(), want: self.frame_samples });
        }
        out.clear();
        self.bytes.clear();
        self.bytes.extend(pcm.iter().flat_map(|s| s.to_le_bytes()));
        let duration = samples_to_time(self.frame_samples);
        self.stage.push(&self.bytes, Some(duration))?;
        self.stage.pts += duration;
        // With the frame length set to the ptime the encoder emits exactly one payload per push;
        // G.722 being sample-based, split output would still concatenate into a valid payload.
        let packets = self.stage.drain(|bytes| out.extend_from_slice(bytes))?;
        if packets == 0 {
            return Err(CodecError::Packets { element: self.stage.name, packets });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;

    test_codec!(G722, "G722", |ptime_ms| Encoder::new(Codec::G722, ptime_ms), Decoder::new(Codec::G722));

    #[test]
    fn g722_round_trip_keeps_the_tone() {
        let _g = serial();
        let (sizes, pcm) = round_trip::<G722>(20, 50);
        // 64 kbit/s: one byte per two 16 kHz samples.
        assert!(sizes.iter().all(|&s| s == 160), "{sizes:?}");
        check_tone(&pcm);
    }

    #[test]
    fn other_ptimes_packetise_accordingly() {
        let _g = serial();
        let (sizes, pcm) = round_trip::<G722>(30, 10);
        assert!(sizes.iter().all(|&s| s == 240), "{sizes:?}");
        assert_eq!(pcm.len(), 10 * 30 * 16);
        assert!(matches!(Encoder::new(Codec::G722, 0), Err(CodecError::Ptime { .. })));
    }

    #[test]
    fn other_codecs_are_refused() {
        assert!(matches!(Decoder::new(Codec::Pcmu), Err(CodecError::Unsupported(Codec::Pcmu))));
        assert!(matches!(Encoder::new(Codec::Vp8, 20), Err(CodecError::Unsupported(Codec::Vp8))));
        // Opus has its own module (`opus_codec`): opusdec/opusenc are not used.
        assert!(matches!(Decoder::new(Codec::Opus), Err(CodecError::Unsupported(Codec::Opus))));
        assert!(matches!(Encoder::new(Codec::Opus, 20), Err(CodecError::Unsupported(Codec::Opus))));
    }

    #[test]
    fn encoder_rejects_partial_frames() {
        let _g = serial();
        let mut enc = Encoder::new(Codec::G722, 20).expect("encoder");
        let mut out = Vec::new();
        assert!(matches!(enc.encode(&[0; 100], &mut out), Err(CodecError::FrameSize { got: 100, want: 320 })));
        // The refusal leaves the encoder usable.
        enc.encode(&[0; 320], &mut out).expect("encode");
        assert_eq!(out.len(), 160);
    }

    #[test]
    fn loss_is_concealed_with_exactly_one_frame() {
        let _g = serial();
        check_loss_concealment::<G722>(&[]);
    }

    #[test]
    fn garbage_is_survived() {
        let _g = serial();
        // G.722 makes two samples per byte.
        check_garbage_survived::<G722>(|payload, samples| samples <= 320usize.max(payload.len() * 2));
    }

    #[test]
    fn long_runs_hold_steady_and_keep_up() {
        let _g = serial();
        check_long_runs::<G722>();
    }

    #[test]
    fn streams_can_be_created_and_dropped_repeatedly() {
        let _g = serial();
        check_create_and_drop::<G722>();
    }

    /// `cargo test -p switchboard-mixer --release -- --ignored --nocapture bench`
    #[test]
    #[ignore]
    fn bench_g722_per_frame_cost() {
        let _g = serial();
        bench_per_frame_cost::<G722>();
    }
}
