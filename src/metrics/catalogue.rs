//! The provider families of `/metrics`: every name, type, HELP text and label of a
//! per-provider series, in the order both formats write them, through [`Families`] (the
//! credential and certificate expiry families are in `expiry`). Knows no format. Label names
//! are [`SeriesLabel`]s, the set a provider's own labels are checked against; those own labels
//! go with every series (issue 26).

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::config::HistogramMode;
use crate::config::SeriesLabel;
use crate::probe::Phase;
use crate::probe::canary::CanaryReason;
use crate::probe::token::TokenReason;

use super::latency::Latency;
use super::snapshot::{Families, Kind, Snapshot};
use super::{Codes, ProviderSeries, seconds_since_epoch};

/// A family with one series per provider that has a value: `name{provider="…"} value`.
fn per_provider(
    out: &mut dyn Families,
    snapshot: &Snapshot,
    (name, kind, help): (&str, Kind, &str),
    value: impl Fn(&ProviderSeries) -> Option<f64>,
) {
    let mut wrote_header = false;
    for (provider, series) in snapshot {
        let Some(value) = value(series) else { continue };
        if !wrote_header {
            out.family(name, kind, help);
            wrote_header = true;
        }
        out.sample(
            name,
            &[(SeriesLabel::Provider, provider)],
            &series.labels,
            value,
        );
        out.series_done();
    }
}

/// A counter family by HTTP status `code`, exposing only the codes that were answered.
fn per_code(
    out: &mut dyn Families,
    snapshot: &Snapshot,
    (name, help): (&str, &str),
    counts: impl Fn(&ProviderSeries) -> &Codes,
) {
    if snapshot.iter().all(|(_, s)| counts(s).is_empty()) {
        return;
    }
    out.family(name, Kind::Counter, help);
    let mut digits = String::with_capacity(8);
    for (provider, series) in snapshot {
        for (code, count) in counts(series).iter() {
            digits.clear();
            let _ = write!(digits, "{code}");
            out.sample(
                name,
                &[
                    (SeriesLabel::Code, &digits),
                    (SeriesLabel::Provider, provider),
                ],
                &series.labels,
                count as f64,
            );
        }
        out.series_done();
    }
}

/// A counter family by `reason`, exposing only the reasons that happened.
fn per_reason(
    out: &mut dyn Families,
    snapshot: &Snapshot,
    (name, help): (&str, &str),
    reasons: &[&str],
    counts: impl Fn(&ProviderSeries) -> &[u64],
) {
    let mut wrote_header = false;
    for (provider, series) in snapshot {
        for (reason, count) in reasons.iter().zip(counts(series)) {
            if *count == 0 {
                continue;
            }
            if !wrote_header {
                out.family(name, Kind::Counter, help);
                wrote_header = true;
            }
            out.sample(
                name,
                &[
                    (SeriesLabel::Provider, provider),
                    (SeriesLabel::Reason, reason),
                ],
                &series.labels,
                *count as f64,
            );
        }
        out.series_done();
    }
}

/// A latency histogram family, absent in `none` mode (where the `*_last_duration_seconds` gauges stand in).
fn histogram(
    out: &mut dyn Families,
    snapshot: &Snapshot,
    (name, help): (&str, &str),
    get: impl Fn(&ProviderSeries) -> &Latency,
) {
    if snapshot
        .iter()
        .all(|(_, s)| get(s).mode() == HistogramMode::None)
    {
        return;
    }
    out.family(name, Kind::Histogram, help);
    for (provider, series) in snapshot {
        out.histogram(name, provider, &series.labels, get(series));
        out.series_done();
    }
}

pub(super) fn write_providers(out: &mut dyn Families, snapshot: &Snapshot, now: SystemTime) {
    let count = |value: u64| Some(value as f64);
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_requests_total",
            Kind::Counter,
            "Token requests sent by the periodic probes.",
        ),
        |s| count(s.token_requests),
    );
    per_reason(
        out,
        snapshot,
        (
            "oauth2_token_request_failures_total",
            "Token requests of the periodic probes that failed, by reason.",
        ),
        &TokenReason::ALL.map(TokenReason::as_str),
        |s| s.token_failures.counts(),
    );
    per_code(
        out,
        snapshot,
        (
            "oauth2_token_responses_total",
            "Token endpoint responses seen by the periodic probes, by HTTP status code.",
        ),
        |s| &s.token_responses,
    );
    if snapshot.iter().any(|(_, s)| s.grant.is_some()) {
        let name = "oauth2_token_grant_info";
        out.family(
            name,
            Kind::Gauge,
            "The grant_type of the periodic probes' token requests (always 1).",
        );
        for (provider, series) in snapshot {
            if let Some(grant) = series.grant {
                out.sample(
                    name,
                    &[
                        (SeriesLabel::GrantType, grant.as_str()),
                        (SeriesLabel::Provider, provider),
                    ],
                    &series.labels,
                    1.0,
                );
                out.series_done();
            }
        }
    }
    histogram(
        out,
        snapshot,
        (
            "oauth2_token_request_duration_seconds",
            "Latency of the periodic probes' token requests.",
        ),
        |s| &s.token_duration,
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_request_last_duration_seconds",
            Kind::Gauge,
            "Latency of the periodic probes' last token request (with [metrics] histograms = \"none\", instead of oauth2_token_request_duration_seconds).",
        ),
        |s| s.token_duration.last(),
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_lifetime_seconds",
            Kind::Gauge,
            "Lifetime, as issued, of the last token the periodic probes obtained.",
        ),
        |s| s.token_lifetime.get(),
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_last_success_timestamp_seconds",
            Kind::Gauge,
            "When the periodic probes last obtained a token.",
        ),
        |s| s.token_last_success.get(),
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_valid",
            Kind::Gauge,
            "1 if the periodic probes hold a token that is not past its expiry and was not rejected by the last canary call (401, a token_rejected_status, or error=invalid_token), else 0.",
        ),
        |s| {
            let held = s.token?;
            let valid = held.is_some_and(|token| token.is_valid(now));
            Some(if valid { 1.0 } else { 0.0 })
        },
    );
    let expires_at = |s: &ProviderSeries| s.token.flatten().and_then(|token| token.expires_at);
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_expiry_timestamp_seconds",
            Kind::Gauge,
            "Expiry of the token held by the periodic probes (absent while unknown).",
        ),
        |s| expires_at(s).map(seconds_since_epoch),
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_token_expires_in_seconds",
            Kind::Gauge,
            "Seconds until the token held by the periodic probes expires, computed at scrape time, floored at 0.",
        ),
        |s| {
            expires_at(s).map(|at| {
                at.duration_since(now)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0)
            })
        },
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_canary_requests_total",
            Kind::Counter,
            "Canary API requests sent by the periodic probes.",
        ),
        |s| count(s.canary_requests),
    );
    per_reason(
        out,
        snapshot,
        (
            "oauth2_canary_request_failures_total",
            "Canary API requests of the periodic probes that failed, by reason (no_token: not sent because no token was held).",
        ),
        &CanaryReason::ALL.map(CanaryReason::as_str),
        |s| s.canary_failures.counts(),
    );
    histogram(
        out,
        snapshot,
        (
            "oauth2_canary_request_duration_seconds",
            "Latency of the periodic probes' canary API requests.",
        ),
        |s| &s.canary_duration,
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_canary_request_last_duration_seconds",
            Kind::Gauge,
            "Latency of the periodic probes' last canary API request (with [metrics] histograms = \"none\", instead of oauth2_canary_request_duration_seconds).",
        ),
        |s| s.canary_duration.last(),
    );
    per_code(
        out,
        snapshot,
        (
            "oauth2_canary_responses_total",
            "Canary API responses seen by the periodic probes, by HTTP status code.",
        ),
        |s| &s.canary_responses,
    );
    let name = "oauth2_unauthorized_responses_total";
    if !snapshot.is_empty() {
        out.family(
            name,
            Kind::Counter,
            "HTTP 401 answers seen by the periodic probes, by phase (token or canary).",
        );
        for (provider, series) in snapshot {
            // By label value, as the text format sorts them: canary before token.
            for phase in [Phase::Canary, Phase::Token] {
                out.sample(
                    name,
                    &[
                        (SeriesLabel::Phase, phase.as_str()),
                        (SeriesLabel::Provider, provider),
                    ],
                    &series.labels,
                    series.unauthorized[phase as usize] as f64,
                );
            }
            out.series_done();
        }
    }
    per_provider(
        out,
        snapshot,
        (
            "oauth2_probe_success",
            Kind::Gauge,
            "1 if the last periodic probe got a token and its canary passed, else 0.",
        ),
        |s| s.probe_success.map(|ok| if ok { 1.0 } else { 0.0 }),
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_probe_duration_seconds",
            Kind::Gauge,
            "Duration of the last periodic probe cycle.",
        ),
        |s| s.probe_duration.get(),
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_probe_last_run_timestamp_seconds",
            Kind::Gauge,
            "When the last periodic probe cycle ended.",
        ),
        |s| s.probe_last_run.get(),
    );
    per_provider(
        out,
        snapshot,
        (
            "oauth2_probe_next_run_timestamp_seconds",
            Kind::Gauge,
            "When the next periodic probe cycle is due, back-off included (in the recent past while a cycle runs).",
        ),
        |s| s.next_run.get(),
    );
    if snapshot.iter().any(|(_, s)| s.backoff.is_some()) {
        let name = "oauth2_probe_backoff";
        out.family(
            name,
            Kind::Gauge,
            "1 while the next periodic probe is put off beyond the interval on purpose: the token endpoint refused the credentials (reason as OAuth2CredentialsRejected names it), or a server answered 429 or 503 with Retry-After; absent otherwise.",
        );
        for (provider, series) in snapshot {
            if let Some((phase, reason)) = series.backoff {
                out.sample(
                    name,
                    &[
                        (SeriesLabel::Phase, phase.as_str()),
                        (SeriesLabel::Provider, provider),
                        (SeriesLabel::Reason, reason.as_str()),
                    ],
                    &series.labels,
                    1.0,
                );
                out.series_done();
            }
        }
    }
    per_provider(
        out,
        snapshot,
        (
            "oauth2_exporter_probe_panics_total",
            Kind::Counter,
            "Probe cycles that panicked (a bug: please report it); the provider keeps being probed.",
        ),
        |s| count(s.panics),
    );
    super::expiry::write(out, snapshot);
}
