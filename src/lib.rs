//! # oauth2-exporter
//!
//! Continuously proves that machine-to-machine OAuth2 credentials work, and exports what it saw
//! for Prometheus.
//!
//! # Layout
//!
//! - [`config`]: loads and validates `exporter.toml` (+ environment), naming every bad key;
//!   [`config_env`]: the environment layer.
//! - [`secrets`]: self-redacting secret types, secret sources re-read on use, scrubbing.
//! - [`transport`]: outgoing HTTP clients, capped body reads, transport failure classes.
//! - [`jwt`]: reads (never verifies) a JWT's claims, for its expiry.
//! - [`token`]: the token request in each dialect and the classification of its answer.
//! - [`canary`]: the API call with the token and its classification.
//! - [`probe`]: one cycle of one provider (token, canary, retry), returning a report.
//! - [`scheduler`]: one task per provider, on its interval, with jitter and cancellation; moves
//!   the running set to a reloaded configuration.
//! - [`metrics`]: per-provider series, the one place that records reports into them, and the
//!   exposition text written from a snapshot.
//! - [`web`] and [`http_server`]: `/metrics`, health, readiness, reload and the index page;
//!   [`scrape`]: renders `/metrics` off the probe threads, shared by concurrent scrapes.
//! - [`web_config`]: TLS and basic auth for those endpoints (`--web.config.file`).
//! - [`status`] and [`status_page`]: the status page at `/`.
//! - [`on_demand`] and [`trace`]: `/probe?provider=NAME`, with a redacted debug trace.
//! - [`check`]: the `check` command, one cycle per provider, as a table or JSON.
//! - [`logging`]: logfmt or JSON logs on standard error.
//! - [`demo`]: a loopback identity provider and API speaking every supported dialect.
//!
//! [`run`] ties them together; `main.rs` only parses the command line and calls it.

pub mod canary;
pub mod check;
pub mod config;
pub mod config_env;
#[cfg(feature = "demo")]
pub mod demo;
pub mod http_server;
pub mod jwt;
pub mod logging;
pub mod metrics;
pub mod on_demand;
pub mod probe;
pub mod scheduler;
pub mod scrape;
pub mod secrets;
pub mod status;
pub mod status_page;
pub mod token;
pub mod trace;
pub mod transport;
pub mod web;
pub mod web_config;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use scheduler::StartJitter;

/// The git revision this binary was built from ("unknown" outside a checkout).
pub const REVISION: &str = env!("OAUTH2_EXPORTER_REVISION");

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
    pub web_security: web_config::WebSecurity,
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
    };
    run_with(config, listener, options, shutdown).await
}

/// [`run`], with reloads on `POST /-/reload` (and SIGHUP if asked) from `options.reload`.
pub async fn run_with(
    config: config::Config,
    listener: TcpListener,
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
    });
    let web_state = Arc::clone(&state);
    let basic_auth = options.web_security.basic_auth.clone();
    tracker.spawn(http_server::serve_with_tls(
        listener,
        options.web_security.tls.clone(),
        cancel.clone(),
        move |request| {
            let state = Arc::clone(&web_state);
            let basic_auth = basic_auth.clone();
            async move {
                if let Some(auth) = basic_auth
                    && !auth.allows(web_config::authorization(&request)).await
                {
                    return web::unauthorized();
                }
                web::handle(state, request).await
            }
        },
    ));

    scheduler
        .apply(&config.providers)
        .map_err(|error| anyhow::anyhow!("cannot set up an HTTP client: {error}"))?;
    metrics.record_reload(true);
    recorders.status.record_reload(true);
    state.ready.store(true, Ordering::Release);
    tracing::info!(providers = config.providers.len(), "probing started");

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
            if config.web.listen_address != initial_web.listen_address {
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
