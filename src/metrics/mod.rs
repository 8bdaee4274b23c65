//! Named Prometheus records. The core counts in plain integers; this module turns those counts
//! into metrics. Labels are small fixed sets, each an enum (`labels.rs`): never a room or a
//! participant id, and never a string a client chose.
//!
//! Every metric is declared once, in `Metrics::build`; adding one touches that declaration and
//! the place that counts. docs/metrics.md lists them all, and a test here holds the two together.

mod egress;
mod family;
mod labels;

pub use egress::{EgressMetrics, EgressTotals};
pub use family::{Counters, Gauges, Histograms, SecondCounters};
pub use labels::{
    Direction, DropLabel, HttpMethod, JitterEvent, Label, Labels, MixerStage, WebhookResult, WorkerLabel,
};

use crate::core::events::LeaveReason;
use crate::core::stats::{RoomGauges, RoomStats};
use crate::core::Route;
use axum::http::StatusCode;
use family::Declare;
use prometheus::{Encoder, Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry, TextEncoder};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use switchboard_driver::{Codec, ParticipantKind};

/// What one media worker last reported of the gauges: the node's are the sum over workers (the
/// largest jitter target, which is a maximum), so no worker's report overwrites another's.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerGauges {
    pub rooms: usize,
    /// Legs read at the mixer's tick (`mixer_paced_legs`).
    pub paced: usize,
    /// The worker's slice of the leg port range, and the pairs in it free to hand out now.
    pub port_pairs: usize,
    pub port_pairs_free: usize,
    pub gauges: RoomGauges,
}

pub struct Metrics {
    registry: Registry,
    pub rooms: IntGauge,
    pub participants: Gauges<ParticipantKind>,
    pub tracks: IntGauge,
    pub subscriptions: Gauges<Route>,
    pub packets: Counters<(ParticipantKind, Direction)>,
    pub bytes: Counters<(ParticipantKind, Direction)>,
    pub dropped: Counters<DropLabel>,
    pub route_switches: IntCounter,
    pub keyframe_requests: IntCounter,
    pub dtmf_events: IntCounter,
    pub participants_left: Counters<LeaveReason>,
    pub http: Http,
    pub mixer_packets: Counters<JitterEvent>,
    pub mixer_undecoded: IntCounter,
    pub mixer_errors: IntCounter,
    pub mixer_processing: prometheus::Counter,
    pub mixer_ticks: IntCounter,
    /// How long after its 20 ms schedule each mix tick ran; the worker observes it, since only it
    /// knows when the tick really ran.
    pub mixer_tick_lateness: Histogram,
    pub mixers: IntGauge,
    pub mixer_stages: Gauges<MixerStage>,
    pub mixer_jitter_target: Gauge,
    pub mixer_fec_encoders: IntGauge,
    pub mixer_paced_legs: IntGauge,
    pub transcodes: Counters<(Codec, Codec)>,
    pub auth_failures: Counters<crate::auth::AuthFailure>,
    pub webhook_deliveries: Counters<WebhookResult>,
    pub webhook_dropped: IntCounter,
    pub worker_cpu: SecondCounters<WorkerLabel>,
    pub worker_participants: Gauges<WorkerLabel>,
    pub worker_rooms: Gauges<WorkerLabel>,
    /// Each worker's last `WorkerGauges`, by index.
    per_worker: Mutex<Vec<WorkerGauges>>,
    /// Datagrams user space read from leg sockets (RTP and RTCP): what kernel forwarding saves.
    pub leg_datagrams_read: IntCounter,
    /// In-kernel forwarding (`runtime::kernel`): whether the program is attached, why not,
    /// the rules installed now, and what they forwarded.
    pub kernel_active: IntGauge,
    pub kernel_fallbacks: IntCounter,
    pub kernel_rules: IntGauge,
    pub kernel_packets: IntCounter,
    pub kernel_bytes: IntCounter,
    /// The leg port range: pairs it holds, and pairs free to hand out now.
    pub rtp_port_pairs: IntGauge,
    pub rtp_port_pairs_free: IntGauge,
    /// From a join reaching the API to the bridge's SDP, by the participant's kind.
    pub join_duration: Histograms<ParticipantKind>,
    /// What receivers report of the streams the bridge sends them (RTCP), by their kind.
    pub receiver_loss: Histograms<ParticipantKind>,
    pub receiver_jitter: Histograms<ParticipantKind>,
    pub receiver_rtt: Histograms<ParticipantKind>,
    /// The egresses (`src/egress/`), read at each scrape.
    pub egress: EgressMetrics,
    media_loop_age: Gauge,
    /// How long ago the media thread last turned its loop: read at each scrape, since a stalled
    /// thread harvests nothing and its own gauges would stand still.
    media_age: OnceLock<Box<dyn Fn() -> Duration + Send + Sync>>,
}

/// The HTTP API's records. The path is the route template, a fixed set the router holds.
pub struct Http {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl Http {
    pub fn record(&self, method: HttpMethod, path: &str, status: StatusCode, took: Duration) {
        self.requests.with_label_values(&[method.value(), path, status.as_str()]).inc();
        self.duration.with_label_values(&[path]).observe(took.as_secs_f64());
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        // Names and label sets are fixed at compile time, so registration cannot fail.
        Self::build().expect("metric definitions are static and valid")
    }

    fn build() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let d = Declare { registry: &registry };
        let m = Metrics {
            registry: registry.clone(),
            rooms: d.gauge("rooms", "Rooms that exist")?,
            participants: d.gauges("participants", "Participants by kind", &["kind"])?,
            tracks: d.gauge("tracks", "Published tracks")?,
            subscriptions: d.gauges("subscriptions", "Served subscriber slots by route", &["route"])?,
            packets: d.counters(
                "packets_total",
                "Datagrams by participant kind and direction",
                &["kind", "direction"],
            )?,
            bytes: d.counters(
                "bytes_total",
                "Datagram bytes by participant kind and direction",
                &["kind", "direction"],
            )?,
            dropped: d.counters("packets_dropped_total", "Packets dropped, by reason", &["reason"])?,
            route_switches: d.counter(
                "route_switches_total",
                "Times a slot's route or source changed after it was first assigned",
            )?,
            keyframe_requests: d
                .counter("keyframe_requests_total", "Keyframe requests relayed from subscribers to publishers")?,
            dtmf_events: d.counter("dtmf_events_total", "DTMF digits received")?,
            participants_left: d.counters(
                "participants_left_total",
                "Participants that left, by reason",
                &["reason"],
            )?,
            auth_failures: d.counters(
                "auth_failures_total",
                "API requests refused with 401, by why the token was not accepted",
                &["reason"],
            )?,
            webhook_deliveries: d.counters(
                "webhook_deliveries_total",
                "Webhook POSTs by outcome: events delivered, attempts that failed and were retried, events given up",
                &["result"],
            )?,
            webhook_dropped: d.counter(
                "webhook_dropped_total",
                "Room events not queued for a webhook receiver because its queue was full",
            )?,
            http: Http {
                requests: d.raw_counters(
                    "http_requests_total",
                    "HTTP requests by method, path template and status",
                    &["method", "path", "status"],
                )?,
                duration: d.raw_histograms(
                    "http_request_duration_seconds",
                    "HTTP request duration by path template",
                    vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0],
                    &["path"],
                )?,
            },
            mixer_packets: d.counters(
                "mixer_jitter_packets_total",
                "Mixer jitter-buffer events: late, lost and concealed packets",
                &["event"],
            )?,
            mixer_undecoded: d.counter(
                "mixer_undecoded_packets_total",
                "Mixer input packets not decoded: the input was not mixed and its sender reported its level (RFC 6464)",
            )?,
            mixer_errors: d
                .counter("mixer_errors_total", "Mixer decoder or encoder failures; the failing stage was rebuilt")?,
            mixer_processing: d
                .seconds("mixer_processing_seconds_total", "Time the mixers spent decoding, mixing and encoding")?,
            mixer_ticks: d.counter("mixer_ticks_total", "20 ms mix cycles run")?,
            mixer_tick_lateness: d.histogram(
                "mixer_tick_lateness_seconds",
                "How long after its scheduled time each room's mix tick ran",
                vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1],
            )?,
            mixers: d.gauge("mixers", "Rooms with a running mixer")?,
            mixer_stages: d.gauges(
                "mixer_stages",
                "Mixer stages by kind: distinct mixes, audio encoders and decoders, video encoders",
                &["stage"],
            )?,
            mixer_jitter_target: d.float_gauge(
                "mixer_jitter_target_seconds",
                "Largest playout delay any mixer input's adaptive jitter buffer aims for, over all rooms",
            )?,
            mixer_fec_encoders: d.gauge(
                "mixer_fec_encoders",
                "Mixer Opus encoders adding in-band FEC because their receivers report loss",
            )?,
            mixer_paced_legs: d.gauge(
                "mixer_paced_legs",
                "RTP/SRTP legs whose media goes only to a mixer, read at the mixer's tick instead of on arrival",
            )?,
            leg_datagrams_read: d.counter(
                "leg_datagrams_read_total",
                "Datagrams read in user space from rtp/srtp leg sockets (RTP and RTCP)",
            )?,
            kernel_active: d.gauge(
                "kernel_forwarding_active",
                "1 while the in-kernel forwarding program is attached (rtp.kernel_forwarding = \"auto\")",
            )?,
            kernel_fallbacks: d.counter(
                "kernel_forwarding_fallbacks_total",
                "Times in-kernel forwarding was wanted and user space carried on instead: the program did not load or attach, or the kernel refused a rule",
            )?,
            kernel_rules: d.gauge("kernel_forwarding_rules", "Directions of two-party calls forwarded in the kernel now")?,
            kernel_packets: d.counter(
                "kernel_forwarded_packets_total",
                "RTP packets forwarded in the kernel, never reaching user space",
            )?,
            kernel_bytes: d.counter("kernel_forwarded_bytes_total", "UDP payload bytes of those packets")?,
            rtp_port_pairs: d
                .gauge("rtp_port_pairs", "RTP/RTCP port pairs in the leg range (rtp.port_min..port_max)")?,
            rtp_port_pairs_free: d.gauge(
                "rtp_port_pairs_free",
                "Leg port pairs free to hand out now: neither in use nor resting in quarantine",
            )?,
            join_duration: d.histograms(
                "join_duration_seconds",
                "Time from a join request to the bridge's SDP, by participant kind",
                vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                &["kind"],
            )?,
            receiver_loss: d.histograms(
                "receiver_loss_ratio",
                "Fraction of the bridge's packets lost, per RTCP receiver report, by the receiver's kind",
                vec![0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
                &["kind"],
            )?,
            receiver_jitter: d.histograms(
                "receiver_jitter_seconds",
                "Interarrival jitter of the bridge's streams, per RTCP receiver report, by the receiver's kind",
                vec![0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32],
                &["kind"],
            )?,
            receiver_rtt: d.histograms(
                "rtt_seconds",
                "Round trip to receivers, from their RTCP reports' LSR and DLSR, by the receiver's kind",
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6],
                &["kind"],
            )?,
            egress: EgressMetrics::declare(&d)?,
            media_loop_age: d.float_gauge(
                "media_loop_age_seconds",
                "Seconds since the media thread last turned its loop, at the scrape; over 2 is a stall",
            )?,
            media_age: OnceLock::new(),
            transcodes: d.counters(
                "transcodes_total",
                "Subscriptions that started a transcode, by codec pair",
                &["from", "to"],
            )?,
            worker_cpu: d.seconds_by(
                "worker_cpu_seconds_total",
                "CPU time each media worker thread used, by worker index",
                &["worker"],
            )?,
            worker_participants: d.gauges(
                "worker_participants",
                "Participants in each media worker's rooms, by worker index",
                &["worker"],
            )?,
            worker_rooms: d.gauges("worker_rooms", "Rooms each media worker holds, by worker index", &["worker"])?,
            per_worker: Mutex::new(Vec::new()),
        };
        d.info(
            "build_info",
            "The running build: its version and whether it is a debug or a release build",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("profile", if cfg!(debug_assertions) { "debug" } else { "release" }),
            ],
        )?;
        // CPU, memory and file descriptors of this process, read from /proc at each scrape.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        // Label values known in advance exist from the start, so a scrape shows zeros instead of
        // gaps. Departures, transcodes and HTTP requests appear on first use (docs/metrics.md).
        m.participants.init_all();
        m.subscriptions.init_all();
        m.packets.init_all();
        m.bytes.init_all();
        m.dropped.init_all();
        m.mixer_packets.init_all();
        m.mixer_stages.init_all();
        m.auth_failures.init_all();
        m.webhook_deliveries.init_all();
        m.join_duration.init_all();
        m.receiver_loss.init_all();
        m.receiver_jitter.init_all();
        m.receiver_rtt.init_all();
        Ok(m)
    }

    /// Adds one room's counters since its last harvest.
    pub fn add_room_stats(&self, s: &RoomStats) {
        for (dir, flows) in [(Direction::In, &s.received), (Direction::Out, &s.sent)] {
            for (kind, flow) in flows.iter() {
                self.packets.with((kind, dir)).inc_by(flow.packets);
                self.bytes.with((kind, dir)).inc_by(flow.bytes);
            }
        }
        for (reason, n) in s.dropped.iter() {
            if *n > 0 {
                self.dropped.with(reason).inc_by(*n);
            }
        }
        self.route_switches.inc_by(s.route_switches);
        self.keyframe_requests.inc_by(s.keyframe_requests);
        self.dtmf_events.inc_by(s.dtmf_events);
        let mx = &s.mixer;
        self.mixer_packets.with(JitterEvent::Late).inc_by(mx.late);
        self.mixer_packets.with(JitterEvent::Lost).inc_by(mx.lost);
        self.mixer_packets.with(JitterEvent::Concealed).inc_by(mx.concealed);
        self.mixer_undecoded.inc_by(mx.undecoded);
        self.mixer_errors.inc_by(mx.errors);
        self.mixer_processing.inc_by(mx.processing_ns as f64 / 1e9);
        self.mixer_ticks.inc_by(mx.ticks);
        for pair in &s.transcodes {
            self.transcodes.with(*pair).inc();
        }
        for (kind, r) in &s.reception {
            let observe = |h: &Histograms<ParticipantKind>, v: Option<f32>| {
                if let Some(v) = v.filter(|v| v.is_finite() && *v >= 0.0) {
                    h.with(*kind).observe(f64::from(v));
                }
            };
            observe(&self.receiver_loss, r.loss);
            observe(&self.receiver_jitter, r.jitter);
            observe(&self.receiver_rtt, r.rtt);
        }
    }

    /// Creates worker `worker`'s series at zero, so a scrape before its first report shows them.
    pub fn init_worker(&self, worker: usize) {
        let label = WorkerLabel(worker);
        self.worker_cpu.with(label).inc_by(0.0);
        self.worker_rooms.with(label).set(0);
        self.worker_participants.with(label).set(0);
    }

    /// Records worker `worker`'s gauges, and sets the node's from every worker's last report. A
    /// short lock, twice a second per worker.
    pub fn set_worker_gauges(&self, worker: usize, report: WorkerGauges) {
        let total = {
            let mut all = self.per_worker.lock().unwrap_or_else(|e| e.into_inner());
            if all.len() <= worker {
                all.resize(worker + 1, WorkerGauges::default());
            }
            all[worker] = report;
            all.iter().fold(WorkerGauges::default(), |mut t, w| {
                t.rooms += w.rooms;
                t.paced += w.paced;
                t.port_pairs += w.port_pairs;
                t.port_pairs_free += w.port_pairs_free;
                t.gauges.add(&w.gauges);
                t
            })
        };
        let label = WorkerLabel(worker);
        self.worker_rooms.with(label).set(report.rooms as i64);
        self.worker_participants.with(label).set(report.gauges.participants.iter().map(|(_, n)| *n as i64).sum());
        self.mixer_paced_legs.set(total.paced as i64);
        self.rtp_port_pairs.set(total.port_pairs as i64);
        self.rtp_port_pairs_free.set(total.port_pairs_free as i64);
        self.set_gauges(total.rooms, &total.gauges);
    }

    /// Sets the node's gauges from the sum over all rooms.
    fn set_gauges(&self, rooms: usize, g: &RoomGauges) {
        self.rooms.set(rooms as i64);
        for (kind, n) in g.participants.iter() {
            self.participants.with(kind).set(*n as i64);
        }
        self.tracks.set(g.tracks as i64);
        self.mixers.set(g.mixers as i64);
        self.mixer_stages.with(MixerStage::Mixes).set(g.mixes as i64);
        self.mixer_stages.with(MixerStage::Encoders).set(g.encoders as i64);
        self.mixer_stages.with(MixerStage::Decoders).set(g.decoders as i64);
        self.mixer_stages.with(MixerStage::VideoEncoders).set(g.video_encoders as i64);
        self.mixer_jitter_target.set(g.jitter_target_ms as f64 / 1e3);
        self.mixer_fec_encoders.set(g.fec_encoders as i64);
        for (route, n) in g.subscriptions.iter() {
            self.subscriptions.with(route).set(*n as i64);
        }
    }

    /// Where `media_loop_age_seconds` reads the media thread's heartbeat; set once, at start.
    pub fn watch_media(&self, age: impl Fn() -> Duration + Send + Sync + 'static) {
        let _ = self.media_age.set(Box::new(age));
    }

    pub fn render(&self) -> String {
        if let Some(age) = self.media_age.get() {
            self.media_loop_age.set(age().as_secs_f64());
        }
        self.egress.refresh();
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which `build` rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
