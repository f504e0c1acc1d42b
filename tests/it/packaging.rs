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
//! Child processes, the environment scrub, skipping and HTTP come from `tests/it/support` (one
//! launcher, one scrub, issue 10); only what is about packaging is here.

use crate::support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::binary::{listening_address, run_bounded, scrubbed_command};
use support::peers::{find_tool, http_request, skip_or_fail};
use support::{FakeServer, Reply};

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
fn on_path(tool: &str) -> bool {
    find_tool(tool).is_some()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|status| status.lines().any(|l| l.starts_with("Uid:\t0\t")))
        .unwrap_or(false)
}

/// A command without proxy variables (the one scrub, `support::binary`), no standard input,
/// and dpkg kept from asking.
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = scrubbed_command(program);
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion within COMMAND_LIMIT (killed after it) and returns its output.
fn run(cmd: Command) -> Output {
    run_bounded(cmd, COMMAND_LIMIT)
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

/// GET `path` from the exporter: (status, body), or None while nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_request(addr, "GET", path, &[], b"")
        .ok()
        .map(|response| (response.status, response.body))
}

fn write_readable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("write");
    // Read by UID 65534 inside the container.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

// Multi-threaded: the fake token server runs on the runtime's workers while this test blocks on
// podman.
#[tokio::test(flavor = "multi_thread")]
async fn image_builds_offline_and_runs_non_root_with_the_shipped_config() {
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
    // from the environment, so the default CMD is what runs. Port 0 (the host's network): the
    // exporter binds a free port itself and says which in its log, so no other test can take
    // the port between our choosing it and the exporter binding it.
    let name = format!("oauth2-exporter-test-{}", std::process::id());
    let listen = "OAUTH2_EXPORTER_WEB__LISTEN_ADDRESS=127.0.0.1:0";
    let mut args = vec!["run", "--detach", "--name", &name];
    args.extend_from_slice(RUN_OPTIONS);
    args.extend_from_slice(&["--env", listen, &image.0]);
    run_ok(podman(&args));
    let container = Container(name);

    let deadline = Instant::now() + WAIT;
    let addr: SocketAddr = loop {
        let logs = run(podman(&["logs", &container.0]));
        // The exporter logs to stderr; podman keeps the streams apart, or not, by version.
        let logs = format!(
            "{}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
        if let Some(addr) = listening_address(&logs) {
            break addr;
        }
        assert!(
            Instant::now() < deadline,
            "the container logged no listening address within {WAIT:?}; its logs:\n{logs}"
        );
        thread::sleep(POLL_EVERY);
    };
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
    let server =
        FakeServer::start(
            |request| match (request.method.as_str(), request.path.as_str()) {
                ("POST", "/token") => Reply::token(TOKEN, 3600),
                ("GET", "/api") => Reply::json(200, serde_json::json!({})),
                _ => Reply::status(404),
            },
        )
        .await;
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

    let tokens = server.requests_to("/token");
    let token = tokens
        .iter()
        .find(|r| r.method == "POST")
        .unwrap_or_else(|| {
            panic!(
                "no token request reached the server: {:?}",
                server.requests()
            )
        });
    // The secret reached the token endpoint, in the form body or in basic auth.
    let basic_secret = token.basic_credentials().map(|(_, secret)| secret);
    assert!(
        token.body_text().contains(SECRET) || basic_secret.as_deref() == Some(SECRET),
        "the token request carries the secret from the container's environment: {token:?}"
    );
    assert!(
        server
            .requests_to("/api")
            .iter()
            .any(|r| r.method == "GET" && r.bearer() == Some(TOKEN)),
        "the canary call used the token: {:?}",
        server.requests()
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
        version.starts_with(&format!(
            "oauth2-exporter, version {} (revision: ",
            env!("CARGO_PKG_VERSION")
        )),
        "--version: {version}"
    );

    // The man pages and completions generated from the flags (tests/it/generated_docs.rs), where
    // man, bash-completion, zsh and fish look for them; cargo-deb may gzip the man pages.
    for wanted in [
        "/usr/share/man/man1/oauth2-exporter.1",
        "/usr/share/man/man1/oauth2-exporter-check.1",
        "/usr/share/bash-completion/completions/oauth2-exporter",
        "/usr/share/zsh/vendor-completions/_oauth2-exporter",
        "/usr/share/fish/vendor_completions.d/oauth2-exporter.fish",
    ] {
        assert!(
            files
                .iter()
                .any(|f| f == Path::new(wanted) || f == Path::new(&format!("{wanted}.gz"))),
            "the package ships {wanted}: {files:?}"
        );
    }

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
    // most 1.2 on systemd-analyze's 0-10 scale, as tests/it/deploy.rs holds the source to.
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
