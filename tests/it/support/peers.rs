//! Support for the peer tests (`tests/peer_*.rs` and a few others): tests that run the real
//! `oauth2-exporter` binary against components no one here wrote (oidc-provider, Prometheus).
//!
//! Use it as `support::peers` (after `use crate::support;`). Everything here is blocking
//! (std threads and sockets, no tokio), so it works from a plain `#[test]`. From a
//! `#[tokio::test]` it works too, but a blocking call such as [`Exporter::wait_for_metrics`]
//! blocks the runtime's thread: if the test also runs its own tokio tasks (a fake server, a
//! proxy) use `#[tokio::test(flavor = "multi_thread")]` or `tokio::task::spawn_blocking`.
//!
//! Skipping: a peer that is not installed (no `node` on PATH, `npm ci` not run, no `promtool`)
//! makes the test print `SKIPPED <test>: <why>` and return, so `cargo test` passes on a machine
//! without them. With `OAUTH2_EXPORTER_REQUIRE_PEERS=1` (set by CI after `scripts/install-peers`)
//! the same situation panics instead. Typical start of a test:
//!
//! ```ignore
//! let Some(peer) = OidcPeer::start(false) else { return };
//! // or, for another tool:
//! let Some(promtool) = find_tool("promtool") else {
//!     return skip_or_fail("promtool_check", "promtool not on PATH (run scripts/install-peers)");
//! };
//! ```
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::binary::{Binary, Running, scrubbed_command};
use super::exposition::sample;

/// How long a child process may take to print its ready line. Generous: CI shares 2 cores with
/// parallel test binaries, and on a machine where other builds ran beside the suite (load about
/// 5 on 2 cores) oidc-provider once took over 30 s; a deadline, so it costs only a real failure.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many oidc-provider peers may be starting at once. Starting one is a burst of CPU (Node
/// loading and compiling its modules): with eight test threads on 2 shared cores, several
/// started together and one missed [`START_TIMEOUT`]. Two at a time keeps each start within it.
const STARTING_AT_ONCE: usize = 2;
/// How long a peer may wait for its turn to start (the others' starts, each bounded).
const TURN_LIMIT: Duration = Duration::from_secs(120);
/// Peers starting now, and the signal that one finished starting.
static STARTING: (Mutex<usize>, std::sync::Condvar) = (Mutex::new(0), std::sync::Condvar::new());

/// A turn to start a peer (see [`STARTING_AT_ONCE`]), given back when dropped.
struct StartTurn;

impl StartTurn {
    fn take() -> StartTurn {
        let (starting, finished) = &STARTING;
        let deadline = Instant::now() + TURN_LIMIT;
        let mut now_starting = starting.lock().unwrap_or_else(|e| e.into_inner());
        while *now_starting >= STARTING_AT_ONCE {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no turn to start a peer within {TURN_LIMIT:?}"
            );
            now_starting = finished
                .wait_timeout(now_starting, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *now_starting += 1;
        StartTurn
    }
}

impl Drop for StartTurn {
    fn drop(&mut self) {
        let (starting, finished) = &STARTING;
        let mut now_starting = starting.lock().unwrap_or_else(|e| e.into_inner());
        *now_starting -= 1;
        finished.notify_one();
    }
}

/// Socket read/write deadline for the helpers' own HTTP requests.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two polls of /metrics in [`Exporter::wait_for_metrics`].
const POLL_EVERY: Duration = Duration::from_millis(100);

/// True when `OAUTH2_EXPORTER_REQUIRE_PEERS=1`: a missing peer is then a test failure, not a skip.
pub fn peers_required() -> bool {
    std::env::var("OAUTH2_EXPORTER_REQUIRE_PEERS").is_ok_and(|v| v.trim() == "1")
}

/// Reports a missing peer. When peers are required (see [`peers_required`]) this panics with
/// `why`; otherwise it prints `SKIPPED <test>: <why>` to stderr and returns, and the caller
/// returns early.
pub fn skip_or_fail(test: &str, why: &str) {
    if peers_required() {
        panic!("{test}: {why} (OAUTH2_EXPORTER_REQUIRE_PEERS=1 makes a missing peer a failure)");
    }
    // Straight to fd 2, not eprintln!: libtest captures the macros' output of passing tests, and
    // a skip must be visible in a plain `cargo test` run.
    let _ = writeln!(io::stderr(), "SKIPPED {test}: {why}");
}

/// The running test's name as libtest reports it (the test thread is named after the test).
fn current_test() -> String {
    thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// Looks `name` up on `PATH` like a shell would: the first executable regular file wins.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Removes ANSI colour sequences so log lines parse the same with or without a terminal.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequence: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Copies every line of `from` into `buffer` until EOF, handing each line to `on_line` first.
/// Runs on its own thread so the child never blocks on a full pipe.
fn drain_lines(
    from: impl Read + Send + 'static,
    buffer: Arc<Mutex<String>>,
    mut on_line: impl FnMut(&str) + Send + 'static,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = strip_ansi(String::from_utf8_lossy(&raw).trim_end());
                    on_line(&line);
                    let mut logs = buffer.lock().unwrap_or_else(|e| e.into_inner());
                    logs.push_str(&line);
                    logs.push('\n');
                }
            }
        }
    });
}

/// A response from [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::headers_named(&self.headers, name).first().copied()
    }
}

/// One HTTP/1.1 request over a fresh loopback connection (`Connection: close`), bounded by a
/// 10 s socket deadline. `path` includes the query string. Handles `Content-Length`, chunked and
/// read-to-close bodies; no gzip (none is asked for).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    assert!(
        addr.ip().is_loopback(),
        "peer tests talk to loopback only, not {addr}"
    );
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = &raw[split + 4..];
    let decoded;
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        decoded = dechunk(body).ok_or_else(|| bad("bad chunked body"))?;
        body = &decoded;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body = body
            .get(..len)
            .ok_or_else(|| bad("body shorter than Content-Length"))?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The real `oauth2-exporter` binary (started by [`Binary`], the one launcher), on
/// `127.0.0.1:0` with a configuration given as TOML text. The child is killed when this is
/// dropped.
pub struct Exporter {
    running: Running,
    addr: SocketAddr,
    // Holds the config file (and anything else the test writes next to it) until drop.
    dir: tempfile::TempDir,
}

impl Exporter {
    /// Writes `config_toml` to a temp dir and runs
    /// `oauth2-exporter --config.file <it> --web.listen-address 127.0.0.1:0 --log.level debug`
    /// in it, with the launcher's scrubbed environment. Waits (up to 30 s) for the
    /// `msg="listening" address=127.0.0.1:PORT` log line. Panics with the logs if the exporter
    /// exits or never gets ready.
    pub fn start(config_toml: &str) -> Exporter {
        Self::start_with_env(config_toml, &[])
    }

    /// [`Exporter::start`] with extra environment variables for the child, e.g. for
    /// `client_secret_env`.
    pub fn start_with_env(config_toml: &str, env: &[(&str, &str)]) -> Exporter {
        let dir = tempfile::tempdir().expect("temp dir for the exporter config");
        let config = dir.path().join("exporter.toml");
        std::fs::write(&config, config_toml).expect("write exporter config");
        // Owner-only, as the exporter asks of a file holding inline secrets (else it warns).
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))
                .expect("chmod 600 the exporter config");
        }
        let mut running = Binary::new()
            .config(&config)
            .listen_loopback()
            .log_level("debug")
            .current_dir(dir.path())
            .envs(env)
            .spawn();
        let addr = running.address_blocking();
        Exporter { running, addr, dir }
    }

    /// The address the exporter listens on (127.0.0.1 and the port the OS chose).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The temp dir holding `exporter.toml`; lives as long as this `Exporter`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the exporter wrote to stderr and stdout so far.
    pub fn logs(&self) -> String {
        self.running.logs()
    }

    /// `GET path` on the exporter (e.g. `/-/ready`). Panics with the logs on a transport error.
    pub fn get(&self, path: &str) -> HttpResponse {
        http_request(self.addr, "GET", path, &[], &[]).unwrap_or_else(|err| {
            panic!(
                "GET {path} on the exporter failed: {err}\n--- exporter logs ---\n{}",
                self.logs()
            )
        })
    }

    /// The body of `GET /metrics`. Panics (with the logs) unless it answers 200.
    pub fn metrics(&self) -> String {
        let response = self.get("/metrics");
        assert_eq!(
            response.status,
            200,
            "GET /metrics: {}\n--- exporter logs ---\n{}",
            response.body,
            self.logs()
        );
        response.body
    }

    /// Polls `/metrics` every 100 ms until `predicate(body)` holds and returns that body. Panics
    /// after `timeout` with `what`, the last body and the exporter's logs.
    pub fn wait_for_metrics(
        &self,
        what: &str,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match http_request(self.addr, "GET", "/metrics", &[], &[]) {
                Ok(r) if r.status == 200 => {
                    if predicate(&r.body) {
                        return r.body;
                    }
                    r.body
                }
                Ok(r) => format!("<status {}>\n{}", r.status, r.body),
                Err(err) => format!("<error {err}>"),
            };
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- last /metrics ---\n{last}\n\
                     --- exporter logs ---\n{}",
                    self.logs()
                );
            }
            thread::sleep(POLL_EVERY);
        }
    }

    /// [`Exporter::wait_for_metrics`] for the common case: until `sample(name_with_labels)`
    /// exists and satisfies `predicate`; returns that value.
    pub fn wait_for_sample(
        &self,
        name_with_labels: &str,
        predicate: impl Fn(f64) -> bool,
        timeout: Duration,
    ) -> f64 {
        let body = self.wait_for_metrics(
            name_with_labels,
            |m| sample(m, name_with_labels).is_some_and(&predicate),
            timeout,
        );
        sample(&body, name_with_labels).expect("sample checked by the predicate")
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A client registered at an [`OidcPeer`].
#[derive(Debug, Clone, serde::Deserialize)]
pub struct OidcClient {
    pub id: String,
    pub secret: String,
}

/// What `tests/peers/oidc/server.mjs` prints on its `OIDC_PEER_READY {json}` line.
#[derive(Debug, Clone, serde::Deserialize)]
struct ReadyLine {
    issuer: String,
    port: u16,
    token_url: String,
    jwks_url: String,
    canary_url: String,
    stats_url: String,
    resource: String,
    scope: String,
    forbidden_scope: String,
    ttl: u64,
    opaque: bool,
    basic_client: OidcClient,
    post_client: OidcClient,
    secret_jwt_client: OidcClient,
    #[serde(default)]
    dpop_client: Option<OidcClient>,
    #[serde(default)]
    dpop_canary_url: Option<String>,
}

/// Directory of the oidc-provider peer (package.json, server.mjs, node_modules after `npm ci`).
pub fn oidc_peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/oidc")
}

/// A real OAuth2 authorization server: panva's `oidc-provider` 9 on Node, run from
/// `tests/peers/oidc/server.mjs` on 127.0.0.1 with a port the OS chose. Killed on drop (and it
/// exits by itself when the test process dies, as its stdin closes).
///
/// What it is:
/// - `client_credentials` grant at [`OidcPeer::token_url`] (`{issuer}/token`). Access tokens are
///   for the one resource server [`OidcPeer::resource`] (sent as `resource` or defaulted), live
///   [`OidcPeer::ttl`] seconds (90), and are RS256 JWTs (`typ: at+jwt`, claims `iss`, `aud` =
///   resource, `exp`, `iat`, `scope`, `client_id`), or opaque strings when started with
///   `opaque_tokens = true`. The reply carries `expires_in` = ttl in both modes.
/// - Two clients, both allowed scope [`OidcPeer::scope`] (`api:read`):
///   [`OidcPeer::basic_client`] registered `client_secret_basic`, [`OidcPeer::post_client`]
///   registered `client_secret_post`. Authenticating with the method a client did not register is
///   rejected with 401 `{"error":"invalid_client"}` (middleware in server.mjs; oidc-provider alone
///   would accept both). A wrong secret: 401 `invalid_client`. Secrets are random per start.
/// - [`OidcPeer::forbidden_scope`] (`api:admin`): known to the server, granted to no client:
///   requesting it gives 400 `{"error":"invalid_scope"}`.
/// - A canary API at [`OidcPeer::canary_url`] (`GET {issuer}/api/canary`): 200 when the Bearer
///   token was issued by *this* instance for the resource with scope `api:read` (JWT mode:
///   signature checked against this server's keys, `iss`, `aud`, `exp`; opaque mode: looked up in
///   this server's token store), else 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
///   So a token without `scope=api:read` gets 401.
/// - Issue 12's client-authentication methods: [`OidcPeer::secret_jwt_client`] registered
///   `client_secret_jwt`; `private-key-rs256-client` and `private-key-es256-client` registered
///   `private_key_jwt` with the public halves of [`OidcPeer::client_key`]`("rsa.key")` (PKCS#1)
///   and `("ec.key")` (SEC1 P-256), generated per start; `("unregistered.key")` is registered
///   nowhere. oidc-provider itself checks each assertion (signature, `iss`, `sub`, `aud` = the
///   token URL or issuer, `exp`, a `jti` never seen) and the registered method. Started with
///   [`OidcPeer::start_tls`] it serves HTTPS, asks for a client certificate, and registers
///   `mtls-client` (`tls_client_auth`, subject `CN=oauth2-exporter-mtls`).
/// - [`OidcPeer::stats`]: what the server saw, as JSON:
///   `{"token": {"<client_id> <method>": n, ...}, "canary": {"200": n, "401": n},
///   "assertions": {"<client_id>": {"count", "reused_jti", "last", "header", "claims"}},
///   "secret_with_assertion": n,
///   "discovery": {"/.well-known/openid-configuration": n, "503 /.well-known/...": n}}`.
/// - `POST /_peer/discovery?up=0` makes the discovery documents answer 503 (`?up=1` undoes it):
///   an identity provider whose metadata is down while its token endpoint works.
pub struct OidcPeer {
    child: Child,
    // Kept open: the peer exits when it closes.
    _stdin: Option<ChildStdin>,
    logs: Arc<Mutex<String>>,
    // Holds the signing key file, shared with siblings started from this peer.
    keys_dir: Arc<tempfile::TempDir>,
    // This instance's client keys (`rsa.key`, `ec.key`, `unregistered.key`).
    client_keys: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub issuer: String,
    /// Loopback address the peer listens on.
    pub addr: SocketAddr,
    /// `{issuer}/token`.
    pub token_url: String,
    /// `{issuer}/jwks`: the public signing keys.
    pub jwks_url: String,
    /// `{issuer}/api/canary`.
    pub canary_url: String,
    /// `{issuer}/_peer/stats`.
    pub stats_url: String,
    /// The resource indicator = JWT `aud` (`urn:oauth2-exporter:peer-api`), the same for every
    /// instance.
    pub resource: String,
    /// The scope both clients may have and the canary requires (`api:read`).
    pub scope: String,
    /// A scope no client may have (`api:admin`).
    pub forbidden_scope: String,
    /// Access token lifetime in seconds (`expires_in` and `exp - iat`).
    pub ttl: u64,
    /// True when this instance issues opaque access tokens.
    pub opaque: bool,
    /// Registered with `token_endpoint_auth_method = client_secret_basic`.
    pub basic_client: OidcClient,
    /// Registered with `token_endpoint_auth_method = client_secret_post`.
    pub post_client: OidcClient,
    /// Registered with `token_endpoint_auth_method = client_secret_jwt` (HS256).
    pub secret_jwt_client: OidcClient,
    /// Started with [`OidcPeer::start_dpop`]: registered `client_secret_post` with
    /// `dpop_bound_access_tokens` (issue 25).
    pub dpop_client: Option<OidcClient>,
    /// Started with [`OidcPeer::start_dpop`]: the DPoP API, on a listener of its own (another
    /// origin than the issuer).
    pub dpop_canary_url: Option<String>,
}

impl OidcPeer {
    /// Starts a peer issuing JWT (`opaque_tokens = false`) or opaque access tokens. Returns
    /// `None` after [`skip_or_fail`] (named after the running test) when `node` is not on PATH or
    /// `tests/peers/oidc/node_modules` is missing (run `scripts/install-peers`). Panics with the
    /// peer's output if it is installed but fails to start within 30 s.
    pub fn start(opaque_tokens: bool) -> Option<OidcPeer> {
        let keys_dir = Arc::new(tempfile::tempdir().expect("temp dir for the peer's keys"));
        Self::spawn(opaque_tokens, keys_dir, None)
    }

    /// Starts a peer on HTTPS with `tls_dir/server.crt` and `server.key`, asking for a client
    /// certificate issued by `tls_dir/client-ca.crt` (issue 12's `tls_client_auth`).
    pub fn start_tls(tls_dir: &Path) -> Option<OidcPeer> {
        let keys_dir = Arc::new(tempfile::tempdir().expect("temp dir for the peer's keys"));
        Self::spawn(false, keys_dir, Some(tls_dir))
    }

    /// Starts a peer whose token endpoint takes DPoP proofs and requires its nonce in them,
    /// with a client that gets only DPoP-bound tokens and an API that takes only those (see
    /// `--dpop` in server.mjs; issue 25). Its stats gain `dpop_token_errors` and `dpop_canary`.
    pub fn start_dpop() -> Option<OidcPeer> {
        let keys_dir = Arc::new(tempfile::tempdir().expect("temp dir for the peer's keys"));
        Self::spawn_with(false, keys_dir, None, &["--dpop"])
    }

    /// The path of one of this instance's client private keys (`rsa.key`, `ec.key`,
    /// `unregistered.key`).
    pub fn client_key(&self, name: &str) -> PathBuf {
        self.client_keys.path().join(name)
    }

    /// Starts a second instance with the same token format and the *same RS256 signing key* but
    /// its own port, hence another issuer. Its tokens carry the same `aud` and a valid signature
    /// for this peer's keys, so this peer's canary can only reject them by checking `iss`.
    pub fn start_sibling(&self) -> Option<OidcPeer> {
        Self::spawn(self.opaque, self.keys_dir.clone(), None)
    }

    fn spawn(
        opaque: bool,
        keys_dir: Arc<tempfile::TempDir>,
        tls_dir: Option<&Path>,
    ) -> Option<OidcPeer> {
        Self::spawn_with(opaque, keys_dir, tls_dir, &[])
    }

    /// [`OidcPeer::spawn`] with further server.mjs options.
    fn spawn_with(
        opaque: bool,
        keys_dir: Arc<tempfile::TempDir>,
        tls_dir: Option<&Path>,
        options: &[&str],
    ) -> Option<OidcPeer> {
        let test = current_test();
        let Some(node) = find_tool("node") else {
            skip_or_fail(&test, "node is not on PATH (run scripts/install-peers)");
            return None;
        };
        let dir = oidc_peer_dir();
        if !dir
            .join("node_modules/oidc-provider/package.json")
            .is_file()
        {
            skip_or_fail(
                &test,
                &format!(
                    "{} has no node_modules/oidc-provider (run scripts/install-peers)",
                    dir.display()
                ),
            );
            return None;
        }
        let client_keys = tempfile::tempdir().expect("temp dir for the client keys");
        let mut command = scrubbed_command(node);
        command
            .current_dir(&dir)
            .arg("server.mjs")
            .arg("--keys")
            .arg(keys_dir.path().join("jwks.json"))
            .arg("--client-keys")
            .arg(client_keys.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if opaque {
            command.arg("--opaque");
        }
        if let Some(tls_dir) = tls_dir {
            command.arg("--tls").arg(tls_dir);
        }
        command.args(options);
        let turn = StartTurn::take();
        let mut child = command.spawn().expect("spawn node server.mjs");
        let stdin = child.stdin.take();
        let logs = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        drain_lines(
            child.stdout.take().expect("piped stdout"),
            logs.clone(),
            move |line| {
                if let Some(json) = line.strip_prefix("OIDC_PEER_READY ") {
                    let _ = ready_tx.send(json.to_owned());
                }
            },
        );
        drain_lines(
            child.stderr.take().expect("piped stderr"),
            logs.clone(),
            |_| {},
        );

        let ready: ReadyLine = match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(json) => serde_json::from_str(&json).expect("OIDC_PEER_READY line is JSON"),
            Err(err) => {
                let status = wait_exit(&mut child, Duration::from_secs(2));
                let _ = child.kill();
                let _ = child.wait();
                let logs = logs.lock().unwrap_or_else(|e| e.into_inner()).clone();
                panic!(
                    "oidc peer did not get ready ({err}); exit: {status:?}\n--- peer output ---\n{logs}"
                );
            }
        };
        drop(turn);
        Some(OidcPeer {
            child,
            _stdin: stdin,
            logs,
            keys_dir,
            client_keys,
            addr: SocketAddr::from(([127, 0, 0, 1], ready.port)),
            issuer: ready.issuer,
            token_url: ready.token_url,
            jwks_url: ready.jwks_url,
            canary_url: ready.canary_url,
            stats_url: ready.stats_url,
            resource: ready.resource,
            scope: ready.scope,
            forbidden_scope: ready.forbidden_scope,
            ttl: ready.ttl,
            opaque: ready.opaque,
            basic_client: ready.basic_client,
            post_client: ready.post_client,
            secret_jwt_client: ready.secret_jwt_client,
            dpop_client: ready.dpop_client,
            dpop_canary_url: ready.dpop_canary_url,
        })
    }

    /// Everything the peer printed so far (oidc-provider's warnings, errors).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Requests a token from this peer the way the exporter should: `client` authenticates with
    /// Basic when `basic` is true, else with `client_id`/`client_secret` in the form;
    /// `grant_type=client_credentials`, `resource` and the given `scope`. Returns the status and
    /// the JSON body.
    pub fn request_token(
        &self,
        client: &OidcClient,
        basic: bool,
        scope: &str,
    ) -> (u16, serde_json::Value) {
        use base64::Engine as _;
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials")
            .append_pair("scope", scope)
            .append_pair("resource", &self.resource);
        let authorization;
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if basic {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(&client.id), enc(&client.secret));
            authorization = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            headers.push(("Authorization", &authorization));
        } else {
            form.append_pair("client_id", &client.id)
                .append_pair("client_secret", &client.secret);
        }
        let body = form.finish();
        let response = http_request(self.addr, "POST", "/token", &headers, body.as_bytes())
            .expect("token request to the oidc peer");
        let json = serde_json::from_str(&response.body)
            .unwrap_or_else(|err| panic!("token reply is not JSON ({err}): {}", response.body));
        (response.status, json)
    }

    /// Calls the canary API with `Authorization: Bearer <token>`; returns its status.
    pub fn call_canary(&self, token: &str) -> u16 {
        let authorization = format!("Bearer {token}");
        http_request(
            self.addr,
            "GET",
            "/api/canary",
            &[("Authorization", &authorization)],
            &[],
        )
        .expect("canary request to the oidc peer")
        .status
    }

    /// What the peer saw so far (see the type's docs for the shape).
    pub fn stats(&self) -> serde_json::Value {
        let response = http_request(self.addr, "GET", "/_peer/stats", &[], &[])
            .expect("stats request to the oidc peer");
        serde_json::from_str(&response.body).expect("stats are JSON")
    }

    /// How many token requests `client_id` made authenticating with `method`
    /// (`client_secret_basic`, `client_secret_post` or `none`), as seen by the peer.
    pub fn token_requests(&self, client_id: &str, method: &str) -> u64 {
        self.stats()["token"][format!("{client_id} {method}")]
            .as_u64()
            .unwrap_or(0)
    }

    /// What the peer saw of `client_id`'s client assertions: `count`, `reused_jti`, `last` (the
    /// last assertion, as sent), its decoded `header` and `claims`.
    pub fn assertions(&self, client_id: &str) -> serde_json::Value {
        self.stats()["assertions"][client_id].clone()
    }

    /// Sends `assertion` again as `client_id`'s client assertion; returns the status and body.
    pub fn replay_assertion(&self, client_id: &str, assertion: &str) -> (u16, String) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client_id)
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", assertion)
            .append_pair("scope", &self.scope)
            .append_pair("resource", &self.resource)
            .finish();
        let response = http_request(
            self.addr,
            "POST",
            "/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .expect("token request to the oidc peer");
        (response.status, response.body)
    }

    /// How many canary calls the peer answered with `status`.
    pub fn canary_answers(&self, status: u16) -> u64 {
        self.stats()["canary"][status.to_string()]
            .as_u64()
            .unwrap_or(0)
    }
}

impl Drop for OidcPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes (without verifying) the claims of a JWT, for comparing `exp` with what the exporter
/// reports. Panics if `jwt` is not three base64url parts with a JSON payload.
pub fn jwt_claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).expect("JWT has a payload part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("JWT payload is base64url");
    serde_json::from_slice(&bytes).expect("JWT payload is JSON")
}
