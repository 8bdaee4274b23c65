//! One written output of an egress: the GStreamer chain from the streams `webrtcbin` hands over
//! to a file, and the counters read from it (queue level, drops, bytes, latency).
//!
//! A per-track file is one chain per incoming stream, built when the stream arrives: depayload,
//! parse, mux, `filesink`, with no decode and no encode. A composite is one muxer fed by two
//! chains, the room's audio mix and its video composite. Each chain starts with a leaky queue,
//! so a slow disk drops the oldest buffers rather than back-pressure `webrtcbin`.

use crate::EgressError;
use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Buffers a chain's queue holds before it drops the oldest: about 4 s of 20 ms audio.
const QUEUE_BUFFERS: u32 = 200;

/// What a file is written as. Per track, the container follows the codec (Opus in Ogg, VP8 in
/// WebM, H.264 in fragmented MP4, G.711 in WAV); a composite is MP4 (H.264 + AAC) or WebM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    Ogg,
    Webm,
    Mp4,
    Wav,
    /// FLV pushed to an RTMP server (H.264 + AAC), never a file.
    Flv,
    /// HLS: MPEG-TS segments (H.264 + AAC) and a playlist, by `hlssink2`.
    Hls,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Container::Ogg => "ogg",
            Container::Webm => "webm",
            Container::Mp4 => "mp4",
            Container::Wav => "wav",
            Container::Flv => "flv",
            Container::Hls => "m3u8",
        }
    }

    /// The container, depayloader and parser for one forwarded stream, by RTP encoding name.
    pub(crate) fn for_track(encoding: &str) -> Option<(Container, &'static str)> {
        Some(match encoding.to_ascii_uppercase().as_str() {
            "OPUS" => (Container::Ogg, "rtpopusdepay ! opusparse ! oggmux"),
            "VP8" => (Container::Webm, "rtpvp8depay ! webmmux"),
            "H264" => (Container::Mp4, "rtph264depay ! h264parse ! mp4mux fragment-duration=1000"),
            "PCMU" => (Container::Wav, "rtppcmudepay ! wavenc"),
            "PCMA" => (Container::Wav, "rtppcmadepay ! wavenc"),
            _ => return None,
        })
    }
}

/// One output file as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputStats {
    pub path: String,
    /// The codecs written, e.g. `opus`, or `h264+aac` for a composite.
    pub codec: String,
    pub container: Container,
    pub bytes_written: u64,
    /// Buffers the chains' queues took in (RTP packets).
    pub buffers_in: u64,
    /// Buffers a full queue dropped (its oldest), because the file could not keep up.
    pub dropped_buffers: u64,
    /// Buffers waiting in the chains' queues now, and how many they hold at most.
    pub queue_level: u32,
    pub queue_capacity: u32,
    /// From the room to the output: the pipeline's running time when the last buffer reached
    /// the sink, less that buffer's timestamp (which `webrtcbin`'s jitter buffer sets from the
    /// packet's arrival).
    pub latency_ms: Option<f64>,
    /// Set once the file has been finalised (its muxer saw the end of stream).
    pub finished: bool,
}

#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    buffers_in: AtomicU64,
    dropped: AtomicU64,
    /// Nanoseconds plus one, so 0 means "no sample yet".
    latency_ns: AtomicU64,
    /// The first buffer's timestamp plus one (0: none yet). Every timestamp the chains carry is
    /// moved back by it, so a file starts at 0 however long after the pipeline its stream came.
    base: AtomicU64,
    /// Ends of stream the sink has seen: one per input pad it has.
    eos: AtomicU32,
}

/// One file and the chains that feed it.
pub(crate) struct Branch {
    path: PathBuf,
    codec: String,
    container: Container,
    /// The first element of each chain: EOS goes in here when the egress stops.
    inputs: Vec<gst::Pad>,
    queues: Vec<gst::Element>,
    counters: Arc<Counters>,
    /// How many ends of stream the sink sees when the file is done (HLS: one per stream).
    sink_pads: u32,
}

impl Branch {
    /// A sink with its counters (bytes and latency at its sink pad, end of stream seen): a
    /// `filesink` writing `location`, or with `rtmp` an `rtmp2sink` pushing to that URL.
    fn sink(location: &str, rtmp: bool) -> Result<(gst::Element, Arc<Counters>), EgressError> {
        let sink = make(if rtmp { "rtmp2sink" } else { "filesink" })?;
        sink.set_property("location", location);
        // Live input: write as it comes, never wait for a clock or a preroll.
        sink.set_property("sync", false);
        sink.set_property("async", false);
        let counters = Arc::new(Counters::default());
        let pad = sink.static_pad("sink").ok_or_else(|| EgressError::Pipeline("the sink has no sink pad".into()))?;
        count_into(&pad, &sink, &counters);
        Ok((sink, counters))
    }

    /// A per-track file for one incoming stream: `queue ! depay ! [parse !] mux ! filesink`,
    /// added to `pipeline`, playing, and linked to `src`.
    pub(crate) fn track(
        pipeline: &gst::Pipeline,
        src: &gst::Pad,
        encoding: &str,
        path: PathBuf,
    ) -> Result<Branch, EgressError> {
        let (container, chain) = Container::for_track(encoding)
            .ok_or_else(|| EgressError::Pipeline(format!("no recording format for {encoding}")))?;
        let bin = gst::parse::bin_from_description(chain, true).map_err(|e| EgressError::Pipeline(e.to_string()))?;
        let queue = leaky_queue()?;
        let (sink, counters) = Self::sink(&path.to_string_lossy(), false)?;
        pipeline.add_many([&queue, bin.upcast_ref(), &sink]).map_err(pipe_err)?;
        gst::Element::link_many([&queue, bin.upcast_ref(), &sink]).map_err(pipe_err)?;
        let mut b = Branch {
            path,
            codec: encoding.to_ascii_lowercase(),
            container,
            inputs: Vec::new(),
            queues: Vec::new(),
            counters,
            sink_pads: 1,
        };
        b.attach(&queue)?;
        for e in [&sink, bin.upcast_ref(), &queue] {
            e.sync_state_with_parent().map_err(pipe_err)?;
        }
        link_input(src, &queue)?;
        Ok(b)
    }

    /// A composite: one muxer whose audio and video request pads are taken now (a muxer takes
    /// no new pad once it runs); the chains that feed them come with the streams. `path` is the
    /// file, or for FLV what the API shows of the RTMP URL `rtmp` (no stream key).
    pub(crate) fn composite(
        pipeline: &gst::Pipeline,
        container: Container,
        path: PathBuf,
        rtmp: Option<&str>,
    ) -> Result<Composite, EgressError> {
        let mux = match container {
            Container::Flv => {
                let m = make("flvmux")?;
                m.set_property("streamable", true);
                m
            }
            Container::Mp4 => {
                let m = make("mp4mux")?;
                // Fragmented: a crash leaves every finished fragment playable.
                m.set_property("fragment-duration", 1000u32);
                m
            }
            _ => make("webmmux")?,
        };
        if container == Container::Hls {
            return Self::hls(pipeline, path);
        }
        let (sink, counters) = match rtmp {
            Some(url) => Self::sink(url, true)?,
            None => Self::sink(&path.to_string_lossy(), false)?,
        };
        pipeline.add_many([&mux, &sink]).map_err(pipe_err)?;
        mux.link(&sink).map_err(pipe_err)?;
        // flvmux names its pads without a number.
        let (a, v) = if container == Container::Flv { ("audio", "video") } else { ("audio_%u", "video_%u") };
        let audio = mux.request_pad_simple(a).ok_or_else(|| EgressError::Pipeline("muxer gave no audio pad".into()))?;
        let video = mux.request_pad_simple(v).ok_or_else(|| EgressError::Pipeline("muxer gave no video pad".into()))?;
        let codec = if container == Container::Webm { "vp8+opus" } else { "h264+aac" };
        let branch = Branch {
            path,
            codec: codec.into(),
            container,
            inputs: Vec::new(),
            queues: Vec::new(),
            counters,
            sink_pads: 1,
        };
        Ok(Composite { branch, audio: Some(audio), video: Some(video), gate: Arc::default() })
    }

    /// HLS: `hlssink2` muxes to MPEG-TS segments of about 2 s beside the playlist `path`
    /// (`stem-00000.ts`, …), cutting at keyframes it asks for. It is the muxer and the sink in
    /// one, so what it is handed is counted as written.
    fn hls(pipeline: &gst::Pipeline, path: PathBuf) -> Result<Composite, EgressError> {
        let sink = make("hlssink2")?;
        let stem = path.with_extension("");
        sink.set_property("location", format!("{}-%05d.ts", stem.to_string_lossy()));
        sink.set_property("playlist-location", path.to_string_lossy().as_ref());
        sink.set_property("target-duration", 2u32);
        // Keep every segment, and list them all: a recording, not a sliding live window.
        sink.set_property("max-files", 0u32);
        sink.set_property("playlist-length", 0u32);
        pipeline.add(&sink).map_err(pipe_err)?;
        let counters = Arc::new(Counters::default());
        let audio = sink
            .request_pad_simple("audio")
            .ok_or_else(|| EgressError::Pipeline("hlssink2 gave no audio pad".into()))?;
        let video = sink
            .request_pad_simple("video")
            .ok_or_else(|| EgressError::Pipeline("hlssink2 gave no video pad".into()))?;
        count_into(&audio, &sink, &counters);
        count_into(&video, &sink, &counters);
        let branch = Branch {
            path,
            codec: "h264+aac".into(),
            container: Container::Hls,
            inputs: Vec::new(),
            queues: Vec::new(),
            counters,
            sink_pads: 2,
        };
        Ok(Composite { branch, audio: Some(audio), video: Some(video), gate: Arc::default() })
    }

    fn attach(&mut self, queue: &gst::Element) -> Result<(), EgressError> {
        let c = self.counters.clone();
        queue.connect("overrun", false, move |_| {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            None
        });
        let c = self.counters.clone();
        let pad = queue.static_pad("sink").ok_or_else(|| EgressError::Pipeline("queue has no sink pad".into()))?;
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            c.buffers_in.fetch_add(1, Ordering::Relaxed);
            if let Some(gst::PadProbeData::Buffer(b)) = info.data.as_mut() {
                rebase(&c.base, b);
            }
            gst::PadProbeReturn::Ok
        });
        self.inputs.push(pad);
        self.queues.push(queue.clone());
        Ok(())
    }

    /// Ends the file: an end of stream into each chain, which the muxer turns into its trailer.
    pub(crate) fn finish(&self) {
        for p in &self.inputs {
            p.send_event(gst::event::Eos::new());
        }
    }

    pub(crate) fn finished(&self) -> bool {
        if self.container == Container::Hls {
            // hlssink2 takes the end of stream at once, and only then closes its last segment
            // and ends the playlist: that end is what says it is done.
            return std::fs::read_to_string(&self.path).is_ok_and(|t| t.contains("#EXT-X-ENDLIST"));
        }
        self.counters.eos.load(Ordering::Acquire) >= self.sink_pads
    }

    pub(crate) fn stats(&self) -> OutputStats {
        let c = &self.counters;
        let level: u32 = self.queues.iter().map(|q| q.property::<u32>("current-level-buffers")).sum();
        let lat = c.latency_ns.load(Ordering::Relaxed);
        OutputStats {
            path: self.path.to_string_lossy().into_owned(),
            codec: self.codec.clone(),
            container: self.container,
            bytes_written: c.bytes.load(Ordering::Relaxed),
            buffers_in: c.buffers_in.load(Ordering::Relaxed),
            dropped_buffers: c.dropped.load(Ordering::Relaxed),
            queue_level: level,
            queue_capacity: QUEUE_BUFFERS * self.queues.len().max(1) as u32,
            latency_ms: (lat > 0).then(|| (lat - 1) as f64 / 1e6),
            finished: self.finished(),
        }
    }
}

/// A composite file whose chains have not all arrived yet.
pub(crate) struct Composite {
    pub(crate) branch: Branch,
    audio: Option<gst::Pad>,
    video: Option<gst::Pad>,
    /// The first keyframe's timestamp plus one (0: none yet): neither stream reaches the muxer
    /// before it, so the file starts on a picture with its sound.
    gate: Arc<AtomicU64>,
}

impl Composite {
    /// Links an incoming stream to the muxer's pad for its kind: the mix (Opus) is decoded and
    /// encoded to AAC for MP4 and only parsed for WebM; the composite picture is only parsed.
    pub(crate) fn add(
        &mut self,
        pipeline: &gst::Pipeline,
        src: &gst::Pad,
        media: &str,
        encoding: &str,
    ) -> Result<(), EgressError> {
        let h264 = self.branch.container != Container::Webm;
        let (slot, chain) = match (media, encoding.to_ascii_uppercase().as_str(), h264) {
            // FLV's AAC is at 44.1 kHz, the rate its header can name.
            ("audio", "OPUS", true) => (
                &mut self.audio,
                "rtpopusdepay ! opusdec ! audioconvert ! audioresample ! audio/x-raw,rate=44100 ! avenc_aac",
            ),
            ("audio", "OPUS", false) => (&mut self.audio, "rtpopusdepay ! opusparse"),
            ("video", "H264", true) => (&mut self.video, "rtph264depay ! h264parse"),
            ("video", "VP8", false) => (&mut self.video, "rtpvp8depay"),
            _ => return Err(EgressError::Pipeline(format!("a composite cannot take {media} in {encoding}"))),
        };
        let Some(mux_pad) = slot.take() else {
            return Err(EgressError::Pipeline(format!("a second {media} stream for one composite")));
        };
        let bin = gst::parse::bin_from_description(chain, true).map_err(|e| EgressError::Pipeline(e.to_string()))?;
        let queue = leaky_queue()?;
        pipeline.add_many([&queue, bin.upcast_ref()]).map_err(pipe_err)?;
        queue.link(&bin).map_err(pipe_err)?;
        let out = bin.static_pad("src").ok_or_else(|| EgressError::Pipeline("chain has no src pad".into()))?;
        out.link(&mux_pad).map_err(|e| EgressError::Pipeline(format!("link to muxer: {e:?}")))?;
        from_first_keyframe(&out, media == "video", self.gate.clone());
        self.branch.attach(&queue)?;
        for e in [bin.upcast_ref(), &queue] {
            e.sync_state_with_parent().map_err(pipe_err)?;
        }
        link_input(src, &queue)?;
        Ok(())
    }
}

/// Drops what passes `pad` before the composite's first keyframe: on the video chain the
/// frames before it (nothing can decode them), on the audio chain the sound from before it.
/// A muxer that starts on frames it cannot show writes a first fragment (an HLS segment) with no
/// picture, and `splitmuxsink` fails on sound that starts before the picture's first keyframe.
fn from_first_keyframe(pad: &gst::Pad, video: bool, gate: Arc<AtomicU64>) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(gst::PadProbeData::Buffer(b)) = &info.data else { return gst::PadProbeReturn::Ok };
        let open = gate.load(Ordering::Acquire);
        let pts = b.pts().map_or(0, gst::ClockTime::nseconds);
        if video {
            if open == 0 {
                if b.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                    return gst::PadProbeReturn::Drop;
                }
                gate.store(pts + 1, Ordering::Release);
            }
            return gst::PadProbeReturn::Ok;
        }
        if open == 0 || pts + 1 < open {
            return gst::PadProbeReturn::Drop;
        }
        gst::PadProbeReturn::Ok
    });
}

/// Counts what reaches `pad` of `sink`: bytes, the latency from the room, ends of stream.
fn count_into(pad: &gst::Pad, sink: &gst::Element, counters: &Arc<Counters>) {
    let c = counters.clone();
    let weak = sink.downgrade();
    pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        match &info.data {
            Some(gst::PadProbeData::Buffer(b)) => {
                c.bytes.fetch_add(b.size() as u64, Ordering::Relaxed);
                let now = weak.upgrade().and_then(|s| s.current_running_time());
                let base = c.base.load(Ordering::Acquire).saturating_sub(1);
                if let (Some(now), Some(pts)) = (now, b.pts()) {
                    let lat = now.nseconds().saturating_sub(pts.nseconds() + base);
                    c.latency_ns.store(lat + 1, Ordering::Relaxed);
                }
            }
            Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos => {
                c.eos.fetch_add(1, Ordering::AcqRel);
            }
            _ => {}
        }
        gst::PadProbeReturn::Ok
    });
}

/// Links a stream to its chain, and asks for a keyframe: a video chain can start its file only
/// at one, and the one the bridge asked for when it routed the stream here went out before the
/// connection was up. The request goes upstream to `webrtcbin`, which sends it as a PLI.
fn link_input(src: &gst::Pad, queue: &gst::Element) -> Result<(), EgressError> {
    let sink = queue.static_pad("sink").ok_or_else(|| EgressError::Pipeline("queue has no sink pad".into()))?;
    src.link(&sink).map_err(|e| EgressError::Pipeline(format!("link: {e:?}")))?;
    let key = gst::Structure::builder("GstForceKeyUnit").field("all-headers", true).build();
    sink.push_event(gst::event::CustomUpstream::new(key));
    Ok(())
}

/// Moves a buffer's timestamps back by the branch's first one (taken from this buffer if it is
/// the first); the running time the latency is measured against moves with them.
fn rebase(base: &AtomicU64, buffer: &mut gst::Buffer) {
    let Some(pts) = buffer.pts() else { return };
    let first = match base.compare_exchange(0, pts.nseconds() + 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => pts.nseconds(),
        Err(b) => b - 1,
    };
    let b = buffer.make_mut();
    b.set_pts(gst::ClockTime::from_nseconds(pts.nseconds().saturating_sub(first)));
    if let Some(dts) = b.dts() {
        b.set_dts(gst::ClockTime::from_nseconds(dts.nseconds().saturating_sub(first)));
    }
}

fn leaky_queue() -> Result<gst::Element, EgressError> {
    let q = make("queue")?;
    q.set_property("max-size-buffers", QUEUE_BUFFERS);
    q.set_property("max-size-bytes", 0u32);
    q.set_property("max-size-time", 0u64);
    q.set_property_from_str("leaky", "downstream");
    Ok(q)
}

pub(crate) fn make(name: &'static str) -> Result<gst::Element, EgressError> {
    gst::ElementFactory::make(name).build().map_err(|_| EgressError::MissingElement(name))
}

fn pipe_err(e: impl std::fmt::Display) -> EgressError {
    EgressError::Pipeline(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_forwarded_codec_has_its_container_and_nothing_else_does() {
        assert_eq!(Container::for_track("opus").map(|c| c.0), Some(Container::Ogg));
        assert_eq!(Container::for_track("VP8").map(|c| c.0), Some(Container::Webm));
        assert_eq!(Container::for_track("H264").map(|c| c.0), Some(Container::Mp4));
        assert_eq!(Container::for_track("PCMU").map(|c| c.0), Some(Container::Wav));
        assert_eq!(Container::for_track("PCMA").map(|c| c.0), Some(Container::Wav));
        assert_eq!(Container::for_track("G722"), None);
        assert_eq!(Container::for_track("VP9"), None);
    }
}
