//! Runs every provider's probe cycle on its own interval: one task per provider (so one slow
//! provider never delays another, and a provider's cycles never overlap), each cycle run inline
//! in that task (no task per cycle), start times spread over the first interval, every wait
//! cancellable, and a panicking cycle contained to its provider. Each task is given its
//! provider's name (shared, not copied), metrics and status handles and `/probe` mailbox at
//! start, so a cycle records without looking anything up. [`Scheduler::apply`] moves the
//! running set to a new configuration.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tokio::sync::{Notify, oneshot};

use crate::config::ProviderConfig;
use crate::metrics::{Metrics, ProviderMetrics};
use crate::probe::trace::Trace;
use crate::probe::transport;
use crate::probe::{CycleReport, HeldToken, Prober};
use crate::shard::Shard;
use crate::status::{StatusBoard, StatusHandle};

/// One caller's wish for a cycle now (`/probe`).
pub struct ProbeRequest {
    pub debug: bool,
    pub reply: oneshot::Sender<ProbeAnswer>,
}

/// What a `/probe` caller gets back: the cycle's report and the token held after it (data;
/// `metrics::probe_page` renders it), and the step-by-step trace when the caller asked for it.
#[derive(Debug, Clone)]
pub struct ProbeAnswer {
    pub report: Arc<CycleReport>,
    pub held: Option<HeldToken>,
    pub trace: Option<String>,
}

/// A provider's on-demand requests (`/probe`), waiting for its task. A lock, an empty `Vec` and
/// a `Notify` until the first request: a bounded channel allocated its buffer up front, for
/// every provider, though on-demand probes are rare.
#[derive(Default)]
pub struct Mailbox {
    waiting: Mutex<Vec<ProbeRequest>>,
    wake: Notify,
}

impl Mailbox {
    /// Queues a request for the provider's next cycle; refused (handed back) when
    /// [`ON_DEMAND_QUEUE`] are already waiting.
    pub fn try_send(&self, request: ProbeRequest) -> Result<(), ProbeRequest> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.len() >= ON_DEMAND_QUEUE {
            return Err(request);
        }
        waiting.push(request);
        drop(waiting);
        // Stores a wake-up if the task is busy with a cycle: it comes back for these next.
        self.wake.notify_one();
        Ok(())
    }

    /// Every request waiting now; they share one cycle.
    fn take(&self) -> Vec<ProbeRequest> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Where each running provider's task takes on-demand requests: its mailbox.
#[derive(Default)]
pub struct Directory {
    providers: Mutex<HashMap<Arc<str>, Arc<Mailbox>>>,
    /// Configured providers that another shard probes, so `/probe` can name it.
    elsewhere: Mutex<HashMap<String, u32>>,
}

impl Directory {
    /// The shard that probes `provider` when it is configured but not probed here.
    pub fn owner_elsewhere(&self, provider: &str) -> Option<u32> {
        self.elsewhere
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(provider)
            .copied()
    }

    pub fn insert(&self, provider: Arc<str>, mailbox: Arc<Mailbox>) {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(provider, mailbox);
    }

    pub fn remove(&self, provider: &str) {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(provider);
    }

    pub fn get(&self, provider: &str) -> Option<Arc<Mailbox>> {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(provider)
            .cloned()
    }

    /// Every provider name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .map(|name| name.to_string())
            .collect();
        names.sort();
        names
    }
}

/// How first cycles are spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartJitter {
    /// A random delay within the first interval, so providers sharing an identity provider do
    /// not fire in lockstep.
    Random,
    /// Every provider probes at once (tests, one-off checks).
    None,
}

/// What [`Scheduler::apply`] changed, by provider name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
}

struct Running {
    config: Arc<ProviderConfig>,
    cancel: CancellationToken,
}

/// What a provider's task records into and listens to, given at start: its name (one
/// allocation shared by the metrics, the status board and the directory), its metrics and
/// status handles, and its `/probe` mailbox.
pub(crate) struct Handles {
    pub name: Arc<str>,
    pub metrics: ProviderMetrics,
    pub status: StatusHandle,
    pub mailbox: Arc<Mailbox>,
}

/// Where a provider task writes what each periodic cycle saw.
#[derive(Clone)]
pub struct Recorders {
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusBoard>,
    pub directory: Arc<Directory>,
    /// Provider tasks record under the read side after checking they are still wanted;
    /// [`Scheduler::apply`] cancels and deletes under the write side. So a cycle that ends just
    /// as its provider is removed or restarted cannot write stale series back.
    pub changes: Arc<RwLock<()>>,
}

impl Recorders {
    pub fn new(metrics: Arc<Metrics>) -> Recorders {
        Recorders {
            metrics,
            status: Arc::default(),
            directory: Arc::default(),
            changes: Arc::default(),
        }
    }
}

/// Requests for on-demand cycles waiting at most this many per provider; more are refused.
const ON_DEMAND_QUEUE: usize = 64;

/// The set of running provider tasks.
pub struct Scheduler {
    recorders: Recorders,
    jitter: StartJitter,
    /// Shared by every provider with default TLS settings, across reloads: one connection pool.
    shared_client: transport::Client,
    root: CancellationToken,
    tracker: TaskTracker,
    running: HashMap<Arc<str>, Running>,
    /// With `--shard`, only the providers this shard owns run (on start and on every reload).
    shard: Option<Shard>,
}

impl Scheduler {
    /// Every provider's requests take their slots from `slots`.
    pub fn new(
        recorders: Recorders,
        jitter: StartJitter,
        slots: &transport::Slots,
        root: CancellationToken,
        tracker: TaskTracker,
    ) -> Result<Scheduler, transport::ClientError> {
        Ok(Scheduler {
            recorders,
            jitter,
            shared_client: transport::build_client(
                &Default::default(),
                &Default::default(),
                slots,
            )?,
            root,
            tracker,
            running: HashMap::new(),
            shard: None,
        })
    }

    /// From now on, run only the providers `shard` owns.
    pub fn set_shard(&mut self, shard: Option<Shard>) {
        self.shard = shard;
    }

    /// Makes exactly `providers` run: new ones start, removed ones stop and their series are
    /// deleted, changed ones restart with the new settings (a fresh token, counters kept), and
    /// unchanged ones keep running untouched, held token included. Nothing changes if a client
    /// cannot be built. Takes the configuration by value: each started provider's settings move
    /// into the one `Arc` its task and the scheduler share, never copied.
    pub fn apply(
        &mut self,
        providers: Vec<ProviderConfig>,
    ) -> Result<Changes, transport::ClientError> {
        // Every shard loads the same configuration; each keeps its own part of it.
        let (providers, elsewhere): (Vec<ProviderConfig>, Vec<ProviderConfig>) = providers
            .into_iter()
            .partition(|provider| self.shard.is_none_or(|shard| shard.owns(&provider.name)));
        let elsewhere: HashMap<String, u32> = match self.shard {
            Some(shard) => elsewhere
                .into_iter()
                .map(|p| (p.name.clone(), crate::shard::owner(&p.name, shard.total())))
                .collect(),
            None => HashMap::new(),
        };
        let mut changes = Changes::default();
        let wanted: std::collections::HashSet<&str> =
            providers.iter().map(|p| p.name.as_str()).collect();
        changes.removed = self
            .running
            .keys()
            .filter(|name| !wanted.contains(&***name))
            .map(|name| name.to_string())
            .collect();
        changes.removed.sort();
        let mut to_start = Vec::new();
        for provider in providers {
            match self.running.get(provider.name.as_str()) {
                Some(running) if *running.config == provider => {
                    changes.unchanged.push(provider.name);
                }
                existing => {
                    let client =
                        transport::client_for(&provider.tls, &provider.proxy, &self.shared_client)?;
                    if existing.is_some() {
                        changes.restarted.push(provider.name.clone());
                    } else {
                        changes.added.push(provider.name.clone());
                    }
                    to_start.push((provider, client));
                }
            }
        }

        let recorders = self.recorders.clone();
        let _exclusive = recorders
            .changes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for name in &changes.removed {
            if let Some(running) = self.running.remove(name.as_str()) {
                running.cancel.cancel();
            }
            self.recorders.metrics.remove_provider(name);
            self.recorders.status.remove_provider(name);
            self.recorders.directory.remove(name);
        }
        for (config, client) in to_start {
            if let Some(old) = self.running.remove(config.name.as_str()) {
                old.cancel.cancel();
                self.recorders.metrics.forget_token(&config.name);
            }
            self.start(config, client);
        }
        *self
            .recorders
            .directory
            .elsewhere
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = elsewhere;
        Ok(changes)
    }

    fn start(&mut self, config: ProviderConfig, client: transport::Client) {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let mailbox = Arc::new(Mailbox::default());
        let handles = Handles {
            metrics: self.recorders.metrics.add_provider(Arc::clone(&name)),
            status: self
                .recorders
                .status
                .add_provider(Arc::clone(&name), config.canary.is_some()),
            mailbox: Arc::clone(&mailbox),
            name: Arc::clone(&name),
        };
        self.recorders.directory.insert(Arc::clone(&name), mailbox);
        let cancel = self.root.child_token();
        let first_delay = match self.jitter {
            StartJitter::Random => random_below(config.interval),
            StartJitter::None => Duration::ZERO,
        };
        let config = Arc::new(config);
        let prober = Prober::new(Arc::clone(&config), client);
        self.tracker.spawn(run_provider(
            Box::new(prober),
            self.recorders.clone(),
            handles,
            first_delay,
            cancel.clone(),
        ));
        self.running.insert(name, Running { config, cancel });
    }
}

/// What the provider loop needs of a prober; lets tests substitute a misbehaving one.
pub(crate) trait Cycle: Send + 'static {
    fn interval(&self) -> Duration;
    fn held(&self) -> Option<&HeldToken>;
    /// Forgets all state (the held token), to carry on after a panic left it half-written.
    fn reset(&mut self);
    /// Runs one cycle: the report, and a trace when asked.
    fn run(&mut self, debug: bool) -> impl Future<Output = (CycleReport, Option<String>)> + Send;
}

impl Cycle for Prober {
    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn held(&self) -> Option<&HeldToken> {
        Prober::held(self)
    }

    fn reset(&mut self) {
        *self = Prober::new(Arc::clone(&self.config), self.client().clone());
    }

    async fn run(&mut self, debug: bool) -> (CycleReport, Option<String>) {
        if debug {
            let mut trace = Trace::default();
            let report = self.run_cycle(Some(&mut trace)).await;
            (report, Some(trace.finish()))
        } else {
            (self.run_cycle(None).await, None)
        }
    }
}

/// A cycle's future, polled in the provider's own task with a panic turned into `Err`, as a
/// task of its own would contain it: one allocation per cycle instead of a spawned task (its
/// scheduling, its join), and the idle provider task stays small, as the cycle's state lives
/// in this box only while the cycle runs.
struct Contained<F>(Pin<Box<F>>);

impl<F: Future> Future for Contained<F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let cycle = self.get_mut().0.as_mut();
        // After a panic the future is never polled again: it is dropped with the `Err`.
        match std::panic::catch_unwind(AssertUnwindSafe(|| cycle.poll(context))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_panic) => Poll::Ready(Err(())),
        }
    }
}

/// The prober comes boxed: an async fn keeps its arguments in its future beside the locals
/// they move into, so a prober passed by value (688 bytes) made every provider's task a
/// 2 KiB allocation; boxed, the task holds a pointer (BENCHMARKS.md, round five).
pub(crate) async fn run_provider<C: Cycle>(
    mut prober: Box<C>,
    recorders: Recorders,
    handles: Handles,
    first_delay: Duration,
    cancel: CancellationToken,
) {
    let name = &*handles.name;
    // `Delay`: after a stall (a cycle longer than the interval), continue at the normal pace
    // instead of firing the missed cycles back to back.
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + first_delay, prober.interval());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let mut waiting = Vec::new();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
            _ = handles.mailbox.wake.notified() => {
                // Everyone already waiting shares this one cycle.
                waiting = handles.mailbox.take();
                if waiting.is_empty() {
                    continue; // their wake-up outlived them: nobody asked for this cycle
                }
            }
        }
        let debug = waiting.iter().any(|request| request.debug);
        let joined = tokio::select! {
            _ = cancel.cancelled() => return,
            joined = Contained(Box::pin(prober.run(debug))) => joined,
        };
        match joined {
            Ok((report, trace)) => {
                let _recording = recorders
                    .changes
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                if cancel.is_cancelled() {
                    return; // removed or restarted meanwhile: its results are no longer wanted
                }
                if waiting.is_empty() {
                    recorders
                        .metrics
                        .record(&handles.metrics, &report, prober.held());
                    handles.status.record(&report, prober.held());
                    log_report(name, &report);
                } else {
                    // On-demand cycles answer their callers; the periodic series stay the
                    // periodic probes' own, but the token they hold now is the new one.
                    recorders
                        .metrics
                        .record_held(&handles.metrics, prober.held());
                    let report = Arc::new(report);
                    for request in waiting {
                        let answer = ProbeAnswer {
                            report: Arc::clone(&report),
                            held: prober.held().cloned(),
                            trace: request.debug.then(|| trace.clone().unwrap_or_default()),
                        };
                        let _ = request.reply.send(answer);
                    }
                }
            }
            Err(()) => {
                let _recording = recorders
                    .changes
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                if cancel.is_cancelled() {
                    return;
                }
                recorders.metrics.record_panic(&handles.metrics);
                tracing::error!(
                    provider = %name,
                    "probe cycle panicked; the provider's state was reset and probing continues"
                );
                prober.reset();
                // Dropping the waiting requests tells their callers the cycle failed.
            }
        }
    }
}

/// One line per cycle: `warn` on failure (with the reason and what the server said), `debug`
/// on success. Never a secret: error texts are scrubbed where they are made.
pub fn log_report(provider: &str, report: &CycleReport) {
    match report.failure() {
        Some(failure) => tracing::warn!(
            provider,
            phase = failure.phase,
            reason = failure.reason,
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

/// A uniformly spread delay in `[0, bound)`, from the standard library's randomly seeded hasher
/// (no cryptographic quality needed).
fn random_below(bound: Duration) -> Duration {
    let nanos = bound.as_nanos().min(u128::from(u64::MAX)) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(nanos);
    Duration::from_nanos(hasher.finish() % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::SystemTime;

    #[test]
    fn random_delays_stay_within_the_interval_and_vary() {
        let bound = Duration::from_secs(60);
        let delays: Vec<Duration> = (0..50).map(|_| random_below(bound)).collect();
        assert!(delays.iter().all(|d| *d < bound));
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "no variation: {delays:?}"
        );
        assert_eq!(random_below(Duration::ZERO), Duration::ZERO);
    }

    /// Panics on its second cycle; succeeds otherwise. Counts cycles across restarts.
    struct PanicsOnce {
        cycles: Arc<AtomicUsize>,
    }

    impl Cycle for PanicsOnce {
        fn interval(&self) -> Duration {
            Duration::from_millis(10)
        }
        fn held(&self) -> Option<&HeldToken> {
            None
        }
        fn reset(&mut self) {}
        async fn run(&mut self, _debug: bool) -> (CycleReport, Option<String>) {
            let n = self.cycles.fetch_add(1, Ordering::SeqCst);
            assert!(n != 1, "injected fault in cycle {n}");
            let report = CycleReport {
                token_requests: Vec::new(),
                canary_requests: Vec::new(),
                canary_skipped: false,
                success: true,
                grant: "client_credentials",
                duration: Duration::ZERO,
                finished_at: SystemTime::now(),
                expiries: Default::default(),
            };
            (report, None)
        }
    }

    /// Issue #4: a panic inside one provider's cycle is caught, counted, and probing goes on.
    #[tokio::test]
    async fn a_panicking_cycle_is_counted_and_probing_continues() {
        let metrics = Arc::new(Metrics::new());
        let recorders = Recorders::new(Arc::clone(&metrics));
        let name: Arc<str> = Arc::from("flaky");
        let handles = Handles {
            metrics: metrics.add_provider(Arc::clone(&name)),
            status: recorders.status.add_provider(Arc::clone(&name), false),
            mailbox: Arc::default(),
            name,
        };
        let cycles = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_provider(
            Box::new(PanicsOnce {
                cycles: Arc::clone(&cycles),
            }),
            recorders,
            handles,
            Duration::ZERO,
            cancel.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while cycles.load(Ordering::SeqCst) < 4 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
        task.await.unwrap();
        assert!(
            cycles.load(Ordering::SeqCst) >= 4,
            "probing stopped after the panic"
        );
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains("oauth2_exporter_probe_panics_total{provider=\"flaky\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("oauth2_probe_success{provider=\"flaky\"} 1\n"),
            "{text}"
        );
    }
}
