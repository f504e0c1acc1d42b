//! Several configuration files (issue 5, section 4): `--config.file` given more than once, or
//! naming a directory whose `*.toml` files are merged in name order (later files win for
//! `[web]` and `[defaults]`), so that teams can own their providers' files; a provider defined
//! in two files is an error naming both (exit 2); a directory without `*.toml` files is an
//! error; SIGHUP lists the directory again and starts a provider from a newly added file.
//! Everything runs the real binary: `--config.check`, `check` and the daemon.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::{Binary, FakeServer, Reply, Signal, WAIT, sample};

/// No secret below may be printed.
const SECRET: &str = "team-secret-6b1e";

#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary to completion (off the async runtime, bounded by `support::binary`) and
/// checks that no secret was printed.
async fn run(args: &[&str]) -> Outcome {
    let output = Binary::new().args(args).run_async().await;
    let outcome = Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !outcome.stdout.contains(SECRET) && !outcome.stderr.contains(SECRET),
        "a secret was printed: {outcome:#?}"
    );
    outcome
}

/// Writes an owner-only file the way a careful deployment does: to a name the exporter ignores,
/// then renamed into place, so a reload never reads half a file.
fn write_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

/// A provider `name` using the fake's `/{path}/token`, probed every `interval`.
fn provider(idp: &FakeServer, name: &str, path: &str, interval: &str) -> String {
    format!(
        r#"
[providers.{name}]
interval = "{interval}"
[providers.{name}.token]
url = "{url}"
client_id = "{name}"
client_secret = "{SECRET}"
"#,
        url = idp.url(&format!("/{path}/token"))
    )
}

/// `/ok/token` answers at once, `/slow/token` after 600 ms.
async fn identity_provider() -> FakeServer {
    FakeServer::start(|request| match request.path.as_str() {
        "/ok/token" => Reply::token("tok", 3600),
        "/slow/token" => Reply::delayed(Duration::from_millis(600), Reply::token("tok", 3600)),
        _ => Reply::status(404),
    })
    .await
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn check_json(outcome: &Outcome) -> Value {
    serde_json::from_str(&outcome.stdout)
        .unwrap_or_else(|e| panic!("check output is not JSON ({e}): {outcome:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_may_be_given_several_times() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("platform.toml");
    let second = dir.path().join("payments.toml");
    write_file(&first, &provider(&idp, "platform", "ok", "1s"));
    write_file(&second, &provider(&idp, "payments", "ok", "1s"));

    let outcome = run(&[
        "--config.check",
        "--config.file",
        text(&first),
        "--config.file",
        text(&second),
    ])
    .await;
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(
        outcome.stdout,
        format!(
            "{}, {}: configuration is valid (2 providers)\n",
            first.display(),
            second.display()
        )
    );

    // The daemon runs the providers of both files.
    let mut daemon = Binary::new()
        .args([
            "--config.file",
            text(&first),
            "--config.file",
            text(&second),
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .spawn();
    let _addr = daemon.address().await;
    daemon
        .wait_for_metrics("both files' providers probed", WAIT, |m| {
            sample(m, r#"oauth2_probe_success{provider="platform"}"#) == Some(1.0)
                && sample(m, r#"oauth2_probe_success{provider="payments"}"#) == Some(1.0)
        })
        .await;
    daemon.signal(Signal::Term);
    assert_eq!(daemon.exit(Duration::from_secs(10)).await.0.code(), Some(0));
}

/// A directory's `*.toml` files are merged in name order, whatever order they were created in;
/// hidden entries, other files and subdirectories are ignored; a symlinked file is followed. The later file's `[defaults]` and `[web]` win:
/// seen through the timeout both providers get and the address the daemon listens on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_is_merged_in_name_order_and_later_files_win() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("exporter.d");
    std::fs::create_dir(&conf).unwrap();
    // Held for the whole test: the earlier file asks to listen here, which must not happen.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();

    // Created later-named first, so neither creation nor directory order can pass for name order.
    let team = conf.join("20-team.toml");
    write_file(
        &team,
        &format!(
            "[web]\nlisten_address = \"127.0.0.1:0\"\n[defaults]\ntimeout = \"200ms\"\n{}",
            provider(&idp, "team", "slow", "1h")
        ),
    );
    // As Kubernetes mounts a ConfigMap: the real file under `..data/`, a symlink beside it.
    std::fs::create_dir(conf.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/10-base.toml", conf.join("10-base.toml")).unwrap();
    write_file(
        &conf.join("..data/10-base.toml"),
        &format!(
            "[web]\nlisten_address = \"{busy_addr}\"\n[defaults]\ntimeout = \"30s\"\n{}",
            provider(&idp, "base", "slow", "1h")
        ),
    );
    // Not configuration: a note, a backup, a hidden file, and a directory with a .toml name;
    // each holds a clash that would fail the load if it were read.
    write_file(
        &conf.join(".20-team.toml"),
        &provider(&idp, "base", "ok", "1h"),
    );
    std::fs::write(conf.join("README.md"), "[providers.team]\n").unwrap();
    std::fs::write(conf.join("10-base.toml.bak"), "not = [toml").unwrap();
    std::fs::create_dir(conf.join("archive.toml")).unwrap();
    write_file(
        &conf.join("archive.toml/30-old.toml"),
        &provider(&idp, "team", "ok", "1h"),
    );

    let outcome = run(&["--config.check", "--config.file", text(&conf)]).await;
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(
        outcome.stdout,
        format!("{}: configuration is valid (2 providers)\n", conf.display())
    );

    // 20-team.toml's timeout (200 ms) applies to both providers: the 600 ms token endpoint
    // times out for each, after about 200 ms.
    let outcome = run(&["check", "--output", "json", "--config.file", text(&conf)]).await;
    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    let json = check_json(&outcome);
    for p in json["providers"].as_array().unwrap() {
        assert_eq!(p["failure"]["reason"], "timeout", "{p:#}");
        let took = p["token"]["duration_seconds"].as_f64().unwrap();
        assert!(
            (0.15..0.6).contains(&took),
            "timed out after {took}s: {p:#}"
        );
    }

    // 20-team.toml's [web] too: the daemon listens on a port of its own, not the busy one.
    let mut daemon = Binary::new().args(["--config.file", text(&conf)]).spawn();
    let addr = daemon.address().await;
    assert_ne!(addr, busy_addr);
    assert!(addr.ip().is_loopback(), "{addr}");
    daemon.signal(Signal::Term);
    assert_eq!(daemon.exit(Duration::from_secs(10)).await.0.code(), Some(0));

    // Renamed so that the team file comes first: now base's 30 s timeout wins and both pass.
    std::fs::rename(&team, conf.join("05-team.toml")).unwrap();
    let outcome = run(&["check", "--output", "json", "--config.file", text(&conf)]).await;
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(check_json(&outcome)["passed"], true);
    drop(busy);
}

/// A provider in two files: exit 2 from `--config.check`, `check` and the daemon, naming the
/// key and both files, for a directory and for two `--config.file` flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_defined_twice_is_an_error_naming_both_files() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("teams");
    std::fs::create_dir(&conf).unwrap();
    let one = conf.join("1-payments.toml");
    let two = conf.join("2-billing.toml");
    write_file(
        &one,
        &[
            provider(&idp, "shared", "ok", "1h"),
            provider(&idp, "pay", "ok", "1h"),
        ]
        .concat(),
    );
    write_file(
        &two,
        &[
            provider(&idp, "bill", "ok", "1h"),
            provider(&idp, "shared", "ok", "1h"),
        ]
        .concat(),
    );
    let problem = format!(
        "  key `providers.shared`: provider defined twice, in {} and in {}; each provider belongs to one file\n",
        one.display(),
        two.display()
    );

    for args in [
        vec!["--config.check", "--config.file", text(&conf)],
        vec!["check", "--config.file", text(&conf)],
        vec![
            "--config.file",
            text(&conf),
            "--web.listen-address",
            "127.0.0.1:0",
        ],
    ] {
        let outcome = run(&args).await;
        assert_eq!(outcome.code, Some(2), "{args:?}: {outcome:#?}");
        assert_eq!(
            outcome.stderr,
            format!(
                "error: {}: invalid configuration (1 problem):\n{problem}",
                conf.display()
            ),
            "{args:?}"
        );
        assert_eq!(outcome.stdout, "", "{args:?}");
    }

    // The same with the files named one by one.
    let outcome = run(&[
        "--config.check",
        "--config.file",
        text(&one),
        "--config.file",
        text(&two),
    ])
    .await;
    assert_eq!(outcome.code, Some(2), "{outcome:#?}");
    assert!(outcome.stderr.contains(&problem), "{outcome:#?}");
    assert!(idp.requests().is_empty(), "something was probed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_without_toml_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.d");
    std::fs::create_dir(&empty).unwrap();
    let only_notes = dir.path().join("notes.d");
    std::fs::create_dir(&only_notes).unwrap();
    std::fs::write(only_notes.join("README.md"), "team files go here\n").unwrap();
    std::fs::write(only_notes.join("a.toml.disabled"), "[providers]\n").unwrap();

    for conf in [&empty, &only_notes] {
        let expected = format!(
            "error: {}: invalid configuration (1 problem):\n  configuration directory {}: holds no *.toml files\n",
            conf.display(),
            conf.display()
        );
        for args in [
            vec!["--config.check", "--config.file", text(conf)],
            vec!["check", "--config.file", text(conf)],
            vec![
                "--config.file",
                text(conf),
                "--web.listen-address",
                "127.0.0.1:0",
            ],
        ] {
            let outcome = run(&args).await;
            assert_eq!(outcome.code, Some(2), "{args:?}: {outcome:#?}");
            assert_eq!(outcome.stderr, expected, "{args:?}");
        }
    }
}

/// SIGHUP lists the directory again: a team file added since start-up is loaded and its
/// provider starts, the running one carries on; a file that redefines a provider makes the
/// reload fail (reported, nothing changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_picks_up_a_file_added_to_the_directory() {
    const RELOAD_OK: &str = "oauth2_exporter_config_last_reload_successful";
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let conf: PathBuf = dir.path().join("exporter.d");
    std::fs::create_dir(&conf).unwrap();
    write_file(
        &conf.join("10-platform.toml"),
        &provider(&idp, "platform", "ok", "1s"),
    );
    let mut daemon = Binary::new()
        .args([
            "--config.file",
            text(&conf),
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .spawn();
    let _addr = daemon.address().await;
    daemon
        .wait_for_metrics("platform probed", WAIT, |m| {
            sample(m, r#"oauth2_probe_success{provider="platform"}"#) == Some(1.0)
        })
        .await;

    write_file(
        &conf.join("20-payments.toml"),
        &provider(&idp, "payments", "ok", "1s"),
    );
    daemon.signal(Signal::Hup);
    let metrics = daemon
        .wait_for_metrics("payments started by the reload", WAIT, |m| {
            sample(m, r#"oauth2_probe_success{provider="payments"}"#) == Some(1.0)
        })
        .await;
    assert_eq!(sample(&metrics, RELOAD_OK), Some(1.0));
    assert_eq!(
        sample(&metrics, r#"oauth2_probe_success{provider="platform"}"#),
        Some(1.0)
    );
    daemon
        .wait_for_log(
            "configuration reloaded: 1 added, 0 removed, 0 restarted, 1 unchanged",
            1,
        )
        .await;

    // A third team redefines "payments": the reload fails and both keep probing.
    write_file(
        &conf.join("30-rogue.toml"),
        &provider(&idp, "payments", "ok", "1s"),
    );
    daemon.signal(Signal::Hup);
    let payments_before = idp.count("/ok/token");
    daemon
        .wait_for_metrics("failed reload reported, probing goes on", WAIT, |m| {
            sample(m, RELOAD_OK) == Some(0.0) && idp.count("/ok/token") >= payments_before + 4
        })
        .await;
    let stderr = daemon.wait_for_log("configuration reload failed", 1).await;
    assert!(
        stderr.contains("key `providers.payments`: provider defined twice"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "a secret in the log");
    daemon.signal(Signal::Term);
    assert_eq!(daemon.exit(Duration::from_secs(10)).await.0.code(), Some(0));
}

/// A file holding inline secrets that group or others may read draws one warning line naming
/// a few of the providers (not all of them: a platform may hold thousands); owner-only, none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readable_file_with_inline_secrets_is_warned_about_in_one_short_line() {
    use std::os::unix::fs::PermissionsExt as _;
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    let names: Vec<String> = (0..7).map(|i| format!("tenant{i}")).collect();
    let providers: String = names
        .iter()
        .map(|name| provider(&idp, name, "ok", "1s"))
        .collect();
    write_file(&file, &providers);

    let quiet = run(&["--config.check", "--config.file", text(&file)]).await;
    assert_eq!(quiet.code, Some(0), "{quiet:#?}");
    assert!(!quiet.stderr.contains("readable"), "{quiet:#?}");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warned = run(&["--config.check", "--config.file", text(&file)]).await;
    assert_eq!(warned.code, Some(0), "a warning, not an error: {warned:#?}");
    let lines: Vec<&str> = warned
        .stderr
        .lines()
        .filter(|line| line.contains("readable by group or others"))
        .collect();
    assert_eq!(lines.len(), 1, "{warned:#?}");
    assert!(
        lines[0].contains("tenant0, tenant1, tenant2, tenant3, tenant4 and 2 more")
            && lines[0].contains("mode 644")
            && !lines[0].contains("tenant5"),
        "{}",
        lines[0]
    );
}
