//! The egresses' metrics: read from the egresses at each scrape, since their counters live in
//! GStreamer's streaming threads and no media worker harvests them.

use super::family::Declare;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge};
use std::sync::OnceLock;

/// What the node's egresses add up to now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EgressTotals {
    pub running: u64,
    /// Since start, ended egresses included.
    pub bytes_written: u64,
    pub dropped_buffers: u64,
    /// Buffers waiting in the running egresses' queues.
    pub queued: u64,
    /// The longest room-to-file latency among the running egresses' files.
    pub latency_seconds: f64,
}

pub struct EgressMetrics {
    running: IntGauge,
    pub ended: IntCounterVec,
    bytes: IntCounter,
    dropped: IntCounter,
    queued: IntGauge,
    latency: Gauge,
    source: OnceLock<Box<dyn Fn() -> EgressTotals + Send + Sync>>,
}

impl EgressMetrics {
    pub(super) fn declare(d: &Declare<'_>) -> prometheus::Result<EgressMetrics> {
        let ended =
            d.raw_counters("egress_ended_total", "Egresses ended, by outcome: complete or failed", &["outcome"])?;
        for outcome in ["complete", "failed"] {
            ended.with_label_values(&[outcome]);
        }
        Ok(EgressMetrics {
            running: d.gauge("egresses", "Egresses (recordings) running")?,
            ended,
            bytes: d.counter("egress_bytes_written_total", "Bytes the egresses wrote to their files")?,
            dropped: d.counter(
                "egress_dropped_buffers_total",
                "Buffers an egress queue dropped (its oldest) because its output could not keep up",
            )?,
            queued: d.gauge("egress_queue_buffers", "Buffers waiting in the running egresses' queues")?,
            latency: d.float_gauge(
                "egress_latency_seconds",
                "Longest time from the room to a file among the running egresses (from the packet's arrival timestamp)",
            )?,
            source: OnceLock::new(),
        })
    }

    /// Where the totals are read at each scrape; set once, at start.
    pub fn set_source(&self, f: impl Fn() -> EgressTotals + Send + Sync + 'static) {
        let _ = self.source.set(Box::new(f));
    }

    pub(super) fn refresh(&self) {
        let Some(f) = self.source.get() else { return };
        let t = f();
        self.running.set(i64::try_from(t.running).unwrap_or(i64::MAX));
        self.queued.set(i64::try_from(t.queued).unwrap_or(i64::MAX));
        self.latency.set(t.latency_seconds);
        // Counters only go up: the totals include ended egresses, so they never fall.
        self.bytes.inc_by(t.bytes_written.saturating_sub(self.bytes.get()));
        self.dropped.inc_by(t.dropped_buffers.saturating_sub(self.dropped.get()));
    }
}
