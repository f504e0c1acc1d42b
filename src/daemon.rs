//! The daemon: [`run`] / [`run_with`] serve the web endpoints and probe every provider until
//! shutdown; the reload loop; and every signal the process answers (SIGINT and SIGTERM end it,
//! SIGHUP reloads), kept beside the loop they end or wake.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::scheduler::{self, StartJitter};
use crate::shard::Shard;
use crate::web::security::WebSecurity;
use crate::{config, memory, metrics, probe, web};

/// How long probes and connections get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// Loads the configuration again for a reload (the same file, environment and flags).
pub type ConfigSource = Arc<dyn Fn() -> Result<config::Config, config::ConfigError> + Send + Sync>;

/// How [`run_with`] behaves beyond the configuration itself.
pub struct RunOptions {
    pub jitter: StartJitter,
    /// Where reloads read the configuration from; without it reloads are refused.
    pub reload: Option<ConfigSource>,
    /// Reload on SIGHUP (the process-wide signal: only the binary should set this).
    pub reload_on_sighup: bool,
    /// TLS and basic auth for the web endpoints.
    pub web_security: WebSecurity,
    /// Where the metrics are served (`--web.telemetry-path`, [`DEFAULT_TELEMETRY_PATH`]).
    pub telemetry_path: String,
    /// `--shard N --total-shards M`: probe only this shard's providers.
    pub shard: Option<Shard>,
}

/// Where `/metrics` is served unless `--web.telemetry-path` says otherwise.
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";

/// The bound sockets [`run_with`] serves, all alike: one, or one per `--web.listen-address`.
pub struct Listeners(Vec<TcpListener>);

impl From<TcpListener> for Listeners {
    fn from(listener: TcpListener) -> Self {
        Listeners(vec![listener])
    }
}

impl From<Vec<TcpListener>> for Listeners {
    fn from(listeners: Vec<TcpListener>) -> Self {
        Listeners(listeners)
    }
}

/// Binds a validated listen address. `:PORT` means every interface, as in Prometheus
/// exporters: IPv6 and IPv4 where the machine has IPv6 (`[::]`, dual-stack on Linux by default),
/// otherwise IPv4 only (`0.0.0.0`).
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    match address.strip_prefix(':') {
        Some(port) => match TcpListener::bind(format!("[::]:{port}")).await {
            Ok(listener) => Ok(listener),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => Err(error),
            Err(_) => TcpListener::bind(format!("0.0.0.0:{port}")).await,
        },
        None => TcpListener::bind(address).await,
    }
}

/// Serves `/metrics` on `listener` and probes every provider of `config` until `shutdown`
/// completes, then stops everything within a few seconds. No reloads.
pub async fn run(
    config: config::Config,
    listener: TcpListener,
    jitter: StartJitter,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let options = RunOptions {
        jitter,
        reload: None,
        reload_on_sighup: false,
        web_security: Default::default(),
        telemetry_path: DEFAULT_TELEMETRY_PATH.to_string(),
        shard: None,
    };
    run_with(config, listener, options, shutdown).await
}

/// [`run`], with reloads on `POST /-/reload` (and SIGHUP if asked) from `options.reload`, on
/// one listener or several (each served alike).
pub async fn run_with(
    config: config::Config,
    listeners: impl Into<Listeners>,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Loaded on the blocking pool: copied here so that the loader's arena empties.
    let mut config = memory::settle(config);
    let metrics = Arc::new(metrics::Metrics::new());
    // One bound on outgoing requests for the whole process, sized by the descriptor limit (which
    // main raised to the hard limit before we got here), shown by two gauges.
    let slots = probe::transport::Slots::for_this_process();
    tracing::info!(
        limit = slots.limit(),
        "outgoing requests in flight are limited"
    );
    metrics.watch_requests(slots.clone());
    // The one place every record goes through: built here, shared by the scheduler, the
    // providers' turns and the web endpoints.
    let recorders = scheduler::Recorders::new(Arc::clone(&metrics));
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut scheduler = scheduler::Scheduler::new(
        Arc::clone(&recorders),
        options.jitter,
        &slots,
        cancel.clone(),
        tracker.clone(),
    )
    .map_err(|error| anyhow::anyhow!("cannot set up the HTTP client: {error}"))?;

    let (reload_requests, mut reload_inbox) = tokio::sync::mpsc::channel::<web::ReloadRequest>(4);
    let state = Arc::new(web::WebState {
        recorders: Arc::clone(&recorders),
        scrapes: Default::default(),
        ready: AtomicBool::new(false),
        reload: options.reload.is_some().then_some(reload_requests),
        telemetry_path: options.telemetry_path,
        shard: options.shard,
    });
    for listener in listeners.into().0 {
        tracker.spawn(web::serve(
            listener,
            options.web_security.clone(),
            Arc::clone(&state),
            cancel.clone(),
        ));
    }

    scheduler.set_shard(options.shard);
    scheduler.set_probe_min_interval(config.web.probe_min_interval);
    metrics.record_shard(options.shard);
    metrics.set_histograms(config.metrics.histograms);
    // Before the providers move out of `config` below: read after the move, it found none and
    // the start-up warning was never logged (issue 22).
    warn_expired_credentials(&config);
    // The providers' settings move into the scheduler (one copy each, shared with their
    // tasks); what stays here until shutdown is the rest (the web settings reloads compare).
    let providers = std::mem::take(&mut config.providers);
    let configured = providers.len();
    let started = scheduler
        .apply(providers)
        .map_err(|error| anyhow::anyhow!("cannot set up an HTTP client: {error}"))?;
    recorders.record_reload(true);
    state.ready.store(true, Ordering::Release);
    match options.shard {
        None => tracing::info!(providers = started.added.len(), "probing started"),
        Some(shard) => tracing::info!(
            providers = started.added.len(),
            configured,
            shard = shard.ordinal(),
            total_shards = shard.total(),
            "probing started"
        ),
    }

    let mut hangups = hangup_signals(options.reload_on_sighup);
    tokio::pin!(shutdown);
    loop {
        let reply = tokio::select! {
            _ = &mut shutdown => break,
            Some(reply) = reload_inbox.recv() => Some(reply),
            Some(()) = next_hangup(&mut hangups) => None,
        };
        let Some(source) = options.reload.as_ref() else {
            if let Some(reply) = reply {
                let _ = reply.send(Err("reloading is not available".to_string()));
            }
            continue;
        };
        // Loaded off the async workers, still listening for SIGTERM: a configuration or
        // secret file on a stalled mount delays the reload, never the shutdown.
        let source = Arc::clone(source);
        let Some(loaded) = unless_shutdown(move || source(), shutdown.as_mut()).await else {
            break;
        };
        let loaded = loaded
            .map_err(|error| format!("invalid configuration, keeping the running one:\n{error}"));
        let outcome = reload(
            loaded.map(memory::settle),
            &config.web,
            &mut scheduler,
            &state,
        );
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }

    tracing::info!("shutting down");
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop in time; exiting anyway");
    }
    Ok(())
}

/// Runs `work` (blocking: loading the configuration, whose every file read has a deadline) on
/// the blocking pool while still listening for `shutdown`, so SIGINT and SIGTERM work during
/// start-up, `--config.check` and reloads too. `None` when the signal came first: the work is
/// left to end alone (the binary does not wait for the blocking pool at exit).
pub async fn unless_shutdown<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
    shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<T> {
    let work = tokio::task::spawn_blocking(work);
    tokio::select! {
        biased;
        _ = shutdown => None,
        done = work => match done {
            Ok(value) => Some(value),
            // A panic in the work is a bug: let it surface as one.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_cancelled) => None,
        },
    }
}

/// Moves the running providers to a freshly loaded configuration. An invalid configuration
/// changes nothing: the running one goes on, and the error is logged and returned.
fn reload(
    loaded: Result<config::Config, String>,
    initial_web: &config::WebConfig,
    scheduler: &mut scheduler::Scheduler,
    state: &web::WebState,
) -> Result<String, String> {
    let outcome = loaded.and_then(|config| {
        if config.web.listen_address != initial_web.listen_address
            || config.web.extra_listen_addresses != initial_web.extra_listen_addresses
        {
            tracing::warn!("web.listen_address changed; it takes effect only after a restart");
        }
        warn_expired_credentials(&config);
        let histograms = config.metrics.histograms;
        scheduler.set_probe_min_interval(config.web.probe_min_interval);
        let changes = scheduler
            .apply(config.providers)
            .map_err(|error| format!("cannot set up an HTTP client: {error}"))?;
        if state.recorders.metrics().set_histograms(histograms) {
            tracing::info!(
                histograms = %histograms,
                "metrics.histograms changed; both latency histograms of every provider start afresh"
            );
        }
        Ok(changes)
    });
    state.recorders.record_reload(outcome.is_ok());
    match outcome {
        Ok(changes) => {
            let summary = format!(
                "configuration reloaded: {} added, {} removed, {} restarted, {} unchanged",
                changes.added.len(),
                changes.removed.len(),
                changes.restarted.len(),
                changes.unchanged.len()
            );
            tracing::info!(
                added = ?changes.added,
                removed = ?changes.removed,
                restarted = ?changes.restarted,
                "{summary}"
            );
            Ok(summary)
        }
        Err(message) => {
            tracing::error!(error = %message, "configuration reload failed");
            Err(message)
        }
    }
}

/// A configured expiry date already past is not a configuration error (the exporter is there
/// to show the breakage, issue 13): it is a warning at start and at every reload.
fn warn_expired_credentials(config: &config::Config) {
    for warning in config::expired_credential_warnings(config, std::time::SystemTime::now()) {
        tracing::warn!("{warning}");
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

fn hangup_signals(enabled: bool) -> Hangups {
    #[cfg(unix)]
    {
        if !enabled {
            return None;
        }
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; reload with POST /-/reload");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = enabled;
        None
    }
}

/// The next SIGHUP; never completes when SIGHUP is not listened for.
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangups {
        return signal.recv().await;
    }
    let _ = hangups;
    std::future::pending().await
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                _ => {
                    tracing::warn!(
                        "cannot listen for SIGINT/SIGTERM; stop the exporter with SIGKILL"
                    );
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Claims SIGHUP at once: its default action would end the process if a reload were asked for
/// before [`run_with`] listens for it. (Once claimed, tokio keeps the handler installed.)
pub fn claim_hangup() {
    #[cfg(unix)]
    let _early_hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Issue 17: a start-up load whose thread is stuck in the kernel (a blocking `open()` of a
    /// named pipe without a writer, as on a hung mount) does not keep SIGTERM from ending it.
    #[tokio::test(flavor = "current_thread")]
    async fn a_signal_ends_the_wait_for_a_load_stuck_in_open() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("hung");
        crate::files::tests::mkfifo(&fifo);
        let stuck = fifo.clone();
        let shutdown = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(shutdown);
        let started = Instant::now();
        let loaded = unless_shutdown(move || std::fs::File::open(stuck).is_ok(), shutdown).await;
        assert_eq!(loaded, None);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // Let the stuck thread go, so the test runtime's blocking pool can shut down.
        let _writer = std::fs::OpenOptions::new().write(true).open(&fifo);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn without_a_signal_the_load_is_returned() {
        let shutdown = std::future::pending::<()>();
        tokio::pin!(shutdown);
        assert_eq!(unless_shutdown(|| 7, shutdown).await, Some(7));
    }
}
