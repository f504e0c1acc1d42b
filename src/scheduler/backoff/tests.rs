//! The back-off arithmetic of issue 23, on hand-made cycle reports.

use std::time::{Duration, SystemTime};

use super::*;
use crate::config::GrantKind;
use crate::probe::canary::{CanaryError, CanaryOutcome};
use crate::probe::token::{IssuedToken, TokenError, TokenOutcome};
use crate::secrets::AccessToken;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn token(status: Option<u16>, result: Result<IssuedToken, TokenError>) -> TokenOutcome {
    TokenOutcome {
        duration: Duration::from_millis(20),
        status,
        certificate: None,
        credentials: [1, 0, 0, 0],
        retry_after: None,
        result,
    }
}

fn oauth(status: u16, code: &str) -> TokenOutcome {
    token(
        Some(status),
        Err(TokenError::OAuth {
            code: code.to_string(),
            description: None,
        }),
    )
}

fn issued() -> TokenOutcome {
    token(
        Some(200),
        Ok(IssuedToken {
            access_token: AccessToken::new("t"),
            lifetime: Some(HOUR),
            expires_at: None,
        }),
    )
}

fn report(grant: GrantKind, token: Vec<TokenOutcome>, canary: Vec<CanaryOutcome>) -> CycleReport {
    CycleReport {
        token_requests: token,
        canary_requests: canary,
        canary_skipped: false,
        success: false,
        grant,
        duration: Duration::from_millis(40),
        finished_at: now(),
        expiries: Default::default(),
    }
}

fn refused() -> CycleReport {
    report(
        GrantKind::ClientCredentials,
        vec![oauth(401, "invalid_client")],
        vec![],
    )
}

fn ok() -> CycleReport {
    report(GrantKind::ClientCredentials, vec![issued()], vec![])
}

/// Issue 23: 2x, 4x, 8x ... the interval, capped at max_backoff, then back to the interval
/// after the first token; the arithmetic docs/configuration.md gives for the defaults.
#[test]
fn refusals_double_the_wait_up_to_max_backoff_and_a_token_ends_it() {
    let mut backoff = Backoff::default();
    let delays: Vec<u64> = (0..8)
        .map(|_| {
            backoff
                .after(&refused(), MINUTE, HOUR, now(), 0.0)
                .as_secs()
        })
        .collect();
    assert_eq!(delays, [120, 240, 480, 960, 1920, 3600, 3600, 3600]);
    assert_eq!(backoff.steps, 8);
    assert_eq!(
        backoff.holding,
        Some((Phase::Token, HoldOff::InvalidClient))
    );
    assert!(backoff.refused());
    assert_eq!(backoff.after(&ok(), MINUTE, HOUR, now(), 0.0), MINUTE);
    assert_eq!(backoff, Backoff::default());
}

/// With the defaults (interval 1m, max_backoff 1h) the attempts after a first refusal at 0
/// come at 2, 6, 14, 30, 62 minutes and then hourly: 5 attempts (the first refusal included)
/// in the first 30 minutes and in the first hour, the 6th at 62 minutes, 28 in the first day
/// (docs/configuration.md quotes these).
#[test]
fn attempts_in_30_minutes_an_hour_and_a_day_with_the_defaults() {
    let mut backoff = Backoff::default();
    let mut at = Duration::ZERO;
    let mut attempts = vec![at];
    while at < Duration::from_secs(86_400) {
        at += backoff.after(&refused(), MINUTE, HOUR, now(), 0.0);
        attempts.push(at);
    }
    let within = |limit: u64| attempts.iter().filter(|a| a.as_secs() < limit).count();
    assert_eq!(within(30 * 60 + 1), 5);
    assert_eq!(within(3600), 5);
    assert_eq!(within(62 * 60 + 1), 6);
    assert_eq!(within(86_400), 28);
}

#[test]
fn jitter_shortens_a_wait_by_at_most_a_tenth_and_never_below_the_interval() {
    let mut backoff = Backoff::default();
    let delay = backoff.after(&refused(), MINUTE, HOUR, now(), 0.999);
    assert!(
        (Duration::from_secs(108)..Duration::from_secs(120)).contains(&delay),
        "{delay:?}"
    );
    // A max_backoff at or below the interval leaves the interval: no back-off in effect.
    let mut capped = Backoff::default();
    assert_eq!(capped.after(&refused(), MINUTE, MINUTE, now(), 0.5), MINUTE);
    assert_eq!(capped.holding, None);
}

#[test]
fn zero_max_backoff_keeps_the_interval() {
    let mut backoff = Backoff::default();
    for _ in 0..3 {
        assert_eq!(
            backoff.after(&refused(), MINUTE, Duration::ZERO, now(), 0.0),
            MINUTE
        );
    }
    assert_eq!(backoff, Backoff::default());
}

/// Only what refuses the credentials backs off, named as OAuth2CredentialsRejected names it.
#[test]
fn what_counts_as_a_refusal_and_how_it_is_named() {
    let cases = [
        (
            GrantKind::ClientCredentials,
            oauth(400, "invalid_client"),
            Some(HoldOff::InvalidClient),
        ),
        (
            GrantKind::Password,
            oauth(400, "invalid_grant"),
            Some(HoldOff::InvalidGrant),
        ),
        (
            GrantKind::ClientCredentials,
            oauth(400, "unauthorized_client"),
            Some(HoldOff::UnauthorizedClient),
        ),
        // Authlib's wrong password; on client credentials it is a malformed request.
        (
            GrantKind::Password,
            oauth(400, "invalid_request"),
            Some(HoldOff::InvalidRequest),
        ),
        (
            GrantKind::ClientCredentials,
            oauth(400, "invalid_request"),
            None,
        ),
        (
            GrantKind::ClientCredentials,
            oauth(401, "invalid_request"),
            Some(HoldOff::Http401),
        ),
        (
            GrantKind::ClientCredentials,
            token(
                Some(403),
                Err(TokenError::HttpStatus {
                    status: 403,
                    body: String::new(),
                }),
            ),
            Some(HoldOff::Http403),
        ),
        (
            GrantKind::ClientCredentials,
            oauth(400, "invalid_scope"),
            None,
        ),
        (
            GrantKind::ClientCredentials,
            token(
                Some(502),
                Err(TokenError::HttpStatus {
                    status: 502,
                    body: String::new(),
                }),
            ),
            None,
        ),
        (
            GrantKind::ClientCredentials,
            token(
                None,
                Err(TokenError::Transport(
                    crate::probe::transport::TransportError::Timeout,
                )),
            ),
            None,
        ),
    ];
    for (grant, outcome, expected) in cases {
        let described = format!("{grant} {:?} {:?}", outcome.status, outcome.result);
        let report = report(grant, vec![outcome], vec![]);
        let mut backoff = Backoff::default();
        let delay = backoff.after(&report, MINUTE, HOUR, now(), 0.0);
        match expected {
            Some(reason) => {
                assert_eq!(backoff.holding, Some((Phase::Token, reason)), "{described}");
                assert_eq!(delay, 2 * MINUTE, "{described}");
            }
            None => {
                assert_eq!(backoff.holding, None, "{described}");
                assert_eq!(delay, MINUTE, "{described}");
            }
        }
    }
}

/// A timeout while backing off says nothing about the credentials: the next attempt comes at
/// the interval (an outage is measured as before), and a refusal after it takes the next step.
#[test]
fn other_failures_keep_the_interval_and_the_step_count() {
    let mut backoff = Backoff::default();
    backoff.after(&refused(), MINUTE, HOUR, now(), 0.0);
    backoff.after(&refused(), MINUTE, HOUR, now(), 0.0);
    let timeout = report(
        GrantKind::ClientCredentials,
        vec![token(
            None,
            Err(TokenError::Transport(
                crate::probe::transport::TransportError::Timeout,
            )),
        )],
        vec![],
    );
    assert_eq!(backoff.after(&timeout, MINUTE, HOUR, now(), 0.0), MINUTE);
    assert_eq!(backoff.holding, None);
    assert_eq!(backoff.steps, 2);
    assert_eq!(
        backoff.after(&refused(), MINUTE, HOUR, now(), 0.0),
        8 * MINUTE
    );
}

fn limited(status: u16, after: Option<Duration>) -> TokenOutcome {
    let mut outcome = token(
        Some(status),
        Err(if status == 429 {
            TokenError::RateLimited { retry_after: None }
        } else {
            TokenError::HttpStatus {
                status,
                body: String::new(),
            }
        }),
    );
    outcome.retry_after = after.map(|after| now() + after);
    outcome
}

/// Retry-After: not before the moment named, capped at max_backoff, never sooner than the
/// interval; a 429 without it backs off as a refusal does (but watches no credential); a 503
/// without it is an outage, probed at the interval.
#[test]
fn retry_after_delays_to_the_moment_named_within_the_limits() {
    let second = Duration::from_secs(1);
    let cases = [
        (
            limited(429, Some(Duration::from_secs(20))),
            second,
            Duration::from_secs(20),
            Some(HoldOff::RateLimited),
        ),
        (
            limited(503, Some(Duration::from_secs(20))),
            second,
            Duration::from_secs(20),
            Some(HoldOff::Http5xx),
        ),
        (
            limited(429, Some(Duration::from_secs(20))),
            MINUTE,
            MINUTE,
            None,
        ),
        (
            limited(429, Some(3 * HOUR)),
            MINUTE,
            HOUR,
            Some(HoldOff::RateLimited),
        ),
        (
            limited(429, None),
            MINUTE,
            2 * MINUTE,
            Some(HoldOff::RateLimited),
        ),
        (limited(503, None), MINUTE, MINUTE, None),
    ];
    for (outcome, interval, expected, holding) in cases {
        let described = format!(
            "{:?} {:?} at {interval:?}",
            outcome.status, outcome.retry_after
        );
        let mut backoff = Backoff::default();
        let report = report(GrantKind::ClientCredentials, vec![outcome], vec![]);
        assert_eq!(
            backoff.after(&report, interval, HOUR, now(), 0.0),
            expected,
            "{described}"
        );
        assert_eq!(backoff.holding.map(|(_, r)| r), holding, "{described}");
        assert!(!backoff.refused(), "{described}");
    }
    // The canary's answer counts too, under its own phase.
    let canary = CanaryOutcome {
        duration: Duration::from_millis(5),
        status: Some(429),
        certificate: None,
        retry_after: Some(now() + Duration::from_secs(90)),
        result: Err(CanaryError::RateLimited),
    };
    let mut backoff = Backoff::default();
    let report = report(GrantKind::ClientCredentials, vec![issued()], vec![canary]);
    assert_eq!(
        backoff.after(&report, MINUTE, HOUR, now(), 0.0),
        Duration::from_secs(90)
    );
    assert_eq!(backoff.holding, Some((Phase::Canary, HoldOff::RateLimited)));
}
