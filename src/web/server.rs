//! A minimal HTTP/1.1 server loop shared by the exporter's web endpoint and the demo identity
//! provider: accept on a bound listener (optionally over TLS), serve each connection with a
//! handler, bound slow clients and connection counts, stop on cancel.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The response type every handler returns.
pub type HttpResponse = Response<Body>;

/// A response body: fully rendered (every small answer), or streamed as it is produced (a
/// plain-text `/metrics`, 30 MiB at 10 000 providers, is never held whole).
pub enum Body {
    Full(Full<Bytes>),
    Streamed(tokio::sync::mpsc::Receiver<Chunk>),
}

/// A piece of a streamed body. A stream that closes without [`Chunk::End`] failed part way (the
/// producer gave up or panicked): the response is then aborted, so the client sees an error
/// instead of a page cut short that looks complete.
pub enum Chunk {
    Data(Bytes),
    End,
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let body = self.get_mut();
        match body {
            Body::Full(full) => Pin::new(full)
                .poll_frame(context)
                .map_err(|never| match never {}),
            Body::Streamed(chunks) => match chunks.poll_recv(context) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Chunk::Data(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Poll::Ready(Some(Chunk::End)) => {
                    *body = Body::Full(Full::default());
                    Poll::Ready(None)
                }
                Poll::Ready(None) => Poll::Ready(Some(Err(std::io::Error::other(
                    "the body ended before it was complete",
                )))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(full) => full.is_end_stream(),
            Body::Streamed(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(full) => full.size_hint(),
            Body::Streamed(_) => SizeHint::default(),
        }
    }
}

/// How long a client may take to send its request headers. Slow clients must not tie up
/// connection slots that scrapes need.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once. When all are taken, a new client displaces the connection that
/// has been idle longest (no request in progress: kept alive between scrapes, or nothing sent
/// yet), so idle connections cannot lock out health checks and scrapes (issue 22: 512 idle
/// connections made `/-/healthy` wait 8.5 s). Only while every connection is busy with a
/// request do further clients wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 512;

/// How long in-flight connections get to finish after cancellation.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed accept. EMFILE leaves the connection in the accept queue, so accepting
/// again at once would fail again at once: a busy loop that starves the probes freeing the
/// descriptors. 100 ms keeps a scrape's extra wait small.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accept failures are logged at most once per this interval (with how many there were), so
/// a descriptor shortage does not flood the log.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Rate-limited warnings about failed accepts.
#[derive(Default)]
struct AcceptFailures {
    last_logged: Option<tokio::time::Instant>,
    unlogged: u64,
}

impl AcceptFailures {
    fn failed(&mut self, error: &std::io::Error) {
        // A client that reset before we accepted it is its own business.
        if !error
            .raw_os_error()
            .is_some_and(crate::probe::transport::is_local_errno)
        {
            tracing::debug!(%error, "accept failed");
            return;
        }
        self.unlogged += 1;
        let now = tokio::time::Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_LOG_EVERY)
        {
            tracing::warn!(
                %error,
                failures = self.unlogged,
                "cannot accept connections; retrying every 100 ms"
            );
            self.last_logged = Some(now);
            self.unlogged = 0;
        }
    }
}

/// Serves plain HTTP on `listener` until `cancel` fires, then gives open connections a short
/// grace period. (Only the demo's identity provider serves without the TLS option.)
#[cfg(feature = "demo")]
pub async fn serve<H, F>(listener: TcpListener, cancel: CancellationToken, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    serve_with_tls(listener, None, cancel, handler).await;
}

/// [`serve`], over TLS when an acceptor is given.
pub async fn serve_with_tls<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let handler = Arc::new(handler);
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let open = Arc::new(OpenConnections::new());
    let mut accept_failures = AcceptFailures::default();
    loop {
        let (stream, _peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE/ENFILE or a connection reset before accept; back off
                    // instead of spinning, and stay cancellable meanwhile.
                    accept_failures.failed(&error);
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        // One accepted connection beyond the limit is held while room is made for it.
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                open.displace_idlest();
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    permit = Arc::clone(&slots).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let handler = Arc::clone(&handler);
        let cancel = cancel.clone();
        let tls = tls.clone();
        let registered = open.register(cancel.child_token());
        connections.spawn(async move {
            let _permit = permit;
            let connection = Arc::clone(&registered.connection);
            match tls {
                None => serve_connection(TokioIo::new(stream), handler, cancel, connection).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    tokio::select! {
                        handshake = handshake => match handshake {
                            Ok(Ok(stream)) => {
                                serve_connection(TokioIo::new(stream), handler, cancel, connection)
                                    .await;
                            }
                            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        },
                        // Displaced (or shutting down) before it said anything.
                        _ = connection.stop.cancelled() => {}
                    }
                }
            }
            drop(registered);
        });
    }
    connections.close();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, connections.wait()).await;
}

async fn serve_connection<I, H, F>(
    io: TokioIo<I>,
    handler: Arc<H>,
    cancel: CancellationToken,
    tracked: Arc<Connection>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let stop = tracked.stop.clone();
    let requests = Arc::clone(&tracked);
    let service = service_fn(move |request| {
        let handler = Arc::clone(&handler);
        // Made here, not in the future: a future dropped before it is polled ends it too.
        let in_flight = InFlight::new(Arc::clone(&requests));
        async move {
            let response = handler(request).await;
            // The request is in flight until its body has been sent (a streamed /metrics).
            Ok::<_, Infallible>(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            // Displaced to make room while no request is in flight: nothing to finish, close
            // now (hyper would keep a connection that sent half its headers until the header
            // timeout).
            if !cancel.is_cancelled() && tracked.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, connection).await;
        }
    }
}

/// The open connections, and which of them are idle, so a new client can displace the one
/// idle longest when every slot is taken.
struct OpenConnections {
    next_id: AtomicU64,
    all: Mutex<HashMap<u64, Arc<Connection>>>,
    base: Instant,
}

/// One open connection: requests in flight, since when it has been idle, and how to stop it.
struct Connection {
    in_flight: AtomicUsize,
    /// Nanoseconds from [`OpenConnections::base`] to when its last request ended (or it was
    /// accepted).
    idle_since: AtomicU64,
    base: Instant,
    /// A child of the server's cancellation token: cancelled alone, it displaces this
    /// connection.
    stop: CancellationToken,
}

impl Connection {
    fn mark_idle(&self) {
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.idle_since.store(now, Ordering::SeqCst);
    }
}

/// Removes a connection from [`OpenConnections`] when its task ends.
struct Registered {
    id: u64,
    open: Arc<OpenConnections>,
    connection: Arc<Connection>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.open
            .all
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl OpenConnections {
    fn new() -> OpenConnections {
        OpenConnections {
            next_id: AtomicU64::new(0),
            all: Mutex::default(),
            base: Instant::now(),
        }
    }

    fn register(self: &Arc<Self>, stop: CancellationToken) -> Registered {
        let connection = Arc::new(Connection {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            base: self.base,
            stop,
        });
        connection.mark_idle();
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.all
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&connection));
        Registered {
            id,
            open: Arc::clone(self),
            connection,
        }
    }

    /// Stops the connection idle longest, if any is idle; its slot frees as it closes.
    fn displace_idlest(&self) {
        let all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        let idlest = all
            .values()
            .filter(|c| c.in_flight.load(Ordering::SeqCst) == 0 && !c.stop.is_cancelled())
            .min_by_key(|c| c.idle_since.load(Ordering::SeqCst));
        if let Some(connection) = idlest {
            tracing::debug!("all connection slots taken: closing the connection idle longest");
            connection.stop.cancel();
        }
    }
}

/// A request in flight on its connection, from its headers until its response body is sent
/// (or dropped).
struct InFlight(Arc<Connection>);

impl InFlight {
    fn new(connection: Arc<Connection>) -> InFlight {
        connection.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(connection)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.mark_idle();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted as in flight until it is sent.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response with a fixed status, content type and body.
pub fn respond(
    status: hyper::StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    respond_with(status, content_type, Body::Full(Full::new(body.into())))
}

/// [`respond`] with a body of either kind.
pub fn respond_with(status: hyper::StatusCode, content_type: &str, body: Body) -> HttpResponse {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
