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
//! - [`daemon`]: [`run`] / [`run_with`], the reload loop and every signal.
//! - [`check`]: the `check` command, one cycle per provider, as a table or JSON.
//! - [`logging`]: logfmt or JSON logs on standard error.
//! - [`demo`]: a loopback identity provider and API speaking every supported dialect.

pub mod check;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod humanize;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod scheduler;
pub mod secrets;
pub mod status;
pub mod web;

pub use daemon::{ConfigSource, RunOptions, run, run_with};
pub use probe::token;
pub use scheduler::StartJitter;

/// The git revision this binary was built from ("unknown" outside a checkout).
pub const REVISION: &str = env!("OAUTH2_EXPORTER_REVISION");
