//! Shared support for the integration tests, one module tree of the one test crate (`mod
//! support;` in `tests/it/main.rs`, `use crate::support;` in each test module; some helpers
//! serve only tests compiled with or without a feature, hence the `dead_code` allowance):
//!
//! - [`fake`]: a loopback HTTP(S) server that records requests and answers from a closure;
//! - [`daemon`]: `oauth2_exporter::run` in-process on loopback, and its `/metrics`;
//! - [`binary`]: THE launcher of the real binary as a child process, and the environment scrub
//!   (config overrides, log variables, every proxy variable) every child process gets;
//! - [`exposition`]: reading the text exposition in assertions;
//! - [`certs`]: test certificates; [`hostile`]: byte-level hostile servers;
//! - [`config`]: provider blocks of test configurations, built ([`Provider`]);
//! - [`peers`]: software no one here wrote (oidc-provider on node), skipped when missing;
//!   [`proxy`]: squid as a real HTTP proxy on loopback, likewise.
//!
//! Typical use:
//!
//! ```ignore
//! let idp = FakeServer::start(|request| match request.path.as_str() {
//!     "/token" => Reply::json(200, json!({"access_token": "t1", "expires_in": 3600})),
//!     _ => Reply::status(200),
//! })
//! .await;
//! let daemon = Daemon::start(&format!(r#"
//!     [providers.p.token]
//!     url = "{}"
//!     client_id = "id"
//!     client_secret = "secret"
//! "#, idp.url("/token"))).await;
//! let metrics = daemon
//!     .wait_for(|m| sample(m, r#"oauth2_probe_success{provider="p"}"#).is_some(), WAIT)
//!     .await;
//! let requests = idp.requests_to("/token");
//! assert_eq!(requests[0].form_map()["grant_type"], "client_credentials");
//! ```
#![allow(dead_code)]

pub mod binary;
pub mod certs;
pub mod config;
pub mod daemon;
pub mod exposition;
pub mod fake;
pub mod hostile;
pub mod peers;
pub mod proxy;

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

// The names most tests use, at the root; each test crate uses a subset of them.
#[allow(unused_imports)]
pub use binary::{Binary, Running, Signal};
#[allow(unused_imports)]
pub use config::Provider;
#[allow(unused_imports)]
pub use daemon::Daemon;
#[allow(unused_imports)]
pub use exposition::{
    assert_no_mismatches, assert_probe_failed, provider_sample, provider_series, relevant_lines,
    sample, series_of,
};
#[allow(unused_imports)]
pub use fake::{FakeServer, Recorded, Reply, closed_port_url, form_urldecode};

/// Upper bound for anything the daemon does within a few short cycles. Generous because the test
/// machine has 2 cores shared with other test binaries; polling returns as soon as it is met.
pub const WAIT: Duration = Duration::from_secs(10);

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// An unsigned compact JWT (`header.claims.signature`) with these claims: the exporter reads
/// `exp`/`iat` without verifying.
pub fn jwt(claims: &serde_json::Value) -> String {
    let encode = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        encode(&claims.to_string()),
        encode("not-a-real-signature")
    )
}

/// An HTTP client for loopback: this process's proxy variables ignored, every request bounded
/// by `timeout`.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

/// The values of every header called `name` (case-insensitive) among `headers`, whose names
/// are lower case.
pub fn headers_named<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `GET url` (loopback; this process's proxy variables ignored, 10 s deadline) and its body
/// whatever the status: for `/probe?...&debug=true` traces and pages.
pub async fn get_text(url: &str) -> String {
    http_client(Duration::from_secs(10))
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body: {e}"))
}

/// Runs `future` and returns its output and how long it took.
pub async fn timed<F: Future>(future: F) -> (F::Output, Duration) {
    let started = Instant::now();
    let output = future.await;
    (output, started.elapsed())
}
