//! Issue #2 ("Tests": response mapping, every failure reason produced and asserted on the metric):
//! every token and canary failure reason of the closed set, produced through the running daemon
//! against loopback fakes and read back from `/metrics` with its exact labels; and how the token
//! response's lifetime fields map to the expiry metrics.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::json;
use support::{
    Binary, Daemon, FakeServer, Provider, Recorded, Reply, WAIT, assert_no_mismatches,
    closed_port_url, jwt, provider_series, relevant_lines, sample, unix_now,
};

/// The per-request timeout of the providers that are made to time out: short, so the test is
/// fast, yet far above loopback latency.
const SHORT_TIMEOUT: &str = "300ms";

/// The timeout of every other provider: an answer that comes late on a loaded machine must
/// still be counted for what it says, not as `timeout`.
const LONG_TIMEOUT: &str = "10s";

/// The timeout of the provider `case`: short only for the one made to time out.
fn timeout_of(case: &str) -> &'static str {
    if case == "timeout" {
        SHORT_TIMEOUT
    } else {
        LONG_TIMEOUT
    }
}

/// A body just over the exporter's 1 MiB cap.
fn oversized_body() -> Vec<u8> {
    let mut body = br#"{"access_token":"t","padding":""#.to_vec();
    body.resize(1024 * 1024 + 100, b'x');
    body.extend_from_slice(br#""}"#);
    body
}

/// What the token endpoint of each `token_cases` provider answers.
fn token_reply(path: &str) -> Reply {
    let case = path.trim_start_matches("/token/");
    match case {
        "invalid_client" => Reply::oauth_error(401, "invalid_client"),
        "invalid_grant"
        | "invalid_scope"
        | "invalid_request"
        | "unauthorized_client"
        | "unsupported_grant_type" => Reply::oauth_error(400, case),
        "oauth_error" => Reply::oauth_error(400, "interaction_required"),
        "rate_limited" => Reply::raw(
            429,
            &[("retry-after", "30"), ("content-type", "application/json")],
            r#"{"error":"invalid_client"}"#,
        ),
        "http_4xx" => Reply::raw(403, &[("content-type", "text/html")], "<h1>Forbidden</h1>"),
        "http_5xx" => Reply::raw(503, &[("content-type", "text/plain")], "upstream down"),
        "timeout" => Reply::Hang,
        "reset" => Reply::Close,
        "html_200" => Reply::raw(200, &[("content-type", "text/html")], "<html>login</html>"),
        "truncated_json" => Reply::raw(
            200,
            &[("content-type", "application/json")],
            r#"{"access_token":"t","expires_in":36"#,
        ),
        "oversized" => Reply::raw(
            200,
            &[("content-type", "application/json")],
            oversized_body(),
        ),
        // No Content-Length: the cap must hold while streaming, not only on the announced size.
        "oversized_streamed" => {
            let mut bytes =
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                    .to_vec();
            bytes.extend(oversized_body());
            Reply::Bytes(bytes)
        }
        "missing_token" => Reply::json(200, json!({"token_type": "Bearer", "expires_in": 3600})),
        _ => Reply::status(500),
    }
}

/// Every token failure reason the token endpoint's answer decides, one provider each, all in one
/// daemon. Each provider also has a canary, which must then be skipped with `no_token`. The
/// others: `tls` in `untrusted_certificate_is_reason_tls`; `secret_unavailable`,
/// `client_assertion`, `claims` and `discovery` in
/// `failures_of_credentials_claims_and_discovery_are_counted_with_their_label`; `exporter_busy` in
/// `a_full_exporter_is_exporter_busy_for_token_and_canary`.
#[tokio::test]
async fn every_token_failure_reason_is_counted_with_its_label() {
    let idp = FakeServer::start(|r: &Recorded| match r.path.as_str() {
        path if path.starts_with("/token/") => token_reply(path),
        _ => Reply::status(200),
    })
    .await;
    let closed = closed_port_url("/token").await;

    // (provider, token URL, expected reason)
    let mut cases: Vec<(String, String, &str)> = [
        ("invalid_client", "invalid_client"),
        ("invalid_grant", "invalid_grant"),
        ("invalid_scope", "invalid_scope"),
        ("invalid_request", "invalid_request"),
        ("unauthorized_client", "unauthorized_client"),
        ("unsupported_grant_type", "unsupported_grant_type"),
        ("oauth_error", "oauth_error"),
        ("rate_limited", "rate_limited"),
        ("http_4xx", "http_4xx"),
        ("http_5xx", "http_5xx"),
        ("timeout", "timeout"),
        ("reset", "connect"),
        ("html_200", "invalid_response"),
        ("truncated_json", "invalid_response"),
        ("oversized", "invalid_response"),
        ("oversized_streamed", "invalid_response"),
        ("missing_token", "invalid_response"),
    ]
    .into_iter()
    .map(|(case, reason)| (case.to_string(), idp.url(&format!("/token/{case}")), reason))
    .collect();
    cases.push(("refused".into(), closed, "connect"));

    let toml: String = cases
        .iter()
        .map(|(provider, url, _)| {
            Provider::new(provider, url)
                .timeout(timeout_of(provider))
                .canary(&idp.url("/api"))
                .toml()
        })
        .collect();
    let daemon = Daemon::start(&toml).await;
    let names: Vec<&str> = cases.iter().map(|(p, _, _)| p.as_str()).collect();
    daemon.wait_for_cycles(&names, WAIT).await;
    // A scrape can be torn by a cycle recorded while it is gathered (as in any Prometheus
    // client); every first cycle has been recorded now and the intervals are long, so one
    // more scrape is a consistent snapshot.
    let metrics = daemon.scrape().await;

    let mut mismatches = Vec::new();
    for (provider, _, reason) in &cases {
        let expected = vec![format!(
            r#"oauth2_token_request_failures_total{{provider="{provider}",reason="{reason}"}} 1"#
        )];
        let got = provider_series(&metrics, "oauth2_token_request_failures_total", provider);
        if got != expected {
            mismatches.push(format!("{provider}: expected {expected:?}, got {got:?}"));
        }
        let expected_canary = vec![format!(
            r#"oauth2_canary_request_failures_total{{provider="{provider}",reason="no_token"}} 1"#
        )];
        let got = provider_series(&metrics, "oauth2_canary_request_failures_total", provider);
        if got != expected_canary {
            mismatches.push(format!(
                "{provider} canary: expected {expected_canary:?}, got {got:?}"
            ));
        }
        for (series, value) in [
            (
                format!(r#"oauth2_token_requests_total{{provider="{provider}"}}"#),
                1.0,
            ),
            (
                format!(r#"oauth2_canary_requests_total{{provider="{provider}"}}"#),
                0.0,
            ),
            (
                format!(r#"oauth2_probe_success{{provider="{provider}"}}"#),
                0.0,
            ),
            (
                format!(r#"oauth2_token_valid{{provider="{provider}"}}"#),
                0.0,
            ),
        ] {
            let got = sample(&metrics, &series);
            if got != Some(value) {
                mismatches.push(format!("{series}: expected {value}, got {got:?}"));
            }
        }
    }
    assert_no_mismatches(&mismatches, &metrics);
    // A canary without a token is not sent.
    assert_eq!(idp.count("/api"), 0);
    daemon.stop().await;
}

/// HTTPS to a server whose self-signed certificate nobody trusts fails with reason `tls`, for the
/// token endpoint and for the canary. The same server is reachable once trusted (`ca_file`) or
/// with `insecure_skip_verify`, which shows the failure is the certificate, not the server.
#[tokio::test]
async fn untrusted_certificate_is_reason_tls() {
    let tls = FakeServer::start_tls(|r: &Recorded| match r.path.as_str() {
        "/token" => Reply::token("t", 3600),
        _ => Reply::status(200),
    })
    .await;
    let plain = FakeServer::start(|_| Reply::token("t", 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, tls.cert_pem.as_deref().unwrap()).unwrap();
    let provider = |name: &str, token: &str, canary: &str, tls_table: &str| {
        Provider::new(name, token)
            .canary(canary)
            .raw(tls_table)
            .toml()
    };
    let toml = [
        provider("token_tls", &tls.url("/token"), &plain.url("/api"), ""),
        provider("canary_tls", &plain.url("/token"), &tls.url("/api"), ""),
        provider(
            "trusted_ca",
            &tls.url("/token"),
            &tls.url("/api"),
            &format!(
                "[providers.trusted_ca.tls]\nca_file = \"{}\"",
                ca_file.display()
            ),
        ),
        provider(
            "insecure",
            &tls.url("/token"),
            &tls.url("/api"),
            "[providers.insecure.tls]\ninsecure_skip_verify = true",
        ),
    ]
    .concat();
    let daemon = Daemon::start(&toml).await;
    let providers = ["token_tls", "canary_tls", "trusted_ca", "insecure"];
    daemon.wait_for_cycles(&providers, WAIT).await;
    // A scrape can be torn by a cycle recorded while it is gathered (as in any Prometheus
    // client); every first cycle has been recorded now and the intervals are long, so one
    // more scrape is a consistent snapshot.
    let metrics = daemon.scrape().await;
    let context = relevant_lines(&metrics);
    for (provider, success) in [("trusted_ca", 1.0), ("insecure", 1.0)] {
        assert_eq!(
            sample(
                &metrics,
                &format!(r#"oauth2_probe_success{{provider="{provider}"}}"#)
            ),
            Some(success),
            "{provider}\n{context}"
        );
    }
    assert_eq!(
        (
            provider_series(&metrics, "oauth2_token_request_failures_total", "token_tls"),
            provider_series(
                &metrics,
                "oauth2_canary_request_failures_total",
                "canary_tls"
            ),
        ),
        (
            vec![
                r#"oauth2_token_request_failures_total{provider="token_tls",reason="tls"} 1"#
                    .to_string()
            ],
            vec![
                r#"oauth2_canary_request_failures_total{provider="canary_tls",reason="tls"} 1"#
                    .to_string()
            ],
        ),
        "{context}"
    );
    for provider in ["token_tls", "canary_tls"] {
        assert_eq!(
            sample(
                &metrics,
                &format!(r#"oauth2_probe_success{{provider="{provider}"}}"#)
            ),
            Some(0.0)
        );
    }
    daemon.stop().await;
}

/// The timeout reason comes within the configured timeout, not the server's delay. The upper
/// bound is far below the server's 30 s and leaves a loaded machine its scheduling delays.
#[tokio::test]
async fn token_timeout_is_reported_within_the_configured_timeout() {
    let idp =
        FakeServer::start(|_| Reply::delayed(Duration::from_secs(30), Reply::token("t", 60))).await;
    let daemon = Daemon::start(
        &Provider::new("slow", &idp.url("/token"))
            .timeout(SHORT_TIMEOUT)
            .toml(),
    )
    .await;
    daemon
        .wait_for_sample(
            r#"oauth2_token_request_failures_total{provider="slow",reason="timeout"}"#,
            1.0,
            WAIT,
        )
        .await;
    // The cycle is recorded now; a fresh scrape cannot be torn by it.
    let metrics = daemon.scrape().await;
    let took = sample(
        &metrics,
        r#"oauth2_probe_duration_seconds{provider="slow"}"#,
    )
    .unwrap();
    assert!(
        (0.25..5.0).contains(&took),
        "cycle took {took} s, expected about the 0.3 s timeout, not the server's 30 s"
    );
    daemon.stop().await;
}

/// What the canary endpoint of each `canary_cases` provider answers.
fn canary_reply(path: &str) -> Reply {
    match path.trim_start_matches("/api/") {
        "unauthorized" => Reply::raw(
            401,
            &[("www-authenticate", r#"Bearer error="invalid_token""#)],
            "",
        ),
        "forbidden" => Reply::status(403),
        "insufficient_scope" => Reply::raw(
            403,
            &[(
                "www-authenticate",
                r#"Bearer error="insufficient_scope", scope="orders.write""#,
            )],
            "",
        ),
        "rate_limited" => Reply::raw(429, &[("retry-after", "10")], ""),
        "server_error" => Reply::status(500),
        "not_expected" => Reply::status(200),
        "timeout" => Reply::Hang,
        "reset" => Reply::Close,
        _ => Reply::status(404),
    }
}

/// Every canary failure reason the canary endpoint's answer decides (`no_token` is in the token
/// test above, `tls` in `untrusted_certificate_is_reason_tls`, `secret_unavailable` in
/// `failures_of_credentials_claims_and_discovery_are_counted_with_their_label`, `exporter_busy` in
/// `a_full_exporter_is_exporter_busy_for_token_and_canary`), one provider each, with a working
/// token endpoint.
#[tokio::test]
async fn every_canary_failure_reason_is_counted_with_its_label() {
    let api = FakeServer::start(|r: &Recorded| match r.path.as_str() {
        "/token" => Reply::token("good-token", 3600),
        path => canary_reply(path),
    })
    .await;
    let closed = closed_port_url("/api").await;

    // (provider, canary URL, extra canary keys, expected reason, expected response code)
    let mut cases: Vec<(String, String, &str, &str, Option<u16>)> = [
        ("unauthorized", "", "unauthorized", Some(401)),
        ("forbidden", "", "forbidden", Some(403)),
        ("insufficient_scope", "", "insufficient_scope", Some(403)),
        ("rate_limited", "", "rate_limited", Some(429)),
        ("server_error", "", "unexpected_status", Some(500)),
        ("not_found", "", "unexpected_status", Some(404)),
        (
            "not_expected",
            "expected_status = [204]",
            "unexpected_status",
            Some(200),
        ),
        ("timeout", "", "timeout", None),
        ("reset", "", "connect", None),
    ]
    .into_iter()
    .map(|(case, extra, reason, code)| {
        (
            case.to_string(),
            api.url(&format!("/api/{case}")),
            extra,
            reason,
            code,
        )
    })
    .collect();
    cases.push(("refused".into(), closed, "", "connect", None));

    let toml: String = cases
        .iter()
        .map(|(provider, url, extra, _, _)| {
            Provider::new(provider, &api.url("/token"))
                .timeout(timeout_of(provider))
                .canary(url)
                .raw(extra)
                .toml()
        })
        .collect();
    let daemon = Daemon::start(&toml).await;
    let names: Vec<&str> = cases.iter().map(|(p, ..)| p.as_str()).collect();
    daemon.wait_for_cycles(&names, WAIT).await;
    // A scrape can be torn by a cycle recorded while it is gathered (as in any Prometheus
    // client); every first cycle has been recorded now and the intervals are long, so one
    // more scrape is a consistent snapshot.
    let metrics = daemon.scrape().await;

    let mut mismatches = Vec::new();
    for (provider, _, _, reason, code) in &cases {
        let expected = vec![format!(
            r#"oauth2_canary_request_failures_total{{provider="{provider}",reason="{reason}"}} 1"#
        )];
        let got = provider_series(&metrics, "oauth2_canary_request_failures_total", provider);
        if got != expected {
            mismatches.push(format!("{provider}: expected {expected:?}, got {got:?}"));
        }
        let expected_codes: Vec<String> = code
            .iter()
            .map(|code| {
                format!(r#"oauth2_canary_responses_total{{code="{code}",provider="{provider}"}} 1"#)
            })
            .collect();
        let got = provider_series(&metrics, "oauth2_canary_responses_total", provider);
        if got != expected_codes {
            mismatches.push(format!(
                "{provider} responses: expected {expected_codes:?}, got {got:?}"
            ));
        }
        let token_failures =
            provider_series(&metrics, "oauth2_token_request_failures_total", provider);
        if !token_failures.is_empty() {
            mismatches.push(format!(
                "{provider}: unexpected token failures {token_failures:?}"
            ));
        }
        for (series, value) in [
            (
                format!(r#"oauth2_canary_requests_total{{provider="{provider}"}}"#),
                1.0,
            ),
            (
                format!(r#"oauth2_probe_success{{provider="{provider}"}}"#),
                0.0,
            ),
        ] {
            let got = sample(&metrics, &series);
            if got != Some(value) {
                mismatches.push(format!("{series}: expected {value}, got {got:?}"));
            }
        }
    }
    // Only a 401 makes the held token invalid; a 403 (with or without a scope challenge) or an
    // outage says nothing about the token.
    for (provider, valid) in [
        ("unauthorized", 0.0),
        ("forbidden", 1.0),
        ("insufficient_scope", 1.0),
        ("timeout", 1.0),
    ] {
        let series = format!(r#"oauth2_token_valid{{provider="{provider}"}}"#);
        let got = sample(&metrics, &series);
        if got != Some(valid) {
            mismatches.push(format!("{series}: expected {valid}, got {got:?}"));
        }
    }
    assert_no_mismatches(&mismatches, &metrics);
    daemon.stop().await;
}

/// The token failure reasons that no single answer of a token endpoint decides, and the canary's
/// `secret_unavailable`, each on its own provider in one daemon: `claims` (a token without the
/// role `[token.expect]` asks for), `discovery` (an issuer whose metadata answers 503),
/// `secret_unavailable` (the client secret's file, and a secret header's file, removed after the
/// first success) and `client_assertion` (a new key written beside the certificate it does not
/// fit). Nothing else is counted for these providers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_of_credentials_claims_and_discovery_are_counted_with_their_label() {
    let lacking_token = jwt(&json!({"roles": ["Orders.Write"], "exp": unix_now() as u64 + 3600}));
    let server = FakeServer::start(move |r: &Recorded| match r.path.as_str() {
        "/token" => Reply::token("good-token", 3600),
        "/claims/token" => Reply::token(&lacking_token, 3600),
        "/down/.well-known/openid-configuration" => Reply::status(503),
        _ => Reply::status(200),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = support::certs::write(dir.path(), "secret", "the-secret\n");
    let header_file = support::certs::write(dir.path(), "api.key", "the-key\n");
    let ca = support::certs::Ca::new("failure reasons");
    let (old, new) = (ca.client("old"), ca.client("new"));
    let key_file = support::certs::write(dir.path(), "client.key", &old.key_pem);
    let cert_file = support::certs::write(dir.path(), "client.crt", &old.cert_pem);
    let token = server.url("/token");
    let toml = [
        support::config::defaults(&[
            ("interval", r#""200ms""#),
            ("timeout", r#""2s""#),
            ("max_backoff", r#""0s""#),
        ]),
        support::config::providers(&[
            Provider::new("claims", &server.url("/claims/token"))
                .raw("[providers.claims.token.expect]\nroles = [\"Orders.Read\"]"),
            Provider::issuer("discovery", &server.url("/down")),
            Provider::new("secret_gone", &token).secret_file(&secret_file),
            Provider::new("key_half_rotated", &token)
                .keyless("id", "private_key_jwt")
                .token_file("private_key_file", &key_file)
                .token_file("certificate_file", &cert_file),
            Provider::new("header_gone", &token)
                .token_key("reuse", "true")
                .canary(&server.url("/api"))
                .canary_key(
                    "secret_headers",
                    &format!(
                        r#"{{ "X-Api-Key" = {{ file = '{}' }} }}"#,
                        header_file.display()
                    ),
                ),
        ]),
    ]
    .concat();
    let daemon = Daemon::start(&toml).await;
    let success = |provider: &str| format!(r#"oauth2_probe_success{{provider="{provider}"}}"#);
    // First every credential works, so what fails later fails for the change alone.
    daemon
        .wait_for(
            |m| {
                ["secret_gone", "key_half_rotated", "header_gone"]
                    .iter()
                    .all(|p| sample(m, &success(p)) == Some(1.0))
            },
            WAIT,
        )
        .await;
    std::fs::remove_file(&secret_file).unwrap();
    std::fs::remove_file(&header_file).unwrap();
    std::fs::write(&key_file, &new.key_pem).unwrap();

    // (provider, metric, the only reason counted)
    let cases = [
        ("claims", "oauth2_token_request_failures_total", "claims"),
        (
            "discovery",
            "oauth2_token_request_failures_total",
            "discovery",
        ),
        (
            "secret_gone",
            "oauth2_token_request_failures_total",
            "secret_unavailable",
        ),
        (
            "key_half_rotated",
            "oauth2_token_request_failures_total",
            "client_assertion",
        ),
        (
            "header_gone",
            "oauth2_canary_request_failures_total",
            "secret_unavailable",
        ),
    ];
    let counted = |m: &str, (provider, metric, reason): (&str, &str, &str)| {
        sample(
            m,
            &format!(r#"{metric}{{provider="{provider}",reason="{reason}"}}"#),
        )
        .is_some_and(|v| v >= 1.0)
    };
    let metrics = daemon
        .wait_for(|m| cases.iter().all(|case| counted(m, *case)), WAIT)
        .await;
    let mut mismatches = Vec::new();
    for (provider, metric, reason) in cases {
        let others: Vec<String> = [
            "oauth2_token_request_failures_total",
            "oauth2_canary_request_failures_total",
        ]
        .iter()
        .flat_map(|family| provider_series(&metrics, family, provider))
        .filter(|line| {
            !(line.starts_with(metric) && line.contains(&format!(r#"reason="{reason}""#)))
        })
        .collect();
        if !others.is_empty() {
            mismatches.push(format!("{provider}: counted besides {reason}: {others:?}"));
        }
        if sample(&metrics, &success(provider)) != Some(0.0) {
            mismatches.push(format!("{provider}: not failing"));
        }
    }
    assert_no_mismatches(&mismatches, &metrics);
    daemon.stop().await;
}

/// `exporter_busy`, the exporter's own fault: run with 130 descriptors (one request slot beyond
/// the reserve), a provider whose token endpoint starts to hang holds the only slot, and the
/// others' token request and canary call find none within half their timeout. Needs util-linux
/// `prlimit` (installed by scripts/install-peers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_exporter_is_exporter_busy_for_token_and_canary() {
    if !support::binary::prlimit_available() {
        return support::peers::skip_or_fail(
            "a_full_exporter_is_exporter_busy_for_token_and_canary",
            "prlimit (util-linux) is not on PATH (run scripts/install-peers)",
        );
    }
    let hang = Arc::new(AtomicBool::new(false));
    let server = {
        let hang = Arc::clone(&hang);
        FakeServer::start(move |r: &Recorded| match r.path.as_str() {
            // Fails at once (releasing its slot) until told to hang.
            "/hog/token" if hang.load(Ordering::SeqCst) => Reply::Hang,
            "/hog/token" => Reply::status(500),
            "/token" => Reply::token("good-token", 3600),
            _ => Reply::status(200),
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let config = support::certs::write(
        dir.path(),
        "exporter.toml",
        &[
            support::config::defaults(&[
                ("interval", r#""200ms""#),
                ("timeout", r#""1s""#),
                ("max_backoff", r#""0s""#),
            ]),
            support::config::providers(&[
                Provider::new("hog", &server.url("/hog/token")).timeout("30s"),
                Provider::new("token_busy", &server.url("/token")),
                Provider::new("canary_busy", &server.url("/token"))
                    .token_key("reuse", "true")
                    .canary(&server.url("/api")),
            ]),
        ]
        .concat(),
    );
    // (130 descriptors - the 128 of probe::transport::DESCRIPTOR_RESERVE) / 2 = 1 request slot.
    let descriptors = 130;
    let mut exporter = Binary::new()
        .config(&config)
        .listen_loopback()
        .descriptor_limit(descriptors)
        .spawn();
    let success = |provider: &str| format!(r#"oauth2_probe_success{{provider="{provider}"}}"#);
    exporter
        .wait_for_metrics("token_busy and canary_busy succeed", WAIT, |m| {
            sample(m, &success("token_busy")) == Some(1.0)
                && sample(m, &success("canary_busy")) == Some(1.0)
        })
        .await;
    hang.store(true, Ordering::SeqCst);
    let busy = |m: &str, family: &str, provider: &str| {
        sample(
            m,
            &format!(r#"{family}{{provider="{provider}",reason="exporter_busy"}}"#),
        )
        .is_some_and(|v| v >= 1.0)
    };
    let metrics = exporter
        .wait_for_metrics(
            "exporter_busy for token_busy's token and canary_busy's canary",
            WAIT,
            |m| {
                busy(m, "oauth2_token_request_failures_total", "token_busy")
                    && busy(m, "oauth2_canary_request_failures_total", "canary_busy")
            },
        )
        .await;
    // The hog is the one the slot went to: the server is not blamed for the others.
    for (family, provider) in [
        ("oauth2_token_request_failures_total", "token_busy"),
        ("oauth2_canary_request_failures_total", "canary_busy"),
    ] {
        let reasons: Vec<String> = provider_series(&metrics, family, provider)
            .into_iter()
            .filter(|line| !line.contains(r#"reason="exporter_busy""#))
            .collect();
        assert_eq!(
            reasons,
            Vec::<String>::new(),
            "{}",
            relevant_lines(&metrics)
        );
    }
    exporter.stop().await;
}

/// Response mapping: `expires_in` as a number and as a string, JSON pointer fields, the JWT `exp`
/// fallback (with and without `iat`), and an unknown lifetime, as seen on the expiry metrics.
#[tokio::test]
async fn token_lifetime_mapping_on_the_expiry_metrics() {
    let now = unix_now().floor() as u64;
    let jwt_with_iat = jwt(&json!({"iat": now, "exp": now + 3600}));
    let jwt_without_iat = jwt(&json!({"exp": now + 1200}));
    let idp = FakeServer::start(move |r: &Recorded| match r.path.as_str() {
        "/number" => Reply::json(200, json!({"access_token": "a", "expires_in": 3600})),
        "/string" => Reply::json(200, json!({"access_token": "b", "expires_in": "1800"})),
        "/pointer" => Reply::json(
            200,
            json!({"data": {"auth": {"token": "pointer-token", "ttl": 600}}}),
        ),
        "/jwt_iat" => Reply::json(200, json!({"access_token": jwt_with_iat})),
        "/jwt_no_iat" => Reply::json(200, json!({"access_token": jwt_without_iat})),
        "/unknown" => Reply::json(
            200,
            json!({"access_token": "opaque", "token_type": "bearer"}),
        ),
        _ => Reply::status(200),
    })
    .await;
    let provider = |name: &str, extra: &str| {
        Provider::new(name, &idp.url(&format!("/{name}")))
            .raw(extra)
            .toml()
    };
    let mut toml = String::new();
    toml.push_str(&provider("number", ""));
    toml.push_str(&provider("string", ""));
    toml.push_str(&provider(
        "pointer",
        "[providers.pointer.token.response]\naccess_token = \"/data/auth/token\"\nexpires_in = \"/data/auth/ttl\"",
    ));
    toml.push_str(&format!(
        "[providers.pointer.canary]\nurl = \"{}\"\n",
        idp.url("/api")
    ));
    toml.push_str(&provider("jwt_iat", ""));
    toml.push_str(&provider("jwt_no_iat", ""));
    toml.push_str(&provider("unknown", ""));
    let providers = [
        "number",
        "string",
        "pointer",
        "jwt_iat",
        "jwt_no_iat",
        "unknown",
    ];

    let daemon = Daemon::start(&toml).await;
    daemon.wait_for_cycles(&providers, WAIT).await;
    // A scrape can be torn by a cycle recorded while it is gathered (as in any Prometheus
    // client); every first cycle has been recorded now and the intervals are long, so one
    // more scrape is a consistent snapshot.
    let metrics = daemon.scrape().await;
    let scraped_at = unix_now();
    let get = |name: &str, provider: &str| {
        sample(&metrics, &format!(r#"{name}{{provider="{provider}"}}"#))
    };
    let context = relevant_lines(&metrics);

    for provider in providers {
        assert_eq!(
            get("oauth2_probe_success", provider),
            Some(1.0),
            "{provider}\n{context}"
        );
        assert_eq!(
            get("oauth2_token_valid", provider),
            Some(1.0),
            "{provider}\n{context}"
        );
    }
    // (provider, lifetime as issued, expiry as unix time or None to derive it from the request)
    for (provider, lifetime, exact_expiry) in [
        ("number", 3600.0, None),
        ("string", 1800.0, None),
        ("pointer", 600.0, None),
        ("jwt_iat", 3600.0, Some((now + 3600) as f64)),
    ] {
        assert_eq!(
            get("oauth2_token_lifetime_seconds", provider),
            Some(lifetime),
            "{provider}\n{context}"
        );
        let expiry = get("oauth2_token_expiry_timestamp_seconds", provider)
            .unwrap_or_else(|| panic!("{provider}: no expiry\n{context}"));
        let expires_in = get("oauth2_token_expires_in_seconds", provider)
            .unwrap_or_else(|| panic!("{provider}: no expires_in\n{context}"));
        match exact_expiry {
            Some(exact) => assert_eq!(expiry, exact, "{provider}"),
            // Requested within the last few seconds: expiry = request time + lifetime.
            None => assert!(
                (scraped_at + lifetime - WAIT.as_secs_f64()..=scraped_at + lifetime + 1.0)
                    .contains(&expiry),
                "{provider}: expiry {expiry}, scraped at {scraped_at}, lifetime {lifetime}"
            ),
        }
        assert!(
            (expiry - scraped_at - 2.0..=expiry - scraped_at + 2.0).contains(&expires_in),
            "{provider}: expires_in {expires_in} vs expiry {expiry} at {scraped_at}"
        );
    }
    // Without `iat` the lifetime counts from the request, so it is just under 1200 s.
    let lifetime = get("oauth2_token_lifetime_seconds", "jwt_no_iat").unwrap();
    assert!(
        (1200.0 - WAIT.as_secs_f64()..=1200.0).contains(&lifetime),
        "{lifetime}"
    );
    assert_eq!(
        get("oauth2_token_expiry_timestamp_seconds", "jwt_no_iat"),
        Some((now + 1200) as f64)
    );
    // Unknown lifetime: no expiry series at all (not 0, which would read as "expired").
    for name in [
        "oauth2_token_expiry_timestamp_seconds",
        "oauth2_token_expires_in_seconds",
        "oauth2_token_lifetime_seconds",
    ] {
        assert_eq!(get(name, "unknown"), None, "{name}\n{context}");
    }
    // The pointer-located token is the one presented to the canary.
    let canary = idp.wait_for_requests("/api", 1, WAIT).await;
    assert_eq!(canary[0].bearer(), Some("pointer-token"));
    daemon.stop().await;
}
