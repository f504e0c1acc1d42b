//! A provider's turn: what runs when its clock entry comes due or a `/probe` caller wakes it. A
//! turn is a task that lives only while the provider has something to do (a cycle, a look at
//! its credential sources during a back-off, an on-demand request) and then parks the
//! provider's state ([`Idle`]) in its record until the next one, with the [`Clock`]. An idle
//! provider is that parked state and one clock entry: a task per provider waiting on its own
//! timer was a 512-byte task allocation for every provider (BENCHMARKS.md, round eight).
//!
//! A provider's turns never overlap: the state is either parked or held by the one turn that
//! took it. What a cycle does to the schedule (back-off included) is `backoff`'s to say
//! (issue 23); a turn also limits how often `/probe` may make a real attempt, and during a
//! back-off after refused credentials lets one through only when the credentials changed.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::backoff::Backoff;
use super::mailbox::{ProbeAnswer, ProbeRequest, Repeated, RepeatedBecause};
use super::record::{Handles, ProviderRecord, Recorders};
use crate::probe::trace::Trace;
use crate::probe::{CycleReport, HeldToken, Phase, Prober};

/// A future a [`Cycle`] returns, boxed: a turn holds it only while it runs.
pub(crate) type Work<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a turn needs of a prober; lets tests substitute a misbehaving one.
pub(crate) trait Cycle: Send + 'static {
    fn interval(&self) -> Duration;
    /// `max_backoff`: zero turns back-off off.
    fn max_backoff(&self) -> Duration;
    /// Whether the credentials changed since the last token request sent them (read without
    /// contacting any server).
    fn credentials_changed(&mut self) -> Work<'_, bool>;
    fn held(&self) -> Option<&HeldToken>;
    /// Forgets all state (the held token), to carry on after a panic left it half-written.
    fn reset(&mut self);
    /// Runs one cycle: the report, and a trace when asked.
    fn run(&mut self, debug: bool) -> Work<'_, (CycleReport, Option<String>)>;
}

impl Cycle for Prober {
    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn max_backoff(&self) -> Duration {
        self.config.max_backoff
    }

    fn credentials_changed(&mut self) -> Work<'_, bool> {
        Box::pin(Prober::credentials_changed(self))
    }

    fn held(&self) -> Option<&HeldToken> {
        Prober::held(self)
    }

    fn reset(&mut self) {
        *self = Prober::new(Arc::clone(&self.config), self.client().clone());
    }

    fn run(&mut self, debug: bool) -> Work<'_, (CycleReport, Option<String>)> {
        Box::pin(async move {
            if debug {
                let mut trace = Trace::default();
                let report = self.run_cycle(Some(&mut trace)).await;
                (report, Some(trace.finish()))
            } else {
                (self.run_cycle(None).await, None)
            }
        })
    }
}

/// What a provider keeps between its turns: parked in its record while no turn runs.
pub(crate) struct Idle {
    prober: Box<dyn Cycle>,
    backoff: Backoff,
    /// When the next periodic cycle is due. After a stall (a cycle longer than the interval)
    /// the next one starts at once and the pace resumes from there: missed cycles are never
    /// fired back to back.
    due: Instant,
    /// While backing off after refused credentials: when their sources are read again next.
    recheck: Option<Instant>,
    /// Boxed: most providers never serve `/probe`.
    remembered: Option<Box<Remembered>>,
}

impl Idle {
    /// A provider about to start, its first cycle due at `first`.
    pub fn new(prober: Box<dyn Cycle>, first: Instant) -> Idle {
        Idle {
            prober,
            backoff: Backoff::default(),
            due: first,
            recheck: None,
            remembered: None,
        }
    }

    /// When its next turn is due: its next cycle, or the look at its credentials before it.
    pub fn wake_at(&self) -> Instant {
        self.recheck.map_or(self.due, |at| at.min(self.due))
    }

    /// Ends a back-off after refused credentials (they changed), the next cycle due at `due`.
    fn end_backoff(&mut self, due: Instant, recorders: &Recorders, handles: &Handles) {
        self.backoff.end();
        self.recheck = None;
        self.due = due;
        self.record_pace(recorders, handles);
    }

    /// Notes its pace with the metrics and the status row (at start; then after each change).
    pub fn record_pace(&self, recorders: &Recorders, handles: &Handles) {
        recorders.record_pace(handles, self.due, &self.backoff);
    }
}

/// What a provider remembers for `/probe` (boxed: most providers never need it).
#[derive(Default)]
struct Remembered {
    /// The last real on-demand attempt: when it ended, and its answer (always with a trace, so
    /// a debug request in the window gets one).
    on_demand: Option<(Instant, ProbeAnswer)>,
    /// The last refusal while backing off, for `/probe` callers who get it instead of an attempt.
    refusal: Option<(Instant, Arc<CycleReport>)>,
}

/// Runs a provider's turn: steps until nothing is due, then parks its state with the clock
/// (due at once when requests came meanwhile).
pub(crate) async fn run(mut idle: Idle, recorders: Arc<Recorders>, handles: Handles) {
    loop {
        if handles.is_stopped() {
            return;
        }
        let waiting = handles.mailbox.take();
        if step(&mut idle, &recorders, &handles, waiting)
            .await
            .is_none()
        {
            return;
        }
        if idle.wake_at() <= Instant::now() {
            continue;
        }
        recorders.directory().clock.park(idle, handles);
        return;
    }
}

/// One step of a provider: a periodic cycle, a look at its credentials during a back-off, or
/// the on-demand requests `waiting`. `None` when the provider was stopped meanwhile.
async fn step(
    idle: &mut Idle,
    recorders: &Recorders,
    handles: &Handles,
    waiting: Vec<ProbeRequest>,
) -> Option<()> {
    let name = &*handles.name;
    let interval = idle.prober.interval();
    if waiting.is_empty() {
        let now = Instant::now();
        if now < idle.wake_at() {
            return Some(()); // woken for requests an earlier step already served
        }
        if now < idle.due {
            // A look at the credential sources during a back-off: no server is contacted.
            idle.recheck = Some(now + interval);
            let changed = unless_stopped(handles, idle.prober.credentials_changed()).await?;
            if changed {
                tracing::info!(
                    provider = %name,
                    "back-off ended: the credentials changed since they were refused; probing now"
                );
                idle.end_backoff(Instant::now(), recorders, handles);
            }
            return Some(());
        }
    } else {
        let limit = recorders.probe_min_interval();
        let memory = idle.remembered.get_or_insert_with(Box::default);
        // 1. At most one real attempt per probe_min_interval.
        if let Some((at, answer)) = &memory.on_demand
            && at.elapsed() < limit
        {
            let repeated = Repeated {
                age: at.elapsed(),
                fresh_in: limit.saturating_sub(at.elapsed()),
                why: RepeatedBecause::MinInterval(limit),
            };
            answer_all(waiting, answer, Some(repeated));
            return Some(());
        }
        // 2. Backing off after a refusal: only a changed credential is worth an attempt.
        if idle.backoff.refused() {
            let changed = unless_stopped(handles, idle.prober.credentials_changed()).await?;
            let memory = idle.remembered.get_or_insert_with(Box::default);
            if let (false, Some((at, report)), Some((_, reason))) =
                (changed, &memory.refusal, idle.backoff.holding)
            {
                // The refusal's trace, when it was an on-demand attempt's.
                let trace = memory
                    .on_demand
                    .as_ref()
                    .filter(|(_, answer)| Arc::ptr_eq(&answer.report, report))
                    .and_then(|(_, answer)| answer.trace.clone());
                let answer = ProbeAnswer {
                    report: Arc::clone(report),
                    held: idle.prober.held().cloned(),
                    trace,
                    repeated: None,
                };
                let repeated = Repeated {
                    age: at.elapsed(),
                    fresh_in: idle.due.saturating_duration_since(Instant::now()),
                    why: RepeatedBecause::BackingOff {
                        steps: idle.backoff.steps,
                        reason,
                    },
                };
                answer_all(waiting, &answer, Some(repeated));
                return Some(());
            }
            if changed {
                tracing::info!(
                    provider = %name,
                    "back-off ended: the credentials changed since they were refused; probing on demand"
                );
                let due = idle.due.min(Instant::now() + interval);
                idle.end_backoff(due, recorders, handles);
            }
        }
    }
    let on_demand = !waiting.is_empty();
    // An on-demand cycle always keeps its trace: a debug request repeated within
    // probe_min_interval gets it too.
    let joined = unless_stopped(handles, Contained(idle.prober.run(on_demand))).await?;
    let (report, trace) = match joined {
        Ok(done) => done,
        Err(()) => {
            let _recording = recorders.recording();
            if handles.is_stopped() {
                return None;
            }
            recorders.record_panic(handles);
            idle.prober.reset();
            if !on_demand {
                idle.due = (idle.due + interval).max(Instant::now());
                idle.record_pace(recorders, handles);
            }
            // Dropping the waiting requests tells their callers the cycle failed.
            return Some(());
        }
    };
    let _recording = recorders.recording();
    if handles.is_stopped() {
        return None; // removed or restarted meanwhile: its results are no longer wanted
    }
    let before = idle.backoff;
    let delay = idle.backoff.after(
        &report,
        interval,
        idle.prober.max_backoff(),
        report.finished_at,
        random_fraction(),
    );
    let now = Instant::now();
    let due_before = idle.due;
    if idle.backoff.holding.is_some() {
        idle.due = now + delay;
    } else if before.holding.is_some() {
        idle.due = now + interval;
    } else if !on_demand {
        idle.due = (idle.due + interval).max(now);
    }
    idle.recheck = idle.backoff.refused().then(|| now + interval);
    log_pace(name, &before, &idle.backoff, idle.due, &report);
    if on_demand {
        recorders.record_on_demand(handles, idle.prober.held());
    } else {
        recorders.record(handles, &report, idle.prober.held());
    }
    // An on-demand cycle that changed nothing of the schedule leaves its gauge as it was
    // (converted again, the same moment would read a few nanoseconds off).
    if idle.due != due_before || idle.backoff != before {
        idle.record_pace(recorders, handles);
    }
    let report = Arc::new(report);
    if idle.backoff.refused() {
        idle.remembered.get_or_insert_with(Box::default).refusal = Some((now, Arc::clone(&report)));
    } else if let Some(memory) = &mut idle.remembered {
        memory.refusal = None;
    }
    if on_demand {
        let answer = ProbeAnswer {
            report,
            held: idle.prober.held().cloned(),
            trace,
            repeated: None,
        };
        answer_all(waiting, &answer, None);
        idle.remembered.get_or_insert_with(Box::default).on_demand = Some((now, answer));
    }
    Some(())
}

/// A cycle's future with a panic turned into `Err`, as a task of its own would contain it: one
/// allocation per cycle instead of a spawned task (its scheduling, its join).
struct Contained<'a, T>(Work<'a, T>);

impl<T> Future for Contained<'_, T> {
    type Output = Result<T, ()>;

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

/// Awaits `work`, or `None` when the provider is stopped meanwhile.
async fn unless_stopped<F: Future + Unpin>(
    record: &ProviderRecord,
    mut work: F,
) -> Option<F::Output> {
    loop {
        tokio::select! {
            output = &mut work => return Some(output),
            _ = record.mailbox.wake.notified() => {
                if record.is_stopped() {
                    return None;
                }
            }
        }
    }
}

/// Answers every waiting `/probe` caller: with the trace only when it asked for one, and
/// `repeated` when the answer is an earlier result rather than this attempt's.
fn answer_all(waiting: Vec<ProbeRequest>, answer: &ProbeAnswer, repeated: Option<Repeated>) {
    for request in waiting {
        let _ = request.reply.send(ProbeAnswer {
            report: Arc::clone(&answer.report),
            held: answer.held.clone(),
            trace: if request.debug {
                answer.trace.clone()
            } else {
                None
            },
            repeated,
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
pub(super) fn random_below(bound: Duration) -> Duration {
    let nanos = bound.as_nanos().min(u128::from(u64::MAX)) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(nanos);
    Duration::from_nanos(hasher.finish() % nanos)
}
