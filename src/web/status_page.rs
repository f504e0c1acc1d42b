//! The status page at `/`: one row per provider, failing ones first, for the person on call,
//! with a strip of its last periodic cycles and since when its state holds, each with its own
//! labels; `/?team=payments` shows only the providers whose labels say so (issue 26).
//! Server-rendered HTML with no scripts or external assets; every value that came from a
//! server, the configuration or the request is escaped.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::humanize::{human, millis, until};
use crate::probe::{FailureReason, HoldOff};
use crate::status::{HISTORY, Outcome, ProviderStatus, State, StatusBoard};

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
        body.push_str("<tr><td colspan=\"12\">No providers are configured.</td></tr>\n");
    } else if rows.is_empty() {
        body.push_str("<tr><td colspan=\"12\">No provider has these labels.</td></tr>\n");
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
.since {{ font-weight: normal; color: #444; font-size: 0.85rem; }}
.strip {{ white-space: nowrap; font: bold 0.55rem/1 ui-monospace, monospace; }}
.strip i {{ font-style: normal; display: inline-block; width: 0.5rem; padding: 0.2rem 0; margin-right: 1px; text-align: center; border-radius: 2px; }}
td.state {{ min-width: 12rem; }}
i.c-ok {{ background: #c8e6c9; color: #1e5e2b; }}
i.c-token, i.c-fail {{ background: #b3261e; color: #fff; }}
i.c-canary {{ background: #e8710a; color: #fff; }}
i.c-skip {{ background: #e4e4e4; color: #555; }}
.ratio {{ font-size: 0.8rem; color: #444; margin-top: 0.2rem; }}
</style>
</head>
<body>
<header>
<h1>oauth2-exporter</h1>
<p>Version {version} ({revision}) · up {uptime} · configuration {reload}</p>
<p>{total} providers: {failing} failing, {healthy} ok · refreshes every {REFRESH_SECONDS}s · <a href="{metrics_path}">Metrics</a> · <a href="/-/healthy">Health</a> · <a href="/-/ready">Readiness</a></p>
{filtered}</header>
<table id="providers">
<thead><tr><th>Provider</th><th>State</th><th>Last {HISTORY} cycles</th><th>Last failure</th><th>Token expires in</th><th>Lifetime</th><th>Token latency</th><th>Canary latency</th><th>Canary status</th><th>Expires</th><th>Last success</th><th>Last run</th></tr></thead>
<tbody>
{body}</tbody>
</table>
<p>Last {HISTORY} cycles, oldest to newest: <b>✓</b> ok, <b>T</b> the token request failed, <b>C</b> the canary failed, <b>✗</b> failed, <b>–</b> skipped (no cycle in that interval, as while backing off); hover over a cell for when and why.</p>
<p>Probe one provider now: <code>/probe?provider=NAME</code> (add <code>&amp;debug=true</code> for a step-by-step trace); a provider's name links to its trace.</p>
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
    let failure = match status.last_failure.as_deref() {
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
    let since = match status.since {
        Some(since) if state != State::NoData => {
            let first = if status.since_first {
                " (its first cycle)"
            } else {
                ""
            };
            format!(
                "<div class=\"since\" title=\"{}\">since {}, {}{first}</div>",
                humantime::format_rfc3339_seconds(since),
                clock(since, now, false),
                human(now.duration_since(since).unwrap_or_default())
            )
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
        "<tr class=\"{class}\" data-provider=\"{name}\"><td><a href=\"{link}\">{name}</a>{labels}</td><td class=\"state\">{state}{since}{backoff}</td><td class=\"history\">{history}</td><td>{failure}</td><td>{expires_in}</td><td>{lifetime}</td><td>{token}</td><td>{canary_latency}</td><td>{canary}</td><td class=\"expires\">{expires}</td><td>{last_success}</td><td>{last_run}</td></tr>",
        name = escape(name),
        link = escape(&probe_link(name)),
        history = history(status, now),
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

/// The provider's on-demand probe with its debug trace; the name percent-encoded for the query
/// (the caller escapes the whole for HTML).
fn probe_link(name: &str) -> String {
    let name: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    format!("/probe?provider={name}&debug=true")
}

/// The strip of the last [`HISTORY`] cycles, oldest to newest, each cell a letter in a colour
/// with its time and outcome as its title, and the share that succeeded. While the provider
/// backs off, the intervals that passed since its last cycle show as skipped already.
fn history(status: &ProviderStatus, now: SystemTime) -> String {
    let Some(last_run) = status.last_run else {
        return "—".to_string();
    };
    let recorded = status.history.len();
    let pending = status.skipped_so_far(now) as usize;
    let cells = status
        .history
        .iter()
        .chain(std::iter::repeat_n(Outcome::Skipped, pending));
    let first = (recorded + pending).saturating_sub(HISTORY);
    let (mut ok, mut attempted, mut skipped) = (0, 0, 0);
    // About 90 bytes a cell, its title included.
    let mut strip = String::with_capacity(HISTORY * 96);
    for (index, outcome) in cells.enumerate().skip(first) {
        // One cell per interval: the newest recorded cycle ended at `last_run`, the others are
        // whole intervals before or after it (skipped intervals fill the gaps).
        let offset = index as i64 - (recorded as i64 - 1);
        let steps = u32::try_from(offset.unsigned_abs()).unwrap_or(u32::MAX);
        let step = status.interval.saturating_mul(steps);
        let at = if offset >= 0 {
            last_run.checked_add(step)
        } else {
            last_run.checked_sub(step)
        }
        .unwrap_or(last_run);
        let when = match offset {
            0 => format!("at {}", clock(at, now, true)),
            _ => format!("about {}", clock(at, now, true)),
        };
        let (class, mark, what) = match outcome {
            Outcome::Ok => ("c-ok", "✓", "ok".to_string()),
            Outcome::Failed(Some(reason @ FailureReason::Token(_))) => {
                ("c-token", "T", format!("failed: token {}", reason.as_str()))
            }
            Outcome::Failed(Some(reason @ FailureReason::Canary(_))) => (
                "c-canary",
                "C",
                format!("failed: canary {}", reason.as_str()),
            ),
            Outcome::Failed(None) => ("c-fail", "✗", "failed".to_string()),
            Outcome::Skipped => (
                "c-skip",
                "–",
                "skipped: no cycle in this interval".to_string(),
            ),
        };
        match outcome {
            Outcome::Ok => (ok, attempted) = (ok + 1, attempted + 1),
            Outcome::Failed(_) => attempted += 1,
            Outcome::Skipped => skipped += 1,
        }
        let _ = write!(
            strip,
            "<i class=\"{class}\" title=\"{what}, {when}\">{mark}</i>"
        );
    }
    let mut ratio = format!("{ok}/{attempted} ok");
    if attempted > 0 {
        let _ = write!(ratio, ", {}", percent(ok, attempted));
    }
    if skipped > 0 {
        let _ = write!(ratio, ", {skipped} skipped");
    }
    format!("<div class=\"strip\">{strip}</div><div class=\"ratio\">{ratio}</div>")
}

/// "96.7 %", "100 %": to a tenth, without the decimal when it is zero.
fn percent(part: u32, whole: u32) -> String {
    let tenths = (u64::from(part) * 1000 + u64::from(whole) / 2) / u64::from(whole.max(1));
    match tenths % 10 {
        0 => format!("{} %", tenths / 10),
        decimal => format!("{}.{decimal} %", tenths / 10),
    }
}

/// A moment in UTC as a clock reads it ("12:03 UTC", with seconds "12:03:05 UTC"), with its date
/// when it is not today's ("2026-12-06 12:03 UTC").
fn clock(at: SystemTime, now: SystemTime, seconds: bool) -> String {
    // Formatting panics before 1970; a cell's estimated time can only get there through an
    // absurd interval.
    let at = at.max(SystemTime::UNIX_EPOCH);
    let at_text = humantime::format_rfc3339_seconds(at).to_string();
    let now_text = humantime::format_rfc3339_seconds(now).to_string();
    // "2026-12-07T12:03:05Z": the date, then the time.
    let (date, time) = (&at_text[..10], &at_text[11..at_text.len() - 1]);
    let time = if seconds { time } else { &time[..5] };
    if now_text.starts_with(date) {
        format!("{time} UTC")
    } else {
        format!("{date} {time} UTC")
    }
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
    use crate::probe::token::TokenReason;
    use crate::status::tests::cycle;

    /// The classes of the strip's cells, in page order.
    fn strip(html: &str) -> Vec<&str> {
        html.split("<i class=\"")
            .skip(1)
            .filter_map(|cell| cell.split('"').next())
            .collect()
    }

    /// Issue 26: a provider failing its first cycles, then recovering, then backing off: the
    /// strip in order with a time and outcome per cell, the ratio, since when, the link.
    #[test]
    fn a_row_shows_the_strip_the_ratio_since_when_and_links_to_the_trace() {
        let interval = Duration::from_secs(60);
        let board = StatusBoard::default();
        let handle = board.add_provider(
            "billing.eu-1",
            true,
            interval,
            crate::config::Labels::default(),
        );
        let now = SystemTime::now();
        let start = now - interval * 10;
        let token = Outcome::Failed(Some(FailureReason::Token(TokenReason::SecretUnavailable)));
        for (n, outcome) in [token, token, Outcome::Ok, Outcome::Ok, Outcome::Ok]
            .into_iter()
            .enumerate()
        {
            handle.record(&cycle(start + interval * n as u32, outcome), None);
        }
        let html = render(&board, "/metrics", &[]);
        assert_eq!(strip(&html), ["c-token", "c-token", "c-ok", "c-ok", "c-ok"]);
        assert!(
            html.contains("<div class=\"ratio\">3/5 ok, 60 %</div>"),
            "{html}"
        );
        assert!(
            html.contains(
                r#"<a href="/probe?provider=billing.eu-1&amp;debug=true">billing.eu-1</a>"#
            ),
            "{html}"
        );
        let newest = start + interval * 4;
        assert!(
            html.contains(&format!(
                "title=\"ok, at {}\">✓</i></div>",
                clock(newest, now, true)
            )),
            "{html}"
        );
        assert!(
            html.contains(&format!(
                "title=\"failed: token secret_unavailable, about {}\">T</i>",
                clock(start, now, true)
            )),
            "{html}"
        );
        let recovered = start + interval * 2;
        assert!(
            html.contains(&format!(
                ">since {}, {}</div>",
                clock(recovered, now, false),
                human(now.duration_since(recovered).unwrap())
            )),
            "{html}"
        );

        // Backing off since the last cycle, 6 intervals ago, until 2.5 from now: the 6 whole
        // intervals that passed show as skipped.
        handle.record_pace(now + interval * 5 / 2, Some((HoldOff::InvalidClient, 3)));
        let html = render(&board, "/metrics", &[]);
        let cells = strip(&html);
        assert_eq!(cells[5..], ["c-skip"; 6], "{html}");
        assert!(
            html.contains("<div class=\"ratio\">3/5 ok, 60 %, 6 skipped</div>"),
            "{html}"
        );
        assert!(
            html.contains("backing off: next attempt in 2m, after 3 refusals"),
            "{html}"
        );
    }

    /// Issue 26: a latency under a millisecond read "0 ms".
    #[test]
    fn sub_millisecond_latencies_keep_a_decimal() {
        let board = StatusBoard::default();
        let handle = board.add_provider(
            "p",
            true,
            Duration::from_secs(60),
            crate::config::Labels::default(),
        );
        let mut report = cycle(SystemTime::now(), Outcome::Ok);
        report
            .canary_requests
            .push(crate::probe::canary::CanaryOutcome {
                duration: Duration::from_micros(400),
                status: Some(200),
                certificate: None,
                retry_after: None,
                result: Ok(()),
            });
        handle.record(&report, None);
        let html = render(&board, "/metrics", &[]);
        assert!(html.contains("<td>0.4 ms</td><td>200</td>"), "{html}");
    }

    #[test]
    fn the_probe_link_is_percent_encoded_then_escaped() {
        let link = probe_link("a&b c/é");
        assert_eq!(link, "/probe?provider=a%26b+c%2F%C3%A9&debug=true");
        assert_eq!(
            escape(&link),
            "/probe?provider=a%26b+c%2F%C3%A9&amp;debug=true"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x&y")</script>'"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;"
        );
    }
}
