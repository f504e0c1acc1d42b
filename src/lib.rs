//! # oauth2-exporter
//!
//! Continuously proves that machine-to-machine OAuth2 credentials work, and exports what it saw
//! for Prometheus.
//!
//! # Layout
//!
//! A probe cycle's report is the one piece of data everything else is made from: the scheduler
//! runs cycles, and the metrics, the status page, the log, `/probe` and `check` each render the
//! same report. Folders group code by job:
//!
//! - `main.rs` (the binary): logging, the runtime, binding, and dispatch to serve, `check`,
//!   `--config.check` or `--demo`. Nothing else.
//! - [`cli`]: the flags as clap defines them (the man page and completions are generated from
//!   them) and the `--version` text.
//! - [`daemon`](run_with): [`run`] / [`run_with`], the reload loop, and every signal (SIGINT
//!   and SIGTERM end it, SIGHUP reloads).
//! - `check`: the `check` command, one cycle per provider (all, or those named), as a table or
//!   JSON.
//! - `closed_set`: the one macro for closed label sets (every `reason`, the `phase`, the
//!   grant and expiry kinds, `auth_method`, `metrics.histograms`, the status page's states):
//!   an enum with `ALL` in declaration order and `as_str()`, the value as written.
//! - [`config`]: `exporter.toml` and the `OAUTH2_EXPORTER_*` environment, in two steps: `raw`
//!   (as written: each table's struct and the keys it allows, declared together) then
//!   `validate/` (ready-to-use values, every bad key named), a file per section: `web`,
//!   `metrics`, `proxy`, `labels` (a provider's own labels, checked against `SeriesLabel`, the
//!   label names the metrics use, and interned), `token` with `client_auth`, `claims`
//!   (`[token.expect]`) and `dpop` (`dpop` and its keys, over `[defaults]`), `canary`, `tls`,
//!   and what they share in `values`. `load` reads and layers the files, `env` is the
//!   environment layer, `messages` turns parser errors into lines that never show a secret,
//!   `expiry` reads expiry dates and warns of past ones, `mod.rs` holds the validated types.
//! - [`secrets`]: the self-redacting secret types (one macro makes them all), secret sources
//!   re-read on use, scrubbing of server text.
//! - `signing`: key material for client assertions (PEM private keys and certificates, whether
//!   they fit together, thumbprints, RS256/PS256/ES256/HS256 signatures; `jwk`: DPoP keys
//!   generated, as public JWKs and their thumbprints), for `config` to check at load and `probe`
//!   to sign with.
//! - `files`: the one way any file is read (configuration, secrets, certificates, the web
//!   configuration): regular files only, capped, on a detached thread with a deadline, so a
//!   named pipe or a hung mount fails one read instead of freezing the process.
//! - `probe/`: one cycle of one provider (token, canary, retry once with a fresh token),
//!   returning a `CycleReport`; knows nothing of metrics, the web or the scheduler. `token`
//!   (each dialect, and `TokenReason`), `client_auth` (how the client proves itself, for every
//!   `auth_method`, and the jwt-bearer grant's assertion, with its material prepared once per
//!   provider and `client_assertion_file` read for each request), `client_cert` (the TLS
//!   client certificate followed on disk: a renewed pair gets the provider a new client,
//!   a bad one fails the token phase and keeps the old), `discovery` (an `issuer`'s
//!   token endpoint from its metadata, kept by the prober between refreshes), `canary` (and
//!   `CanaryReason`), `dpop` (RFC 9449 proofs for both steps, with the provider's key and the
//!   nonces its servers gave, held only by providers with `dpop = true`), `transport` (outgoing clients: `client_for` is the one rule for which a
//!   provider uses, proxy included; `Slots`, the process-wide bound on requests in flight, sized
//!   by the descriptor limit; `ProxyRoute`, which proxy a request took), `verifier` (their TLS
//!   settings, recording the certificate chains endpoints present), `jwt` (reads an expiry,
//!   never verifies), `claims` (`[token.expect]`), `expiry` (credential and certificate expiry,
//!   credential changes by keyed hash, from certificate files as their users read them),
//!   `trace` (the redacted debug trace of `/probe?debug=true`).
//! - `scheduler/`: runs every provider's cycles and moves the running set to a reloaded
//!   configuration (each provider's settings held once). `clock`: one timer for all providers,
//!   and the one task that polls their turns. `turn`: what a provider does when due or asked
//!   (a cycle, a panic in it contained; a look at its credentials during a back-off; `/probe`
//!   answers, limited by `probe_min_interval` and the back-off), then parks its state in its
//!   record. `backoff`: when the next cycle is due after refused credentials or a
//!   `Retry-After`. `mailbox`: `/probe` requests and answers, each provider's mailbox and the
//!   directory `/probe` finds it in. `record`: `Recorders`, the one record path: the only
//!   writer of the metrics, the status board, the `/probe` directory and the per-cycle log
//!   line, for cycles, providers added or removed, and reloads; built once by the daemon and
//!   read by `web`. It keeps one `ProviderRecord` per provider (the metrics record, the status
//!   row, the mailbox, the stop flag and, between turns, the prober and its schedule, in one
//!   allocation), which the metrics, the board and the directory point into through
//!   `metrics::SeriesCell` and `status::Row`, so neither imports the scheduler.
//! - `by_name`: providers by name in one sorted `Vec`, as the metrics and the status board
//!   list them.
//! - `metrics/`: the one writer of every series (`mod.rs`, `Metrics::record`); `/metrics` from
//!   a snapshot: `snapshot` (the format-neutral part: the snapshot, family kinds, the
//!   `Families` trait both writers implement and the `Sink` both write to), `catalogue` (every provider family, its name,
//!   HELP text and labels; `expiry` the expiry families), the two writers `text` and
//!   `protobuf` (each imports only the neutral part and the catalogue), and `exposition` (the
//!   entry points: a format, gzip or not); one report as the `/probe` page (`probe_page`).
//!   Every metric name and HELP text is written in this folder only.
//! - `status`: what the status page shows, recorded from the same report as the metrics,
//!   with each provider's last 60 periodic cycle outcomes (a byte each, in a fixed ring) and
//!   its own labels (the page filters on them).
//! - `web/`: routing, health, readiness, reload and the basic-auth gate (`mod.rs`); the accept
//!   loop and response bodies (`server`), `--web.config.file` (`security`), `/metrics` under
//!   load, gzip shared and plain text streamed (`scrape`),
//!   `/probe` (`probe`), and the HTML status page (`status_page`).
//! - [`shard`]: which of `--total-shards` processes probes a provider (rendezvous hashing of
//!   its name); `split` is the one partition of a configuration, for the scheduler (and so
//!   `/probe`) and `check`.
//! - `humanize`: durations and latencies as a person says them, for the status page and
//!   `check`.
//! - `shorten`: the one truncator of text people read (server text in errors, logs and
//!   traces, failure details on the status page), its rules per destination written once.
//! - `logging`: logfmt or JSON logs on standard error.
//! - `memory/`: glibc's malloc thresholds and its one arena fixed at start, and the pages freed by
//!   loading a configuration handed back to the system: the loaded configuration is copied out
//!   to a scratch region and back (`scratch`: the process's global allocator, glibc's plus that
//!   region). The crate's only `unsafe` code: `mallopt`, `malloc_trim`, `mmap` and the
//!   allocator; the unit tests add an allocation counter in front of it, `metrics/tests.rs`.
//! - `demo/`: a loopback identity provider and API speaking every supported dialect, with the
//!   built-in configuration `--demo` runs; behind the default-on `demo` cargo feature.
//!
//! Dependencies point one way: `files`, `closed_set` and `shorten` import nothing of ours;
//! `signing` only `secrets`; `config` only `files`, `secrets`, `signing` and `closed_set` (key
//! material is checked at load); `probe` imports only `config`, `signing`, `secrets` and
//! `files` (key, certificate and secret files are read through it) and the two helpers;
//! `metrics`, `status` and `scheduler` import `probe`; `web` imports those; `daemon` ties
//! them together.
//! Public items are the few that `main.rs`, `tests/`, `fuzz/` and `examples/` use.

mod by_name;
pub mod check;
pub mod cli;
mod closed_set;
pub mod config;
mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
mod files;
mod humanize;
pub mod logging;
mod memory;
mod metrics;
mod probe;
mod scheduler;
pub mod secrets;
pub mod shard;
mod shorten;
mod signing;
mod status;
mod web;

pub use daemon::{
    ConfigSource, DEFAULT_TELEMETRY_PATH, Listeners, RunOptions, bind, claim_hangup, run, run_with,
    shutdown_signal, unless_shutdown,
};
pub use memory::fix_allocator_thresholds;

/// glibc's allocator, with the scratch region a loaded configuration is settled through
/// (`memory`). The unit tests' allocator counts allocations and forwards to this one.
#[cfg(not(test))]
#[global_allocator]
static ALLOCATOR: memory::Allocator = memory::Allocator;
pub use probe::token;
pub use probe::transport::raise_descriptor_limit;
pub use scheduler::StartJitter;
pub use web::security::{WebSecurity, load as load_web_config};

/// The git revision this binary was built from ("unknown" outside a checkout).
pub const REVISION: &str = env!("OAUTH2_EXPORTER_REVISION");
