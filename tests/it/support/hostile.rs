//! Hostile-server support for `tests/it/hostile_servers.rs` (issue 4 section 1), owned by that
//! file: the byte-level faults `support::FakeServer` cannot produce (one byte per second, a
//! response head and then nothing, a TCP reset in the middle of a response, 50 MiB or a gzip
//! bomb streamed without ever being held in memory, TLS with a chosen certificate), and test
//! certificates signed by a throw-away CA. (The real binary as a child process, whose resident
//! memory can be read from `/proc`, is `super::binary::Running`.)
//!
//! Every server listens on `127.0.0.1:0`, answers one request per connection
//! (`connection: close`), and bounds each connection in time ([`CONNECTION_DEADLINE`]) and
//! every write loop in count.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

/// Nothing a hostile fake does on one connection lasts longer than this.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// How long the fake waits for a request to arrive in full.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// Upper bound on bytes dripped, so a drip loop ends even if the client never gives up.
const MAX_DRIP_BYTES: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Requests and what is done with them.

/// One request as the hostile server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::headers_named(&self.headers, name).first().copied()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A body far larger than the client should ever read: `prefix`, then `chunk` `repeat` times,
/// then `suffix`, written piece by piece from shared buffers (never assembled).
#[derive(Debug)]
pub struct Streamed {
    /// The response head, `\r\n\r\n` included.
    pub head: Vec<u8>,
    pub prefix: Vec<u8>,
    pub chunk: Vec<u8>,
    pub repeat: usize,
    pub suffix: Vec<u8>,
}

impl Streamed {
    pub fn body_len(&self) -> u64 {
        (self.prefix.len() + self.chunk.len() * self.repeat + self.suffix.len()) as u64
    }
}

/// What the hostile server does once it has read a request.
#[derive(Debug, Clone)]
pub enum Act {
    /// These bytes, then an orderly close (a complete answer, or headers and then a close).
    ThenClose(Vec<u8>),
    /// These bytes, a pause so the client is mid-response, then a TCP reset (RST).
    ResetAfter(Vec<u8>),
    /// These bytes one at a time, `every` apart, until all are sent or the client leaves.
    Drip { bytes: Vec<u8>, every: Duration },
    /// These bytes (a head announcing a body), then nothing until the client leaves.
    ThenHang(Vec<u8>),
    /// A huge body, streamed.
    Stream(Arc<Streamed>),
}

/// What happened on one served connection.
#[derive(Debug, Clone)]
pub struct Served {
    pub path: String,
    /// Response bytes accepted by the socket (head included).
    pub written: u64,
    /// Everything the act meant to send was sent.
    pub complete: bool,
}

/// A response head with `connection: close` (no body).
pub fn head(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    let reason = hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nconnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A complete response: head with `content-length`, then `body`.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let length = body.len().to_string();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("content-length", &length));
    let mut out = head(status, &all);
    out.extend_from_slice(body);
    out
}

// ---------------------------------------------------------------------------------------------
// The server.

type Handler = dyn Fn(&Request) -> Act + Send + Sync;

/// A loopback server that reads one request per connection, records it, and then misbehaves as
/// the handler says. Stops, dropping every connection, when dropped.
pub struct HostileServer {
    pub addr: SocketAddr,
    scheme: &'static str,
    requests: Arc<Mutex<Vec<Request>>>,
    served: Arc<Mutex<Vec<Served>>>,
    cancel: CancellationToken,
}

/// A stream that can be ended with a TCP reset instead of an orderly close.
trait Resettable: AsyncRead + AsyncWrite + Unpin + Send {
    fn arm_reset(&self);
}

impl Resettable for TcpStream {
    fn arm_reset(&self) {
        // SO_LINGER 0: the close that follows sends RST and discards unsent data.
        let _ = self.set_zero_linger();
    }
}

impl Resettable for tokio_rustls::server::TlsStream<TcpStream> {
    fn arm_reset(&self) {
        let _ = self.get_ref().0.set_zero_linger();
    }
}

impl HostileServer {
    /// Plain HTTP on `127.0.0.1:0`.
    pub async fn start(handler: impl Fn(&Request) -> Act + Send + Sync + 'static) -> Self {
        Self::start_inner(Arc::new(handler), None).await
    }

    /// HTTPS with this server configuration (certificate chosen by the caller, see [`TestCa`]).
    pub async fn start_tls(
        config: rustls::ServerConfig,
        handler: impl Fn(&Request) -> Act + Send + Sync + 'static,
    ) -> Self {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start_inner(Arc::new(handler), Some(acceptor)).await
    }

    async fn start_inner(handler: Arc<Handler>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn({
            let requests = Arc::clone(&requests);
            let served = Arc::clone(&served);
            let cancel = cancel.clone();
            async move {
                loop {
                    let stream = tokio::select! {
                        _ = cancel.cancelled() => return,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                    };
                    let handler = Arc::clone(&handler);
                    let requests = Arc::clone(&requests);
                    let served = Arc::clone(&served);
                    let cancel = cancel.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let serve = async move {
                            match tls {
                                None => serve(stream, &*handler, &requests, &served).await,
                                Some(acceptor) => {
                                    // A refused handshake (untrusted, expired, wrong name) is the
                                    // point of the TLS cases: nothing is served then.
                                    if let Ok(stream) = acceptor.accept(stream).await {
                                        serve(stream, &*handler, &requests, &served).await;
                                    }
                                }
                            }
                        };
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = tokio::time::timeout(CONNECTION_DEADLINE, serve) => {}
                        }
                    });
                }
            }
        });
        HostileServer {
            addr,
            scheme,
            requests,
            served,
            cancel,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// The connections for `path` that have finished being served.
    pub fn served(&self, path: &str) -> Vec<Served> {
        self.served
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn serve<S: Resettable>(
    mut stream: S,
    handler: &Handler,
    requests: &Mutex<Vec<Request>>,
    served: &Mutex<Vec<Served>>,
) {
    let Ok(Some(request)) = tokio::time::timeout(REQUEST_DEADLINE, read_request(&mut stream)).await
    else {
        return;
    };
    requests.lock().unwrap().push(request.clone());
    let act = handler(&request);
    let mut written = 0u64;
    let complete = act_on(&mut stream, act, &mut written).await;
    served.lock().unwrap().push(Served {
        path: request.path,
        written,
        complete,
    });
}

/// Writes `bytes`, counting what the socket accepted; false once the client is gone.
async fn send<S: Resettable>(stream: &mut S, bytes: &[u8], written: &mut u64) -> bool {
    if stream.write_all(bytes).await.is_err() || stream.flush().await.is_err() {
        return false;
    }
    *written += bytes.len() as u64;
    true
}

/// Performs `act`; true when everything it meant to send was sent.
async fn act_on<S: Resettable>(stream: &mut S, act: Act, written: &mut u64) -> bool {
    match act {
        Act::ThenClose(bytes) => {
            let sent = send(stream, &bytes, written).await;
            let _ = stream.shutdown().await;
            sent
        }
        Act::ResetAfter(bytes) => {
            let sent = send(stream, &bytes, written).await;
            // Let the client parse what it got, so the reset lands mid-response.
            tokio::time::sleep(Duration::from_millis(100)).await;
            stream.arm_reset();
            sent
        }
        Act::Drip { bytes, every } => {
            for byte in bytes.iter().take(MAX_DRIP_BYTES) {
                if !send(stream, std::slice::from_ref(byte), written).await {
                    return false;
                }
                tokio::time::sleep(every).await;
            }
            bytes.len() <= MAX_DRIP_BYTES
        }
        Act::ThenHang(bytes) => {
            let sent = send(stream, &bytes, written).await;
            wait_for_client_to_leave(stream).await;
            sent
        }
        Act::Stream(streamed) => {
            if !send(stream, &streamed.head, written).await
                || !send(stream, &streamed.prefix, written).await
            {
                return false;
            }
            for _ in 0..streamed.repeat {
                if !send(stream, &streamed.chunk, written).await {
                    return false;
                }
            }
            send(stream, &streamed.suffix, written).await
        }
    }
}

/// Reads and discards until the client closes (or [`CONNECTION_DEADLINE`] ends the connection).
async fn wait_for_client_to_leave<S: Resettable>(stream: &mut S) {
    let mut sink = [0u8; 1024];
    // Bounded: each read either ends the loop or consumes bytes the client chose to send.
    for _ in 0..10_000 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Reads one request: head, then a `content-length` body. `None` on a malformed or cut request.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return None;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut body = buffer.split_off(head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?;
    let path = target.split('?').next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(Some(0), |(_, v)| v.parse().ok())?;
    if length > MAX_REQUEST_BODY {
        return None;
    }
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// A loopback URL where nothing listens, nor will while the tests run
/// ([`super::fake::reserve_closed_port`]): connecting is refused.
pub fn refused_url(path: &str) -> String {
    format!("http://{}{path}", super::fake::reserve_closed_port())
}

// ---------------------------------------------------------------------------------------------
// Big bodies.

/// 64 KiB of `x`: the repeated piece of a streamed oversized body.
const PAD_CHUNK: usize = 64 * 1024;

/// `total` bytes (about) of a JSON token response that never ends: `{"access_token":"t",
/// "pad":"xxxx…"}`, with a `content-length` head or close-delimited.
pub fn huge_json(total: usize, with_length: bool) -> Arc<Streamed> {
    let prefix = br#"{"access_token":"tok-huge","token_type":"Bearer","pad":""#.to_vec();
    let suffix = br#""}"#.to_vec();
    let repeat = total / PAD_CHUNK;
    let body_len = prefix.len() + repeat * PAD_CHUNK + suffix.len();
    let length = body_len.to_string();
    let mut headers = vec![("content-type", "application/json")];
    if with_length {
        headers.push(("content-length", &length));
    }
    Arc::new(Streamed {
        head: head(200, &headers),
        prefix,
        chunk: vec![b'x'; PAD_CHUNK],
        repeat,
        suffix,
    })
}

/// A gzip bomb: a valid gzip member whose compressed size is about `compressed_target` bytes and
/// which inflates to about a thousand times that (a JSON token response start, then `x`s),
/// sent as `content-encoding: gzip` with a `content-length`.
///
/// Built without compressing the whole inflated size: after a full flush, deflate's state is
/// reset, so compressing the same 1 MiB again yields the same bytes. That block is computed once
/// and repeated; the CRC-32 of the whole is combined from the CRC of one block.
pub fn gzip_bomb(compressed_target: usize) -> Arc<Streamed> {
    gzip_bomb_with(compressed_target, usize::MAX)
}

/// [`gzip_bomb`] with at most `max_blocks` repeated 1 MiB blocks (to check the construction on a
/// small bomb).
pub fn gzip_bomb_with(compressed_target: usize, max_blocks: usize) -> Arc<Streamed> {
    use flate2::{Compress, Compression, Crc, FlushCompress};
    let json_start = br#"{"access_token":"tok-bomb","token_type":"Bearer","pad":""#;
    let block = vec![b'x'; 1024 * 1024];
    let mut deflate = Compress::new(Compression::best(), false);
    let start = deflate_step(&mut deflate, json_start, FlushCompress::Full);
    let first = deflate_step(&mut deflate, &block, FlushCompress::Full);
    let second = deflate_step(&mut deflate, &block, FlushCompress::Full);
    assert_eq!(
        first, second,
        "deflate blocks after a full flush differ: cannot repeat them"
    );
    let repeat = ((compressed_target / first.len()).max(1)).min(max_blocks);
    let end = deflate_step(&mut deflate, &[], FlushCompress::Finish);

    let mut crc = Crc::new();
    crc.update(json_start);
    let mut block_crc = Crc::new();
    block_crc.update(&block);
    for _ in 0..repeat {
        crc.combine(&block_crc);
    }
    // RFC 1952: magic, CM=deflate, no flags, no mtime, XFL 0, OS unknown.
    let mut prefix = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    prefix.extend_from_slice(&start);
    let mut suffix = end;
    suffix.extend_from_slice(&crc.sum().to_le_bytes());
    suffix.extend_from_slice(&crc.amount().to_le_bytes());
    let compressed_len = prefix.len() + first.len() * repeat + suffix.len();
    let length = compressed_len.to_string();
    Arc::new(Streamed {
        head: head(
            200,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
                ("content-length", &length),
            ],
        ),
        prefix,
        chunk: first,
        repeat,
        suffix,
    })
}

/// Compresses `input` with `flush`, returning all the output it produced.
fn deflate_step(
    deflate: &mut flate2::Compress,
    input: &[u8],
    flush: flate2::FlushCompress,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut consumed = 0usize;
    // Bounded: each round either consumes input or fills fresh output space.
    for _ in 0..100_000 {
        out.reserve(64 * 1024);
        let before = deflate.total_in();
        let status = deflate
            .compress_vec(&input[consumed..], &mut out, flush)
            .unwrap();
        consumed += (deflate.total_in() - before) as usize;
        let room_left = out.len() < out.capacity();
        if status == flate2::Status::StreamEnd || (consumed == input.len() && room_left) {
            return out;
        }
    }
    panic!("deflate did not finish");
}

/// The bytes of a [`Streamed`] body, assembled (for checking a small one only).
pub fn assemble(streamed: &Streamed) -> Vec<u8> {
    let mut body = streamed.prefix.clone();
    for _ in 0..streamed.repeat {
        body.extend_from_slice(&streamed.chunk);
    }
    body.extend_from_slice(&streamed.suffix);
    body
}

// ---------------------------------------------------------------------------------------------
// Certificates.

/// A throw-away certificate authority for the TLS cases: its PEM goes into a provider's
/// `tls.ca_file`, so a failure against one of its certificates is about that certificate
/// (expired, wrong name) and not about trust.
pub struct TestCa {
    pub cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "oauth2-exporter hostile test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2090, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert_pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            cert_pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server configuration with a leaf certificate for `names` (IP addresses or DNS names),
    /// valid from the start of year `from` to the start of year `until`.
    pub fn server_config(&self, names: &[&str], from: i32, until: i32) -> rustls::ServerConfig {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hostile test server");
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key_der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der.into())
        .unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary as a child process.

/// `GET path` on the daemon with a fresh connection: (status, body). Panics after 10 s.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = super::http_client(Duration::from_secs(10))
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}
