//! Reloading without losing anything (issue #4, section 3): `POST /-/reload` in-process (through
//! `oauth2_exporter::run_with` with a `ConfigSource` that reads a file) and `SIGHUP` to the real
//! binary. A valid new configuration starts added providers, stops removed ones and deletes every
//! one of their series, restarts changed ones with the new settings (counters kept), and leaves
//! unchanged ones alone (held token and counters); an invalid one changes nothing and is reported
//! by `oauth2_exporter_config_last_reload_successful`. Secrets in files are re-read on every token
//! request, so a rotated `client_secret_file` takes effect with no reload at all.

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{
    Binary, Daemon, FakeServer, Provider, Recorded, Reply, Signal, WAIT, relevant_lines, sample,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const RELOAD_OK: &str = "oauth2_exporter_config_last_reload_successful";
const RELOAD_TIME: &str = "oauth2_exporter_config_last_reload_success_timestamp_seconds";

// ---------------------------------------------------------------------------------------------
// In-process daemon with reloads from a file.

/// `run_with` on loopback with reloads from `dir/exporter.toml` (no start jitter, no SIGHUP:
/// signals are process-wide and the binary tests below own them).
struct Reloadable {
    /// Holds the configuration file.
    _dir: tempfile::TempDir,
    path: PathBuf,
    addr: SocketAddr,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Reloadable {
    async fn start(toml: &str) -> Reloadable {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exporter.toml");
        write_atomically(&path, toml);
        let source_path = path.clone();
        let source: oauth2_exporter::ConfigSource =
            Arc::new(move || oauth2_exporter::config::load_file(&source_path, &Default::default()));
        let config = source().unwrap_or_else(|e| panic!("invalid test configuration:\n{e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let options = oauth2_exporter::RunOptions {
            jitter: oauth2_exporter::StartJitter::None,
            reload: Some(source),
            reload_on_sighup: false,
            web_security: Default::default(),
            telemetry_path: oauth2_exporter::DEFAULT_TELEMETRY_PATH.to_string(),
            shard: None,
        };
        let task = tokio::spawn(oauth2_exporter::run_with(
            config,
            listener,
            options,
            async {
                let _ = rx.await;
            },
        ));
        Reloadable {
            _dir: dir,
            path,
            addr,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn write_config(&self, toml: &str) {
        write_atomically(&self.path, toml);
    }

    /// `POST /-/reload`: status and body.
    async fn reload(&self) -> (u16, String) {
        let response = self
            .client
            .post(self.url("/-/reload"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    async fn scrape(&self) -> String {
        scrape(&self.client, &self.url("/metrics")).await
    }

    async fn wait_for(&self, what: &str, predicate: impl Fn(&str) -> bool) -> String {
        wait_for(&self.client, &self.url("/metrics"), what, predicate).await
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("run_with did not stop within 10 s")
                .expect("run_with panicked")
                .expect("run_with returned an error");
        }
    }
}

impl Drop for Reloadable {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Replaces a file in one step (write a sibling, rename over), so a reader never sees half of
/// it: how configuration management and Kubernetes secret volumes update files too.
fn write_atomically(path: &Path, contents: &str) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::rename(&staging, path).unwrap();
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.text().await.unwrap()
}

/// Scrapes every 25 ms until `predicate` holds; panics after [`WAIT`] with `what` and the last
/// scrape.
async fn wait_for(
    client: &reqwest::Client,
    url: &str,
    what: &str,
    predicate: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = scrape(client, url).await;
        if predicate(&metrics) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "not within {WAIT:?}: {what}; last scrape:\n{}",
            relevant_lines(&metrics)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every line of the scrape that mentions `provider="NAME"`.
fn lines_of<'a>(metrics: &'a str, provider: &str) -> Vec<&'a str> {
    let label = format!("provider=\"{provider}\"");
    metrics.lines().filter(|l| l.contains(&label)).collect()
}

fn value(metrics: &str, series: &str) -> f64 {
    sample(metrics, series)
        .unwrap_or_else(|| panic!("{series} missing from:\n{}", relevant_lines(metrics)))
}

fn has(metrics: &str, series: &str) -> bool {
    sample(metrics, series).is_some()
}

// ---------------------------------------------------------------------------------------------
// The fake identity provider and API shared by the reload tests.

/// Answers `/NAME/token...` with a token `NAME-token` (1 h) and `/NAME/api` with 200, except
/// provider `gone`: its first token request is refused (`invalid_client`) and its API answers
/// 503, so it owns failure and response-code series of every kind before it is removed.
async fn identity_provider() -> FakeServer {
    let gone_tokens = Arc::new(AtomicUsize::new(0));
    FakeServer::start(move |request: &Recorded| {
        let mut parts = request.path.trim_start_matches('/').splitn(2, '/');
        let provider = parts.next().unwrap_or_default().to_string();
        let what = parts.next().unwrap_or_default();
        match (provider.as_str(), what) {
            ("gone", "token") if gone_tokens.fetch_add(1, Ordering::SeqCst) == 0 => {
                Reply::oauth_error(401, "invalid_client")
            }
            ("gone", "api") => Reply::status(503),
            (_, "api") => Reply::status(200),
            (_, token) if token.ends_with("token") => {
                Reply::token(&format!("{provider}-token"), 3600)
            }
            _ => Reply::status(404),
        }
    })
    .await
}

/// One provider's TOML: token at `/NAME/{token_path}` with any `extra_token` keys (values as
/// TOML text), canary at `/NAME/api`.
fn provider(
    idp: &FakeServer,
    name: &str,
    token_path: &str,
    extra_token: &[(&str, &str)],
) -> String {
    extra_token
        .iter()
        .fold(
            Provider::new(name, &idp.url(&format!("/{name}/{token_path}")))
                .interval("200ms")
                .timeout("2s")
                .client(&format!("{name}-id"), &format!("{name}-secret")),
            |provider, (key, value)| provider.token_key(key, value),
        )
        .canary(&idp.url(&format!("/{name}/api")))
        .toml()
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// A valid new configuration over `POST /-/reload`: `added` starts, `gone` stops and every one
/// of its series disappears, `changed` (new token URL) restarts against the new URL with its
/// counters carried on, and `kept` (reuse = true) keeps its token (no new token request) and
/// its counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reload_adds_removes_restarts_and_keeps() {
    let idp = identity_provider().await;
    let kept = provider(&idp, "kept", "token", &[("reuse", "true")]);
    let v1 = [
        kept.clone(),
        provider(&idp, "changed", "old-token", &[]),
        provider(&idp, "gone", "token", &[]),
    ]
    .concat();
    let v2 = [
        kept,
        provider(&idp, "changed", "new-token", &[]),
        provider(&idp, "added", "token", &[]),
    ]
    .concat();
    let daemon = Reloadable::start(&v1).await;

    let before = daemon
        .wait_for("every provider has a history, `gone` one of every kind", |m| {
            sample(m, r#"oauth2_canary_requests_total{provider="kept"}"#) >= Some(3.0)
                && sample(m, r#"oauth2_token_requests_total{provider="changed"}"#) >= Some(3.0)
                && has(
                    m,
                    r#"oauth2_token_request_failures_total{provider="gone",reason="invalid_client"}"#,
                )
                && has(
                    m,
                    r#"oauth2_canary_request_failures_total{provider="gone",reason="no_token"}"#,
                )
                && has(
                    m,
                    r#"oauth2_canary_request_failures_total{provider="gone",reason="unexpected_status"}"#,
                )
                && has(m, r#"oauth2_canary_responses_total{code="503",provider="gone"}"#)
                && has(m, r#"oauth2_token_valid{provider="gone"}"#)
                && has(m, r#"oauth2_token_lifetime_seconds{provider="gone"}"#)
        })
        .await;
    assert_eq!(value(&before, RELOAD_OK), 1.0);
    let reload_time_before = value(&before, RELOAD_TIME);
    assert!(
        (support::unix_now() - reload_time_before).abs() < 60.0,
        "start-up load time {reload_time_before} is not now"
    );
    assert_eq!(
        value(&before, r#"oauth2_token_requests_total{provider="kept"}"#),
        1.0,
        "reuse = true: one token for the whole first hour"
    );
    assert_eq!(idp.count("/kept/token"), 1);
    let kept_canaries_before = value(&before, r#"oauth2_canary_requests_total{provider="kept"}"#);
    assert!(lines_of(&before, "gone").len() > 10, "{before}");

    daemon.write_config(&v2);
    let (status, body) = daemon.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.trim(),
        "configuration reloaded: 1 added, 1 removed, 1 restarted, 1 unchanged"
    );
    // The reload has been applied when the answer comes: nothing reaches the old URL any more.
    let old_url_requests = idp.count("/changed/old-token");
    assert!(old_url_requests >= 3);

    let after = daemon
        .wait_for(
            "added probes, changed uses the new URL, kept goes on",
            |m| {
                sample(m, r#"oauth2_probe_success{provider="added"}"#) == Some(1.0)
                    && sample(m, r#"oauth2_canary_requests_total{provider="kept"}"#)
                        >= Some(kept_canaries_before + 3.0)
                    && idp.count("/changed/new-token") >= 3
            },
        )
        .await;
    assert_eq!(value(&after, RELOAD_OK), 1.0);
    assert!(
        value(&after, RELOAD_TIME) > reload_time_before,
        "the success timestamp did not advance"
    );

    // Removed: not one series left, now or in the scrapes that follow (a cycle that was in
    // flight during the reload must not bring any back).
    for _ in 0..8 {
        let metrics = daemon.scrape().await;
        let left = lines_of(&metrics, "gone");
        assert!(left.is_empty(), "series of the removed provider: {left:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Added: probing its own token URL and canary.
    assert!(idp.count("/added/token") >= 1 && idp.count("/added/api") >= 1);

    // Changed: the new URL gets the requests, the old one none, and the token request counter
    // went on from where it was (it counts the old URL's requests plus the new one's).
    let new_before = idp.count("/changed/new-token");
    let metrics = daemon.scrape().await;
    let new_after = idp.count("/changed/new-token");
    assert_eq!(idp.count("/changed/old-token"), old_url_requests);
    let counted = value(
        &metrics,
        r#"oauth2_token_requests_total{provider="changed"}"#,
    ) as usize;
    // A request the fake has seen may not be recorded yet (its cycle is still running): -1.
    assert!(
        counted + 1 >= old_url_requests + new_before && counted <= old_url_requests + new_after,
        "changed: counter {counted}, old URL {old_url_requests}, new URL {new_before}..{new_after}: reset?"
    );
    assert_eq!(
        value(&metrics, r#"oauth2_probe_success{provider="changed"}"#),
        1.0
    );

    // Unchanged: still the one token from before the reload, counters not reset.
    assert_eq!(idp.count("/kept/token"), 1, "kept requested a new token");
    assert_eq!(
        value(&metrics, r#"oauth2_token_requests_total{provider="kept"}"#),
        1.0
    );
    assert!(
        value(&metrics, r#"oauth2_canary_requests_total{provider="kept"}"#)
            >= kept_canaries_before + 3.0
    );
    assert_eq!(
        value(&metrics, r#"oauth2_token_valid{provider="kept"}"#),
        1.0
    );
    let bearers: Vec<String> = idp
        .requests_to("/kept/api")
        .iter()
        .map(|r| r.bearer().unwrap_or_default().to_string())
        .collect();
    assert!(
        bearers.iter().all(|b| b == "kept-token"),
        "kept's canary calls: {bearers:?}"
    );

    daemon.stop().await;
}

/// An invalid new configuration changes nothing: 500 with the problems, the running provider
/// goes on against its old URL, `..._last_reload_successful` drops to 0 and the success
/// timestamp stays. A good reload afterwards brings it back to 1 and advances the timestamp.
/// `GET /-/reload` is refused with 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_keeps_the_running_configuration() {
    let idp = identity_provider().await;
    let v1 = provider(&idp, "p", "token", &[]);
    let daemon = Reloadable::start(&v1).await;
    let before = daemon
        .wait_for("p probed", |m| {
            sample(m, r#"oauth2_token_requests_total{provider="p"}"#) >= Some(2.0)
        })
        .await;
    let reload_time = value(&before, RELOAD_TIME);

    // The new URL plus a bad duration and an empty client id: none of it may take effect.
    let invalid = provider(&idp, "p", "new-token", &[])
        .replace("timeout = \"2s\"", "timeout = \"soon\"")
        .replace("client_id = \"p-id\"", "client_id = \"\"");
    daemon.write_config(&invalid);
    let (status, body) = daemon.reload().await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("invalid configuration"), "{body}");
    assert!(body.contains("key `providers.p.timeout`"), "{body}");
    assert!(body.contains("key `providers.p.token.client_id`"), "{body}");
    assert!(
        !body.contains("p-secret"),
        "the secret in the file leaked: {body}"
    );

    let requests_at_failure = idp.count("/p/token");
    let after = daemon
        .wait_for("p goes on probing after the failed reload", |m| {
            sample(m, RELOAD_OK) == Some(0.0) && idp.count("/p/token") >= requests_at_failure + 3
        })
        .await;
    assert_eq!(
        value(&after, RELOAD_TIME),
        reload_time,
        "a failed reload moved the success timestamp"
    );
    assert_eq!(
        idp.count("/p/new-token"),
        0,
        "the invalid config was applied"
    );
    assert_eq!(value(&after, r#"oauth2_probe_success{provider="p"}"#), 1.0);
    assert!(
        value(&after, r#"oauth2_token_requests_total{provider="p"}"#)
            >= value(&before, r#"oauth2_token_requests_total{provider="p"}"#),
        "counters reset"
    );

    // GET is not a reload.
    let response = daemon
        .client
        .get(daemon.url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.headers().get("allow").map(|v| v.to_str().unwrap()),
        Some("POST")
    );
    assert_eq!(value(&daemon.scrape().await, RELOAD_OK), 0.0);

    // A good configuration: applied, and the metrics say so.
    daemon.write_config(&provider(&idp, "p", "new-token", &[]));
    let (status, body) = daemon.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.trim(),
        "configuration reloaded: 0 added, 0 removed, 1 restarted, 0 unchanged"
    );
    let metrics = daemon
        .wait_for("p probes the new URL", |_| idp.count("/p/new-token") >= 1)
        .await;
    assert_eq!(value(&metrics, RELOAD_OK), 1.0);
    assert!(value(&metrics, RELOAD_TIME) > reload_time);

    // Reloading the same file again: nothing restarts.
    let (status, body) = daemon.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.trim(),
        "configuration reloaded: 0 added, 0 removed, 0 restarted, 1 unchanged"
    );
    daemon.stop().await;
}

/// A rotated `client_secret_file` is used by the very next token request, with no reload (the
/// daemon here has no reload source at all). The fake accepts only the current secret.
/// Issue 15: `[metrics] histograms` changes on reload. From `classic` to `none` the histograms
/// give way to the last-duration gauges at once; back to `classic` they start afresh; the
/// counters go on throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_histogram_mode() {
    let idp = identity_provider().await;
    let p = provider(&idp, "p", "token", &[]);
    let count = r#"oauth2_token_request_duration_seconds_count{provider="p"}"#;
    let last = r#"oauth2_token_request_last_duration_seconds{provider="p"}"#;
    let requests = r#"oauth2_token_requests_total{provider="p"}"#;
    let daemon = Reloadable::start(&p).await;
    let before = daemon
        .wait_for("two token requests", |m| sample(m, count) >= Some(2.0))
        .await;
    assert!(!has(&before, last));

    daemon.write_config(&format!("[metrics]\nhistograms = \"none\"\n{p}"));
    let (status, body) = daemon.reload().await;
    assert_eq!(status, 200, "{body}");
    let none = daemon.scrape().await;
    assert!(!has(&none, count), "{none}");
    assert!(
        !none.contains("# TYPE oauth2_token_request_duration_seconds histogram"),
        "{none}"
    );
    let none = daemon
        .wait_for("the last duration as a gauge", |m| has(m, last))
        .await;
    assert!(value(&none, requests) >= value(&before, requests));

    daemon.write_config(&p);
    let (status, body) = daemon.reload().await;
    assert_eq!(status, 200, "{body}");
    let classic = daemon.scrape().await;
    assert!(!has(&classic, last), "{classic}");
    assert!(
        value(&classic, count) < value(&before, count),
        "the histogram starts afresh\n{classic}"
    );
    assert!(value(&classic, requests) >= value(&none, requests));
    daemon.stop().await;
}

/// Issue 26: a reload that changes a provider's `labels` restarts it under the new ones: every
/// series of it carries them from then on (none the old), its counters going on; the status
/// page follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_a_providers_labels() {
    let idp = identity_provider().await;
    let p = provider(&idp, "p", "token", &[]);
    let labelled = |team: &str| {
        p.replacen(
            "[providers.p]\n",
            &format!("[providers.p]\nlabels = {{ team = \"{team}\" }}\n"),
            1,
        )
    };
    let requests =
        |team: &str| format!("oauth2_token_requests_total{{provider=\"p\",team=\"{team}\"}}");
    let daemon = Reloadable::start(&labelled("payments")).await;
    let before = daemon
        .wait_for("two cycles", |m| {
            sample(m, &requests("payments")) >= Some(2.0)
        })
        .await;

    daemon.write_config(&labelled("identity"));
    let (status, body) = daemon.reload().await;
    assert_eq!(status, 200, "{body}");
    let after = daemon.scrape().await;
    let lines = lines_of(&after, "p");
    assert!(lines.len() > 10, "{after}");
    for line in lines {
        assert!(line.contains("team=\"identity\""), "{line}");
    }
    assert!(value(&after, &requests("identity")) >= value(&before, &requests("payments")));
    let page = support::get_text(&daemon.url("/?team=identity")).await;
    assert!(page.contains("data-provider=\"p\""), "{page}");
    let page = support::get_text(&daemon.url("/?team=payments")).await;
    assert!(!page.contains("data-provider=\"p\""), "{page}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_secret_file_is_used_without_a_reload() {
    let current = Arc::new(Mutex::new("first-secret-value".to_string()));
    let idp = FakeServer::start({
        let current = Arc::clone(&current);
        move |request: &Recorded| {
            let form = request.form_map();
            if form.get("client_secret") == Some(&*current.lock().unwrap()) {
                Reply::token("rotating-token", 3600)
            } else {
                Reply::oauth_error(401, "invalid_client")
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("client_secret");
    write_atomically(&secret_file, "first-secret-value\n");
    let daemon = Daemon::start(
        &Provider::new("rot", &idp.url("/token"))
            .interval("200ms")
            .client("rot-id", "")
            .secret_file(&secret_file)
            .toml(),
    )
    .await;
    idp.wait_for_requests("/token", 2, WAIT).await;
    daemon
        .wait_for_sample(r#"oauth2_probe_success{provider="rot"}"#, 1.0, WAIT)
        .await;
    let secrets = |requests: &[Recorded]| -> Vec<String> {
        requests
            .iter()
            .map(|r| {
                r.form_map()
                    .get("client_secret")
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };
    assert!(
        secrets(&idp.requests_to("/token"))
            .iter()
            .all(|s| s == "first-secret-value")
    );

    *current.lock().unwrap() = "second-secret-value".to_string();
    write_atomically(&secret_file, "second-secret-value\n");
    let rotated_at = idp.count("/token");

    // Within a few cycles the new value is on the wire, and from then on only the new value.
    let deadline = Instant::now() + WAIT;
    let first_new = loop {
        let sent = secrets(&idp.requests_to("/token"));
        if let Some(index) = sent.iter().position(|s| s == "second-secret-value") {
            break index;
        }
        assert!(
            Instant::now() < deadline,
            "never sent the rotated secret: {sent:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        first_new <= rotated_at + 1,
        "the rotated secret was first sent by request {first_new}, the file changed after request {rotated_at}: not read on each request"
    );
    let requests = idp.wait_for_requests("/token", first_new + 3, WAIT).await;
    let sent = secrets(&requests);
    assert!(
        sent[first_new..].iter().all(|s| s == "second-secret-value"),
        "went back to the old secret: {sent:?}"
    );
    let metrics = daemon
        .wait_for_sample(r#"oauth2_probe_success{provider="rot"}"#, 1.0, WAIT)
        .await;
    assert!(!metrics.contains("secret-value"), "a secret in /metrics");
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The real binary (started by `support::binary`) and SIGHUP.

/// SIGHUP to the binary: a valid file swaps `a` for `b` (every `a` series gone); an invalid
/// one is logged and leaves `b` probing with `..._last_reload_successful` 0; the next good one
/// sets it back to 1. SIGTERM still ends it with 0 afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_binary() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.toml");
    let v1 = provider(&idp, "a", "token", &[]);
    let v2 = provider(&idp, "b", "token", &[]);
    write_atomically(&path, &v1);
    let mut exporter = Binary::new().config(&path).listen_loopback().spawn();
    let addr = exporter.address().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("http://{addr}/metrics");

    let before = wait_for(&client, &url, "a probed", |m| {
        sample(m, r#"oauth2_probe_success{provider="a"}"#) == Some(1.0)
    })
    .await;
    let reload_time = value(&before, RELOAD_TIME);
    assert_eq!(value(&before, RELOAD_OK), 1.0);

    write_atomically(&path, &v2);
    exporter.signal(Signal::Hup);
    let after = wait_for(&client, &url, "b replaces a", |m| {
        sample(m, r#"oauth2_probe_success{provider="b"}"#) == Some(1.0)
            && lines_of(m, "a").is_empty()
    })
    .await;
    assert_eq!(value(&after, RELOAD_OK), 1.0);
    assert!(value(&after, RELOAD_TIME) > reload_time);
    let stderr = exporter
        .wait_for_log(
            "configuration reloaded: 1 added, 1 removed, 0 restarted, 0 unchanged",
            1,
        )
        .await;
    assert!(!stderr.contains("a-secret") && !stderr.contains("b-secret"));
    let a_requests = idp.count("/a/token");
    let good_time = value(&after, RELOAD_TIME);

    // Invalid: logged, nothing changes.
    write_atomically(
        &path,
        &v2.replace("client_id = \"b-id\"", "client_idd = \"b-id\""),
    );
    exporter.signal(Signal::Hup);
    let b_requests = idp.count("/b/token");
    let failed = wait_for(
        &client,
        &url,
        "failed reload reported, b still probing",
        |m| sample(m, RELOAD_OK) == Some(0.0) && idp.count("/b/token") >= b_requests + 3,
    )
    .await;
    assert_eq!(value(&failed, RELOAD_TIME), good_time);
    assert_eq!(value(&failed, r#"oauth2_probe_success{provider="b"}"#), 1.0);
    let stderr = exporter
        .wait_for_log("configuration reload failed", 1)
        .await;
    assert!(stderr.contains("providers.b.token.client_idd"), "{stderr}");
    assert_eq!(
        idp.count("/a/token"),
        a_requests,
        "the removed provider came back"
    );

    // Good again (the same as v2: b is unchanged and keeps running).
    write_atomically(&path, &v2);
    exporter.signal(Signal::Hup);
    let good = wait_for(&client, &url, "good reload reported", |m| {
        sample(m, RELOAD_OK) == Some(1.0)
    })
    .await;
    assert!(value(&good, RELOAD_TIME) > good_time);
    exporter
        .wait_for_log(
            "configuration reloaded: 0 added, 0 removed, 0 restarted, 1 unchanged",
            1,
        )
        .await;

    exporter.signal(Signal::Term);
    let (status, took) = exporter.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", exporter.stderr());
    assert!(took < Duration::from_secs(5), "took {took:?} to exit");
}

/// Issue 22: `POST /-/reload` from another site is refused with 403 and reloads nothing: a
/// page elsewhere can make a browser send a "simple" POST (`Content-Type: text/plain`, no
/// preflight). Browsers say where it came from in `Origin` and `Sec-Fetch-Site`; a request
/// without them (curl, Prometheus, kubectl) and a same-origin one still reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_reloads_are_refused() {
    let idp = identity_provider().await;
    let daemon = Reloadable::start(&provider(&idp, "p", "token", &[])).await;
    daemon
        .wait_for("p probed", |m| {
            sample(m, r#"oauth2_token_requests_total{provider="p"}"#) >= Some(1.0)
        })
        .await;
    // A reload would switch p to `new-token`: whether it happened is visible at the fake.
    daemon.write_config(&provider(&idp, "p", "new-token", &[]));
    let port = daemon.addr.port();
    let own = format!("http://127.0.0.1:{port}");
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1).max(1));
    let https = format!("https://127.0.0.1:{port}");
    let refused: [(&str, &[(&str, &str)]); 7] = [
        (
            "Origin of another site",
            &[("origin", "http://evil.example")],
        ),
        ("Origin null", &[("origin", "null")]),
        ("Origin on another port", &[("origin", &other_port)]),
        ("Origin with another scheme", &[("origin", &https)]),
        (
            "Sec-Fetch-Site cross-site",
            &[("sec-fetch-site", "cross-site")],
        ),
        (
            "Sec-Fetch-Site same-site",
            &[("sec-fetch-site", "same-site")],
        ),
        (
            "own Origin but Sec-Fetch-Site cross-site",
            &[("origin", &own), ("sec-fetch-site", "cross-site")],
        ),
    ];
    for (case, headers) in refused {
        let mut request = daemon
            .client
            .post(daemon.url("/-/reload"))
            .header("content-type", "text/plain")
            .body("x");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{case}");
        let body = response.text().await.unwrap();
        assert!(body.contains("cross-site"), "{case}: {body}");
    }
    let metrics = daemon.scrape().await;
    assert!(
        !has(&metrics, RELOAD_OK) || value(&metrics, RELOAD_OK) == 1.0,
        "a refused reload was attempted"
    );
    assert_eq!(
        idp.count("/p/new-token"),
        0,
        "a cross-site request reloaded"
    );

    // The exporter's own page (same origin), and a client that sends neither header.
    let (status, body) = {
        let response = daemon
            .client
            .post(daemon.url("/-/reload"))
            .header("origin", own.as_str())
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(status, 200, "same-origin reload: {body}");
    let (status, body) = daemon.reload().await;
    assert_eq!(status, 200, "reload without Origin: {body}");
    daemon
        .wait_for("p probes the new URL", |_| idp.count("/p/new-token") >= 1)
        .await;
    daemon.stop().await;
}

/// Issue 22: a reload whose file has a value of the wrong type under `providers.*` answers
/// with the key and the types, never the value (here a secret where a table belongs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_error_never_quotes_a_wrongly_typed_value() {
    let idp = identity_provider().await;
    let daemon = Reloadable::start(&provider(&idp, "p", "token", &[])).await;
    daemon.write_config("[providers.p]\ntoken = \"Sup3rSecretEnvValue\"\n");
    let (status, body) = daemon.reload().await;
    assert_eq!(status, 500, "{body}");
    assert!(!body.contains("Sup3rSecretEnvValue"), "{body}");
    assert!(body.contains("key `providers.p.token`"), "{body}");
    assert!(body.contains("found a string"), "{body}");
    daemon.stop().await;
}
