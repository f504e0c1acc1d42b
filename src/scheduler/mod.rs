//! Runs every provider's probe cycle on its own interval: one task per provider (so one slow
//! provider never delays another, and a provider's cycles never overlap), each cycle run inline
//! in that task (no task per cycle), start times spread over the first interval, every wait
//! cancellable, and a panicking cycle contained to its provider. Each task is given its
//! provider's name (shared, not copied), metrics and status handles and `/probe` mailbox at
//! start, so a cycle records without looking anything up. [`Scheduler::apply`] moves the
//! running set to a new configuration. When a cycle's next one is due, back-off included, is
//! `backoff`'s to say (issue 23); the loop also limits how often `/probe` may make a real
//! attempt, and during a back-off after refused credentials lets one through only when the
//! credentials changed.

mod backoff;
mod mailbox;
mod record;

pub use mailbox::{Directory, Mailbox, ProbeAnswer, ProbeRequest, Repeated, RepeatedBecause};

pub use record::Recorders;
pub(crate) use record::{Handles, ProviderRecord};

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ProviderConfig;
use crate::probe::trace::Trace;
use crate::probe::transport;
use crate::probe::{CycleReport, HeldToken, Phase, Prober};

use self::backoff::Backoff;
use crate::shard::Shard;

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
    record: Arc<ProviderRecord>,
}

/// A restarted provider that was backing off after refused credentials starts within this:
/// the reload may have fixed them, and the operator is watching (issue 23).
const PROMPT_START: Duration = Duration::from_secs(2);

/// The set of running provider tasks.
pub struct Scheduler {
    recorders: Arc<Recorders>,
    jitter: StartJitter,
    /// Shared by every provider with default TLS settings, across reloads: one connection pool.
    shared_client: transport::Client,
    /// Cancelled when the process shuts down: a provider started after that stops at once.
    root: CancellationToken,
    tracker: TaskTracker,
    running: HashMap<Arc<str>, Running>,
    /// With `--shard`, only the providers this shard owns run (on start and on every reload).
    shard: Option<Shard>,
}

impl Scheduler {
    /// Every provider's requests take their slots from `slots`; every provider's task stops
    /// when `root` is cancelled. Call within the runtime.
    pub fn new(
        recorders: Arc<Recorders>,
        jitter: StartJitter,
        slots: &transport::Slots,
        root: CancellationToken,
        tracker: TaskTracker,
    ) -> Result<Scheduler, transport::ClientError> {
        let shutdown = root.clone();
        let everyone = Arc::clone(&recorders);
        tracker.spawn(async move {
            shutdown.cancelled().await;
            everyone.directory().stop_all();
        });
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

    /// `[web] probe_min_interval`, for every provider's on-demand probes from now on.
    pub fn set_probe_min_interval(&self, limit: Duration) {
        self.recorders.set_probe_min_interval(limit);
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
        let (providers, elsewhere) = crate::shard::split(self.shard, providers, |p| &p.name);
        let elsewhere: HashMap<String, u32> = elsewhere
            .into_iter()
            .map(|(provider, owner)| (provider.name, owner))
            .collect();
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

        let recorders = Arc::clone(&self.recorders);
        let _exclusive = recorders.exclusive();
        for name in &changes.removed {
            if let Some(running) = self.running.remove(name.as_str()) {
                running.record.stop();
            }
            recorders.remove(name);
        }
        for (config, client) in to_start {
            let mut prompt = false;
            if let Some(old) = self.running.remove(config.name.as_str()) {
                old.record.stop();
                recorders.forget_token(&config.name);
                prompt = old.record.mailbox.backing_off.load(Ordering::Relaxed);
            }
            self.start(config, client, prompt);
        }
        recorders.set_elsewhere(elsewhere);
        Ok(changes)
    }

    /// Starts a provider's task; `prompt`: within [`PROMPT_START`] rather than anywhere in the
    /// first interval.
    fn start(&mut self, config: ProviderConfig, client: transport::Client, prompt: bool) {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let handles = self.recorders.add(
            &name,
            config.canary.is_some(),
            config.interval,
            &config.labels,
        );
        let record = Arc::clone(&handles);

        let first_delay = match (self.jitter, prompt) {
            (StartJitter::None, _) => Duration::ZERO,
            (StartJitter::Random, false) => random_below(config.interval),
            (StartJitter::Random, true) => random_below(config.interval.min(PROMPT_START)),
        };
        let config = Arc::new(config);
        let prober = Prober::new(Arc::clone(&config), client);
        self.tracker.spawn(run_provider(
            Box::new(prober),
            Arc::clone(&self.recorders),
            handles,
            first_delay,
        ));
        if self.root.is_cancelled() {
            record.stop();
        }
        self.running.insert(name, Running { config, record });
    }
}

/// What the provider loop needs of a prober; lets tests substitute a misbehaving one.
pub(crate) trait Cycle: Send + 'static {
    fn interval(&self) -> Duration;
    /// `max_backoff`: zero turns back-off off.
    fn max_backoff(&self) -> Duration;
    /// Whether the credentials changed since the last token request sent them (read without
    /// contacting any server).
    fn credentials_changed(&mut self) -> impl Future<Output = bool> + Send;
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

    fn max_backoff(&self) -> Duration {
        self.config.max_backoff
    }

    async fn credentials_changed(&mut self) -> bool {
        Prober::credentials_changed(self).await
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

/// What a provider's task remembers for `/probe` (boxed: most providers never need it).
#[derive(Default)]
struct Remembered {
    /// The last real on-demand attempt: when it ended, and its answer (always with a trace, so
    /// a debug request in the window gets one).
    on_demand: Option<(Instant, ProbeAnswer)>,
    /// The last refusal while backing off, for `/probe` callers who get it instead of an attempt.
    refusal: Option<(Instant, Arc<CycleReport>)>,
}

/// The prober comes boxed: an async fn keeps its arguments in its future beside the locals
/// they move into, so a prober passed by value (688 bytes) made every provider's task a
/// 2 KiB allocation; boxed, the task holds a pointer (BENCHMARKS.md, round five).
pub(crate) async fn run_provider<C: Cycle>(
    mut prober: Box<C>,
    recorders: Arc<Recorders>,
    handles: Handles,
    first_delay: Duration,
) {
    let name = &*handles.name;
    let interval = prober.interval();
    let mut backoff = Backoff::default();
    // When the next periodic cycle is due. After a stall (a cycle longer than the interval) the
    // next one starts at once and the pace resumes from there, as `MissedTickBehavior::Delay`
    // did: missed cycles are never fired back to back.
    let mut due = Instant::now() + first_delay;
    // While backing off after refused credentials: when their sources are read again next.
    let mut recheck: Option<Instant> = None;
    let mut remembered: Option<Box<Remembered>> = None;
    recorders.record_pace(&handles, due, &backoff);
    loop {
        let wake = recheck.map_or(due, |at| at.min(due));
        let mut waiting = Vec::new();
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = handles.mailbox.wake.notified() => {
                if handles.is_stopped() {
                    return;
                }
                // Everyone already waiting shares this one answer.
                waiting = handles.mailbox.take();
                if waiting.is_empty() {
                    continue; // their wake-up outlived them: nobody asked for this cycle
                }
            }
        }
        if waiting.is_empty() && Instant::now() < due {
            // A look at the credential sources during a back-off: no server is contacted.
            recheck = Some(Instant::now() + interval);
            // Boxed, like the cycle: its file reads' state would otherwise sit in every idle
            // task's allocation (about 1 KiB per provider, measured in BENCHMARKS.md).
            let Some(changed) =
                unless_stopped(&handles, Box::pin(prober.credentials_changed())).await
            else {
                return;
            };
            if changed {
                tracing::info!(
                    provider = %name,
                    "back-off ended: the credentials changed since they were refused; probing now"
                );
                backoff.end();
                recheck = None;
                due = Instant::now();
                recorders.record_pace(&handles, due, &backoff);
            }
            continue;
        }
        if !waiting.is_empty() {
            let limit = recorders.probe_min_interval();
            let memory = remembered.get_or_insert_with(Box::default);
            // 1. At most one real attempt per probe_min_interval.
            if let Some((at, answer)) = &memory.on_demand
                && at.elapsed() < limit
            {
                let repeated = Repeated {
                    age: at.elapsed(),
                    fresh_in: limit.saturating_sub(at.elapsed()),
                    why: RepeatedBecause::MinInterval(limit),
                };
                answer_all(waiting, answer, repeated);
                continue;
            }
            // 2. Backing off after a refusal: only a changed credential is worth an attempt.
            if backoff.refused() {
                let Some(changed) =
                    unless_stopped(&handles, Box::pin(prober.credentials_changed())).await
                else {
                    return;
                };
                if let (false, Some((at, report)), Some((_, reason))) =
                    (changed, &memory.refusal, backoff.holding)
                {
                    // The refusal's trace, when it was an on-demand attempt's.
                    let trace = memory
                        .on_demand
                        .as_ref()
                        .filter(|(_, answer)| Arc::ptr_eq(&answer.report, report))
                        .and_then(|(_, answer)| answer.trace.clone());
                    let answer = ProbeAnswer {
                        report: Arc::clone(report),
                        held: prober.held().cloned(),
                        trace,
                        repeated: None,
                    };
                    let repeated = Repeated {
                        age: at.elapsed(),
                        fresh_in: due.saturating_duration_since(Instant::now()),
                        why: RepeatedBecause::BackingOff {
                            steps: backoff.steps,
                            reason,
                        },
                    };
                    answer_all(waiting, &answer, repeated);
                    continue;
                }
                if changed {
                    tracing::info!(
                        provider = %name,
                        "back-off ended: the credentials changed since they were refused; probing on demand"
                    );
                    backoff.end();
                    recheck = None;
                    due = due.min(Instant::now() + interval);
                    recorders.record_pace(&handles, due, &backoff);
                }
            }
        }
        let on_demand = !waiting.is_empty();
        // An on-demand cycle always keeps its trace: a debug request repeated within
        // probe_min_interval gets it too.
        let Some(joined) =
            unless_stopped(&handles, Contained(Box::pin(prober.run(on_demand)))).await
        else {
            return;
        };
        let (report, trace) = match joined {
            Ok(done) => done,
            Err(()) => {
                let _recording = recorders.recording();
                if handles.is_stopped() {
                    return;
                }
                recorders.record_panic(&handles);
                prober.reset();
                if !on_demand {
                    due = (due + interval).max(Instant::now());
                    recorders.record_pace(&handles, due, &backoff);
                }
                // Dropping the waiting requests tells their callers the cycle failed.
                continue;
            }
        };
        let _recording = recorders.recording();
        if handles.is_stopped() {
            return; // removed or restarted meanwhile: its results are no longer wanted
        }
        let before = backoff;
        let delay = backoff.after(
            &report,
            interval,
            prober.max_backoff(),
            report.finished_at,
            random_fraction(),
        );
        let now = Instant::now();
        let due_before = due;
        if backoff.holding.is_some() {
            due = now + delay;
        } else if before.holding.is_some() {
            due = now + interval;
        } else if !on_demand {
            due = (due + interval).max(now);
        }
        recheck = backoff.refused().then(|| now + interval);
        log_pace(name, &before, &backoff, due, &report);
        if on_demand {
            recorders.record_on_demand(&handles, prober.held());
        } else {
            recorders.record(&handles, &report, prober.held());
        }
        // An on-demand cycle that changed nothing of the schedule leaves its gauge as it was
        // (converted again, the same moment would read a few nanoseconds off).
        if due != due_before || backoff != before {
            recorders.record_pace(&handles, due, &backoff);
        }
        let report = Arc::new(report);
        if backoff.refused() {
            remembered.get_or_insert_with(Box::default).refusal = Some((now, Arc::clone(&report)));
        } else if let Some(memory) = &mut remembered {
            memory.refusal = None;
        }
        if on_demand {
            let answer = ProbeAnswer {
                report,
                held: prober.held().cloned(),
                trace,
                repeated: None,
            };
            for request in waiting {
                let mut answer = answer.clone();
                if !request.debug {
                    answer.trace = None;
                }
                let _ = request.reply.send(answer);
            }
            remembered.get_or_insert_with(Box::default).on_demand = Some((now, answer));
        }
    }
}

/// Awaits `work` (boxed by the caller, so an idle task does not keep its state), or `None` when
/// the provider is stopped meanwhile. The wake-up that `/probe` requests and the stop share is
/// taken while it waits: one that was not the stop is handed back when `work` is done, so the
/// requests behind it are served next.
async fn unless_stopped<F: Future + Unpin>(
    record: &ProviderRecord,
    mut work: F,
) -> Option<F::Output> {
    let mut woken = false;
    let output = loop {
        tokio::select! {
            output = &mut work => break output,
            _ = record.mailbox.wake.notified() => {
                if record.is_stopped() {
                    return None;
                }
                woken = true;
            }
        }
    };
    if woken {
        record.mailbox.wake.notify_one();
    }
    Some(output)
}

/// Answers every waiting `/probe` caller with an earlier result.
fn answer_all(waiting: Vec<ProbeRequest>, answer: &ProbeAnswer, repeated: Repeated) {
    for request in waiting {
        let _ = request.reply.send(ProbeAnswer {
            report: Arc::clone(&answer.report),
            held: answer.held.clone(),
            trace: if request.debug {
                answer.trace.clone()
            } else {
                None
            },
            repeated: Some(repeated),
        });
    }
}

/// The log's account of a back-off: one line per step (why, how many, until when) and one when
/// it ends.
fn log_pace(provider: &str, before: &Backoff, after: &Backoff, due: Instant, report: &CycleReport) {
    let until = || {
        let at = SystemTime::now() + due.saturating_duration_since(Instant::now());
        humantime::format_rfc3339_seconds(at).to_string()
    };
    let wait = || {
        let seconds = due.saturating_duration_since(Instant::now()).as_secs();
        humantime::format_duration(Duration::from_secs(seconds)).to_string()
    };
    match (before.holding, after.holding) {
        (_, Some((Phase::Token, reason))) if after.refused() => tracing::warn!(
            provider,
            reason = reason.as_str(),
            refusals = after.steps,
            next_attempt = until(),
            "backing off: the token endpoint refused the credentials; the next attempt waits {}, unless they change",
            wait()
        ),
        (_, Some((phase, reason))) => tracing::warn!(
            provider,
            phase = phase.as_str(),
            reason = reason.as_str(),
            next_attempt = until(),
            "backing off: the server asked to be left alone; the next attempt waits {}",
            wait()
        ),
        (Some(_), None) if report.token_issued() => tracing::info!(
            provider,
            "back-off ended: a token was issued; probing at the interval again"
        ),
        // A timeout or an outage says nothing about the credentials: probed at the interval
        // to measure it, and a refusal after it takes the back-off's next step.
        (Some(_), None) if after.steps > 0 => tracing::info!(
            provider,
            refusals = after.steps,
            "the last attempt was neither refused nor given a token; probing at the interval while that lasts, a refusal continues the back-off"
        ),
        (Some(_), None) => {
            tracing::info!(provider, "back-off ended; probing at the interval again")
        }
        (None, None) => {}
    }
}

/// A random fraction in `[0, 1)` (back-off jitter), from the same source as [`random_below`].
fn random_fraction() -> f64 {
    random_below(Duration::from_nanos(1 << 30)).as_nanos() as f64 / f64::from(1u32 << 30)
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
        fn max_backoff(&self) -> Duration {
            Duration::ZERO
        }
        async fn credentials_changed(&mut self) -> bool {
            false
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
                grant: crate::config::GrantKind::ClientCredentials,
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
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let recorders = Recorders::new(Arc::clone(&metrics));
        let handles = recorders.add(
            &Arc::from("flaky"),
            false,
            Duration::from_millis(10),
            &crate::config::Labels::default(),
        );
        let record = Arc::clone(&handles);
        let cycles = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(run_provider(
            Box::new(PanicsOnce {
                cycles: Arc::clone(&cycles),
            }),
            recorders,
            handles,
            Duration::ZERO,
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while cycles.load(Ordering::SeqCst) < 4 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        record.stop();
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

#[cfg(test)]
mod size_tests {
    use super::*;

    /// An idle provider task is one allocation of this future for every provider, so its size
    /// is memory per provider (BENCHMARKS.md): what a cycle or a credential check needs while it
    /// runs is boxed, not kept in every idle task. Issue 23's unboxed credential check added
    /// about 1 KiB per provider before this was pinned.
    #[tokio::test]
    async fn an_idle_provider_task_stays_small() {
        let config = crate::config::load_str(
            "[providers.p.token]\nurl = \"http://127.0.0.1:1/token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
            &Default::default(),
        )
        .expect("a valid configuration")
        .providers
        .remove(0);
        let slots = transport::Slots::new(1);
        let client = transport::build_client(&Default::default(), &Default::default(), &slots)
            .expect("a client");
        let recorders = Recorders::new(Arc::new(crate::metrics::Metrics::new()));
        let handles = recorders.add(
            &Arc::from("p"),
            false,
            Duration::from_secs(3600),
            &crate::config::Labels::default(),
        );
        let task = run_provider(
            Box::new(Prober::new(Arc::new(config), client)),
            recorders,
            handles,
            Duration::from_secs(3600),
        );
        let size = std::mem::size_of_val(&task);
        // 528 bytes now; 640 in BENCHMARKS.md's round five; 1 320 with the check unboxed.
        assert!(size <= 640, "a provider task is {size} bytes");
    }
}
