//! `/metrics` in the text format, version 0.0.4: the registry's families through the
//! `prometheus` crate's encoder, then the provider families of the catalogue written a chunk at
//! a time into the sink ([`Out`]). Label names are written in alphabetical order, as client
//! libraries do (`le` last); label values are escaped as the format says (a provider's own
//! labels may hold any text; provider names and the closed sets never need it).

use std::fmt::Write as _;
use std::time::SystemTime;

use prometheus::{Encoder, TextEncoder};

use super::catalogue::write_providers;
use super::latency::Latency;
use super::snapshot::{Families, Kind, Sink, merged, named};
use super::{LATENCY_BUCKETS, Metrics};
use crate::config::{Labels, SeriesLabel};

impl Metrics {
    /// Writes the text exposition to `sink`, a chunk at a time.
    pub fn render_to(&self, sink: &mut dyn std::io::Write) -> std::io::Result<()> {
        let snapshot = self.snapshot();
        let mut process = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail for I/O reasons; a partial page beats none.
        if let Err(error) = TextEncoder::new().encode(&self.gather(), &mut process) {
            tracing::error!(%error, "encoding process metrics failed");
        }
        sink.write_all(&process)?;
        let mut out = Out::new(sink);
        write_providers(&mut out, &snapshot, SystemTime::now());
        out.finish()
    }
}

/// Text being written: gathered in a small buffer that is handed to the sink each time it
/// fills, between series. The first sink error is kept and ends the render.
pub(super) struct Out<'w> {
    text: String,
    sink: Sink<'w>,
}

impl<'w> Out<'w> {
    /// Large enough that the encoder sees long runs, small enough to stay in cache.
    pub(super) const CHUNK: usize = 64 * 1024;

    pub(super) fn new(sink: &'w mut dyn std::io::Write) -> Self {
        Out {
            text: String::with_capacity(Self::CHUNK + 4 * 1024),
            sink: Sink::new(sink),
        }
    }

    fn push_str(&mut self, text: &str) {
        self.text.push_str(text);
    }

    pub(super) fn push(&mut self, c: char) {
        self.text.push(c);
    }

    /// Writes `value` in decimal.
    pub(super) fn integer(&mut self, mut value: u64) {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        // Only ASCII digits were written.
        self.text
            .push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
    }

    /// `name="value"` pairs, comma-separated, each value escaped.
    fn labels<'a>(&mut self, labels: impl Iterator<Item = (&'a str, &'a str)>) {
        for (at, (name, value)) in labels.enumerate() {
            if at > 0 {
                self.push(',');
            }
            self.push_str(name);
            self.push_str("=\"");
            self.label_value(value);
            self.push('"');
        }
    }

    /// A label value as the text format escapes it: `\\`, `\"` and `\n`.
    fn label_value(&mut self, value: &str) {
        if !value.contains(['\\', '"', '\n']) {
            self.push_str(value);
            return;
        }
        for c in value.chars() {
            match c {
                '\\' => self.push_str("\\\\"),
                '"' => self.push_str("\\\""),
                '\n' => self.push_str("\\n"),
                c => self.push(c),
            }
        }
    }

    /// Called after each provider's lines: hands the buffer over once it is full.
    pub(super) fn series_done(&mut self) {
        if self.text.len() >= Self::CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.sink.write(&[self.text.as_bytes()]);
        self.text.clear();
    }

    pub(super) fn finish(mut self) -> std::io::Result<()> {
        self.flush();
        self.sink.finish()
    }
}

impl std::fmt::Write for Out<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.text.push_str(text);
        Ok(())
    }
}

impl Families for Out<'_> {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(
            self,
            "# HELP {name} {help}\n# TYPE {name} {}",
            kind.as_str()
        );
    }

    fn sample(&mut self, name: &str, labels: &[(SeriesLabel, &str)], own: &Labels, value: f64) {
        self.push_str(name);
        if !labels.is_empty() || !own.is_empty() {
            self.push('{');
            self.labels(merged(named(labels), own));
            self.push('}');
        }
        self.push(' ');
        number(self, value);
        self.push('\n');
    }

    /// The classic buckets: text scrapers get them in `native` mode too.
    fn histogram(&mut self, name: &str, provider: &str, own: &Labels, latency: &Latency) {
        let Some(histogram) = latency.classic() else {
            return;
        };
        let series = |out: &mut Self, suffix: &str| {
            out.push_str(name);
            out.push_str(suffix);
            out.push('{');
            out.labels(merged([(SeriesLabel::Provider.as_str(), provider)], own));
        };
        let le = SeriesLabel::Le.as_str();
        for (bound, count) in LATENCY_BUCKET_LABELS.iter().zip(histogram.cumulative) {
            series(self, "_bucket");
            self.push(',');
            self.push_str(le);
            self.push_str("=\"");
            self.push_str(bound);
            self.push_str("\"} ");
            self.integer(u64::from(count));
            self.push('\n');
        }
        series(self, "_bucket");
        self.push(',');
        self.push_str(le);
        self.push_str("=\"+Inf\"} ");
        self.integer(histogram.count);
        self.push('\n');
        series(self, "_sum");
        self.push_str("} ");
        number(self, histogram.sum);
        self.push('\n');
        series(self, "_count");
        self.push_str("} ");
        self.integer(histogram.count);
        self.push('\n');
    }

    fn series_done(&mut self) {
        Out::series_done(self);
    }
}

/// The `le` label of each of [`LATENCY_BUCKETS`], as [`number`] writes them (a test holds the
/// two together): written as text for every provider and scrape, so not formatted each time.
pub(super) const LATENCY_BUCKET_LABELS: [&str; LATENCY_BUCKETS.len()] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30",
];

/// Integers below this are exact in an `f64`, and written by [`Out::integer`].
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

pub(super) fn number(out: &mut Out<'_>, value: f64) {
    // Counters, timestamps in whole seconds and most gauges are integers: written as such,
    // without the float formatter (what `{value}` writes for them is the same text).
    if value.fract() == 0.0 && value.abs() < EXACT_INTEGERS && value.is_sign_positive() {
        out.integer(value as u64);
    } else if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}
