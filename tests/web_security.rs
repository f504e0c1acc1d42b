//! Protected `/metrics` (issue #4, section 4), end to end against the real binary run with
//! `--web.config.file`: TLS only (https with the right CA works, plain http to the port does
//! not), bcrypt basic auth (right password 200, wrong or none 401 with `WWW-Authenticate`),
//! client certificates required by `RequireAndVerifyClientCert`, and invalid web configuration
//! files refused with exit 2 and problems that name their keys but never a password.
//!
//! Certificates are generated per test (`support/certs.rs`); everything runs on loopback.

#[path = "support/certs.rs"]
mod certs;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certs::Ca;

const BIN: &str = env!("CARGO_BIN_EXE_oauth2-exporter");

/// How long the binary may take to start listening or to exit (shared, busy machine).
const PROCESS_WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The binary as a child process.

/// A running exporter whose standard error is collected by a thread (so it never blocks on a
/// full pipe). Killed, by its own id, on drop if still running.
struct Exporter {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Exporter {
    /// Runs the binary with `--config.file CONFIG --web.listen-address 127.0.0.1:0` plus `args`,
    /// without any `OAUTH2_EXPORTER_*` variable of this process (CI sets some).
    fn spawn(config: &Path, args: &[&str]) -> Exporter {
        let mut command = Command::new(BIN);
        command
            .arg("--config.file")
            .arg(config)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OAUTH2_EXPORTER_") {
                command.env_remove(name);
            }
        }
        // A few tries: in a shared target directory another build may be relinking the binary
        // at this very moment (ENOENT / ETXTBSY for a few milliseconds).
        let mut child = (0..10)
            .find_map(|_| {
                command
                    .spawn()
                    .map_err(|_| std::thread::sleep(Duration::from_millis(200)))
                    .ok()
            })
            .unwrap_or_else(|| command.spawn().unwrap());
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        Exporter { child, stderr }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The address from the `msg=listening address=...` log line, once probing has started.
    async fn address(&mut self) -> SocketAddr {
        let deadline = Instant::now() + PROCESS_WAIT;
        loop {
            let stderr = self.stderr();
            if stderr.contains("msg=\"probing started\"")
                && let Some(addr) = listening_address(&stderr)
            {
                return addr;
            }
            let exited = self.child.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "the exporter did not start (exit: {exited:?}); stderr:\n{stderr}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) for the process to exit on its own.
    async fn exit_status(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROCESS_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread collect the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {PROCESS_WAIT:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn listening_address(stderr: &str) -> Option<SocketAddr> {
    stderr
        .lines()
        .find(|line| line.contains("msg=listening"))?
        .split(' ')
        .find_map(|field| field.strip_prefix("address="))?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// Test material.

/// A temporary directory with an exporter configuration (no providers: these tests are about
/// the web endpoint) and a CA-signed server certificate for localhost.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    ca: Ca,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = certs::write(
            dir.path(),
            "exporter.toml",
            "[defaults]\ninterval = \"1m\"\n",
        );
        let ca = Ca::new("oauth2-exporter test server CA");
        let server = ca.server();
        let server_cert = certs::write(dir.path(), "server.pem", &server.cert_pem);
        let server_key = certs::write(dir.path(), "server-key.pem", &server.key_pem);
        Setup {
            dir,
            config,
            ca,
            server_cert,
            server_key,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `tls_server_config` with the server certificate, plus `extra` lines (YAML, indented by
    /// the caller), plus `rest` at the top level.
    fn web_config(&self, tls_extra: &str, rest: &str) -> PathBuf {
        let yaml = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{tls_extra}{rest}",
            self.server_cert.display(),
            self.server_key.display()
        );
        certs::write(self.dir.path(), "web.yml", &yaml)
    }

    async fn start(&self, web_config: &Path) -> (Exporter, SocketAddr) {
        let mut exporter = Exporter::spawn(
            &self.config,
            &["--web.config.file", web_config.to_str().unwrap()],
        );
        let addr = exporter.address().await;
        (exporter, addr)
    }

    /// An HTTPS client trusting only the test CA, with `localhost` pinned to the exporter's
    /// loopback address, optionally presenting a client certificate.
    fn https_client(
        &self,
        addr: SocketAddr,
        identity: Option<reqwest::Identity>,
    ) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .tls_certs_only([self.ca.certificate()])
            .resolve("localhost", addr);
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        builder.build().unwrap()
    }
}

fn https_url(addr: SocketAddr, path: &str) -> String {
    format!("https://localhost:{}{path}", addr.port())
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The error and its causes on one line, for assertion messages.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// TLS.

/// With `tls_server_config` the port speaks TLS only: https with the test CA answers /metrics,
/// a client that does not trust the CA and a plain-http client both get no answer at all.
#[tokio::test]
async fn tls_only_serves_https_and_refuses_plain_http() {
    let setup = Setup::new();
    let web = setup.web_config("", "");
    let (exporter, addr) = setup.start(&web).await;

    let client = setup.https_client(addr, None);
    let response = client
        .get(https_url(addr, "/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("https failed: {}\n{}", chain(&e), exporter.stderr()));
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(body.contains("oauth2_exporter_build_info{"), "{body}");

    // The IP address is in the certificate too.
    let by_ip = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .tls_certs_only([setup.ca.certificate()])
        .build()
        .unwrap();
    let response = by_ip
        .get(format!("https://{addr}/-/healthy"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Plain HTTP on the TLS port: the handshake fails, no HTTP answer comes back.
    let plain = plain_client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await;
    match plain {
        Ok(response) => panic!(
            "plain http to the TLS port answered {}: {:?}",
            response.status(),
            response.text().await
        ),
        Err(error) => assert!(
            !error.is_timeout(),
            "plain http should be refused at once, not hang: {}",
            chain(&error)
        ),
    }

    // A client that does not trust the test CA refuses the server: the certificate is real.
    let other_ca = Ca::new("some other CA");
    let untrusting = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .tls_certs_only([other_ca.certificate()])
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let error = untrusting
        .get(https_url(addr, "/metrics"))
        .send()
        .await
        .expect_err("a client without the CA must not accept the server certificate");
    assert!(
        chain(&error).to_lowercase().contains("certificate"),
        "{}",
        chain(&error)
    );

    // The exporter is still serving after the failed handshakes.
    let response = client
        .get(https_url(addr, "/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// Basic auth.

/// `basic_auth_users` with a bcrypt hash: the right password gets 200, a wrong password, an
/// unknown user or no credentials get 401 with `WWW-Authenticate: Basic`, on every path
/// (reload included).
#[tokio::test]
async fn basic_auth_accepts_the_right_password_only() {
    let setup = Setup::new();
    let password = "correct horse battery staple";
    let hash = bcrypt::hash(password, 4).unwrap();
    let web = setup.web_config("", &format!("basic_auth_users:\n  prometheus: '{hash}'\n"));
    let (exporter, addr) = setup.start(&web).await;
    let client = setup.https_client(addr, None);
    let url = https_url(addr, "/metrics");

    let response = client
        .get(&url)
        .basic_auth("prometheus", Some(password))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", chain(&e), exporter.stderr()));
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("oauth2_exporter_build_info{")
    );
    // Again: the second check takes the verified-credentials path.
    let response = client
        .get(&url)
        .basic_auth("prometheus", Some(password))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let refused = [
        (
            "wrong password",
            Some(("prometheus", "correct horse battery")),
        ),
        ("unknown user", Some(("admin", password))),
        ("empty password", Some(("prometheus", ""))),
        ("no credentials", None),
    ];
    for (case, credentials) in refused {
        let mut request = client.get(&url);
        if let Some((user, pass)) = credentials {
            request = request.basic_auth(user, Some(pass));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{case}");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .unwrap_or_else(|| panic!("{case}: 401 without WWW-Authenticate"))
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.starts_with("Basic"), "{case}: {challenge}");
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("oauth2_"),
            "{case}: metrics leaked in a 401: {body}"
        );
    }

    // Every path is protected, not only /metrics.
    for (method, path) in [
        (reqwest::Method::GET, "/"),
        (reqwest::Method::GET, "/-/healthy"),
        (reqwest::Method::POST, "/-/reload"),
    ] {
        let response = client
            .request(method.clone(), https_url(addr, path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            401,
            "{method} {path} without credentials"
        );
    }
    let stderr = exporter.stderr();
    assert!(
        !stderr.contains(password) && !stderr.contains(&hash),
        "the password or its hash reached the log:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Client certificates.

/// `RequireAndVerifyClientCert`: a client certificate signed by `client_ca_file` gets 200;
/// no client certificate, or one from another CA, gets no answer.
#[tokio::test]
async fn required_client_certificates_are_verified() {
    let setup = Setup::new();
    let client_ca = Ca::new("oauth2-exporter test client CA");
    let client_ca_file = certs::write(setup.dir.path(), "client-ca.pem", &client_ca.cert_pem);
    let web = setup.web_config(
        &format!(
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            client_ca_file.display()
        ),
        "",
    );
    let (exporter, addr) = setup.start(&web).await;
    let url = https_url(addr, "/metrics");

    let with_cert = setup.https_client(addr, Some(client_ca.client("prometheus").identity()));
    let response = with_cert
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", chain(&e), exporter.stderr()));
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("oauth2_exporter_build_info{")
    );

    let without_cert = setup.https_client(addr, None);
    let error = without_cert
        .get(&url)
        .send()
        .await
        .expect_err("no client certificate must get no answer");
    // Refused in the handshake (a TLS alert), not by a slow timeout.
    assert!(
        chain(&error).to_lowercase().contains("alert"),
        "{}",
        chain(&error)
    );

    // Signed by a CA the exporter does not trust for clients (the server CA).
    let wrong_ca = setup.https_client(addr, Some(setup.ca.client("intruder").identity()));
    let error = wrong_ca
        .get(&url)
        .send()
        .await
        .expect_err("a client certificate from another CA must get no answer");
    assert!(
        chain(&error).to_lowercase().contains("alert"),
        "{}",
        chain(&error)
    );

    // Still serving the legitimate client afterwards.
    let response = with_cert.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// Invalid web configuration files.

/// Each broken web configuration stops start-up with exit 2, a problem line naming the key,
/// and never the password (or hash) that was written in it.
#[tokio::test]
async fn invalid_web_config_files_exit_2_naming_the_key() {
    let setup = Setup::new();
    let cert = setup.server_cert.display().to_string();
    let key = setup.server_key.display().to_string();
    struct Case {
        name: &'static str,
        yaml: String,
        expected: &'static [&'static str],
        secret: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "missing key_file",
            yaml: format!("tls_server_config:\n  cert_file: {cert}\n"),
            expected: &["key `tls_server_config.key_file`: missing"],
            secret: None,
        },
        Case {
            name: "unknown client_auth_type",
            yaml: format!(
                "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: TrustEveryone\n"
            ),
            expected: &[
                "key `tls_server_config.client_auth_type`",
                "TrustEveryone",
                "RequireAndVerifyClientCert",
            ],
            secret: None,
        },
        Case {
            name: "client certificates required without client_ca_file",
            yaml: format!(
                "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: RequireAndVerifyClientCert\n"
            ),
            expected: &["key `tls_server_config.client_ca_file`: missing"],
            secret: None,
        },
        Case {
            name: "plain-text password instead of a bcrypt hash",
            yaml: "basic_auth_users:\n  admin: plaintext-hunter2-password\n".to_string(),
            expected: &["key `basic_auth_users.admin`", "bcrypt"],
            secret: Some("plaintext-hunter2-password"),
        },
        Case {
            name: "bcrypt-looking garbage",
            yaml: "basic_auth_users:\n  admin: '$2y$10$hunter2hunter2hunter2'\n".to_string(),
            expected: &["key `basic_auth_users.admin`", "bcrypt"],
            secret: Some("hunter2hunter2hunter2"),
        },
        Case {
            name: "misspelt key",
            yaml: format!("tls_server_config:\n  cert_file: {cert}\n  keyfile: {key}\n"),
            expected: &["tls_server_config.keyfile", "unknown key"],
            secret: None,
        },
        Case {
            name: "key file that is not a key",
            yaml: format!("tls_server_config:\n  cert_file: {cert}\n  key_file: {cert}\n"),
            expected: &["key `tls_server_config.key_file`"],
            secret: None,
        },
    ];
    for case in cases {
        let path = certs::write(setup.dir.path(), "web.yml", &case.yaml);
        let mut exporter = Exporter::spawn(
            &setup.config,
            &["--web.config.file", path.to_str().unwrap()],
        );
        let status = exporter.exit_status().await;
        let stderr = exporter.stderr();
        assert_eq!(status.code(), Some(2), "{}: stderr:\n{stderr}", case.name);
        assert!(
            stderr.contains("invalid configuration"),
            "{}: stderr:\n{stderr}",
            case.name
        );
        for expected in case.expected {
            assert!(
                stderr.contains(expected),
                "{}: {expected:?} not in stderr:\n{stderr}",
                case.name
            );
        }
        if let Some(secret) = case.secret {
            assert!(
                !stderr.contains(secret),
                "{}: the password value reached stderr:\n{stderr}",
                case.name
            );
        }
        assert!(!stderr.contains("msg=listening"), "{}: {stderr}", case.name);
        assert!(!stderr.contains("panicked"), "{}: {stderr}", case.name);
    }

    // A web configuration file that does not exist.
    let mut exporter = Exporter::spawn(
        &setup.config,
        &[
            "--web.config.file",
            setup.path("missing.yml").to_str().unwrap(),
        ],
    );
    let status = exporter.exit_status().await;
    let stderr = exporter.stderr();
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("missing.yml"), "{stderr}");
}
