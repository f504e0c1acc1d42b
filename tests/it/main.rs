//! The integration tests, one test crate (issue 24): each former `tests/NAME.rs` is the module
//! `NAME` here, so `tests/it/support/` and the library's dependency graph are compiled and linked
//! once, not 36 times. Select by module path: `cargo test --test it failure_reasons::`, the
//! real-peer tests with `cargo test --test it peer_`, the packaging tests with
//! `cargo test --test it packaging::`.
//!
//! Every module shares this process: a test that needs its own process-wide state (its own
//! environment, as `proxy_scrub` does) runs itself again as a child with `--exact MODULE::NAME`;
//! tests that must not overlap with their own module's others hold that module's lock; state
//! kept in `static`s (the shared daemon of `hostile_servers`) is per module.

mod support;

// The benchmark harness is the benchmark example's own code (its launcher included), not test
// support: `bench_smoke` exists to keep that code working, so it must compile that very file
// rather than a copy in support/. An example cannot be imported as a crate, hence `#[path]`; at
// the crate root, where the example's `crate::bare` and `crate::target` expect them. (The
// harness scrubs proxy variables from its children itself.)
#[allow(dead_code)]
#[path = "../../examples/bench/bare.rs"]
mod bare;
#[allow(dead_code)]
#[path = "../../examples/bench/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../../examples/bench/target.rs"]
mod target;

// The test modules, by subject; `peer_*` drive software no one here wrote.
mod backoff;
mod bench_smoke;
mod check_command;
mod cli;
mod client_assertions;
mod client_certificate_rotation;
mod config_errors;
mod config_files;
mod deploy;
mod discovery;
mod docs_links;
mod dpop;
mod expiry_warnings;
mod failure_reasons;
mod fuzz_regressions;
mod generated_docs;
mod histogram_modes;
mod hostile_servers;
mod interop_servers;
mod load_and_faults;
mod no_secret_leaks;
mod packaging;
mod params_and_secret_headers;
mod peer_discovery;
mod peer_oidc;
mod peer_oidc_client_auth;
mod peer_oidc_dpop;
mod peer_prometheus;
mod peer_proxy;
mod probe_cycle;
mod probe_endpoint;
mod proxy_scrub;
mod reload;
mod scrape_contract;
mod sharding;
mod shipped_config;
mod status_page;
mod token_dialects;
mod unreadable_files;
mod web_security;
