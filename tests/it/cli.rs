//! Command-line behaviour of the real binary (issue #2): `--version`, `--config.check`, exit
//! codes (0 after SIGTERM/SIGINT, 1 for runtime failures, 2 for configuration and usage errors)
//! with a clear message, and never a panic.

use crate::support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use pretty_assertions::assert_eq;
use support::{Binary, Provider, Signal};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A copy of a fixture readable only by its owner: the exporter rightly warns about inline
/// secrets in a file others can read, and these tests are about other output.
fn private_copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::copy(fixture(name), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, path)
}

/// The binary (started by `support::binary`), run from the crate root (fixtures use relative
/// secret paths).
fn exporter() -> Binary {
    Binary::new().current_dir(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    let output = exporter().args(args).run();
    assert_no_panic(&output.stdout, &output.stderr);
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_no_panic(stdout: &[u8], stderr: &[u8]) {
    for (name, stream) in [("stdout", stdout), ("stderr", stderr)] {
        assert!(
            !text(stream).contains("panicked"),
            "{name} shows a panic:\n{}",
            text(stream)
        );
    }
}

/// A configuration whose provider probes a loopback port where nothing listens, every 200 ms,
/// so the daemon is busy (failing probes) when the signal arrives.
fn busy_config(dir: &Path) -> PathBuf {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let path = dir.join("exporter.toml");
    std::fs::write(
        &path,
        [
            "[web]\nlisten_address = \"127.0.0.1:0\"\n".to_owned(),
            support::config::defaults(&[("interval", r#""200ms""#), ("timeout", r#""1s""#)]),
            Provider::new("p", &format!("http://{closed}/token"))
                .client("p", "fixture-secret")
                .canary(&format!("http://{closed}/api"))
                .toml(),
        ]
        .concat(),
    )
    .unwrap();
    path
}

/// `--version` (and `-V`) print the fields Prometheus' exporters print, one per line (issue 14,
/// section 3): version and git revision, build date, compiler, platform.
#[test]
fn version_prints_name_version_revision_date_and_rustc() {
    for flag in ["--version", "-V"] {
        let output = run(&[flag]);
        assert_eq!(output.status.code(), Some(0), "{flag}");
        assert_eq!(text(&output.stderr), "", "{flag}");
        let stdout = text(&output.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 4, "{flag}:\n{stdout}");
        let first = format!(
            "oauth2-exporter, version {} (revision: ",
            env!("CARGO_PKG_VERSION")
        );
        assert!(
            lines[0].starts_with(&first) && lines[0].ends_with(')'),
            "{flag}: {}",
            lines[0]
        );
        let revision = &lines[0][first.len()..lines[0].len() - 1];
        assert!(
            revision == "unknown"
                || (revision.len() == 12 && revision.bytes().all(|b| b.is_ascii_hexdigit())),
            "{flag}: revision {revision:?}"
        );
        let date = lines[1]
            .strip_prefix("  build date:       ")
            .unwrap_or_else(|| panic!("{flag}: {}", lines[1]));
        // YYYYMMDD-HH:MM:SS, as Prometheus' exporters print it.
        let shape: String = date
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "99999999-99:99:99", "{flag}: build date {date:?}");
        let rustc = lines[2]
            .strip_prefix("  rustc version:    ")
            .unwrap_or_else(|| panic!("{flag}: {}", lines[2]));
        assert!(rustc.starts_with("rustc 1."), "{flag}: {rustc}");
        assert_eq!(
            lines[3],
            format!(
                "  platform:         {}/{}",
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
            "{flag}"
        );
    }
}

/// `--web.listen-address` in the forms Prometheus exporters document (issue 14, section 3),
/// repeated or not, passes `--config.check`; a bare port or host still exits 2 naming the key.
#[test]
fn listen_address_forms_of_prometheus_exporters_are_accepted() {
    let (_dir, file) = private_copy("valid-minimal.toml");
    let file = file.to_str().unwrap();
    for addresses in [
        vec![":9875"],
        vec!["0.0.0.0:9875"],
        vec!["[::]:9875"],
        vec!["localhost:9875"],
        vec!["127.0.0.1:9875", "[::1]:9875", ":9876"],
    ] {
        let mut args = vec!["--config.file", file, "--config.check"];
        for address in &addresses {
            args.extend(["--web.listen-address", address]);
        }
        let output = run(&args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{addresses:?}: {}",
            text(&output.stderr)
        );
    }
    for bad in ["9875", "localhost", "::1:9875", "127.0.0.1:http"] {
        // Refused as the first address and as a further one alike.
        for args in [
            vec!["--web.listen-address", bad],
            vec!["--web.listen-address", ":9875", "--web.listen-address", bad],
        ] {
            let mut args = args.clone();
            args.extend(["--config.file", file, "--config.check"]);
            let output = run(&args);
            assert_eq!(output.status.code(), Some(2), "{args:?}");
            assert_eq!(
                text(&output.stderr),
                format!(
                    "error: {file}: invalid configuration (1 problem):\n  key `web.listen_address`: invalid address {bad:?}; expected HOST:PORT, e.g. \"0.0.0.0:9875\"\n"
                ),
                "{args:?}"
            );
        }
    }
}

/// `--web.telemetry-path` must be an absolute path that hides no other endpoint: anything else
/// exits 2 with one line saying what is allowed.
#[test]
fn an_unusable_telemetry_path_exits_2() {
    for (path, expected) in [
        (
            "metrics",
            "error: --web.telemetry-path: invalid path \"metrics\"; expected an absolute path such as \"/metrics\"\n",
        ),
        (
            "/probe",
            "error: --web.telemetry-path: \"/probe\" is taken by another endpoint; not one of /, /probe, /-/healthy, /-/ready, /-/reload\n",
        ),
    ] {
        let output = run(&["--web.telemetry-path", path, "--config.check"]);
        assert_eq!(output.status.code(), Some(2), "{path}");
        assert_eq!(text(&output.stderr), expected, "{path}");
    }
}

/// `--config.check` on a valid file: exit 0 and one success line naming the file and the
/// provider count, nothing on stderr.
#[test]
fn config_check_accepts_a_valid_file() {
    let (_dir, file) = private_copy("valid-all-keys.toml");
    let output = run(&["--config.file", file.to_str().unwrap(), "--config.check"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!("{}: configuration is valid (5 providers)\n", file.display())
    );
    assert_eq!(text(&output.stderr), "");
}

/// `--config.check` on an invalid file: exit 2 and every problem, one per line, under a header
/// that counts them.
#[test]
fn config_check_lists_every_problem_and_exits_2() {
    let file = fixture("invalid-several-problems.toml");
    let output = run(&["--config.file", file.to_str().unwrap(), "--config.check"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(text(&output.stdout), "");
    let expected = format!(
        r#"error: {}: invalid configuration (7 problems):
  key `web.listen_address`: invalid address "localhost"; expected HOST:PORT, e.g. "0.0.0.0:9875"
  key `defaults.timeout`: invalid duration "soon" (expected number at 0); expected e.g. "30s", "5m", "1h"
  key `providers.cube.interval`: must be greater than 0
  key `providers.cube.token.url`: unsupported URL "gopher://auth.cube.example/connect/token" (scheme "gopher"); expected http:// or https:// with a host
  key `providers.cube.token.client_secret`: more than one source given; set exactly one of providers.cube.token.client_secret | providers.cube.token.client_secret_file | providers.cube.token.client_secret_env
  key `providers.everactive.token.username`: missing; the password grant needs a username
  key `providers.everactive.token.password`: missing; set exactly one of providers.everactive.token.password | providers.everactive.token.password_file | providers.everactive.token.password_env
"#,
        file.display()
    );
    assert_eq!(text(&output.stderr), expected);
}

/// The same problems stop a normal start (not only `--config.check`), with exit code 2.
#[test]
fn an_invalid_configuration_stops_start_up_with_exit_2() {
    let file = fixture("invalid-listen-address.toml");
    let output = run(&["--config.file", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: {}: invalid configuration (1 problem):\n  key `web.listen_address`: invalid address \"9875\"; expected HOST:PORT, e.g. \"0.0.0.0:9875\"\n",
            file.display()
        )
    );
}

/// A missing configuration file is a configuration error (exit 2) naming the file; also for the
/// default `exporter.toml` in the working directory.
#[test]
fn a_missing_config_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    for (args, named) in [
        (
            vec!["--config.file", missing.to_str().unwrap()],
            missing.display().to_string(),
        ),
        (vec![], "exporter.toml".to_string()),
    ] {
        let output = exporter().current_dir(dir.path()).args(&args).run();
        assert_no_panic(&output.stdout, &output.stderr);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ")
                && stderr.contains(&named)
                && stderr.contains("no such file"),
            "{args:?}: the message should name {named} and say it is not found:\n{stderr}"
        );
    }
}

/// Usage errors (a misspelt flag, a bad flag value) exit 2 with clap's message.
#[test]
fn usage_errors_exit_2() {
    let output = run(&["--web.listen-adress", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: unexpected argument '--web.listen-adress' found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("a similar argument exists: '--web.listen-address'"),
        "{stderr}"
    );

    let output = run(&["--log.level", "loud"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: invalid value 'loud' for '--log.level <LOG_LEVEL>'")
            && stderr.contains("[possible values: error, warn, info, debug, trace]"),
        "{stderr}"
    );
}

/// An address already in use is a runtime failure: exit 1 with one line naming the address.
#[test]
fn address_in_use_exits_1_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (_dir, file) = private_copy("valid-minimal.toml");
    let output = run(&[
        "--config.file",
        file.to_str().unwrap(),
        "--web.listen-address",
        &address,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("error: cannot listen on {address}: "))
            && lines[0].to_lowercase().contains("in use"),
        "{stderr}"
    );
    drop(taken);
}

/// SIGTERM and SIGINT stop a busy daemon gracefully: exit 0 within a few seconds, having logged
/// the shutdown, without a panic.
#[test]
fn sigterm_and_sigint_exit_0_promptly() {
    for signal in [Signal::Term, Signal::Int] {
        let dir = tempfile::tempdir().unwrap();
        let config = busy_config(dir.path());
        let mut running = exporter()
            .args(["--config.file", config.to_str().unwrap()])
            .spawn();
        running.address_blocking();
        running.signal(signal);
        let (status, took) = running.exit_blocking(Duration::from_secs(10));
        let stderr = running.stderr();
        let stdout = running.stdout();
        assert_no_panic(stdout.as_bytes(), stderr.as_bytes());
        assert_eq!(status.code(), Some(0), "SIG{signal}: stderr:\n{stderr}");
        assert!(
            took < Duration::from_secs(5),
            "SIG{signal}: took {took:?} to exit"
        );
        assert!(
            stderr.contains("msg=\"shutting down\""),
            "SIG{signal}: no shutdown line:\n{stderr}"
        );
    }
}

/// Built without the `demo` feature, `--demo` is a usage error that says why, not a silent no-op.
#[cfg(not(feature = "demo"))]
#[test]
fn demo_without_the_feature_says_so() {
    let output = run(&["--demo"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("built without the `demo` cargo feature"),
        "{}",
        text(&output.stderr)
    );
}

/// `--demo` cannot be combined with a configuration file (it brings its own).
#[cfg(feature = "demo")]
#[test]
fn demo_conflicts_with_config_file() {
    let file = fixture("valid-minimal.toml");
    let output = run(&["--demo", "--config.file", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).starts_with("error: the argument '--demo' cannot be used with"),
        "{}",
        text(&output.stderr)
    );
}
