//! The exporter's own HTTP endpoints: `/metrics` (gzip when asked), `/-/healthy`, `/-/ready`,
//! `POST /-/reload`, `/probe?provider=NAME`, and the status page at `/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, HeaderValue, VARY};
use hyper::{Request, StatusCode};

use crate::http_server::{HttpResponse, respond};
use crate::metrics::Metrics;
use crate::on_demand::{Directory, ProbeRequest};
use crate::scrape::ScrapeCache;
use crate::status::StatusBoard;

/// The Prometheus text exposition format, version 0.0.4.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A reload asked for over HTTP, with where to send its outcome (a message for the caller).
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<String, String>>;

pub struct WebState {
    pub metrics: Arc<Metrics>,
    pub scrapes: ScrapeCache,
    pub status: Arc<StatusBoard>,
    pub directory: Arc<Directory>,
    /// Set once probing has started.
    pub ready: AtomicBool,
    /// Where `POST /-/reload` sends its request; `None` when reloading is not possible.
    pub reload: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
}

pub async fn handle(state: Arc<WebState>, request: Request<Incoming>) -> HttpResponse {
    let path = request.uri().path();
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
        "/probe" => probe(&state, &request).await,
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
            index_page(&state),
        ),
    }
}

/// The answer to a request without valid basic-auth credentials.
pub fn unauthorized() -> HttpResponse {
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
    let (body, gzipped) = state
        .scrapes
        .body(&state.metrics, accepts_gzip(request))
        .await;
    let mut response = respond(StatusCode::OK, METRICS_CONTENT_TYPE, body);
    let headers = response.headers_mut();
    if gzipped {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    response
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

fn index_page(state: &WebState) -> String {
    crate::status_page::render(&state.status)
}

/// How long `/probe` waits for its cycle: a cycle is itself bounded by the provider's timeout
/// (at most two token and two canary requests); this only guards against a stuck queue.
const PROBE_WAIT: Duration = Duration::from_secs(300);

async fn probe(state: &WebState, request: &Request<Incoming>) -> HttpResponse {
    let text = "text/plain; charset=utf-8";
    let mut provider = None;
    let mut debug = false;
    for (key, value) in url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
    {
        match key.as_ref() {
            "provider" => provider = Some(value.into_owned()),
            "debug" => debug = matches!(value.as_ref(), "true" | "1"),
            _ => {}
        }
    }
    let names = || state.directory.names().join("\n");
    let Some(provider) = provider.filter(|p| !p.is_empty()) else {
        return respond(
            StatusCode::BAD_REQUEST,
            text,
            format!(
                "missing ?provider=NAME; configured providers:\n{}\n",
                names()
            ),
        );
    };
    let Some(requests) = state.directory.get(&provider) else {
        return respond(
            StatusCode::NOT_FOUND,
            text,
            format!(
                "unknown provider {:?}; configured providers:\n{}\n",
                provider.chars().take(64).collect::<String>(),
                names()
            ),
        );
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if requests.try_send(ProbeRequest { debug, reply }).is_err() {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            "too many probes waiting for this provider; try again\n",
        );
    }
    match tokio::time::timeout(PROBE_WAIT, answer).await {
        Ok(Ok(answer)) => {
            let body = match answer.trace {
                Some(trace) => format!(
                    "Probe of provider {provider}{trace}\n\n== resulting metrics\n{}",
                    answer.exposition
                ),
                None => answer.exposition,
            };
            let content_type = if debug { text } else { METRICS_CONTENT_TYPE };
            respond(StatusCode::OK, content_type, body)
        }
        _ => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            text,
            "the probe cycle did not complete (see the exporter's log)\n",
        ),
    }
}
