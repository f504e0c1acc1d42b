//! The exporter's metrics. Each provider's series live in one compact record, written only by
//! [`Metrics::record`] from a cycle's report. `/metrics` is written directly from a snapshot of
//! those records, taken under a short lock: a scrape is consistent (never half a cycle), and
//! costs little memory and time even for 10 000 providers, which a general-purpose registry
//! holding one object per series did not. Values that depend on the current time (validity,
//! seconds until expiry) are computed when the text is written. Process metrics, build info and
//! the reload state come from a small `prometheus` registry.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};

use crate::probe::{CycleReport, HeldToken, Validity};
use crate::probe::{canary, token};

/// Latency buckets in seconds: identity providers answer in tens of milliseconds when healthy
/// and in seconds when struggling; the timeout caps the top.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram with cumulative bucket counts, as exposed.
#[derive(Debug, Clone, Default)]
struct Histogram {
    cumulative: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(self.cumulative.iter_mut()) {
            if seconds <= *bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// Every series of one provider. A counter at 0 with a `reason` or `code` label has not happened
/// and is not exposed; an absent gauge has no value yet.
#[derive(Debug, Clone, Default)]
struct ProviderSeries {
    token_requests: u64,
    token_failures: [u64; token::REASONS.len()],
    token_duration: Histogram,
    token_lifetime: Option<f64>,
    token_last_success: Option<f64>,
    canary_requests: u64,
    canary_failures: [u64; canary::REASONS.len()],
    canary_duration: Histogram,
    /// By status code, sorted.
    canary_responses: Vec<(u16, u64)>,
    /// Token phase, canary phase.
    unauthorized: [u64; 2],
    probe_success: Option<bool>,
    probe_duration: Option<f64>,
    probe_last_run: Option<f64>,
    panics: u64,
    /// `None` until the first cycle: `oauth2_token_valid` is absent then. `Some(None)`: no token
    /// is held.
    token: Option<Option<Validity>>,
}

pub struct Metrics {
    providers: Mutex<BTreeMap<String, ProviderSeries>>,
    registry: Registry,
    reload_successful: Gauge,
    reload_success_time: Gauge,
}

fn seconds_since_epoch(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn reason_index(reasons: &[&str], reason: &str) -> Option<usize> {
    reasons.iter().position(|known| *known == reason)
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reload_successful = Gauge::new(
            "oauth2_exporter_config_last_reload_successful",
            "1 if the last configuration (re)load succeeded, else 0.",
        )
        .expect("metric definitions are static");
        let reload_success_time = Gauge::new(
            "oauth2_exporter_config_last_reload_success_timestamp_seconds",
            "When the configuration was last (re)loaded successfully.",
        )
        .expect("metric definitions are static");
        let build_info = GaugeVec::new(
            Opts::new(
                "oauth2_exporter_build_info",
                "Version and git revision of the running oauth2-exporter; always 1.",
            ),
            &["version", "revision"],
        )
        .expect("metric definitions are static");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::REVISION])
            .set(1.0);
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(reload_successful.clone()),
            Box::new(reload_success_time.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for collector in collectors {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            providers: Mutex::new(BTreeMap::new()),
            registry,
            reload_successful,
            reload_success_time,
        }
    }

    fn with_provider(&self, provider: &str, update: impl FnOnce(&mut ProviderSeries)) {
        let mut providers = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A provider that is not registered (removed while its last cycle ran) records nothing.
        if let Some(series) = providers.get_mut(provider) {
            update(series);
        }
    }

    /// Creates a provider's unlabelled series at 0, so `rate()` works from the first scrape.
    /// Counters of a provider registered again (restarted by a reload) go on.
    pub fn add_provider(&self, provider: &str) {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(provider.to_string())
            .or_default();
    }

    /// Deletes every series of a provider that is no longer configured.
    pub fn remove_provider(&self, provider: &str) {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(provider);
    }

    /// Forgets the held token of a provider restarted with new settings.
    pub fn forget_token(&self, provider: &str) {
        self.with_provider(provider, |series| series.token = None);
    }

    /// Counts a probe cycle that panicked.
    pub fn record_panic(&self, provider: &str) {
        self.with_provider(provider, |series| series.panics += 1);
    }

    /// Records the outcome of a configuration (re)load.
    pub fn record_reload(&self, success: bool) {
        self.reload_successful.set(if success { 1.0 } else { 0.0 });
        if success {
            self.reload_success_time
                .set(seconds_since_epoch(SystemTime::now()));
        }
    }

    /// Records one cycle's report and the token held after it. The only writer of metrics.
    pub fn record(&self, provider: &str, report: &CycleReport, held: Option<&HeldToken>) {
        self.with_provider(provider, |series| {
            for outcome in &report.token_requests {
                series.token_requests += 1;
                series
                    .token_duration
                    .observe(outcome.duration.as_secs_f64());
                if outcome.status == Some(401) {
                    series.unauthorized[0] += 1;
                }
                match &outcome.result {
                    Ok(issued) => {
                        series.token_last_success = Some(seconds_since_epoch(report.finished_at));
                        series.token_lifetime = issued.lifetime.map(|l| l.as_secs_f64());
                    }
                    Err(error) => {
                        if let Some(index) = reason_index(&token::REASONS, error.reason()) {
                            series.token_failures[index] += 1;
                        }
                    }
                }
            }
            for outcome in &report.canary_requests {
                series.canary_requests += 1;
                series
                    .canary_duration
                    .observe(outcome.duration.as_secs_f64());
                if let Some(status) = outcome.status {
                    match series
                        .canary_responses
                        .binary_search_by_key(&status, |(code, _)| *code)
                    {
                        Ok(at) => series.canary_responses[at].1 += 1,
                        Err(at) => series.canary_responses.insert(at, (status, 1)),
                    }
                    if status == 401 {
                        series.unauthorized[1] += 1;
                    }
                }
                if let Err(error) = &outcome.result
                    && let Some(index) = reason_index(&canary::REASONS, error.reason())
                {
                    series.canary_failures[index] += 1;
                }
            }
            if report.canary_skipped
                && let Some(index) = reason_index(&canary::REASONS, "no_token")
            {
                series.canary_failures[index] += 1;
            }
            series.probe_success = Some(report.success);
            series.probe_duration = Some(report.duration.as_secs_f64());
            series.probe_last_run = Some(seconds_since_epoch(report.finished_at));
            series.token = Some(held.map(HeldToken::validity));
        });
    }

    /// Records the token a provider holds (after an on-demand cycle).
    pub fn record_held(&self, provider: &str, held: Option<&HeldToken>) {
        self.with_provider(provider, |series| {
            series.token = Some(held.map(HeldToken::validity))
        });
    }

    /// The text exposition of every metric (for plain-text scrapes and tests).
    pub fn render(&self) -> Vec<u8> {
        let mut text = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.render_to(&mut text);
        text
    }

    /// The text exposition gzip-compressed. The text streams through the encoder in chunks, so only the
    /// compressed page is ever held whole: 2 MiB rather than 30 MiB at 10 000 providers, and
    /// the allocator is not left holding a 30 MiB buffer's worth of pages between scrapes.
    pub fn render_gzip(&self) -> std::io::Result<Vec<u8>> {
        let mut encoder = gzip_encoder(Vec::new());
        self.render_to(&mut encoder)?;
        encoder.finish()
    }

    /// Writes the text exposition to `sink`, a chunk at a time.
    pub fn render_to(&self, sink: &mut dyn std::io::Write) -> std::io::Result<()> {
        // The lock is held only to copy the records (about 600 bytes a provider).
        let snapshot: Vec<(String, ProviderSeries)> = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, series)| (name.clone(), series.clone()))
            .collect();
        let mut process = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail for I/O reasons; a partial page beats none.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut process) {
            tracing::error!(%error, "encoding process metrics failed");
        }
        sink.write_all(&process)?;
        let mut out = Out::new(sink);
        write_providers(&mut out, &snapshot, SystemTime::now());
        out.finish()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Compresses an already rendered text (when a plain-text render is shared with a gzip scrape).
pub fn gzip(plain: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = gzip_encoder(Vec::with_capacity(plain.len() / 8));
    encoder.write_all(plain)?;
    encoder.finish()
}

/// The one compression setting for `/metrics`: the fast level, as scrapes are frequent and the
/// text compresses about 15-fold even so.
fn gzip_encoder(into: Vec<u8>) -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::write::GzEncoder::new(into, flate2::Compression::fast())
}

/// Decompresses a gzip render (when it is shared with a plain-text scrape).
pub fn gunzip(compressed: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut plain = Vec::with_capacity(compressed.len() * 16);
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(compressed), &mut plain)?;
    Ok(plain)
}

// ---------------------------------------------------------------------------------------------
// The text format (version 0.0.4). Label names are written in alphabetical order, as client
// libraries do; provider names need no escaping ([A-Za-z0-9_.-]), nor do the closed label sets.

type Snapshot = [(String, ProviderSeries)];

/// Text being written: gathered in a small buffer that is handed to the sink each time it
/// fills, between series. The first sink error is kept and ends the render.
struct Out<'w> {
    text: String,
    sink: &'w mut dyn std::io::Write,
    failed: Option<std::io::Error>,
}

impl<'w> Out<'w> {
    /// Large enough that the encoder sees long runs, small enough to stay in cache.
    const CHUNK: usize = 64 * 1024;

    fn new(sink: &'w mut dyn std::io::Write) -> Self {
        Out {
            text: String::with_capacity(Self::CHUNK + 4 * 1024),
            sink,
            failed: None,
        }
    }

    fn push_str(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn push(&mut self, c: char) {
        self.text.push(c);
    }

    /// Called after each provider's lines: hands the buffer over once it is full.
    fn series_done(&mut self) {
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

    fn finish(mut self) -> std::io::Result<()> {
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

fn header(out: &mut Out<'_>, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn number(out: &mut Out<'_>, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

/// A family with one series per provider that has a value: `name{provider="…"} value`.
fn per_provider(
    out: &mut Out<'_>,
    snapshot: &Snapshot,
    (name, kind, help): (&str, &str, &str),
    value: impl Fn(&ProviderSeries) -> Option<f64>,
) {
    let mut wrote_header = false;
    for (provider, series) in snapshot {
        let Some(value) = value(series) else { continue };
        if !wrote_header {
            header(out, name, kind, help);
            wrote_header = true;
        }
        let _ = write!(out, "{name}{{provider=\"{provider}\"}} ");
        number(out, value);
        out.push('\n');
        out.series_done();
    }
}

/// A counter family by `reason`, exposing only the reasons that happened.
fn per_reason(
    out: &mut Out<'_>,
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
                header(out, name, "counter", help);
                wrote_header = true;
            }
            let _ = writeln!(
                out,
                "{name}{{provider=\"{provider}\",reason=\"{reason}\"}} {count}"
            );
        }
        out.series_done();
    }
}

fn histogram(
    out: &mut Out<'_>,
    snapshot: &Snapshot,
    (name, help): (&str, &str),
    get: impl Fn(&ProviderSeries) -> &Histogram,
) {
    if snapshot.is_empty() {
        return;
    }
    header(out, name, "histogram", help);
    for (provider, series) in snapshot {
        let histogram = get(series);
        for (bound, count) in LATENCY_BUCKETS.iter().zip(histogram.cumulative) {
            let _ = write!(out, "{name}_bucket{{provider=\"{provider}\",le=\"");
            number(out, *bound);
            let _ = writeln!(out, "\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{provider=\"{provider}\",le=\"+Inf\"}} {}",
            histogram.count
        );
        let _ = write!(out, "{name}_sum{{provider=\"{provider}\"}} ");
        number(out, histogram.sum);
        let _ = writeln!(
            out,
            "\n{name}_count{{provider=\"{provider}\"}} {}",
            histogram.count
        );
        out.series_done();
    }
}

fn write_providers(out: &mut Out<'_>, snapshot: &Snapshot, now: SystemTime) {
    let count = |value: u64| Some(value as f64);
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_requests_total",
            "counter",
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
        &token::REASONS,
        |s| &s.token_failures,
    );
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
            "oauth2_token_lifetime_seconds",
            "gauge",
            "Lifetime, as issued, of the last token the periodic probes obtained.",
        ),
        |s| s.token_lifetime,
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_last_success_timestamp_seconds",
            "gauge",
            "When the periodic probes last obtained a token.",
        ),
        |s| s.token_last_success,
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_valid",
            "gauge",
            "1 if the periodic probes hold a token that is not past its expiry and was not rejected with 401 by the last canary call, else 0.",
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
            "gauge",
            "Expiry of the token held by the periodic probes (absent while unknown).",
        ),
        |s| expires_at(s).map(seconds_since_epoch),
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_expires_in_seconds",
            "gauge",
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
            "counter",
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
        &canary::REASONS,
        |s| &s.canary_failures,
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
    let name = "oauth2_canary_responses_total";
    if snapshot.iter().any(|(_, s)| !s.canary_responses.is_empty()) {
        header(
            out,
            name,
            "counter",
            "Canary API responses seen by the periodic probes, by HTTP status code.",
        );
        for (provider, series) in snapshot {
            for (code, count) in &series.canary_responses {
                let _ = writeln!(
                    out,
                    "{name}{{code=\"{code}\",provider=\"{provider}\"}} {count}"
                );
            }
            out.series_done();
        }
    }
    let name = "oauth2_unauthorized_responses_total";
    if !snapshot.is_empty() {
        header(
            out,
            name,
            "counter",
            "HTTP 401 answers seen by the periodic probes, by phase (token or canary).",
        );
        for (provider, series) in snapshot {
            let [token, canary] = series.unauthorized;
            let _ = writeln!(
                out,
                "{name}{{phase=\"canary\",provider=\"{provider}\"}} {canary}\n{name}{{phase=\"token\",provider=\"{provider}\"}} {token}"
            );
            out.series_done();
        }
    }
    per_provider(
        out,
        snapshot,
        (
            "oauth2_probe_success",
            "gauge",
            "1 if the last periodic probe got a token and its canary passed, else 0.",
        ),
        |s| s.probe_success.map(|ok| if ok { 1.0 } else { 0.0 }),
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_probe_duration_seconds",
            "gauge",
            "Duration of the last periodic probe cycle.",
        ),
        |s| s.probe_duration,
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_probe_last_run_timestamp_seconds",
            "gauge",
            "When the last periodic probe cycle ended.",
        ),
        |s| s.probe_last_run,
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_exporter_probe_panics_total",
            "counter",
            "Probe cycles that panicked (a bug: please report it); the provider keeps being probed.",
        ),
        |s| count(s.panics),
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut histogram = Histogram::default();
        for seconds in [0.001, 0.02, 0.02, 3.0, 100.0] {
            histogram.observe(seconds);
        }
        assert_eq!(histogram.cumulative, [1, 1, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4]);
        assert_eq!(histogram.count, 5);
        assert!((histogram.sum - 103.041).abs() < 1e-9);
    }

    #[test]
    fn numbers_are_written_as_the_text_format_expects() {
        let mut sink = Vec::new();
        let mut out = Out::new(&mut sink);
        for value in [1.0, 0.25, 1_795_399_676.637_442_8, f64::INFINITY, f64::NAN] {
            number(&mut out, value);
            out.push(' ');
        }
        out.finish().unwrap();
        assert_eq!(sink, b"1 0.25 1795399676.6374428 +Inf NaN ");
    }

    /// The provider lines of a page (process metrics change between two renders).
    pub(crate) fn provider_lines(text: &[u8]) -> Vec<String> {
        String::from_utf8(text.to_vec())
            .unwrap()
            .lines()
            .filter(|line| line.contains("oauth2_"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_gzip_render_streams_the_same_page_in_many_chunks() {
        let metrics = Metrics::new();
        for index in 0..400 {
            metrics.add_provider(&format!("tenant{index}"));
        }
        let plain = metrics.render();
        assert!(plain.len() > 10 * Out::CHUNK, "{} bytes", plain.len());
        let compressed = metrics.render_gzip().unwrap();
        assert!(compressed.len() * 8 < plain.len(), "{}", compressed.len());
        let unpacked = gunzip(&compressed).unwrap();
        assert_eq!(provider_lines(&unpacked), provider_lines(&plain));
        assert!(provider_lines(&plain).len() > 400 * 30);
    }

    /// A sink that takes `room` bytes, then fails every write.
    struct Full {
        room: usize,
        writes_after_failure: usize,
    }

    impl std::io::Write for Full {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                self.writes_after_failure += 1;
                return Err(std::io::Error::other("full"));
            }
            let taken = data.len().min(self.room);
            self.room -= taken;
            Ok(taken)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_sink_ends_the_render_with_its_error() {
        let metrics = Metrics::new();
        for index in 0..400 {
            metrics.add_provider(&format!("tenant{index}"));
        }
        let mut sink = Full {
            room: 3 * Out::CHUNK,
            writes_after_failure: 0,
        };
        let error = metrics.render_to(&mut sink).unwrap_err();
        assert_eq!(error.to_string(), "full");
        assert_eq!(sink.writes_after_failure, 1, "kept writing after an error");
    }

    #[test]
    fn removed_providers_record_nothing_and_vanish() {
        let metrics = Metrics::new();
        metrics.add_provider("kept");
        metrics.add_provider("gone");
        metrics.record_panic("gone");
        metrics.remove_provider("gone");
        metrics.record_panic("gone");
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains("oauth2_token_requests_total{provider=\"kept\"} 0\n"));
        assert!(!text.contains("provider=\"gone\""), "{text}");
    }
}
