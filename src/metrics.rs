//! The exporter's metrics: one registry, registered once, written only by [`Metrics::record`]
//! from a cycle's report. Values that depend on the current time (validity, seconds until
//! expiry) are computed at scrape time by [`HeldTokenCollector`].

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::probe::{CycleReport, HeldToken};

/// Latency buckets in seconds: identity providers answer in tens of milliseconds when healthy
/// and in seconds when struggling; the timeout caps the top.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const PROVIDER: &[&str] = &["provider"];

/// What the scrape-time collector knows of a provider's held token.
#[derive(Debug, Clone, Copy, Default)]
struct TokenView {
    held: bool,
    expires_at: Option<SystemTime>,
    rejected: bool,
}

pub struct Metrics {
    registry: Registry,
    token_requests: IntCounterVec,
    token_failures: IntCounterVec,
    token_duration: HistogramVec,
    token_lifetime: GaugeVec,
    token_last_success: GaugeVec,
    canary_requests: IntCounterVec,
    canary_failures: IntCounterVec,
    canary_duration: HistogramVec,
    canary_responses: IntCounterVec,
    unauthorized: IntCounterVec,
    probe_success: GaugeVec,
    probe_duration: GaugeVec,
    probe_last_run: GaugeVec,
    probe_panics: IntCounterVec,
    reload_successful: prometheus::Gauge,
    reload_success_time: prometheus::Gauge,
    tokens: Arc<Mutex<HashMap<String, TokenView>>>,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("metric definitions are static")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("metric definitions are static")
}

fn histogram(name: &str, help: &str) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        PROVIDER,
    )
    .expect("metric definitions are static")
}

/// Removes one series; a series that was never created is fine.
fn drop_series<T: prometheus::core::MetricVecBuilder>(
    family: &prometheus::core::MetricVec<T>,
    labels: &[&str],
) {
    let _ = family.remove_label_values(labels);
}

fn seconds_since_epoch(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Metrics {
    pub fn new() -> Metrics {
        let tokens = Arc::new(Mutex::new(HashMap::new()));
        let metrics = Metrics {
            registry: Registry::new(),
            token_requests: counter(
                "oauth2_token_requests_total",
                "Token requests sent by the periodic probes.",
                PROVIDER,
            ),
            token_failures: counter(
                "oauth2_token_request_failures_total",
                "Token requests of the periodic probes that failed, by reason.",
                &["provider", "reason"],
            ),
            token_duration: histogram(
                "oauth2_token_request_duration_seconds",
                "Latency of the periodic probes' token requests.",
            ),
            token_lifetime: gauge(
                "oauth2_token_lifetime_seconds",
                "Lifetime, as issued, of the last token the periodic probes obtained.",
                PROVIDER,
            ),
            token_last_success: gauge(
                "oauth2_token_last_success_timestamp_seconds",
                "When the periodic probes last obtained a token.",
                PROVIDER,
            ),
            canary_requests: counter(
                "oauth2_canary_requests_total",
                "Canary API requests sent by the periodic probes.",
                PROVIDER,
            ),
            canary_failures: counter(
                "oauth2_canary_request_failures_total",
                "Canary API requests of the periodic probes that failed, by reason (no_token: not sent because no token was held).",
                &["provider", "reason"],
            ),
            canary_duration: histogram(
                "oauth2_canary_request_duration_seconds",
                "Latency of the periodic probes' canary API requests.",
            ),
            canary_responses: counter(
                "oauth2_canary_responses_total",
                "Canary API responses seen by the periodic probes, by HTTP status code.",
                &["provider", "code"],
            ),
            unauthorized: counter(
                "oauth2_unauthorized_responses_total",
                "HTTP 401 answers seen by the periodic probes, by phase (token or canary).",
                &["provider", "phase"],
            ),
            probe_success: gauge(
                "oauth2_probe_success",
                "1 if the last periodic probe got a token and its canary passed, else 0.",
                PROVIDER,
            ),
            probe_duration: gauge(
                "oauth2_probe_duration_seconds",
                "Duration of the last periodic probe cycle.",
                PROVIDER,
            ),
            probe_last_run: gauge(
                "oauth2_probe_last_run_timestamp_seconds",
                "When the last periodic probe cycle ended.",
                PROVIDER,
            ),
            probe_panics: counter(
                "oauth2_exporter_probe_panics_total",
                "Probe cycles that panicked (a bug: please report it); the provider keeps being probed.",
                PROVIDER,
            ),
            reload_successful: prometheus::Gauge::new(
                "oauth2_exporter_config_last_reload_successful",
                "1 if the last configuration (re)load succeeded, else 0.",
            )
            .expect("metric definitions are static"),
            reload_success_time: prometheus::Gauge::new(
                "oauth2_exporter_config_last_reload_success_timestamp_seconds",
                "When the configuration was last (re)loaded successfully.",
            )
            .expect("metric definitions are static"),
            tokens: Arc::clone(&tokens),
        };
        let build_info = gauge(
            "oauth2_exporter_build_info",
            "Version and git revision of the running oauth2-exporter; always 1.",
            &["version", "revision"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::REVISION])
            .set(1.0);

        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(metrics.token_requests.clone()),
            Box::new(metrics.token_failures.clone()),
            Box::new(metrics.token_duration.clone()),
            Box::new(metrics.token_lifetime.clone()),
            Box::new(metrics.token_last_success.clone()),
            Box::new(metrics.canary_requests.clone()),
            Box::new(metrics.canary_failures.clone()),
            Box::new(metrics.canary_duration.clone()),
            Box::new(metrics.canary_responses.clone()),
            Box::new(metrics.unauthorized.clone()),
            Box::new(metrics.probe_success.clone()),
            Box::new(metrics.probe_duration.clone()),
            Box::new(metrics.probe_last_run.clone()),
            Box::new(metrics.probe_panics.clone()),
            Box::new(metrics.reload_successful.clone()),
            Box::new(metrics.reload_success_time.clone()),
            Box::new(build_info),
            Box::new(HeldTokenCollector::new(tokens)),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        metrics
    }

    /// Creates a provider's unlabelled series at 0, so `rate()` works from the first scrape.
    pub fn add_provider(&self, provider: &str) {
        self.token_requests.with_label_values(&[provider]);
        self.canary_requests.with_label_values(&[provider]);
        self.token_duration.with_label_values(&[provider]);
        self.canary_duration.with_label_values(&[provider]);
        for phase in ["token", "canary"] {
            self.unauthorized.with_label_values(&[provider, phase]);
        }
        self.probe_panics.with_label_values(&[provider]);
    }

    /// Deletes every series of a provider that is no longer configured, so it stops being
    /// exported. Label values come from closed sets, so every possible series can be named.
    pub fn remove_provider(&self, provider: &str) {
        let only = [provider];
        drop_series(&self.token_requests, &only);
        drop_series(&self.token_duration, &only);
        drop_series(&self.token_lifetime, &only);
        drop_series(&self.token_last_success, &only);
        drop_series(&self.canary_requests, &only);
        drop_series(&self.canary_duration, &only);
        drop_series(&self.probe_success, &only);
        drop_series(&self.probe_duration, &only);
        drop_series(&self.probe_last_run, &only);
        drop_series(&self.probe_panics, &only);
        for phase in ["token", "canary"] {
            drop_series(&self.unauthorized, &[provider, phase]);
        }
        for reason in crate::token::REASONS {
            drop_series(&self.token_failures, &[provider, reason]);
        }
        for reason in crate::canary::REASONS {
            drop_series(&self.canary_failures, &[provider, reason]);
        }
        // Every status an HTTP client can report (hyper accepts 100 to 999).
        for code in 100..=999u16 {
            drop_series(&self.canary_responses, &[provider, &code.to_string()]);
        }
        self.forget_token(provider);
    }

    /// Forgets the held token of a provider (removed, or restarted with new settings).
    pub fn forget_token(&self, provider: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(provider);
    }

    /// Counts a probe cycle that panicked.
    pub fn record_panic(&self, provider: &str) {
        self.probe_panics.with_label_values(&[provider]).inc();
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
        for outcome in &report.token_requests {
            self.token_requests.with_label_values(&[provider]).inc();
            self.token_duration
                .with_label_values(&[provider])
                .observe(outcome.duration.as_secs_f64());
            if outcome.status == Some(401) {
                self.unauthorized
                    .with_label_values(&[provider, "token"])
                    .inc();
            }
            match &outcome.result {
                Ok(issued) => {
                    self.token_last_success
                        .with_label_values(&[provider])
                        .set(seconds_since_epoch(report.finished_at));
                    match issued.lifetime {
                        Some(lifetime) => self
                            .token_lifetime
                            .with_label_values(&[provider])
                            .set(lifetime.as_secs_f64()),
                        None => {
                            let _ = self.token_lifetime.remove_label_values(&[provider]);
                        }
                    }
                }
                Err(error) => self
                    .token_failures
                    .with_label_values(&[provider, error.reason()])
                    .inc(),
            }
        }
        for outcome in &report.canary_requests {
            self.canary_requests.with_label_values(&[provider]).inc();
            self.canary_duration
                .with_label_values(&[provider])
                .observe(outcome.duration.as_secs_f64());
            if let Some(status) = outcome.status {
                self.canary_responses
                    .with_label_values(&[provider, &status.to_string()])
                    .inc();
                if status == 401 {
                    self.unauthorized
                        .with_label_values(&[provider, "canary"])
                        .inc();
                }
            }
            if let Err(error) = &outcome.result {
                self.canary_failures
                    .with_label_values(&[provider, error.reason()])
                    .inc();
            }
        }
        if report.canary_skipped {
            self.canary_failures
                .with_label_values(&[provider, "no_token"])
                .inc();
        }
        self.probe_success
            .with_label_values(&[provider])
            .set(if report.success { 1.0 } else { 0.0 });
        self.probe_duration
            .with_label_values(&[provider])
            .set(report.duration.as_secs_f64());
        self.probe_last_run
            .with_label_values(&[provider])
            .set(seconds_since_epoch(report.finished_at));
        self.record_held(provider, held);
    }

    /// Records the token a provider holds (validity and expiry are computed from it at scrape
    /// time).
    pub fn record_held(&self, provider: &str, held: Option<&HeldToken>) {
        let view = TokenView {
            held: held.is_some(),
            expires_at: held.and_then(|h| h.expires_at),
            rejected: held.is_some_and(|h| h.rejected),
        };
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(provider.to_string(), view);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(64 * 1024);
        // Encoding into a Vec cannot fail for I/O reasons; a metric the text format cannot
        // express would be our bug, and a partial page is better than none.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "encoding metrics failed");
        }
        buffer
    }
}

/// Gzip-compresses rendered metrics (fast level: scrapes are frequent, bodies compress well).
pub fn gzip(plain: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(plain.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(plain)?;
    encoder.finish()
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Exports, at scrape time, whether each held token is valid and how long until it expires.
struct HeldTokenCollector {
    tokens: Arc<Mutex<HashMap<String, TokenView>>>,
    valid: GaugeVec,
    expiry: GaugeVec,
    expires_in: GaugeVec,
}

impl HeldTokenCollector {
    fn new(tokens: Arc<Mutex<HashMap<String, TokenView>>>) -> Self {
        HeldTokenCollector {
            tokens,
            valid: gauge(
                "oauth2_token_valid",
                "1 if the periodic probes hold a token that is not past its expiry and was not rejected with 401 by the last canary call, else 0.",
                PROVIDER,
            ),
            expiry: gauge(
                "oauth2_token_expiry_timestamp_seconds",
                "Expiry of the token held by the periodic probes (absent while unknown).",
                PROVIDER,
            ),
            expires_in: gauge(
                "oauth2_token_expires_in_seconds",
                "Seconds until the token held by the periodic probes expires, computed at scrape time, floored at 0.",
                PROVIDER,
            ),
        }
    }
}

impl Collector for HeldTokenCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.valid.desc();
        descs.extend(self.expiry.desc());
        descs.extend(self.expires_in.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // The lock is held while the gauges are rebuilt, so concurrent scrapes do not interleave.
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        self.valid.reset();
        self.expiry.reset();
        self.expires_in.reset();
        let now = SystemTime::now();
        for (provider, view) in tokens.iter() {
            let expired = view.expires_at.is_some_and(|at| at <= now);
            let valid = view.held && !expired && !view.rejected;
            self.valid
                .with_label_values(&[provider.as_str()])
                .set(if valid { 1.0 } else { 0.0 });
            if let Some(expires_at) = view.expires_at {
                self.expiry
                    .with_label_values(&[provider.as_str()])
                    .set(seconds_since_epoch(expires_at));
                let remaining = expires_at
                    .duration_since(now)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                self.expires_in
                    .with_label_values(&[provider.as_str()])
                    .set(remaining);
            }
        }
        let mut families = self.valid.collect();
        families.extend(self.expiry.collect());
        families.extend(self.expires_in.collect());
        families
    }
}
