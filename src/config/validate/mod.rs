//! Raw values, then ready values: turns the raw configuration into parsed URLs, durations,
//! secret sources and TLS roots, and reports every problem with the key it concerns. This file
//! walks the configuration and gives each section to its own file: [`web`], [`metrics`], then per
//! provider [`token`] (with [`client_auth`], [`claims`] and [`dpop`]), [`canary`] and [`tls`];
//! a proxy setting, from `[defaults]` or the provider, to [`proxy`]; `labels`, likewise, to
//! [`labels`]. What they all use is in [`values`],
//! which imports none of them.

mod canary;
mod claims;
mod client_auth;
mod dpop;
mod labels;
mod metrics;
mod proxy;
mod tls;
mod token;
mod values;
mod web;

use std::sync::Arc;
use std::time::Duration;

use self::values::{Problems, duration_or, duration_or_off};
use super::raw::{RawConfig, RawProvider};
use super::{
    Config, ConfigError, DEFAULT_INTERVAL, DEFAULT_MAX_BACKOFF, DEFAULT_TIMEOUT, ProviderConfig,
    ProxySetting, TokenConfig, WebConfig,
};

pub use self::labels::is_valid_label_name;
pub(crate) use self::proxy::percent_decode;
pub(super) use self::web::check_listen_addresses;

pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut problems = Problems::default();

    // Section by section, in the order their problems have always been listed.
    let listen_address = web::listen_address(raw.web.listen_address, &mut problems);
    let metrics = metrics::metrics(raw.metrics.histograms.as_deref(), &mut problems);
    let interval = duration_or(
        "defaults.interval",
        raw.defaults.interval.as_deref(),
        DEFAULT_INTERVAL,
        &mut problems,
    );
    let timeout = duration_or(
        "defaults.timeout",
        raw.defaults.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        &mut problems,
    );
    let max_backoff = duration_or_off(
        "defaults.max_backoff",
        raw.defaults.max_backoff.as_deref(),
        DEFAULT_MAX_BACKOFF,
        &mut problems,
    );
    let probe_min_interval =
        web::probe_min_interval(raw.web.probe_min_interval.as_deref(), &mut problems);
    let proxy = raw
        .defaults
        .proxy_url
        .as_deref()
        .and_then(|text| proxy::proxy_setting("defaults.proxy_url", text, &mut problems))
        .unwrap_or_default();
    let dpop = dpop::defaults(&raw.defaults, &mut problems);
    let labels = labels::defaults(raw.defaults.labels, &mut problems);
    let defaults = Defaults {
        interval,
        timeout,
        max_backoff,
        proxy,
        labels,
        dpop,
    };
    let mut interned = labels::Interned::default();

    let mut providers = Vec::with_capacity(raw.providers.len());
    for (name, raw_provider) in raw.providers {
        let prefix = format!("providers.{name}");
        if !is_valid_provider_name(&name) {
            problems.add(
                &prefix,
                format!(
                    "invalid provider name {name:?}; allowed: 1 to 64 characters from A-Z a-z 0-9 _ . -"
                ),
            );
            continue;
        }
        if let Some(provider) = provider(
            name,
            &prefix,
            raw_provider,
            &defaults,
            &mut interned,
            &mut problems,
        ) {
            providers.push(provider);
        }
    }

    if problems.count() == 0 {
        Ok(Config {
            web: WebConfig {
                listen_address,
                extra_listen_addresses: Vec::new(),
                probe_min_interval,
            },
            metrics,
            providers,
        })
    } else {
        Err(ConfigError {
            problems: problems.into_lines(),
        })
    }
}

pub fn is_valid_provider_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// What `[defaults]` gives every provider that does not set its own.
struct Defaults {
    interval: Duration,
    timeout: Duration,
    max_backoff: Duration,
    proxy: ProxySetting,
    /// Checked, not yet merged with any provider's.
    labels: std::collections::BTreeMap<String, String>,
    dpop: dpop::DpopDefaults,
}

/// One provider: its own settings over `defaults`, then its tables; `None` when any of its keys
/// has a problem.
fn provider(
    name: String,
    prefix: &str,
    raw: RawProvider,
    defaults: &Defaults,
    interned: &mut labels::Interned,
    problems: &mut Problems,
) -> Option<ProviderConfig> {
    let before = problems.count();
    let interval = duration_or(
        &format!("{prefix}.interval"),
        raw.interval.as_deref(),
        defaults.interval,
        problems,
    );
    let timeout = duration_or(
        &format!("{prefix}.timeout"),
        raw.timeout.as_deref(),
        defaults.timeout,
        problems,
    );
    let max_backoff = duration_or_off(
        &format!("{prefix}.max_backoff"),
        raw.max_backoff.as_deref(),
        defaults.max_backoff,
        problems,
    );
    let proxy = match raw.proxy_url.as_deref() {
        Some(text) => proxy::proxy_setting(&format!("{prefix}.proxy_url"), text, problems),
        None => Some(defaults.proxy.clone()),
    };
    let labels = labels::provider(prefix, &defaults.labels, raw.labels, interned, problems);
    let mut raw_token = raw.token;
    let raw_dpop = raw_token.as_mut().map(dpop::take);
    let token = match raw_token {
        Some(token) => token::token(&format!("{prefix}.token"), token, problems),
        None => {
            problems.add(
                &format!("{prefix}.token"),
                "missing; every provider needs a [token] table",
            );
            None
        }
    };
    let dpop = raw_dpop
        .and_then(|raw| dpop::dpop(&format!("{prefix}.token"), raw, &defaults.dpop, problems));
    let canary = raw
        .canary
        .and_then(|canary| canary::canary(&format!("{prefix}.canary"), canary, problems));
    let has_client_certificate = raw
        .tls
        .as_ref()
        .is_some_and(|tls| tls.client_cert_file.is_some() || tls.client_key_file.is_some());
    client_auth::check_tls_client_auth(
        prefix,
        token.as_ref().map(|token| token.auth_method),
        has_client_certificate,
        problems,
    );
    claims::check_certificate_bound(
        prefix,
        token
            .as_ref()
            .and_then(|token| token.expect.as_ref())
            .is_some_and(|expect| expect.certificate_bound),
        has_client_certificate,
        problems,
    );
    let tls = match raw.tls {
        Some(tls) => Arc::new(tls::tls(&format!("{prefix}.tls"), tls, problems)),
        None => tls::default(),
    };
    if problems.count() != before {
        return None;
    }
    Some(ProviderConfig {
        name,
        interval,
        timeout,
        max_backoff,
        token: TokenConfig { dpop, ..token? },
        canary,
        tls,
        proxy: proxy?,
        labels,
    })
}
