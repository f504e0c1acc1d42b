//! The daemon: [`run`] / [`run_with`] serve the web endpoints and probe every provider until
//! shutdown; the reload loop; and every signal the process answers (SIGINT and SIGTERM end it,
//! SIGHUP reloads), kept beside the loop they end or wake.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::scheduler::{self, StartJitter};
use crate::shard::Shard;
use crate::web::security::WebSecurity;
use crate::{config, metrics, web};

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
    let metrics = Arc::new(metrics::Metrics::new());
    let recorders = scheduler::Recorders::new(Arc::clone(&metrics));
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut scheduler = scheduler::Scheduler::new(
        recorders.clone(),
        options.jitter,
        cancel.clone(),
        tracker.clone(),
    )
    .map_err(|error| anyhow::anyhow!("cannot set up the HTTP client: {error}"))?;

    let (reload_requests, mut reload_inbox) = tokio::sync::mpsc::channel::<web::ReloadRequest>(4);
    let state = Arc::new(web::WebState {
        metrics: Arc::clone(&metrics),
        scrapes: Default::default(),
        status: Arc::clone(&recorders.status),
        directory: Arc::clone(&recorders.directory),
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
    metrics.record_shard(options.shard);
    let started = scheduler
        .apply(&config.providers)
        .map_err(|error| anyhow::anyhow!("cannot set up an HTTP client: {error}"))?;
    metrics.record_reload(true);
    recorders.status.record_reload(true);
    state.ready.store(true, Ordering::Release);
    match options.shard {
        None => tracing::info!(providers = started.added.len(), "probing started"),
        Some(shard) => tracing::info!(
            providers = started.added.len(),
            configured = config.providers.len(),
            shard = shard.ordinal(),
            total_shards = shard.total(),
            "probing started"
        ),
    }

    let mut hangups = hangup_signals(options.reload_on_sighup);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(reply) = reload_inbox.recv() => {
                let outcome = reload(options.reload.as_ref(), &config.web, &mut scheduler, &state);
                let _ = reply.send(outcome);
            }
            Some(()) = next_hangup(&mut hangups) => {
                let _ = reload(options.reload.as_ref(), &config.web, &mut scheduler, &state);
            }
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

/// Loads the configuration again and moves the running providers to it. An invalid
/// configuration changes nothing: the running one goes on, and the error is logged and returned.
fn reload(
    source: Option<&ConfigSource>,
    initial_web: &config::WebConfig,
    scheduler: &mut scheduler::Scheduler,
    state: &web::WebState,
) -> Result<String, String> {
    let Some(source) = source else {
        return Err("reloading is not available".to_string());
    };
    let outcome = source()
        .map_err(|error| format!("invalid configuration, keeping the running one:\n{error}"))
        .and_then(|config| {
            if config.web.listen_address != initial_web.listen_address
                || config.web.extra_listen_addresses != initial_web.extra_listen_addresses
            {
                tracing::warn!("web.listen_address changed; it takes effect only after a restart");
            }
            scheduler
                .apply(&config.providers)
                .map_err(|error| format!("cannot set up an HTTP client: {error}"))
        });
    state.metrics.record_reload(outcome.is_ok());
    state.status.record_reload(outcome.is_ok());
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
