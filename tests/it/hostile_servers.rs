//! Issue 4 section 1, "Hostile and broken servers": every fault an identity provider or API can
//! commit (refused, reset, silent, dripping, truncated, HTML, oversized, gzip bomb, redirects,
//! absurd lifetimes, bad token types, TLS failures, echoed secrets), each against the token
//! endpoint and the canary where it applies, all on loopback. Each test asserts the `reason` the
//! fault is counted under (and that it is the only one), that the daemon keeps answering, and
//! that a healthy provider in the same daemon is unaffected.
//!
//! One in-process daemon probes one provider per fault (the shared [`World`], started once on
//! its own runtime thread), so the faults run concurrently, as they would in production, and
//! the suite stays fast. Memory (50 MiB bodies, gzip bombs) and secret echoes are checked on the
//! real binary as a child process: its resident memory and its trace-level logs are its own.

use crate::support;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use support::hostile::{self, Act, HostileServer, TestCa, head, response};
use support::{
    Binary, Daemon, FakeServer, Recorded, Reply, Running, provider_series, relevant_lines, sample,
    unix_now,
};

const TOKEN_FAILURES: &str = "oauth2_token_request_failures_total";
const CANARY_FAILURES: &str = "oauth2_canary_request_failures_total";
/// How long a fault gets to show up twice in the shared daemon. Generous: the machine is shared
/// and polling returns as soon as the condition holds.
const LONG_WAIT: Duration = Duration::from_secs(40);
/// The healthy provider's interval (the fault providers use 1 s).
const HEALTHY_INTERVAL: Duration = Duration::from_millis(500);
/// Twenty years in seconds: a huge lifetime that is still believable (the limit is 100 years).
const TWENTY_YEARS: u64 = 20 * 365 * 24 * 3600;

/// The real binary (started by `support::binary`) with `config` on `127.0.0.1:0` at
/// `log_level`: its resident memory and its logs are its own.
fn spawn(config: &std::path::Path, log_level: &str) -> Running {
    Binary::new()
        .config(config)
        .listen_loopback()
        .log_level(log_level)
        .spawn()
}

// ---------------------------------------------------------------------------------------------
// The shared daemon and its fakes.

struct World {
    runtime: tokio::runtime::Handle,
    daemon: Daemon,
    /// Token endpoint and API for the faults a complete HTTP answer can carry.
    idp: FakeServer,
    /// Byte-level faults: reset, drip, headers without a body.
    hostile: HostileServer,
    /// Where the redirecting endpoints point: must never receive anything.
    redirect_target: FakeServer,
    tls_untrusted: FakeServer,
    tls_expired: HostileServer,
    tls_wrong_host: HostileServer,
    tls_trusted: HostileServer,
    _dir: tempfile::TempDir,
}

static WORLD: OnceLock<World> = OnceLock::new();

/// The shared daemon, started on first use on a runtime thread of its own that outlives every
/// test (the test harness's threads only block on it).
fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("hostile-world".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                let handle = runtime.handle().clone();
                runtime.block_on(async move {
                    let _ = tx.send(start_world(handle).await);
                    std::future::pending::<()>().await;
                });
            })
            .unwrap();
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the shared daemon did not start")
    })
}

const HTML_PAGE: &str = "<!DOCTYPE html><html><head><title>Sign in</title></head>\
    <body><h1>Sign in</h1><form action=\"/login\" method=\"post\"></form></body></html>";

/// An unsigned JWT whose payload is base64url of text that is not JSON.
fn malformed_jwt() -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode("{exp: tomorrow, not json"),
        URL_SAFE_NO_PAD.encode("sig")
    )
}

fn token_body(expires_in: serde_json::Value) -> Reply {
    Reply::json(
        200,
        json!({"access_token": "tok-lifetime", "token_type": "Bearer", "expires_in": expires_in}),
    )
}

/// The plain fake: `/token/CASE` and `/api/CASE`.
fn idp_reply(request: &Recorded, redirect_target: &str) -> Reply {
    let html = |status| Reply::raw(status, &[("content-type", "text/html")], HTML_PAGE);
    let json_text = |text: &str| {
        Reply::raw(
            200,
            &[("content-type", "application/json")],
            text.as_bytes().to_vec(),
        )
    };
    let redirect = |status, to: &str| Reply::raw(status, &[("location", to)], Vec::new());
    match request.path.as_str() {
        "/token/ok" => Reply::token("tok-ok", 3600),
        "/api/ok" => Reply::status(200),
        "/token/hang" | "/api/hang" => Reply::Hang,
        "/token/html_200" | "/api/html_200" => html(200),
        "/token/html_500" | "/api/html_500" => html(500),
        "/token/truncated_json" => {
            json_text(r#"{"access_token":"tok-cut","token_type":"Bearer","expires_in":36"#)
        }
        "/token/json_array" => {
            json_text(r#"[{"access_token":"tok-arr","token_type":"Bearer","expires_in":3600}]"#)
        }
        // 307 keeps the method and body: following it would re-post the client secret.
        "/token/redirect_other_host" => redirect(307, &format!("{redirect_target}/token")),
        "/api/redirect_other_host" => redirect(302, &format!("{redirect_target}/api")),
        "/token/redirect_loop" => redirect(302, "/token/redirect_loop"),
        "/api/redirect_loop" => redirect(302, "/api/redirect_loop"),
        "/token/expires_negative" => token_body(json!(-3600)),
        "/token/expires_zero" => token_body(json!(0)),
        "/token/expires_twenty_years" => token_body(json!(TWENTY_YEARS)),
        // About 3 170 years: past the 100-year limit.
        "/token/expires_absurd" => token_body(json!(1.0e11)),
        "/token/expires_fractional" => token_body(json!(1.5)),
        "/token/expires_string" => token_body(json!("soon")),
        "/token/token_type_mac" => Reply::json(
            200,
            json!({"access_token": "tok-mac", "token_type": "mac", "expires_in": 3600}),
        ),
        "/token/jwt_malformed" => Reply::json(
            200,
            json!({"access_token": malformed_jwt(), "token_type": "Bearer"}),
        ),
        "/token/empty_access_token" => Reply::json(
            200,
            json!({"access_token": "", "token_type": "Bearer", "expires_in": 3600}),
        ),
        "/token/rate_limited" | "/api/rate_limited" => Reply::raw(
            429,
            &[("retry-after", "30"), ("content-type", "text/plain")],
            "Too Many Requests",
        ),
        _ => Reply::status(404),
    }
}

/// The byte-level fake: the same faults for `/token/CASE` and `/api/CASE`, around an answer that
/// would succeed (a valid token response, which is also a passing canary answer) if complete.
fn hostile_act(request: &hostile::Request) -> Act {
    let json = ("content-type", "application/json");
    let full = response(
        200,
        &[json],
        br#"{"access_token":"tok-hostile","token_type":"Bearer","expires_in":3600}"#,
    );
    match request.path.rsplit('/').next().unwrap_or_default() {
        "reset" => {
            let mut bytes = head(200, &[json, ("content-length", "200")]);
            bytes.extend_from_slice(br#"{"access_token":"tok-cut"#);
            Act::ResetAfter(bytes)
        }
        "drip" => Act::Drip {
            bytes: full,
            every: Duration::from_secs(1),
        },
        "headers_hang" => Act::ThenHang(head(200, &[json, ("content-length", "80")])),
        "headers_close" => Act::ThenClose(head(200, &[json, ("content-length", "80")])),
        _ => Act::ThenClose(response(404, &[], b"")),
    }
}

/// A TLS fake's answers, for when the handshake succeeds (the trusted control).
fn tls_act(request: &hostile::Request) -> Act {
    let json = ("content-type", "application/json");
    Act::ThenClose(match request.path.as_str() {
        "/token" => response(
            200,
            &[json],
            br#"{"access_token":"tok-tls","token_type":"Bearer","expires_in":3600}"#,
        ),
        "/api" => response(200, &[], b""),
        _ => response(404, &[], b""),
    })
}

/// One provider of the shared daemon.
struct Provider {
    name: String,
    token_url: String,
    canary_url: Option<String>,
    interval: &'static str,
    ca_file: bool,
}

async fn start_world(runtime: tokio::runtime::Handle) -> World {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();

    let redirect_target = FakeServer::start(|_| Reply::token("tok-stolen", 3600)).await;
    let target = format!("http://{}", redirect_target.addr);
    let idp = FakeServer::start(move |request| idp_reply(request, &target)).await;
    let hostile = HostileServer::start(hostile_act).await;
    let tls_untrusted = FakeServer::start_tls(|_| Reply::token("tok-untrusted", 3600)).await;
    let tls_expired =
        HostileServer::start_tls(ca.server_config(&["127.0.0.1"], 2020, 2021), tls_act).await;
    let tls_wrong_host = HostileServer::start_tls(
        ca.server_config(&["idp.wrong-host.invalid"], 2020, 2090),
        tls_act,
    )
    .await;
    let tls_trusted =
        HostileServer::start_tls(ca.server_config(&["127.0.0.1"], 2020, 2090), tls_act).await;

    let token = |case: &str, url: String, ca_file: bool| Provider {
        name: format!("token_{case}"),
        token_url: url,
        canary_url: None,
        interval: "1s",
        ca_file,
    };
    let canary = |case: &str, url: String, ca_file: bool| Provider {
        name: format!("canary_{case}"),
        token_url: idp.url("/token/ok"),
        canary_url: Some(url),
        interval: "1s",
        ca_file,
    };
    let mut providers = vec![Provider {
        name: "healthy".into(),
        token_url: idp.url("/token/ok"),
        canary_url: Some(idp.url("/api/ok")),
        interval: "500ms",
        ca_file: false,
    }];
    providers.push(token("refused", hostile::refused_url("/token"), false));
    providers.push(canary("refused", hostile::refused_url("/api"), false));
    for case in ["reset", "drip", "headers_hang", "headers_close"] {
        providers.push(token(case, hostile.url(&format!("/token/{case}")), false));
        providers.push(canary(case, hostile.url(&format!("/api/{case}")), false));
    }
    for case in [
        "hang",
        "html_200",
        "html_500",
        "redirect_other_host",
        "redirect_loop",
        "rate_limited",
    ] {
        providers.push(token(case, idp.url(&format!("/token/{case}")), false));
        providers.push(canary(case, idp.url(&format!("/api/{case}")), false));
    }
    for case in [
        "truncated_json",
        "json_array",
        "expires_negative",
        "expires_zero",
        "expires_twenty_years",
        "expires_absurd",
        "expires_fractional",
        "expires_string",
        "token_type_mac",
        "jwt_malformed",
        "empty_access_token",
    ] {
        providers.push(token(case, idp.url(&format!("/token/{case}")), false));
    }
    providers.push(token("tls_untrusted", tls_untrusted.url("/token"), false));
    providers.push(canary("tls_untrusted", tls_untrusted.url("/api"), false));
    providers.push(token("tls_expired", tls_expired.url("/token"), true));
    providers.push(canary("tls_expired", tls_expired.url("/api"), true));
    providers.push(token("tls_wrong_host", tls_wrong_host.url("/token"), true));
    providers.push(canary("tls_wrong_host", tls_wrong_host.url("/api"), true));
    providers.push(Provider {
        name: "tls_trusted_control".into(),
        token_url: tls_trusted.url("/token"),
        canary_url: Some(tls_trusted.url("/api")),
        interval: "1s",
        ca_file: true,
    });

    let mut toml = String::from("[defaults]\ninterval = \"1s\"\ntimeout = \"700ms\"\n");
    for p in &providers {
        toml.push_str(&format!(
            "\n[providers.{name}]\ninterval = \"{interval}\"\n\
             [providers.{name}.token]\nurl = \"{url}\"\nclient_id = \"id-{name}\"\n\
             client_secret = \"secret-{name}\"\n",
            name = p.name,
            interval = p.interval,
            url = p.token_url,
        ));
        if let Some(url) = &p.canary_url {
            toml.push_str(&format!("[providers.{}.canary]\nurl = \"{url}\"\n", p.name));
        }
        if p.ca_file {
            toml.push_str(&format!(
                "[providers.{}.tls]\nca_file = \"{}\"\n",
                p.name,
                ca_path.display()
            ));
        }
    }
    let daemon = Daemon::start(&toml).await;
    World {
        runtime,
        daemon,
        idp,
        hostile,
        redirect_target,
        tls_untrusted,
        tls_expired,
        tls_wrong_host,
        tls_trusted,
        _dir: dir,
    }
}

impl World {
    fn scrape(&self) -> String {
        self.runtime.block_on(self.daemon.scrape())
    }

    /// Scrapes until `done` holds; panics after [`LONG_WAIT`] with `provider`'s series.
    fn wait_until(&self, provider: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LONG_WAIT;
        loop {
            let metrics = self.scrape();
            if done(&metrics) {
                return metrics;
            }
            assert!(
                Instant::now() < deadline,
                "{provider}: condition not met within {LONG_WAIT:?}; its series:\n{}",
                provider_lines(&metrics, provider)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the scrape.

fn series(name: &str, provider: &str) -> String {
    format!("{name}{{provider=\"{provider}\"}}")
}

fn failure_series(family: &str, provider: &str, reason: &str) -> String {
    format!("{family}{{provider=\"{provider}\",reason=\"{reason}\"}}")
}

/// The scrape lines of one provider (no buckets), for failure messages.
fn provider_lines(metrics: &str, provider: &str) -> String {
    let label = format!("provider=\"{provider}\"");
    relevant_lines(metrics)
        .lines()
        .filter(|line| line.contains(&label))
        .collect::<Vec<_>>()
        .join("\n")
}

fn value(metrics: &str, series: &str) -> f64 {
    sample(metrics, series)
        .unwrap_or_else(|| panic!("{series} absent from:\n{}", relevant_lines(metrics)))
}

/// The healthy provider of the same daemon: probing, succeeding, never failing.
fn assert_healthy(metrics: &str) {
    for family in [TOKEN_FAILURES, CANARY_FAILURES] {
        assert_eq!(
            provider_series(metrics, family, "healthy"),
            Vec::<String>::new(),
            "the healthy provider was affected"
        );
    }
    assert_eq!(
        sample(metrics, &series("oauth2_probe_success", "healthy")),
        Some(1.0)
    );
    assert!(value(metrics, &series("oauth2_token_requests_total", "healthy")) >= 1.0);
}

/// Waits until `provider`'s token requests failed at least twice with `reason`, then checks
/// that every one of them failed, under that reason only, and that the healthy provider is
/// fine. Returns the scrape.
fn assert_token_fails(provider: &str, reason: &str) -> String {
    let world = world();
    let failed_series = failure_series(TOKEN_FAILURES, provider, reason);
    let metrics = world.wait_until(provider, |m| {
        sample(m, &failed_series).is_some_and(|n| n >= 2.0)
    });
    let failed = value(&metrics, &failed_series);
    assert_eq!(
        provider_series(&metrics, TOKEN_FAILURES, provider),
        vec![format!("{failed_series} {failed}")],
        "{provider}: failures under another reason too"
    );
    let requests = value(&metrics, &series("oauth2_token_requests_total", provider));
    // The request and its failure are counted one after the other: a scrape may fall between.
    assert!(
        failed <= requests && requests <= failed + 1.0,
        "{provider}: {requests} requests, {failed} failed: a request succeeded?\n{}",
        provider_lines(&metrics, provider)
    );
    assert_eq!(
        sample(&metrics, &series("oauth2_probe_success", provider)),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            &series("oauth2_token_last_success_timestamp_seconds", provider)
        ),
        None,
        "{provider}: a token was accepted"
    );
    assert_healthy(&metrics);
    metrics
}

/// Like [`assert_token_fails`] for a canary fault: the token is fine, every canary call failed
/// with `reason` only.
fn assert_canary_fails(provider: &str, reason: &str) -> String {
    let world = world();
    let failed_series = failure_series(CANARY_FAILURES, provider, reason);
    let metrics = world.wait_until(provider, |m| {
        sample(m, &failed_series).is_some_and(|n| n >= 2.0)
    });
    let failed = value(&metrics, &failed_series);
    assert_eq!(
        provider_series(&metrics, CANARY_FAILURES, provider),
        vec![format!("{failed_series} {failed}")],
        "{provider}: canary failures under another reason too"
    );
    assert_eq!(
        provider_series(&metrics, TOKEN_FAILURES, provider),
        Vec::<String>::new(),
        "{provider}: the token request failed, not (only) the canary"
    );
    let requests = value(&metrics, &series("oauth2_canary_requests_total", provider));
    assert!(
        failed <= requests && requests <= failed + 1.0,
        "{provider}: {requests} canary calls, {failed} failed\n{}",
        provider_lines(&metrics, provider)
    );
    assert_eq!(
        sample(&metrics, &series("oauth2_probe_success", provider)),
        Some(0.0)
    );
    assert_healthy(&metrics);
    metrics
}

/// Waits until `provider` got at least two tokens, with no failure; returns the scrape.
fn assert_token_accepted(provider: &str) -> String {
    let world = world();
    let metrics = world.wait_until(provider, |m| {
        sample(m, &series("oauth2_token_requests_total", provider)).is_some_and(|n| n >= 2.0)
            && sample(
                m,
                &series("oauth2_probe_last_run_timestamp_seconds", provider),
            )
            .is_some()
    });
    assert_eq!(
        provider_series(&metrics, TOKEN_FAILURES, provider),
        Vec::<String>::new(),
        "{provider}: the token was rejected"
    );
    assert_eq!(
        sample(&metrics, &series("oauth2_probe_success", provider)),
        Some(1.0)
    );
    assert!(
        sample(
            &metrics,
            &series("oauth2_token_last_success_timestamp_seconds", provider)
        )
        .is_some()
    );
    assert_healthy(&metrics);
    metrics
}

// ---------------------------------------------------------------------------------------------
// Transport faults.

#[test]
fn connection_refused() {
    assert_token_fails("token_refused", "connect");
    assert_canary_fails("canary_refused", "connect");
}

#[test]
fn connection_reset_mid_response() {
    assert_token_fails("token_reset", "connect");
    assert_canary_fails("canary_reset", "connect");
    // The fake really got the requests and answered part of a response before the reset.
    let world = world();
    assert!(world.hostile.count("/token/reset") >= 2);
    let served = world.hostile.served("/api/reset");
    assert!(
        !served.is_empty() && served.iter().all(|s| s.written > 0),
        "{served:?}"
    );
}

#[test]
fn accepted_and_never_answered() {
    assert_token_fails("token_hang", "timeout");
    assert_canary_fails("canary_hang", "timeout");
}

#[test]
fn one_byte_per_second_past_the_timeout() {
    let metrics = assert_token_fails("token_drip", "timeout");
    assert_canary_fails("canary_drip", "timeout");
    // Given up at the 700 ms timeout: not before (the server was sending, one byte a second),
    // nor when the drip would have ended (~90 s). The margin above is a loaded machine's.
    let sum = value(
        &metrics,
        &series("oauth2_token_request_duration_seconds_sum", "token_drip"),
    );
    let count = value(
        &metrics,
        &series("oauth2_token_request_duration_seconds_count", "token_drip"),
    );
    let mean = sum / count;
    assert!(
        (0.69..2.0).contains(&mean),
        "mean token request of a dripping server took {mean} s, expected about the 0.7 s timeout"
    );
}

#[test]
fn headers_then_no_body() {
    // The body never comes: the timeout ends the wait.
    assert_token_fails("token_headers_hang", "timeout");
    assert_canary_fails("canary_headers_hang", "timeout");
    // The connection closes where the announced body should be: a broken connection.
    assert_token_fails("token_headers_close", "connect");
    assert_canary_fails("canary_headers_close", "connect");
}

// ---------------------------------------------------------------------------------------------
// Answers that are not token responses.

#[test]
fn html_error_page_with_200() {
    assert_token_fails("token_html_200", "invalid_response");
    // A canary passes on any 2xx (its body is not checked): the HTML page is a pass.
    let metrics = world().wait_until("canary_html_200", |m| {
        sample(
            m,
            &series("oauth2_canary_requests_total", "canary_html_200"),
        )
        .is_some_and(|n| n >= 2.0)
    });
    assert_eq!(
        provider_series(&metrics, CANARY_FAILURES, "canary_html_200"),
        Vec::<String>::new()
    );
    assert_eq!(
        sample(&metrics, &series("oauth2_probe_success", "canary_html_200")),
        Some(1.0)
    );
}

#[test]
fn html_error_page_with_500() {
    assert_token_fails("token_html_500", "http_5xx");
    let metrics = assert_canary_fails("canary_html_500", "unexpected_status");
    assert!(
        sample(
            &metrics,
            r#"oauth2_canary_responses_total{code="500",provider="canary_html_500"}"#
        )
        .is_some_and(|n| n >= 2.0)
    );
}

#[test]
fn truncated_json() {
    assert_token_fails("token_truncated_json", "invalid_response");
}

#[test]
fn json_array_instead_of_object() {
    assert_token_fails("token_json_array", "invalid_response");
}

#[test]
fn redirect_to_another_host_is_not_followed() {
    assert_token_fails("token_redirect_other_host", "invalid_response");
    let metrics = assert_canary_fails("canary_redirect_other_host", "unexpected_status");
    assert!(
        sample(
            &metrics,
            r#"oauth2_canary_responses_total{code="302",provider="canary_redirect_other_host"}"#
        )
        .is_some_and(|n| n >= 2.0)
    );
    let world = world();
    // The origin got the credentials (so following would have re-sent them) ...
    let posted = world.idp.requests_to("/token/redirect_other_host");
    assert_eq!(
        posted[0].form_map()["client_secret"],
        "secret-token_redirect_other_host"
    );
    let called = world.idp.requests_to("/api/redirect_other_host");
    assert_eq!(called[0].bearer(), Some("tok-ok"));
    // ... and the other host received nothing at all: no secret, no token.
    assert_eq!(
        world
            .redirect_target
            .requests()
            .iter()
            .map(|r| format!("{} {} {:?}", r.method, r.path, r.headers))
            .collect::<Vec<_>>(),
        Vec::<String>::new(),
        "the redirect target was contacted"
    );
}

#[test]
fn redirect_loop_is_not_followed() {
    let world = world();
    for (provider, path, family, reason, requests) in [
        (
            "token_redirect_loop",
            "/token/redirect_loop",
            TOKEN_FAILURES,
            "invalid_response",
            "oauth2_token_requests_total",
        ),
        (
            "canary_redirect_loop",
            "/api/redirect_loop",
            CANARY_FAILURES,
            "unexpected_status",
            "oauth2_canary_requests_total",
        ),
    ] {
        if family == TOKEN_FAILURES {
            assert_token_fails(provider, reason);
        } else {
            assert_canary_fails(provider, reason);
        }
        // One request per probe, no hop: what the fake saw matches what was counted (a request
        // of the running cycle may be seen but not yet counted).
        let seen_before = world.idp.count(path);
        let metrics = world.scrape();
        let seen_after = world.idp.count(path);
        let counted = value(&metrics, &series(requests, provider)) as usize;
        assert!(
            counted <= seen_after && seen_before <= counted + 1,
            "{provider}: counted {counted} requests, the fake saw {seen_before}..{seen_after}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Token responses with bad fields.

#[test]
fn expires_in_negative() {
    assert_token_fails("token_expires_negative", "invalid_response");
}

#[test]
fn expires_in_zero_is_accepted_as_already_expired() {
    let p = "token_expires_zero";
    let metrics = assert_token_accepted(p);
    assert_eq!(
        sample(&metrics, &series("oauth2_token_valid", p)),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, &series("oauth2_token_expires_in_seconds", p)),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, &series("oauth2_token_lifetime_seconds", p)),
        Some(0.0)
    );
}

#[test]
fn expires_in_huge() {
    // Twenty years is odd but within the documented limit (100 years): believed as issued.
    let p = "token_expires_twenty_years";
    let metrics = assert_token_accepted(p);
    assert_eq!(
        sample(&metrics, &series("oauth2_token_lifetime_seconds", p)),
        Some(TWENTY_YEARS as f64)
    );
    let expiry = value(
        &metrics,
        &series("oauth2_token_expiry_timestamp_seconds", p),
    );
    let expected = unix_now() + TWENTY_YEARS as f64;
    assert!(
        (expiry - expected).abs() < 60.0,
        "expiry {expiry}, expected about {expected}"
    );
    assert_eq!(
        sample(&metrics, &series("oauth2_token_valid", p)),
        Some(1.0)
    );
    // Past the limit (1e11 s, ~3 170 years) the response is not believed.
    assert_token_fails("token_expires_absurd", "invalid_response");
}

#[test]
fn expires_in_fractional() {
    let p = "token_expires_fractional";
    let metrics = assert_token_accepted(p);
    assert_eq!(
        sample(&metrics, &series("oauth2_token_lifetime_seconds", p)),
        Some(1.5)
    );
    let expiry = value(
        &metrics,
        &series("oauth2_token_expiry_timestamp_seconds", p),
    );
    let now = unix_now();
    assert!(
        expiry > now - 10.0 && expiry <= now + 1.5,
        "expiry {expiry} is not 1.5 s after a recent request (now {now})"
    );
}

#[test]
fn expires_in_non_numeric_string() {
    assert_token_fails("token_expires_string", "invalid_response");
}

#[test]
fn token_type_other_than_bearer() {
    assert_token_fails("token_token_type_mac", "invalid_response");
}

#[test]
fn jwt_with_malformed_payload_has_unknown_lifetime() {
    let p = "token_jwt_malformed";
    let metrics = assert_token_accepted(p);
    for absent in [
        "oauth2_token_expiry_timestamp_seconds",
        "oauth2_token_expires_in_seconds",
        "oauth2_token_lifetime_seconds",
    ] {
        assert_eq!(
            sample(&metrics, &series(absent, p)),
            None,
            "{absent} exported for a token of unknown lifetime"
        );
    }
    assert_eq!(
        sample(&metrics, &series("oauth2_token_valid", p)),
        Some(1.0)
    );
}

#[test]
fn empty_access_token() {
    assert_token_fails("token_empty_access_token", "invalid_response");
}

#[test]
fn rate_limited_with_retry_after() {
    let metrics = assert_token_fails("token_rate_limited", "rate_limited");
    // The server's `Retry-After: 30` is read: honoured (the next run is 30 s after the last, not
    // the 1 s interval) and said on the status page, in the failure's detail.
    let next = value(
        &metrics,
        &series(
            "oauth2_probe_next_run_timestamp_seconds",
            "token_rate_limited",
        ),
    );
    let last = value(
        &metrics,
        &series(
            "oauth2_probe_last_run_timestamp_seconds",
            "token_rate_limited",
        ),
    );
    assert!(
        (29.0..40.0).contains(&(next - last)),
        "next run {next} is {} s after the last {last}, expected Retry-After's 30 s",
        next - last
    );
    let world = world();
    let page = world
        .runtime
        .block_on(support::get_text(&world.daemon.url("/")));
    let row = page
        .lines()
        .find(|line| line.contains(r#"data-provider="token_rate_limited""#))
        .unwrap_or_else(|| panic!("no token_rate_limited row:\n{page}"));
    assert!(row.contains("rate limited (Retry-After: 30)"), "{row}");
    let metrics = assert_canary_fails("canary_rate_limited", "rate_limited");
    assert!(
        sample(
            &metrics,
            r#"oauth2_canary_responses_total{code="429",provider="canary_rate_limited"}"#
        )
        .is_some_and(|n| n >= 2.0)
    );
}

// ---------------------------------------------------------------------------------------------
// TLS.

#[test]
fn tls_untrusted_certificate() {
    assert_token_fails("token_tls_untrusted", "tls");
    assert_canary_fails("canary_tls_untrusted", "tls");
    // Refused at the handshake: no request (no secret, no token) reached the server.
    assert_eq!(world().tls_untrusted.requests().len(), 0);
}

#[test]
fn tls_expired_certificate() {
    assert_trusted_control();
    assert_token_fails("token_tls_expired", "tls");
    assert_canary_fails("canary_tls_expired", "tls");
    assert_eq!(world().tls_expired.requests().len(), 0);
}

#[test]
fn tls_wrong_host_name() {
    assert_trusted_control();
    assert_token_fails("token_tls_wrong_host", "tls");
    assert_canary_fails("canary_tls_wrong_host", "tls");
    assert_eq!(world().tls_wrong_host.requests().len(), 0);
}

/// The control of the expired and wrong-host cases: a valid certificate for 127.0.0.1 from the
/// same CA works, so those failures are about the certificate, not about trusting the CA.
fn assert_trusted_control() {
    let metrics = world().wait_until("tls_trusted_control", |m| {
        sample(m, &series("oauth2_probe_success", "tls_trusted_control")) == Some(1.0)
    });
    assert_eq!(
        provider_series(&metrics, TOKEN_FAILURES, "tls_trusted_control"),
        Vec::<String>::new()
    );
    assert!(world().tls_trusted.count("/api") >= 1);
}

// ---------------------------------------------------------------------------------------------
// The daemon as a whole.

#[test]
fn healthy_provider_keeps_its_schedule_and_the_daemon_answers_during_the_faults() {
    let world = world();
    // The slow faults are in progress (each holds a connection for the whole timeout).
    world.wait_until("token_drip", |m| {
        sample(m, &failure_series(TOKEN_FAILURES, "token_drip", "timeout")).is_some()
            && sample(
                m,
                &failure_series(CANARY_FAILURES, "canary_hang", "timeout"),
            )
            .is_some()
    });
    let requests = |m: &str| value(m, &series("oauth2_token_requests_total", "healthy"));
    let started = Instant::now();
    let first = world.scrape();
    let mut scrapes = 1;
    // Every scrape answers while the faults go on; bounded in time and count.
    while started.elapsed() < Duration::from_secs(5) && scrapes < 200 {
        std::thread::sleep(Duration::from_millis(200));
        world.scrape();
        scrapes += 1;
    }
    let last = world.scrape();
    let window = started.elapsed();
    let done = requests(&last) - requests(&first);
    let expected = window.as_secs_f64() / HEALTHY_INTERVAL.as_secs_f64();
    // Tolerant of a busy machine, but a provider blocked behind the faults would do ~0 cycles,
    // and one catching up in bursts would exceed the schedule.
    assert!(
        done >= expected * 0.5 && done <= expected + 2.0,
        "healthy did {done} cycles in {window:?} at a {HEALTHY_INTERVAL:?} interval"
    );
    assert_healthy(&last);
    let last_run = value(
        &last,
        &series("oauth2_probe_last_run_timestamp_seconds", "healthy"),
    );
    assert!(unix_now() - last_run < 3.0, "healthy's last cycle is stale");
    let (status, body) = world
        .runtime
        .block_on(hostile::get(world.daemon.addr, "/-/healthy"));
    assert_eq!((status, body.as_str()), (200, "Healthy.\n"));
}

// ---------------------------------------------------------------------------------------------
// Memory: 50 MiB bodies and gzip bombs against the real binary.

#[test]
fn gzip_bomb_helper_builds_valid_gzip() {
    use std::io::Read as _;
    // A small bomb decodes, CRC and length checked by the decoder, to what it claims.
    let small = hostile::gzip_bomb_with(900 * 1024, 3);
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(hostile::assemble(&small).as_slice())
        .read_to_end(&mut inflated)
        .unwrap();
    let prefix = br#"{"access_token":"tok-bomb","token_type":"Bearer","pad":""#;
    assert_eq!(inflated.len(), prefix.len() + 3 * 1024 * 1024);
    assert!(inflated.starts_with(prefix));
    assert!(inflated[prefix.len()..].iter().all(|b| *b == b'x'));
    // The real one: under the 1 MiB body cap on the wire, more than 500 MiB inflated.
    let bomb = hostile::gzip_bomb(900 * 1024);
    assert!(bomb.body_len() < 1024 * 1024, "{}", bomb.body_len());
    assert!(bomb.repeat > 500, "inflates to only {} MiB", bomb.repeat);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bodies_and_gzip_bombs_keep_memory_bounded() {
    const LIMIT_KIB: u64 = 100 * 1024;
    const FIFTY_MIB: usize = 50 * 1024 * 1024;
    let streamed = hostile::huge_json(FIFTY_MIB, false);
    let announced = hostile::huge_json(FIFTY_MIB, true);
    let bomb = hostile::gzip_bomb(900 * 1024);
    let server = HostileServer::start(move |request| {
        let ok_token = br#"{"access_token":"tok-ok","token_type":"Bearer","expires_in":3600}"#;
        match request.path.as_str() {
            "/token/ok" => Act::ThenClose(response(200, &[], ok_token)),
            "/api/ok" => Act::ThenClose(response(200, &[], b"")),
            "/token/streamed" | "/api/streamed" => Act::Stream(streamed.clone()),
            "/token/announced" | "/api/announced" => Act::Stream(announced.clone()),
            "/token/gzip_bomb" | "/api/gzip_bomb" => Act::Stream(bomb.clone()),
            _ => Act::ThenClose(response(404, &[], b"")),
        }
    })
    .await;
    let cases = ["streamed", "announced", "gzip_bomb"];
    let mut toml = String::from("[defaults]\ninterval = \"500ms\"\ntimeout = \"3s\"\n");
    let mut add = |name: &str, token: &str, canary: &str| {
        toml.push_str(&format!(
            "[providers.{name}.token]\nurl = \"{}\"\nclient_id = \"id\"\nclient_secret = \"s3cret-mem\"\n\
             [providers.{name}.canary]\nurl = \"{}\"\n",
            server.url(&format!("/token/{token}")),
            server.url(&format!("/api/{canary}")),
        ));
    };
    add("healthy", "ok", "ok");
    for case in cases {
        add(&format!("token_{case}"), case, "ok");
        add(&format!("canary_{case}"), "ok", case);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exporter.toml");
    std::fs::write(&config, &toml).unwrap();
    let mut exporter = spawn(&config, "info");
    let addr = exporter.address().await;

    // Let every fault repeat, reading the resident memory all along.
    let started = Instant::now();
    let mut max_rss = 0;
    let mut first: Option<(Instant, String)> = None;
    let metrics = loop {
        for _ in 0..5 {
            max_rss = max_rss.max(exporter.memory_kib("VmRSS").unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, metrics) = hostile::get(addr, "/metrics").await;
        assert_eq!(status, 200);
        first.get_or_insert_with(|| (Instant::now(), metrics.clone()));
        let repeated = cases.iter().all(|case| {
            sample(
                &metrics,
                &failure_series(TOKEN_FAILURES, &format!("token_{case}"), "invalid_response"),
            )
            .is_some_and(|n| n >= 5.0)
                && sample(
                    &metrics,
                    &series("oauth2_canary_requests_total", &format!("canary_{case}")),
                )
                .is_some_and(|n| n >= 5.0)
        });
        if repeated {
            break metrics;
        }
        assert!(
            started.elapsed() < Duration::from_secs(45) && exporter.running(),
            "the faults did not repeat 5 times within 45 s:\n{}",
            relevant_lines(&metrics)
        );
    };
    let peak = exporter.memory_kib("VmHWM").unwrap();
    let (first_at, first_metrics) = first.unwrap();

    for case in cases {
        let token = format!("token_{case}");
        let failed = value(
            &metrics,
            &failure_series(TOKEN_FAILURES, &token, "invalid_response"),
        );
        assert_eq!(
            provider_series(&metrics, TOKEN_FAILURES, &token),
            vec![format!(
                "{} {failed}",
                failure_series(TOKEN_FAILURES, &token, "invalid_response")
            )]
        );
        // A canary passes on its status; the body is read up to the cap and dropped.
        let canary = format!("canary_{case}");
        assert_eq!(
            provider_series(&metrics, CANARY_FAILURES, &canary),
            Vec::<String>::new()
        );
        assert_eq!(
            sample(&metrics, &series("oauth2_probe_success", &canary)),
            Some(1.0)
        );
    }
    // The exporter hung up on the 50 MiB bodies long before their end.
    for path in [
        "/token/streamed",
        "/token/announced",
        "/api/streamed",
        "/api/announced",
    ] {
        let served = server.served(path);
        assert!(!served.is_empty(), "{path} never finished being served");
        assert!(
            served
                .iter()
                .all(|s| !s.complete && s.written < FIFTY_MIB as u64 / 2),
            "{path}: the exporter read a 50 MiB body to the end: {served:?}"
        );
    }
    assert!(
        peak < LIMIT_KIB && max_rss < LIMIT_KIB,
        "resident memory peaked at {peak} KiB (sampled max {max_rss} KiB), limit {LIMIT_KIB} KiB"
    );
    // The healthy provider kept its 500 ms schedule meanwhile.
    let window = first_at.elapsed().as_secs_f64();
    let done = value(&metrics, &series("oauth2_token_requests_total", "healthy"))
        - value(
            &first_metrics,
            &series("oauth2_token_requests_total", "healthy"),
        );
    assert!(
        done >= window / 0.5 * 0.5,
        "healthy did {done} cycles in {window:.1} s at a 500 ms interval"
    );
    assert_eq!(
        provider_series(&metrics, TOKEN_FAILURES, "healthy"),
        Vec::<String>::new()
    );
    let (status, _) = exporter.stop().await;
    let (code, stderr) = (status.code(), exporter.stderr());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panic"), "{stderr}");
    eprintln!("hostile_servers: exporter peak RSS {peak} KiB (sampled max {max_rss} KiB)");
}

// ---------------------------------------------------------------------------------------------
// An identity provider that echoes the secret back.

// Secrets whose raw, form-encoded and JSON-escaped forms all differ; each starts with a marker
// that survives every encoding, so even a partial echo is found. TOML literal strings hold them.
const ECHO_SECRET: &str = r#"EchoSc7f3a9c-s3cr3t "q" a&b=c+d/e\f é"#;
const ECHO_BASIC_SECRET: &str = r#"EchoBa2c8e4f-s3cr3t:co:lon+plus/sl "b""#;
const ECHO_PASSWORD: &str = r#"EchoPw5d1e0b-pa55 "w" x&y=z+1/2\3"#;
const ECHO_TOKEN: &str = "EchoTk9b7a3d-issued-access-token";

/// What the echoing IdP says: the whole request body and the Authorization header (and, on
/// `/token/bare_basic`, the bare base64 credentials of a Basic header). Credentials come first:
/// the exporter keeps 200 characters of such text.
fn echo_text(request: &Recorded) -> String {
    let mut text = String::new();
    if let Some(authorization) = request.header("authorization") {
        text.push_str(&format!("authorization: {authorization}; "));
        if let Some(basic) = authorization.strip_prefix("Basic ")
            && request.path == "/token/bare_basic"
        {
            text.push_str(&format!("credentials: {basic}; "));
        }
    }
    text.push_str(&format!("you sent: {}", request.body_text()));
    text
}

fn echo_reply(request: &Recorded) -> Reply {
    let echoed = echo_text(request);
    match request.path.as_str() {
        "/token/json_error" | "/token/bare_basic" => Reply::json(
            401,
            json!({"error": "invalid_client", "error_description": echoed}),
        ),
        "/token/text_400" => Reply::raw(400, &[("content-type", "text/plain")], echoed),
        "/token/html_500" => Reply::raw(
            500,
            &[("content-type", "text/html")],
            format!("<html><body><pre>{echoed}</pre></body></html>"),
        ),
        "/token/text_200" => Reply::raw(200, &[("content-type", "text/plain")], echoed),
        // The form body is printable ASCII: it fits in a header.
        "/token/retry_after" => Reply::raw(429, &[("retry-after", &request.body_text())], echoed),
        "/token/ok" => Reply::token(ECHO_TOKEN, 3600),
        "/api/echo" => Reply::raw(
            401,
            &[("www-authenticate", "Bearer error=\"invalid_token\"")],
            format!("rejected {}", request.header("authorization").unwrap_or("")),
        ),
        _ => Reply::status(404),
    }
}

/// Every form in which `secret` must not appear: raw, form-encoded, JSON-escaped (which is also
/// how logfmt escapes quotes and backslashes), and its marker alone.
fn needles(secret: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap();
    let marker = secret.split('-').next().unwrap().to_string();
    vec![
        secret.to_string(),
        form,
        json.trim_matches('"').to_string(),
        marker,
    ]
}

/// Every form of every echo secret, the issued token, and the Basic credentials of `basic_id`.
fn forbidden(basic_id: &str) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for secret in [ECHO_SECRET, ECHO_BASIC_SECRET, ECHO_PASSWORD, ECHO_TOKEN] {
        all.extend(needles(secret));
    }
    let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    all.insert(STANDARD.encode(format!("{}:{}", form(basic_id), form(ECHO_BASIC_SECRET))));
    all.insert(STANDARD.encode(format!("{basic_id}:{ECHO_BASIC_SECRET}")));
    all
}

/// One provider of an echo run.
struct EchoCase {
    name: &'static str,
    /// The IdP path under `/token/`.
    path: &'static str,
    /// The `[providers.NAME.token]` lines besides `url` and `client_id`.
    auth: String,
    /// (failure family, reason) it must be counted under.
    expect: (&'static str, &'static str),
}

fn echo_case(
    name: &'static str,
    path: &'static str,
    auth: String,
    expect: (&'static str, &'static str),
) -> EchoCase {
    EchoCase {
        name,
        path,
        auth,
        expect,
    }
}

fn post_auth() -> String {
    format!("client_secret = '{ECHO_SECRET}'\n")
}

fn basic_auth() -> String {
    format!("auth_method = \"client_secret_basic\"\nclient_secret = '{ECHO_BASIC_SECRET}'\n")
}

/// What an echo run left behind.
struct EchoRun {
    idp: FakeServer,
    metrics: String,
    index: String,
    stdout: String,
    stderr: String,
}

/// Runs the binary at `--log.level trace` against the echoing IdP until every case failed twice
/// under its reason (and under that reason only), then stops it and returns everything it said.
async fn run_echo(cases: &[EchoCase]) -> EchoRun {
    let idp = FakeServer::start(echo_reply).await;
    let mut toml = String::from("[defaults]\ninterval = \"500ms\"\ntimeout = \"2s\"\n");
    for case in cases {
        toml.push_str(&format!(
            "[providers.{name}.token]\nurl = \"{}\"\nclient_id = \"id-{name}\"\n{}",
            idp.url(&format!("/token/{}", case.path)),
            case.auth,
            name = case.name,
        ));
        if case.expect.0 == CANARY_FAILURES {
            toml.push_str(&format!(
                "[providers.{}.canary]\nurl = \"{}\"\n",
                case.name,
                idp.url("/api/echo")
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exporter.toml");
    std::fs::write(&config, &toml).unwrap();
    // Owner-only, as a file with inline secrets should be (no start-up warning about it).
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut exporter = spawn(&config, "trace");
    let addr = exporter.address().await;

    let started = Instant::now();
    let metrics = loop {
        let (status, metrics) = hostile::get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let all_failed = cases.iter().all(|case| {
            let (family, reason) = case.expect;
            sample(&metrics, &failure_series(family, case.name, reason)).is_some_and(|n| n >= 2.0)
        });
        if all_failed {
            break metrics;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40) && exporter.running(),
            "not every echo case failed twice within 40 s:\n{}\n{}",
            relevant_lines(&metrics),
            exporter.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for case in cases {
        let (family, reason) = case.expect;
        let series = failure_series(family, case.name, reason);
        let n = value(&metrics, &series);
        assert_eq!(
            provider_series(&metrics, family, case.name),
            vec![format!("{series} {n}")],
        );
    }
    let (status, index) = hostile::get(addr, "/").await;
    assert_eq!(status, 200);
    let (status, _) = exporter.stop().await;
    let (code, stdout, stderr) = (status.code(), exporter.stdout(), exporter.stderr());
    assert_eq!(code, Some(0), "{stderr}");
    // Control: each failure was logged, so the echoed text did reach the log formatter.
    for case in cases {
        assert!(
            stderr.lines().any(|line| line.contains("probe failed")
                && line.contains(&format!("provider={} ", case.name))
                && line.contains(&format!("reason={}", case.expect.1))),
            "no failure line for {}:\n{stderr}",
            case.name
        );
    }
    EchoRun {
        idp,
        metrics,
        index,
        stdout,
        stderr,
    }
}

/// The needles found in any output of the run, with the line they are on.
fn leaks(run: &EchoRun, forbidden: &BTreeSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    for (output, text) in [
        ("stderr", &run.stderr),
        ("stdout", &run.stdout),
        ("/metrics", &run.metrics),
        ("/", &run.index),
    ] {
        for needle in forbidden {
            if let Some(line) = text.lines().find(|line| line.contains(needle.as_str())) {
                found.push(format!("{needle:?} in {output}: {line}"));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_echoing_the_secret_never_reaches_logs_or_metrics() {
    let cases = [
        echo_case(
            "echo_json_error",
            "json_error",
            post_auth(),
            (TOKEN_FAILURES, "invalid_client"),
        ),
        echo_case(
            "echo_text_400",
            "text_400",
            post_auth(),
            (TOKEN_FAILURES, "http_4xx"),
        ),
        echo_case(
            "echo_html_500",
            "html_500",
            post_auth(),
            (TOKEN_FAILURES, "http_5xx"),
        ),
        echo_case(
            "echo_text_200",
            "text_200",
            post_auth(),
            (TOKEN_FAILURES, "invalid_response"),
        ),
        echo_case(
            "echo_retry_after",
            "retry_after",
            post_auth(),
            (TOKEN_FAILURES, "rate_limited"),
        ),
        echo_case(
            "echo_basic",
            "json_error",
            basic_auth(),
            (TOKEN_FAILURES, "invalid_client"),
        ),
        echo_case(
            "echo_json_body",
            "json_error",
            format!("auth_method = \"json_body\"\nclient_secret = '{ECHO_SECRET}'\n"),
            (TOKEN_FAILURES, "invalid_client"),
        ),
        echo_case(
            "echo_password",
            "json_error",
            format!(
                "grant_type = \"password\"\nusername = \"user\"\npassword = '{ECHO_PASSWORD}'\n\
                 client_secret = '{ECHO_SECRET}'\n"
            ),
            (TOKEN_FAILURES, "invalid_client"),
        ),
        echo_case(
            "echo_canary",
            "ok",
            post_auth(),
            (CANARY_FAILURES, "unauthorized"),
        ),
    ];
    let run = run_echo(&cases).await;

    // Controls: the IdP and API really received every secret and the token, and the exporter
    // scrubbed at least one echo (rather than, say, never logging the text).
    let sent = |path: &str| run.idp.requests_to(&format!("/token/{path}"));
    assert_eq!(sent("text_400")[0].form_map()["client_secret"], ECHO_SECRET);
    let basic = sent("json_error")
        .iter()
        .find_map(|r| r.basic_credentials())
        .unwrap();
    assert_eq!(
        basic,
        ("id-echo_basic".to_string(), ECHO_BASIC_SECRET.to_string())
    );
    assert!(sent("json_error").iter().any(|r| {
        r.content_type().as_deref() == Some("application/json")
            && r.json()["client_secret"] == ECHO_SECRET
    }));
    assert!(sent("json_error").iter().any(|r| {
        r.form()
            .contains(&("password".into(), ECHO_PASSWORD.into()))
    }));
    assert_eq!(
        run.idp.requests_to("/api/echo")[0].bearer(),
        Some(ECHO_TOKEN)
    );
    assert!(
        run.stderr.contains("[redacted]"),
        "no echo was scrubbed:\n{}",
        run.stderr
    );

    assert_eq!(
        leaks(&run, &forbidden("id-echo_basic")),
        Vec::<String>::new(),
        "secrets leaked"
    );
}

/// An IdP that echoes the bare base64 credentials of the Basic header (without the `Basic `
/// prefix): they decode to the client secret, so they must be scrubbed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_echoing_bare_basic_credentials_never_reaches_logs_or_pages() {
    let cases = [echo_case(
        "echo_bare_basic",
        "bare_basic",
        basic_auth(),
        (TOKEN_FAILURES, "invalid_client"),
    )];
    let run = run_echo(&cases).await;
    let echoed = run.idp.requests_to("/token/bare_basic");
    assert_eq!(
        echoed[0].basic_credentials(),
        Some((
            "id-echo_bare_basic".to_string(),
            ECHO_BASIC_SECRET.to_string()
        ))
    );
    assert_eq!(
        leaks(&run, &forbidden("id-echo_bare_basic")),
        Vec::<String>::new(),
        "secrets leaked"
    );
}
