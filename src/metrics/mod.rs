//! The exporter's metrics. Each provider's series live in one compact record, written only by
//! [`Metrics::record`] from a cycle's report (through the [`ProviderMetrics`] handle the
//! provider's turns record through: no lookup by name per cycle). `/metrics` is written
//! directly from a snapshot of those records: each record is copied on write, so a snapshot is
//! a pointer per provider taken under a short lock, a scrape is consistent (never half a
//! cycle), and it costs little memory and time even for 30 000 providers, which a
//! general-purpose registry holding one object per series did not. Values that depend on the current time (validity,
//! seconds until expiry) are computed when the text is written. Process metrics, build info and
//! the reload state come from a small `prometheus` registry.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, GaugeVec, IntGauge, Opts, Registry};

use crate::by_name::ByName;
use crate::config::{GrantKind, HistogramMode, Labels};
use crate::probe::canary::CanaryReason;
use crate::probe::expiry::Expiries;
use crate::probe::token::TokenReason;
use crate::probe::transport::Slots;
use crate::probe::{CycleReport, HeldToken, HoldOff, Phase, Validity};

mod catalogue;
mod expiry;
mod exposition;
mod latency;
pub mod probe_page;
mod protobuf;
mod snapshot;
mod text;

#[cfg(test)]
pub use exposition::gunzip;
pub use exposition::gunzip_to;

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

/// A latency histogram with cumulative bucket counts, as exposed. The bucket counts are `u32`,
/// as the native histogram's are: a provider probed every second takes 136 years to overflow
/// one, and every provider keeps two of these (48 bytes each saved, BENCHMARKS.md round seven).
#[derive(Debug, Clone, Default)]
struct Histogram {
    cumulative: [u32; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(self.cumulative.iter_mut()) {
            if seconds <= *bound {
                *bucket = bucket.wrapping_add(1);
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
    token_failures: Failures<{ TokenReason::ALL.len() }>,
    token_duration: Latency,
    token_lifetime: Reading,
    token_last_success: Reading,
    canary_requests: u64,
    canary_failures: Failures<{ CanaryReason::ALL.len() }>,
    canary_duration: Latency,
    /// Token answers by status code: alerts read 401 and 403 whatever the body.
    token_responses: Codes,
    /// The `grant_type` of the last cycle (`oauth2_token_grant_info`).
    grant: Option<GrantKind>,
    /// By status code.
    canary_responses: Codes,
    /// 401 answers, by [`Phase`].
    unauthorized: [u64; Phase::ALL.len()],
    probe_success: Option<bool>,
    probe_duration: Reading,
    probe_last_run: Reading,
    panics: u64,
    /// `None` until the first cycle: `oauth2_token_valid` is absent then. `Some(None)`: no token
    /// is held.
    token: Option<Option<Validity>>,
    /// Credential and endpoint certificate expiries, credential changes (issue 13).
    expiries: Expiries,
    /// When the next cycle is due, back-off included (issue 23).
    next_run: Reading,
    /// Why the next cycle comes later than the interval, while it does.
    backoff: Option<(Phase, HoldOff)>,
    /// The provider's own labels, on every series (issue 26): a pointer to the set its
    /// configuration holds, copied with the record, never the labels themselves.
    labels: Labels,
}

/// A gauge's value, or none yet: an `Option<f64>` in 8 bytes rather than 16, NaN standing for
/// none (five in every provider's record, copied on write). No gauge kept this way is ever NaN:
/// each is a duration or a time.
#[derive(Debug, Clone, Copy)]
struct Reading(f64);

impl Default for Reading {
    fn default() -> Self {
        Reading(f64::NAN)
    }
}

impl Reading {
    fn of(value: f64) -> Reading {
        Reading(value)
    }

    fn get(self) -> Option<f64> {
        (!self.0.is_nan()).then_some(self.0)
    }
}

impl From<Option<f64>> for Reading {
    fn from(value: Option<f64>) -> Reading {
        Reading(value.unwrap_or(f64::NAN))
    }
}

/// Failures counted by reason (the index of the reason in its `ALL` list), allocated at the first
/// failure: most providers never fail, and their counters at 0 were a third of every record.
#[derive(Debug, Clone, Default)]
struct Failures<const N: usize>(Option<Box<[u64; N]>>);

impl<const N: usize> Failures<N> {
    fn count(&mut self, reason: usize) {
        let counts = self.0.get_or_insert_with(|| Box::new([0; N]));
        if let Some(count) = counts.get_mut(reason) {
            *count += 1;
        }
    }

    /// The count of each reason in order; empty until the first failure.
    fn counts(&self) -> &[u64] {
        self.0.as_deref().map_or(&[], |counts| counts.as_slice())
    }
}

/// Answers counted by HTTP status code, in code order. Nearly every provider only ever sees one
/// code (200), so the lowest is kept inline and only a second one allocates: a `Vec` per record
/// and phase was a heap block per provider for one number.
#[derive(Debug, Clone, Default)]
struct Codes {
    lowest: Option<(u16, u64)>,
    /// Every other code, sorted.
    more: Vec<(u16, u64)>,
}

impl Codes {
    /// Counts one answer with this status.
    fn count(&mut self, status: u16) {
        match &mut self.lowest {
            None => self.lowest = Some((status, 1)),
            Some((code, count)) if *code == status => *count += 1,
            Some(lowest) if status < lowest.0 => {
                let (code, count) = std::mem::replace(lowest, (status, 1));
                count_code(&mut self.more, code, count);
            }
            Some(_) => count_code(&mut self.more, status, 1),
        }
    }

    fn is_empty(&self) -> bool {
        self.lowest.is_none()
    }

    /// Every code with its count, in code order.
    fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.lowest.iter().chain(&self.more).copied()
    }
}

/// One provider's record, shared by the metrics (which list it) and the provider's turns (which
/// records through it). Copied on write: a scrape's snapshot holds the `Arc` of each record as
/// it was, and a cycle ending meanwhile writes a fresh copy.
#[derive(Clone)]
pub struct ProviderMetrics(Arc<dyn AsRef<SeriesCell> + Send + Sync>);

impl ProviderMetrics {
    fn cell(&self) -> &SeriesCell {
        (*self.0).as_ref()
    }

    fn snapshot(&self) -> Arc<ProviderSeries> {
        self.cell().snapshot()
    }
}

/// One provider's series, copied on write: a scrape takes a pointer to them, and a cycle that
/// ends while the page is rendered writes a copy. It lives inside whatever holds the provider's
/// other state (the scheduler keeps one allocation per provider, `scheduler::record`), so the
/// metrics reach it through [`ProviderMetrics`] without an allocation of its own.
pub struct SeriesCell(Mutex<Arc<ProviderSeries>>);

impl SeriesCell {
    fn update(&self, update: impl FnOnce(&mut ProviderSeries)) {
        let mut series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        update(Arc::make_mut(&mut series));
    }

    fn snapshot(&self) -> Arc<ProviderSeries> {
        Arc::clone(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl AsRef<SeriesCell> for SeriesCell {
    fn as_ref(&self) -> &SeriesCell {
        self
    }
}

/// Whom a record is for: a provider by name (looked up; reloads and tests), or the handle its
/// task holds (every cycle).
pub enum Recipient<'a> {
    Name(&'a str),
    Handle(&'a SeriesCell),
}

impl<'a> From<&'a str> for Recipient<'a> {
    fn from(name: &'a str) -> Self {
        Recipient::Name(name)
    }
}

impl<'a> From<&'a ProviderMetrics> for Recipient<'a> {
    fn from(handle: &'a ProviderMetrics) -> Self {
        Recipient::Handle(handle.cell())
    }
}

impl<'a> From<&'a SeriesCell> for Recipient<'a> {
    fn from(cell: &'a SeriesCell) -> Self {
        Recipient::Handle(cell)
    }
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
    /// Keys are the provider names the scheduler shares with the status board and `/probe`.
    providers: Mutex<ByName<ProviderMetrics>>,
    /// `[metrics] histograms`; changed only with the `providers` lock held, so a snapshot's
    /// records are all of the mode read with it.
    histograms: Mutex<HistogramMode>,
    registry: Registry,
    reload_successful: Gauge,
    reload_success_time: Gauge,
    /// Held while a reload's outcome is written and while the registry is gathered: the
    /// registry gathers its families by name, the time before the flag, so without it a scrape
    /// could read the previous reload's time and then the new reload's success
    /// (tests/it/reload.rs caught that once under load).
    reload_outcome: Mutex<()>,
    /// The process's request slots, read when a scrape asks (set once by the daemon).
    requests: OnceLock<Slots>,
    requests_in_flight: IntGauge,
    requests_in_flight_limit: IntGauge,
    shard_ordinal: Gauge,
    total_shards: Gauge,
}

/// Adds `count` answers with this status to a by-code list kept sorted.
fn count_code(counts: &mut Vec<(u16, u64)>, status: u16, count: u64) {
    match counts.binary_search_by_key(&status, |(code, _)| *code) {
        Ok(at) => counts[at].1 += count,
        Err(at) => counts.insert(at, (status, count)),
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
            providers: Mutex::new(ByName::default()),
            histograms: Mutex::new(HistogramMode::default()),
            registry,
            reload_successful,
            reload_success_time,
            reload_outcome: Mutex::new(()),
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

    fn with_provider<'a>(
        &self,
        provider: impl Into<Recipient<'a>>,
        update: impl FnOnce(&mut ProviderSeries),
    ) {
        match provider.into() {
            Recipient::Handle(record) => record.update(update),
            Recipient::Name(name) => {
                let record = self
                    .providers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(name)
                    .cloned();
                // A provider that is not registered (removed while its last cycle ran) records
                // nothing.
                if let Some(record) = record {
                    record.cell().update(update);
                }
            }
        }
    }

    /// [`Metrics::add_provider_into`] with the series in an allocation of their own, for
    /// tests.
    #[cfg(test)]
    pub fn add_provider(&self, provider: impl Into<Arc<str>>) -> ProviderMetrics {
        let provider = provider.into();
        if let Some(existing) = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&provider)
        {
            return existing.clone();
        }
        ProviderMetrics(self.add_provider_into(provider, Arc::new))
    }

    /// Creates a provider's unlabelled series at 0, so `rate()` works from the first scrape.
    /// They live inside a larger record, which `wrap` builds around them; the metrics keep a
    /// pointer to it. Counters of a provider registered again (restarted by a reload) go on:
    /// `wrap` is given the series it had.
    pub fn add_provider_into<R: AsRef<SeriesCell> + Send + Sync + 'static>(
        &self,
        provider: Arc<str>,
        wrap: impl FnOnce(SeriesCell) -> Arc<R>,
    ) -> Arc<R> {
        let mut providers = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let series = match providers.get(&provider) {
            Some(existing) => existing.snapshot(),
            None => Arc::new(ProviderSeries::new(self.histograms())),
        };
        let record = wrap(SeriesCell(Mutex::new(series)));
        providers.insert(provider, ProviderMetrics(record.clone()));
        record
    }

    /// Puts a provider's own labels on all its series (as added, and again when a reload
    /// restarts it: its counters go on under the labels now configured).
    pub fn set_labels<'a>(&self, provider: impl Into<Recipient<'a>>, labels: &Labels) {
        self.with_provider(provider, |series| {
            if series.labels != *labels {
                series.labels = labels.clone();
            }
        });
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
        let providers = self
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
        for record in providers.values() {
            record.cell().update(|series| {
                series.token_duration = Latency::new(mode);
                series.canary_duration = Latency::new(mode);
            });
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
    pub fn record_panic<'a>(&self, provider: impl Into<Recipient<'a>>) {
        self.with_provider(provider, |series| series.panics += 1);
    }

    /// Records the outcome of a configuration (re)load.
    pub fn record_reload(&self, success: bool) {
        // Both values under the lock a scrape gathers them with: a scrape must never see a
        // successful reload with the previous one's time.
        let _outcome = self
            .reload_outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if success {
            self.reload_success_time
                .set(seconds_since_epoch(SystemTime::now()));
        }
        self.reload_successful.set(if success { 1.0 } else { 0.0 });
    }

    /// Records one cycle's report and the token held after it. The only writer of metrics.
    pub fn record<'a>(
        &self,
        provider: impl Into<Recipient<'a>>,
        report: &CycleReport,
        held: Option<&HeldToken>,
    ) {
        self.with_provider(provider, |series| {
            for outcome in &report.token_requests {
                series.token_requests += 1;
                series
                    .token_duration
                    .observe(outcome.duration.as_secs_f64());
                if let Some(status) = outcome.status {
                    series.token_responses.count(status);
                    if status == 401 {
                        series.unauthorized[Phase::Token as usize] += 1;
                    }
                }
                match &outcome.result {
                    Ok(issued) => {
                        series.token_last_success =
                            Reading::of(seconds_since_epoch(report.finished_at));
                        series.token_lifetime =
                            Reading::from(issued.lifetime.map(|l| l.as_secs_f64()));
                    }
                    Err(error) => {
                        series.token_failures.count(error.reason() as usize);
                    }
                }
            }
            for outcome in &report.canary_requests {
                series.canary_requests += 1;
                series
                    .canary_duration
                    .observe(outcome.duration.as_secs_f64());
                if let Some(status) = outcome.status {
                    series.canary_responses.count(status);
                    if status == 401 {
                        series.unauthorized[Phase::Canary as usize] += 1;
                    }
                }
                if let Err(error) = &outcome.result {
                    series.canary_failures.count(error.reason() as usize);
                }
            }
            if report.canary_skipped {
                series.canary_failures.count(CanaryReason::NoToken as usize);
            }
            series.grant = Some(report.grant);
            series.probe_success = Some(report.success);
            series.probe_duration = Reading::of(report.duration.as_secs_f64());
            series.probe_last_run = Reading::of(seconds_since_epoch(report.finished_at));
            series.token = Some(held.map(HeldToken::validity));
            series.expiries = report.expiries;
        });
    }

    /// Records when a provider's next cycle is due and why it is later than the interval, if it
    /// is (issue 23).
    pub fn record_pace<'a>(
        &self,
        provider: impl Into<Recipient<'a>>,
        next_run: SystemTime,
        backoff: Option<(Phase, HoldOff)>,
    ) {
        self.with_provider(provider, |series| {
            series.next_run = Reading::of(seconds_since_epoch(next_run));
            series.backoff = backoff;
        });
    }

    /// Records the token a provider holds (after an on-demand cycle).
    pub fn record_held<'a>(&self, provider: impl Into<Recipient<'a>>, held: Option<&HeldToken>) {
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
