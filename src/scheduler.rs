//! Runs every provider's probe cycle on its own interval: one task per provider (so one slow
//! provider never delays another, and a provider's cycles never overlap), start times spread
//! over the first interval, and every wait cancellable for a prompt shutdown.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ProviderConfig;
use crate::metrics::Metrics;
use crate::probe::{CycleReport, Prober};
use crate::transport::HttpClients;

/// How first cycles are spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartJitter {
    /// A random delay within the first interval, so providers sharing an identity provider do
    /// not fire in lockstep.
    Random,
    /// Every provider probes at once (tests, `check`-like uses).
    None,
}

/// Starts one probing task per provider on `tracker`; they stop when `cancel` fires.
pub fn spawn(
    providers: &[ProviderConfig],
    clients: &HttpClients,
    metrics: &Arc<Metrics>,
    jitter: StartJitter,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) {
    for provider in providers {
        metrics.add_provider(&provider.name);
        let prober = Prober::new(provider.clone(), clients.for_provider(&provider.name));
        let first_delay = match jitter {
            StartJitter::Random => random_below(provider.interval),
            StartJitter::None => Duration::ZERO,
        };
        tracker.spawn(run_provider(
            prober,
            Arc::clone(metrics),
            first_delay,
            cancel.clone(),
        ));
    }
}

async fn run_provider(
    mut prober: Prober,
    metrics: Arc<Metrics>,
    first_delay: Duration,
    cancel: CancellationToken,
) {
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = tokio::time::sleep(first_delay) => {}
    }
    // `Delay`: after a stall (a cycle longer than the interval), continue at the normal pace
    // instead of firing the missed cycles back to back.
    let mut ticker = tokio::time::interval(prober.config.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let report = tokio::select! {
            _ = cancel.cancelled() => return,
            report = prober.run_cycle() => report,
        };
        metrics.record(&prober.config.name, &report, prober.held());
        log_report(&prober.config.name, &report);
    }
}

/// One line per cycle: `warn` on failure (with the reason and what the server said), `debug`
/// on success. Never a secret: error texts are scrubbed where they are made.
pub fn log_report(provider: &str, report: &CycleReport) {
    match report.failure() {
        Some((phase, reason, error, status)) => tracing::warn!(
            provider,
            phase,
            reason,
            status = status.map(|s| s.to_string()).unwrap_or_default(),
            error,
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
}
