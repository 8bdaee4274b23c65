//! A Prometheus vector whose label values are typed: it takes its labels as enums, never as strings.

use super::labels::Labels;
use prometheus::core::Collector;
use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts,
};
use std::marker::PhantomData;

/// A prometheus vector type and the metric each of its series is.
pub trait Vector: Collector + Clone + 'static {
    type Series;

    fn series(&self, values: &[&str]) -> Self::Series;
}

impl Vector for IntCounterVec {
    type Series = IntCounter;

    fn series(&self, values: &[&str]) -> IntCounter {
        self.with_label_values(values)
    }
}

impl Vector for CounterVec {
    type Series = Counter;

    fn series(&self, values: &[&str]) -> Counter {
        self.with_label_values(values)
    }
}

impl Vector for IntGaugeVec {
    type Series = IntGauge;

    fn series(&self, values: &[&str]) -> IntGauge {
        self.with_label_values(values)
    }
}

impl Vector for HistogramVec {
    type Series = Histogram;

    fn series(&self, values: &[&str]) -> Histogram {
        self.with_label_values(values)
    }
}

/// A labelled metric: a vector that takes its label values as `L`.
pub struct Family<L: Labels, V: Vector> {
    vec: V,
    labels: PhantomData<L>,
}

impl<L: Labels, V: Vector> Family<L, V> {
    /// The series of these label values, created at zero if it did not exist.
    pub fn with(&self, labels: impl Into<L>) -> V::Series {
        // The label names were counted against `L::ARITY` when the family was declared, so
        // `with_label_values` always gets as many values as names.
        labels.into().with_values(|v| self.vec.series(v))
    }

    /// Creates every series, so a scrape shows zeros instead of gaps.
    pub fn init_all(&self) {
        for l in L::every() {
            self.with(l);
        }
    }
}

pub type Counters<L> = Family<L, IntCounterVec>;
pub type Gauges<L> = Family<L, IntGaugeVec>;
/// Seconds (of CPU time, say), counted as floats.
pub type SecondCounters<L> = Family<L, CounterVec>;
pub type Histograms<L> = Family<L, HistogramVec>;

/// Builds metrics and registers them in one step, so a metric is declared in one line.
pub struct Declare<'a> {
    pub registry: &'a prometheus::Registry,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("switchboard")
}

impl Declare<'_> {
    fn register<C: Collector + Clone + 'static>(&self, c: C) -> prometheus::Result<C> {
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    pub fn counter(&self, name: &str, help: &str) -> prometheus::Result<IntCounter> {
        self.register(IntCounter::with_opts(opts(name, help))?)
    }

    pub fn seconds(&self, name: &str, help: &str) -> prometheus::Result<prometheus::Counter> {
        self.register(prometheus::Counter::with_opts(opts(name, help))?)
    }

    pub fn gauge(&self, name: &str, help: &str) -> prometheus::Result<IntGauge> {
        self.register(IntGauge::with_opts(opts(name, help))?)
    }

    pub fn float_gauge(&self, name: &str, help: &str) -> prometheus::Result<Gauge> {
        self.register(Gauge::with_opts(opts(name, help))?)
    }

    pub fn counters<L: Labels>(&self, name: &str, help: &str, keys: &[&str]) -> prometheus::Result<Counters<L>> {
        Self::arity::<L>(keys)?;
        let vec = self.register(IntCounterVec::new(opts(name, help), keys)?)?;
        Ok(Family { vec, labels: PhantomData })
    }

    pub fn gauges<L: Labels>(&self, name: &str, help: &str, keys: &[&str]) -> prometheus::Result<Gauges<L>> {
        Self::arity::<L>(keys)?;
        let vec = self.register(IntGaugeVec::new(opts(name, help), keys)?)?;
        Ok(Family { vec, labels: PhantomData })
    }

    pub fn seconds_by<L: Labels>(
        &self,
        name: &str,
        help: &str,
        keys: &[&str],
    ) -> prometheus::Result<SecondCounters<L>> {
        Self::arity::<L>(keys)?;
        let vec = self.register(CounterVec::new(opts(name, help), keys)?)?;
        Ok(Family { vec, labels: PhantomData })
    }

    pub fn histograms<L: Labels>(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
        keys: &[&str],
    ) -> prometheus::Result<Histograms<L>> {
        Self::arity::<L>(keys)?;
        let vec = self.raw_histograms(name, help, buckets, keys)?;
        Ok(Family { vec, labels: PhantomData })
    }

    /// A vector whose label values are not all typed (the HTTP path template): kept raw.
    pub fn raw_counters(&self, name: &str, help: &str, keys: &[&str]) -> prometheus::Result<IntCounterVec> {
        self.register(IntCounterVec::new(opts(name, help), keys)?)
    }

    pub fn raw_histograms(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
        keys: &[&str],
    ) -> prometheus::Result<HistogramVec> {
        let o = HistogramOpts::new(name, help).namespace("switchboard").buckets(buckets);
        self.register(HistogramVec::new(o, keys)?)
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> prometheus::Result<Histogram> {
        let o = HistogramOpts::new(name, help).namespace("switchboard").buckets(buckets);
        self.register(Histogram::with_opts(o)?)
    }

    /// A gauge whose labels describe the process; its one series is always 1.
    pub fn info(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> prometheus::Result<()> {
        let keys: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
        let values: Vec<&str> = labels.iter().map(|(_, v)| *v).collect();
        let vec = self.register(GaugeVec::new(opts(name, help), &keys)?)?;
        vec.get_metric_with_label_values(&values)?.set(1.0);
        Ok(())
    }

    fn arity<L: Labels>(keys: &[&str]) -> prometheus::Result<()> {
        if keys.len() == L::ARITY {
            return Ok(());
        }
        Err(prometheus::Error::InconsistentCardinality { expect: L::ARITY, got: keys.len() })
    }
}
