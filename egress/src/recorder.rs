//! The egress's subscriber: a `webrtcbin` with receive-only transceivers, its offer and the
//! daemon's answer, and a branch (`branch.rs`) for each stream that arrives.
//!
//! Everything here blocks (promises, ICE gathering, the end of stream), so the daemon calls it
//! from blocking threads, never from a media worker or the async runtime. The pipeline's own
//! streaming threads do the writing.

use crate::branch::{make, Branch, Composite, Container, OutputStats};
use crate::EgressError;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const AUDIO_CODECS: &str =
    "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,encoding-params=(string)2,payload=111;\
     application/x-rtp,media=audio,encoding-name=PCMU,clock-rate=8000,payload=0;\
     application/x-rtp,media=audio,encoding-name=PCMA,clock-rate=8000,payload=8";
const OPUS: &str =
    "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,encoding-params=(string)2,payload=111";
const VP8: &str =
    "application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000,payload=96,rtcp-fb-nack-pli=(boolean)true";
const H264: &str = "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=102,\
     packetization-mode=(string)1,profile-level-id=(string)42e01f,rtcp-fb-nack-pli=(boolean)true";

/// How long ICE gathering may take before the offer is given up.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the egress writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every forwarded stream to its own file, in its own codec.
    Tracks,
    /// The room's audio mix and video composite in one file: MP4 (H.264 + AAC) or WebM.
    Composite(Container),
}

/// One egress's subscriber.
#[derive(Debug, Clone)]
pub struct Spec {
    pub layout: Layout,
    /// Receive-only m-lines to offer: one per track to record (a composite takes one of each).
    pub audio_slots: usize,
    pub video_slots: usize,
    /// Files are `dir/stem-N.ext`; `dir` must exist.
    pub dir: PathBuf,
    pub stem: String,
    /// Addresses ICE gathers on; libnice leaves loopback out unless it is named.
    pub local_ips: Vec<String>,
    /// For `Composite(Flv)`: the RTMP URL pushed to, and what may be shown of it (no stream
    /// key). The URL never leaves this crate: failure reasons have it replaced by `shown`.
    pub rtmp: Option<Rtmp>,
}

#[derive(Clone)]
pub struct Rtmp {
    pub url: String,
    pub shown: String,
}

impl std::fmt::Debug for Rtmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtmp").field("shown", &self.shown).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    tracks: Mutex<Vec<Branch>>,
    composite: Mutex<Option<Composite>>,
    failure: Mutex<Option<String>>,
    streams: AtomicUsize,
    rtmp: Option<Rtmp>,
}

impl Shared {
    fn fail(&self, reason: String) {
        let reason = self.rtmp.as_ref().map_or(reason.clone(), |r| scrub(&reason, r));
        let mut f = lock(&self.failure);
        if f.is_none() {
            tracing::warn!(reason = %reason, "egress pipeline failed");
            *f = Some(reason);
        }
    }
}

/// A running egress subscriber. Dropping it stops the pipeline without finalising the files.
pub struct Recorder {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    bus: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Builds the pipeline, starts it and returns it with its offer (ICE gathering complete: the
    /// bridge takes no trickle).
    pub fn start(spec: Spec) -> Result<(Recorder, String), EgressError> {
        crate::init()?;
        if let Some(e) = crate::missing_element() {
            return Err(EgressError::MissingElement(e));
        }
        std::fs::create_dir_all(&spec.dir)
            .map_err(|e| EgressError::Directory(spec.dir.display().to_string(), e.kind().to_string()))?;
        let pipeline = gst::Pipeline::new();
        let webrtc = make("webrtcbin")?;
        webrtc.set_property_from_str("bundle-policy", "max-bundle");
        webrtc.set_property("latency", 200u32);
        pipeline.add(&webrtc).map_err(|e| EgressError::Pipeline(e.to_string()))?;
        let agent = webrtc.property::<gst_webrtc::WebRTCICE>("ice-agent");
        agent.set_property("ice-tcp", false);
        for ip in &spec.local_ips {
            agent.emit_by_name::<bool>("add-local-ip-address", &[ip]);
        }
        let shared = Arc::new(Shared { rtmp: spec.rtmp.clone(), ..Shared::default() });
        if let Layout::Composite(c) = spec.layout {
            let rtmp = spec.rtmp.as_ref().filter(|_| c == Container::Flv);
            let path = match rtmp {
                Some(r) => PathBuf::from(&r.shown),
                None => spec.dir.join(format!("{}.{}", spec.stem, c.extension())),
            };
            let branch = Branch::composite(&pipeline, c, path, rtmp.map(|r| r.url.as_str()));
            *lock(&shared.composite) = Some(branch.map_err(|e| scrub_err(e, rtmp))?);
        }
        add_transceivers(&webrtc, &spec)?;
        connect_pads(&pipeline, &webrtc, &spec, &shared);
        let s = shared.clone();
        webrtc.connect_notify(Some("connection-state"), move |w, _| {
            let state = w.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state");
            if state == gst_webrtc::WebRTCPeerConnectionState::Failed {
                s.fail("the WebRTC connection to the room failed".into());
            }
        });
        if pipeline.set_state(gst::State::Playing).is_err() {
            // The element's own error, on the bus, says more than the failed state change.
            let why = pipeline
                .bus()
                .and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
                .and_then(|m| match m.view() {
                    gst::MessageView::Error(e) => Some(e.error().to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| "the pipeline did not start".into());
            let _ = pipeline.set_state(gst::State::Null);
            return Err(scrub_err(EgressError::Pipeline(why), spec.rtmp.as_ref()));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let bus = watch_bus(&pipeline, shared.clone(), stop.clone())?;
        let rec = Recorder { pipeline, webrtc, shared, stop, bus: Some(bus) };
        let offer = rec.offer()?;
        Ok((rec, offer))
    }

    fn offer(&self) -> Result<String, EgressError> {
        let promise = gst::Promise::new();
        self.webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
        promise.wait();
        let offer = promise
            .get_reply()
            .and_then(|r| r.get::<gst_webrtc::WebRTCSessionDescription>("offer").ok())
            .ok_or_else(|| EgressError::Negotiation("webrtcbin made no offer".into()))?;
        let promise = gst::Promise::new();
        self.webrtc.emit_by_name::<()>("set-local-description", &[&offer, &promise]);
        promise.wait();
        let deadline = Instant::now() + GATHER_TIMEOUT;
        while self.webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
            != gst_webrtc::WebRTCICEGatheringState::Complete
        {
            if Instant::now() > deadline {
                return Err(EgressError::Negotiation("ICE gathering did not complete in 5 s".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let local = self.webrtc.property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description");
        let sdp = local.ok_or_else(|| EgressError::Negotiation("no local description".into()))?.sdp().as_text();
        sdp.map_err(|e| EgressError::Negotiation(e.to_string()))
    }

    /// Applies the room's answer; media flows once ICE and DTLS complete.
    pub fn accept_answer(&self, sdp: &str) -> Result<(), EgressError> {
        let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
            .map_err(|_| EgressError::Negotiation("the answer does not parse".into()))?;
        let answer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, msg);
        let promise = gst::Promise::new();
        self.webrtc.emit_by_name::<()>("set-remote-description", &[&answer, &promise]);
        promise.wait();
        if let Some(err) = promise.get_reply().and_then(|r| r.get::<glib_error::Error>("error").ok()) {
            return Err(EgressError::Negotiation(err.to_string()));
        }
        Ok(())
    }

    /// Why the pipeline failed, once it has.
    pub fn failure(&self) -> Option<String> {
        lock(&self.shared.failure).clone()
    }

    /// How many streams the room has sent so far.
    pub fn streams(&self) -> usize {
        self.shared.streams.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Vec<OutputStats> {
        let mut out: Vec<OutputStats> = lock(&self.shared.tracks).iter().map(Branch::stats).collect();
        out.extend(lock(&self.shared.composite).as_ref().map(|c| c.branch.stats()));
        out
    }

    /// Stops cleanly: no more packets from the room, an end of stream into every file (the
    /// muxers write their trailers), and the pipeline down once each file has ended or
    /// `timeout` has passed. Returns the final statistics.
    pub fn stop(mut self, timeout: Duration) -> Vec<OutputStats> {
        for pad in self.webrtc.src_pads() {
            pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, |_, _| gst::PadProbeReturn::Drop);
        }
        lock(&self.shared.tracks).iter().for_each(Branch::finish);
        if let Some(c) = lock(&self.shared.composite).as_ref() {
            c.branch.finish();
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !self.all_finished() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let stats = self.stats();
        self.shutdown();
        stats
    }

    fn all_finished(&self) -> bool {
        lock(&self.shared.tracks).iter().all(Branch::finished)
            && lock(&self.shared.composite)
                .as_ref()
                .is_none_or(|c| c.branch.finished() || c.branch.stats().buffers_in == 0)
    }

    fn shutdown(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.bus.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

use gstreamer::glib as glib_error;

fn add_transceivers(webrtc: &gst::Element, spec: &Spec) -> Result<(), EgressError> {
    let (audio, video) = match spec.layout {
        Layout::Tracks => (AUDIO_CODECS, format!("{VP8};{H264}")),
        Layout::Composite(Container::Webm) => (OPUS, VP8.to_string()),
        Layout::Composite(_) => (OPUS, H264.to_string()),
    };
    let recv = gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly;
    for (n, caps) in [(spec.audio_slots, audio), (spec.video_slots, video.as_str())] {
        let caps = gst::Caps::from_str(caps).map_err(|e| EgressError::Pipeline(e.to_string()))?;
        for _ in 0..n {
            webrtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>("add-transceiver", &[&recv, &caps]);
        }
    }
    Ok(())
}

/// Each stream `webrtcbin` brings out gets its branch; one that cannot be written fails the egress.
fn connect_pads(pipeline: &gst::Pipeline, webrtc: &gst::Element, spec: &Spec, shared: &Arc<Shared>) {
    let (weak, shared, spec) = (pipeline.downgrade(), shared.clone(), spec.clone());
    webrtc.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else { return };
        let caps = pad.current_caps();
        let s = caps.as_ref().and_then(|c| c.structure(0));
        let media = s.and_then(|s| s.get::<&str>("media").ok()).unwrap_or("").to_owned();
        let encoding = s.and_then(|s| s.get::<&str>("encoding-name").ok()).unwrap_or("").to_owned();
        let n = shared.streams.fetch_add(1, Ordering::Relaxed);
        let r = match spec.layout {
            Layout::Tracks => {
                let ext = Container::for_track(&encoding).map_or("bin", |c| c.0.extension());
                let path = spec.dir.join(format!("{}-{n}-{}.{ext}", spec.stem, encoding.to_ascii_lowercase()));
                Branch::track(&pipeline, pad, &encoding, path).map(|b| lock(&shared.tracks).push(b))
            }
            Layout::Composite(_) => match lock(&shared.composite).as_mut() {
                Some(c) => c.add(&pipeline, pad, &media, &encoding),
                None => Ok(()),
            },
        };
        if let Err(e) = r {
            shared.fail(e.to_string());
        }
    });
}

/// Reads the pipeline's bus on a thread of its own: the first error fails the egress.
fn watch_bus(
    pipeline: &gst::Pipeline,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, EgressError> {
    let bus = pipeline.bus().ok_or_else(|| EgressError::Pipeline("pipeline has no bus".into()))?;
    std::thread::Builder::new()
        .name("egress-bus".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(100), &[gst::MessageType::Error])
                else {
                    continue;
                };
                if let gst::MessageView::Error(e) = msg.view() {
                    let from = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                    shared.fail(format!("{from}: {}", e.error()));
                }
            }
        })
        .map_err(|e| EgressError::Pipeline(e.to_string()))
}

/// A reason with the RTMP URL, and its path (the stream key), replaced by what may be shown.
fn scrub(reason: &str, r: &Rtmp) -> String {
    let mut out = reason.replace(&r.url, &r.shown);
    let path = r.url.splitn(4, '/').nth(3).unwrap_or("");
    if !path.is_empty() {
        out = out.replace(path, "…");
    }
    out
}

fn scrub_err(e: EgressError, r: Option<&Rtmp>) -> EgressError {
    match (e, r) {
        (EgressError::Pipeline(m), Some(r)) => EgressError::Pipeline(scrub(&m, r)),
        (e, _) => e,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

use std::str::FromStr;
