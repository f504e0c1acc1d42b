//! `/metrics` as text: written from a snapshot of the provider records (taken under a short
//! lock) in the text format, version 0.0.4, a chunk at a time, optionally through gzip. Label
//! names are written in alphabetical order, as client libraries do; provider names need no
//! escaping ([A-Za-z0-9_.-]), nor do the closed label sets.

use std::fmt::Write as _;
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use prometheus::{Encoder, TextEncoder};

use crate::probe::Phase;
use crate::probe::canary::CanaryReason;
use crate::probe::token::TokenReason;

use crate::config::HistogramMode;

use super::latency::Latency;
use super::{Codes, Format, LATENCY_BUCKETS, Metrics, ProviderSeries, seconds_since_epoch};

impl Metrics {
    /// The text exposition of every metric.
    #[cfg(test)]
    pub fn render(&self) -> Vec<u8> {
        self.render_as(Format::Text)
    }

    /// The exposition of every metric in `format`.
    pub fn render_as(&self, format: Format) -> Vec<u8> {
        let mut page = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.render_format_to(format, &mut page);
        page
    }

    /// The text exposition gzip-compressed.
    #[cfg(test)]
    pub fn render_gzip(&self) -> std::io::Result<Vec<u8>> {
        self.render_gzip_as(Format::Text)
    }

    /// The exposition in `format`, gzip-compressed. The page streams through the encoder in
    /// chunks, so only the compressed page is ever held whole: 2 MiB rather than 30 MiB of text
    /// at 10 000 providers, and the allocator is not left holding a 30 MiB buffer's worth of
    /// pages between scrapes.
    pub fn render_gzip_as(&self, format: Format) -> std::io::Result<Vec<u8>> {
        let mut encoder = gzip_encoder(Vec::new());
        self.render_format_to(format, &mut encoder)?;
        encoder.finish()
    }

    fn render_format_to(
        &self,
        format: Format,
        sink: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        match format {
            Format::Text => self.render_to(sink),
            Format::Protobuf => self.render_protobuf_to(sink),
        }
    }

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

    /// Every provider's record as it is now. The lock is held only to take a pointer to each
    /// record (copied on write: a cycle that ends during the render writes a copy, the
    /// snapshot keeps what it took).
    pub(super) fn snapshot(&self) -> Vec<(Arc<str>, Arc<ProviderSeries>)> {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, record)| (Arc::clone(name), record.snapshot()))
            .collect()
    }

    /// The registry's families (process metrics, build info, reload and shard state), with
    /// the scrape-time gauges brought up to date.
    pub(super) fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.update_scrape_time_gauges();
        self.registry.gather()
    }
}

/// The one compression setting for `/metrics`: the fast level, as scrapes are frequent and the
/// text compresses about 15-fold even so.
fn gzip_encoder(into: Vec<u8>) -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::write::GzEncoder::new(into, flate2::Compression::fast())
}

/// Decompresses a gzip render into `sink` as it goes (a plain-text scrape served from the
/// shared gzip render, streamed: the 30 MiB text is never held whole).
pub fn gunzip_to(compressed: &[u8], sink: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut chunked = std::io::BufWriter::with_capacity(Out::CHUNK, sink);
    std::io::copy(&mut flate2::read::GzDecoder::new(compressed), &mut chunked)?;
    std::io::Write::flush(&mut chunked)
}

/// Decompresses a gzip render (tests compare it with the plain text).
#[cfg(test)]
pub fn gunzip(compressed: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut plain = Vec::with_capacity(compressed.len() * 16);
    gunzip_to(compressed, &mut plain)?;
    Ok(plain)
}

pub(super) type Snapshot = [(Arc<str>, Arc<ProviderSeries>)];

/// Text being written: gathered in a small buffer that is handed to the sink each time it
/// fills, between series. The first sink error is kept and ends the render.
pub(super) struct Out<'w> {
    text: String,
    sink: &'w mut dyn std::io::Write,
    failed: Option<std::io::Error>,
}

impl<'w> Out<'w> {
    /// Large enough that the encoder sees long runs, small enough to stay in cache.
    pub(super) const CHUNK: usize = 64 * 1024;

    pub(super) fn new(sink: &'w mut dyn std::io::Write) -> Self {
        Out {
            text: String::with_capacity(Self::CHUNK + 4 * 1024),
            sink,
            failed: None,
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

    /// Called after each provider's lines: hands the buffer over once it is full.
    pub(super) fn series_done(&mut self) {
        if self.text.len() >= Self::CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.failed.is_none()
            && let Err(error) = self.sink.write_all(self.text.as_bytes())
        {
            self.failed = Some(error);
        }
        self.text.clear();
    }

    pub(super) fn finish(mut self) -> std::io::Result<()> {
        self.flush();
        match self.failed {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl std::fmt::Write for Out<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.text.push_str(text);
        Ok(())
    }
}

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Where the provider families are written: the text format ([`Out`]) or the protobuf one
/// (`protobuf::Delimited`). [`write_providers`] is the one list of families, names and HELP
/// texts, so both formats carry the same series.
pub(super) trait Families {
    /// Starts a family.
    fn family(&mut self, name: &str, kind: Kind, help: &str);
    /// One series of the current (counter or gauge) family, labels sorted by name.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64);
    /// One provider's series of the current histogram family.
    fn histogram(&mut self, name: &str, provider: &str, latency: &Latency);
    /// Called after each provider's series of a family.
    fn series_done(&mut self);
}

impl Families for Out<'_> {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(
            self,
            "# HELP {name} {help}\n# TYPE {name} {}",
            kind.as_str()
        );
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.push_str(name);
        for (at, (label, value)) in labels.iter().enumerate() {
            self.push(if at == 0 { '{' } else { ',' });
            self.push_str(label);
            self.push_str("=\"");
            self.push_str(value);
            self.push('"');
        }
        if !labels.is_empty() {
            self.push('}');
        }
        self.push(' ');
        number(self, value);
        self.push('\n');
    }

    /// The classic buckets: text scrapers get them in `native` mode too.
    fn histogram(&mut self, name: &str, provider: &str, latency: &Latency) {
        let Some(histogram) = latency.classic() else {
            return;
        };
        let series = |out: &mut Self, suffix: &str| {
            out.push_str(name);
            out.push_str(suffix);
            out.push_str("{provider=\"");
            out.push_str(provider);
        };
        for (bound, count) in LATENCY_BUCKET_LABELS.iter().zip(histogram.cumulative) {
            series(self, "_bucket");
            self.push_str("\",le=\"");
            self.push_str(bound);
            self.push_str("\"} ");
            self.integer(count);
            self.push('\n');
        }
        series(self, "_bucket");
        self.push_str("\",le=\"+Inf\"} ");
        self.integer(histogram.count);
        self.push('\n');
        series(self, "_sum");
        self.push_str("\"} ");
        number(self, histogram.sum);
        self.push('\n');
        series(self, "_count");
        self.push_str("\"} ");
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

/// A family with one series per provider that has a value: `name{provider="…"} value`.
fn per_provider(
    out: &mut dyn Families,
    snapshot: &Snapshot,
    (name, kind, help): (&str, Kind, &str),
    value: impl Fn(&ProviderSeries) -> Option<f64>,
) {
    let mut wrote_header = false;
    for (provider, series) in snapshot {
        let Some(value) = value(series) else { continue };
        if !wrote_header {
            out.family(name, kind, help);
            wrote_header = true;
        }
        out.sample(name, &[("provider", provider)], value);
        out.series_done();
    }
}

/// A counter family by HTTP status `code`, exposing only the codes that were answered.
fn per_code(
    out: &mut dyn Families,
    snapshot: &Snapshot,
    (name, help): (&str, &str),
    counts: impl Fn(&ProviderSeries) -> &Codes,
) {
    if snapshot.iter().all(|(_, s)| counts(s).is_empty()) {
        return;
    }
    out.family(name, Kind::Counter, help);
    let mut digits = String::with_capacity(8);
    for (provider, series) in snapshot {
        for (code, count) in counts(series).iter() {
            digits.clear();
            let _ = write!(digits, "{code}");
            out.sample(
                name,
                &[("code", &digits), ("provider", provider)],
                count as f64,
            );
        }
        out.series_done();
    }
}

/// A counter family by `reason`, exposing only the reasons that happened.
fn per_reason(
    out: &mut dyn Families,
    snapshot: &Snapshot,
    (name, help): (&str, &str),
    reasons: &[&str],
    counts: impl Fn(&ProviderSeries) -> &[u64],
) {
    let mut wrote_header = false;
    for (provider, series) in snapshot {
        for (reason, count) in reasons.iter().zip(counts(series)) {
            if *count == 0 {
                continue;
            }
            if !wrote_header {
                out.family(name, Kind::Counter, help);
                wrote_header = true;
            }
            out.sample(
                name,
                &[("provider", provider), ("reason", reason)],
                *count as f64,
            );
        }
        out.series_done();
    }
}

/// A latency histogram family, absent in `none` mode (where [`last_duration`] stands in).
fn histogram(
    out: &mut dyn Families,
    snapshot: &Snapshot,
    (name, help): (&str, &str),
    get: impl Fn(&ProviderSeries) -> &Latency,
) {
    if snapshot
        .iter()
        .all(|(_, s)| get(s).mode() == HistogramMode::None)
    {
        return;
    }
    out.family(name, Kind::Histogram, help);
    for (provider, series) in snapshot {
        out.histogram(name, provider, get(series));
        out.series_done();
    }
}

pub(super) fn write_providers(out: &mut dyn Families, snapshot: &Snapshot, now: SystemTime) {
    let count = |value: u64| Some(value as f64);
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_requests_total",
            Kind::Counter,
            "Token requests sent by the periodic probes.",
        ),
        |s| count(s.token_requests),
    );
    per_reason(
        out,
        snapshot,
        (
            "oauth2_token_request_failures_total",
            "Token requests of the periodic probes that failed, by reason.",
        ),
        &TokenReason::ALL.map(TokenReason::as_str),
        |s| s.token_failures.counts(),
    );
    per_code(
        out,
        snapshot,
        (
            "oauth2_token_responses_total",
            "Token endpoint responses seen by the periodic probes, by HTTP status code.",
        ),
        |s| &s.token_responses,
    );
    if snapshot.iter().any(|(_, s)| s.grant.is_some()) {
        let name = "oauth2_token_grant_info";
        out.family(
            name,
            Kind::Gauge,
            "The grant_type of the periodic probes' token requests (always 1).",
        );
        for (provider, series) in snapshot {
            if let Some(grant) = series.grant {
                out.sample(
                    name,
                    &[("grant_type", grant.as_str()), ("provider", provider)],
                    1.0,
                );
                out.series_done();
            }
        }
    }
    histogram(
        out,
        snapshot,
        (
            "oauth2_token_request_duration_seconds",
            "Latency of the periodic probes' token requests.",
        ),
        |s| &s.token_duration,
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_request_last_duration_seconds",
            Kind::Gauge,
            "Latency of the periodic probes' last token request (with [metrics] histograms = \"none\", instead of oauth2_token_request_duration_seconds).",
        ),
        |s| s.token_duration.last(),
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_lifetime_seconds",
            Kind::Gauge,
            "Lifetime, as issued, of the last token the periodic probes obtained.",
        ),
        |s| s.token_lifetime,
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_last_success_timestamp_seconds",
            Kind::Gauge,
            "When the periodic probes last obtained a token.",
        ),
        |s| s.token_last_success,
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_valid",
            Kind::Gauge,
            "1 if the periodic probes hold a token that is not past its expiry and was not rejected by the last canary call (401, a token_rejected_status, or error=invalid_token), else 0.",
        ),
        |s| {
            let held = s.token?;
            let valid = held.is_some_and(|token| token.is_valid(now));
            Some(if valid { 1.0 } else { 0.0 })
        },
    );
    let expires_at = |s: &ProviderSeries| s.token.flatten().and_then(|token| token.expires_at);
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_expiry_timestamp_seconds",
            Kind::Gauge,
            "Expiry of the token held by the periodic probes (absent while unknown).",
        ),
        |s| expires_at(s).map(seconds_since_epoch),
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_expires_in_seconds",
            Kind::Gauge,
            "Seconds until the token held by the periodic probes expires, computed at scrape time, floored at 0.",
        ),
        |s| {
            expires_at(s).map(|at| {
                at.duration_since(now)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0)
            })
        },
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_canary_requests_total",
            Kind::Counter,
            "Canary API requests sent by the periodic probes.",
        ),
        |s| count(s.canary_requests),
    );
    per_reason(
        out,
        snapshot,
        (
            "oauth2_canary_request_failures_total",
            "Canary API requests of the periodic probes that failed, by reason (no_token: not sent because no token was held).",
        ),
        &CanaryReason::ALL.map(CanaryReason::as_str),
        |s| s.canary_failures.counts(),
    );
    histogram(
        out,
        snapshot,
        (
            "oauth2_canary_request_duration_seconds",
            "Latency of the periodic probes' canary API requests.",
        ),
        |s| &s.canary_duration,
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_canary_request_last_duration_seconds",
            Kind::Gauge,
            "Latency of the periodic probes' last canary API request (with [metrics] histograms = \"none\", instead of oauth2_canary_request_duration_seconds).",
        ),
        |s| s.canary_duration.last(),
    );
    per_code(
        out,
        snapshot,
        (
            "oauth2_canary_responses_total",
            "Canary API responses seen by the periodic probes, by HTTP status code.",
        ),
        |s| &s.canary_responses,
    );
    let name = "oauth2_unauthorized_responses_total";
    if !snapshot.is_empty() {
        out.family(
            name,
            Kind::Counter,
            "HTTP 401 answers seen by the periodic probes, by phase (token or canary).",
        );
        for (provider, series) in snapshot {
            // By label value, as the text format sorts them: canary before token.
            for phase in [Phase::Canary, Phase::Token] {
                out.sample(
                    name,
                    &[("phase", phase.as_str()), ("provider", provider)],
                    series.unauthorized[phase as usize] as f64,
                );
            }
            out.series_done();
        }
    }
    per_provider(
        out,
        snapshot,
        (
            "oauth2_probe_success",
            Kind::Gauge,
            "1 if the last periodic probe got a token and its canary passed, else 0.",
        ),
        |s| s.probe_success.map(|ok| if ok { 1.0 } else { 0.0 }),
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_probe_duration_seconds",
            Kind::Gauge,
            "Duration of the last periodic probe cycle.",
        ),
        |s| s.probe_duration,
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_probe_last_run_timestamp_seconds",
            Kind::Gauge,
            "When the last periodic probe cycle ended.",
        ),
        |s| s.probe_last_run,
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_probe_next_run_timestamp_seconds",
            Kind::Gauge,
            "When the next periodic probe cycle is due, back-off included (in the recent past while a cycle runs).",
        ),
        |s| s.next_run,
    );
    if snapshot.iter().any(|(_, s)| s.backoff.is_some()) {
        let name = "oauth2_probe_backoff";
        out.family(
            name,
            Kind::Gauge,
            "1 while the next periodic probe is put off beyond the interval on purpose: the token endpoint refused the credentials (reason as OAuth2CredentialsRejected names it), or a server answered 429 or 503 with Retry-After; absent otherwise.",
        );
        for (provider, series) in snapshot {
            if let Some((phase, reason)) = series.backoff {
                out.sample(
                    name,
                    &[
                        ("phase", phase.as_str()),
                        ("provider", provider),
                        ("reason", reason.as_str()),
                    ],
                    1.0,
                );
                out.series_done();
            }
        }
    }
    per_provider(
        out,
        snapshot,
        (
            "oauth2_exporter_probe_panics_total",
            Kind::Counter,
            "Probe cycles that panicked (a bug: please report it); the provider keeps being probed.",
        ),
        |s| count(s.panics),
    );
    super::expiry::write(out, snapshot);
}
