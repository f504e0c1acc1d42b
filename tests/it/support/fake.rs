//! The fake HTTP server of the in-process tests: it records every request it receives and
//! answers from a closure (token endpoint, canary API, or a misbehaving one).
//!
//! It speaks HTTP/1.1 over raw tokio TCP (not hyper) on purpose: the failure tests need
//! byte-level faults (a connection closed without an answer, a request that is never answered,
//! exact bytes on the wire) that a well-behaved server library will not produce.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest request head the fake accepts: requests from the exporter are a few hundred bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Recorded requests.

/// One request as the fake server received it (`Debug` shows the body as text).
#[derive(Clone)]
pub struct Recorded {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The raw query string (without `?`), if any.
    pub query: Option<String>,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it arrived (after its body was read).
    pub at: Instant,
}

impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorded")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &self.headers)
            .field("body", &self.body_text())
            .finish()
    }
}

impl Recorded {
    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).first().copied()
    }

    /// Every header of this name (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        super::headers_named(&self.headers, name)
    }

    /// The `Content-Type` without parameters, lower-cased (`application/json; charset=utf-8` ->
    /// `application/json`).
    pub fn content_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as `application/x-www-form-urlencoded` pairs, decoded, in order (repeated keys
    /// kept).
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// [`Self::form`] as a map, for whole-body `assert_eq!`. Panics on a repeated key, which no
    /// token request should contain.
    pub fn form_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        for (k, v) in self.form() {
            if let Some(previous) = map.insert(k.clone(), v) {
                panic!(
                    "form field {k:?} sent twice (first {previous:?}): {}",
                    self.body_text()
                );
            }
        }
        map
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {}", self.body_text()))
    }

    /// The query string decoded into pairs.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The client id and secret of an `Authorization: Basic` header, decoded as RFC 6749 section
    /// 2.3.1 says: base64, split at the first colon, then form-urldecode each part. `None`
    /// without such a header; panics on a malformed one (that is a finding, not an absence).
    pub fn basic_credentials(&self) -> Option<(String, String)> {
        let value = self.header("authorization")?;
        let (scheme, encoded) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .unwrap_or_else(|e| panic!("Basic credentials are not base64 ({e}): {value}"));
        let decoded = String::from_utf8(decoded)
            .unwrap_or_else(|e| panic!("Basic credentials are not UTF-8 ({e}): {value}"));
        let (id, secret) = decoded
            .split_once(':')
            .unwrap_or_else(|| panic!("Basic credentials without a colon: {decoded:?}"));
        Some((form_urldecode(id), form_urldecode(secret)))
    }

    /// The raw `user:pass` string inside the Basic header, before form-urldecoding (to check
    /// that special characters were encoded at all).
    pub fn basic_raw(&self) -> Option<String> {
        let value = self.header("authorization")?;
        let encoded = value.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        String::from_utf8(decoded).ok()
    }

    /// The token of an `Authorization: Bearer` header.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token)
    }
}

/// Form-urldecodes one value (`+` is a space).
pub fn form_urldecode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Replies.

/// What the fake server does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete response; `Content-Length` is added from the body unless `headers` set it.
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Exactly these bytes, then the connection is closed (for malformed or truncated answers).
    Bytes(Vec<u8>),
    /// Waits, then replies (a slow server).
    Delay(Duration, Box<Reply>),
    /// Never answers; the connection stays open until the server is dropped.
    Hang,
    /// Closes the connection without answering.
    Close,
}

impl Reply {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply::Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// A standard token response: `{"access_token", "token_type": "Bearer", "expires_in"}`.
    pub fn token(access_token: &str, expires_in: u64) -> Reply {
        Reply::json(
            200,
            serde_json::json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": expires_in,
            }),
        )
    }

    /// An RFC 6749 section 5.2 error body with this status.
    pub fn oauth_error(status: u16, code: &str) -> Reply {
        Reply::json(
            status,
            serde_json::json!({"error": code, "error_description": format!("fake says {code}")}),
        )
    }

    /// An empty body with this status.
    pub fn status(status: u16) -> Reply {
        Reply::raw(status, &[], Vec::new())
    }

    /// Any status, headers and body.
    pub fn raw(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
        Reply::Response {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    /// `reply` after `delay`.
    pub fn delayed(delay: Duration, reply: Reply) -> Reply {
        Reply::Delay(delay, Box::new(reply))
    }
}

fn reason_phrase(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

fn encode_response(status: u16, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).into_bytes();
    let has_length = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !has_length {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

// ---------------------------------------------------------------------------------------------
// The fake server.

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A loopback HTTP (or HTTPS, see [`FakeServer::start_tls`]) server that records every request
/// and answers with what the handler returns. Stops (and drops every connection, hanging ones
/// included) when dropped.
pub struct FakeServer {
    pub addr: SocketAddr,
    /// The PEM certificate of a [`FakeServer::start_tls`] server (for a `ca_file`).
    pub cert_pem: Option<String>,
    scheme: &'static str,
    requests: Arc<Mutex<Vec<Recorded>>>,
    cancel: CancellationToken,
}

impl FakeServer {
    /// Starts a plain HTTP server on `127.0.0.1:0`.
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_inner(Arc::new(handler), None).await
    }

    /// Starts a plain HTTP server whose handler is also given the server's own base URL
    /// (`http://127.0.0.1:PORT`, no trailing slash): for metadata documents that name endpoints
    /// on the same server. The port is only known once the server is bound, so a request that
    /// arrived before `start_with_base` returned would see an empty base; none can, as nothing
    /// knows the port yet.
    pub async fn start_with_base(
        handler: impl Fn(&str, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let base = Arc::new(OnceLock::<String>::new());
        let server = Self::start({
            let base = Arc::clone(&base);
            move |request| handler(base.get().map_or("", String::as_str), request)
        })
        .await;
        base.set(server.url("")).unwrap();
        server
    }

    /// Starts an HTTPS server with a freshly generated self-signed certificate for
    /// `127.0.0.1`/`localhost`, which no client trusts: the exporter's handshake must fail
    /// (reason `tls`) unless it skips verification.
    pub async fn start_tls(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        let cert_pem = certified.cert.pem();
        let cert = certified.cert.der().clone();
        let key = tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        )
        .into();
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let mut server = Self::start_inner(Arc::new(handler), Some(acceptor)).await;
        server.cert_pem = Some(cert_pem);
        server
    }

    /// Starts an HTTPS server presenting `chain_pem` (the leaf, then any intermediates) with
    /// `key_pem`: a server whose certificates a test chose (issue 13: their expiry).
    pub async fn start_tls_with(
        chain_pem: &str,
        key_pem: &str,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        use tokio_rustls::rustls::pki_types::pem::PemObject as _;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start_inner(Arc::new(handler), Some(acceptor)).await
    }

    /// Starts an HTTPS server presenting `chain_pem` with `key_pem` that demands a client
    /// certificate issued by `client_ca_pem` (mutual TLS): a client presenting none, or one from
    /// another CA, fails its handshake (reason `tls`) and reaches no handler.
    pub async fn start_mtls(
        chain_pem: &str,
        key_pem: &str,
        client_ca_pem: &str,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject as _;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(client_ca_pem.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .unwrap();
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start_inner(Arc::new(handler), Some(acceptor)).await
    }

    async fn start_inner(handler: Arc<Handler>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn({
            let requests = Arc::clone(&requests);
            let cancel = cancel.clone();
            async move {
                loop {
                    let (stream, _) = tokio::select! {
                        _ = cancel.cancelled() => return,
                        accepted = listener.accept() => match accepted {
                            Ok(accepted) => accepted,
                            Err(_) => continue,
                        },
                    };
                    let handler = Arc::clone(&handler);
                    let requests = Arc::clone(&requests);
                    let cancel = cancel.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let serve = async move {
                            match tls {
                                None => serve_connection(stream, &*handler, &requests).await,
                                Some(acceptor) => {
                                    // A failed handshake is the expected outcome for an
                                    // untrusted certificate: nothing to serve then.
                                    if let Ok(stream) = acceptor.accept(stream).await {
                                        serve_connection(stream, &*handler, &requests).await;
                                    }
                                }
                            }
                        };
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = serve => {}
                        }
                    });
                }
            }
        });
        FakeServer {
            addr,
            cert_pem: None,
            scheme,
            requests,
            cancel,
        }
    }

    /// `http://127.0.0.1:PORT{path}` (or `https://`).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests received so far for `path` (query ignored).
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests_to(path).len()
    }

    /// Waits until at least `n` requests for `path` arrived; panics after `timeout` with what
    /// did arrive.
    pub async fn wait_for_requests(
        &self,
        path: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.requests_to(path);
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                panic!(
                    "expected {n} requests to {path} within {timeout:?}, got {}: {:#?}",
                    got.len(),
                    self.requests()
                        .iter()
                        .map(|r| format!("{} {}", r.method, r.path))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Serves requests on one connection until the client closes it or a reply ends it.
async fn serve_connection<S>(mut stream: S, handler: &Handler, requests: &Mutex<Vec<Recorded>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        requests.lock().unwrap().push(request.clone());
        let mut reply = handler(&request);
        loop {
            match reply {
                Reply::Delay(delay, inner) => {
                    tokio::time::sleep(delay).await;
                    reply = *inner;
                }
                Reply::Hang => std::future::pending::<()>().await,
                Reply::Close => return,
                Reply::Bytes(bytes) => {
                    let _ = stream.write_all(&bytes).await;
                    let _ = stream.shutdown().await;
                    return;
                }
                Reply::Response {
                    status,
                    headers,
                    body,
                } => {
                    let bytes = encode_response(status, &headers, &body);
                    if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// Reads one HTTP/1.1 request (head + `Content-Length` or chunked body). `None` when the
/// connection ends first or the request is malformed. `buffer` keeps bytes of a next request.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Option<Recorded> {
    let head_end = loop {
        if let Some(pos) = find(buffer, b"\r\n\r\n") {
            break pos;
        }
        if buffer.len() > MAX_HEAD_BYTES || !read_more(stream, buffer).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(stream, buffer).await?
    } else {
        let length: usize = header("content-length")
            .map(|v| v.parse().ok())
            .unwrap_or(Some(0))?;
        while buffer.len() < length {
            if !read_more(stream, buffer).await {
                return None;
            }
        }
        buffer.drain(..length).collect()
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (target, None),
    };
    Some(Recorded {
        method,
        path,
        query,
        headers,
        body,
        at: Instant::now(),
    })
}

async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(pos) = find(buffer, b"\r\n") {
                break pos;
            }
            if !read_more(stream, buffer).await {
                return None;
            }
        };
        let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buffer.drain(..line_end + 2);
        while buffer.len() < size + 2 {
            if !read_more(stream, buffer).await {
                return None;
            }
        }
        body.extend(buffer.drain(..size));
        buffer.drain(..2);
        if size == 0 {
            return Some(body);
        }
    }
}

async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A loopback address where nothing listens: connecting is refused.
pub async fn closed_port_url(path: &str) -> String {
    format!("http://{}{path}", reserve_closed_port())
}

/// Sockets bound to the ports [`reserve_closed_port`] hands out, kept until the process exits.
static CLOSED_PORTS: Mutex<Vec<tokio::net::TcpSocket>> = Mutex::new(Vec::new());

/// A loopback port where nothing listens, and where nothing will while the test process runs: a
/// socket is bound to it and never listens, so a connection gets a reset (refused), and, bound
/// without `SO_REUSEADDR`, it keeps every other socket (another test, another process, an
/// outgoing connection's ephemeral port) off the port. Binding and releasing would let another
/// test take the port and answer.
pub fn reserve_closed_port() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().expect("the bound address");
    CLOSED_PORTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(socket);
    addr
}
