//! The `/metrics` contract of issue #2 (names, types and labels of the spec's metrics table),
//! checked on a running daemon (in-process, on 127.0.0.1:0) with a healthy and a broken
//! provider; and the behaviour of the other HTTP endpoints.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use support::{Daemon, FakeServer, Provider, Reply, WAIT, sample};

/// The spec's table: name, TYPE, label names (histograms: of `_sum`/`_count`; buckets add `le`).
const CONTRACT: &[(&str, &str, &[&str])] = &[
    ("oauth2_token_requests_total", "counter", &["provider"]),
    (
        "oauth2_token_request_failures_total",
        "counter",
        &["provider", "reason"],
    ),
    (
        "oauth2_token_request_duration_seconds",
        "histogram",
        &["provider"],
    ),
    // Issue 11: token answers by status, and the grant, for the credentials alert.
    (
        "oauth2_token_responses_total",
        "counter",
        &["provider", "code"],
    ),
    (
        "oauth2_token_grant_info",
        "gauge",
        &["provider", "grant_type"],
    ),
    ("oauth2_token_valid", "gauge", &["provider"]),
    (
        "oauth2_token_expiry_timestamp_seconds",
        "gauge",
        &["provider"],
    ),
    ("oauth2_token_expires_in_seconds", "gauge", &["provider"]),
    ("oauth2_token_lifetime_seconds", "gauge", &["provider"]),
    (
        "oauth2_token_last_success_timestamp_seconds",
        "gauge",
        &["provider"],
    ),
    ("oauth2_canary_requests_total", "counter", &["provider"]),
    (
        "oauth2_canary_request_failures_total",
        "counter",
        &["provider", "reason"],
    ),
    (
        "oauth2_canary_request_duration_seconds",
        "histogram",
        &["provider"],
    ),
    (
        "oauth2_canary_responses_total",
        "counter",
        &["provider", "code"],
    ),
    (
        "oauth2_unauthorized_responses_total",
        "counter",
        &["provider", "phase"],
    ),
    ("oauth2_probe_success", "gauge", &["provider"]),
    ("oauth2_probe_duration_seconds", "gauge", &["provider"]),
    (
        "oauth2_probe_last_run_timestamp_seconds",
        "gauge",
        &["provider"],
    ),
    (
        "oauth2_exporter_build_info",
        "gauge",
        &["revision", "version"],
    ),
];

const TOKEN_REASONS: &[&str] = &[
    "invalid_client",
    "invalid_grant",
    "invalid_scope",
    "invalid_request",
    "unauthorized_client",
    "unsupported_grant_type",
    "oauth_error",
    "rate_limited",
    "http_4xx",
    "http_5xx",
    "timeout",
    "connect",
    "tls",
    "invalid_response",
    "secret_unavailable",
    "exporter_busy",
    "claims",
    "client_assertion",
    "discovery",
    "dpop",
];
const CANARY_REASONS: &[&str] = &[
    "unauthorized",
    "forbidden",
    "insufficient_scope",
    "rate_limited",
    "unexpected_status",
    "timeout",
    "connect",
    "tls",
    "no_token",
    "exporter_busy",
    "secret_unavailable",
    "dpop",
];

/// `# TYPE` and `# HELP` of every family, and every sample as (family, label names and values).
struct Exposition {
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>)>,
}

/// Parses the text format strictly enough for these checks (label values here never hold `,`
/// or `"`).
fn parse(text: &str) -> Exposition {
    let mut types = BTreeMap::new();
    let mut helps = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "two TYPE lines for {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            helps.insert(name.to_string(), help.to_string());
        } else if !line.is_empty() && !line.starts_with('#') {
            let series = line.rsplit_once(' ').unwrap().0;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.strip_suffix('}').unwrap()),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap();
                    (key.to_string(), value.trim_matches('"').to_string())
                })
                .collect();
            samples.push((name.to_string(), labels));
        }
    }
    Exposition {
        types,
        helps,
        samples,
    }
}

/// The family a sample belongs to (`x_bucket` -> `x` for a histogram `x`).
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    if types.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|t| t == "histogram")
        {
            return base;
        }
    }
    name
}

/// A fake IdP + API: provider `healthy` gets tokens and a passing canary, `broken` is refused
/// with `invalid_client` (401), so its canary is skipped.
async fn fakes() -> FakeServer {
    FakeServer::start(|request| match request.path.as_str() {
        "/healthy/token" => Reply::token("healthy-token-value", 3600),
        "/broken/token" => Reply::oauth_error(401, "invalid_client"),
        "/api" => Reply::status(200),
        _ => Reply::status(404),
    })
    .await
}

fn config(fake: &FakeServer, interval: &str) -> String {
    config_labelled(fake, interval, None)
}

/// [`config`], with `labels` of `[defaults]` and of `broken` when given (issue 26).
fn config_labelled(fake: &FakeServer, interval: &str, labels: Option<(&str, &str)>) -> String {
    let api = fake.url("/api");
    let interval = format!("\"{interval}\"");
    let mut defaults = vec![("interval", interval.as_str()), ("timeout", r#""2s""#)];
    let mut broken = Provider::new("broken", &fake.url("/broken/token"))
        .client("broken-client", "wrong-secret")
        .canary(&api);
    if let Some((defaults_labels, broken_labels)) = labels {
        defaults.push(("labels", defaults_labels));
        broken = broken.setting("labels", broken_labels);
    }
    [
        support::config::defaults(&defaults),
        support::config::providers(&[
            Provider::new("healthy", &fake.url("/healthy/token"))
                .client("healthy-client", "healthy-secret")
                .canary(&api),
            broken,
        ]),
    ]
    .concat()
}

async fn running_daemon(fake: &FakeServer) -> Daemon {
    let daemon = Daemon::start(&config(fake, "200ms")).await;
    // Two cycles each, so every family has data.
    daemon
        .wait_for(
            |m| {
                sample(m, r#"oauth2_token_requests_total{provider="healthy"}"#) >= Some(2.0)
                    && sample(m, r#"oauth2_token_requests_total{provider="broken"}"#) >= Some(2.0)
            },
            WAIT,
        )
        .await;
    daemon
}

/// Issue #2: every metric of the contract is there, with its TYPE, its exact label names and
/// label values from the closed sets; HELP says the values come from periodic probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_contract_metric_has_its_type_labels_and_help() {
    let fake = fakes().await;
    let daemon = running_daemon(&fake).await;
    let text = daemon.scrape().await;
    let exposition = parse(&text);

    let mut problems = Vec::new();
    for (name, kind, labels) in CONTRACT {
        match exposition.types.get(*name) {
            Some(got) if got == kind => {}
            got => problems.push(format!("{name}: TYPE {got:?}, want {kind}")),
        }
        let help = exposition.helps.get(*name).cloned().unwrap_or_default();
        if *name != "oauth2_exporter_build_info" && !help.contains("periodic probe") {
            problems.push(format!(
                "{name}: HELP does not say periodic probes: {help:?}"
            ));
        }
        let want: BTreeSet<&str> = labels.iter().copied().collect();
        let mut seen = 0;
        for (sample_name, sample_labels) in &exposition.samples {
            if family_of(sample_name, &exposition.types) != *name {
                continue;
            }
            seen += 1;
            let mut got: BTreeSet<&str> = sample_labels.keys().map(String::as_str).collect();
            if sample_name.ends_with("_bucket") && *kind == "histogram" {
                got.remove("le");
            }
            if got != want {
                problems.push(format!("{sample_name}: labels {got:?}, want {want:?}"));
            }
            let value = |key: &str| sample_labels.get(key).map(String::as_str);
            if let Some(provider) = value("provider")
                && !["healthy", "broken"].contains(&provider)
            {
                problems.push(format!("{sample_name}: unknown provider {provider}"));
            }
            let reasons = if name.starts_with("oauth2_token") {
                TOKEN_REASONS
            } else {
                CANARY_REASONS
            };
            if let Some(reason) = value("reason")
                && !reasons.contains(&reason)
            {
                problems.push(format!(
                    "{sample_name}: reason {reason} not in the closed set"
                ));
            }
            if let Some(phase) = value("phase")
                && !["token", "canary"].contains(&phase)
            {
                problems.push(format!("{sample_name}: phase {phase}"));
            }
            if let Some(code) = value("code")
                && !code.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c))
            {
                problems.push(format!("{sample_name}: code {code}"));
            }
        }
        if seen == 0 {
            problems.push(format!("{name}: no samples"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nscrape:\n{}",
        problems.join("\n"),
        support::relevant_lines(&text)
    );

    // The values that say what happened: the healthy provider is up with a valid token, the
    // broken one is down and says why.
    for (series, expected) in [
        (r#"oauth2_probe_success{provider="healthy"}"#, 1.0),
        (r#"oauth2_token_valid{provider="healthy"}"#, 1.0),
        (
            r#"oauth2_token_lifetime_seconds{provider="healthy"}"#,
            3600.0,
        ),
        (r#"oauth2_probe_success{provider="broken"}"#, 0.0),
        (r#"oauth2_token_valid{provider="broken"}"#, 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(expected), "{series}");
    }
    let at_least_one = [
        r#"oauth2_token_request_failures_total{provider="broken",reason="invalid_client"}"#,
        r#"oauth2_canary_request_failures_total{provider="broken",reason="no_token"}"#,
        r#"oauth2_unauthorized_responses_total{phase="token",provider="broken"}"#,
        r#"oauth2_canary_responses_total{code="200",provider="healthy"}"#,
    ];
    for series in at_least_one {
        assert!(sample(&text, series) >= Some(1.0), "{series} in\n{text}");
    }
    let expires_in = sample(
        &text,
        r#"oauth2_token_expires_in_seconds{provider="healthy"}"#,
    )
    .expect("expires_in for the healthy provider");
    assert!((3500.0..=3600.0).contains(&expires_in), "{expires_in}");
    // No token, so no expiry: absent rather than a made-up value.
    assert_eq!(
        sample(
            &text,
            r#"oauth2_token_expiry_timestamp_seconds{provider="broken"}"#
        ),
        None
    );
    daemon.stop().await;
}

/// Issue #2: counters without `reason`/`code` exist at 0 from start-up, before any cycle has
/// ended, so `rate()` works from the first scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_exist_at_zero_before_the_first_cycle_ends() {
    // The IdP answers only after 3 s: no cycle ends while this test looks.
    let fake = FakeServer::start(|_| {
        Reply::delayed(Duration::from_secs(3), Reply::token("slow-token", 3600))
    })
    .await;
    let daemon = Daemon::start(
        &Provider::new("slow", &fake.url("/token"))
            .interval("60s")
            .timeout("5s")
            .client("slow", "slow-secret")
            .canary(&fake.url("/api"))
            .toml(),
    )
    .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + WAIT;
    while client
        .get(daemon.url("/-/ready"))
        .send()
        .await
        .map(|r| r.status())
        .ok()
        != Some(reqwest::StatusCode::OK)
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = daemon.scrape().await;
    assert_eq!(fake.requests().len(), fake.count("/token"), "no canary yet");
    for series in [
        r#"oauth2_token_requests_total{provider="slow"}"#,
        r#"oauth2_canary_requests_total{provider="slow"}"#,
        r#"oauth2_unauthorized_responses_total{phase="token",provider="slow"}"#,
        r#"oauth2_unauthorized_responses_total{phase="canary",provider="slow"}"#,
        r#"oauth2_token_request_duration_seconds_count{provider="slow"}"#,
        r#"oauth2_canary_request_duration_seconds_count{provider="slow"}"#,
    ] {
        assert_eq!(sample(&text, series), Some(0.0), "{series} in\n{text}");
    }
    // The families labelled by outcome have no series before an outcome.
    for name in [
        "oauth2_token_request_failures_total",
        "oauth2_canary_request_failures_total",
        "oauth2_canary_responses_total",
        "oauth2_token_responses_total",
    ] {
        assert!(
            support::series_of(&text, name).is_empty(),
            "{name} before any outcome:\n{text}"
        );
    }
    daemon.stop().await;
}

/// `process_*` metrics and `oauth2_exporter_build_info` (always 1, with version and revision).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_metrics_and_build_info() {
    let fake = fakes().await;
    let daemon = Daemon::start(&config(&fake, "60s")).await;
    let text = daemon.scrape().await;
    let exposition = parse(&text);
    for (name, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("oauth2_exporter_requests_in_flight", "gauge"),
        ("oauth2_exporter_requests_in_flight_limit", "gauge"),
    ] {
        assert_eq!(
            exposition.types.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
        assert!(sample(&text, name).is_some(), "{name} has no sample");
    }
    // Issue 16: the request slots are sized by the descriptor limit, beyond a reserve.
    let limit = sample(&text, "oauth2_exporter_requests_in_flight_limit").unwrap_or(0.0);
    let max_fds = sample(&text, "process_max_fds").unwrap_or(0.0);
    assert!(
        limit >= 1.0 && limit < max_fds,
        "limit {limit}, process_max_fds {max_fds}"
    );
    let revision = oauth2_exporter::REVISION;
    assert!(!revision.is_empty());
    assert_eq!(
        support::series_of(&text, "oauth2_exporter_build_info"),
        [format!(
            r#"oauth2_exporter_build_info{{revision="{revision}",version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        )]
    );
    daemon.stop().await;
}

/// `Accept-Encoding: gzip` gets a gzip body holding the same metric families.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_honour_accept_encoding_gzip() {
    let fake = fakes().await;
    let daemon = running_daemon(&fake).await;
    // reqwest is built without its gzip feature here, so it hands over the raw bytes.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .get(daemon.url("/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let compressed = response.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .unwrap();
    let plain = client.get(daemon.url("/metrics")).send().await.unwrap();
    assert_eq!(plain.headers().get("content-encoding"), None);
    let plain = plain.text().await.unwrap();
    let names = |text: &str| parse(text).types.into_keys().collect::<Vec<_>>();
    assert_eq!(names(&text), names(&plain));
    assert!(names(&text).len() >= CONTRACT.len());
    daemon.stop().await;
}

/// `/-/healthy`, `/-/ready`, the index page, 404 for other paths, 405 (with `Allow`) for
/// other methods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_as_specified() {
    let fake = fakes().await;
    let daemon = Daemon::start(&config(&fake, "60s")).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str| client.get(daemon.url(path)).send();

    assert_eq!(get("/-/healthy").await.unwrap().status(), 200);
    let deadline = Instant::now() + WAIT;
    loop {
        let status = get("/-/ready").await.unwrap().status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "/-/ready: {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let index = get("/").await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = index.text().await.unwrap();
    for needle in [
        "href=\"/metrics\"",
        "<a href=\"/probe?provider=healthy&amp;debug=true\">healthy</a></td>",
        "<a href=\"/probe?provider=broken&amp;debug=true\">broken</a></td>",
    ] {
        assert!(
            page.contains(needle),
            "{needle} not on the index page:\n{page}"
        );
    }

    for path in ["/nope", "/metrics/", "/favicon.ico"] {
        assert_eq!(get(path).await.unwrap().status(), 404, "{path}");
    }

    let post = client
        .post(daemon.url("/metrics"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    let allow = post.headers()["allow"].to_str().unwrap().to_string();
    assert!(allow.contains("GET"), "Allow: {allow}");
    let delete = client.delete(daemon.url("/")).send().await.unwrap();
    assert_eq!(delete.status(), 405);
    assert!(delete.headers().contains_key("allow"));
    daemon.stop().await;
}

/// Issue 26: `labels` from `[defaults]` and the provider's own table are on every series of the
/// provider, on `/metrics` and on `/probe`: the same series, one more label each. `broken`
/// overrides the default `env` with nothing (removes it) and adds its own `team`. (The protobuf
/// page is decoded and compared in the unit tests of `src/metrics/protobuf`, and read by a real
/// Prometheus in tests/it/peer_prometheus.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_own_labels_are_on_every_one_of_its_series() {
    let fake = fakes().await;
    let toml = config_labelled(
        &fake,
        "200ms",
        Some((
            r#"{ team = "payments", env = "prod" }"#,
            r#"{ team = "identity", env = "" }"#,
        )),
    );
    let daemon = Daemon::start(&toml).await;
    let text = daemon
        .wait_for(
            |m| {
                ["healthy", "broken"].iter().all(|p| {
                    m.lines().any(|line| {
                        line.starts_with("oauth2_token_requests_total{")
                            && line.contains(&format!("provider=\"{p}\""))
                            && line
                                .rsplit_once(' ')
                                .and_then(|(_, value)| value.parse::<f64>().ok())
                                >= Some(2.0)
                    })
                })
            },
            WAIT,
        )
        .await;
    let exposition = parse(&text);
    let expected = |provider: &str| -> BTreeMap<String, String> {
        let pairs: &[(&str, &str)] = match provider {
            "healthy" => &[("team", "payments"), ("env", "prod")],
            _ => &[("team", "identity")],
        };
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut seen = BTreeMap::new();
    for (name, labels) in &exposition.samples {
        let Some(provider) = labels.get("provider") else {
            continue;
        };
        *seen.entry(provider.clone()).or_insert(0) += 1;
        let own: BTreeMap<String, String> = labels
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "team" | "env"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(own, expected(provider), "{name}{labels:?}");
    }
    assert!(
        seen.values().all(|count| *count > 15),
        "series per provider: {seen:?}"
    );

    // `/probe`: every series of the on-demand cycle, the failure's included.
    for (provider, own) in [
        ("healthy", r#"env="prod",team="payments""#),
        ("broken", r#"team="identity""#),
    ] {
        let page = support::get_text(&daemon.url(&format!("/probe?provider={provider}"))).await;
        let series: Vec<&str> = page.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(series.len() >= 4, "{page}");
        for line in &series {
            assert!(line.contains(own), "{provider}: {line}");
            assert_eq!(line.contains("env="), provider == "healthy", "{line}");
        }
        if provider == "broken" {
            assert!(
                page.contains(&format!(
                    "oauth2_probe_failure{{phase=\"token\",reason=\"invalid_client\",{own}}} 1"
                )),
                "{page}"
            );
        }
    }
    daemon.stop().await;
}

/// Issue 26: the status page shows each provider's labels, each a link to the page filtered by
/// it, and `/?NAME=VALUE` shows only the providers labelled so (several: all must match; a name
/// no provider has matches none), every value escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_labels_and_filters_by_them() {
    let fake = fakes().await;
    let toml = [
        support::config::defaults(&[("interval", "\"1h\""), ("labels", r#"{ env = "prod" }"#)]),
        support::config::providers(&[
            Provider::new("healthy", &fake.url("/healthy/token")).setting(
                "labels",
                r#"{ team = "payments", zone = "eu <west> & \"1\"" }"#,
            ),
            Provider::new("broken", &fake.url("/broken/token"))
                .setting("labels", r#"{ team = "identity" }"#),
            Provider::new("plain", &fake.url("/healthy/token"))
                .setting("labels", r#"{ env = "" }"#),
        ]),
    ]
    .concat();
    let daemon = Daemon::start(&toml).await;
    let rows = |page: &str| -> Vec<String> {
        page.split("data-provider=\"")
            .skip(1)
            .filter_map(|rest| rest.split_once('"'))
            .map(|(name, _)| name.to_string())
            .collect()
    };
    let page = |query: &'static str| {
        let url = daemon.url(&format!("/{query}"));
        async move { support::get_text(&url).await }
    };

    let all = page("").await;
    let mut shown = rows(&all);
    shown.sort();
    assert_eq!(shown, ["broken", "healthy", "plain"], "{all}");
    let healthy_row = all
        .lines()
        .find(|line| line.contains("data-provider=\"healthy\""))
        .unwrap();
    for link in [
        r#"<a href="?env=prod">env=prod</a>"#,
        r#"<a href="?team=payments">team=payments</a>"#,
        r#"<a href="?zone=eu+%3Cwest%3E+%26+%221%22">zone=eu &lt;west&gt; &amp; &quot;1&quot;</a>"#,
    ] {
        assert!(healthy_row.contains(link), "{link} in {healthy_row}");
    }
    let plain_row = all
        .lines()
        .find(|line| line.contains("data-provider=\"plain\""))
        .unwrap();
    assert!(!plain_row.contains("class=\"labels\""), "{plain_row}");
    assert!(!all.contains("class=\"filter\""), "no filter, no note");

    for (query, expected) in [
        ("?team=payments", vec!["healthy"]),
        ("?env=prod", vec!["broken", "healthy"]),
        ("?env=prod&team=identity", vec!["broken"]),
        ("?env=prod&team=nobody", vec![]),
        ("?owner=payments", vec![]),
        ("?zone=eu+%3Cwest%3E+%26+%221%22", vec!["healthy"]),
    ] {
        let filtered = page(query).await;
        let mut shown = rows(&filtered);
        shown.sort();
        assert_eq!(shown, expected, "{query}: {filtered}");
        assert!(filtered.contains("class=\"filter\""), "{query}: {filtered}");
        if expected.is_empty() {
            assert!(
                filtered.contains("No provider has these labels."),
                "{query}: {filtered}"
            );
        }
    }
    // What the filter note echoes of the request is escaped.
    let hostile = page("?team=%3Cscript%3Ex%3C%2Fscript%3E").await;
    assert!(!hostile.contains("<script>"), "{hostile}");
    assert!(
        hostile.contains("labelled team=&lt;script&gt;x&lt;/script&gt;"),
        "{hostile}"
    );
    daemon.stop().await;
}
