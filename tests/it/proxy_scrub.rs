//! Regression test for issue 10: proxy variables in the test process's environment never reach
//! a binary started by `support::binary`. Before, ten of the eleven launchers passed
//! `HTTPS_PROXY` & co. on, so with a proxy configured on the machine the exporter's token
//! requests went to it instead of to the loopback fakes.
//!
//! The variables must be in this process's own environment, which only `std::env::set_var` could
//! change from inside, and that is `unsafe` (edition 2024) and denied here
//! (`unsafe_code = "deny"` in Cargo.toml's `[lints]` covers tests too). So the one test runs
//! itself again as a child test process whose environment holds them from its first instruction
//! (set through `Command::env`, which is safe), and that inner run launches the exporter.

use crate::support;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::binary::scrubbed_command;
use support::{Binary, FakeServer, Provider, Recorded, Reply, Running, WAIT, sample};

/// Set (to anything) in the inner run only.
const INNER: &str = "PROXY_SCRUB_INNER_RUN";
/// This test's name, as libtest matches it with `--exact`.
const TEST: &str =
    "proxy_scrub::a_proxy_in_the_test_environment_is_not_used_by_the_launched_binary";
/// Bounds the inner run: two exporters started and probed once each.
const INNER_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_proxy_in_the_test_environment_is_not_used_by_the_launched_binary() {
    if std::env::var_os(INNER).is_some() {
        inner_run();
    } else {
        outer_run();
    }
}

/// Runs this test again with every proxy variable set: HTTPS to a port where nothing listens
/// (`127.0.0.1:1`), HTTP and ALL to a trap that counts the connections it gets, and NO_PROXY
/// naming nothing on loopback. Then the inner run must pass and the trap must have seen nothing.
fn outer_run() {
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    let trap_url = format!("http://{}", trap.local_addr().unwrap());
    trap.set_nonblocking(true).unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let counter = std::thread::spawn({
        let (connections, done) = (Arc::clone(&connections), Arc::clone(&done));
        move || {
            // Bounded by `done`, which the test sets once the inner run ended (or panicked).
            while !done.load(Ordering::Relaxed) {
                match trap.accept() {
                    Ok(_) => {
                        connections.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => {}
                }
            }
        }
    });

    // Not scrubbed on purpose: this child is the test itself, and the proxy variables are the
    // point. `scrubbed_command` first removes any the machine has, so only these are set.
    let mut command = scrubbed_command(std::env::current_exe().unwrap());
    command
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .env("HTTPS_PROXY", "http://127.0.0.1:1")
        .env("https_proxy", "http://127.0.0.1:1")
        .env("HTTP_PROXY", &trap_url)
        .env("http_proxy", &trap_url)
        .env("ALL_PROXY", &trap_url)
        .env("all_proxy", &trap_url)
        .env("NO_PROXY", "example.invalid")
        .env("no_proxy", "example.invalid")
        .stdin(std::process::Stdio::null());
    let output = run_bounded(command);
    done.store(true, Ordering::Relaxed);
    counter.join().unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the inner run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert_eq!(
        connections.load(Ordering::Relaxed),
        0,
        "something connected to the HTTP_PROXY/ALL_PROXY trap:\n{stdout}\n{stderr}"
    );
}

/// `command` to completion with both pipes captured, killed after [`INNER_LIMIT`].
fn run_bounded(mut command: std::process::Command) -> std::process::Output {
    let out = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = command
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + INNER_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the inner run took longer than {INNER_LIMIT:?}:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&stdout).unwrap(),
        stderr: std::fs::read(&stderr).unwrap(),
    }
}

/// With the proxy variables in this process's environment: the exporter started by
/// `support::binary` reaches a plain and an HTTPS fake directly and both probes succeed. The
/// control gives the same exporter `HTTP_PROXY` explicitly and sees it obeyed, so what kept the
/// first run direct was the scrub, not the exporter ignoring proxies.
fn inner_run() {
    assert_eq!(
        std::env::var("HTTPS_PROXY").as_deref(),
        Ok("http://127.0.0.1:1"),
        "the inner run has the proxy variables in its environment"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let answer = |r: &Recorded| match r.path.as_str() {
            "/token" => Reply::token("direct-token", 3600),
            _ => Reply::status(200),
        };
        let plain = FakeServer::start(answer).await;
        let tls = FakeServer::start_tls(answer).await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, tls.cert_pem.as_deref().unwrap()).unwrap();
        let config = dir.path().join("exporter.toml");
        write_private(
            &config,
            &[
                support::config::defaults(&[("interval", r#""1s""#)]),
                support::config::providers(&[
                    Provider::new("plain", &plain.url("/token")).canary(&plain.url("/api")),
                    Provider::new("tls", &tls.url("/token"))
                        .canary(&tls.url("/api"))
                        .tls_file("ca_file", &ca_file),
                ]),
            ]
            .concat(),
        );

        let mut exporter = Binary::new().config(&config).listen_loopback().spawn();
        let metrics = wait_for_success(&mut exporter, &["plain", "tls"]).await;
        assert_eq!(
            sample(&metrics, r#"oauth2_probe_success{provider="plain"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&metrics, r#"oauth2_probe_success{provider="tls"}"#),
            Some(1.0)
        );
        // Directly: a proxied request would have reached the trap or port 1, never the fakes.
        assert!(plain.count("/token") >= 1 && plain.count("/api") >= 1);
        assert!(tls.count("/token") >= 1 && tls.count("/api") >= 1);
        exporter.stop().await;

        // Control: given HTTP_PROXY on purpose, the exporter sends its token request there.
        let proxy = FakeServer::start(|_| Reply::status(502)).await;
        let mut proxied = Binary::new()
            .config(&config)
            .listen_loopback()
            .env("HTTP_PROXY", proxy.url(""))
            .spawn();
        proxied.address().await;
        let deadline = Instant::now() + WAIT;
        while proxy.requests().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the control exporter never used the HTTP_PROXY it was given:\n{}",
                proxied.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let request = &proxy.requests()[0];
        assert_eq!(
            request.path,
            plain.url("/token"),
            "a proxy gets the absolute URL"
        );
        proxied.stop().await;
    });
    println!("inner run: both probes went direct; the control used its proxy");
}

/// Waits until every provider in `providers` has `oauth2_probe_success` 1.
async fn wait_for_success(exporter: &mut Running, providers: &[&str]) -> String {
    exporter
        .wait_for_metrics("every probe succeeded", WAIT, |metrics| {
            providers.iter().all(|p| {
                sample(
                    metrics,
                    &format!("oauth2_probe_success{{provider=\"{p}\"}}"),
                ) == Some(1.0)
            })
        })
        .await
}

/// Writes an owner-only file (the exporter warns about inline secrets others can read).
fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
