//! The packaging of issue 14, each built and used as a user would:
//!
//! - The container image: built offline by `scripts/build-image` from the Dockerfile and the
//!   binary under test, then run with Podman (read-only root filesystem, no capabilities): it
//!   answers `/-/healthy` and `/metrics` with the shipped configuration, runs as UID/GID 65534,
//!   and `check` inside it passes against a loopback token server. Peers: `podman` and `runc`,
//!   as root.
//! - The Debian package: `scripts/build-deb` packages the binary under test; it installs on this
//!   machine with `dpkg -i` (binary, conffiles, /etc/default flags file, system user, a unit
//!   `systemd-analyze` verifies and rates as the source unit, enabled); the installed binary
//!   prints its version and checks the installed conffile as the service user; `dpkg --purge`
//!   leaves nothing behind but the system user (which Debian's daemon packages keep). It changes
//!   the machine, so it runs only when asked: with OAUTH2_EXPORTER_PACKAGING=1 (what .ci/run sets)
//!   or when cargo-deb is installed; as root; and it refuses to touch a machine where
//!   oauth2-exporter is already installed. Peers: cargo-deb, dpkg, adduser, systemd-analyze.
//!
//! Both use the debug binary `cargo test` already built: they test the packaging, and a release
//! build would cost CI minutes for nothing they check. Peers come from scripts/install-packaging
//! and scripts/install-peers; a missing one prints SKIPPED, or fails with
//! OAUTH2_EXPORTER_REQUIRE_PEERS=1.
//!
//! Why the `podman run` options: this CI machine has a hybrid cgroup layout, which Debian's
//! default runtime crun refuses ("cgroups in hybrid mode not supported") and runc accepts; and
//! root here lacks CAP_SYS_RESOURCE, so Podman's default limits (nofile 1048576, nproc 32768)
//! cannot be set, while lower explicit ones can. `--network=host` lets the container reach the
//! loopback token server and the test reach the exporter. None of this is part of the image.
//!
//! The helpers below are local to this file for now; they move to tests/support once that is
//! rewritten.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// Upper bound for one command (building the image or the package copies and strips a debug
/// binary of a few hundred MB, on CI's 2 shared cores).
const COMMAND_LIMIT: Duration = Duration::from_secs(300);
/// Upper bound for the exporter inside the container to answer, on CI's 2 shared cores.
const WAIT: Duration = Duration::from_secs(60);
const POLL_EVERY: Duration = Duration::from_millis(100);
const RUN_OPTIONS: &[&str] = &[
    "--ulimit=nofile=1024:1024",
    "--ulimit=nproc=4096:4096",
    "--network=host",
    // Podman copies the host's proxy variables into the container unless told not to.
    "--http-proxy=false",
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
];
const SECRET: &str = "container-secret-5d1e";
const TOKEN: &str = "container-token-9b27";
const PACKAGE: &str = "oauth2-exporter";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Prints SKIPPED, or fails when CI requires every peer (OAUTH2_EXPORTER_REQUIRE_PEERS=1).
fn skip_or_fail(test: &str, why: &str) {
    if std::env::var("OAUTH2_EXPORTER_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{test}: {why} (OAUTH2_EXPORTER_REQUIRE_PEERS=1)");
    }
    eprintln!("SKIPPED {test}: {why}");
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|status| status.lines().any(|l| l.starts_with("Uid:\t0\t")))
        .unwrap_or(false)
}

/// A command with every proxy variable removed, no standard input, and dpkg kept from asking.
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_lowercase()
            .ends_with("_proxy")
        {
            cmd.env_remove(name);
        }
    }
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion within COMMAND_LIMIT (killed after it) and returns its output.
fn run(mut cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    // Read both pipes on threads so a chatty command cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let out = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {COMMAND_LIMIT:?}");
        }
        thread::sleep(POLL_EVERY);
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn run_ok(cmd: Command) -> String {
    let what = format!("{cmd:?}");
    let output = run(cmd);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn tool(program: &str, args: &[&str]) -> Command {
    let mut cmd = command(program);
    cmd.args(args);
    cmd
}

// --- The container image ---

fn podman(args: &[&str]) -> Command {
    let mut cmd = command("podman");
    cmd.args(["--runtime", "runc"]).args(args);
    cmd
}

/// The image, removed when the test ends however it ends.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = run(podman(&["rmi", "--force", &self.0]));
    }
}

/// A detached container, removed when the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run(podman(&["rm", "--force", "--time", "5", &self.0]));
    }
}

/// One request the token server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// A loopback token endpoint (`POST /token`) and canary API (`GET /api`) that records every
/// request; one request per connection (`Connection: close`).
struct TokenServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TokenServer {
    fn start() -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Ok(request) = serve_one(stream) {
                            seen2.lock().expect("seen").push(request);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        TokenServer {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_one(mut stream: TcpStream) -> std::io::Result<Seen> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read the head, then exactly Content-Length bytes of body; bounded by the size cap and the
    // read timeout.
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("incomplete request head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let method = start.next().unwrap_or_default().to_owned();
    let path = start.next().unwrap_or_default().to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(64 * 1024);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let (status, content_type, reply) = match (method.as_str(), path.as_str()) {
        ("POST", "/token") => (
            "200 OK",
            "application/json",
            format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3600}}"#),
        ),
        ("GET", "/api") => ("200 OK", "application/json", "{}".to_owned()),
        _ => ("404 Not Found", "text/plain", "not found".to_owned()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    Ok(Seen {
        method,
        path,
        headers,
        body,
    })
}

/// GET `path` from the exporter: (status, body), or None while nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A loopback port that was free a moment ago, for the exporter inside the container.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

fn write_readable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("write");
    // Read by UID 65534 inside the container.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

#[test]
fn image_builds_offline_and_runs_non_root_with_the_shipped_config() {
    let test = "image_builds_offline_and_runs_non_root_with_the_shipped_config";
    for tool in ["podman", "runc"] {
        if !on_path(tool) {
            return skip_or_fail(
                test,
                &format!("{tool} is not on PATH (run scripts/install-packaging)"),
            );
        }
    }
    if !is_root() {
        return skip_or_fail(test, "rootful podman needs root");
    }

    let tag = format!("localhost/oauth2-exporter-test:{}", std::process::id());
    let mut build = command(repo().join("scripts/build-image"));
    build.args([
        "--binary",
        env!("CARGO_BIN_EXE_oauth2-exporter"),
        "--tag",
        &tag,
    ]);
    run_ok(build);
    let image = Image(tag);

    // What the Dockerfile promises, read back from the built image.
    let config = run_ok(podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}|{{json .Config.ExposedPorts}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}",
        &image.0,
    ]));
    assert_eq!(
        config.trim(),
        r#"65534:65534|{"9875/tcp":{}}|["/usr/bin/oauth2-exporter"]|["--config.file=/etc/oauth2-exporter/exporter.toml"]"#
    );

    // The daemon with the image's own command and configuration; only the listen address comes
    // from the environment, so the default CMD is what runs.
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let name = format!("oauth2-exporter-test-{}", std::process::id());
    let listen = format!("OAUTH2_EXPORTER_WEB__LISTEN_ADDRESS={addr}");
    let mut args = vec!["run", "--detach", "--name", &name];
    args.extend_from_slice(RUN_OPTIONS);
    args.extend_from_slice(&["--env", &listen, &image.0]);
    run_ok(podman(&args));
    let container = Container(name);

    let deadline = Instant::now() + WAIT;
    let healthy = loop {
        if let Some(answer) = get(addr, "/-/healthy") {
            break answer;
        }
        if Instant::now() > deadline {
            let logs = run(podman(&["logs", &container.0]));
            panic!(
                "the container did not answer on {addr} within {WAIT:?}; its logs:\n{}",
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        thread::sleep(POLL_EVERY);
    };
    assert_eq!(healthy.0, 200, "/-/healthy: {healthy:?}");
    let (status, metrics) = get(addr, "/metrics").expect("scrape /metrics");
    assert_eq!(status, 200, "/metrics:\n{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("oauth2_exporter_build_info{")
                && l.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))),
        "/metrics has no oauth2_exporter_build_info for this version:\n{metrics}"
    );

    // Non-root: the container's process as the host's kernel sees it.
    let pid = run_ok(podman(&[
        "inspect",
        "--format",
        "{{.State.Pid}}",
        &container.0,
    ]));
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))
        .expect("read the container process's status");
    for field in ["Uid:", "Gid:"] {
        let ids: Vec<&str> = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .expect("status has the field")
            .split_whitespace()
            .collect();
        assert_eq!(
            ids, ["65534"; 4],
            "{field} real, effective, saved, filesystem"
        );
    }
    drop(container);

    // `check` in the image, with a configuration mounted over the shipped one (so no
    // --config.file: the working directory's exporter.toml is the default).
    let server = TokenServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = dir.path().join("exporter.toml");
    write_readable(
        &toml,
        &format!(
            "[providers.container_check.token]\nurl = \"http://{a}/token\"\n\
             client_id = \"container-client\"\nclient_secret_env = \"CONTAINER_CHECK_SECRET\"\n\
             [providers.container_check.canary]\nurl = \"http://{a}/api\"\n",
            a = server.addr
        ),
    );
    let mount = format!(
        "{}:/etc/oauth2-exporter/exporter.toml:ro",
        toml.to_str().expect("utf-8 path")
    );
    let secret = format!("CONTAINER_CHECK_SECRET={SECRET}");
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(RUN_OPTIONS);
    args.extend_from_slice(&["--volume", &mount, "--env", &secret, &image.0, "check"]);
    let output = run(podman(&args));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "check in the container failed ({}):\n{stdout}{stderr}",
        output.status
    );
    assert!(
        stdout.contains("container_check"),
        "check names the provider:\n{stdout}"
    );
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET) && !stdout.contains(TOKEN),
        "check printed a secret:\n{stdout}{stderr}"
    );

    let seen = server.seen();
    let token = seen
        .iter()
        .find(|s| s.method == "POST" && s.path == "/token")
        .unwrap_or_else(|| panic!("no token request reached the server: {seen:?}"));
    // The secret reached the token endpoint, in the form body or in basic auth.
    let basic = token
        .headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    assert!(
        token.body.contains(SECRET) || basic.ends_with(&format!(":{SECRET}")),
        "the token request carries the secret from the container's environment: {token:?}"
    );
    assert!(
        seen.iter().any(|s| s.method == "GET"
            && s.path == "/api"
            && s.headers.get("authorization").map(String::as_str)
                == Some(&format!("Bearer {TOKEN}"))),
        "the canary call used the token: {seen:?}"
    );
    drop(image);
}

/// deploy/kubernetes/deployment.yaml runs the name `scripts/build-image` and the documented
/// `docker build -t` give the image: oauth2-exporter:VERSION, VERSION from Cargo.toml. A version
/// bump that forgets the manifest fails here.
#[test]
fn deployment_runs_the_image_name_the_build_produces() {
    let expected = format!("image: oauth2-exporter:{}", env!("CARGO_PKG_VERSION"));
    let manifest = std::fs::read_to_string(repo().join("deploy/kubernetes/deployment.yaml"))
        .expect("read deployment.yaml");
    let images: Vec<&str> = manifest
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("image:"))
        .collect();
    assert_eq!(images, [expected.as_str()], "deployment.yaml's images");
    let script = std::fs::read_to_string(repo().join("scripts/build-image")).expect("read script");
    assert!(
        script.contains(r#"tag="oauth2-exporter:$version""#),
        "scripts/build-image's default tag is oauth2-exporter:VERSION"
    );
}

// --- The Debian package ---

fn installed() -> bool {
    let output = run(tool("dpkg-query", &["-W", "-f=${Status}", PACKAGE]));
    String::from_utf8_lossy(&output.stdout).contains("installed")
}

/// Purges the package when the test ends however it ends, so a failed run leaves no install.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if installed() {
            let _ = run(tool("dpkg", &["--purge", PACKAGE]));
        }
    }
}

fn control_field(deb: &Path, field: &str) -> String {
    run_ok(tool(
        "dpkg-deb",
        &["--field", deb.to_str().expect("utf-8 path"), field],
    ))
    .trim()
    .to_owned()
}

#[test]
fn deb_installs_checks_its_conffile_and_purges_cleanly() {
    let test = "deb_installs_checks_its_conffile_and_purges_cleanly";
    let asked = std::env::var("OAUTH2_EXPORTER_PACKAGING").as_deref() == Ok("1");
    let have_cargo_deb = run(tool("cargo", &["deb", "--version"])).status.success();
    if !asked && !have_cargo_deb {
        eprintln!(
            "SKIPPED {test}: set OAUTH2_EXPORTER_PACKAGING=1 (or install cargo-deb) to build, \
             install and purge the package on this machine"
        );
        return;
    }
    if !have_cargo_deb {
        return skip_or_fail(
            test,
            "cargo-deb is not installed (run scripts/install-packaging)",
        );
    }
    if !is_root() {
        return skip_or_fail(test, "dpkg -i needs root");
    }
    // An existing installation (the package, or the manual one docs/deployment.md describes) is
    // left alone: a failure when the run asked for this test, a skip when it merely found
    // cargo-deb.
    if let Some(path) = ["/etc/oauth2-exporter", "/usr/bin/oauth2-exporter"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .or(installed().then_some("the dpkg database"))
    {
        let why = format!(
            "{PACKAGE} is already installed here ({path}): this test installs and purges the \
             package, so it will not touch an existing installation"
        );
        assert!(!asked, "{test}: {why}");
        eprintln!("SKIPPED {test}: {why}");
        return;
    }

    // The debug binary this `cargo test` built, packaged as is.
    let deb = PathBuf::from(
        run_ok(tool(
            repo().join("scripts/build-deb").to_str().expect("utf-8"),
            &["--binary", env!("CARGO_BIN_EXE_oauth2-exporter")],
        ))
        .trim(),
    );
    assert!(deb.is_file(), "build-deb printed {deb:?}, not a file");
    assert_eq!(control_field(&deb, "Package"), PACKAGE);
    assert_eq!(
        control_field(&deb, "Version"),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    let depends = control_field(&deb, "Depends");
    assert!(
        depends.contains("adduser") && depends.contains("libc6"),
        "Depends has adduser (postinst) and the shared libraries: {depends}"
    );
    let conffiles: BTreeSet<String> = run_ok(tool(
        "dpkg-deb",
        &["--info", deb.to_str().expect("utf-8"), "conffiles"],
    ))
    .lines()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        conffiles,
        BTreeSet::from([
            "/etc/default/oauth2-exporter".to_owned(),
            "/etc/oauth2-exporter/exporter.toml".to_owned()
        ])
    );

    let guard = Installed;
    run_ok(tool("dpkg", &["-i", deb.to_str().expect("utf-8")]));
    assert!(installed(), "dpkg -i did not leave {PACKAGE} installed");
    let files: Vec<PathBuf> = run_ok(tool("dpkg", &["-L", PACKAGE]))
        .lines()
        .map(PathBuf::from)
        .collect();

    let version = run_ok(tool("/usr/bin/oauth2-exporter", &["--version"]));
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "--version: {version}"
    );

    // The system user: no login, no home.
    let passwd = run_ok(tool("getent", &["passwd", PACKAGE]));
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields.len(), 7, "getent passwd: {passwd}");
    let uid: u32 = fields[2].parse().expect("numeric uid");
    assert!(uid < 1000, "a system user has a UID below 1000: {passwd}");
    assert!(
        fields[6].ends_with("nologin") || fields[6].ends_with("false"),
        "the system user cannot log in: {passwd}"
    );
    let credentials = std::fs::metadata("/etc/oauth2-exporter/credentials")
        .expect("postinst creates /etc/oauth2-exporter/credentials");
    {
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(credentials.mode() & 0o7777, 0o700, "credentials dir mode");
        assert_eq!(credentials.uid(), 0, "credentials dir owner");
    }

    // The installed conffile is valid, and readable by the user the service runs as.
    let check = run_ok(tool(
        "runuser",
        &[
            "-u",
            PACKAGE,
            "--",
            "/usr/bin/oauth2-exporter",
            "--config.file=/etc/oauth2-exporter/exporter.toml",
            "--config.check",
        ],
    ));
    assert!(check.contains("valid"), "--config.check: {check}");

    // The unit: from /usr/bin, flags from /etc/default, the system user, and verified.
    let unit = files
        .iter()
        .find(|p| p.ends_with("oauth2-exporter.service"))
        .unwrap_or_else(|| panic!("the package ships oauth2-exporter.service: {files:?}"))
        .clone();
    let text = std::fs::read_to_string(&unit).expect("read the installed unit");
    for line in [
        "EnvironmentFile=-/etc/default/oauth2-exporter",
        "ExecStart=/usr/bin/oauth2-exporter --config.file=/etc/oauth2-exporter/exporter.toml $ARGS",
        "User=oauth2-exporter",
        "DynamicUser=yes",
        "ProtectSystem=strict",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{} has `{line}`:\n{text}",
            unit.display()
        );
    }
    assert!(
        !text.contains("/usr/local"),
        "the package unit names /usr/local:\n{text}"
    );
    let defaults = std::fs::read_to_string("/etc/default/oauth2-exporter").expect("read defaults");
    assert!(
        defaults.lines().any(|l| l == "ARGS=\"\""),
        "/etc/default/oauth2-exporter sets ARGS:\n{defaults}"
    );
    let verify = run(tool(
        "systemd-analyze",
        &["verify", unit.to_str().expect("utf-8")],
    ));
    let verify_err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && verify_err.trim().is_empty(),
        "systemd-analyze verify {} ({}):\n{verify_err}",
        unit.display(),
        verify.status
    );
    // The package's edits (a static User=, EnvironmentFile=) keep the source unit's rating: at
    // most 1.2 on systemd-analyze's 0-10 scale, as tests/deploy.rs holds the source to.
    let security = run(tool(
        "systemd-analyze",
        &[
            "security",
            "--offline=yes",
            "--threshold=12",
            unit.to_str().expect("utf-8"),
        ],
    ));
    assert!(
        security.status.success(),
        "systemd-analyze security rates the package unit above 1.2:\n{}{}",
        String::from_utf8_lossy(&security.stdout),
        String::from_utf8_lossy(&security.stderr)
    );
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/oauth2-exporter.service").exists(),
        "the package enables the service"
    );

    // Purge: nothing of the package is left but the system user.
    run_ok(tool("dpkg", &["--purge", PACKAGE]));
    drop(guard);
    assert!(!installed(), "dpkg --purge left {PACKAGE} installed");
    let mut left: BTreeSet<PathBuf> = files
        .iter()
        .filter(|p| {
            // Directories other packages share (/usr/bin, /etc/default) stay; the package's
            // own files and directories must go.
            std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir())
                || p.to_string_lossy().contains(PACKAGE) && p.exists()
        })
        .cloned()
        .collect();
    for path in [
        "/etc/oauth2-exporter",
        "/etc/systemd/system/multi-user.target.wants/oauth2-exporter.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/oauth2-exporter.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/oauth2-exporter.service",
        "/var/lib/dpkg/info/oauth2-exporter.list",
        "/var/lib/dpkg/info/oauth2-exporter.conffiles",
    ] {
        if std::fs::symlink_metadata(path).is_ok() {
            left.insert(PathBuf::from(path));
        }
    }
    assert!(left.is_empty(), "dpkg --purge left behind: {left:?}");
}
