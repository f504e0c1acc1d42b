//! The deployment files (issue 5 section 4): the systemd unit and drop-in in `deploy/systemd/` and
//! the Kubernetes manifests in `deploy/kubernetes/`, checked by the tools that consume them and by
//! running the real binary the way each of them runs it.
//!
//! Peers: `systemd-analyze` (Debian `systemd`), `strace`, and the Python environment
//! `tests/peers/deploy/.venv` (PyPI `kubernetes-validate` plus models of prometheus-operator's
//! CRDs, pinned in `tests/peers/deploy/requirements.txt`), all installed by
//! `scripts/install-peers`. A test that needs a missing one prints `SKIPPED` (and fails under
//! `OAUTH2_EXPORTER_REQUIRE_PEERS=1`). The consistency checks and the runs of the binary need no
//! peer. Every server here listens on 127.0.0.1; the shipped provider URLs are rewritten to it.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use figment::providers::Format as _;
use serde_json::Value;
use support::binary::scrubbed_command;
use support::peers::{find_tool, http_request, skip_or_fail};
use support::{Binary, Running, Signal, sample};

/// Where the unit expects the binary and its configuration, and where systemd puts the
/// credentials of `oauth2-exporter.service` (`%d` in the unit).
const UNIT_BINARY: &str = "/usr/local/bin/oauth2-exporter";
const UNIT_CONFIG: &str = "/etc/oauth2-exporter/exporter.toml";
const UNIT_CREDENTIALS: &str = "/run/credentials/oauth2-exporter.service";
/// Upper bound for the exporter to start, probe, reload; generous for a debug build under strace
/// on CI's 2 shared cores.
const WAIT: Duration = Duration::from_secs(60);
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Kubernetes versions the manifests are validated against: the oldest and newest schemas
/// kubernetes-validate ships.
const KUBERNETES_VERSIONS: &[&str] = &["1.25.0", "1.37.0"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------------

fn unit_path() -> PathBuf {
    repo().join("deploy/systemd/oauth2-exporter.service")
}

fn drop_in_path() -> PathBuf {
    repo().join("deploy/systemd/more-credentials.conf")
}

/// `Key=Value` lines of a unit file, in order, as `(section, key, value)`. Our files use no line
/// continuations or quoting (asserted), so this is all systemd sees.
fn directives(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(!line.ends_with('\\'), "no line continuations: {line}");
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not Key=Value: {line}"));
        out.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    out
}

fn values<'a>(
    directives: &'a [(String, String, String)],
    section: &str,
    key: &str,
) -> Vec<&'a str> {
    directives
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

/// The one value of `key` in `[Service]`; panics unless it is set exactly once.
fn service_value<'a>(directives: &'a [(String, String, String)], key: &str) -> &'a str {
    match values(directives, "Service", key).as_slice() {
        [one] => one,
        other => panic!("[Service] {key}= should be set once, found {other:?}"),
    }
}

/// `NAME` of every `LoadCredential=NAME:SOURCE`.
fn credential_names(directives: &[(String, String, String)]) -> Vec<String> {
    values(directives, "Service", "LoadCredential")
        .iter()
        .map(|v| {
            v.split_once(':')
                .expect("LoadCredential=NAME:SOURCE")
                .0
                .to_owned()
        })
        .collect()
}

/// The paths of `*_file = "..."` TOML lines, also inside `#` comments (the units show the
/// matching exporter.toml lines there).
fn toml_file_paths(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start_matches(['#', ' ']))
        .filter_map(|l| {
            let (key, value) = l.split_once('=')?;
            let key = key.trim();
            (key == "client_secret_file" || key == "password_file")
                .then(|| value.trim().trim_matches('"').to_owned())
        })
        .collect()
}

/// The unit's hardening, credentials, start and reload, as the issue asks (no peer needed).
#[test]
fn systemd_unit_declares_hardening_credentials_and_reload() {
    let unit = read(&unit_path());
    let d = directives(&unit);

    let exec_start: Vec<&str> = service_value(&d, "ExecStart").split_whitespace().collect();
    assert_eq!(exec_start[0], UNIT_BINARY);
    assert!(
        exec_start.contains(&format!("--config.file={UNIT_CONFIG}").as_str()),
        "ExecStart reads {UNIT_CONFIG}: {exec_start:?}"
    );
    assert_eq!(service_value(&d, "ExecReload"), "/bin/kill -HUP $MAINPID");
    // The binary exits 2 on a configuration error: restarting would only repeat it.
    assert_eq!(service_value(&d, "RestartPreventExitStatus"), "2");
    assert!(
        values(&d, "Service", "LoadCredential")
            .contains(&"okq8_client_secret:/etc/oauth2-exporter/credentials/okq8"),
        "the OKQ8 credential: {:?}",
        values(&d, "Service", "LoadCredential")
    );
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("SystemCallArchitectures", "native"),
        ("UMask", "0077"),
    ] {
        assert_eq!(service_value(&d, key), want, "[Service] {key}=");
    }
    assert_eq!(
        values(&d, "Service", "SystemCallFilter").first(),
        Some(&"@system-service"),
        "an allow-list of the system-service calls comes first"
    );
    // The shutdown is on SIGTERM, systemd's default KillSignal.
    assert!(values(&d, "Service", "KillSignal").is_empty());

    // The exporter.toml lines shown in the comments use the literal credentials path (not %d,
    // which only the unit expands), each for a credential the same file loads.
    let drop_in = read(&drop_in_path());
    for (file, text) in [("unit", &unit), ("drop-in", &drop_in)] {
        let names = credential_names(&directives(text));
        let paths = toml_file_paths(text);
        assert!(
            !paths.is_empty(),
            "the {file} shows its exporter.toml lines"
        );
        for path in paths {
            let name = path
                .strip_prefix(&format!("{UNIT_CREDENTIALS}/"))
                .unwrap_or_else(|| panic!("{file}: {path} is not under {UNIT_CREDENTIALS}"));
            assert!(
                names.iter().any(|n| n == name),
                "{file}: {path} names a credential it does not load ({names:?})"
            );
        }
    }
    let drop_in_d = directives(&drop_in);
    assert!(drop_in_d.iter().all(|(s, _, _)| s == "Service"));
    assert_eq!(credential_names(&drop_in_d).len(), 3);
}

/// Runs `systemd-analyze ARGS` with `SYSTEMD_UNIT_PATH=dir:` (the trailing colon keeps the
/// default search path), so drop-ins under `dir/oauth2-exporter.service.d/` are loaded.
fn systemd_analyze(tool: &Path, dir: &Path, args: &[&str]) -> Output {
    scrubbed_command(tool)
        .args(args)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .env("SYSTEMD_LOG_COLOR", "0")
        .current_dir(dir)
        .output()
        .expect("run systemd-analyze")
}

/// Writes the unit (ExecStart pointing at the freshly built binary, so verify checks a real
/// executable) and the drop-in into `dir` as systemd would find them.
fn install_unit(dir: &Path, drop_in_text: &str) -> PathBuf {
    let unit = read(&unit_path()).replace(UNIT_BINARY, env!("CARGO_BIN_EXE_oauth2-exporter"));
    let path = dir.join("oauth2-exporter.service");
    write(&path, &unit);
    let drop_ins = dir.join("oauth2-exporter.service.d");
    std::fs::create_dir_all(&drop_ins).unwrap();
    write(&drop_ins.join("more-credentials.conf"), drop_in_text);
    path
}

/// `systemd-analyze verify` accepts the unit with its drop-in without a single warning, and its
/// offline security review rates the sandbox well.
#[test]
fn systemd_analyze_verifies_the_unit_and_its_drop_in() {
    let Some(tool) = find_tool("systemd-analyze") else {
        return skip_or_fail(
            "systemd_analyze_verifies_the_unit_and_its_drop_in",
            "systemd-analyze is not on PATH (Debian package systemd; run scripts/install-peers)",
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = install_unit(dir.path(), &read(&drop_in_path()));
    let unit_arg = unit.to_str().unwrap();
    let out = systemd_analyze(&tool, dir.path(), &["verify", "--man=no", unit_arg]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "verify failed: {said}");
    assert_eq!(said.trim(), "", "verify printed warnings");

    // Control: the same check does read the drop-in and does report a bad value, so the silence
    // above means something.
    let bad = tempfile::tempdir().unwrap();
    let bad_unit = install_unit(
        bad.path(),
        &format!("{}ProtectSystem=stirct\n", read(&drop_in_path())),
    );
    let out = systemd_analyze(
        &tool,
        bad.path(),
        &["verify", "--man=no", bad_unit.to_str().unwrap()],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("more-credentials.conf") && said.contains("stirct"),
        "verify should flag the bad drop-in line: {said}"
    );

    // Exposure is 0..100 here (the printed 0.0..10.0 scale times ten). The unit scores 11 with
    // systemd 252; without DynamicUser, the system-call filter, the capability bounding set,
    // PrivateDevices or RestrictAddressFamilies it scores 13 to 28. (Options DynamicUser implies
    // do not move the score: the hardening test above asserts each one.)
    let out = systemd_analyze(
        &tool,
        dir.path(),
        &["security", "--offline=yes", "--threshold=12", unit_arg],
    );
    assert!(
        out.status.success(),
        "systemd-analyze security rates the unit above 1.2:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// A loopback identity provider and API
// ---------------------------------------------------------------------------------------------

/// One request the fake server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: String,
}

/// Answers `POST /token` (any path ending in `token` or `auth`) with a Bearer token valid for an
/// hour and any other request with 200 `{}`, recording each request. Stops on drop.
struct FakeIdp {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl FakeIdp {
    fn start() -> FakeIdp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        thread::spawn(move || {
            // Bounded even if the test forgets to drop it.
            let deadline = Instant::now() + Duration::from_secs(300);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let seen = seen2.clone();
                        thread::spawn(move || {
                            let _ = serve_one(stream, &seen);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FakeIdp { addr, seen, stop }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_one(stream: TcpStream, seen: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let is_token = method == "POST" && (path.ends_with("token") || path.ends_with("auth"));
    seen.lock().unwrap().push(Seen {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let reply = if is_token {
        r#"{"access_token":"fake-access-token","token_type":"Bearer","expires_in":3600}"#
    } else {
        "{}"
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    )
}

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// `oauth2-exporter` run as a service manager runs it (started by `support::binary`, possibly
/// under a wrapper such as strace), with the address from its `msg=listening` line.
struct Deployed {
    running: Running,
    /// The exporter's own pid (the wrapper's child when wrapped).
    pid: u32,
    addr: SocketAddr,
}

impl Deployed {
    /// Spawns the binary with `args` under `wrapper` (none when empty) in a clean environment,
    /// as systemd and the kubelet give (nothing from cargo, whose `LD_LIBRARY_PATH` would send
    /// the loader into ~/.rustup, or CI), plus `env`; waits for its `msg=listening` line.
    fn spawn(wrapper: &[String], args: &[String], env: &[(&str, &str)]) -> Deployed {
        let mut running = Binary::new()
            .wrapper(wrapper)
            .args(args)
            .env_clear()
            .envs(env)
            .spawn();
        let addr = running.address_blocking();
        Deployed {
            pid: running.pid(),
            running,
            addr,
        }
    }

    fn logs(&self) -> String {
        self.running.logs()
    }

    fn get(&self, path: &str) -> (u16, String) {
        match http_request(self.addr, "GET", path, &[], &[]) {
            Ok(r) => (r.status, r.body),
            Err(e) => (0, format!("<{e}>")),
        }
    }

    /// Polls `/metrics` until `predicate` holds; panics with the last body and the logs.
    fn wait_for_metrics(&self, what: &str, predicate: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = self.get("/metrics");
            if status == 200 && predicate(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last /metrics ({status}):\n{body}\nlogs:\n{}",
                self.logs()
            );
            thread::sleep(POLL_EVERY);
        }
    }
}

/// What [`run_unit`] saw, for the sandbox analysis.
struct UnitRun {
    pid: u32,
}

/// Runs the exporter exactly as the unit says, systemd aside: ExecStart's arguments (binary and
/// config path swapped for the built binary and a temp file), a credential where LoadCredential
/// puts it (the credentials dir swapped for a temp dir), ExecReload's command with $MAINPID,
/// then SIGTERM. Optionally under `wrapper` (e.g. strace). Asserts the secret reaches the token
/// endpoint and never the logs, the reload adds a provider, and the exit is 0 within
/// TimeoutStopSec.
fn run_unit(wrapper: &[String]) -> UnitRun {
    let d = directives(&read(&unit_path()));
    let credential = credential_names(&d)
        .into_iter()
        .next()
        .expect("the unit loads a credential");
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let secret = "unit-test-secret-7f3a";
    write(&credentials.join(&credential), &format!("{secret}\n"));
    let idp = FakeIdp::start();
    // The exporter.toml lines the unit documents, with the credentials dir moved.
    let provider = |name: &str| {
        format!(
            "[providers.{name}.token]\nurl = \"http://{addr}/{name}/token\"\n\
             client_id = \"{name}-client\"\nclient_secret_file = \"{UNIT_CREDENTIALS}/{credential}\"\n\
             [providers.{name}.canary]\nurl = \"http://{addr}/{name}/api\"\n",
            addr = idp.addr
        )
        .replace(UNIT_CREDENTIALS, credentials.to_str().unwrap())
    };
    let head = "[web]\nlisten_address = \"127.0.0.1:0\"\n[defaults]\ninterval = \"1s\"\n";
    let config = dir.path().join("exporter.toml");
    write(&config, &format!("{head}{}", provider("okq8")));

    let mut args: Vec<String> = Vec::new();
    for (i, arg) in service_value(&d, "ExecStart")
        .split_whitespace()
        .enumerate()
    {
        assert!(
            !arg.contains(['"', '\'', '%', '$']),
            "plain arguments only: {arg}"
        );
        // The binary (i == 0) is the one cargo built, which `support::binary` runs.
        if i > 0 {
            args.push(arg.replace(UNIT_CONFIG, config.to_str().unwrap()));
        }
    }
    let credentials_env = credentials.to_str().unwrap().to_owned();
    let mut run = Deployed::spawn(
        wrapper,
        &args,
        &[("CREDENTIALS_DIRECTORY", &credentials_env)],
    );
    run.wait_for_metrics("okq8 to succeed", |m| {
        sample(m, r#"oauth2_probe_success{provider="okq8"}"#) == Some(1.0)
    });
    assert!(
        idp.seen().iter().any(|s| s.method == "POST"
            && s.path == "/okq8/token"
            && s.body.contains(&format!("client_secret={secret}"))),
        "the credential file's secret reaches the token endpoint: {:?}",
        idp.seen()
    );

    // ExecReload, $MAINPID being the exporter: a provider added to the file starts probing.
    write(
        &config,
        &format!("{head}{}{}", provider("okq8"), provider("okq8-second")),
    );
    let reload: Vec<String> = service_value(&d, "ExecReload")
        .split_whitespace()
        .map(|a| a.replace("$MAINPID", &run.pid.to_string()))
        .collect();
    let status = scrubbed_command(&reload[0])
        .args(&reload[1..])
        .status()
        .expect("run ExecReload");
    assert!(status.success(), "ExecReload {reload:?}");
    run.wait_for_metrics("the reloaded provider to succeed", |m| {
        sample(m, r#"oauth2_probe_success{provider="okq8-second"}"#) == Some(1.0)
            && sample(m, "oauth2_exporter_config_last_reload_successful") == Some(1.0)
    });

    // systemd stops with SIGTERM and kills after TimeoutStopSec.
    let stop = humantime::parse_duration(service_value(&d, "TimeoutStopSec")).unwrap();
    run.running.signal(Signal::Term);
    let (status, _) = run.running.exit_blocking(stop);
    assert_eq!(status.code(), Some(0), "logs:\n{}", run.logs());
    let logs = run.logs();
    assert!(
        !logs.contains(secret),
        "the secret leaked into the logs:\n{logs}"
    );
    UnitRun { pid: run.pid }
}

/// ExecStart's flags, the credential path, ExecReload and the stop signal work with the real
/// binary.
#[test]
fn systemd_exec_start_reload_and_stop_work_with_the_real_binary() {
    run_unit(&[]);
}

/// Expands a `SystemCallFilter=` item (`@group` or a call name) with `systemd-analyze
/// syscall-filter`, groups nested in groups included.
fn expand_syscalls(tool: &Path, item: &str, out: &mut BTreeSet<String>) {
    let Some(group) = item.strip_prefix('@') else {
        out.insert(item.to_owned());
        return;
    };
    let listing = scrubbed_command(tool)
        .args(["syscall-filter", &format!("@{group}")])
        .output()
        .expect("systemd-analyze syscall-filter");
    assert!(listing.status.success(), "unknown syscall group @{group}");
    for line in String::from_utf8_lossy(&listing.stdout).lines().skip(1) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        expand_syscalls(tool, line, out);
    }
}

/// Runs the exporter as the unit does under `strace -f` and checks that everything it did is
/// allowed by the sandbox the unit declares: every system call by SystemCallFilter, every socket
/// family by RestrictAddressFamilies, no writable+executable memory (MemoryDenyWriteExecute), no
/// file opened for writing (ProtectSystem=strict), nothing under /home, /root or /run/user
/// (ProtectHome), no device node but the pseudo-devices PrivateDevices keeps, no other process's
/// /proc entry (ProtectProc=invisible). Limits: only the code paths this run takes (plain HTTP on
/// loopback: no TLS handshake, no DNS lookup).
#[test]
fn systemd_sandbox_admits_everything_the_exporter_does() {
    let test = "systemd_sandbox_admits_everything_the_exporter_does";
    let Some(analyze) = find_tool("systemd-analyze") else {
        return skip_or_fail(
            test,
            "systemd-analyze is not on PATH (run scripts/install-peers)",
        );
    };
    let Some(strace) = find_tool("strace") else {
        return skip_or_fail(test, "strace is not on PATH (run scripts/install-peers)");
    };
    let dir = tempfile::tempdir().unwrap();
    let trace_file = dir.path().join("trace");
    let wrapper: Vec<String> = vec![
        strace.to_str().unwrap().to_owned(),
        "-f".into(),
        "-qq".into(),
        "-o".into(),
        trace_file.to_str().unwrap().to_owned(),
        "--".into(),
    ];
    let run = run_unit(&wrapper);
    let trace = read(&trace_file);

    let d = directives(&read(&unit_path()));
    let mut allowed = BTreeSet::new();
    for (i, line) in values(&d, "Service", "SystemCallFilter").iter().enumerate() {
        let (deny, items) = match line.strip_prefix('~') {
            Some(items) => (true, items),
            None => (false, *line),
        };
        assert!(
            i > 0 || !deny,
            "the first SystemCallFilter= is an allow-list"
        );
        let mut set = BTreeSet::new();
        for item in items.split_whitespace() {
            expand_syscalls(&analyze, item, &mut set);
        }
        if deny {
            allowed.retain(|s| !set.contains(s));
        } else {
            allowed.extend(set);
        }
    }
    let families: BTreeSet<&str> = service_value(&d, "RestrictAddressFamilies")
        .split_whitespace()
        .collect();

    let mut calls: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for line in trace.lines() {
        // "PID  name(args...) = result", or "PID  name(args <unfinished ...>".
        let Some((_, rest)) = line.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim_start();
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            continue; // "<... resumed>", "--- SIGHUP", "+++ exited"
        }
        *calls.entry(name.to_owned()).or_default() += 1;
        if !allowed.contains(name) {
            problems.push(format!("system call not in SystemCallFilter: {line}"));
        }
        if name == "socket" || name == "socketpair" {
            let family = args.split(',').next().unwrap_or("");
            if !families.contains(family) {
                problems.push(format!(
                    "address family not in RestrictAddressFamilies: {line}"
                ));
            }
        }
        if (name == "mmap" && args.contains("PROT_WRITE") && args.contains("PROT_EXEC"))
            || ((name == "mprotect" || name == "pkey_mprotect") && args.contains("PROT_EXEC"))
        {
            problems.push(format!("MemoryDenyWriteExecute would refuse: {line}"));
        }
        if name == "open" || name == "openat" || name == "openat2" || name == "creat" {
            if ["O_WRONLY", "O_RDWR", "O_CREAT"]
                .iter()
                .any(|f| args.contains(f))
                || name == "creat"
            {
                problems.push(format!("opens a file for writing: {line}"));
            }
            if let Some(path) = args.split('"').nth(1) {
                if ["/home/", "/root/", "/run/user/"]
                    .iter()
                    .any(|p| path.starts_with(p))
                {
                    problems.push(format!("ProtectHome hides: {line}"));
                }
                if path.starts_with("/dev/")
                    && ![
                        "/dev/null",
                        "/dev/zero",
                        "/dev/full",
                        "/dev/random",
                        "/dev/urandom",
                    ]
                    .contains(&path)
                {
                    problems.push(format!("PrivateDevices hides: {line}"));
                }
                if let Some(pid) = path
                    .strip_prefix("/proc/")
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse::<u32>().ok())
                    && pid != run.pid
                {
                    problems.push(format!("ProtectProc=invisible hides: {line}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the unit's sandbox would break the exporter:\n{}",
        problems.join("\n")
    );
    // The trace did cover a real run: sockets, the server, file reads, threads.
    for call in [
        "socket", "bind", "listen", "accept4", "connect", "openat", "clone3",
    ] {
        assert!(
            calls.contains_key(call),
            "the trace has no {call}: {calls:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------------

fn manifests_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// One manifest (one resource per file) as JSON.
fn manifest(name: &str) -> Value {
    let path = manifests_dir().join(name);
    figment::Figment::from(figment::providers::Yaml::file_exact(&path))
        .extract::<Value>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value:#}"))
}

/// Every `labels` pair of `selector` is in `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("a label map");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The Deployment's container, its mounts by name, and the ConfigMap's exporter.toml.
struct Shipped {
    deployment: Value,
    container: Value,
    configmap: Value,
    secret: Value,
    toml: String,
}

fn shipped() -> Shipped {
    let deployment = manifest("deployment.yaml");
    let container = deployment["spec"]["template"]["spec"]["containers"][0].clone();
    let configmap = manifest("configmap.yaml");
    let toml = str_at(&configmap, "/data/exporter.toml").to_owned();
    Shipped {
        deployment,
        container,
        configmap,
        secret: manifest("secret.example.yaml"),
        toml,
    }
}

impl Shipped {
    fn mount_path(&self, volume: &str) -> String {
        self.container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .map(|m| {
                assert_eq!(m["readOnly"], true, "mount {volume} is read-only");
                assert!(
                    m.get("subPath").is_none(),
                    "no subPath: updates would not reach it"
                );
                m["mountPath"].as_str().unwrap().to_owned()
            })
            .unwrap_or_else(|| panic!("no volumeMount {volume}"))
    }

    fn volume(&self, name: &str) -> Value {
        self.deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no volume {name}"))
    }

    fn args(&self) -> Vec<String> {
        self.container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    }

    /// `--config.file=...` from the container's arguments.
    fn config_file(&self) -> String {
        self.args()
            .iter()
            .find_map(|a| a.strip_prefix("--config.file=").map(str::to_owned))
            .expect("--config.file=PATH in args")
    }

    /// The providers of the ConfigMap's exporter.toml (`[providers.NAME.token]` headers).
    fn providers(&self) -> Vec<String> {
        self.toml
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("[providers.")?
                    .strip_suffix(".token]")
            })
            .map(str::to_owned)
            .collect()
    }
}

/// The manifests fit each other and the exporter: probes on the exporter's health paths, the
/// ConfigMap and Secret mounted where the arguments and exporter.toml look, the Service and
/// ServiceMonitor reaching the `metrics` port, the security settings the issue asks for, and the
/// example Secret holding only marked placeholders (no peer needed).
#[test]
fn kubernetes_manifests_fit_together() {
    let s = shipped();
    let pod = &s.deployment["spec"]["template"];
    let c = &s.container;
    assert!(selects(
        &s.deployment["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    // Two replicas would probe every provider twice.
    assert_eq!(s.deployment["spec"]["replicas"], 1);
    assert_eq!(s.deployment["spec"]["strategy"]["type"], "Recreate");

    // Ports and probes.
    let port = &c["ports"][0];
    assert_eq!(port["name"], "metrics");
    let listen = s
        .toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("listen_address = \""))
        .and_then(|l| l.split('"').next())
        .expect("web.listen_address in exporter.toml");
    assert_eq!(listen, format!("0.0.0.0:{}", port["containerPort"]));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/-/ready");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
    }

    // Security.
    let pod_sc = &pod["spec"]["securityContext"];
    let sc = &c["securityContext"];
    assert_eq!(pod_sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    for context in [pod_sc, sc] {
        let uid = context["runAsUser"].as_u64().expect("numeric runAsUser");
        assert!(uid > 0, "runAsUser is not root");
    }
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc["capabilities"].get("add").is_none());
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][resource].is_string(),
                "resources.{kind}.{resource}"
            );
        }
    }

    // The ConfigMap, mounted where --config.file looks.
    let config_volume = s.volume("config");
    assert_eq!(
        config_volume["configMap"]["name"],
        s.configmap["metadata"]["name"]
    );
    assert_eq!(
        s.config_file(),
        format!("{}/exporter.toml", s.mount_path("config"))
    );
    assert_eq!(
        config_volume["configMap"]["items"],
        serde_json::json!([{"key": "exporter.toml", "path": "exporter.toml"}])
    );

    // The Secret, mounted where exporter.toml's client_secret_file paths point, one key each.
    let secret_volume = s.volume("secrets");
    assert_eq!(
        secret_volume["secret"]["secretName"],
        s.secret["metadata"]["name"]
    );
    // 0o440: the fsGroup may read, nobody else.
    assert_eq!(secret_volume["secret"]["defaultMode"], 0o440);
    assert!(pod_sc["fsGroup"].is_u64());
    let secrets_dir = s.mount_path("secrets");
    let keys: BTreeSet<String> = s.secret["stringData"]
        .as_object()
        .expect("stringData")
        .keys()
        .cloned()
        .collect();
    let referenced: BTreeSet<String> = toml_file_paths(&s.toml)
        .iter()
        .map(|p| {
            p.strip_prefix(&format!("{secrets_dir}/"))
                .unwrap_or_else(|| panic!("{p} is not in the Secret mount {secrets_dir}"))
                .to_owned()
        })
        .collect();
    assert_eq!(
        referenced, keys,
        "the Secret's keys are the files exporter.toml reads"
    );
    assert_eq!(
        referenced.len(),
        s.providers().len(),
        "one secret per provider"
    );
    assert!(!s.toml.contains("client_secret =") && !s.toml.contains("password ="));
    for (key, value) in s.secret["stringData"].as_object().unwrap() {
        assert!(
            value.as_str().unwrap().starts_with("REPLACE-ME-"),
            "{key} must be a marked placeholder"
        );
    }

    // Service and ServiceMonitor.
    let service = manifest("service.yaml");
    assert!(selects(
        &service["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(service_port["name"], "metrics");
    assert_eq!(service_port["targetPort"], "metrics");
    let monitor = manifest("servicemonitor.yaml");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert!(selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");
    // The shipped alert rules watch up{job="oauth2-exporter"}.
    let job_label = str_at(&monitor, "/spec/jobLabel");
    assert_eq!(service["metadata"]["labels"][job_label], "oauth2-exporter");
    assert!(read(&repo().join("prometheus/alerts.yml")).contains(r#"up{job="oauth2-exporter"}"#));

    // Every file is one of these, and each starts with a comment naming it.
    let names: Vec<String> = manifest_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "configmap.yaml",
            "deployment.yaml",
            "secret.example.yaml",
            "service.yaml",
            "servicemonitor.yaml"
        ]
    );
    for name in names {
        let text = read(&manifests_dir().join(&name));
        assert!(
            text.starts_with(&format!("# deploy/kubernetes/{name}:")),
            "{name} starts with a comment saying what it is"
        );
    }
}

/// Writes the ConfigMap's exporter.toml with the Secret's mount moved to `dir/secrets`, and
/// returns its path.
fn shipped_config_in(s: &Shipped, dir: &Path, toml: &str) -> PathBuf {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let config_dir = dir.join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    let path = config_dir.join("exporter.toml");
    write(
        &path,
        &toml.replace(&s.mount_path("secrets"), secrets.to_str().unwrap()),
    );
    path
}

/// The ConfigMap's exporter.toml passes `--config.check` once its secret files exist, and fails
/// naming each provider's `client_secret_file` while they do not.
#[test]
fn configmap_exporter_toml_passes_config_check() {
    let s = shipped();
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_in(&s, dir.path(), &s.toml);
    let check = || {
        Binary::new()
            .arg(format!("--config.file={}", config.display()))
            .arg("--config.check")
            .run()
    };

    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for provider in s.providers() {
        assert!(
            stderr.contains(&format!(
                "key `providers.{provider}.token.client_secret_file`"
            )),
            "names {provider}'s missing secret file:\n{stderr}"
        );
    }

    for key in s.secret["stringData"].as_object().unwrap().keys() {
        write(&dir.path().join("secrets").join(key), "a-test-secret\n");
    }
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!(
            "{}: configuration is valid ({} providers)",
            config.display(),
            s.providers().len()
        )
    );
}

/// The container's arguments run the ConfigMap's configuration (provider URLs rewritten to a
/// loopback server, the mounts moved to a temp dir) with secrets read from the Secret's files:
/// the liveness and readiness paths answer 200, every provider succeeds with its own secret, and
/// SIGTERM ends it with 0 within terminationGracePeriodSeconds.
#[test]
fn deployment_runs_the_shipped_config_and_answers_its_probes() {
    let s = shipped();
    let idp = FakeIdp::start();
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for line in s.toml.lines() {
        let line = match line.split_once("url = \"https://") {
            // Keep the path, so each provider's requests stay recognisable.
            Some((head, rest)) => {
                let path = rest.split_once('/').map_or("", |(_, p)| p);
                format!("{head}url = \"http://{}/{path}", idp.addr)
            }
            None => line.replace("0.0.0.0:9875", "127.0.0.1:0"),
        };
        toml.push_str(&line);
        toml.push('\n');
    }
    assert!(!toml.contains("https://"), "every URL rewritten");
    let config = shipped_config_in(&s, dir.path(), &toml);
    let mut secrets = BTreeMap::new();
    for key in s.secret["stringData"].as_object().unwrap().keys() {
        let secret = format!("{key}-value-for-this-test");
        write(&dir.path().join("secrets").join(key), &secret);
        secrets.insert(key.clone(), secret);
    }

    let mut args = Vec::new();
    let config_arg = s.config_file();
    for arg in s.args() {
        args.push(arg.replace(&config_arg, config.to_str().unwrap()));
    }
    // The shipped 2-minute interval, shortened through the documented environment override.
    let mut run = Deployed::spawn(&[], &args, &[("OAUTH2_EXPORTER_DEFAULTS__INTERVAL", "1s")]);
    let live = str_at(&s.container, "/livenessProbe/httpGet/path");
    assert_eq!(run.get(live).0, 200, "GET {live}");
    let ready = str_at(&s.container, "/readinessProbe/httpGet/path");
    let deadline = Instant::now() + WAIT;
    while run.get(ready).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "{ready} never 200:\n{}",
            run.logs()
        );
        thread::sleep(POLL_EVERY);
    }
    let providers = s.providers();
    run.wait_for_metrics("every shipped provider to succeed", |m| {
        providers
            .iter()
            .all(|p| sample(m, &format!("oauth2_probe_success{{provider=\"{p}\"}}")) == Some(1.0))
    });
    let seen = idp.seen();
    for secret in secrets.values() {
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        assert!(
            seen.iter().any(|r| r.body.contains(&encoded)),
            "{secret} reached the token endpoint: {seen:?}"
        );
    }

    let grace = s.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    run.running.signal(Signal::Term);
    let (status, _) = run.running.exit_blocking(Duration::from_secs(grace));
    assert_eq!(status.code(), Some(0), "logs:\n{}", run.logs());
}

/// The Python of tests/peers/deploy/.venv if it has both checkers, else `None` after
/// [`skip_or_fail`].
fn validator_python(test: &str) -> Option<PathBuf> {
    let python = repo().join("tests/peers/deploy/.venv/bin/python");
    let importable = python.is_file()
        && scrubbed_command(&python)
            .args([
                "-c",
                "import kubernetes_validate, cloudcoil.models.prometheus_operator",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
    if importable {
        Some(python)
    } else {
        skip_or_fail(
            test,
            "tests/peers/deploy/.venv lacks kubernetes-validate or the prometheus-operator models \
             (run scripts/install-peers)",
        );
        None
    }
}

/// Runs tests/peers/deploy/validate.py on `files`: one verdict per resource and version.
fn validate(python: &Path, files: &[PathBuf]) -> Vec<Value> {
    let mut command = scrubbed_command(python);
    command
        .arg(repo().join("tests/peers/deploy/validate.py"))
        .args(KUBERNETES_VERSIONS)
        .arg("--")
        .args(files);
    let out = command.output().expect("run validate.py");
    assert!(
        out.status.success(),
        "validate.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every manifest validates offline: the built-in kinds against Kubernetes' own schemas
/// (kubernetes-validate, strict: unknown fields fail) for the oldest and newest bundled version,
/// the ServiceMonitor against models generated from prometheus-operator's CRD. Controls: a
/// misspelt field in each, a malformed duration, and a kind with no schema are all rejected.
#[test]
fn kubernetes_manifests_pass_offline_schema_validation() {
    let Some(python) = validator_python("kubernetes_manifests_pass_offline_schema_validation")
    else {
        return;
    };
    let files = manifest_files();
    let verdicts = validate(&python, &files);
    let mut checked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for v in &verdicts {
        assert_eq!(v["ok"], true, "rejected: {v:#}");
        checked
            .entry(str_at(v, "/kind").to_owned())
            .or_default()
            .insert(match v["version"].as_str() {
                Some(version) => version.to_owned(),
                None => str_at(v, "/checker").to_owned(),
            });
    }
    let both: BTreeSet<String> = KUBERNETES_VERSIONS.iter().map(|v| v.to_string()).collect();
    for kind in ["ConfigMap", "Deployment", "Secret", "Service"] {
        assert_eq!(
            checked.get(kind),
            Some(&both),
            "{kind} checked for each version"
        );
    }
    let monitor = checked
        .get("ServiceMonitor")
        .expect("the ServiceMonitor is checked");
    assert!(
        monitor
            .iter()
            .all(|c| c.starts_with("cloudcoil.models.prometheus_operator")),
        "{monitor:?}"
    );
    assert_eq!(checked.len(), 5, "{checked:?}");
    let files_seen: BTreeSet<&str> = verdicts.iter().map(|v| str_at(v, "/file")).collect();
    assert_eq!(files_seen.len(), files.len(), "every file holds a resource");

    let dir = tempfile::tempdir().unwrap();
    let deployment = read(&manifests_dir().join("deployment.yaml"));
    let monitor = read(&manifests_dir().join("servicemonitor.yaml"));
    let controls = [
        (
            "typo-deployment.yaml",
            deployment.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"),
            "readOnlyRootFileSystem",
        ),
        (
            "typo-monitor.yaml",
            monitor.replace("scrapeTimeout", "scrapeTimeOut"),
            "scrapeTimeOut",
        ),
        (
            "bad-interval-monitor.yaml",
            monitor.replace("interval: 30s", "interval: 30 seconds"),
            "interval",
        ),
        (
            "unknown-kind.yaml",
            "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n".to_owned(),
            "Couldn't find schema",
        ),
    ];
    for (name, text, _) in &controls {
        write(&dir.path().join(name), text);
    }
    let files: Vec<PathBuf> = controls
        .iter()
        .map(|(n, _, _)| dir.path().join(n))
        .collect();
    let verdicts = validate(&python, &files);
    for (name, _, needle) in controls {
        let mine: Vec<&Value> = verdicts
            .iter()
            .filter(|v| str_at(v, "/file").ends_with(name))
            .collect();
        assert!(!mine.is_empty(), "{name} was checked");
        for v in mine {
            assert_eq!(v["ok"], false, "{name} should be rejected: {v:#}");
            assert!(str_at(v, "/error").contains(needle), "{name}: {v:#}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes: sharded, and the operator's copies of the rules and the dashboard (issue 14)
// ---------------------------------------------------------------------------------------------

/// `text` with every non-empty line indented by `prefix`.
fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|line| {
            if line.is_empty() {
                "\n".to_owned()
            } else {
                format!("{prefix}{line}\n")
            }
        })
        .collect()
}

/// The PrometheusRule carrying prometheus/alerts.yml as its `spec`, line for line.
fn prometheus_rule_manifest() -> String {
    format!(
        "# deploy/kubernetes/monitoring/prometheusrule.yaml: prometheus/alerts.yml for a\n\
         # prometheus-operator managed Prometheus (its ruleSelector must match the labels below; with\n\
         # kube-prometheus-stack usually `release: <helm release name>`). Generated: the spec is\n\
         # prometheus/alerts.yml indented, and tests/it/deploy.rs fails when they differ; rewrite it with\n\
         # `OAUTH2_EXPORTER_REGENERATE=1 cargo test --test it deploy::operator_manifests`.\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: oauth2-exporter\n  labels:\n    app.kubernetes.io/name: oauth2-exporter\n\
         spec:\n{}",
        indent(&read(&repo().join("prometheus/alerts.yml")), "  ")
    )
}

/// The dashboards of grafana/, sorted by name.
fn dashboards() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(repo().join("grafana"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                read(&p),
            )
        })
        .collect();
    files.sort();
    files
}

/// The ConfigMap carrying every grafana/*.json for Grafana's dashboard sidecar.
fn dashboard_manifest() -> String {
    let mut text = String::from(
        "# deploy/kubernetes/monitoring/grafana-dashboard.yaml: the dashboards of grafana/ for the\n\
         # Grafana sidecar (kube-prometheus-stack's grafana.sidecar.dashboards), which loads every\n\
         # ConfigMap labelled grafana_dashboard: \"1\". Generated: each key is a grafana/*.json file as\n\
         # it is, and tests/it/deploy.rs fails when they differ; rewrite it with\n\
         # `OAUTH2_EXPORTER_REGENERATE=1 cargo test --test it deploy::operator_manifests`.\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  name: oauth2-exporter-dashboards\n  labels:\n    app.kubernetes.io/name: oauth2-exporter\n    grafana_dashboard: \"1\"\n\
         data:\n",
    );
    for (name, json) in dashboards() {
        text.push_str(&format!("  {name}: |\n{}", indent(&json, "    ")));
    }
    text
}

/// The PrometheusRule carries exactly prometheus/alerts.yml and the dashboard ConfigMap exactly
/// grafana/*.json: as text (regenerated with OAUTH2_EXPORTER_REGENERATE=1) and, read back as
/// YAML, as data.
#[test]
fn operator_manifests_carry_exactly_the_rules_and_the_dashboards() {
    let regenerate = std::env::var_os("OAUTH2_EXPORTER_REGENERATE").is_some();
    for (name, expected) in [
        ("monitoring/prometheusrule.yaml", prometheus_rule_manifest()),
        ("monitoring/grafana-dashboard.yaml", dashboard_manifest()),
    ] {
        let path = manifests_dir().join(name);
        if regenerate {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            write(&path, &expected);
        }
        assert!(
            std::fs::read_to_string(&path).is_ok_and(|text| text == expected),
            "deploy/kubernetes/{name} differs from its source; rewrite it with \
             `OAUTH2_EXPORTER_REGENERATE=1 cargo test --test it deploy::operator_manifests`"
        );
    }

    let rule = manifest("monitoring/prometheusrule.yaml");
    let alerts: Value = figment::Figment::from(figment::providers::Yaml::file_exact(
        repo().join("prometheus/alerts.yml"),
    ))
    .extract()
    .unwrap();
    assert_eq!(
        rule["spec"], alerts,
        "the PrometheusRule's spec is alerts.yml"
    );
    assert!(
        rule["spec"]["groups"][0]["rules"]
            .as_array()
            .is_some_and(|rules| rules.iter().any(|r| r["alert"] == "OAuth2ExporterDown"))
    );

    let dashboards_map = manifest("monitoring/grafana-dashboard.yaml");
    assert_eq!(
        dashboards_map["metadata"]["labels"]["grafana_dashboard"],
        "1"
    );
    let data = dashboards_map["data"].as_object().expect("data");
    let expected = dashboards();
    assert_eq!(data.len(), expected.len());
    for (name, json) in expected {
        assert_eq!(data[&name], json, "{name} is carried as it is");
    }
}

/// The sharded StatefulSet fits its Service, its PodMonitor and the shared ConfigMap and Secret:
/// `replicas` equals `--total-shards`, the ordinal comes from the pod's own name, every shard is
/// scraped as job="oauth2-exporter", and the pod keeps the unsharded Deployment's hardening.
#[test]
fn sharded_manifests_fit_together() {
    let statefulset = manifest("sharded/statefulset.yaml");
    let service = manifest("sharded/service.yaml");
    let monitor = manifest("sharded/podmonitor.yaml");
    let deployment = manifest("deployment.yaml");
    let pod = &statefulset["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert!(selects(
        &statefulset["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let total: u64 = args
        .iter()
        .find_map(|a| a.strip_prefix("--total-shards="))
        .expect("--total-shards=M")
        .parse()
        .unwrap();
    assert_eq!(
        statefulset["spec"]["replicas"], total,
        "replicas = --total-shards"
    );
    assert!(
        args.contains(&"--shard-from-pod-name=$(POD_NAME)"),
        "{args:?}"
    );
    assert_eq!(
        container["env"],
        serde_json::json!([{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])
    );
    // The same configuration, secrets, probes and hardening as the unsharded Deployment.
    let unsharded = &deployment["spec"]["template"]["spec"];
    for key in ["volumes", "securityContext", "automountServiceAccountToken"] {
        assert_eq!(pod["spec"][key], unsharded[key], "{key}");
    }
    let unsharded_container = &unsharded["containers"][0];
    for key in [
        "image",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "securityContext",
        "volumeMounts",
    ] {
        assert_eq!(container[key], unsharded_container[key], "{key}");
    }
    assert!(args.contains(&"--config.file=/etc/oauth2-exporter/config/exporter.toml"));

    // The headless Service the StatefulSet names.
    assert_eq!(
        statefulset["spec"]["serviceName"],
        service["metadata"]["name"]
    );
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert!(selects(
        &service["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");

    // Every shard scraped on its own, as job="oauth2-exporter".
    assert_eq!(monitor["kind"], "PodMonitor");
    assert!(selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    let job_label = str_at(&monitor, "/spec/jobLabel");
    assert_eq!(pod["metadata"]["labels"][job_label], "oauth2-exporter");
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");

    for name in ["statefulset.yaml", "service.yaml", "podmonitor.yaml"] {
        let text = read(&manifests_dir().join("sharded").join(name));
        assert!(
            text.starts_with(&format!("# deploy/kubernetes/sharded/{name}:")),
            "{name} starts with a comment saying what it is"
        );
    }
}

/// The sharded manifests and the operator's copies validate offline like the others: the
/// built-in kinds against Kubernetes' schemas for each bundled version, PodMonitor and
/// PrometheusRule against prometheus-operator's models.
#[test]
fn sharded_and_operator_manifests_pass_offline_schema_validation() {
    let Some(python) =
        validator_python("sharded_and_operator_manifests_pass_offline_schema_validation")
    else {
        return;
    };
    let files: Vec<PathBuf> = [
        "sharded/statefulset.yaml",
        "sharded/service.yaml",
        "sharded/podmonitor.yaml",
        "monitoring/prometheusrule.yaml",
        "monitoring/grafana-dashboard.yaml",
    ]
    .iter()
    .map(|name| manifests_dir().join(name))
    .collect();
    let verdicts = validate(&python, &files);
    let mut kinds: BTreeSet<&str> = BTreeSet::new();
    for v in &verdicts {
        assert_eq!(v["ok"], true, "rejected: {v:#}");
        kinds.insert(str_at(v, "/kind"));
    }
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "PodMonitor",
            "PrometheusRule",
            "Service",
            "StatefulSet"
        ]
        .into_iter()
        .collect()
    );
    let files_seen: BTreeSet<&str> = verdicts.iter().map(|v| str_at(v, "/file")).collect();
    assert_eq!(files_seen.len(), files.len(), "every file holds a resource");
}
