//! Issue #2 ("Tests": the probe cycle): 401 counting in both phases, the canary retry with a fresh
//! token after a 401 on a reused token, `reuse` + `refresh_before`, a held token kept when a
//! refresh fails, validity after a canary 401, expiry counting down between scrapes, and a slow
//! token server timing out without delaying another provider.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use support::{Daemon, FakeServer, Provider, Recorded, Reply, WAIT, relevant_lines, sample};

/// A token endpoint at `/token` issuing `token-1`, `token-2`, ... with this lifetime.
fn numbered_tokens(expires_in: u64) -> impl Fn() -> Reply + Send + Sync + 'static {
    let issued = AtomicUsize::new(0);
    move || {
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::token(&format!("token-{n}"), expires_in)
    }
}

fn bearers(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.bearer().unwrap_or("<none>").to_string())
        .collect()
}

fn get(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    sample(metrics, &format!("{name}{{{labels}}}"))
}

/// Provider `p` on `server` (`/token`, canary `/api`), cycling every 200 ms and reusing its token.
fn reusing_p(server: &FakeServer) -> Provider {
    Provider::new("p", &server.url("/token"))
        .interval("200ms")
        .token_key("reuse", "true")
        .canary(&server.url("/api"))
}

/// Every 401 is counted under the phase that received it: from the token endpoint (with an OAuth
/// error body or without any) and from the canary; the other phase's series stays at 0.
#[tokio::test]
async fn unauthorized_responses_are_counted_per_phase() {
    let server = FakeServer::start(|r| match r.path.as_str() {
        "/token/oauth" => Reply::oauth_error(401, "invalid_client"),
        "/token/bare" => Reply::status(401),
        "/token/ok" => Reply::token("t", 3600),
        _ => Reply::status(401),
    })
    .await;
    let provider = |name: &str, token: &str| {
        Provider::new(name, &server.url(token))
            .canary(&server.url("/api"))
            .toml()
    };
    let toml = [
        provider("token-oauth", "/token/oauth"),
        provider("token-bare", "/token/bare"),
        provider("canary", "/token/ok"),
    ]
    .concat();
    let daemon = Daemon::start(&toml).await;
    let metrics = daemon
        .wait_for(
            |m| {
                ["token-oauth", "token-bare", "canary"].iter().all(|p| {
                    get(
                        m,
                        "oauth2_probe_last_run_timestamp_seconds",
                        &format!(r#"provider="{p}""#),
                    )
                    .is_some()
                })
            },
            WAIT,
        )
        .await;
    let context = relevant_lines(&metrics);
    // (provider, token-phase 401s, canary-phase 401s)
    for (provider, token, canary) in [
        ("token-oauth", 1.0, 0.0),
        ("token-bare", 1.0, 0.0),
        ("canary", 0.0, 1.0),
    ] {
        for (phase, expected) in [("token", token), ("canary", canary)] {
            assert_eq!(
                get(
                    &metrics,
                    "oauth2_unauthorized_responses_total",
                    &format!(r#"phase="{phase}",provider="{provider}""#)
                ),
                Some(expected),
                "{provider} {phase}\n{context}"
            );
        }
    }
    assert_eq!(
        get(
            &metrics,
            "oauth2_token_request_failures_total",
            r#"provider="token-oauth",reason="invalid_client""#
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            &metrics,
            "oauth2_token_request_failures_total",
            r#"provider="token-bare",reason="http_4xx""#
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            &metrics,
            "oauth2_canary_responses_total",
            r#"code="401",provider="canary""#
        ),
        Some(1.0)
    );
    daemon.stop().await;
}

/// With `reuse`, a held token that the API starts rejecting (revoked early) gets one retry with a
/// fresh token in the same cycle: 2 token requests in all, both canary responses counted, and the
/// cycle succeeds with a valid token.
#[tokio::test]
async fn canary_retries_with_a_fresh_token_after_401_on_a_reused_token() {
    let revoked = Arc::new(AtomicBool::new(false));
    let issue = numbered_tokens(3600);
    let server = FakeServer::start({
        let revoked = Arc::clone(&revoked);
        move |r| match r.path.as_str() {
            "/token" => issue(),
            _ if revoked.load(Ordering::SeqCst) && r.bearer() == Some("token-1") => {
                Reply::status(401)
            }
            _ => Reply::status(200),
        }
    })
    .await;
    let daemon = Daemon::start(&reusing_p(&server).toml()).await;
    // Two cycles on token-1: the second one reused it.
    server.wait_for_requests("/api", 2, WAIT).await;
    assert_eq!(server.count("/token"), 1, "reuse = true, far from expiry");
    revoked.store(true, Ordering::SeqCst);

    let metrics = daemon
        .wait_for(
            |m| {
                get(
                    m,
                    "oauth2_canary_responses_total",
                    r#"code="401",provider="p""#,
                ) == Some(1.0)
                    && get(m, "oauth2_canary_requests_total", r#"provider="p""#)
                        == Some(server.count("/api") as f64)
            },
            WAIT,
        )
        .await;
    let context = relevant_lines(&metrics);
    let canary = server.requests_to("/api");
    // Every canary request was counted, the 401 and its retry included.
    let responses_200 = get(
        &metrics,
        "oauth2_canary_responses_total",
        r#"code="200",provider="p""#,
    );
    assert_eq!(
        responses_200,
        Some((canary.len() - 1) as f64),
        "canary bearers {:?}\n{context}",
        bearers(&canary)
    );
    assert_eq!(server.count("/token"), 2, "{context}");
    assert_eq!(
        get(&metrics, "oauth2_token_requests_total", r#"provider="p""#),
        Some(2.0)
    );
    assert_eq!(
        get(
            &metrics,
            "oauth2_unauthorized_responses_total",
            r#"phase="canary",provider="p""#
        ),
        Some(1.0)
    );
    assert_eq!(
        get(&metrics, "oauth2_probe_success", r#"provider="p""#),
        Some(1.0),
        "{context}"
    );
    assert_eq!(
        get(&metrics, "oauth2_token_valid", r#"provider="p""#),
        Some(1.0),
        "{context}"
    );
    assert_eq!(
        get(
            &metrics,
            "oauth2_canary_request_failures_total",
            r#"provider="p",reason="unauthorized""#
        ),
        Some(1.0),
        "the rejected attempt is a counted failure even though the retry passed\n{context}"
    );
    // The order on the wire: token-1 rejected, then a token request, then token-2 accepted.
    let all: Vec<String> = server
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.path, r.bearer().unwrap_or("")))
        .collect();
    let rejected_at = all.iter().rposition(|line| line == "/api token-1").unwrap();
    assert_eq!(
        all[rejected_at + 1..rejected_at + 3],
        ["/token ".to_string(), "/api token-2".to_string()],
        "{all:?}"
    );
    daemon.stop().await;
}

/// With `reuse`, no token is requested while the held one is further than `refresh_before` from
/// its expiry; once within it, the next cycle gets a new one (token lifetime 2 s, refresh_before
/// 1 s: the second token request comes about 1 s after the first, cycles every 200 ms).
#[tokio::test]
async fn reuse_requests_a_new_token_only_within_refresh_before() {
    let issue = numbered_tokens(2);
    let server = FakeServer::start(move |r| match r.path.as_str() {
        "/token" => issue(),
        _ => Reply::status(200),
    })
    .await;
    let daemon = Daemon::start(
        &reusing_p(&server)
            .token_key("refresh_before", r#""1s""#)
            .toml(),
    )
    .await;
    let tokens = server.wait_for_requests("/token", 2, WAIT).await;
    let gap = tokens[1].at - tokens[0].at;
    assert!(
        gap >= Duration::from_millis(900) && gap <= Duration::from_millis(2000),
        "second token request {gap:?} after the first; expected about 1 s (expiry - refresh_before)"
    );
    // Every cycle in between used the held token, and the canary ran on every cycle.
    let canary: Vec<Recorded> = server
        .requests_to("/api")
        .into_iter()
        .filter(|r| r.at < tokens[1].at)
        .collect();
    assert!(
        canary.len() >= 4,
        "only {} canary calls in the first ~1 s at a 200 ms interval",
        canary.len()
    );
    assert!(
        canary.iter().all(|r| r.bearer() == Some("token-1")),
        "{:?}",
        bearers(&canary)
    );
    let after = server
        .wait_for_requests("/api", canary.len() + 1, WAIT)
        .await;
    assert_eq!(after[canary.len()].bearer(), Some("token-2"));
    daemon.stop().await;
}

/// A failed refresh keeps the held token: the canary is still called with it (and passes), the
/// token stays valid, but the cycle does not count as a success because no token was obtained.
#[tokio::test]
async fn held_token_is_kept_when_a_refresh_fails() {
    let token_calls = AtomicUsize::new(0);
    let server = FakeServer::start(move |r| match r.path.as_str() {
        "/token" if token_calls.fetch_add(1, Ordering::SeqCst) == 0 => {
            Reply::token("token-1", 3600)
        }
        "/token" => Reply::raw(503, &[("content-type", "text/plain")], "maintenance"),
        _ if r.bearer() == Some("token-1") => Reply::status(200),
        _ => Reply::status(401),
    })
    .await;
    let daemon = Daemon::start(
        &Provider::new("p", &server.url("/token"))
            .interval("200ms")
            .canary(&server.url("/api"))
            .toml(),
    )
    .await;
    let metrics = daemon
        .wait_for(
            |m| {
                get(
                    m,
                    "oauth2_token_request_failures_total",
                    r#"provider="p",reason="http_5xx""#,
                )
                .is_some_and(|n| n >= 2.0)
            },
            WAIT,
        )
        .await;
    let context = relevant_lines(&metrics);
    let canary = server.requests_to("/api");
    assert!(canary.len() >= 3, "{canary:?}");
    assert!(
        canary.iter().all(|r| r.bearer() == Some("token-1")),
        "{:?}",
        bearers(&canary)
    );
    assert_eq!(
        get(&metrics, "oauth2_token_valid", r#"provider="p""#),
        Some(1.0),
        "{context}"
    );
    assert_eq!(
        get(&metrics, "oauth2_probe_success", r#"provider="p""#),
        Some(0.0),
        "{context}"
    );
    assert_eq!(
        get(
            &metrics,
            "oauth2_canary_responses_total",
            r#"code="401",provider="p""#
        ),
        None,
        "{context}"
    );
    assert!(
        get(
            &metrics,
            "oauth2_canary_responses_total",
            r#"code="200",provider="p""#
        )
        .is_some_and(|n| n >= 3.0),
        "{context}"
    );
    // The last success is the first (only) token, not the later failed attempts.
    let last_success = get(
        &metrics,
        "oauth2_token_last_success_timestamp_seconds",
        r#"provider="p""#,
    );
    let last_run = get(
        &metrics,
        "oauth2_probe_last_run_timestamp_seconds",
        r#"provider="p""#,
    );
    assert!(last_success < last_run, "{context}");
    daemon.stop().await;
}

/// A canary 401 with the held token makes `oauth2_token_valid` 0: for a fresh token (no retry:
/// it was obtained in this cycle) and for a reused one whose fresh replacement is rejected too.
#[tokio::test]
async fn token_valid_is_zero_after_a_canary_401() {
    let reject = Arc::new(AtomicBool::new(false));
    let fresh = numbered_tokens(3600);
    let reused = numbered_tokens(3600);
    let server = FakeServer::start({
        let reject = Arc::clone(&reject);
        move |r| match r.path.as_str() {
            "/fresh/token" => fresh(),
            "/reused/token" => reused(),
            "/fresh/api" => Reply::status(401),
            _ if reject.load(Ordering::SeqCst) => Reply::status(401),
            _ => Reply::status(200),
        }
    })
    .await;
    let provider = |name: &str, interval: &str| {
        Provider::new(name, &server.url(&format!("/{name}/token")))
            .interval(interval)
            .canary(&server.url(&format!("/{name}/api")))
    };
    let toml = provider("fresh", "60s").toml()
        + &provider("reused", "200ms")
            .token_key("reuse", "true")
            .toml();
    let daemon = Daemon::start(&toml).await;

    let metrics = daemon
        .wait_for_sample(r#"oauth2_probe_success{provider="reused"}"#, 1.0, WAIT)
        .await;
    assert_eq!(
        get(&metrics, "oauth2_token_valid", r#"provider="fresh""#),
        Some(0.0)
    );
    assert_eq!(
        get(&metrics, "oauth2_probe_success", r#"provider="fresh""#),
        Some(0.0)
    );
    assert_eq!(
        server.count("/fresh/token"),
        1,
        "no retry for a token obtained in this cycle"
    );
    assert_eq!(server.count("/fresh/api"), 1);
    assert_eq!(
        get(&metrics, "oauth2_token_valid", r#"provider="reused""#),
        Some(1.0)
    );

    reject.store(true, Ordering::SeqCst);
    let metrics = daemon
        .wait_for_sample(r#"oauth2_token_valid{provider="reused"}"#, 0.0, WAIT)
        .await;
    let context = relevant_lines(&metrics);
    assert_eq!(
        get(&metrics, "oauth2_probe_success", r#"provider="reused""#),
        Some(0.0),
        "{context}"
    );
    assert!(
        get(
            &metrics,
            "oauth2_unauthorized_responses_total",
            r#"phase="canary",provider="reused""#
        )
        .is_some_and(|n| n >= 2.0),
        "the reused token's 401 and the fresh token's 401\n{context}"
    );
    daemon.stop().await;
}

/// `oauth2_token_expires_in_seconds` is computed at scrape time: it decreases between two scrapes
/// by the time between them, while the expiry timestamp stays put.
#[tokio::test]
async fn expiry_counts_down_between_scrapes() {
    let server = FakeServer::start(|_| Reply::token("t", 3600)).await;
    let daemon = Daemon::start(
        &Provider::new("p", &server.url("/token"))
            .interval("60s")
            .toml(),
    )
    .await;
    let expires_in = |m: &str| get(m, "oauth2_token_expires_in_seconds", r#"provider="p""#);
    let first = daemon.wait_for(|m| expires_in(m).is_some(), WAIT).await;
    let first_at = Instant::now();
    let first_left = expires_in(&first).unwrap();
    let second = daemon
        .wait_for(
            |m| expires_in(m).is_some_and(|left| left <= first_left - 1.0),
            WAIT,
        )
        .await;
    let elapsed = first_at.elapsed().as_secs_f64();
    let second_left = expires_in(&second).unwrap();
    assert!(
        (first_left - second_left - elapsed).abs() < 0.5,
        "expires_in went {first_left} -> {second_left} over {elapsed} s"
    );
    let expiry = |m: &str| {
        get(
            m,
            "oauth2_token_expiry_timestamp_seconds",
            r#"provider="p""#,
        )
    };
    assert_eq!(expiry(&first), expiry(&second));
    assert!(first_left <= 3600.0 && first_left > 3590.0, "{first_left}");
    assert_eq!(
        server.count("/token"),
        1,
        "one cycle only: the token was not replaced"
    );
    daemon.stop().await;
}

/// A token server slower than the timeout fails with `timeout` after about the timeout (1 s), not
/// the server's 10 s; meanwhile another provider on a 1 s interval keeps to its schedule, and
/// the slow provider's own cycles never overlap.
#[tokio::test]
async fn slow_token_server_times_out_while_other_providers_keep_their_schedule() {
    let server = FakeServer::start(|r| match r.path.as_str() {
        "/slow/token" => Reply::delayed(Duration::from_secs(10), Reply::token("late", 3600)),
        _ => Reply::token("quick", 3600),
    })
    .await;
    let daemon = Daemon::start(&support::config::providers(&["slow", "fast"].map(|name| {
        Provider::new(name, &server.url(&format!("/{name}/token")))
            .interval("1s")
            .timeout("1s")
    })))
    .await;
    let metrics = daemon
        .wait_for_sample(
            r#"oauth2_token_request_failures_total{provider="slow",reason="timeout"}"#,
            2.0,
            WAIT,
        )
        .await;
    let window = daemon.started.elapsed();
    let context = relevant_lines(&metrics);
    let took = get(
        &metrics,
        "oauth2_probe_duration_seconds",
        r#"provider="slow""#,
    )
    .unwrap();
    assert!(
        (0.95..1.6).contains(&took),
        "slow cycle took {took} s; expected about the 1 s timeout\n{context}"
    );
    let slow = server.requests_to("/slow/token");
    for pair in slow.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(950),
            "slow cycles overlapped: {gap:?} apart"
        );
    }

    let fast = server.requests_to("/fast/token");
    let expected = window.as_secs_f64().floor() as usize;
    assert!(
        fast.len() >= expected && fast.len() <= expected + 1,
        "fast provider: {} cycles in {window:?} at a 1 s interval",
        fast.len()
    );
    for pair in fast.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(800) && gap <= Duration::from_millis(1300),
            "fast provider off schedule: cycles {gap:?} apart"
        );
    }
    assert_eq!(
        get(&metrics, "oauth2_probe_success", r#"provider="fast""#),
        Some(1.0)
    );
    assert_eq!(
        get(&metrics, "oauth2_probe_success", r#"provider="slow""#),
        Some(0.0)
    );
    daemon.stop().await;
}
