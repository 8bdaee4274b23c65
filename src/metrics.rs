//! Named Prometheus records. The core counts in plain integers; this module turns those counts
//! into metrics. Labels are small fixed sets (kind, route, reason, direction): never a room or a
//! participant id.

use crate::core::stats::{RoomGauges, RoomStats};
use crate::core::Route;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use switchboard_driver::{DropReason, ParticipantKind};

pub struct Metrics {
    registry: Registry,
    pub rooms: IntGauge,
    pub participants: IntGaugeVec,
    pub tracks: IntGauge,
    pub subscriptions: IntGaugeVec,
    pub packets: IntCounterVec,
    pub bytes: IntCounterVec,
    pub dropped: IntCounterVec,
    pub route_switches: IntCounter,
    pub keyframe_requests: IntCounter,
    pub dtmf_events: IntCounter,
    pub participants_left: IntCounterVec,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub mixer_packets: IntCounterVec,
    pub mixer_undecoded: IntCounter,
    pub mixer_errors: IntCounter,
    pub mixer_processing: prometheus::Counter,
    pub mixer_ticks: IntCounter,
    pub mixers: IntGauge,
    pub mixer_stages: IntGaugeVec,
    pub mixer_jitter_target: IntGauge,
    pub mixer_fec_encoders: IntGauge,
    pub mixer_paced_legs: IntGauge,
    pub transcodes: IntCounterVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("switchboard")
}

impl Metrics {
    pub fn new() -> Metrics {
        // Names and label sets are fixed at compile time, so registration cannot fail.
        Self::build().expect("metric definitions are static and valid")
    }

    fn build() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let m = Metrics {
            rooms: IntGauge::with_opts(opts("rooms", "Rooms that exist"))?,
            participants: IntGaugeVec::new(opts("participants", "Participants by kind"), &["kind"])?,
            tracks: IntGauge::with_opts(opts("tracks", "Published tracks"))?,
            subscriptions: IntGaugeVec::new(opts("subscriptions", "Served subscriber slots by route"), &["route"])?,
            packets: IntCounterVec::new(
                opts("packets_total", "Datagrams by participant kind and direction"),
                &["kind", "direction"],
            )?,
            bytes: IntCounterVec::new(
                opts("bytes_total", "Datagram bytes by participant kind and direction"),
                &["kind", "direction"],
            )?,
            dropped: IntCounterVec::new(opts("packets_dropped_total", "Packets dropped, by reason"), &["reason"])?,
            route_switches: IntCounter::with_opts(opts(
                "route_switches_total",
                "Times a slot's route or source changed after it was first assigned",
            ))?,
            keyframe_requests: IntCounter::with_opts(opts(
                "keyframe_requests_total",
                "Keyframe requests relayed from subscribers to publishers",
            ))?,
            dtmf_events: IntCounter::with_opts(opts("dtmf_events_total", "DTMF digits received"))?,
            participants_left: IntCounterVec::new(
                opts("participants_left_total", "Participants that left, by reason"),
                &["reason"],
            )?,
            http_requests: IntCounterVec::new(
                opts("http_requests_total", "HTTP requests by method, path template and status"),
                &["method", "path", "status"],
            )?,
            http_duration: HistogramVec::new(
                HistogramOpts::new("http_request_duration_seconds", "HTTP request duration by path template")
                    .namespace("switchboard")
                    .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
                &["path"],
            )?,
            mixer_packets: IntCounterVec::new(
                opts("mixer_jitter_packets_total", "Mixer jitter-buffer events: late, lost and concealed packets"),
                &["event"],
            )?,
            mixer_undecoded: IntCounter::with_opts(opts(
                "mixer_undecoded_packets_total",
                "Mixer input packets not decoded: the input was not mixed and its sender reported its level (RFC 6464)",
            ))?,
            mixer_errors: IntCounter::with_opts(opts(
                "mixer_errors_total",
                "Mixer decoder or encoder failures; the failing stage was rebuilt",
            ))?,
            mixer_processing: prometheus::Counter::with_opts(opts(
                "mixer_processing_seconds_total",
                "Time the mixers spent decoding, mixing and encoding",
            ))?,
            mixer_ticks: IntCounter::with_opts(opts("mixer_ticks_total", "20 ms mix cycles run"))?,
            mixers: IntGauge::with_opts(opts("mixers", "Rooms with a running mixer"))?,
            mixer_stages: IntGaugeVec::new(
                opts(
                    "mixer_stages",
                    "Mixer stages by kind: distinct mixes, audio encoders and decoders, video encoders",
                ),
                &["stage"],
            )?,
            mixer_jitter_target: IntGauge::with_opts(opts(
                "mixer_jitter_target_ms",
                "Largest playout delay any mixer input's adaptive jitter buffer aims for, over all rooms",
            ))?,
            mixer_fec_encoders: IntGauge::with_opts(opts(
                "mixer_fec_encoders",
                "Mixer Opus encoders adding in-band FEC because their receivers report loss",
            ))?,
            mixer_paced_legs: IntGauge::with_opts(opts(
                "mixer_paced_legs",
                "RTP/SRTP legs whose media goes only to a mixer, read at the mixer's tick instead of on arrival",
            ))?,
            transcodes: IntCounterVec::new(
                opts("transcodes_total", "Subscriptions that started a transcode, by codec pair"),
                &["from", "to"],
            )?,
            registry,
        };
        m.registry.register(Box::new(m.rooms.clone()))?;
        m.registry.register(Box::new(m.participants.clone()))?;
        m.registry.register(Box::new(m.tracks.clone()))?;
        m.registry.register(Box::new(m.subscriptions.clone()))?;
        m.registry.register(Box::new(m.packets.clone()))?;
        m.registry.register(Box::new(m.bytes.clone()))?;
        m.registry.register(Box::new(m.dropped.clone()))?;
        m.registry.register(Box::new(m.route_switches.clone()))?;
        m.registry.register(Box::new(m.keyframe_requests.clone()))?;
        m.registry.register(Box::new(m.dtmf_events.clone()))?;
        m.registry.register(Box::new(m.participants_left.clone()))?;
        m.registry.register(Box::new(m.http_requests.clone()))?;
        m.registry.register(Box::new(m.http_duration.clone()))?;
        m.registry.register(Box::new(m.mixer_packets.clone()))?;
        m.registry.register(Box::new(m.mixer_errors.clone()))?;
        m.registry.register(Box::new(m.mixer_processing.clone()))?;
        m.registry.register(Box::new(m.mixer_ticks.clone()))?;
        m.registry.register(Box::new(m.mixer_undecoded.clone()))?;
        m.registry.register(Box::new(m.mixers.clone()))?;
        m.registry.register(Box::new(m.mixer_stages.clone()))?;
        m.registry.register(Box::new(m.mixer_jitter_target.clone()))?;
        m.registry.register(Box::new(m.mixer_fec_encoders.clone()))?;
        m.registry.register(Box::new(m.mixer_paced_legs.clone()))?;
        m.registry.register(Box::new(m.transcodes.clone()))?;
        for event in ["late", "lost", "concealed"] {
            m.mixer_packets.with_label_values(&[event]);
        }
        for stage in ["mixes", "encoders", "decoders"] {
            m.mixer_stages.with_label_values(&[stage]);
        }
        // Every label value exists from the start, so a scrape shows zeros instead of gaps.
        for kind in ParticipantKind::ALL {
            m.participants.with_label_values(&[kind.as_str()]);
            for dir in ["in", "out"] {
                m.packets.with_label_values(&[kind.as_str(), dir]);
                m.bytes.with_label_values(&[kind.as_str(), dir]);
            }
        }
        for route in Route::ALL {
            m.subscriptions.with_label_values(&[route.as_str()]);
        }
        for reason in DropReason::ALL {
            m.dropped.with_label_values(&[reason.as_str()]);
        }
        // Counted by the worker itself, not by a driver: no `DropReason` of its own.
        m.dropped.with_label_values(&["oversize"]);
        Ok(m)
    }

    /// Adds one room's counters since its last harvest.
    pub fn add_room_stats(&self, s: &RoomStats) {
        for kind in ParticipantKind::ALL {
            let i = crate::core::stats::kind_index(kind);
            let k = kind.as_str();
            self.packets.with_label_values(&[k, "in"]).inc_by(s.received[i].packets);
            self.bytes.with_label_values(&[k, "in"]).inc_by(s.received[i].bytes);
            self.packets.with_label_values(&[k, "out"]).inc_by(s.sent[i].packets);
            self.bytes.with_label_values(&[k, "out"]).inc_by(s.sent[i].bytes);
        }
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            if s.dropped[i] > 0 {
                self.dropped.with_label_values(&[reason.as_str()]).inc_by(s.dropped[i]);
            }
        }
        self.route_switches.inc_by(s.route_switches);
        self.keyframe_requests.inc_by(s.keyframe_requests);
        self.dtmf_events.inc_by(s.dtmf_events);
        let mx = &s.mixer;
        self.mixer_packets.with_label_values(&["late"]).inc_by(mx.late);
        self.mixer_packets.with_label_values(&["lost"]).inc_by(mx.lost);
        self.mixer_packets.with_label_values(&["concealed"]).inc_by(mx.concealed);
        self.mixer_undecoded.inc_by(mx.undecoded);
        self.mixer_errors.inc_by(mx.errors);
        self.mixer_processing.inc_by(mx.processing_ns as f64 / 1e9);
        self.mixer_ticks.inc_by(mx.ticks);
        for (from, to) in &s.transcodes {
            self.transcodes.with_label_values(&[from.as_str(), to.as_str()]).inc();
        }
    }

    /// Sets the gauges from the sum over all rooms.
    pub fn set_gauges(&self, rooms: usize, g: &RoomGauges) {
        self.rooms.set(rooms as i64);
        for kind in ParticipantKind::ALL {
            let i = crate::core::stats::kind_index(kind);
            self.participants.with_label_values(&[kind.as_str()]).set(g.participants[i] as i64);
        }
        self.tracks.set(g.tracks as i64);
        self.mixers.set(g.mixers as i64);
        self.mixer_stages.with_label_values(&["mixes"]).set(g.mixes as i64);
        self.mixer_stages.with_label_values(&["encoders"]).set(g.encoders as i64);
        self.mixer_stages.with_label_values(&["decoders"]).set(g.decoders as i64);
        self.mixer_stages.with_label_values(&["video_encoders"]).set(g.video_encoders as i64);
        self.mixer_jitter_target.set(g.jitter_target_ms as i64);
        self.mixer_fec_encoders.set(g.fec_encoders as i64);
        for route in Route::ALL {
            let i = crate::core::stats::route_index(route);
            self.subscriptions.with_label_values(&[route.as_str()]).set(g.subscriptions[i] as i64);
        }
    }

    pub fn render(&self) -> String {
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

impl RoomGauges {
    pub fn add(&mut self, o: &RoomGauges) {
        for i in 0..3 {
            self.participants[i] += o.participants[i];
        }
        self.tracks += o.tracks;
        self.mixers += o.mixers;
        self.mixes += o.mixes;
        self.encoders += o.encoders;
        self.decoders += o.decoders;
        self.jitter_target_ms = self.jitter_target_ms.max(o.jitter_target_ms);
        self.fec_encoders += o.fec_encoders;
        self.video_encoders += o.video_encoders;
        for i in 0..4 {
            self.subscriptions[i] += o.subscriptions[i];
        }
    }
}
