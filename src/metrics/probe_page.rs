//! One on-demand cycle's report as the `/probe` exposition, like blackbox_exporter's `/probe`:
//! the same report the periodic series are recorded from, rendered here so that every metric
//! name and HELP text stays in `metrics/`.

use std::collections::HashMap;
use std::time::Duration;

use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};

use crate::config::{Labels, SeriesLabel};
use crate::probe::{CycleReport, HeldToken};

/// The page's registry, whose every series carries the provider's own labels.
struct Page {
    registry: Registry,
    own: HashMap<String, String>,
}

impl Page {
    fn opts(&self, name: &str, help: &str) -> Opts {
        Opts::new(name, help).const_labels(self.own.clone())
    }

    fn gauge(&self, name: &str, help: &str, value: f64) {
        if let Ok(gauge) = Gauge::with_opts(self.opts(name, help)) {
            gauge.set(value);
            let _ = self.registry.register(Box::new(gauge));
        }
    }
}

/// The result of one on-demand cycle as exposition text. No `provider` label: as with
/// blackbox_exporter, the scrape config's relabelling names the target; the provider's own
/// `labels` are on every series (issue 26), as on `/metrics`. `repeated`: the age of an earlier
/// result answered instead of a fresh attempt (issue 23), shown as its own gauge.
pub fn render(
    report: &CycleReport,
    held: Option<&HeldToken>,
    repeated: Option<Duration>,
    labels: &Labels,
) -> String {
    let page = Page {
        registry: Registry::new(),
        own: labels
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
    };
    if let Some(age) = repeated {
        page.gauge(
            "oauth2_probe_result_age_seconds",
            "Present when no attempt was made for this request: the age of the earlier result shown instead (web.probe_min_interval, or a back-off after refused credentials).",
            age.as_secs_f64(),
        );
    }
    page.gauge(
        "oauth2_probe_success",
        "1 if this on-demand probe got a token and its canary passed, else 0.",
        if report.success { 1.0 } else { 0.0 },
    );
    page.gauge(
        "oauth2_probe_duration_seconds",
        "Duration of this on-demand probe cycle.",
        report.duration.as_secs_f64(),
    );
    if let Some(token) = report.token_requests.last() {
        page.gauge(
            "oauth2_probe_token_duration_seconds",
            "Latency of this on-demand probe's last token request.",
            token.duration.as_secs_f64(),
        );
    }
    // As of the cycle's end, not of this call: every caller that shared the cycle gets the
    // same text, however late its rendering runs.
    let now = report.finished_at;
    let valid = held.is_some_and(|h| h.is_valid(now));
    page.gauge(
        "oauth2_probe_token_valid",
        "1 if a token is held after this on-demand probe, not expired and not rejected by the canary.",
        if valid { 1.0 } else { 0.0 },
    );
    if let Some(held) = held {
        if let Some(expires_at) = held.expires_at {
            let left = expires_at
                .duration_since(now)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            page.gauge(
                "oauth2_probe_token_expires_in_seconds",
                "Seconds until the held token expires, floored at 0.",
                left,
            );
        }
        if let Some(lifetime) = held.lifetime {
            page.gauge(
                "oauth2_probe_token_lifetime_seconds",
                "Lifetime of the held token as issued.",
                lifetime.as_secs_f64(),
            );
        }
    }
    if let Some(canary) = report.canary_requests.last() {
        page.gauge(
            "oauth2_probe_canary_duration_seconds",
            "Latency of this on-demand probe's last canary request.",
            canary.duration.as_secs_f64(),
        );
        if let Some(status) = canary.status {
            page.gauge(
                "oauth2_probe_canary_status_code",
                "HTTP status of this on-demand probe's last canary response.",
                f64::from(status),
            );
        }
    }
    if let Some(failure) = report.failure()
        && let Ok(gauge_vec) = GaugeVec::new(
            page.opts(
                "oauth2_probe_failure",
                "Why this on-demand probe failed: phase and reason (closed sets); absent on success.",
            ),
            &[SeriesLabel::Phase.as_str(), SeriesLabel::Reason.as_str()],
        )
    {
        gauge_vec
            .with_label_values(&[failure.phase().as_str(), failure.reason.as_str()])
            .set(1.0);
        let _ = page.registry.register(Box::new(gauge_vec));
    }
    let mut buffer = Vec::new();
    let _ = TextEncoder::new().encode(&page.registry.gather(), &mut buffer);
    String::from_utf8_lossy(&buffer).into_owned()
}
