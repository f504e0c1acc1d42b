//! One unreadable secret path must not freeze the exporter (issue 17). Every file the exporter
//! reads goes through one path that refuses what is not a regular file (after following
//! symlinks) and reads with a deadline off the async workers; SIGTERM works in every state.
//! Run against the real binary: a named pipe without a writer as a secret, certificate, web
//! configuration or configuration file at load (`--config.check` and the daemon exit 2 at once,
//! naming the key); a Kubernetes-style secret whose `..data` link is swapped to a named pipe
//! while the daemon runs (that provider fails `secret_unavailable`, the other is probed on
//! schedule, `/metrics` answers, and it recovers when the link is swapped back); SIGTERM during
//! start-up and `--config.check`.
//!
//! A regular file whose read *stalls* (a hung NFS, CSI or FUSE mount) is made real with a FUSE
//! file system served by this test process (`stalled_mount/`, Linux, needs `/dev/fuse` and
//! `fusermount3`; SKIPPED without them, a failure under `OAUTH2_EXPORTER_REQUIRE_PEERS=1`): a
//! secret on it makes `--config.check` and the daemon exit 2 after the load deadline ("timed out
//! reading"), SIGTERM during that load ends them within the grace period, and a secret link
//! swapped onto it while the daemon runs fails that provider alone until the mount answers
//! again. `src/files/tests.rs` covers the reader seam without FUSE.

#[cfg(target_os = "linux")]
mod stalled_mount;
use crate::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{Binary, FakeServer, Provider, Reply, Running, Signal, WAIT, sample};

/// No secret below may be printed.
const SECRET: &str = "mounted-secret-4c2d";

/// Well under the load deadline (5 s): a named pipe is refused before anything waits on it.
const PROMPTLY: Duration = Duration::from_secs(4);

/// The daemon's shutdown grace period (4 s, `SHUTDOWN_GRACE` in src/daemon.rs) plus start-up
/// noise on a shared 2-core machine.
const GRACE: Duration = Duration::from_secs(6);

fn mkfifo(path: &Path) {
    let status = support::binary::scrubbed_command("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}: {status}", path.display());
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The fake identity provider: a token of 60 s, which is inside the default refresh margin, so
/// every cycle requests a token and reads the secret again.
async fn identity_provider() -> FakeServer {
    FakeServer::start(|request| match request.path.as_str() {
        "/token" => Reply::token("tok", 60),
        _ => Reply::status(404),
    })
    .await
}

/// Provider `name` (client id `name`, secret [`SECRET`]) on the fake's `/token`; a test points
/// its secret at a file or adds a table as its subject needs.
fn provider(idp: &FakeServer, name: &str) -> Provider {
    Provider::new(name, &idp.url("/token"))
        .interval("1s")
        .timeout("2s")
        .client(name, SECRET)
}

/// Runs the binary to completion and returns (exit code, standard error, how long it took);
/// checks that no secret was printed.
async fn run(binary: Binary) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let output = binary.run_async().await;
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "a secret was printed:\n{stdout}\n{stderr}"
    );
    (output.status.code(), stderr, took)
}

/// `--config.check` and the daemon both exit 2 at once, with `expected` in standard error.
async fn refused_at_load(config: &Path, extra: &[&str], expected: &str) {
    for check in [true, false] {
        let mut binary = Binary::new().config(config).listen_loopback().args(extra);
        if check {
            binary = binary.arg("--config.check");
        }
        let (code, stderr, took) = run(binary).await;
        assert_eq!(code, Some(2), "check={check}:\n{stderr}");
        assert!(
            stderr.contains(expected),
            "check={check}: no {expected:?} in:\n{stderr}"
        );
        assert!(took < PROMPTLY, "check={check}: took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_pipe_is_refused_at_load_naming_the_key_and_the_file_type() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let refusal = format!(
        "cannot read {}: not a regular file (named pipe); name a regular file or a symlink to one",
        fifo.display()
    );

    // As a secret file.
    let config = dir.path().join("secret.toml");
    let piped = provider(&idp, "piped").secret_file(&fifo).toml();
    std::fs::write(&config, piped).unwrap();
    let expected = format!("key `providers.piped.token.client_secret_file`: {refusal}");
    refused_at_load(&config, &[], &expected).await;

    // As a CA bundle.
    let config = dir.path().join("ca.toml");
    let piped = provider(&idp, "piped")
        .raw(&format!(
            "[providers.piped.tls]\nca_file = \"{}\"",
            fifo.display()
        ))
        .toml();
    std::fs::write(&config, piped).unwrap();
    let expected = format!("key `providers.piped.tls.ca_file`: {refusal}");
    refused_at_load(&config, &[], &expected).await;

    // As the web configuration file.
    let config = dir.path().join("fine.toml");
    std::fs::write(&config, provider(&idp, "fine").toml()).unwrap();
    let expected = format!(
        "web configuration file {}: cannot read it: not a regular file (named pipe)",
        fifo.display()
    );
    refused_at_load(&config, &["--web.config.file", text(&fifo)], &expected).await;

    // As the configuration file itself.
    refused_at_load(
        &fifo,
        &[],
        &format!("configuration file {}: not a regular file", fifo.display()),
    )
    .await;
}

/// A Kubernetes secret volume: `dir/secret -> ..data/secret`, `..data -> ..<timestamp>`, rotated
/// by swapping the `..data` link (a new link renamed over the old one).
struct SecretVolume {
    dir: PathBuf,
    generation: usize,
}

impl SecretVolume {
    fn new(dir: &Path) -> SecretVolume {
        std::os::unix::fs::symlink("..data/secret", dir.join("secret")).unwrap();
        SecretVolume {
            dir: dir.to_path_buf(),
            generation: 0,
        }
    }

    fn secret(&self) -> PathBuf {
        self.dir.join("secret")
    }

    /// Publishes a new generation whose `secret` is made by `make`.
    fn rotate(&mut self, make: impl FnOnce(&Path)) {
        self.generation += 1;
        let name = format!("..2026_11_29_{:02}", self.generation);
        std::fs::create_dir(self.dir.join(&name)).unwrap();
        make(&self.dir.join(&name).join("secret"));
        let staged = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &staged).unwrap();
        std::fs::rename(&staged, self.dir.join("..data")).unwrap();
    }
}

fn tokens_requested(metrics: &str, provider: &str) -> f64 {
    sample(
        metrics,
        &format!(r#"oauth2_token_requests_total{{provider="{provider}"}}"#),
    )
    .unwrap_or(0.0)
}

/// A daemon probing `mounted`, whose secret is in a [`SecretVolume`] under `dir`, and `steady`,
/// whose secret is inline, once both succeeded.
async fn mounted_and_steady(idp: &FakeServer, dir: &Path) -> (SecretVolume, Running) {
    let volume_dir = dir.join("volume");
    std::fs::create_dir(&volume_dir).unwrap();
    let mut volume = SecretVolume::new(&volume_dir);
    volume.rotate(|path| std::fs::write(path, format!("{SECRET}\n")).unwrap());

    let config = dir.join("exporter.toml");
    let mounted = provider(idp, "mounted").secret_file(&volume.secret());
    std::fs::write(
        &config,
        support::config::providers(&[mounted, provider(idp, "steady")]),
    )
    .unwrap();
    let mut daemon = Binary::new().config(&config).listen_loopback().spawn();
    daemon
        .wait_for_metrics("both providers succeed", WAIT, |m| {
            sample(m, r#"oauth2_probe_success{provider="mounted"}"#) == Some(1.0)
                && sample(m, r#"oauth2_probe_success{provider="steady"}"#) == Some(1.0)
        })
        .await;
    (volume, daemon)
}

/// Waits until `mounted` failed `secret_unavailable`, then checks that meanwhile `steady` goes
/// on, on its 1 s schedule, and `/metrics` answers. Returns when the failure was seen.
async fn fails_alone(daemon: &mut Running) -> Instant {
    let failed = daemon
        .wait_for_metrics("the mounted provider fails secret_unavailable", WAIT, |m| {
            sample(
                m,
                r#"oauth2_token_request_failures_total{provider="mounted",reason="secret_unavailable"}"#,
            )
            .is_some_and(|n| n >= 1.0)
                && sample(m, r#"oauth2_probe_success{provider="mounted"}"#) == Some(0.0)
        })
        .await;
    let failed_at = Instant::now();
    let before = tokens_requested(&failed, "steady");
    let later = daemon
        .wait_for_metrics("the steady provider probed twice more", WAIT, |m| {
            tokens_requested(m, "steady") >= before + 2.0
        })
        .await;
    assert_eq!(
        sample(&later, r#"oauth2_probe_success{provider="steady"}"#),
        Some(1.0)
    );
    failed_at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_swapped_for_a_named_pipe_fails_its_provider_alone_and_recovers() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut volume, mut daemon) = mounted_and_steady(&idp, dir.path()).await;

    // The secret mount now hands out a named pipe: refused, that provider alone fails.
    volume.rotate(mkfifo);
    fails_alone(&mut daemon).await;
    let logs = daemon.logs();
    assert!(
        logs.contains("not a regular file (named pipe)"),
        "the log does not say why:\n{logs}"
    );

    // The mount is healthy again: the provider recovers without a restart.
    volume.rotate(|path| std::fs::write(path, SECRET).unwrap());
    daemon
        .wait_for_metrics("the mounted provider recovers", WAIT, |m| {
            sample(m, r#"oauth2_probe_success{provider="mounted"}"#) == Some(1.0)
        })
        .await;
    let (status, took) = daemon.stop().await;
    assert_eq!(status.code(), Some(0), "{}", daemon.logs());
    assert!(took < GRACE, "SIGTERM took {took:?}");
    assert!(!daemon.logs().contains(SECRET));
}

/// SIGTERM at any moment of start-up ends the process within the grace period, with the exit
/// code documented for it: 0 for the daemon (a graceful shutdown, whether start-up completed or
/// not). The signal is sent at increasing delays so that some land during start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_start_up_or_config_check_exits_within_the_grace_period() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exporter.toml");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let mut text = String::new();
    for n in 0..50 {
        text += &provider(&idp, &format!("p{n}")).secret_file(&secret).toml();
    }
    std::fs::write(&config, text).unwrap();
    for delay_ms in [0u64, 20, 80, 300] {
        for check in [false, true] {
            let mut binary = Binary::new().config(&config).listen_loopback();
            if check {
                binary = binary.arg("--config.check");
            }
            let mut running = binary.spawn();
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            if running.running() {
                running.signal(Signal::Term);
            }
            let (status, took) = running.exit(GRACE).await;
            let logs = running.logs();
            assert!(
                took < GRACE,
                "delay {delay_ms} ms, check={check}: {took:?}\n{logs}"
            );
            // Killed by the signal's default action only if it came before the handlers were
            // installed (the first thing the runtime does); otherwise the documented code:
            // the daemon 0, `--config.check` 0 when it finished first, 1 when interrupted.
            let allowed: &[Option<i32>] = if check {
                &[None, Some(0), Some(1)]
            } else {
                &[None, Some(0)]
            };
            assert!(
                allowed.contains(&status.code()),
                "delay {delay_ms} ms, check={check}: {status}\n{logs}"
            );
            if status.code() == Some(1) {
                assert!(
                    logs.contains("interrupted by a signal before the configuration was checked"),
                    "{logs}"
                );
            }
        }
    }
}

/// The load deadline (`CONFIG_READ_TIMEOUT`, 5 s in src/files.rs) as seen from outside: not
/// sooner than this...
#[cfg(target_os = "linux")]
const LOAD_DEADLINE_AT_LEAST: Duration = Duration::from_millis(4500);
/// ...and not much later, on a shared 2-core machine.
#[cfg(target_os = "linux")]
const LOAD_DEADLINE_AT_MOST: Duration = Duration::from_secs(15);

/// A mounted stalled file system serving [`SECRET`], or `None` after reporting why there is
/// none (SKIPPED, or a panic under `OAUTH2_EXPORTER_REQUIRE_PEERS=1`).
#[cfg(target_os = "linux")]
fn stalled_mount(test: &str, parent: &Path) -> Option<stalled_mount::StalledMount> {
    match stalled_mount::StalledMount::mount(parent, &format!("{SECRET}\n")) {
        Ok(mount) => Some(mount),
        Err(why) => {
            support::peers::skip_or_fail(test, &why);
            None
        }
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_on_a_stalled_mount_times_out_at_load_and_sigterm_still_works() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    // Declared after the directory: unmounted (even on a panic) before it is removed.
    let Some(mount) = stalled_mount(
        "a_secret_on_a_stalled_mount_times_out_at_load_and_sigterm_still_works",
        dir.path(),
    ) else {
        return;
    };
    let config = dir.path().join("stalled.toml");
    let stalled = provider(&idp, "stalled").secret_file(&mount.file()).toml();
    std::fs::write(&config, stalled).unwrap();

    for check in [true, false] {
        let mut binary = Binary::new().config(&config).listen_loopback();
        if check {
            binary = binary.arg("--config.check");
        }
        let (code, stderr, took) = run(binary).await;
        assert_eq!(code, Some(2), "check={check}:\n{stderr}");
        assert!(
            stderr.contains("key `providers.stalled.token.client_secret_file`")
                && stderr.contains("timed out reading"),
            "check={check}: the key or \"timed out reading\" is missing:\n{stderr}"
        );
        assert!(
            (LOAD_DEADLINE_AT_LEAST..LOAD_DEADLINE_AT_MOST).contains(&took),
            "check={check}: exited after {took:?}, not after the load deadline"
        );
    }
    // The stall was the mount's, not anything else's.
    assert!(mount.reads() >= 1, "no read reached the stalled mount");

    // SIGTERM while the load waits on the mount: the documented exit, within the grace period.
    for check in [false, true] {
        let mut binary = Binary::new().config(&config).listen_loopback();
        if check {
            binary = binary.arg("--config.check");
        }
        let mut running = binary.spawn();
        // Well inside the 5 s load deadline, well after the handlers are in place.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(running.running(), "check={check}: exited before the signal");
        running.signal(Signal::Term);
        let (status, took) = running.exit(GRACE).await;
        let logs = running.logs();
        assert!(took < GRACE, "check={check}: SIGTERM took {took:?}\n{logs}");
        let (code, said) = if check {
            (
                1,
                "interrupted by a signal before the configuration was checked",
            )
        } else {
            (0, "shutting down (signal during start-up)")
        };
        assert_eq!(status.code(), Some(code), "check={check}: {status}\n{logs}");
        assert!(
            logs.contains(said),
            "check={check}: no {said:?} in:\n{logs}"
        );
        assert!(!logs.contains(SECRET));
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_swapped_onto_a_stalled_mount_fails_its_provider_alone_and_recovers() {
    let idp = identity_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = stalled_mount(
        "a_secret_swapped_onto_a_stalled_mount_fails_its_provider_alone_and_recovers",
        dir.path(),
    ) else {
        return;
    };
    let (mut volume, mut daemon) = mounted_and_steady(&idp, dir.path()).await;

    // The secret now leads onto the stalled mount: that provider alone fails, within its
    // timeout (2 s) of its next cycle (1 s).
    let swapped = Instant::now();
    volume.rotate(|path| std::os::unix::fs::symlink(mount.file(), path).unwrap());
    let took = fails_alone(&mut daemon).await - swapped;
    assert!(took < Duration::from_secs(8), "failed only after {took:?}");
    assert!(mount.reads() >= 1, "no read reached the stalled mount");
    let logs = daemon.logs();
    assert!(
        logs.contains("timed out reading"),
        "the log does not say why:\n{logs}"
    );

    // The mount answers again: the provider recovers without a restart, reading through it.
    mount.release();
    daemon
        .wait_for_metrics("the mounted provider recovers", WAIT, |m| {
            sample(m, r#"oauth2_probe_success{provider="mounted"}"#) == Some(1.0)
        })
        .await;
    // And once the link leads back to a local file.
    volume.rotate(|path| std::fs::write(path, SECRET).unwrap());
    let now = daemon.wait_for_metrics("a scrape", WAIT, |_| true).await;
    let failures_before = sample(
        &now,
        r#"oauth2_token_request_failures_total{provider="mounted",reason="secret_unavailable"}"#,
    );
    let requests_before = tokens_requested(&now, "mounted");
    let after = daemon
        .wait_for_metrics("the mounted provider probed twice more", WAIT, |m| {
            tokens_requested(m, "mounted") >= requests_before + 2.0
        })
        .await;
    assert_eq!(
        sample(&after, r#"oauth2_probe_success{provider="mounted"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            r#"oauth2_token_request_failures_total{provider="mounted",reason="secret_unavailable"}"#,
        ),
        failures_before
    );
    let (status, took) = daemon.stop().await;
    assert_eq!(status.code(), Some(0), "{}", daemon.logs());
    assert!(took < GRACE, "SIGTERM took {took:?}");
    assert!(!daemon.logs().contains(SECRET));
}
