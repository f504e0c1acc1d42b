//! `oauth2-exporter check`: every (or the named, or the labelled) provider's cycle once,
//! concurrently, reported as a table or JSON, for CI pipelines, cron, and "did my new secret
//! work?".

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::config::{Labels, ProviderConfig};
use crate::humanize::{human, until};
use crate::probe::expiry::{Credential, Expiry};
use crate::probe::transport;
use crate::probe::{CycleReport, HeldToken, Prober};

/// The expiries of a report that fall before `deadline` (now + `--warn-within`), but for those
/// their issuer renews within the hour (a client assertion file), which would always warn.
fn expiring(report: &CycleReport, deadline: SystemTime) -> impl Iterator<Item = Expiry> + '_ {
    report
        .expiries
        .all()
        .filter(move |expiry| expiry.time() <= deadline && !expiry.renewed_by_its_issuer())
}

/// How `check` prints its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// `oauth2-exporter check` once the configuration is loaded: keeps the providers named in
/// `names` (all when empty) that have every label of `labels`, runs them, prints the results.
/// Exit 0 when all pass, 1 when any fails or (with `warn_within`) when a credential or
/// certificate expires within that window, 2 for an unknown name or labels no provider has.
pub async fn command(
    providers: Vec<ProviderConfig>,
    names: &[String],
    labels: &[(String, String)],
    output: Output,
    warn_within: Option<Duration>,
) -> ExitCode {
    let providers = match select(providers, names).and_then(|p| select_labelled(p, labels, names)) {
        Ok(providers) => providers,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let results = match run(providers).await {
        Ok(results) => results,
        Err(error) => {
            eprintln!("error: cannot set up the HTTP client: {error}");
            return ExitCode::from(1);
        }
    };
    let now = SystemTime::now();
    let deadline = warn_within.map(|window| now + window);
    match output {
        Output::Table => print!("{}", table(&results, now, warn_within)),
        Output::Json => println!("{}", json(&results, deadline)),
    }
    let expiring = deadline.is_some_and(|deadline| {
        results
            .iter()
            .any(|r| expiring(&r.report, deadline).next().is_some())
    });
    if results.iter().all(|r| r.report.success) && !expiring {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The providers named in `names` (all when empty), or the message naming the unknown ones.
fn select(
    mut providers: Vec<ProviderConfig>,
    names: &[String],
) -> Result<Vec<ProviderConfig>, String> {
    if names.is_empty() {
        return Ok(providers);
    }
    let unknown: Vec<&String> = names
        .iter()
        .filter(|name| !providers.iter().any(|p| &p.name == *name))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "error: unknown provider{} {}; configured: {}",
            if unknown.len() == 1 { "" } else { "s" },
            unknown
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            providers
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    providers.retain(|p| names.contains(&p.name));
    Ok(providers)
}

/// The providers with every label of `labels` (all when empty), or the message saying none has
/// them (among those `--provider` named, if any) and which labels the providers have.
fn select_labelled(
    mut providers: Vec<ProviderConfig>,
    labels: &[(String, String)],
    names: &[String],
) -> Result<Vec<ProviderConfig>, String> {
    if labels.is_empty() {
        return Ok(providers);
    }
    let wanted = || {
        labels
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    };
    let configured: std::collections::BTreeSet<String> = providers
        .iter()
        .flat_map(|p| {
            p.labels
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
        })
        .collect();
    providers.retain(|p| p.labels.matches(wanted()));
    if !providers.is_empty() {
        return Ok(providers);
    }
    Err(format!(
        "error: no provider{} has the label{} {}; the labels configured{}: {}",
        if names.is_empty() {
            ""
        } else {
            " named by --provider"
        },
        if labels.len() == 1 { "" } else { "s" },
        labels
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(", "),
        if names.is_empty() { "" } else { " there" },
        if configured.is_empty() {
            "none".to_string()
        } else {
            configured.into_iter().collect::<Vec<_>>().join(", ")
        }
    ))
}

/// One provider's result.
struct CheckResult {
    provider: String,
    labels: Labels,
    report: CycleReport,
    held: Option<HeldToken>,
}

/// Runs one cycle of each provider at once. Each cycle is bounded by its provider's timeout.
async fn run(providers: Vec<ProviderConfig>) -> Result<Vec<CheckResult>, transport::ClientError> {
    // The same bound on requests in flight as the daemon: `check` over a large fleet must not
    // report the exporter's own descriptor shortage as the identity provider's fault either.
    let shared = transport::build_client(
        &Default::default(),
        &Default::default(),
        &transport::Slots::for_this_process(),
    )?;
    let mut cycles = tokio::task::JoinSet::new();
    for (index, provider) in providers.into_iter().enumerate() {
        let client = transport::client_for(&provider.tls, &provider.proxy, &shared)?;
        cycles.spawn(async move {
            let name = provider.name.clone();
            let labels = provider.labels.clone();
            let mut prober = Prober::new(std::sync::Arc::new(provider), client);
            let report = prober.run_cycle(None).await;
            (
                index,
                CheckResult {
                    provider: name,
                    labels,
                    report,
                    held: prober.held().cloned(),
                },
            )
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = cycles.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            // A panicking cycle is a bug; it must still not hide the other providers' results.
            Err(error) => tracing::error!(%error, "a check cycle failed to complete"),
        }
    }
    results.sort_by_key(|(index, _)| *index);
    Ok(results.into_iter().map(|(_, result)| result).collect())
}

fn millis(duration: Option<Duration>) -> String {
    duration
        .map(|d| d.as_millis().to_string())
        .unwrap_or_else(|| "-".into())
}

/// A fixed-width table, one row per provider, then the failure details and (with
/// `--warn-within`) what expires within the window.
fn table(results: &[CheckResult], now: SystemTime, warn_within: Option<Duration>) -> String {
    let width = results
        .iter()
        .map(|r| r.provider.len())
        .max()
        .unwrap_or(0)
        .max("PROVIDER".len());
    // A LABELS column only when some provider has labels: a fleet without them keeps its table.
    let labels: Vec<String> = results.iter().map(|r| shown_labels(&r.labels)).collect();
    let labels_width = labels
        .iter()
        .map(|text| text.chars().count())
        .max()
        .unwrap_or(0);
    let labels_column = |text: &str| {
        if labels_width == 0 {
            String::new()
        } else {
            let text = if text.is_empty() { "-" } else { text };
            format!("{text:<width$}  ", width = labels_width.max("LABELS".len()))
        }
    };
    let mut out = format!(
        "{:<width$}  {}{:<6}  {:<22}  {:>9}  {:>8}  {:<20}  {:>9}  {}\n",
        "PROVIDER",
        labels_column("LABELS"),
        "RESULT",
        "TOKEN",
        "LIFETIME",
        "TOKEN MS",
        "CANARY",
        "CANARY MS",
        "EXPIRES"
    );
    let mut details = String::new();
    let mut warnings = String::new();
    for (result, labels) in results.iter().zip(&labels) {
        let report = &result.report;
        let token = match report.token_requests.last() {
            Some(outcome) => match &outcome.result {
                Ok(_) => "ok".to_string(),
                Err(error) => error.reason().to_string(),
            },
            None if result.held.is_some() => "reused".to_string(),
            None => "-".to_string(),
        };
        let canary = match report.canary_requests.last() {
            Some(outcome) => match (&outcome.result, outcome.status) {
                (Ok(()), Some(status)) => format!("ok ({status})"),
                (Err(error), Some(status)) => format!("{} ({status})", error.reason()),
                (Err(error), None) => error.reason().to_string(),
                (Ok(()), None) => "ok".to_string(),
            },
            None if report.canary_skipped => "no_token".to_string(),
            None => "not configured".to_string(),
        };
        let lifetime = result
            .held
            .as_ref()
            .and_then(|held| held.lifetime)
            .map(human)
            .unwrap_or_else(|| "-".into());
        let nearest = report
            .expiries
            .nearest()
            .map(|e| format!("{} {}", e.describe(), until(e.time(), now)))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<width$}  {}{:<6}  {:<22}  {:>9}  {:>8}  {:<20}  {:>9}  {}",
            result.provider,
            labels_column(labels),
            if report.success { "ok" } else { "FAIL" },
            token,
            lifetime,
            millis(report.token_requests.last().map(|o| o.duration)),
            canary,
            millis(report.canary_requests.last().map(|o| o.duration)),
            nearest,
        );
        if let Some(window) = warn_within {
            for expiry in expiring(report, now + window) {
                let _ = writeln!(
                    warnings,
                    "{}: {} expires {} ({}), within --warn-within {}",
                    result.provider,
                    expiry.describe(),
                    until(expiry.time(), now),
                    humantime::format_rfc3339_seconds(expiry.time()),
                    humantime::format_duration(window)
                );
            }
        }
        if let Some(failure) = report.failure() {
            let status = failure
                .status
                .map(|s| format!(" HTTP {s}"))
                .unwrap_or_default();
            let _ = writeln!(
                details,
                "{}: {} failed ({}{status}): {}",
                result.provider,
                failure.phase(),
                failure.reason,
                failure.detail
            );
        }
    }
    let failed = results.iter().filter(|r| !r.report.success).count();
    let _ = write!(
        out,
        "\n{} of {} providers passed.\n",
        results.len() - failed,
        results.len()
    );
    if !details.is_empty() {
        out.push('\n');
        out.push_str(&details);
    }
    if !warnings.is_empty() {
        out.push('\n');
        out.push_str(&warnings);
    }
    out
}

/// A provider's labels as the table shows them: `env=prod,team=payments` (empty for none),
/// control characters escaped so that a value never breaks its row.
fn shown_labels(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(name, value)| {
            let mut shown = format!("{name}=");
            for c in value.chars() {
                if c.is_control() {
                    shown.extend(c.escape_default());
                } else {
                    shown.push(c);
                }
            }
            shown
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The same as JSON: an object with `passed` and one entry per provider, every expiry as
/// RFC 3339 (`within_warning`: inside `--warn-within`, when given).
fn json(results: &[CheckResult], deadline: Option<SystemTime>) -> String {
    let providers: Vec<serde_json::Value> = results
        .iter()
        .map(|result| {
            let report = &result.report;
            let token = report.token_requests.last().map(|outcome| {
                json!({
                    "result": match &outcome.result { Ok(_) => "ok", Err(e) => e.reason().as_str() },
                    "http_status": outcome.status,
                    "duration_seconds": outcome.duration.as_secs_f64(),
                })
            });
            let canary = report.canary_requests.last().map(|outcome| {
                json!({
                    "result": match &outcome.result { Ok(()) => "ok", Err(e) => e.reason().as_str() },
                    "http_status": outcome.status,
                    "duration_seconds": outcome.duration.as_secs_f64(),
                })
            });
            let failure = report.failure().map(|failure| {
                json!({
                    "phase": failure.phase().as_str(),
                    "reason": failure.reason.as_str(),
                    "http_status": failure.status,
                    "detail": failure.detail,
                })
            });
            let held = result.held.as_ref();
            let expiries: Vec<serde_json::Value> = report
                .expiries
                .all()
                .map(|expiry| {
                    let mut entry = json!({
                        (expiry.kind.label()): expiry.name,
                        "kind": expiry.kind.as_str(),
                        "expires": humantime::format_rfc3339_seconds(expiry.time()).to_string(),
                    });
                    if let Some(deadline) = deadline {
                        entry["within_warning"] = (expiry.time() <= deadline
                            && !expiry.renewed_by_its_issuer())
                        .into();
                    }
                    entry
                })
                .collect();
            let changes: serde_json::Map<String, serde_json::Value> = Credential::ALL
                .iter()
                .zip(report.expiries.changed)
                .filter(|(_, at)| *at != 0)
                .map(|(credential, at)| {
                    let at = std::time::UNIX_EPOCH + Duration::from_secs(at);
                    (
                        credential.as_str().to_string(),
                        humantime::format_rfc3339_seconds(at).to_string().into(),
                    )
                })
                .collect();
            let labels: serde_json::Map<String, serde_json::Value> = result
                .labels
                .iter()
                .map(|(name, value)| (name.to_string(), value.into()))
                .collect();
            json!({
                "provider": result.provider,
                "labels": labels,
                "success": report.success,
                "token": token,
                "token_lifetime_seconds": held.and_then(|h| h.lifetime).map(|l| l.as_secs_f64()),
                "token_expiry_timestamp_seconds": held
                    .and_then(|h| h.expires_at)
                    .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs_f64()),
                "canary": canary,
                "canary_skipped": report.canary_skipped,
                "failure": failure,
                "duration_seconds": report.duration.as_secs_f64(),
                "expiries": expiries,
                "credential_changes": changes,
            })
        })
        .collect();
    let passed = results.iter().all(|r| r.report.success)
        && deadline.is_none_or(|deadline| {
            results
                .iter()
                .all(|r| expiring(&r.report, deadline).next().is_none())
        });
    serde_json::to_string_pretty(&json!({"passed": passed, "providers": providers}))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::config::{Overrides, load_str};

    /// A label value with a newline or a tab stays on its table row, escaped; other text (quotes,
    /// UTF-8) as written.
    #[test]
    fn the_table_shows_labels_on_one_line() {
        let toml = r#"
            [providers.p]
            labels = { team = "pay \"ments\" é", note = "two\nlines\tand tab" }
            [providers.p.token]
            url = "https://idp.example/token"
            client_id = "id"
            client_secret = "s"
        "#;
        let config = load_str(toml, &Overrides::default()).expect("valid");
        assert_eq!(
            super::shown_labels(&config.providers[0].labels),
            r#"note=two\nlines\tand tab,team=pay "ments" é"#
        );
    }
}
