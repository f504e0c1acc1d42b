//! The one record path (issue 24): [`Recorders`] holds what learns about providers, cycles and
//! reloads (the metrics, the status page, the directory `/probe` finds providers in, and the
//! log) and is the only place that writes to them. Built once by the daemon and shared with the
//! scheduler, every provider's turns and the web endpoints.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::backoff::Backoff;
use super::turn::Idle;
use super::{Directory, Mailbox};
use crate::config::ProviderConfig;
use crate::metrics::{Metrics, SeriesCell};
use crate::probe::{CycleReport, HeldToken};
use crate::status::{Row, StatusBoard};

/// Everything the exporter keeps of a running provider but its settings: its name, its metrics
/// record, its status row, its `/probe` mailbox and, between turns, its prober and schedule, in
/// one allocation (issue 24). The metrics, the status board and the directory each point into
/// it; its turns record through it without looking anything up.
pub(crate) struct ProviderRecord {
    /// Shared with the keys of the metrics', the board's and the directory's maps.
    pub name: Arc<str>,
    /// Its settings, shared with its prober: a reload compares them with the new ones.
    pub config: Arc<ProviderConfig>,
    series: SeriesCell,
    status: Row,
    pub mailbox: Mailbox,
    /// Set when the provider is to stop: it was removed or restarted, or the process shuts
    /// down. A flag beside the mailbox's wake-up, which tells a running turn, rather than a
    /// `CancellationToken` child per provider: that was an allocation of its own (BENCHMARKS.md
    /// round seven).
    stopped: AtomicBool,
    /// The provider's state while no turn runs (see `turn`).
    parked: Mutex<Parked>,
}

/// A provider's parked state, and how many times it was parked or woken: the clock's entry
/// names the generation it was made for.
#[derive(Default)]
struct Parked {
    idle: Option<Idle>,
    generation: u32,
}

/// What [`ProviderRecord::park`] did with a provider's state.
pub(crate) enum Parking {
    /// Parked until `at` (now when `/probe` requests wait), as `generation`.
    Parked { at: Instant, generation: u32 },
    /// Dropped: the provider is stopped.
    Stopped,
}

impl ProviderRecord {
    /// Stops the provider: a running turn at its next wake-up or now if it waits; a parked
    /// state (its prober, its held token) is dropped now, and so are waiting `/probe` requests
    /// (their callers learn at once that no cycle will answer).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.mailbox.wake.notify_one();
        let idle = self.parked().idle.take();
        drop(idle);
        drop(self.mailbox.take());
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, Parked> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Parks the provider's state until its next turn (due now if `/probe` requests wait),
    /// unless it was stopped. The requests are looked at under the lock
    /// [`ProviderRecord::rewake`] takes after a request is queued: each request is either seen
    /// here or finds the state parked.
    pub(super) fn park(&self, idle: Idle) -> Parking {
        let mut parked = self.parked();
        if self.is_stopped() {
            return Parking::Stopped;
        }
        parked.generation = parked.generation.wrapping_add(1);
        let at = if self.mailbox.has_waiting() {
            Instant::now()
        } else {
            idle.wake_at()
        };
        parked.idle = Some(idle);
        Parking::Parked {
            at,
            generation: parked.generation,
        }
    }

    /// The parked state, for the turn the clock's entry for `generation` starts; `None` when
    /// the entry is stale (a later park or a `/probe` wake-up made a newer one).
    pub(super) fn unpark(&self, generation: u32) -> Option<Idle> {
        let mut parked = self.parked();
        if parked.generation != generation {
            return None;
        }
        parked.idle.take()
    }

    /// For a `/probe` request: a new generation for an entry due now, when the state is
    /// parked; `None` while a turn holds it.
    pub(super) fn rewake(&self) -> Option<u32> {
        let mut parked = self.parked();
        parked.idle.as_ref()?;
        parked.generation = parked.generation.wrapping_add(1);
        Some(parked.generation)
    }
}

impl AsRef<SeriesCell> for ProviderRecord {
    fn as_ref(&self) -> &SeriesCell {
        &self.series
    }
}

impl AsRef<Row> for ProviderRecord {
    fn as_ref(&self) -> &Row {
        &self.status
    }
}

/// What a provider's turns record into and listen to.
pub(crate) type Handles = Arc<ProviderRecord>;

/// The metrics, the status board and the directory, written only through the methods below.
pub struct Recorders {
    metrics: Arc<Metrics>,
    status: StatusBoard,
    directory: Directory,
    /// Provider tasks record under the read side after checking they are still wanted;
    /// [`super::Scheduler::apply`] cancels and deletes under the write side. So a cycle that
    /// ends just as its provider is removed or restarted cannot write stale series back.
    changes: RwLock<()>,
    /// `[web] probe_min_interval` in nanoseconds, as loaded last (start or reload).
    probe_min_interval: AtomicU64,
}

impl Recorders {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Recorders> {
        Arc::new(Recorders {
            metrics,
            status: StatusBoard::default(),
            directory: Directory::default(),
            changes: RwLock::new(()),
            probe_min_interval: AtomicU64::new(
                u64::try_from(crate::config::DEFAULT_PROBE_MIN_INTERVAL.as_nanos())
                    .unwrap_or(u64::MAX),
            ),
        })
    }

    /// The metrics, for `/metrics` to render.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The status board, for the status page to render.
    pub fn status(&self) -> &StatusBoard {
        &self.status
    }

    /// Where `/probe` finds a provider's mailbox.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Registers a provider with the metrics, the status board and the directory, and returns
    /// the record its turns record through. Its own `labels` go with its series, its row and
    /// its `/probe` page (each holding the one shared set).
    pub(crate) fn add(&self, config: &Arc<ProviderConfig>) -> Handles {
        let name: &Arc<str> = &Arc::from(config.name.as_str());
        let (canary_configured, interval, labels) =
            (config.canary.is_some(), config.interval, &config.labels);
        // A provider restarted by a reload keeps its counters, and starts a new row.
        let record = self.metrics.add_provider_into(Arc::clone(name), |series| {
            Arc::new(ProviderRecord {
                name: Arc::clone(name),
                config: Arc::clone(config),
                series,
                status: Row::new(canary_configured, interval, labels.clone()),
                mailbox: Mailbox::default(),
                stopped: AtomicBool::new(false),
                parked: Mutex::default(),
            })
        });
        // Its counters go on under the labels now configured.
        self.metrics.set_labels(&record.series, labels);
        self.status
            .add_row(Arc::clone(name), StatusBoard::handle(Arc::clone(&record)));
        self.directory.insert(Arc::clone(name), Arc::clone(&record));
        record
    }

    /// Forgets a provider that is no longer configured: its series, its row, its mailbox.
    pub(crate) fn remove(&self, name: &str) {
        self.metrics.remove_provider(name);
        self.status.remove_provider(name);
        self.directory.remove(name);
    }

    /// Forgets the held token of a provider restarted with new settings.
    pub(crate) fn forget_token(&self, name: &str) {
        self.metrics.forget_token(name);
    }

    /// Which shard probes the configured providers this process does not.
    pub(crate) fn set_elsewhere(&self, elsewhere: std::collections::HashMap<String, u32>) {
        *self
            .directory
            .elsewhere
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = elsewhere;
    }

    /// Held while providers are removed or restarted (see [`Recorders::recording`]).
    pub(crate) fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.changes.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held while a task records; check its cancellation after taking it.
    pub(crate) fn recording(&self) -> RwLockReadGuard<'_, ()> {
        self.changes.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A periodic cycle: the metrics, the status row and the log line.
    pub(crate) fn record(&self, handles: &Handles, report: &CycleReport, held: Option<&HeldToken>) {
        self.metrics.record(&handles.series, report, held);
        handles.status.record(report, held);
        log_report(&handles.name, report);
    }

    /// An on-demand cycle: it answers its callers, and only the token it leaves is recorded
    /// (the periodic series stay the periodic probes' own).
    pub(crate) fn record_on_demand(&self, handles: &Handles, held: Option<&HeldToken>) {
        self.metrics.record_held(&handles.series, held);
    }

    /// A cycle that panicked: counted and logged; the task carries on.
    pub(crate) fn record_panic(&self, handles: &Handles) {
        self.metrics.record_panic(&handles.series);
        tracing::error!(
            provider = %handles.name,
            "probe cycle panicked; the provider's state was reset and probing continues"
        );
    }

    /// When a provider's next cycle is due and whether it backs off (issue 23).
    pub(crate) fn record_pace(&self, handles: &Handles, due: Instant, backoff: &Backoff) {
        let next_run = SystemTime::now() + due.saturating_duration_since(Instant::now());
        self.metrics
            .record_pace(&handles.series, next_run, backoff.holding);
        handles.status.record_pace(
            next_run,
            backoff.holding.map(|(_, reason)| (reason, backoff.steps)),
        );
        handles
            .mailbox
            .backing_off
            .store(backoff.refused(), Ordering::Relaxed);
    }

    /// The outcome of a configuration (re)load, for the metrics and the status page.
    pub fn record_reload(&self, successful: bool) {
        self.metrics.record_reload(successful);
        self.status.record_reload(successful);
    }

    /// Sets `[web] probe_min_interval` for every provider (at start and on reload).
    pub fn set_probe_min_interval(&self, limit: Duration) {
        let nanos = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        self.probe_min_interval.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn probe_min_interval(&self) -> Duration {
        Duration::from_nanos(self.probe_min_interval.load(Ordering::Relaxed))
    }
}

/// One line per cycle: `warn` on failure (with the reason and what the server said), `debug`
/// on success. Never a secret: error texts are scrubbed where they are made.
pub fn log_report(provider: &str, report: &CycleReport) {
    match report.failure() {
        Some(failure) => tracing::warn!(
            provider,
            phase = failure.phase().as_str(),
            reason = failure.reason.as_str(),
            status = failure.status.map(|s| s.to_string()).unwrap_or_default(),
            error = failure.detail,
            "probe failed"
        ),
        None => tracing::debug!(
            provider,
            token_requests = report.token_requests.len(),
            canary_requests = report.canary_requests.len(),
            duration_seconds = report.duration.as_secs_f64(),
            "probe succeeded"
        ),
    }
}
