//! # oauth2-exporter
//!
//! Continuously proves that machine-to-machine OAuth2 credentials work, and exports what it saw
//! for Prometheus.
//!
//! # Layout
//!
//! - [`config`]: loads and validates `exporter.toml` (+ environment), naming every bad key.
//! - [`secrets`]: self-redacting secret types, secret sources re-read on use, scrubbing.
//! - [`transport`]: outgoing HTTP clients, capped body reads, transport failure classes.
//! - [`jwt`]: reads (never verifies) a JWT's claims, for its expiry.
//! - [`token`]: the token request in each dialect and the classification of its answer.
//! - [`canary`]: the API call with the token and its classification.
//! - [`probe`]: one cycle of one provider (token, canary, retry), returning a report.
//! - [`scheduler`]: one task per provider, on its interval, with jitter and cancellation.
//! - [`metrics`]: the registry and the one place that records reports into it.
//! - [`web`] and [`http_server`]: `/metrics`, health, readiness and the index page.
//! - [`logging`]: logfmt or JSON logs on standard error.
//! - [`demo`]: a loopback identity provider and API speaking every supported dialect.
//!
//! [`run`] ties them together; `main.rs` only parses the command line and calls it.

pub mod canary;
pub mod config;
pub mod demo;
pub mod http_server;
pub mod jwt;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod scheduler;
pub mod secrets;
pub mod token;
pub mod transport;
pub mod web;

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

/// Serves `/metrics` on `listener` and probes every provider of `config` until `shutdown`
/// completes, then stops everything within a few seconds.
pub async fn run(
    config: config::Config,
    listener: TcpListener,
    jitter: StartJitter,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(metrics::Metrics::new());
    let clients = transport::HttpClients::build(&config.providers)
        .map_err(|error| anyhow::anyhow!("cannot set up HTTP clients: {error}"))?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();

    let state = Arc::new(web::WebState {
        metrics: Arc::clone(&metrics),
        providers: config
            .providers
            .iter()
            .map(|p| (p.name.clone(), p.interval))
            .collect(),
        ready: AtomicBool::new(false),
    });
    let web_state = Arc::clone(&state);
    tracker.spawn(http_server::serve(
        listener,
        cancel.clone(),
        move |request| web::handle(Arc::clone(&web_state), request),
    ));

    scheduler::spawn(
        &config.providers,
        &clients,
        &metrics,
        jitter,
        &cancel,
        &tracker,
    );
    state.ready.store(true, Ordering::Release);
    tracing::info!(providers = config.providers.len(), "probing started");

    shutdown.await;
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
