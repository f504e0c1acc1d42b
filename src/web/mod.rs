//! The exporter's own HTTP endpoints: routing, the basic-auth gate, `/-/healthy`, `/-/ready`
//! and `POST /-/reload` here; `/metrics` (gzip when asked), `/probe?provider=NAME` and the
//! status page at `/` in their own files.
//!
//! - [`server`]: the accept loop (HTTP/1.1, optional TLS) and response helpers.
//! - [`security`]: TLS and basic auth for these endpoints (`--web.config.file`).
//! - [`scrape`]: renders `/metrics` off the probe threads, shared by concurrent scrapes.
//! - [`probe`]: `/probe?provider=NAME`, answered by the provider's own task.
//! - [`status_page`]: the HTML status page at `/`.

pub mod probe;
pub mod scrape;
pub mod security;
pub mod server;
pub mod status_page;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hyper::body::Incoming;
use hyper::header::{
    ACCEPT, ACCEPT_ENCODING, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, HOST, HeaderName, HeaderValue,
    ORIGIN, RETRY_AFTER, VARY,
};
use hyper::{Method, Request, StatusCode};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::scrape::ScrapeCache;
use self::security::WebSecurity;
use self::server::{HttpResponse, respond, respond_with};
use crate::metrics::Format;
use crate::scheduler::Recorders;

/// The Prometheus text exposition format, version 0.0.4.
/// The paths the exporter serves besides the metrics: `--web.telemetry-path` may not be one.
pub const RESERVED_PATHS: [&str; 5] = ["/", "/probe", "/-/healthy", "/-/ready", "/-/reload"];

pub(crate) const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The protobuf exposition format, as Prometheus asks for it and reads it.
pub(crate) const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// A reload asked for over HTTP, with where to send its outcome (a message for the caller).
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<String, String>>;

pub struct WebState {
    /// The metrics, the status board and the provider directory the pages read.
    pub recorders: Arc<Recorders>,
    pub scrapes: ScrapeCache,
    /// Set once probing has started.
    pub ready: AtomicBool,
    /// Where `POST /-/reload` sends its request; `None` when reloading is not possible.
    pub reload: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
    /// Where `/metrics` is served (`--web.telemetry-path`).
    pub telemetry_path: String,
    /// This process's shard, if the fleet is sharded: `/probe` names another shard's providers.
    pub shard: Option<crate::shard::Shard>,
}

/// Serves the endpoints on `listener` until `cancel`, behind TLS and basic auth when
/// `security` asks for them.
pub async fn serve(
    listener: TcpListener,
    security: WebSecurity,
    state: Arc<WebState>,
    cancel: CancellationToken,
) {
    let basic_auth = security.basic_auth.clone();
    let scheme = if security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    server::serve_with_tls(listener, security.tls.clone(), cancel, move |request| {
        let state = Arc::clone(&state);
        let basic_auth = basic_auth.clone();
        async move {
            let path = request.uri().path().to_string();
            let mut response = match basic_auth {
                Some(auth) => match auth.check(security::authorization(&request)).await {
                    security::Verdict::Allowed => None,
                    security::Verdict::Refused => Some(unauthorized()),
                    security::Verdict::Busy => Some(busy()),
                },
                None => None,
            };
            if response.is_none() && is_cross_site(&request, scheme) {
                response = Some(respond(
                    StatusCode::FORBIDDEN,
                    "text/plain; charset=utf-8",
                    "403 Forbidden: cross-site requests may not change state\n",
                ));
            }
            let mut response = match response {
                Some(response) => response,
                None => handle(state, request).await,
            };
            protect(&mut response, &path);
            response
        }
    })
    .await
}

/// The headers every answer carries, and those of the pages a browser renders or a person
/// opens (`/`, `/probe`): never cached (they show live credential state), never sniffed as
/// another type, never framed, no scripts, and no `Referer` with a provider name in it sent
/// onwards.
fn protect(response: &mut HttpResponse, path: &str) {
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    if matches!(path, "/" | "/probe") {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        );
    }
}

/// The status page needs only its inline `<style>`: no scripts, images, fonts or frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Whether a state-changing request (anything but GET and HEAD, i.e. `POST /-/reload`) says it
/// comes from another site: a page elsewhere can make a browser POST here (a "simple" request
/// with `Content-Type: text/plain` needs no CORS preflight), so such a request is refused with
/// 403. Browsers send `Sec-Fetch-Site` and `Origin` on cross-origin POSTs; a request without
/// them (curl, Prometheus, kubectl, scripts) is not a browser's and passes.
fn is_cross_site(request: &Request<Incoming>, scheme: &str) -> bool {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return false;
    }
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        // same-origin and none (typed in the address bar) are this origin's own requests.
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return true;
        }
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return false;
    };
    let host = headers.get(HOST).and_then(|host| host.to_str().ok());
    match (origin.to_str().ok(), host) {
        (Some(origin), Some(host)) => !same_origin(origin, host, scheme),
        // `Origin: null` (sandboxed frames, redirects across sites), an unreadable origin, or
        // one we cannot compare with a missing Host.
        _ => true,
    }
}

/// Whether `origin` (`scheme://host[:port]`) is this server as the request's `Host` names it.
fn same_origin(origin: &str, host: &str, scheme: &str) -> bool {
    let Ok(origin) = url::Url::parse(origin) else {
        return false;
    };
    let Ok(ours) = url::Url::parse(&format!("{scheme}://{host}")) else {
        return false;
    };
    origin.scheme() == ours.scheme()
        && origin.host_str().is_some()
        && origin.host_str() == ours.host_str()
        && origin.port_or_known_default() == ours.port_or_known_default()
        && origin.path() == "/"
}

async fn handle(state: Arc<WebState>, request: Request<Incoming>) -> HttpResponse {
    let path = request.uri().path();
    // The telemetry path is validated not to shadow another endpoint, so it is matched first.
    let path = if path == state.telemetry_path {
        "/metrics"
    } else if path == "/metrics" {
        // Moved by --web.telemetry-path: not served here.
        ""
    } else {
        path
    };
    let allowed = match path {
        "/" | "/metrics" | "/probe" | "/-/healthy" | "/-/ready" => "GET, HEAD",
        "/-/reload" => "POST",
        _ => {
            return respond(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "404 page not found\n",
            );
        }
    };
    if !allowed.split(", ").any(|m| m == request.method().as_str()) {
        let mut response = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "405 method not allowed\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        return response;
    }
    match path {
        "/-/reload" => reload(&state).await,
        "/probe" => probe::probe(&state, &request).await,
        "/metrics" => metrics(&state, &request).await,
        "/-/healthy" => respond(StatusCode::OK, "text/plain; charset=utf-8", "Healthy.\n"),
        "/-/ready" if state.ready.load(Ordering::Acquire) => {
            respond(StatusCode::OK, "text/plain; charset=utf-8", "Ready.\n")
        }
        "/-/ready" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "Not ready: probing has not started.\n",
        ),
        _ => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            index_page(&state, &request),
        ),
    }
}

/// The answer to a request without valid basic-auth credentials.
fn unauthorized() -> HttpResponse {
    let mut response = respond(
        StatusCode::UNAUTHORIZED,
        "text/plain; charset=utf-8",
        "401 Unauthorized\n",
    );
    response.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"oauth2-exporter\""),
    );
    response
}

/// The answer when the password checks waiting for a turn exceed their bound (see
/// [`security::BasicAuth`]): the server is busy, not the client wrong, so retry shortly.
fn busy() -> HttpResponse {
    let mut response = respond(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain; charset=utf-8",
        "503 Service Unavailable: too many password checks in progress; try again\n",
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

async fn reload(state: &WebState) -> HttpResponse {
    let text = "text/plain; charset=utf-8";
    let Some(requests) = &state.reload else {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            "Reloading is not available.\n",
        );
    };
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if requests.send(reply).await.is_err() {
        return respond(StatusCode::SERVICE_UNAVAILABLE, text, "Shutting down.\n");
    }
    match outcome.await {
        Ok(Ok(message)) => respond(StatusCode::OK, text, format!("{message}\n")),
        Ok(Err(message)) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            text,
            format!("{message}\n"),
        ),
        Err(_) => respond(StatusCode::SERVICE_UNAVAILABLE, text, "Shutting down.\n"),
    }
}

async fn metrics(state: &WebState, request: &Request<Incoming>) -> HttpResponse {
    let format = state
        .recorders
        .metrics()
        .format_for(accepts_protobuf(request));
    let (body, gzipped) = state
        .scrapes
        .body(state.recorders.metrics(), format, accepts_gzip(request))
        .await;
    let content_type = match format {
        Format::Text => METRICS_CONTENT_TYPE,
        Format::Protobuf => PROTOBUF_CONTENT_TYPE,
    };
    let mut response = respond_with(StatusCode::OK, content_type, body);
    let headers = response.headers_mut();
    if gzipped {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    response
}

/// Whether `Accept` prefers the protobuf exposition (length-delimited `MetricFamily`
/// messages) to text: Prometheus lists it first, at q=0.7 or more, when its native histograms
/// are enabled. Media type and parameters are matched without regard to case or spaces.
fn accepts_protobuf(request: &Request<Incoming>) -> bool {
    let mut protobuf: f32 = 0.0;
    let mut text: f32 = 0.0;
    for entry in request
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
    {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let (mut quality, mut proto, mut delimited) = (1.0_f32, false, false);
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => quality = value.parse().unwrap_or(0.0),
                "proto" => proto = value == "io.prometheus.client.MetricFamily",
                "encoding" => delimited = value.eq_ignore_ascii_case("delimited"),
                _ => {}
            }
        }
        match media.as_str() {
            "application/vnd.google.protobuf" if proto && delimited => {
                protobuf = protobuf.max(quality)
            }
            "text/plain" | "text/*" | "*/*" => text = text.max(quality),
            _ => {}
        }
    }
    protobuf > 0.0 && protobuf >= text
}

/// Whether `Accept-Encoding` lists gzip with a non-zero quality.
fn accepts_gzip(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let zero_quality = parts.any(|param| {
                param
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero_quality
        })
}

/// The status page; each query parameter `NAME=VALUE` keeps only the providers labelled so.
fn index_page(state: &WebState, request: &Request<Incoming>) -> String {
    let filter: Vec<(String, String)> =
        url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
    status_page::render(state.recorders.status(), &state.telemetry_path, &filter)
}
