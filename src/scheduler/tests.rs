use super::turn::{Cycle, Work};
use super::*;
use crate::probe::{CycleReport, HeldToken};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;
use tokio_util::task::TaskTracker;

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

/// What a test's cycle does each time it runs.
type Script = Box<dyn FnMut() -> Work<'static, (CycleReport, Option<String>)> + Send>;

/// A prober whose cycles the test writes: no back-off, no token, the cycle `script` returns.
struct Scripted {
    interval: Duration,
    script: Script,
}

impl Cycle for Scripted {
    fn interval(&self) -> Duration {
        self.interval
    }
    fn max_backoff(&self) -> Duration {
        Duration::ZERO
    }
    fn credentials_changed(&mut self) -> Work<'_, bool> {
        Box::pin(async { false })
    }
    fn held(&self) -> Option<&HeldToken> {
        None
    }
    fn reset(&mut self) {}
    fn run(&mut self, _debug: bool) -> Work<'_, (CycleReport, Option<String>)> {
        (self.script)()
    }
}

/// Every 10 ms, a cycle that panics the second time and succeeds otherwise; `cycles` counts
/// them across restarts.
fn panics_once(cycles: Arc<AtomicUsize>) -> Scripted {
    Scripted {
        interval: Duration::from_millis(10),
        script: Box::new(move || {
            let n = cycles.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
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
            })
        }),
    }
}

/// A provider's settings, as loaded (its cycles are the test's own).
fn settings(name: &str) -> Arc<crate::config::ProviderConfig> {
    let toml = format!(
        "[providers.{name}.token]\nurl = \"http://127.0.0.1:1/token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
    );
    let mut config = crate::config::load_str(&toml, &Default::default()).expect("valid settings");
    Arc::new(config.providers.remove(0))
}

/// A scheduler's recorders and running clock, as the daemon builds them.
fn clock_running(tracker: &TaskTracker, shutdown: &CancellationToken) -> Arc<Recorders> {
    let recorders = Recorders::new(Arc::new(crate::metrics::Metrics::new()));
    let clock = Arc::clone(&recorders.directory().clock);
    tracker.spawn(clock.run(Arc::clone(&recorders), shutdown.clone()));
    recorders
}

/// Waits until `counter` reaches `at_least`, for 5 s at most; then what it reads.
async fn counted(counter: &AtomicUsize, at_least: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter.load(Ordering::SeqCst) < at_least && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    counter.load(Ordering::SeqCst)
}

/// Issue #4: a panic inside one provider's cycle is caught, counted, and probing goes on.
#[tokio::test]
async fn a_panicking_cycle_is_counted_and_probing_continues() {
    let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
    let recorders = clock_running(&tracker, &shutdown);
    let record = recorders.add(&settings("flaky"));
    let cycles = Arc::new(AtomicUsize::new(0));
    let prober = panics_once(Arc::clone(&cycles));
    start(
        Idle::new(Box::new(prober), Instant::now()),
        &recorders,
        Arc::clone(&record),
    );
    let cycled = counted(&cycles, 4).await;
    record.stop();
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    assert!(cycled >= 4, "probing stopped after the panic");
    let text = String::from_utf8(recorders.metrics().render()).unwrap();
    assert!(
        text.contains("oauth2_exporter_probe_panics_total{provider=\"flaky\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("oauth2_probe_success{provider=\"flaky\"} 1\n"),
        "{text}"
    );
}

struct CountsDrop(Arc<AtomicUsize>);

impl Drop for CountsDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Never finishes a cycle: counts the ones `started`, and the ones `dropped` unfinished.
fn hangs(started: Arc<AtomicUsize>, dropped: Arc<AtomicUsize>) -> Scripted {
    Scripted {
        interval: Duration::from_secs(3600),
        script: Box::new(move || {
            started.fetch_add(1, Ordering::SeqCst);
            let guard = CountsDrop(Arc::clone(&dropped));
            Box::pin(async move {
                let _guard = guard;
                std::future::pending().await
            })
        }),
    }
}

/// Stopping a provider ends the cycle it is in (a removal or a shutdown does not wait for a
/// hung server), and a provider's turns never overlap: the cycle hanging, the clock starts no
/// other though `/probe` asks.
#[tokio::test]
async fn a_stop_ends_a_hung_cycle_and_turns_never_overlap() {
    let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
    let recorders = clock_running(&tracker, &shutdown);
    let record = recorders.add(&settings("hung"));
    let started = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let prober = hangs(Arc::clone(&started), Arc::clone(&dropped));
    start(
        Idle::new(Box::new(prober), Instant::now()),
        &recorders,
        Arc::clone(&record),
    );
    assert_eq!(
        counted(&started, 1).await,
        1,
        "the first cycle never started"
    );
    let mailbox = recorders.directory().get("hung").expect("in the directory");
    let (reply, answer) = tokio::sync::oneshot::channel();
    assert!(
        mailbox
            .try_send(ProbeRequest {
                debug: false,
                reply
            })
            .is_ok()
    );
    // Give the clock every chance to start a second turn: it must not.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "a second cycle overlapped"
    );
    record.stop();
    assert_eq!(
        counted(&dropped, 1).await,
        1,
        "the hung cycle outlived the stop"
    );
    assert!(answer.await.is_err(), "a stopped provider answered");
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

/// An idle provider is its parked state and one clock entry, not a task: a thousand idle
/// providers leave the runtime with the clock and nothing else per provider (a task each was
/// 512 bytes per provider, BENCHMARKS.md round eight).
#[tokio::test]
async fn idle_providers_are_clock_entries_not_tasks() {
    let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
    let recorders = clock_running(&tracker, &shutdown);
    let later = Instant::now() + Duration::from_secs(3600);
    for n in 0..1000 {
        let record = recorders.add(&settings(&format!("p{n}")));
        let prober = panics_once(Arc::new(AtomicUsize::new(0)));
        start(Idle::new(Box::new(prober), later), &recorders, record);
    }
    assert_eq!(tracker.len(), 1, "only the clock runs");
    assert_eq!(recorders.directory().clock.len(), 1000);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}
