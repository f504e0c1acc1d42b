//! `oauth2-exporter check` (issue 5, section 3), run as the real binary against fake servers:
//! exit 0 when every provider passes, 1 when any fails, 2 on a configuration error or an unknown
//! `--provider`; `--provider` filtering; the table and the JSON output (parsed); one cycle per
//! provider, run concurrently; never a secret in what it prints.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Binary, FakeServer, Reply, unix_now};

/// A `check` run is a few cycles against loopback fakes; this bounds a hang.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Secrets of the providers below: none may appear in stdout or stderr.
const SECRETS: [&str; 3] = ["ok-secret-31f9", "refused-secret-77aa", "api-secret-5c0d"];

/// What a finished `check` run printed.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn assert_no_secret(&self) {
        for secret in SECRETS {
            assert!(
                !self.stdout.contains(secret) && !self.stderr.contains(secret),
                "secret {secret} printed: {self:#?}"
            );
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Runs `oauth2-exporter check ARGS` (off the async runtime, which serves the fakes), bounded
/// by [`RUN_LIMIT`], through `support::binary` (no `OAUTH2_EXPORTER_*` variables: those override
/// the configuration).
async fn check(args: &[&str]) -> Outcome {
    let output = Binary::new()
        .arg("check")
        .args(args)
        .limit(RUN_LIMIT)
        .run_async()
        .await;
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Writes `toml` as an owner-only file in `dir`.
fn write_config(dir: &Path, name: &str, toml: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, toml).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// One IdP for every test: `/ok/token` issues a 2700 s token, `/refused/token` refuses with an
/// `error_description` that echoes the secret (the exporter must scrub it), `/slow/token`
/// answers after 800 ms; `/api/ok` passes, `/api/forbidden` is 403.
async fn identity_provider() -> FakeServer {
    FakeServer::start(|request| match request.path.as_str() {
        "/ok/token" | "/api-denied/token" => Reply::token("ok-access-token-e4d1", 2700),
        "/refused/token" => Reply::json(
            401,
            json!({
                "error": "invalid_client",
                "error_description": format!("client authentication failed for secret {}", SECRETS[1]),
            }),
        ),
        "/slow/token" => Reply::delayed(
            Duration::from_millis(800),
            Reply::token("slow-access-token", 600),
        ),
        "/api/ok" => Reply::status(200),
        "/api/forbidden" => Reply::status(403),
        _ => Reply::status(404),
    })
    .await
}

/// A provider `name` whose token endpoint is `/{token}/token` at `idp`, secret `secret`, and
/// an optional canary path.
fn provider(
    idp: &FakeServer,
    name: &str,
    token: &str,
    secret: &str,
    canary: Option<&str>,
) -> String {
    let mut toml = format!(
        r#"
[providers.{name}.token]
url = "{url}"
client_id = "{name}-id"
client_secret = "{secret}"
"#,
        url = idp.url(&format!("/{token}/token")),
    );
    if let Some(path) = canary {
        toml.push_str(&format!(
            "[providers.{name}.canary]\nurl = \"{}\"\n",
            idp.url(path)
        ));
    }
    toml
}

/// The three providers most tests use: `alpha` passes (with canary), `bravo` is refused at the
/// token endpoint, `charlie` gets a token but its canary is forbidden.
fn three_providers(idp: &FakeServer) -> String {
    [
        provider(idp, "alpha", "ok", SECRETS[0], Some("/api/ok")),
        provider(idp, "bravo", "refused", SECRETS[1], Some("/api/ok")),
        provider(
            idp,
            "charlie",
            "api-denied",
            SECRETS[2],
            Some("/api/forbidden"),
        ),
    ]
    .concat()
}

/// The table's rows as whitespace-separated fields, by provider name.
fn table_row<'a>(stdout: &'a str, provider: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(provider))
        .unwrap_or_else(|| panic!("no row for {provider}:\n{stdout}"))
        .split_whitespace()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_0_and_prints_a_table_when_every_provider_passes() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "exporter.toml",
        &[
            provider(&idp, "alpha", "ok", SECRETS[0], Some("/api/ok")),
            provider(&idp, "delta", "ok", SECRETS[2], None),
        ]
        .concat(),
    );
    let outcome = check(&["--config.file", config.to_str().unwrap()]).await;
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    outcome.assert_no_secret();
    let header: Vec<&str> = outcome
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "PROVIDER", "RESULT", "TOKEN", "LIFETIME", "TOKEN", "MS", "CANARY", "CANARY", "MS",
            "EXPIRES"
        ],
        "{outcome:#?}"
    );
    let alpha = table_row(&outcome.stdout, "alpha");
    assert_eq!(&alpha[..4], ["alpha", "ok", "ok", "45m"], "{outcome:#?}");
    assert!(alpha[4].parse::<u64>().is_ok(), "token ms: {alpha:?}");
    assert_eq!(&alpha[5..7], ["ok", "(200)"], "{alpha:?}");
    assert!(alpha[7].parse::<u64>().is_ok(), "canary ms: {alpha:?}");
    let delta = table_row(&outcome.stdout, "delta");
    assert_eq!(
        delta,
        [
            "delta",
            "ok",
            "ok",
            "45m",
            delta[4],
            "not",
            "configured",
            "-",
            "-"
        ],
        "{outcome:#?}"
    );
    assert!(
        outcome.stdout.contains("\n2 of 2 providers passed.\n"),
        "{outcome:#?}"
    );
    // One cycle each, no more.
    assert_eq!(idp.count("/ok/token"), 2);
    assert_eq!(idp.count("/api/ok"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_1_when_any_provider_fails_naming_phase_reason_and_status() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "exporter.toml", &three_providers(&idp));
    let outcome = check(&["--config.file", config.to_str().unwrap()]).await;
    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    outcome.assert_no_secret();

    let bravo = table_row(&outcome.stdout, "bravo");
    assert_eq!(
        &bravo[..4],
        ["bravo", "FAIL", "invalid_client", "-"],
        "{outcome:#?}"
    );
    assert_eq!(&bravo[5..], ["no_token", "-", "-"], "{outcome:#?}");
    let charlie = table_row(&outcome.stdout, "charlie");
    assert_eq!(
        &charlie[..4],
        ["charlie", "FAIL", "ok", "45m"],
        "{outcome:#?}"
    );
    assert_eq!(&charlie[5..7], ["forbidden", "(403)"], "{outcome:#?}");
    assert_eq!(table_row(&outcome.stdout, "alpha")[1], "ok");
    assert!(
        outcome.stdout.contains("\n1 of 3 providers passed.\n"),
        "{outcome:#?}"
    );

    // One detail line per failure, with the server's (scrubbed) words.
    let details: Vec<&str> = outcome
        .stdout
        .lines()
        .filter(|l| l.contains(" failed ("))
        .collect();
    assert_eq!(details.len(), 2, "{outcome:#?}");
    assert!(
        details[0].starts_with(
            "bravo: token failed (invalid_client HTTP 401): OAuth error invalid_client: client authentication failed for secret "
        ),
        "{outcome:#?}"
    );
    assert_eq!(
        details[1],
        "charlie: canary failed (forbidden HTTP 403): the API refused access (403)"
    );
    assert!(
        !outcome.stdout.contains("ok-access-token"),
        "access token printed: {outcome:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_json_output_parses_with_every_field() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "exporter.toml",
        &[
            three_providers(&idp),
            provider(&idp, "delta", "ok", SECRETS[0], None),
        ]
        .concat(),
    );
    let before = unix_now();
    let outcome = check(&[
        "--config.file",
        config.to_str().unwrap(),
        "--output",
        "json",
    ])
    .await;
    // The whole run, process start to exit: no provider's own duration can exceed it.
    let run_took = unix_now() - before;
    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    outcome.assert_no_secret();
    assert!(!outcome.stdout.contains("ok-access-token"));
    let json = outcome.json();
    assert_eq!(json["passed"], false);
    let providers = json["providers"].as_array().unwrap();
    let names: Vec<&str> = providers
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "bravo", "charlie", "delta"], "by name");
    for p in providers {
        let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "canary",
                "canary_skipped",
                "credential_changes",
                "duration_seconds",
                "expiries",
                "failure",
                "labels",
                "provider",
                "success",
                "token",
                "token_expiry_timestamp_seconds",
                "token_lifetime_seconds"
            ],
            "{p:#}"
        );
        // Every provider sent at least one request over loopback, which takes time, and was
        // probed within the run.
        let took = p["duration_seconds"].as_f64().unwrap();
        assert!(
            took > 0.0 && took <= run_took,
            "{took} s of a {run_took} s run: {p:#}"
        );
    }
    let [alpha, bravo, charlie, delta] = &providers[..] else {
        unreachable!()
    };

    assert_eq!(alpha["success"], true);
    assert_eq!(alpha["token"]["result"], "ok");
    assert_eq!(alpha["token"]["http_status"], 200);
    assert!(alpha["token"]["duration_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(alpha["token_lifetime_seconds"], 2700.0);
    let expiry = alpha["token_expiry_timestamp_seconds"].as_f64().unwrap();
    assert!(
        expiry >= before + 2700.0 - 1.0 && expiry <= unix_now() + 2700.0 + 1.0,
        "expiry {expiry}, before {before}"
    );
    assert_eq!(alpha["canary"]["result"], "ok");
    assert_eq!(alpha["canary"]["http_status"], 200);
    assert_eq!(alpha["canary_skipped"], false);
    assert_eq!(alpha["failure"], Value::Null);

    assert_eq!(bravo["success"], false);
    assert_eq!(bravo["token"]["result"], "invalid_client");
    assert_eq!(bravo["token"]["http_status"], 401);
    assert_eq!(bravo["token_lifetime_seconds"], Value::Null);
    assert_eq!(bravo["token_expiry_timestamp_seconds"], Value::Null);
    assert_eq!(bravo["canary"], Value::Null);
    assert_eq!(bravo["canary_skipped"], true);
    assert_eq!(bravo["failure"]["phase"], "token");
    assert_eq!(bravo["failure"]["reason"], "invalid_client");
    assert_eq!(bravo["failure"]["http_status"], 401);
    let detail = bravo["failure"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("OAuth error invalid_client: client authentication failed for secret "),
        "{detail}"
    );

    assert_eq!(charlie["success"], false);
    assert_eq!(charlie["token"]["result"], "ok");
    assert_eq!(charlie["canary"]["result"], "forbidden");
    assert_eq!(charlie["canary"]["http_status"], 403);
    assert_eq!(
        charlie["failure"],
        json!({"phase": "canary", "reason": "forbidden", "http_status": 403, "detail": "the API refused access (403)"})
    );

    assert_eq!(delta["success"], true);
    assert_eq!(delta["canary"], Value::Null);
    assert_eq!(delta["canary_skipped"], false);
    // No `labels` configured: an empty object.
    assert_eq!(delta["labels"], json!({}));
}

/// Issue 26: `--label NAME=VALUE` (repeatable, all must match) selects providers by their own
/// labels, `[defaults]`' included; with `--provider` it keeps the named ones that match; no
/// match, or a malformed value, is exit 2 with nothing probed; the JSON and the table show each
/// provider's labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_label_flag_selects_providers_by_their_labels() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let labelled = |name: &str, labels: &str, toml: String| {
        format!("[providers.{name}]\nlabels = {labels}\n{toml}")
    };
    let config = write_config(
        dir.path(),
        "exporter.toml",
        &[
            "[defaults]\nlabels = { env = \"prod\" }\n".to_string(),
            labelled(
                "alpha",
                r#"{ team = "payments" }"#,
                provider(&idp, "alpha", "ok", SECRETS[0], Some("/api/ok")),
            ),
            labelled(
                "bravo",
                r#"{ team = "identity" }"#,
                provider(&idp, "bravo", "refused", SECRETS[1], Some("/api/ok")),
            ),
            labelled(
                "charlie",
                r#"{ team = "payments", env = "staging" }"#,
                provider(
                    &idp,
                    "charlie",
                    "api-denied",
                    SECRETS[2],
                    Some("/api/forbidden"),
                ),
            ),
        ]
        .concat(),
    );
    let path = config.to_str().unwrap();

    let outcome = check(&[
        "--config.file",
        path,
        "--label",
        "team=payments",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(outcome.code, Some(1), "charlie fails: {outcome:#?}");
    let json = outcome.json();
    let shown: Vec<(&str, &Value)> = json["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["provider"].as_str().unwrap(), &p["labels"]))
        .collect();
    assert_eq!(
        shown,
        [
            ("alpha", &json!({"env": "prod", "team": "payments"})),
            ("charlie", &json!({"env": "staging", "team": "payments"})),
        ]
    );
    assert_eq!(idp.count("/refused/token"), 0, "bravo is not labelled so");

    // Both labels must match; the table has a LABELS column.
    let outcome = check(&[
        "--config.file",
        path,
        "--label",
        "team=payments",
        "--label",
        "env=prod",
    ])
    .await;
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(
        table_row(&outcome.stdout, "PROVIDER")[..3],
        ["PROVIDER", "LABELS", "RESULT"],
        "{outcome:#?}"
    );
    assert_eq!(
        table_row(&outcome.stdout, "alpha")[..3],
        ["alpha", "env=prod,team=payments", "ok"],
        "{outcome:#?}"
    );
    assert!(
        outcome.stdout.contains("\n1 of 1 providers passed.\n"),
        "{outcome:#?}"
    );

    // With --provider: the named ones that match.
    let outcome = check(&[
        "--config.file",
        path,
        "--provider",
        "alpha",
        "--provider",
        "bravo",
        "--label",
        "team=payments",
    ])
    .await;
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(
        outcome.stdout.contains("\n1 of 1 providers passed.\n"),
        "{outcome:#?}"
    );

    let requests = idp.requests().len();
    // No match: exit 2, saying what there is, nothing probed.
    let outcome = check(&["--config.file", path, "--label", "team=nobody"]).await;
    assert_eq!(outcome.code, Some(2), "{outcome:#?}");
    assert_eq!(outcome.stdout, "");
    assert_eq!(
        outcome.stderr.trim_end(),
        "error: no provider has the label team=nobody; the labels configured: env=prod, env=staging, team=identity, team=payments"
    );
    let outcome = check(&[
        "--config.file",
        path,
        "--provider",
        "bravo",
        "--label",
        "team=payments",
    ])
    .await;
    assert_eq!(outcome.code, Some(2), "{outcome:#?}");
    assert_eq!(
        outcome.stderr.trim_end(),
        "error: no provider named by --provider has the label team=payments; the labels configured there: env=prod, team=identity"
    );
    // Malformed: a usage error.
    for (bad, says) in [
        ("team", "has no `=`"),
        ("9team=x", "is not a label name"),
        ("team=", "has an empty value"),
    ] {
        let outcome = check(&["--config.file", path, "--label", bad]).await;
        assert_eq!(outcome.code, Some(2), "{bad}: {outcome:#?}");
        assert!(
            outcome.stderr.contains("--label") && outcome.stderr.contains(says),
            "{bad}: {outcome:#?}"
        );
    }
    assert_eq!(
        idp.requests().len(),
        requests,
        "nothing probed after a refusal"
    );
    outcome.assert_no_secret();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_provider_flag_runs_only_the_named_providers() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "exporter.toml", &three_providers(&idp));
    let path = config.to_str().unwrap();

    // Only the passing one: exit 0 although bravo and charlie would fail.
    let outcome = check(&["--config.file", path, "--provider", "alpha"]).await;
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(
        outcome.stdout.contains("\n1 of 1 providers passed.\n"),
        "{outcome:#?}"
    );
    assert!(!outcome.stdout.contains("bravo") && !outcome.stdout.contains("charlie"));
    assert_eq!(idp.count("/ok/token"), 1);
    assert_eq!(
        idp.count("/refused/token") + idp.count("/api-denied/token"),
        0
    );

    // Two of three, given twice; json.
    let outcome = check(&[
        "--config.file",
        path,
        "--provider",
        "charlie",
        "--provider",
        "alpha",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    let json = outcome.json();
    let names: Vec<&str> = json["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "charlie"]);
    assert_eq!(idp.count("/refused/token"), 0, "bravo was not named");
    assert_eq!(idp.count("/api-denied/token"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_2_on_a_configuration_error_or_an_unknown_provider() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();

    // Invalid configuration: nothing is probed.
    let broken = write_config(
        dir.path(),
        "broken.toml",
        &format!(
            "{}\n[providers.echo.token]\nclient_id = \"x\"\nclient_secret = \"{}\"\n",
            provider(&idp, "alpha", "ok", SECRETS[0], None),
            SECRETS[2]
        ),
    );
    let outcome = check(&["--config.file", broken.to_str().unwrap()]).await;
    assert_eq!(outcome.code, Some(2), "{outcome:#?}");
    assert_eq!(outcome.stdout, "", "{outcome:#?}");
    assert!(
        outcome.stderr.contains(&format!(
            "error: {}: invalid configuration (1 problem):",
            broken.display()
        )) && outcome.stderr.contains("providers.echo.token.url"),
        "{outcome:#?}"
    );
    outcome.assert_no_secret();

    // A missing file.
    let missing = dir.path().join("missing.toml");
    let outcome = check(&["--config.file", missing.to_str().unwrap()]).await;
    assert_eq!(outcome.code, Some(2), "{outcome:#?}");
    assert!(outcome.stderr.contains("missing.toml"), "{outcome:#?}");

    // Unknown --provider: exit 2 naming it and the configured ones, nothing probed.
    let good = write_config(dir.path(), "good.toml", &three_providers(&idp));
    let outcome = check(&[
        "--config.file",
        good.to_str().unwrap(),
        "--provider",
        "alpha",
        "--provider",
        "zz",
    ])
    .await;
    assert_eq!(outcome.code, Some(2), "{outcome:#?}");
    assert_eq!(outcome.stdout, "", "{outcome:#?}");
    assert_eq!(
        outcome.stderr.trim_end(),
        "error: unknown provider \"zz\"; configured: alpha, bravo, charlie",
        "{outcome:#?}"
    );
    // Usage errors are 2 as well.
    let outcome = check(&["--config.file", good.to_str().unwrap(), "--output", "xml"]).await;
    assert_eq!(outcome.code, Some(2), "{outcome:#?}");
    assert!(
        idp.requests().is_empty(),
        "something was probed: {:?}",
        idp.requests()
    );
}

/// Providers are checked concurrently: three whose token endpoint takes 800 ms each finish in
/// about 800 ms, their requests arriving together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_runs_the_providers_concurrently() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "exporter.toml",
        &["one", "two", "three"]
            .map(|name| provider(&idp, name, "slow", SECRETS[0], None))
            .concat(),
    );
    let outcome = check(&["--config.file", config.to_str().unwrap()]).await;
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let arrivals: Vec<Instant> = idp
        .requests_to("/slow/token")
        .iter()
        .map(|r| r.at)
        .collect();
    assert_eq!(arrivals.len(), 3);
    let first = *arrivals.iter().min().unwrap();
    let last = *arrivals.iter().max().unwrap();
    assert!(
        last - first < Duration::from_millis(700),
        "token requests {:?} apart: run one after another",
        last - first
    );
    // Rows come in the configuration's order (providers by name) however the cycles finish.
    let rows: Vec<&str> = outcome
        .stdout
        .lines()
        .skip(1)
        .take(3)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(rows, ["one", "three", "two"], "{outcome:#?}");
}

/// Issue 13: `--warn-within` exits 1 when a credential expires within the window even though
/// every probe passed, names it, and the JSON carries every expiry as RFC 3339; outside the
/// window (or without the flag) the exit code is the probes' own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warn_within_exits_1_for_an_expiry_inside_the_window() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let in_20_days = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + Duration::from_secs(20 * 86400 + 3600),
    )
    .to_string();
    let config = write_config(
        dir.path(),
        "exporter.toml",
        &format!(
            "{}\nclient_secret_expires = \"{in_20_days}\"\n{}",
            provider(&idp, "alpha", "ok", SECRETS[0], None).trim_end(),
            provider(&idp, "delta", "ok", SECRETS[2], None),
        ),
    );
    let path = config.to_str().unwrap();

    let plain = check(&["--config.file", path]).await;
    assert_eq!(plain.code, Some(0), "no window, no warning: {plain:#?}");
    let alpha = table_row(&plain.stdout, "alpha");
    assert_eq!(
        &alpha[alpha.len() - 4..],
        ["client_secret", "in", "20", "days"],
        "{plain:#?}"
    );
    assert_eq!(
        table_row(&plain.stdout, "delta").last(),
        Some(&"-"),
        "{plain:#?}"
    );

    let outside = check(&["--config.file", path, "--warn-within", "14d"]).await;
    assert_eq!(outside.code, Some(0), "20 days is outside 14: {outside:#?}");

    let inside = check(&["--config.file", path, "--warn-within", "30d"]).await;
    assert_eq!(inside.code, Some(1), "{inside:#?}");
    assert!(
        inside.stdout.contains("\n2 of 2 providers passed.\n")
            && inside.stdout.contains(&format!(
                "alpha: client_secret expires in 20 days ({in_20_days}), within --warn-within 30days"
            )),
        "{inside:#?}"
    );
    inside.assert_no_secret();

    let json = check(&[
        "--config.file",
        path,
        "--warn-within",
        "30d",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(json.code, Some(1), "{json:#?}");
    let json = json.json();
    assert_eq!(json["passed"], false);
    assert_eq!(
        json["providers"][0]["expiries"],
        json!([{"credential": "client_secret", "kind": "credential", "expires": in_20_days, "within_warning": true}])
    );
    assert_eq!(json["providers"][1]["expiries"], json!([]));
    let seen = json["providers"][0]["credential_changes"]["client_secret"]
        .as_str()
        .unwrap();
    assert!(humantime::parse_rfc3339(seen).is_ok(), "{seen}");

    let bad = check(&["--config.file", path, "--warn-within", "soon"]).await;
    assert_eq!(bad.code, Some(2), "{bad:#?}");
    assert!(bad.stderr.contains("--warn-within"), "{bad:#?}");
}
