//! The exporter's metrics. Each provider's series live in one compact record, written only by
//! [`Metrics::record`] from a cycle's report. `/metrics` is written directly from a snapshot of
//! those records, taken under a short lock: a scrape is consistent (never half a cycle), and
//! costs little memory and time even for 10 000 providers, which a general-purpose registry
//! holding one object per series did not. Values that depend on the current time (validity,
//! seconds until expiry) are computed when the text is written. Process metrics, build info and
//! the reload state come from a small `prometheus` registry.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, GaugeVec, IntGauge, Opts, Registry};

use crate::config::HistogramMode;
use crate::probe::canary::CanaryReason;
use crate::probe::token::TokenReason;
use crate::probe::transport::Slots;
use crate::probe::{CycleReport, HeldToken, Validity};

mod exposition;
mod latency;
pub mod probe_page;
mod protobuf;

pub use exposition::{gunzip, gzip};

use latency::Latency;

/// Latency buckets in seconds: identity providers answer in tens of milliseconds when healthy
/// and in seconds when struggling; the timeout caps the top.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The exposition formats of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The text format, version 0.0.4.
    Text,
    /// Length-delimited `io.prometheus.client.MetricFamily` messages (`protobuf`).
    Protobuf,
}

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
    token_failures: [u64; TokenReason::ALL.len()],
    token_duration: Latency,
    token_lifetime: Option<f64>,
    token_last_success: Option<f64>,
    canary_requests: u64,
    canary_failures: [u64; CanaryReason::ALL.len()],
    canary_duration: Latency,
    /// Token answers by status code, sorted: alerts read 401 and 403 whatever the body.
    token_responses: Vec<(u16, u64)>,
    /// The `grant_type` of the last cycle (`oauth2_token_grant_info`).
    grant: Option<&'static str>,
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

impl ProviderSeries {
    fn new(histograms: HistogramMode) -> ProviderSeries {
        ProviderSeries {
            token_duration: Latency::new(histograms),
            canary_duration: Latency::new(histograms),
            ..ProviderSeries::default()
        }
    }
}

pub struct Metrics {
    providers: Mutex<BTreeMap<String, ProviderSeries>>,
    /// `[metrics] histograms`; changed only with the `providers` lock held, so a snapshot's
    /// records are all of the mode read with it.
    histograms: Mutex<HistogramMode>,
    registry: Registry,
    reload_successful: Gauge,
    reload_success_time: Gauge,
    /// The process's request slots, read when a scrape asks (set once by the daemon).
    requests: OnceLock<Slots>,
    requests_in_flight: IntGauge,
    requests_in_flight_limit: IntGauge,
    shard_ordinal: Gauge,
    total_shards: Gauge,
}

/// Counts one answer with this status in a by-code list kept sorted.
fn count_code(counts: &mut Vec<(u16, u64)>, status: u16) {
    match counts.binary_search_by_key(&status, |(code, _)| *code) {
        Ok(at) => counts[at].1 += 1,
        Err(at) => counts.insert(at, (status, 1)),
    }
}

fn seconds_since_epoch(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
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
        let shard_ordinal = Gauge::new(
            "oauth2_exporter_shard_ordinal",
            "This process's shard (--shard), 0-based; 0 when the fleet is not sharded.",
        )
        .expect("metric definitions are static");
        let total_shards = Gauge::new(
            "oauth2_exporter_total_shards",
            "How many shards this process believes the fleet has (--total-shards); 1 when not sharded.",
        )
        .expect("metric definitions are static");
        total_shards.set(1.0);
        let build_info = GaugeVec::new(
            Opts::new(
                "oauth2_exporter_build_info",
                "Version and git revision of the running oauth2-exporter; always 1.",
            ),
            &["version", "revision"],
        )
        .expect("metric definitions are static");
        let requests_in_flight = IntGauge::new(
            "oauth2_exporter_requests_in_flight",
            "Outgoing requests (token and canary) the exporter has in flight now.",
        )
        .expect("metric definitions are static");
        let requests_in_flight_limit = IntGauge::new(
            "oauth2_exporter_requests_in_flight_limit",
            "The most outgoing requests the exporter has in flight at once, derived from its file descriptor limit; a request that finds no free slot within half its timeout fails with reason exporter_busy.",
        )
        .expect("metric definitions are static");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::REVISION])
            .set(1.0);
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(reload_successful.clone()),
            Box::new(reload_success_time.clone()),
            Box::new(build_info),
            Box::new(requests_in_flight.clone()),
            Box::new(requests_in_flight_limit.clone()),
            Box::new(shard_ordinal.clone()),
            Box::new(total_shards.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for collector in collectors {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            providers: Mutex::new(BTreeMap::new()),
            histograms: Mutex::new(HistogramMode::default()),
            registry,
            reload_successful,
            reload_success_time,
            requests: OnceLock::new(),
            requests_in_flight,
            requests_in_flight_limit,
            shard_ordinal,
            total_shards,
        }
    }

    /// Exports the use and limit of the process's request slots from now on (the two gauges
    /// read 0 until then).
    pub fn watch_requests(&self, slots: Slots) {
        let _ = self.requests.set(slots);
    }

    /// Brings the scrape-time gauges up to date; called as a scrape is rendered.
    fn update_scrape_time_gauges(&self) {
        if let Some(slots) = self.requests.get() {
            self.requests_in_flight
                .set(i64::try_from(slots.in_flight()).unwrap_or(i64::MAX));
            self.requests_in_flight_limit
                .set(i64::try_from(slots.limit()).unwrap_or(i64::MAX));
        }
    }

    /// Records this process's shard (unsharded: shard 0 of 1), for the sharding alert.
    pub fn record_shard(&self, shard: Option<crate::shard::Shard>) {
        let (ordinal, total) = shard.map_or((0, 1), |s| (s.ordinal(), s.total()));
        self.shard_ordinal.set(f64::from(ordinal));
        self.total_shards.set(f64::from(total));
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
        let mut providers = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let histograms = self.histograms();
        providers
            .entry(provider.to_string())
            .or_insert_with(|| ProviderSeries::new(histograms));
    }

    /// The format for a scrape: protobuf when the scraper asks for it and native histograms are
    /// on (only that format carries them); text otherwise.
    pub fn format_for(&self, accepts_protobuf: bool) -> Format {
        if accepts_protobuf && self.histograms() == HistogramMode::Native {
            Format::Protobuf
        } else {
            Format::Text
        }
    }

    /// The current `[metrics] histograms`.
    fn histograms(&self) -> HistogramMode {
        *self
            .histograms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets `[metrics] histograms` (at start-up and on reload). A change starts both latency
    /// series of every provider afresh in the new form, which Prometheus reads as a counter
    /// reset: a classic and a native histogram cannot be converted into each other. Returns
    /// whether the mode changed.
    pub fn set_histograms(&self, mode: HistogramMode) -> bool {
        let mut providers = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut current = self
            .histograms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *current == mode {
            return false;
        }
        *current = mode;
        for series in providers.values_mut() {
            series.token_duration = Latency::new(mode);
            series.canary_duration = Latency::new(mode);
        }
        true
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
                if let Some(status) = outcome.status {
                    count_code(&mut series.token_responses, status);
                    if status == 401 {
                        series.unauthorized[0] += 1;
                    }
                }
                match &outcome.result {
                    Ok(issued) => {
                        series.token_last_success = Some(seconds_since_epoch(report.finished_at));
                        series.token_lifetime = issued.lifetime.map(|l| l.as_secs_f64());
                    }
                    Err(error) => {
                        series.token_failures[error.reason() as usize] += 1;
                    }
                }
            }
            for outcome in &report.canary_requests {
                series.canary_requests += 1;
                series
                    .canary_duration
                    .observe(outcome.duration.as_secs_f64());
                if let Some(status) = outcome.status {
                    count_code(&mut series.canary_responses, status);
                    if status == 401 {
                        series.unauthorized[1] += 1;
                    }
                }
                if let Err(error) = &outcome.result {
                    series.canary_failures[error.reason() as usize] += 1;
                }
            }
            if report.canary_skipped {
                series.canary_failures[CanaryReason::NoToken as usize] += 1;
            }
            series.grant = Some(report.grant);
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
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
pub(crate) mod tests;
