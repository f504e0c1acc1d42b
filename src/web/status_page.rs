//! The status page at `/`: one row per provider, failing ones first, for the person on call,
//! each with its own labels; `/?team=payments` shows only the providers whose labels say so
//! (issue 26). Server-rendered HTML with no scripts or external assets; every value that came
//! from a server, the configuration or the request is escaped.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::humanize::{human, until};
use crate::probe::HoldOff;
use crate::status::{ProviderStatus, State, StatusBoard};

/// Seconds between automatic refreshes of the page.
const REFRESH_SECONDS: u32 = 30;

/// An expiry closer than this is shown in the warning colour: the `OAuth2ClientCredentialExpiringSoon`
/// warning threshold (prometheus/alerts.yml).
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86400);

/// The page, with only the providers whose labels have every `NAME=VALUE` of `filter` (all of
/// them when it is empty; a name no provider has matches none).
pub fn render(board: &StatusBoard, telemetry_path: &str, filter: &[(String, String)]) -> String {
    let now = SystemTime::now();
    let mut rows = board.snapshot();
    let configured = rows.len();
    let wanted = || {
        filter
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    };
    rows.retain(|(_, status)| status.labels.matches(wanted()));
    let filtered = if filter.is_empty() {
        String::new()
    } else {
        let shown: Vec<String> = filter
            .iter()
            .map(|(name, value)| escape(&format!("{name}={value}")))
            .collect();
        format!(
            "<p class=\"filter\">Showing the {} of {configured} providers labelled {} · <a href=\"/\">show all</a></p>\n",
            rows.len(),
            shown.join(", ")
        )
    };
    let failing = rows
        .iter()
        .filter(|(_, s)| s.state() == State::Failing)
        .count();
    let healthy = rows.iter().filter(|(_, s)| s.state() == State::Ok).count();
    let reload = match board.reload_state() {
        Some(state) if state.successful => {
            format!("loaded {}", ago(now, state.at))
        }
        Some(state) => format!(
            "<strong class=\"failing\">last reload failed</strong> {} (running the configuration loaded {})",
            ago(now, state.at),
            ago(now, state.last_success)
        ),
        None => "not loaded yet".to_string(),
    };

    let mut body = String::new();
    for (name, status) in &rows {
        row(&mut body, name, status, now);
    }
    if configured == 0 {
        body.push_str("<tr><td colspan=\"11\">No providers are configured.</td></tr>\n");
    } else if rows.is_empty() {
        body.push_str("<tr><td colspan=\"11\">No provider has these labels.</td></tr>\n");
    }

    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>oauth2-exporter: {failing} failing</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }}
tr.failing td {{ background: #fdecea; }}
tr.nodata td {{ color: #666; }}
.state {{ font-weight: bold; }}
.failing .state, strong.failing {{ color: #b3261e; }}
.ok .state {{ color: #1e7b34; }}
.expiring {{ color: #a15c00; font-weight: bold; }}
.detail {{ color: #555; font-size: 0.85rem; max-width: 28rem; overflow-wrap: anywhere; }}
.labels a {{ display: inline-block; margin: 0.15rem 0.25rem 0 0; padding: 0 0.3rem; border-radius: 0.2rem; background: #eef; color: #334; font-size: 0.8rem; text-decoration: none; overflow-wrap: anywhere; }}
header p {{ margin: 0.2rem 0; }}
</style>
</head>
<body>
<header>
<h1>oauth2-exporter</h1>
<p>Version {version} ({revision}) · up {uptime} · configuration {reload}</p>
<p>{total} providers: {failing} failing, {healthy} ok · refreshes every {REFRESH_SECONDS}s · <a href="{metrics_path}">Metrics</a> · <a href="/-/healthy">Health</a> · <a href="/-/ready">Readiness</a></p>
{filtered}</header>
<table id="providers">
<thead><tr><th>Provider</th><th>State</th><th>Last failure</th><th>Token expires in</th><th>Lifetime</th><th>Token latency</th><th>Canary latency</th><th>Canary status</th><th>Expires</th><th>Last success</th><th>Last run</th></tr></thead>
<tbody>
{body}</tbody>
</table>
<p>Probe one provider now: <code>/probe?provider=NAME</code> (add <code>&amp;debug=true</code> for a step-by-step trace).</p>
</body>
</html>
"#,
        version = env!("CARGO_PKG_VERSION"),
        revision = escape(crate::REVISION),
        metrics_path = escape(telemetry_path),
        uptime = human(board.uptime()),
        total = rows.len(),
    )
}

fn row(out: &mut String, name: &str, status: &ProviderStatus, now: SystemTime) {
    let state = status.state();
    let class = match state {
        State::Failing => "failing",
        State::NoData => "nodata",
        State::Ok => "ok",
    };
    let failure = match &status.last_failure {
        None => "—".to_string(),
        Some((at, failure)) => {
            let http = failure
                .status
                .map(|s| format!(" (HTTP {s})"))
                .unwrap_or_default();
            let when = if state == State::Failing {
                String::new()
            } else {
                format!(" · {}", ago(now, *at))
            };
            format!(
                "{} <b>{}</b>{http}{when}<div class=\"detail\">{}</div>",
                escape(failure.phase().as_str()),
                escape(failure.reason.as_str()),
                escape(&failure.detail)
            )
        }
    };
    let expires_in = match status.expires_at {
        Some(at) => match at.duration_since(now) {
            Ok(left) => human(left),
            Err(_) => "expired".to_string(),
        },
        None if status.token_held => "unknown".to_string(),
        None => "—".to_string(),
    };
    let expires = match status.nearest_expiry {
        None => "—".to_string(),
        Some(expiry) => {
            let at = expiry.time();
            let soon = at <= now + EXPIRY_WARNING;
            format!(
                "<span{} title=\"{}\">{} {}</span>",
                if soon { " class=\"expiring\"" } else { "" },
                humantime::format_rfc3339_seconds(at),
                escape(&expiry.describe()),
                until(at, now)
            )
        }
    };
    // Issue 23: a provider waiting on purpose says so, and when it tries again.
    let backoff = match (status.backing_off, status.next_run) {
        (Some((reason, steps)), Some(next)) => {
            let next = match next.duration_since(now) {
                Ok(left) => format!("in {}", human(left)),
                Err(_) => "now".to_string(),
            };
            let why = match reason {
                HoldOff::RateLimited | HoldOff::Http5xx => {
                    format!("as the server asked ({})", reason.as_str())
                }
                _ => format!("after {steps} refusal{}", if steps == 1 { "" } else { "s" }),
            };
            format!("<div class=\"backoff\">backing off: next attempt {next}, {why}</div>")
        }
        _ => String::new(),
    };
    // Each label links to the page filtered by it.
    let labels = if status.labels.is_empty() {
        String::new()
    } else {
        let links: Vec<String> = status
            .labels
            .iter()
            .map(|(label, value)| {
                let query: String = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair(label, value)
                    .finish();
                format!(
                    "<a href=\"?{}\">{}</a>",
                    escape(&query),
                    escape(&format!("{label}={value}"))
                )
            })
            .collect();
        format!("<div class=\"labels\">{}</div>", links.concat())
    };
    let canary = if !status.canary_configured {
        "not configured".to_string()
    } else {
        status
            .canary_status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "—".to_string())
    };
    let _ = writeln!(
        out,
        "<tr class=\"{class}\" data-provider=\"{name}\"><td>{name}{labels}</td><td class=\"state\">{state}{backoff}</td><td>{failure}</td><td>{expires_in}</td><td>{lifetime}</td><td>{token}</td><td>{canary_latency}</td><td>{canary}</td><td class=\"expires\">{expires}</td><td>{last_success}</td><td>{last_run}</td></tr>",
        name = escape(name),
        state = state.as_str(),
        lifetime = status.lifetime.map(human).unwrap_or_else(|| "—".into()),
        token = status
            .token_latency
            .map(millis)
            .unwrap_or_else(|| "—".into()),
        canary_latency = status
            .canary_latency
            .map(millis)
            .unwrap_or_else(|| "—".into()),
        last_success = status
            .last_success
            .map(|t| ago(now, t))
            .unwrap_or_else(|| "never".into()),
        last_run = status
            .last_run
            .map(|t| ago(now, t))
            .unwrap_or_else(|| "—".into()),
    );
}

fn millis(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
}

/// "3m ago", "just now".
fn ago(now: SystemTime, then: SystemTime) -> String {
    match now.duration_since(then) {
        Ok(elapsed) if elapsed < Duration::from_secs(1) => "just now".to_string(),
        Ok(elapsed) => format!("{} ago", human(elapsed)),
        Err(_) => "just now".to_string(),
    }
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x&y")</script>'"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;"
        );
    }
}
