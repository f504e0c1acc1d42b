//! `/metrics` in the protobuf exposition format: length-delimited `io.prometheus.client.
//! MetricFamily` messages (client_model's `metrics.proto`), which Prometheus asks for when its
//! native histograms are enabled, and the only format that carries them. Served in
//! `[metrics] histograms = "native"` mode; the families are the catalogue's, as on
//! the text page ([`write_providers`]), each written whole to the sink as it is completed.
//!
//! The encoder is written by hand rather than generated (prost and a build script, or prost's
//! derive on hand-written structs): the exporter writes six small message types and reads
//! none, the wire format is a handful of rules (varints, zigzag, length prefixes), and writing
//! straight from the snapshot avoids building a message tree of 10 000 providers first. The
//! unit tests decode the output with an independent reader and compare it with the text page;
//! tests/it/peer_prometheus.rs has the real Prometheus read it.

use std::time::SystemTime;

use super::catalogue::write_providers;
use super::latency::{self, Latency};
use super::snapshot::{Families, Kind, Sink, merged, named};
use super::{LATENCY_BUCKETS, Metrics};
use crate::config::{Labels, SeriesLabel};

/// `MetricFamily` fields.
const FAMILY_NAME: u32 = 1;
const FAMILY_HELP: u32 = 2;
const FAMILY_TYPE: u32 = 3;
const FAMILY_METRIC: u32 = 4;
/// `MetricType` values.
const TYPE_COUNTER: u64 = 0;
const TYPE_GAUGE: u64 = 1;
const TYPE_HISTOGRAM: u64 = 4;
/// `Metric` fields.
const METRIC_LABEL: u32 = 1;
const METRIC_GAUGE: u32 = 2;
const METRIC_COUNTER: u32 = 3;
const METRIC_HISTOGRAM: u32 = 7;
/// `LabelPair`, `Gauge` and `Counter` fields.
const LABEL_NAME: u32 = 1;
const LABEL_VALUE: u32 = 2;
const VALUE: u32 = 1;
/// `Histogram` fields.
const SAMPLE_COUNT: u32 = 1;
const SAMPLE_SUM: u32 = 2;
const BUCKET: u32 = 3;
const SCHEMA: u32 = 5;
const ZERO_THRESHOLD: u32 = 6;
const ZERO_COUNT: u32 = 7;
const POSITIVE_SPAN: u32 = 12;
const POSITIVE_DELTA: u32 = 13;
/// `Bucket` (classic) and `BucketSpan` fields.
const CUMULATIVE_COUNT: u32 = 1;
const UPPER_BOUND: u32 = 2;
const SPAN_OFFSET: u32 = 1;
const SPAN_LENGTH: u32 = 2;

/// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;

fn varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn key(buf: &mut Vec<u8>, field: u32, wire: u32) {
    varint(buf, u64::from(field << 3 | wire));
}

fn uint_field(buf: &mut Vec<u8>, field: u32, value: u64) {
    key(buf, field, VARINT);
    varint(buf, value);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn sint_field(buf: &mut Vec<u8>, field: u32, value: i64) {
    uint_field(buf, field, zigzag(value));
}

fn double_field(buf: &mut Vec<u8>, field: u32, value: f64) {
    key(buf, field, FIXED64);
    buf.extend_from_slice(&value.to_le_bytes());
}

fn bytes_field(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(buf, field, LENGTH_DELIMITED);
    varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Families being written as length-delimited messages: each is built in `family`, then
/// handed to the sink with its length when the next one starts. The first sink error is kept
/// and ends the render.
pub(super) struct Delimited<'w> {
    sink: Sink<'w>,
    family: Vec<u8>,
    kind: Kind,
    /// Scratch buffers for the nested messages of one series (reused: no allocation a series).
    metric: Vec<u8>,
    inner: Vec<u8>,
}

impl<'w> Delimited<'w> {
    pub(super) fn new(sink: &'w mut dyn std::io::Write) -> Self {
        Delimited {
            sink: Sink::new(sink),
            family: Vec::with_capacity(64 * 1024),
            kind: Kind::Gauge,
            metric: Vec::with_capacity(1024),
            inner: Vec::with_capacity(1024),
        }
    }

    fn flush_family(&mut self) {
        if self.family.is_empty() {
            return;
        }
        let mut length = Vec::with_capacity(10);
        varint(&mut length, self.family.len() as u64);
        self.sink.write(&[&length, &self.family]);
        self.family.clear();
    }

    pub(super) fn finish(mut self) -> std::io::Result<()> {
        self.flush_family();
        self.sink.finish()
    }

    /// Starts a `Metric` in `self.metric` with its labels.
    fn start_metric<'a>(&mut self, labels: impl Iterator<Item = (&'a str, &'a str)>) {
        self.metric.clear();
        for (name, value) in labels {
            self.inner.clear();
            bytes_field(&mut self.inner, LABEL_NAME, name.as_bytes());
            bytes_field(&mut self.inner, LABEL_VALUE, value.as_bytes());
            bytes_field(&mut self.metric, METRIC_LABEL, &self.inner);
        }
    }

    /// Ends the started `Metric` with its counter or gauge value.
    fn value(&mut self, value: f64) {
        self.inner.clear();
        double_field(&mut self.inner, VALUE, value);
        let field = if self.kind == Kind::Counter {
            METRIC_COUNTER
        } else {
            METRIC_GAUGE
        };
        bytes_field(&mut self.metric, field, &self.inner);
        self.end_metric();
    }

    fn end_metric(&mut self) {
        bytes_field(&mut self.family, FAMILY_METRIC, &self.metric);
    }
}

impl Families for Delimited<'_> {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.flush_family();
        self.kind = kind;
        bytes_field(&mut self.family, FAMILY_NAME, name.as_bytes());
        bytes_field(&mut self.family, FAMILY_HELP, help.as_bytes());
        let kind = match kind {
            Kind::Counter => TYPE_COUNTER,
            Kind::Gauge => TYPE_GAUGE,
            Kind::Histogram => TYPE_HISTOGRAM,
        };
        uint_field(&mut self.family, FAMILY_TYPE, kind);
    }

    fn sample(&mut self, _name: &str, labels: &[(SeriesLabel, &str)], own: &Labels, value: f64) {
        self.start_metric(merged(named(labels), own));
        self.value(value);
    }

    /// The native histogram in `native` mode; a classic one otherwise (not served today, but a
    /// correct answer all the same).
    fn histogram(&mut self, _name: &str, provider: &str, own: &Labels, latency: &Latency) {
        let Some(classic) = latency.classic() else {
            return;
        };
        self.start_metric(merged([(SeriesLabel::Provider.as_str(), provider)], own));
        self.inner.clear();
        let histogram = &mut self.inner;
        uint_field(histogram, SAMPLE_COUNT, classic.count);
        double_field(histogram, SAMPLE_SUM, classic.sum);
        match latency.native() {
            Some(native) => {
                sint_field(histogram, SCHEMA, i64::from(latency::SCHEMA));
                // A zero threshold above 0 also marks the histogram as native while it is
                // still empty (Prometheus 2.42 reads one with no buckets as classic otherwise).
                double_field(histogram, ZERO_THRESHOLD, latency::ZERO_THRESHOLD);
                uint_field(histogram, ZERO_COUNT, u64::from(native.zero_count));
                write_native_buckets(histogram, native.buckets());
            }
            None => {
                let mut bucket = Vec::with_capacity(24);
                for (bound, count) in LATENCY_BUCKETS.iter().zip(classic.cumulative) {
                    bucket.clear();
                    uint_field(&mut bucket, CUMULATIVE_COUNT, u64::from(count));
                    double_field(&mut bucket, UPPER_BOUND, *bound);
                    bytes_field(histogram, BUCKET, &bucket);
                }
            }
        }
        let inner = std::mem::take(&mut self.inner);
        bytes_field(&mut self.metric, METRIC_HISTOGRAM, &inner);
        self.inner = inner;
        self.end_metric();
    }

    fn series_done(&mut self) {}
}

/// Spans and deltas of the non-empty buckets (index, count), lowest first. As client_golang
/// does, a gap of one or two empty buckets is sent as zero counts rather than as a new span,
/// which costs more bytes; a histogram without observations gets one empty span, as newer
/// Prometheus versions expect of a native histogram.
fn write_native_buckets(histogram: &mut Vec<u8>, buckets: impl Iterator<Item = (i32, u64)>) {
    // (offset from the end of the previous span, length)
    let mut spans: Vec<(i32, u32)> = Vec::new();
    let mut deltas = Vec::new();
    let mut previous_count: i64 = 0;
    let mut next_index: Option<i32> = None;
    for (index, count) in buckets {
        match next_index {
            Some(next) if index - next <= 2 => {
                for _ in next..index {
                    varint(&mut deltas, zigzag(-previous_count));
                    previous_count = 0;
                }
                if let Some(span) = spans.last_mut() {
                    span.1 += (index - next) as u32 + 1;
                }
            }
            Some(next) => spans.push((index - next, 1)),
            None => spans.push((index, 1)),
        }
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        varint(&mut deltas, zigzag(count - previous_count));
        previous_count = count;
        next_index = Some(index + 1);
    }
    if spans.is_empty() {
        spans.push((0, 0));
    }
    let mut span = Vec::with_capacity(16);
    for (offset, length) in spans {
        span.clear();
        sint_field(&mut span, SPAN_OFFSET, i64::from(offset));
        uint_field(&mut span, SPAN_LENGTH, u64::from(length));
        bytes_field(histogram, POSITIVE_SPAN, &span);
    }
    if !deltas.is_empty() {
        // Packed, as proto3 writes repeated numbers (Prometheus reads both forms).
        bytes_field(histogram, POSITIVE_DELTA, &deltas);
    }
}

impl Metrics {
    /// Writes the protobuf exposition of every metric to `sink`, a family at a time.
    pub fn render_protobuf_to(&self, sink: &mut dyn std::io::Write) -> std::io::Result<()> {
        let snapshot = self.snapshot();
        let mut out = Delimited::new(sink);
        for family in self.gather() {
            let kind = match family.get_field_type() {
                prometheus::proto::MetricType::COUNTER => Kind::Counter,
                prometheus::proto::MetricType::GAUGE => Kind::Gauge,
                // The registry holds only counters and gauges (process metrics, build info,
                // reload and shard state).
                _ => continue,
            };
            out.family(family.name(), kind, family.help());
            for metric in family.get_metric() {
                let labels = metric
                    .get_label()
                    .iter()
                    .map(|label| (label.name(), label.value()));
                out.start_metric(labels);
                out.value(match kind {
                    Kind::Counter => metric.get_counter().get_value(),
                    _ => metric.get_gauge().get_value(),
                });
            }
        }
        write_providers(&mut out, &snapshot, SystemTime::now());
        out.finish()
    }
}

#[cfg(test)]
pub(crate) mod tests;
